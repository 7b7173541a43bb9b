//! Caller rules through the real socket, the real presence gate and the virtual key: a request
//! no rule allows is refused at once, without the key being asked for anything (its own touch
//! count and the watch stream show no pending touch); an allowed one gets its touch; a rule's
//! batch policy applies to what the rule matches only; a reload that brings a bad file keeps
//! the rules in force; README's example file parses and says what README says it does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use auths_presence::ctap::device::DeviceOptions;
use auths_presence::ctap::virtual_key::{HidTimings, PinConfig, TouchMode, VirtualKey};
use auths_presence::ctap::CtapError;
use auths_presence::presence::audit::Evidence;
use auths_presence::presence::audit::{verify_log, AuditLog, Outcome, Receipt};
use auths_presence::presence::enrollment::TokenStore;
use auths_presence::presence::pin_entry::{NoPinSource, PinSource};
use auths_presence::presence::policy::Policy;
use auths_presence::presence::presence_gate::UserVerification;
use auths_presence::presence::prompt::{PromptEvent, Prompter};
use auths_presence::presence::request::{PayloadKind, Requester};
use auths_presence::presence::rules::{Action, Query, Rules, RulesHolder, RULES_FILE};
use auths_presence::presence::touch::PresenceKey;
use p256::ecdsa::signature::Signer;
use ssh_agent_lib::proto::{Extension, Request, Response};
use ssh_key::{Algorithm, HashAlg, PrivateKey, PublicKey};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::broadcast::Receiver;

use super::support::agent::{Agent, Opts};
use super::support::cli::User;
use super::support::gate::{self, events_until, AUTO};
use super::support::openssh::{keygen, public_key, run_bounded, s, KeyFiles, SSH_KEYGEN};
use super::support::wire::{encode, login_data, recv, request, send, session_bind, sign_request};
use super::support::{short_tempdir, DEADLINE};

struct Rig {
    dir: tempfile::TempDir,
    home: PathBuf,
    rules_path: PathBuf,
    key: Arc<VirtualKey>,
    agent: Agent,
    keys: KeyFiles,
    identity: PublicKey,
    enrolled: u64,
}

impl Rig {
    /// An agent under `policy` whose gate applies the rules `rules` (written to a file and
    /// loaded as `auths agent start --rules FILE` does), over a virtual key that touches as
    /// `mode` says; the Ed25519 identity key is added and its private file removed.
    fn new(policy: Policy, mode: TouchMode, rules: &str) -> (Rig, Receiver<PromptEvent>) {
        Rig::build(policy, mode, rules, None)
    }

