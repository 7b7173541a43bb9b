//! ssh logins through the real socket, the real presence gate and the virtual key: a client
//! binds its connection with `session-bind@openssh.com` (OpenSSH `PROTOCOL.agent` §1) using a
//! host key made here and a real signature over the session id, then asks for a login
//! signature (RFC 4252 §7, and OpenSSH's hostbound method). The prompt names the user (escaped),
//! the bound host key and whether the request was forwarded; binds that do not verify or do not
//! fit OpenSSH's rules, and logins for another session, are refused. Every request is announced
//! to watchers on arrival, under the id its later events and its receipt carry.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use auths_presence::ctap::device::DeviceOptions;
use auths_presence::ctap::virtual_key::{HidTimings, TouchMode, VirtualKey};
use auths_presence::ctap::CtapError;
use auths_presence::presence::audit::{verify_chain, AuditLog, Outcome, Receipt};
use auths_presence::presence::enrollment::TokenStore;
use auths_presence::presence::policy::Policy;
use auths_presence::presence::prompt::{PromptEvent, Prompter};
use auths_presence::presence::request::PayloadKind;
use auths_presence::presence::touch::PresenceKey;
use p256::ecdsa::signature::{Signer, Verifier};
use ssh_agent_lib::proto::{Extension, Request, Response};
use ssh_key::{Algorithm, HashAlg, PrivateKey, PublicKey};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::broadcast::Receiver;

use super::support::agent::{Agent, Opts};
use super::support::gate::{self, events_until, wait_event, AUTO};
use super::support::openssh::{keygen, public_key, run_bounded, s, KeyFiles, SSH_KEYGEN};
use super::support::wire::{
    encode, login_data, recv, request, send, session_bind, sign_request, FAILURE,
};
use super::support::{short_tempdir, skipped, DEADLINE};

/// `SSH_AGENT_EXTENSION_FAILURE`: OpenSSH's answer to a refused session bind.
const EXTENSION_FAILURE: &[u8] = &[28];

struct Rig {
    dir: tempfile::TempDir,
    home: PathBuf,
    key: Arc<VirtualKey>,
    agent: Agent,
    /// The Ed25519 identity key the agent holds.
    identity: PublicKey,
    /// An ECDSA key the agent holds too.
    other: PublicKey,
    /// Their files; only the public halves are left, so OpenSSH clients sign through us.
    keys: KeyFiles,
    enrolled: u64,
}

impl Rig {
    /// An agent holding two identity keys, over the presence gate and a virtual key that
    /// touches as `mode` says, and a subscription to its prompts.
    fn new(policy: Policy, mode: TouchMode) -> (Rig, Receiver<PromptEvent>) {
        let dir = short_tempdir();
        let home = dir.path().join("home");
        let options = DeviceOptions {
            deadline: DEADLINE + Duration::from_secs(1),
            ..DeviceOptions::default()
        };
        let timings = HidTimings {
            touch_timeout: DEADLINE,
            ..HidTimings::default()
        };
        let key = gate::start_key(&dir.path().join("key.json"), AUTO, timings);
        let enrolled = gate::enroll(&key, &home, options);
        key.set_touch_mode(mode);
        let opener = {
            let key = Arc::clone(&key);
            move || -> Result<Box<dyn PresenceKey>, CtapError> {
                Ok(Box::new(gate::open(&key, options)?))
            }
        };
        let prompter = Prompter::new(false);
        let events = prompter.subscribe();
        let gate = gate::presence_gate(
            &home,
            opener,
            policy,
            DEADLINE + Duration::from_secs(1),
            prompter,
            None,
        );
        let agent = Agent::start(Arc::new(gate), Opts::default());
        let keys = keygen(dir.path());
        agent.add(&[&keys.ed25519, &keys.ecdsa]);
        std::fs::remove_file(&keys.ed25519).unwrap();
        std::fs::remove_file(&keys.ecdsa).unwrap();
        let rig = Rig {
            identity: public_key(&keys.ed25519),
            other: public_key(&keys.ecdsa),
            keys,
            dir,
            home,
            key,
            agent,
            enrolled,
        };
        (rig, events)
    }

