//! The agent through its real Unix socket: socket hardening, real OpenSSH `ssh-add` and
//! `ssh-keygen`, framing limits, cross-user rejection, the unlock window (with an injected
//! clock, never sleeping), and the gate's refusal and cancellation paths.
//!
//! An `Approval` can only be built by `presence`, so no test here makes a signature: the sign
//! path is exercised up to the gate (which refuses, or never answers).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use auths_presence::agent::codec::{MAX_MESSAGE_LEN, WIPE_EXTENSION};
use auths_presence::agent::keys::UnlockPolicy;
use auths_presence::agent::server::{bind, serve, AgentConfig};
use auths_presence::agent::AgentError;
use auths_presence::presence::gate::{ApproveFuture, Gate, GateError};
use auths_presence::presence::request::ApprovalRequest;
use auths_presence::secure_fs::SecureFsError;
use sha2::Digest as _;
use ssh_agent_lib::proto::{Extension, Request, Response};
use ssh_encoding::Decode;

use super::support::agent::{runtime, Agent, Opts};
use super::support::openssh::{
    ecdsa_key_with_short_scalar, keygen, p256_short_scalar, public_key, run_bounded, s, KeyFiles,
    SSH_KEYGEN,
};
use super::support::wire::{
    closed, encode, recv, request, send, sign_request, FAILURE, LIST, NO_IDENTITIES,
};
use super::support::{short_tempdir, skipped, wait_until, DEADLINE};

const MIN: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Gates

/// A gate whose key is never touched: every approval times out.
#[derive(Default)]
struct NeverTouched {
    requests: Mutex<Vec<ApprovalRequest>>,
}

impl Gate for NeverTouched {
    fn approve(&self, request: ApprovalRequest) -> ApproveFuture<'_> {
        self.requests.lock().unwrap().push(request);
        Box::pin(async { Err(GateError::TouchTimeout(Duration::from_secs(30))) })
    }
}

/// A gate whose touch stays pending forever; reports when approval starts and when the pending
/// future is dropped (the agent cancelled it).
struct PendingTouch {
    events: Mutex<mpsc::Sender<&'static str>>,
}

struct OnDrop(mpsc::Sender<&'static str>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = self.0.send("cancelled");
    }
}

impl Gate for PendingTouch {
    fn approve(&self, _request: ApprovalRequest) -> ApproveFuture<'_> {
        let tx = self.events.lock().unwrap().clone();
        let _ = tx.send("pending");
        let guard = OnDrop(tx);
        Box::pin(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Err(GateError::Cancelled)
        })
    }
}

/// A gate that refuses, but only when the test releases it; reports when approval starts.
struct RefuseWhenReleased {
    events: Mutex<mpsc::Sender<&'static str>>,
    release: Arc<tokio::sync::Notify>,
}