    /// [`Rig::new`] over a key with clientPIN set to `pin`, the gate asking `pins` for it when
    /// it must verify the user (its agent-wide `--uv` stays discouraged).
    fn build(
        policy: Policy,
        mode: TouchMode,
        rules: &str,
        pin: Option<(&str, gate::CountedPin)>,
    ) -> (Rig, Receiver<PromptEvent>) {
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
        let pin_config = pin.as_ref().map(|(p, _)| PinConfig {
            pin: Some(zeroize::Zeroizing::new(p.as_bytes().to_vec())),
            ..PinConfig::default()
        });
        let key = gate::start_key_with_pin(&dir.path().join("key.json"), AUTO, timings, pin_config);
        let enrolled = match &pin {
            Some((_, pins)) => gate::enroll_with_pins(&key, &home, options, &mut pins.clone()),
            None => gate::enroll(&key, &home, options),
        };
        key.set_touch_mode(mode);
        let opener = {
            let key = Arc::clone(&key);
            move || -> Result<Box<dyn PresenceKey>, CtapError> {
                Ok(Box::new(gate::open(&key, options)?))
            }
        };
        let rules_path = dir.path().join(RULES_FILE);
        std::fs::write(&rules_path, rules).unwrap();
        let holder = Arc::new(RulesHolder::new(rules_path.clone(), true));
        holder.reload().expect("the rules load");
        let prompter = Prompter::new(false);
        let events = prompter.subscribe();
        let pins: Box<dyn PinSource + Send> = match pin {
            Some((_, pins)) => Box::new(pins),
            None => Box::new(NoPinSource),
        };
        let gate = gate::presence_gate_with_uv(
            &home,
            opener,
            policy,
            DEADLINE + Duration::from_secs(1),
            prompter,
            None,
            (UserVerification::Discouraged, pins),
        )
        .with_rules(holder);
        let agent = Agent::start(Arc::new(gate), Opts::default());
        let keys = keygen(dir.path());
        agent.add(&[&keys.ed25519]);
        std::fs::remove_file(&keys.ed25519).unwrap();
        let rig = Rig {
            identity: public_key(&keys.ed25519),
            rules_path,
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

    /// A message file to sign.
    fn message(&self, name: &str) -> PathBuf {
        let msg = self.dir.path().join(name);
        std::fs::write(&msg, format!("tree {name}\n")).unwrap();
        msg
    }

    /// `ssh-keygen -Y sign -n NAMESPACE` over `msg` through the agent (not waited for).
    fn keygen_sign(&self, namespace: &str, msg: &Path) -> Command {
        let mut c = Command::new(SSH_KEYGEN);
        c.args([
            "-Y",
            "sign",
            "-n",
            namespace,
            "-f",
            s(&self.keys.ed25519.with_extension("pub")),
            s(msg),
        ]);
        self.agent.client_env(&mut c);
        c
    }

    /// Ask the agent for an extension by name; its raw answer.
    fn extension(&self, name: &str) -> Response {
        let mut c = self.agent.connect();
        request(
            &mut c,
            &Request::Extension(Extension {
                name: name.into(),
                details: Vec::new().into(),
            }),
        )
    }

    /// Reload through `reload@auths-presence`: (ok, message).
    fn reload(&self) -> (bool, String) {
        let Response::ExtensionResponse(e) = self.extension("reload@auths-presence") else {
            panic!("no answer to reload");
        };
        let a: auths_presence::agent::rules::ReloadAnswer = e.parse_message().unwrap().unwrap();
        (a.ok, a.message)
    }
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

fn is_pending(e: &PromptEvent) -> bool {
    matches!(e, PromptEvent::Pending { .. })
}

/// The one rule denial among `seen`, which holds no pending touch: (rule, reason, peer exe).
fn rule_denial(seen: &[PromptEvent]) -> (Option<String>, String, Option<String>) {
    assert!(!seen.iter().any(is_pending), "no touch asked: {seen:?}");
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, PromptEvent::Requested { .. })),
        "a refused request never reaches the gate's queue: {seen:?}"
    );
    let denials: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            PromptEvent::RuleDenied {
                rule, reason, peer, ..
            } => Some((rule.clone(), reason.clone(), peer.exe.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(denials.len(), 1, "{seen:?}");
    denials.into_iter().next().unwrap()
}

/// A Python agent client: it sends the sign request `ssh-keygen -Y sign -n NAMESPACE` would
/// (the same SSHSIG bytes over `msg`) and prints the answer's message type.
const PY_CLIENT: &str = r#"
import base64, hashlib, os, socket, struct, sys
def string(b): return struct.pack(">I", len(b)) + b
pub, msg, ns = sys.argv[1], sys.argv[2], sys.argv[3].encode()
blob = base64.b64decode(open(pub).read().split()[1])
digest = hashlib.sha512(open(msg, "rb").read()).digest()
data = b"SSHSIG" + string(ns) + string(b"") + string(b"sha512") + string(digest)
body = bytes([13]) + string(blob) + string(data) + struct.pack(">I", 0)
s = socket.socket(socket.AF_UNIX)
s.settimeout(60)
s.connect(os.environ["SSH_AUTH_SOCK"])
s.sendall(struct.pack(">I", len(body)) + body)
n = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
print(s.recv(n, socket.MSG_WAITALL)[0])
"#;

#[test]
fn only_ssh_keygen_for_namespace_git_gets_a_touch_others_are_refused_without_one() {
    // The executable as the kernel names it (a symlinked ssh-keygen resolves).
    let keygen_exe = std::fs::canonicalize(SSH_KEYGEN).unwrap();
    let rules = format!(
        r#"
[[rule]]
name = "git-signing"
exe = "{}"
namespace = "git"
action = "allow"

[[rule]]
name = "deny-all"
action = "deny"
"#,
        keygen_exe.display()
    );
    // The key waits for a touch that only the test gives: a request that reached the key would
    // hang here until the test touched it, and would show a pending touch.
    let (rig, mut events) = Rig::new(Policy::PerSignature, TouchMode::Manual, &rules);
    let msg = rig.message("commit");

    // A Python client asks for exactly the bytes ssh-keygen would: refused at once.
    let mut py = Command::new("python3");
    py.arg("-c")
        .arg(PY_CLIENT)
        .arg(rig.keys.ed25519.with_extension("pub"))
        .arg(&msg)
        .arg("git");
    rig.agent.client_env(&mut py);
    let out = run_bounded(py);
    assert!(out.status.success(), "python client: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "5",
        "SSH_AGENT_FAILURE"
    );
    let (rule, reason, exe) = rule_denial(&drain(&mut events));
    assert_eq!(rule.as_deref(), Some("rule 2 (deny-all)"));
    let exe = exe.expect("the python client's executable");
    assert!(exe.contains("python"), "{exe}");
    assert!(
        reason.starts_with(&format!("refused by rule 2 (deny-all): {exe} (pid "))
            && reason.contains("is not allowed to ask for an SSHSIG signature (namespace git)"),
        "{reason}"
    );
    assert_eq!(rig.touches(), 0);

    // ssh-keygen itself, for namespace file: refused at once too.
    let out = run_bounded(rig.keygen_sign("file", &msg));
    assert!(!out.status.success(), "namespace file was signed: {out:?}");
    let (rule, reason, exe) = rule_denial(&drain(&mut events));
    assert_eq!(rule.as_deref(), Some("rule 2 (deny-all)"));
    assert_eq!(exe.as_deref(), keygen_exe.to_str());
    assert!(reason.contains("(namespace file)"), "{reason}");
    assert_eq!(rig.touches(), 0);

    // ssh-keygen for namespace git: the key blinks for it, and one touch signs.
    let cmd = rig.keygen_sign("git", &msg);
    let signer = std::thread::spawn(move || run_bounded(cmd));
    let seen = events_until(&mut events, is_pending);
    let [PromptEvent::Requested { id: asked, .. }, PromptEvent::Pending {
        id, peer, message, ..
    }] = &seen[..]
    else {
        panic!("announced, then prompted: {seen:?}");
    };
    assert_eq!(asked, id);
    assert!(
        message.contains("(allowed by caller rule 1 (git-signing))"),
        "the prompt names the rule that let it ask: {message}"
    );
    assert_eq!(peer.exe.as_deref(), keygen_exe.to_str());
    rig.key.touch().unwrap();
    let out = signer.join().unwrap();
    assert!(out.status.success(), "ssh-keygen -n git: {out:?}");
    assert!(msg.with_extension("sig").exists(), "the signature file");
    assert_eq!(rig.touches(), 1);

    // The audit log: two denials naming the rule, then the touch, under the rule that allowed.
    let receipts = rig.receipts();
    let outcomes: Vec<_> = receipts
        .iter()
        .map(|r| (r.outcome(), r.rule.clone(), r.signed))
        .collect();
    assert_eq!(
        outcomes,
        [
            (Outcome::Denied, Some("rule 2 (deny-all)".to_owned()), false),
            (Outcome::Denied, Some("rule 2 (deny-all)".to_owned()), false),
            (
                Outcome::Approved,
                Some("rule 1 (git-signing)".to_owned()),
                true
            ),
        ]
    );
    assert!(receipts[0]
        .reason
        .as_deref()
        .is_some_and(|r| r.starts_with("refused by rule 2 (deny-all)")));
}

fn host_key() -> PrivateKey {
    PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap()
}

/// A connection bound to `host` for session `sid`, as ssh binds one after its key exchange.
fn bound(rig: &Rig, host: &PrivateKey, sid: &[u8]) -> std::os::unix::net::UnixStream {
    let mut c = rig.agent.connect();
    let signature = host.try_sign(sid).unwrap();
    let bind = session_bind(host.public_key(), sid, &signature, false);
    assert_eq!(request(&mut c, &bind), Response::Success);
    c
}

/// Send a sign request for `data` on `c`; true when it was signed.
fn signed(rig: &Rig, c: &mut std::os::unix::net::UnixStream, data: &[u8]) -> bool {
    send(c, &encode(&sign_request(&rig.identity, data)));
    let answer = recv(c).expect("an answer");
    matches!(
        ssh_encoding::Decode::decode(&mut &answer[..]),
        Ok(Response::SignResponse(_))
    )
}

fn sshsig(namespace: &str, n: u8) -> Vec<u8> {
    let string = |b: &[u8]| {
        let mut v = (b.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b);
        v
    };
    let mut d = b"SSHSIG".to_vec();
    d.extend(string(namespace.as_bytes()));
    d.extend(string(b""));
    d.extend(string(b"sha512"));
    d.extend(string(&[n; 64]));
    d
}

#[test]
fn a_batch_rule_for_ssh_logins_applies_to_logins_only() {
    let allowed = host_key();
    let other = host_key();
    let fp = allowed
        .public_key()
        .fingerprint(HashAlg::Sha256)
        .to_string();
    let rules = format!(
        r#"
[[rule]]
name = "logins"
kind = "userauth"
host_key = "{fp}"
action = "allow"
policy = "batch:5:10m:process"

[[rule]]
name = "signing"
kind = "sshsig"
action = "allow"

[[rule]]
name = "deny-all"
action = "deny"
"#
    );
    // The agent's own policy is per-signature: only the login rule opens a batch.
    let (rig, mut events) = Rig::new(Policy::PerSignature, AUTO, &rules);

    // Two logins to the allowed host, on two connections of this process: one touch.
    for (i, sid) in [[1u8; 32], [2u8; 32]].iter().enumerate() {
        let mut c = bound(&rig, &allowed, sid);
        let data = login_data(sid, "git", &rig.identity, Some(allowed.public_key()));
        assert!(signed(&rig, &mut c, &data), "login {i}");
    }
    assert_eq!(rig.touches(), 1, "the second login used the batch");
    let seen = drain(&mut events);
    let approved = |e: &PromptEvent| matches!(e, PromptEvent::Approved { .. });
    assert_eq!(seen.iter().filter(|e| approved(e)).count(), 1, "{seen:?}");
    assert!(
        seen.iter()
            .any(|e| matches!(e, PromptEvent::Granted { remaining: 3, .. })),
        "{seen:?}"
    );

    // SSHSIG signatures from the same process: the batch does not reach them; each a touch.
    let mut c = rig.agent.connect();
    assert!(signed(&rig, &mut c, &sshsig("git", 1)));
    assert!(signed(&rig, &mut c, &sshsig("git", 2)));
    assert_eq!(
        rig.touches(),
        3,
        "per signature, as the agent's policy says"
    );

    // A login to a host key no rule lists: refused at once, without a touch.
    let sid = [3u8; 32];
    let mut c = bound(&rig, &other, &sid);
    drain(&mut events);
    let data = login_data(&sid, "git", &rig.identity, Some(other.public_key()));
    assert!(!signed(&rig, &mut c, &data));
    let (rule, reason, _) = rule_denial(&drain(&mut events));
    assert_eq!(rule.as_deref(), Some("rule 3 (deny-all)"));
    let other_fp = other.public_key().fingerprint(HashAlg::Sha256).to_string();
    assert!(
        reason.contains(&format!("an ssh login to host key {other_fp}")),
        "{reason}"
    );
    assert_eq!(rig.touches(), 3);
    // Receipts name the rule that decided each request.
    let rules_named: Vec<_> = rig.receipts().into_iter().map(|r| r.rule).collect();
    let named = |s: &str| Some(s.to_owned());
    assert_eq!(
        rules_named,
        [
            named("rule 1 (logins)"),
            named("rule 1 (logins)"),
            named("rule 2 (signing)"),
            named("rule 2 (signing)"),
            named("rule 3 (deny-all)"),
        ]
    );
    // And the log verifies offline: the login grant was used under the rule that opened it.
    let lines = AuditLog::new(&rig.home).read().unwrap();
    let tokens = TokenStore::open(&rig.home).unwrap().list().unwrap();
    let report = verify_log(&lines, &tokens);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!((report.approved, report.granted, report.denied), (3, 1, 1));
    // A grant use that names another rule than the touch that opened it does not verify.
    let mut forged = lines.clone();
    if let Some((_, Ok(r))) = forged.get_mut(1) {
        assert_eq!(r.outcome(), Outcome::Granted);
        r.rule = Some("rule 2 (signing)".into());
    }
    let report = verify_log(&forged, &tokens);
    assert_eq!(
        report
            .problems
            .iter()
            .filter_map(|p| p.problem.as_deref())
            .collect::<Vec<_>>(),
        ["used a grant opened under another caller rule"]
    );
}

#[test]
fn a_bad_rules_file_on_reload_keeps_the_rules_in_force() {
    use std::os::unix::fs::PermissionsExt;
    let only_git = "[[rule]]\nnamespace = \"git\"\naction = \"allow\"\n";
    let (rig, mut events) = Rig::new(Policy::PerSignature, AUTO, only_git);
    let mut c = rig.agent.connect();
    let refused_file =
        |c: &mut std::os::unix::net::UnixStream, n| !signed(&rig, c, &sshsig("file", n));
    assert!(refused_file(&mut c, 1), "namespace file: no rule allows it");
    assert!(signed(&rig, &mut c, &sshsig("git", 1)));

    // A file that does not parse: refused with its reason, the old rules stay.
    std::fs::write(
        &rig.rules_path,
        "[[rule]]\nnamespace = \"file\"\naction = \"allow\"\ncolour = \"red\"\n",
    )
    .unwrap();
    let (ok, message) = rig.reload();
    assert!(!ok);
    assert!(
        message.contains("does not parse") && message.contains("unchanged"),
        "{message}"
    );
    assert!(refused_file(&mut c, 2));
    assert!(signed(&rig, &mut c, &sshsig("git", 2)));

    // A good file that others may write: refused too, saying why.
    std::fs::write(
        &rig.rules_path,
        "[[rule]]\nnamespace = [\"git\", \"file\"]\naction = \"allow\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&rig.rules_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (ok, message) = rig.reload();
    assert!(!ok);
    assert!(
        message.contains("group or others may write it"),
        "{message}"
    );
    assert!(refused_file(&mut c, 3));

    // Fixed: taken, and in force for the next request.
    std::fs::set_permissions(&rig.rules_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, message) = rig.reload();
    assert!(ok, "{message}");
    assert!(message.starts_with("1 caller rule from"), "{message}");
    assert!(signed(&rig, &mut c, &sshsig("file", 4)));
    let Response::ExtensionResponse(e) = rig.extension("rules@auths-presence") else {
        panic!("no rules answer");
    };
    let answer: auths_presence::agent::rules::RulesAnswer = e.parse_message().unwrap().unwrap();
    assert_eq!(answer.generation, 2, "two loads were taken");
    assert!(answer
        .source
        .is_some_and(|s| s.contains("[\"git\", \"file\"]")));
    drain(&mut events);
}

/// README's example rules file: the ```toml block of its "Caller rules" section.
fn readme_rules() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("\n## Caller rules")
        .nth(1)
        .expect("README has a Caller rules section");
    let block = section
        .split("```toml\n")
        .nth(1)
        .expect("the section has a toml block");
    block.split("```").next().unwrap().to_owned()
}

#[test]
fn readme_example_rules_parse_and_do_what_readme_says() {
    let rules = Rules::parse(&readme_rules()).expect("README's rules parse");
    let decide = |exe: &str, parent: Option<&str>, kind, ns: Option<&str>, host: Option<&str>| {
        let r = Requester {
            parent_exe: parent.map(str::to_owned),
            parent_pid: Some(1),
            ..Requester::process(1000, 2, exe)
        };
        let q = Query {
            key_fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            key_comment: None,
            requester: &r,
            kind,
            namespace: ns,
            host_key: host,
        };
        rules.first_match(&q).map(|m| m.action.clone())
    };
    let per_signature = Some(Action::Allow {
        policy: Some(Policy::PerSignature),
        uv_required: false,
    });
    // git signing by ssh-keygen children of git, per signature.
    assert_eq!(
        decide(
            "/usr/bin/ssh-keygen",
            Some("/usr/bin/git"),
            PayloadKind::Sshsig,
            Some("git"),
            None
        ),
        per_signature
    );
    // ssh-keygen run by anything else, or for another namespace: denied.
    for (parent, ns) in [
        (Some("/usr/bin/python3"), "git"),
        (Some("/usr/bin/git"), "file"),
    ] {
        assert_eq!(
            decide(
                "/usr/bin/ssh-keygen",
                parent,
                PayloadKind::Sshsig,
                Some(ns),
                None
            ),
            Some(Action::Deny),
            "{parent:?} {ns}"
        );
    }
    // ssh logins by /usr/bin/ssh to the two listed host keys, in a 10-minute batch.
    let hosts: Vec<String> = rules
        .rules()
        .iter()
        .flat_map(|r| r.host_keys.clone())
        .collect();
    assert_eq!(hosts.len(), 2, "two host keys");
    for h in &hosts {
        let Some(Action::Allow {
            policy: Some(Policy::Batch { ttl, .. }),
            ..
        }) = decide("/usr/bin/ssh", None, PayloadKind::Userauth, None, Some(h))
        else {
            panic!("a login to {h} is not a batch");
        };
        assert_eq!(ttl, Duration::from_secs(600));
    }
    // Anything else: denied.
    assert_eq!(
        decide(
            "/usr/bin/ssh",
            None,
            PayloadKind::Userauth,
            None,
            Some("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU")
        ),
        Some(Action::Deny)
    );
    assert_eq!(
        decide("/usr/bin/python3", None, PayloadKind::Other, None, None),
        Some(Action::Deny)
    );
}

#[test]
fn rules_test_says_which_rule_matches_without_an_agent() {
    let user = User::new();
    std::fs::create_dir_all(&user.home).unwrap();
    let file = user.dir.join("rules.toml");
    std::fs::write(&file, readme_rules()).unwrap();
    let v = user.json(&[
        "agent",
        "rules",
        "test",
        "--rules",
        s(&file),
        "--exe",
        "/usr/bin/ssh-keygen",
        "--parent",
        "/usr/bin/git",
        "--namespace",
        "git",
        "--json",
    ]);
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["kind"], "sshsig");
    assert_eq!(v["rule"]["action"], "allow");
    assert_eq!(v["rule"]["policy"], "per-signature");
    let v = user.json(&[
        "agent",
        "rules",
        "test",
        "--rules",
        s(&file),
        "--exe",
        "/usr/bin/python3",
        "--namespace",
        "git",
        "--json",
    ]);
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["rule"]["action"], "deny");
    let out = user.auths(&[
        "agent",
        "rules",
        "test",
        "--rules",
        s(&file),
        "--exe",
        "/usr/bin/python3",
        "--namespace",
        "git",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("refused at once, without a touch"), "{text}");
    // A file others may write is refused with the reason.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = user.auths(&[
        "agent",
        "rules",
        "test",
        "--rules",
        s(&file),
        "--exe",
        "/usr/bin/ssh",
    ]);
    assert!(!out.status.success());
    assert!(
        super::support::cli::stderr(&out).contains("group or others may write it"),
        "{out:?}"
    );
}