    fn touches(&self) -> u64 {
        self.key.touch_count() - self.enrolled
    }

    fn receipts(&self) -> Vec<Receipt> {
        AuditLog::new(&self.home)
            .read()
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.unwrap())
            .collect()
    }

    fn audit_verifies(&self) -> bool {
        let lines = AuditLog::new(&self.home).read_chain().unwrap();
        let tokens = TokenStore::open(&self.home).unwrap().list().unwrap();
        let report = verify_chain(&lines, &tokens);
        assert!(report.ok(), "{:?}", report.problems);
        report.ok()
    }
}

/// A fresh Ed25519 host key, as a server's.
fn host_key() -> PrivateKey {
    PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap()
}

fn fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

/// The bind a client sends after its key exchange: `host` signed `session_id`.
fn bind(host: &PrivateKey, session_id: &[u8], forwarding: bool) -> Request {
    let signature = host.try_sign(session_id).unwrap();
    session_bind(host.public_key(), session_id, &signature, forwarding)
}

/// Send `req`, and the raw answer.
fn answer(client: &mut std::os::unix::net::UnixStream, req: &Request) -> Vec<u8> {
    send(client, &encode(req));
    recv(client).expect("an answer")
}

/// Events already announced (each was sent before the answer the test has read).
fn drain(events: &mut Receiver<PromptEvent>) -> Vec<PromptEvent> {
    let mut seen = Vec::new();
    loop {
        match events.try_recv() {
            Ok(e) => seen.push(e),
            Err(TryRecvError::Empty) => return seen,
            Err(e) => panic!("prompt channel: {e}"),
        }
    }
}

/// Ask for the login signature of `data` on `client`, check the request is announced and
/// then prompted under one id, touch, and return the prompt and the signature.
fn sign_login(
    rig: &Rig,
    events: &mut Receiver<PromptEvent>,
    client: &mut std::os::unix::net::UnixStream,
    data: &[u8],
) -> (String, ssh_key::Signature) {
    send(client, &encode(&sign_request(&rig.identity, data)));
    let seen = events_until(events, |e| matches!(e, PromptEvent::Pending { .. }));
    let [PromptEvent::Requested {
        id: announced,
        message: request_text,
        kind,
        login,
        ..
    }, PromptEvent::Pending { id, message, .. }] = &seen[..]
    else {
        panic!("announced, then prompted: {seen:?}")
    };
    assert_eq!(announced, id, "one id from announcement to prompt");
    assert_eq!(*kind, PayloadKind::Userauth);
    let login = login.as_ref().expect("the announcement names the login");
    assert!(
        request_text.contains(&format!("an ssh login as {}", login.user)),
        "{request_text}"
    );
    rig.key.touch().unwrap();
    let Response::SignResponse(signature) =
        ssh_encoding::Decode::decode(&mut &recv(client).expect("an answer")[..]).unwrap()
    else {
        panic!("no signature")
    };
    rig.identity.key_data().verify(data, &signature).unwrap();
    // Its approval was announced before the signature was sent, under the same id.
    assert_eq!(
        drain(events),
        [PromptEvent::Approved { id: id.clone() }],
        "approved under the id it was announced with"
    );
    (message.clone(), signature)
}