impl Gate for RefuseWhenReleased {
    fn approve(&self, _request: ApprovalRequest) -> ApproveFuture<'_> {
        let _ = self.events.lock().unwrap().send("pending");
        let release = Arc::clone(&self.release);
        Box::pin(async move {
            release.notified().await;
            Err(GateError::TouchTimeout(Duration::from_secs(30)))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Socket hardening

/// A directory `name` in `t` with `mode`, where a test will ask [`bind`] for a socket.
fn dir_with_mode(t: &tempfile::TempDir, name: &str, mode: u32) -> std::path::PathBuf {
    let dir = t.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

#[test]
fn socket_dir_is_created_0700_and_socket_is_0600() {
    let rt = runtime();
    let t = short_tempdir();
    let path = t.path().join("new/agent.sock");
    let _enter = rt.enter();
    let _listener = bind(&path).unwrap();
    let dir_mode = std::fs::metadata(t.path().join("new"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let sock_mode = std::fs::symlink_metadata(&path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(sock_mode & 0o777, 0o600);
}

#[test]
fn loose_socket_dir_is_refused() {
    let rt = runtime();
    let t = short_tempdir();
    let dir = dir_with_mode(&t, "loose", 0o755);
    let _enter = rt.enter();
    let err = bind(&dir.join("agent.sock")).unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::SecureFs(SecureFsError::LoosePermissions { .. })
        ),
        "{err}"
    );
    // What happened, with the numbers; what to do is the CLI's (`cli_agent` checks it).
    assert!(
        err.to_string().contains("mode 755") && err.to_string().contains("700"),
        "says what is wrong: {err}"
    );
    assert!(!dir.join("agent.sock").exists());
}

#[test]
fn symlinked_socket_dir_is_refused() {
    let rt = runtime();
    let t = short_tempdir();
    let real = dir_with_mode(&t, "real", 0o700);
    let link = t.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let _enter = rt.enter();
    let err = bind(&link.join("agent.sock")).unwrap_err();
    assert!(
        matches!(err, AgentError::SecureFs(SecureFsError::Symlink(_))),
        "{err}"
    );
    assert!(!real.join("agent.sock").exists());
}

/// True when running as root; otherwise says that `test` skipped (it needs root to `what`).
fn root_or_skipped(test: &str, what: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        skipped(
            test,
            &format!("needs root to {what}; run the tests as root to check it"),
        );
    }
    root
}

#[test]
fn foreign_owned_socket_dir_is_refused() {
    if !root_or_skipped(
        "foreign_owned_socket_dir_is_refused",
        "chown a directory to another user",
    ) {
        return;
    }
    let rt = runtime();
    let t = short_tempdir();
    let dir = dir_with_mode(&t, "theirs", 0o700);
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let _enter = rt.enter();
    let err = bind(&dir.join("agent.sock")).unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::SecureFs(SecureFsError::ForeignOwner { owner: 65534, .. })
        ),
        "{err}"
    );
}

#[test]
fn live_agent_is_not_stolen() {
    let agent = Agent::start(Arc::new(NeverTouched::default()), Opts::default());
    let err = {
        let _enter = agent.rt.enter();
        bind(&agent.path).unwrap_err()
    };
    assert!(matches!(err, AgentError::AlreadyRunning(_)), "{err}");
    // What happened, and where; what to do is the CLI's (`cli_agent` checks it).
    assert!(
        err.to_string().contains(&agent.path.display().to_string()),
        "{err}"
    );
    // The first agent still serves.
    let mut c = agent.connect();
    send(&mut c, LIST);
    assert_eq!(recv(&mut c).unwrap(), NO_IDENTITIES);
}

#[test]
fn stale_socket_is_replaced_but_other_files_are_not() {
    let rt = runtime();
    let t = short_tempdir();
    let dir = dir_with_mode(&t, "s", 0o700);
    let path = dir.join("agent.sock");
    // A socket file with nobody listening: what a crashed agent leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let _enter = rt.enter();
    let listener = bind(&path).unwrap();
    drop(listener);

    let file = dir.join("not-a-socket");
    std::fs::write(&file, b"precious").unwrap();
    let err = bind(&file).unwrap_err();
    assert!(matches!(err, AgentError::NotASocket(_)), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
}

#[test]
fn serve_removes_its_socket_and_closes_connections_on_shutdown() {
    let rt = runtime();
    let t = short_tempdir();
    let path = t.path().join("s/agent.sock");
    let config = AgentConfig::new(&path);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(serve(
        config,
        Arc::new(NeverTouched::default()),
        async move {
            let _ = stopped.await;
        },
    ));
    wait_until("the agent listens", || UnixStream::connect(&path).is_ok());
    let mut c = UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    send(&mut c, LIST);
    assert_eq!(recv(&mut c).unwrap(), NO_IDENTITIES);
    stop.send(()).unwrap();
    let result = rt
        .block_on(async { tokio::time::timeout(DEADLINE, task).await })
        .expect("serve returns within the deadline")
        .unwrap();
    assert!(result.is_ok());
    assert!(closed(&mut c), "the idle connection is closed at shutdown");
    assert!(!path.exists(), "the socket is removed");
}

// ---------------------------------------------------------------------------------------------
// Real ssh-add

#[test]
fn ssh_add_list_remove_and_lifetime() {
    let agent = Agent::start(Arc::new(NeverTouched::default()), Opts::default());
    let keys = keygen(agent.dir.path());

    agent.add(&[&keys.ed25519, &keys.ecdsa]);
    let listed = agent.listed();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed.iter().any(|l| l.ends_with("(ED25519)")),
        "{listed:?}"
    );
    assert!(listed.iter().any(|l| l.ends_with("(ECDSA)")), "{listed:?}");

    // -L prints the public keys exactly as ssh-keygen wrote them.
    let out = agent.ssh_add(&["-L"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    for k in [&keys.ed25519, &keys.ecdsa] {
        let pubfile = std::fs::read_to_string(k.with_extension("pub")).unwrap();
        assert!(stdout.contains(pubfile.trim()), "{stdout} lacks {pubfile}");
    }

    // -d removes one.
    let out = agent.ssh_add(&["-d", s(&keys.ed25519)]);
    assert!(out.status.success(), "{out:?}");
    let listed = agent.listed();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].ends_with("(ECDSA)"));
    // Removing it again fails.
    assert!(!agent.ssh_add(&["-d", s(&keys.ed25519)]).status.success());

    // -D removes all.
    assert!(agent.ssh_add(&["-D"]).status.success());
    assert!(agent.listed().is_empty());

    // -t: the lifetime constraint is accepted and honoured (time is moved, not waited for);
    // -c: the confirm constraint is accepted (the gate is the confirmation).
    let out = agent.ssh_add(&["-t", "60", s(&keys.ed25519)]);
    assert!(out.status.success(), "{out:?}");
    let out = agent.ssh_add(&["-c", s(&keys.ecdsa)]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(agent.listed().len(), 2);
    agent.clock.advance(Duration::from_secs(59));
    assert_eq!(agent.listed().len(), 2);
    agent.clock.advance(Duration::from_secs(1));
    let listed = agent.listed();
    assert_eq!(listed.len(), 1, "the 60 s key is gone: {listed:?}");
    assert!(listed[0].ends_with("(ECDSA)"));
}

#[test]
fn ssh_add_lock_seals_keys_and_unlock_needs_the_passphrase() {
    let agent = Agent::start(Arc::new(NeverTouched::default()), Opts::default());
    let keys = keygen(agent.dir.path());
    agent.add(&[&keys.ed25519, &keys.ecdsa]);
    let good = agent.askpass("good", "correct horse battery");
    let bad = agent.askpass("bad", "wrong horse");

    let out = agent.ssh_add_askpass(&["-x"], &good);
    assert!(out.status.success(), "{out:?}");
    assert!(agent.state.keys().is_locked());
    assert_eq!(agent.state.keys().len(), 0, "no plaintext key while locked");
    assert!(agent.listed().is_empty(), "a locked agent lists nothing");
    // Adding while locked fails.
    assert!(!agent.ssh_add(&[s(&keys.ed25519)]).status.success());
    // Locking twice fails.
    assert!(!agent.ssh_add_askpass(&["-x"], &good).status.success());

    let out = agent.ssh_add_askpass(&["-X"], &bad);
    assert!(!out.status.success(), "wrong passphrase must fail: {out:?}");
    assert!(agent.state.keys().is_locked());
    assert!(
        agent.listed().is_empty(),
        "a wrong passphrase restores nothing"
    );

    let out = agent.ssh_add_askpass(&["-X"], &good);
    assert!(out.status.success(), "{out:?}");
    assert!(!agent.state.keys().is_locked());
    assert_eq!(agent.listed().len(), 2, "both keys are back");
    // Unlocking an unlocked agent fails.
    assert!(!agent.ssh_add_askpass(&["-X"], &good).status.success());
}

#[test]
fn idle_timeout_wipes_keys() {
    let agent = Agent::start(Arc::new(NeverTouched::default()), Opts::default());
    let keys = keygen(agent.dir.path());
    agent.add(&[&keys.ed25519]);
    agent.clock.advance(29 * MIN);
    assert_eq!(agent.listed().len(), 1, "listing is not activity");
    agent.clock.advance(MIN);
    assert!(agent.listed().is_empty(), "30 min idle: wiped");
}

#[test]
fn absolute_cap_wipes_keys_before_the_idle_timeout() {
    // The idle timeout (which slides with signatures only) is longer than the cap here, so
    // only the cap can wipe.
    let policy = UnlockPolicy {
        idle_timeout: 90 * MIN,
        max_unlock: 60 * MIN,
        max_signatures: None,
    };
    let agent = Agent::start(
        Arc::new(NeverTouched::default()),
        Opts {
            policy,
            ..Opts::default()
        },
    );
    let keys = keygen(agent.dir.path());
    agent.add(&[&keys.ed25519]);
    for _ in 0..2 {
        agent.clock.advance(25 * MIN);
        agent.add(&[&keys.ecdsa]);
    }
    assert_eq!(agent.listed().len(), 2);
    agent.clock.advance(10 * MIN);
    assert!(agent.listed().is_empty(), "1 h cap reached: wiped");
}

#[test]
fn lock_extension_wipes_everything_and_query_lists_extensions() {
    let agent = Agent::start(Arc::new(NeverTouched::default()), Opts::default());
    let keys = keygen(agent.dir.path());
    agent.add(&[&keys.ed25519]);
    let mut c = agent.connect();

    let query = Request::Extension(Extension {
        name: "query".into(),
        details: Vec::new().into(),
    });
    match request(&mut c, &query) {
        Response::ExtensionResponse(ext) => {
            assert_eq!(ext.name, "query");
            let list = ext
                .parse_message::<ssh_agent_lib::proto::extension::QueryResponse>()
                .unwrap()
                .unwrap();
            assert!(list.extensions.iter().any(|e| e == WIPE_EXTENSION));
        }
        other => panic!("query answered {other:?}"),
    }
    let unknown = Request::Extension(Extension {
        name: "nonsense@example.com".into(),
        details: Vec::new().into(),
    });
    assert_eq!(request(&mut c, &unknown), Response::Failure);

    let wipe = Request::Extension(Extension {
        name: WIPE_EXTENSION.into(),
        details: Vec::new().into(),
    });
    assert_eq!(request(&mut c, &wipe), Response::Success);
    assert!(agent.listed().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Framing: oversized, malformed, slow

#[test]
fn oversized_message_gets_failure_and_close_others_keep_working() {
    let agent = Agent::start(Arc::new(NeverTouched::default()), Opts::default());
    let mut other = agent.connect();
    let mut c = agent.connect();
    c.write_all(&(MAX_MESSAGE_LEN + 1).to_be_bytes()).unwrap();
    assert_eq!(recv(&mut c).unwrap(), FAILURE);
    assert!(closed(&mut c), "the oversized connection is closed");

    send(&mut other, LIST);
    assert_eq!(recv(&mut other).unwrap(), NO_IDENTITIES);
    assert!(agent.listed().is_empty());
}

#[test]
fn largest_allowed_message_is_read_and_refused_without_closing() {
    let agent = Agent::start(Arc::new(NeverTouched::default()), Opts::default());
    let mut c = agent.connect();
    let body = vec![0u8; MAX_MESSAGE_LEN as usize];
    send(&mut c, &body);
    assert_eq!(recv(&mut c).unwrap(), FAILURE);
    send(&mut c, LIST);
    assert_eq!(recv(&mut c).unwrap(), NO_IDENTITIES);
}

#[test]
fn malformed_messages_get_failure_and_the_connection_stays_usable() {
    let agent = Agent::start(Arc::new(NeverTouched::default()), Opts::default());
    let mut c = agent.connect();
    let cases: &[&[u8]] = &[
        &[],                                 // no type byte
        &[200],                              // unknown type
        &[20, 0, 0, 0, 2, b'i'],             // smartcard add, truncated
        &[13, 0, 0, 0, 50, 1, 2, 3],         // sign request whose key blob is truncated
        &[17, 0, 0, 0, 11, b's', b's'],      // add identity, truncated algorithm name
        &[17, 0, 0, 0, 3, b'f', b'o', b'o'], // add identity, unknown algorithm
        &[11, 0],                            // trailing byte after a valid request
        &[22],                               // lock without a passphrase
        &[0xff; 64],                         // noise
    ];
    for body in cases {
        send(&mut c, body);
        assert_eq!(recv(&mut c).unwrap(), FAILURE, "body {body:?}");
    }
    send(&mut c, LIST);
    assert_eq!(recv(&mut c).unwrap(), NO_IDENTITIES);
    // Smartcard requests are decoded fine but unsupported.
    let sc = Request::RemoveSmartcardKey(ssh_agent_lib::proto::SmartcardKey {
        id: "pkcs11".into(),
        pin: String::from("1234").into(),
    });
    assert_eq!(request(&mut c, &sc), Response::Failure);
}

#[test]
fn slow_loris_is_dropped_while_others_are_served() {
    let agent = Agent::start(
        Arc::new(NeverTouched::default()),
        Opts {
            read_timeout: Duration::from_millis(300),
            ..Opts::default()
        },
    );
    // An idle connection (no byte sent) is not a slow-loris: it must survive.
    let mut idle = agent.connect();
    // Stalls inside the body.
    let mut in_body = agent.connect();
    in_body.write_all(&[0, 0, 0, 5, 11]).unwrap();
    // Stalls inside the length prefix.
    let mut in_header = agent.connect();
    in_header.write_all(&[0, 0]).unwrap();

    // Others are served meanwhile.
    assert!(agent.listed().is_empty());
    let mut other = agent.connect();
    send(&mut other, LIST);
    assert_eq!(recv(&mut other).unwrap(), NO_IDENTITIES);

    let started = Instant::now();
    assert!(closed(&mut in_body), "a stalled message is dropped");
    assert!(closed(&mut in_header), "a stalled length prefix is dropped");
    assert!(started.elapsed() < DEADLINE);

    // Both stalls outlived the read timeout; the idle connection still works.
    send(&mut idle, LIST);
    assert_eq!(recv(&mut idle).unwrap(), NO_IDENTITIES);
}

// ---------------------------------------------------------------------------------------------
// Cross-user

/// Fork a child that becomes uid/gid 65534 (nobody), connects to `path`, sends a request and
/// reports: 0 closed without an answer, 1 got an answer, 2 could not connect, 3 setuid failed.
/// Only async-signal-safe calls after fork.
#[cfg(target_os = "linux")]
fn connect_as_nobody(path: &std::path::Path) -> i32 {
    use nix::libc;
    use std::os::unix::ffi::OsStrExt;

    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    assert!(bytes.len() < addr.sun_path.len());
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let request: [u8; 5] = [0, 0, 0, 1, 11];
    let timeout = libc::timeval {
        tv_sec: 10,
        tv_usec: 0,
    };

    // SAFETY: the child runs only async-signal-safe system calls on memory prepared before the
    // fork and leaves with _exit; the parent only waits for it.
    match unsafe { nix::unistd::fork() }.unwrap() {
        // SAFETY: raw system calls on stack values owned by this frame, then _exit.
        nix::unistd::ForkResult::Child => unsafe {
            let code = (|| {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(65534) != 0
                    || libc::setuid(65534) != 0
                {
                    return 3;
                }
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                if fd < 0 {
                    return 4;
                }
                if libc::connect(
                    fd,
                    (&addr as *const libc::sockaddr_un).cast(),
                    std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
                ) != 0
                {
                    return 2;
                }
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&timeout as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                );
                libc::send(
                    fd,
                    request.as_ptr().cast(),
                    request.len(),
                    libc::MSG_NOSIGNAL,
                );
                let mut buf = [0u8; 16];
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n == 0 {
                    0
                } else if n > 0 {
                    1
                } else if *libc::__errno_location() == libc::ECONNRESET {
                    0
                } else {
                    5
                }
            })();
            libc::_exit(code)
        },
        nix::unistd::ForkResult::Parent { child } => {
            match nix::sys::wait::waitpid(child, None).unwrap() {
                nix::sys::wait::WaitStatus::Exited(_, code) => code,
                other => panic!("child ended with {other:?}"),
            }
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn other_users_are_refused_at_accept() {
    if !root_or_skipped(
        "other_users_are_refused_at_accept",
        "connect as another uid",
    ) {
        return;
    }
    // A socket anyone can reach, so the check under test is the agent's own uid check.
    let agent = Agent::start(
        Arc::new(NeverTouched::default()),
        Opts {
            open_socket: true,
            ..Opts::default()
        },
    );
    assert_eq!(
        connect_as_nobody(&agent.path),
        0,
        "another uid's connection is closed without an answer"
    );
    // The owner is still served.
    let mut c = agent.connect();
    send(&mut c, LIST);
    assert_eq!(recv(&mut c).unwrap(), NO_IDENTITIES);

    // With the hardened socket, another user cannot even connect.
    let hardened = Agent::start(Arc::new(NeverTouched::default()), Opts::default());
    assert_eq!(connect_as_nobody(&hardened.path), 2);
}

// ---------------------------------------------------------------------------------------------
// The sign path up to the gate

#[test]
fn sign_without_touch_gets_failure_and_no_signature() {
    let gate = Arc::new(NeverTouched::default());
    let agent = Agent::start(gate.clone(), Opts::default());
    let keys = keygen(agent.dir.path());
    agent.add(&[&keys.ed25519, &keys.ecdsa]);

    // A raw sign request for each key type.
    let mut c = agent.connect();
    for k in [&keys.ed25519, &keys.ecdsa] {
        let key = public_key(k);
        assert_eq!(
            request(&mut c, &sign_request(&key, b"bytes to sign")),
            Response::Failure
        );
    }
    {
        let requests = gate.requests.lock().unwrap();
        assert_eq!(requests.len(), 2);
        let digest: [u8; 32] = sha2::Sha256::digest(b"bytes to sign").into();
        assert_eq!(requests[0].data_digest, digest);
        assert_eq!(
            requests[0].key_fingerprint,
            public_key(&keys.ed25519)
                .fingerprint(ssh_key::HashAlg::Sha256)
                .to_string()
        );
        assert_eq!(requests[0].namespace, None);
        assert_eq!(requests[0].requester.pid, Some(std::process::id()));
        assert_eq!(requests[0].requester.uid, nix::unistd::geteuid().as_raw());
    }

    // A key the agent does not hold: failure, and the gate is not even asked.
    let mut foreign =
        ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    foreign.set_comment("x");
    let req = sign_request(foreign.public_key(), b"x");
    assert_eq!(request(&mut c, &req), Response::Failure);
    assert_eq!(gate.requests.lock().unwrap().len(), 2);

    // Real `ssh-keygen -Y sign -n git`: refused, and the gate saw who asked and for what.
    let msg = agent.dir.path().join("msg");
    std::fs::write(&msg, b"tree 1234\n").unwrap();
    let mut cmd = Command::new(SSH_KEYGEN);
    cmd.args(["-Y", "sign", "-n", "git", "-f"])
        .arg(keys.ed25519.with_extension("pub"))
        .arg(&msg);
    agent.client_env(&mut cmd);
    let out = run_bounded(cmd);
    assert!(!out.status.success(), "no touch, no signature: {out:?}");
    assert!(!msg.with_extension("sig").exists());
    let requests = gate.requests.lock().unwrap();
    let last = requests.last().unwrap();
    assert_eq!(last.namespace.as_deref(), Some("git"));
    assert!(
        last.requester
            .exe
            .as_deref()
            .is_some_and(|e| e.ends_with("ssh-keygen")),
        "{:?}",
        last.requester
    );
    assert_eq!(last.requester.parent_pid, Some(std::process::id()));
    assert!(last.requester.start_time.is_some());
    // NeverTouched can make no Approval (the type has no constructor outside presence), so
    // nothing was signed: the compiler proves what a counter used to check here.
}

/// An agent holding the Ed25519 key behind a [`PendingTouch`] gate, and a connection whose
/// sign request waits for that touch (the gate reported "pending").
fn signing_with_a_pending_touch() -> (Agent, KeyFiles, UnixStream, mpsc::Receiver<&'static str>) {
    let (tx, events) = mpsc::channel();
    let gate = Arc::new(PendingTouch {
        events: Mutex::new(tx),
    });
    let agent = Agent::start(gate, Opts::default());
    let keys = keygen(agent.dir.path());
    agent.add(&[&keys.ed25519]);
    let mut c = agent.connect();
    send(
        &mut c,
        &encode(&sign_request(&public_key(&keys.ed25519), b"pending")),
    );
    assert_eq!(events.recv_timeout(DEADLINE).unwrap(), "pending");
    (agent, keys, c, events)
}

#[test]
fn hang_up_cancels_the_pending_touch_and_does_not_block_others() {
    let (agent, keys, c, events) = signing_with_a_pending_touch();

    // While the touch is pending, requests that need none are answered.
    assert_eq!(agent.listed().len(), 1);
    agent.add(&[&keys.ecdsa]);
    assert_eq!(agent.listed().len(), 2);

    // The client gives up: the gate's future is dropped (the touch is cancelled).
    drop(c);
    assert_eq!(events.recv_timeout(DEADLINE).unwrap(), "cancelled");
    assert_eq!(agent.listed().len(), 2, "the agent keeps serving");
}

#[test]
fn shutdown_cancels_a_pending_touch() {
    let (mut agent, _keys, mut c, events) = signing_with_a_pending_touch();
    agent.stop().unwrap();
    assert_eq!(events.recv_timeout(DEADLINE).unwrap(), "cancelled");
    assert!(closed(&mut c), "the client gets no signature, only a close");
}

#[test]
fn requests_pipelined_behind_a_pending_touch_are_answered_in_order() {
    let (tx, events) = mpsc::channel();
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(RefuseWhenReleased {
        events: Mutex::new(tx),
        release: Arc::clone(&release),
    });
    let agent = Agent::start(gate, Opts::default());
    let keys = keygen(agent.dir.path());
    agent.add(&[&keys.ed25519]);

    let mut c = agent.connect();
    let sign = encode(&sign_request(&public_key(&keys.ed25519), b"pipelined"));
    // A sign request and a list request in one write: the agent reads the second while it
    // watches the socket during the touch, and must keep it for afterwards.
    let mut both = (sign.len() as u32).to_be_bytes().to_vec();
    both.extend_from_slice(&sign);
    both.extend_from_slice(&[0, 0, 0, 1, 11]);
    c.write_all(&both).unwrap();
    assert_eq!(events.recv_timeout(DEADLINE).unwrap(), "pending");
    release.notify_one();
    assert_eq!(
        recv(&mut c).unwrap(),
        FAILURE,
        "no touch: the signature is refused"
    );
    let answer = recv(&mut c).unwrap();
    match Response::decode(&mut &answer[..]).unwrap() {
        Response::IdentitiesAnswer(ids) => assert_eq!(ids.len(), 1),
        other => panic!("expected the identities, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// ECDSA scalars with leading zero bytes

/// One `ssh-keygen` P-256 key in 256 has a private scalar whose first byte is zero; OpenSSH
/// writes it (in the key file, and in `ssh-add`'s message) as an mpint without that byte. Real
/// `ssh-add` adds such keys (one and two zero bytes), and the agent lists them.
#[test]
fn ssh_add_an_ecdsa_key_whose_scalar_starts_with_zero_bytes() {
    let agent = Agent::start(Arc::new(NeverTouched::default()), Opts::default());
    for zeros in [1, 2] {
        let key = ecdsa_key_with_short_scalar(agent.dir.path(), &format!("short{zeros}"), zeros);
        // OpenSSH itself reads the file: the same public key as the one written.
        let mut cmd = Command::new(SSH_KEYGEN);
        cmd.args(["-y", "-f", s(&key)]);
        let out = run_bounded(cmd);
        assert!(out.status.success(), "{out:?}");
        let pubfile = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let derived = String::from_utf8(out.stdout).unwrap();
        assert!(pubfile.starts_with(derived.trim()), "{derived} / {pubfile}");

        agent.add(&[&key]);
        let fp = public_key(&key)
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string();
        let listed = agent.listed();
        assert!(
            listed
                .iter()
                .any(|l| l.contains(&fp) && l.ends_with("(ECDSA)")),
            "{fp} not in {listed:?}"
        );
        let out = agent.ssh_add(&["-L"]);
        assert!(String::from_utf8(out.stdout)
            .unwrap()
            .contains(pubfile.trim()));
    }
    assert_eq!(agent.listed().len(), 2);
}

/// Hand-built `SSH_AGENTC_ADD_IDENTITY` bodies over the socket: a short scalar is added; a
/// point that is not the scalar's, a negative or zero scalar, or one not below the order is
/// refused (the connection stays usable) and nothing is listed for it.
#[test]
fn ecdsa_adds_with_bad_scalars_or_points_are_refused() {
    let agent = Agent::start(Arc::new(NeverTouched::default()), Opts::default());
    let (d, q) = p256_short_scalar(1);
    let (_, other_q) = p256_short_scalar(2);
    let add = |q: &[u8], mpint: &[u8]| {
        let mut m = vec![17];
        for field in [
            &b"ecdsa-sha2-nistp256"[..],
            b"nistp256",
            q,
            mpint,
            b"hand-built",
        ] {
            m.extend_from_slice(&(field.len() as u32).to_be_bytes());
            m.extend_from_slice(field);
        }
        m
    };
    let mut order = vec![0];
    order.extend(
        hex::decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551").unwrap(),
    );
    let mut c = agent.connect();
    for bad in [
        add(&other_q, &d[1..]),
        add(&q, &[0x80; 32]),
        add(&q, &[]),
        add(&q, &order),
    ] {
        send(&mut c, &bad);
        assert_eq!(recv(&mut c).unwrap(), FAILURE);
    }
    send(&mut c, LIST);
    assert_eq!(recv(&mut c).unwrap(), NO_IDENTITIES);
    send(&mut c, &add(&q, &d[1..]));
    assert_eq!(recv(&mut c).unwrap(), [6], "SSH_AGENT_SUCCESS");
    assert_eq!(agent.listed().len(), 1);
}