#[test]
fn the_binary_lists_reloads_on_request_and_on_sighup_and_refuses_a_bad_file_at_start() {
    use super::support::cli::{stderr, Sim};
    use super::support::wait_until;
    let user = User::new();
    let sim = Sim::start(&user.dir, "key", &[]);
    let dev = sim.device();
    user.ok(&["token", "enroll", "--device", &dev]);
    let rules_file = user.home.join(RULES_FILE);
    let sock = user.home.join("a.sock");
    let sock_s = s(&sock);

    // A file that does not parse stops the start, saying why.
    std::fs::write(&rules_file, "[[rule]]\naction = \"perhaps\"\n").unwrap();
    let out = user.auths(&["agent", "start", "--socket", sock_s, "--device", &dev]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("rule 1: action \"perhaps\" is not allow or deny"),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        &rules_file,
        "[[rule]]\nname = \"git\"\nnamespace = \"git\"\naction = \"allow\"\n",
    )
    .unwrap();
    user.ok(&["agent", "start", "--socket", sock_s, "--device", &dev]);
    struct Stop<'a>(&'a User, &'a str);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = self.0.auths(&["agent", "stop", "--socket", self.1]);
        }
    }
    let _stop = Stop(&user, sock_s);
    let listed = |user: &User| user.json(&["agent", "rules", "--json", "--socket", sock_s]);
    let v = listed(&user);
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["rules"][0]["name"], "git");
    assert_eq!(v["rules"][0]["namespace"][0], "git");
    let v = user.json(&[
        "agent",
        "rules",
        "test",
        "--socket",
        sock_s,
        "--exe",
        "/usr/bin/env",
        "--namespace",
        "file",
        "--json",
    ]);
    assert_eq!(v["allowed"], false, "the agent's rules allow git only: {v}");

    // A bad file on reload: refused with the reason, the old rules stay.
    std::fs::write(&rules_file, "[[rule]]\nexe = \"ssh\"\naction = \"allow\"\n").unwrap();
    let out = user.auths(&["agent", "reload", "--socket", sock_s]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("exe \"ssh\" is not an absolute path")
            && stderr(&out).contains("the rules in force are unchanged"),
        "{}",
        stderr(&out)
    );
    assert_eq!(listed(&user)["rules"][0]["name"], "git");

    // A good one, by SIGHUP: the agent reloads and keeps running.
    std::fs::write(
        &rules_file,
        "[[rule]]\nname = \"files\"\nnamespace = \"file\"\naction = \"allow\"\n",
    )
    .unwrap();
    let pid: i32 = std::fs::read_to_string(format!("{sock_s}.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_until("the agent reloads its rules on SIGHUP", || {
        listed(&user)["rules"][0]["name"] == "files"
    });
    let v = user.json(&["agent", "reload", "--socket", sock_s, "--json"]);
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("1 caller rule from"),
        "{v}"
    );
    assert!(user
        .auths(&["agent", "status", "--socket", sock_s])
        .status
        .success());
}