#[test]
fn a_bound_login_prompt_names_the_user_the_host_key_and_forwarding() {
    let (rig, mut events) = Rig::new(Policy::PerSignature, TouchMode::Manual);
    // The agent says it binds sessions.
    let mut client = rig.agent.connect();
    let query = Request::Extension(Extension {
        name: "query".into(),
        details: Vec::new().into(),
    });
    let Response::ExtensionResponse(list) = request(&mut client, &query) else {
        panic!("no answer to query")
    };
    let list: ssh_agent_lib::proto::extension::QueryResponse =
        list.parse_message().unwrap().unwrap();
    assert!(list
        .extensions
        .contains(&"session-bind@openssh.com".to_owned()));

    // Forwarded: the local ssh binds its session for forwarding, then the ssh on that host
    // binds the session it logs in with, to the server `host`.
    let (hop, host) = (host_key(), host_key());
    assert_eq!(
        request(&mut client, &bind(&hop, &[1; 32], true)),
        Response::Success
    );
    assert_eq!(
        request(&mut client, &bind(&host, &[2; 32], false)),
        Response::Success
    );
    let user = "git\x1b[2J\u{202e}";
    let data = login_data(&[2; 32], user, &rig.identity, Some(host.public_key()));
    let (prompt, _) = sign_login(&rig, &mut events, &mut client, &data);
    assert!(
        prompt.starts_with(&format!(
            "Touch your security key to approve an ssh login as git\\u{{1b}}[2J\\u{{202e}} to \
             host key {} (forwarded from another host) for ",
            fingerprint(&host)
        )),
        "{prompt}"
    );
    assert!(!prompt.contains(&fingerprint(&hop)), "{prompt}");
    assert!(!prompt.chars().any(char::is_control), "{prompt}");

    // Direct: one bind for authentication, a plain publickey login.
    let mut direct = rig.agent.connect();
    let server = host_key();
    assert_eq!(
        request(&mut direct, &bind(&server, &[3; 48], false)),
        Response::Success
    );
    let data = login_data(&[3; 48], "deploy", &rig.identity, None);
    let (prompt, _) = sign_login(&rig, &mut events, &mut direct, &data);
    assert!(
        prompt.contains(&format!(
            "an ssh login as deploy to host key {} for ",
            fingerprint(&server)
        )),
        "{prompt}"
    );
    assert!(!prompt.contains("forwarded"), "{prompt}");

    // Unbound: the host key the request claims is not shown as if it were verified.
    let mut unbound = rig.agent.connect();
    let data = login_data(&[4; 32], "git", &rig.identity, Some(server.public_key()));
    let (prompt, _) = sign_login(&rig, &mut events, &mut unbound, &data);
    assert!(
        prompt.contains("an ssh login as git (host not identified) for "),
        "{prompt}"
    );
    assert!(!prompt.contains(&fingerprint(&server)), "{prompt}");

    assert_eq!(rig.touches(), 3);
    let receipts = rig.receipts();
    assert_eq!(receipts.len(), 3);
    for r in &receipts {
        assert_eq!(
            (r.outcome(), r.kind, r.signed),
            (Outcome::Approved, PayloadKind::Userauth, true)
        );
    }
    assert!(rig.audit_verifies());
}

#[test]
fn session_binds_that_do_not_verify_or_do_not_fit_are_refused() {
    let (rig, mut events) = Rig::new(Policy::PerSignature, AUTO);
    let host = host_key();
    let sid = [7u8; 32];
    let mut client = rig.agent.connect();
    // Signed by another key, or over another session id.
    let forged = host_key().try_sign(&sid).unwrap();
    let bad = session_bind(host.public_key(), &sid, &forged, false);
    assert_eq!(answer(&mut client, &bad), EXTENSION_FAILURE);
    let other_session = host.try_sign(&[8; 32]).unwrap();
    let bad = session_bind(host.public_key(), &sid, &other_session, false);
    assert_eq!(answer(&mut client, &bad), EXTENSION_FAILURE);
    // A bind with a byte too many.
    let Request::Extension(mut padded) = bind(&host, &sid, false) else {
        unreachable!()
    };
    let mut details = padded.details.into_bytes();
    details.push(0);
    padded.details = details.into();
    assert_eq!(
        answer(&mut client, &Request::Extension(padded)),
        EXTENSION_FAILURE
    );

    // Sixteen bindings on one connection at most; the same session id never for two hosts.
    for i in 0..16u8 {
        assert_eq!(
            answer(&mut client, &bind(&host, &[i; 32], true)),
            [6],
            "bind {i}"
        );
    }
    assert_eq!(
        answer(&mut client, &bind(&host, &[16; 32], true)),
        EXTENSION_FAILURE
    );
    let mut client = rig.agent.connect();
    assert_eq!(answer(&mut client, &bind(&host, &sid, true)), [6]);
    assert_eq!(
        answer(&mut client, &bind(&host_key(), &sid, true)),
        EXTENSION_FAILURE
    );

    // Bound for a login: no further bind; a login for another session, naming another host
    // key, or offering another key than the one asked to sign is refused before the gate.
    let mut client = rig.agent.connect();
    assert_eq!(answer(&mut client, &bind(&host, &sid, false)), [6]);
    assert_eq!(
        answer(&mut client, &bind(&host, &[9; 32], true)),
        EXTENSION_FAILURE
    );
    let refused = [
        (
            login_data(&[9; 32], "git", &rig.identity, None),
            &rig.identity,
        ),
        (
            login_data(&sid, "git", &rig.identity, Some(host_key().public_key())),
            &rig.identity,
        ),
        (login_data(&sid, "git", &rig.other, None), &rig.identity),
    ];
    for (data, key) in &refused {
        send(&mut client, &encode(&sign_request(key, data)));
        assert_eq!(recv(&mut client).as_deref(), Some(FAILURE));
    }
    assert!(drain(&mut events).is_empty(), "refused before the gate");
    assert_eq!(rig.touches(), 0);
    assert!(rig.receipts().is_empty());
    // The connection still serves the login it is bound for.
    let data = login_data(&sid, "git", &rig.identity, Some(host.public_key()));
    let Response::SignResponse(signature) =
        request(&mut client, &sign_request(&rig.identity, &data))
    else {
        panic!("the bound login is signed")
    };
    rig.identity.key_data().verify(&data, &signature).unwrap();
    assert_eq!(rig.touches(), 1);
}