#[test]
fn a_rule_with_uv_required_has_the_key_verify_the_user_for_what_it_matches_only() {
    let rules = r#"
[[rule]]
name = "files"
namespace = "file"
action = "allow"
uv = "required"

[[rule]]
name = "git"
namespace = "git"
action = "allow"
"#;
    let pins = gate::CountedPin::new("2468");
    let (rig, _events) = Rig::build(
        Policy::PerSignature,
        AUTO,
        rules,
        Some(("2468", pins.clone())),
    );
    let asked_at_enrollment = pins.asked();
    let mut c = rig.agent.connect();
    assert!(signed(&rig, &mut c, &sshsig("git", 1)));
    assert_eq!(pins.asked(), asked_at_enrollment, "git: a touch, no PIN");
    assert!(signed(&rig, &mut c, &sshsig("file", 1)));
    assert_eq!(pins.asked(), asked_at_enrollment + 1, "file: the PIN too");
    let verified: Vec<_> = rig
        .receipts()
        .iter()
        .map(|r| match &r.evidence {
            Evidence::Approved { user_verified, .. } => (r.rule.clone().unwrap(), *user_verified),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        verified,
        [
            ("rule 2 (git)".to_owned(), false),
            ("rule 1 (files)".to_owned(), true)
        ]
    );
}

#[test]
fn install_service_passes_a_rules_file_it_checked_and_refuses_a_bad_one() {
    use crate::support::cli::{stderr, User};
    use std::os::unix::fs::PermissionsExt;
    let user = User::new();
    let good = user.dir.join("rules.toml");
    std::fs::write(&good, "[[rule]]\nname = \"deny-all\"\naction = \"deny\"\n").unwrap();
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = |file: &Path| {
        vec![
            "agent".to_owned(),
            "install-service".into(),
            "--print".into(),
            "--manager".into(),
            "systemd".into(),
            "--rules".into(),
            file.display().to_string(),
            "--require-attested".into(),
        ]
    };
    let run = |file: &Path| {
        let a = args(file);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        user.auths(&a)
    };
    let out = run(&good);
    assert!(out.status.success(), "{}", stderr(&out));
    let unit = String::from_utf8_lossy(&out.stdout);
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(
        exec.contains(&format!(" --rules {}", good.display()))
            && exec.ends_with(" --require-attested"),
        "{exec}"
    );
    let bad = user.dir.join("bad.toml");
    std::fs::write(&bad, "[[rule]]\naction = \"maybe\"\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(&bad);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the caller rules file"),
        "{}",
        stderr(&out)
    );
}