/// Ask to sign `data` on `client`, touch when prompted, and return whether the announcement
/// said it was forwarded, and the prompt.
fn touch_to_sign(
    rig: &Rig,
    events: &mut Receiver<PromptEvent>,
    client: &mut std::os::unix::net::UnixStream,
    data: &[u8],
) -> (bool, String) {
    send(client, &encode(&sign_request(&rig.identity, data)));
    let seen = events_until(events, |e| matches!(e, PromptEvent::Pending { .. }));
    let [PromptEvent::Requested { forwarded, .. }, PromptEvent::Pending { message, .. }] =
        &seen[..]
    else {
        panic!("announced, then prompted: {seen:?}")
    };
    rig.key.touch().unwrap();
    let answer = recv(client).expect("an answer");
    assert_eq!(answer[0], 14, "SSH_AGENT_SIGN_RESPONSE");
    drain(events);
    (*forwarded, message.clone())
}

#[test]
fn a_request_from_another_host_says_so_and_no_grant_serves_it() {
    let (rig, mut events) = Rig::new("batch:10:60s:process".parse().unwrap(), TouchMode::Manual);
    // This process's own request opens a grant for this process.
    let mut local = rig.agent.connect();
    let (forwarded, prompt) = touch_to_sign(&rig, &mut events, &mut local, b"local bytes");
    assert!(!forwarded);
    assert!(
        prompt.contains("; one touch approves up to 10 signatures"),
        "{prompt}"
    );
    // The same process relays a request from another host (as ssh does for a forwarded
    // agent, binding that connection for forwarding first): it needs its own touch, says
    // where it comes from, and opens no grant.
    let mut remote = rig.agent.connect();
    assert_eq!(
        request(&mut remote, &bind(&host_key(), &[1; 32], true)),
        Response::Success
    );
    let (forwarded, prompt) = touch_to_sign(&rig, &mut events, &mut remote, b"remote bytes");
    assert!(forwarded);
    assert!(
        prompt.starts_with(
            "Touch your security key to approve unknown data (forwarded from another host) for "
        ),
        "{prompt}"
    );
    assert!(!prompt.contains("one touch approves"), "{prompt}");
    assert_eq!(rig.touches(), 2);
    // The local grant still serves local requests.
    let answer = request(&mut local, &sign_request(&rig.identity, b"local again"));
    assert!(matches!(answer, Response::SignResponse(_)), "{answer:?}");
    assert_eq!(rig.touches(), 2);
    assert_eq!(
        rig.receipts()
            .iter()
            .map(|r| r.outcome())
            .collect::<Vec<_>>(),
        [Outcome::Approved, Outcome::Approved, Outcome::Granted]
    );
    assert!(rig.audit_verifies());
}

#[test]
fn every_request_is_announced_on_arrival_even_one_refused_by_contention() {
    let (rig, mut events) = Rig::new(Policy::PerSignature, TouchMode::Manual);
    let mut first = rig.agent.connect();
    send(
        &mut first,
        &encode(&sign_request(&rig.identity, b"first bytes")),
    );
    let seen = events_until(&mut events, |e| matches!(e, PromptEvent::Pending { .. }));
    let [PromptEvent::Requested { id: a, .. }, PromptEvent::Pending { id: pending, .. }] =
        &seen[..]
    else {
        panic!("announced, then prompted: {seen:?}")
    };
    assert_eq!(a, pending);
    let mut second = rig.agent.connect();
    send(
        &mut second,
        &encode(&sign_request(&rig.identity, b"second bytes")),
    );
    assert_eq!(recv(&mut second).as_deref(), Some(FAILURE));
    assert_eq!(recv(&mut first).as_deref(), Some(FAILURE));
    // Every event of both was sent before its answer.
    let seen = drain(&mut events);
    let position = |want: fn(&PromptEvent) -> bool| seen.iter().position(want).unwrap();
    let announced = position(|e| matches!(e, PromptEvent::Requested { .. }));
    let contention = position(|e| matches!(e, PromptEvent::Contention { .. }));
    assert!(announced < contention, "{seen:?}");
    let PromptEvent::Requested { id: b, message, .. } = &seen[announced] else {
        unreachable!()
    };
    assert!(
        message.contains("asks to sign unknown data, key SHA256:"),
        "{message}"
    );
    let mut denied: Vec<&String> = seen
        .iter()
        .filter_map(|e| match e {
            PromptEvent::Denied { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    denied.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(denied, want, "each refusal names the request announced");
    let mut receipts: Vec<String> = rig.receipts().into_iter().map(|r| r.id).collect();
    receipts.sort();
    assert_eq!(
        receipts.iter().collect::<Vec<_>>(),
        want,
        "and so does its receipt"
    );
    assert_eq!(rig.touches(), 0);
}

#[test]
fn a_request_under_a_grant_is_announced_under_its_receipt_id() {
    let (rig, mut events) = Rig::new("batch:3:60s:process".parse().unwrap(), AUTO);
    let mut client = rig.agent.connect();
    for data in [&b"one"[..], b"two"] {
        let answer = request(&mut client, &sign_request(&rig.identity, data));
        assert!(matches!(answer, Response::SignResponse(_)), "{answer:?}");
    }
    assert_eq!(rig.touches(), 1);
    let announced: Vec<String> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            PromptEvent::Requested { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    let receipts = rig.receipts();
    assert_eq!(
        receipts.iter().map(|r| r.outcome()).collect::<Vec<_>>(),
        [Outcome::Approved, Outcome::Granted]
    );
    assert_eq!(
        announced,
        receipts.into_iter().map(|r| r.id).collect::<Vec<_>>()
    );
}

/// OpenSSH's server, run by the client itself over a pipe (`sshd -i` as its ProxyCommand):
/// no port, no daemon, its own host key and configuration in the test's directory.
const SSHD: &str = "/usr/sbin/sshd";
const SSH: &str = "/usr/bin/ssh";

/// sshd can run here: it is installed, and as root its privilege separation directory exists
/// (sshd refuses to start as root without it; as any other user it needs none).
fn sshd_or_skipped(test: &str) -> bool {
    if !std::path::Path::new(SSHD).exists() {
        skipped(
            test,
            "install OpenSSH's server (Debian: openssh-server) to run it",
        );
        return false;
    }
    if nix::unistd::geteuid().is_root() && !std::path::Path::new("/run/sshd").is_dir() {
        skipped(
            test,
            "as root, sshd needs /run/sshd (mkdir -m 0755 /run/sshd)",
        );
        return false;
    }
    true
}

/// The `ssh` options of a login to the test's sshd as `user`, trusting only its host key.
fn ssh_options(dir: &std::path::Path, identity: &std::path::Path) -> Vec<String> {
    let d = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    [
        "-F".to_owned(),
        "none".to_owned(),
        "-o".to_owned(),
        "BatchMode=yes".to_owned(),
        "-o".to_owned(),
        "StrictHostKeyChecking=yes".to_owned(),
        "-o".to_owned(),
        format!("UserKnownHostsFile={}", d("known_hosts")),
        "-o".to_owned(),
        "HostKeyAlias=auths-test-host".to_owned(),
        "-o".to_owned(),
        "IdentitiesOnly=yes".to_owned(),
        "-o".to_owned(),
        format!("IdentityFile={}", identity.with_extension("pub").display()),
        "-o".to_owned(),
        format!("ProxyCommand={SSHD} -i -e -f {}", d("sshd_config")),
    ]
    .into()
}

#[test]
fn a_real_ssh_login_and_a_forwarded_one_name_the_host_key_sshd_signed_the_session_with() {
    const TEST: &str =
        "a_real_ssh_login_and_a_forwarded_one_name_the_host_key_sshd_signed_the_session_with";
    if !sshd_or_skipped(TEST) {
        return;
    }
    let (rig, mut events) = Rig::new(Policy::PerSignature, TouchMode::Manual);
    let dir = rig.dir.path();
    // The server: its own host key, our identity key authorized, nothing from /etc.
    let host = dir.join("ssh_host_ed25519_key");
    let mut gen = Command::new(SSH_KEYGEN);
    gen.args(["-q", "-t", "ed25519", "-N", "", "-f", s(&host)]);
    assert!(run_bounded(gen).status.success());
    let host_pub = std::fs::read_to_string(host.with_extension("pub")).unwrap();
    std::fs::write(
        dir.join("known_hosts"),
        format!("auths-test-host {host_pub}"),
    )
    .unwrap();
    std::fs::copy(
        rig.keys.ed25519.with_extension("pub"),
        dir.join("authorized_keys"),
    )
    .unwrap();
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "HostKey {}\nAuthorizedKeysFile {}\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             AllowAgentForwarding yes\nLogLevel ERROR\n",
            s(&host),
            s(&dir.join("authorized_keys"))
        ),
    )
    .unwrap();
    let host_fp = PublicKey::from_openssh(&host_pub)
        .unwrap()
        .fingerprint(HashAlg::Sha256)
        .to_string();
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name;
    // Log in with the agent forwarded, and from there log in again through it.
    let options = ssh_options(dir, &rig.keys.ed25519);
    let inner: Vec<String> = options.iter().map(|o| format!("'{o}'")).collect();
    let mut cmd = Command::new(SSH);
    cmd.args(&options)
        .args(["-A", &format!("{user}@auths-test-host")]);
    cmd.arg(format!(
        "{SSH} {} {user}@auths-test-host echo logged in twice",
        inner.join(" ")
    ));
    rig.agent.client_env(&mut cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(cmd.output());
    });
    let prompts = [
        format!("an ssh login as {user} to host key {host_fp} for "),
        format!("an ssh login as {user} to host key {host_fp} (forwarded from another host) for "),
    ];
    for want in &prompts {
        let PromptEvent::Pending { message, .. } =
            wait_event(&mut events, |e| matches!(e, PromptEvent::Pending { .. }))
        else {
            unreachable!()
        };
        assert!(message.contains(want.as_str()), "{message}\nwanted: {want}");
        rig.key.touch().unwrap();
    }
    let out = rx
        .recv_timeout(DEADLINE)
        .expect("ssh finished within the deadline")
        .expect("ssh could be run");
    assert!(out.status.success(), "{out:?}");
    // (A login shell's start-up files may print before it.)
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with("logged in twice\n"),
        "{out:?}"
    );
    assert_eq!(rig.touches(), 2);
    let receipts = rig.receipts();
    assert_eq!(receipts.len(), 2);
    for r in &receipts {
        assert_eq!(
            (r.outcome(), r.kind),
            (Outcome::Approved, PayloadKind::Userauth)
        );
    }
    assert!(rig.audit_verifies());
}
