//! The agent through its real Unix socket: socket hardening, real OpenSSH `ssh-add` and
//! `ssh-keygen`, framing limits, cross-user rejection, the unlock window (with an injected
//! clock, never sleeping), and the gate's refusal and cancellation paths.
//!
//! An `Approval` can only be built by `presence`, so no test here makes a signature: the sign
//! path is exercised up to the gate (which refuses, or never answers).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use auths_presence::agent::codec::{MAX_MESSAGE_LEN, WIPE_EXTENSION};
use auths_presence::agent::keys::{ManualClock, SealParams, UnlockPolicy};
use auths_presence::agent::server::{bind, run, serve, AgentConfig, AgentState, UnixAgentListener};
use auths_presence::agent::AgentError;
use auths_presence::presence::gate::{ApproveFuture, Gate, GateError};
use auths_presence::presence::request::ApprovalRequest;
use auths_presence::secure_fs::SecureFsError;
use sha2::Digest as _;
use ssh_agent_lib::proto::{Extension, PublicCredential, Request, Response};
use ssh_encoding::{Decode, Encode};

pub(crate) const SSH_ADD: &str = "/usr/bin/ssh-add";
pub(crate) const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";
/// Every wait in these tests is bounded by this.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);
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
// A running agent

pub(crate) const FAST_SEAL: SealParams = SealParams {
    m_cost: 256,
    t_cost: 1,
    p_cost: 1,
};

pub(crate) struct Opts {
    pub(crate) policy: UnlockPolicy,
    pub(crate) read_timeout: Duration,
    /// Bind in a world-reachable directory with a 0777 socket, bypassing `bind`'s hardening,
    /// to test the per-connection uid check on its own.
    pub(crate) open_socket: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            policy: UnlockPolicy::default(),
            read_timeout: Duration::from_secs(10),
            open_socket: false,
        }
    }
}

pub(crate) struct Agent {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
    pub(crate) state: Arc<AgentState>,
    pub(crate) clock: Arc<ManualClock>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), AgentError>>>,
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn short_tempdir() -> tempfile::TempDir {
    // Socket paths must stay under ~100 bytes: /tmp, not $TMPDIR.
    tempfile::Builder::new()
        .prefix("ap-")
        .tempdir_in("/tmp")
        .unwrap()
}

impl Agent {
    pub(crate) fn start(gate: Arc<dyn Gate>, opts: Opts) -> Agent {
        let rt = runtime();
        let dir = short_tempdir();
        let sock_dir = dir.path().join("s");
        let path = sock_dir.join("agent.sock");
        let listener = {
            let _enter = rt.enter();
            if opts.open_socket {
                std::fs::create_dir(&sock_dir).unwrap();
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
                std::fs::set_permissions(&sock_dir, std::fs::Permissions::from_mode(0o777))
                    .unwrap();
                let l = tokio::net::UnixListener::bind(&path).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
                UnixAgentListener::from_tokio(l)
            } else {
                bind(&path).unwrap()
            }
        };
        let clock = Arc::new(ManualClock::new());
        let state = Arc::new(
            AgentState::new(opts.policy, gate)
                .with_clock(clock.clone())
                .with_read_timeout(opts.read_timeout)
                .with_seal_params(FAST_SEAL),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(run(listener, Arc::clone(&state), async move {
            let _ = stopped.await;
        }));
        Agent {
            rt,
            dir,
            path,
            state,
            clock,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.path).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.set_write_timeout(Some(DEADLINE)).unwrap();
        s
    }

    pub(crate) fn ssh_add(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(SSH_ADD);
        cmd.args(args);
        self.client_env(&mut cmd);
        run_bounded(cmd)
    }

    pub(crate) fn client_env(&self, cmd: &mut Command) {
        cmd.env("SSH_AUTH_SOCK", &self.path)
            .env_remove("SSH_ASKPASS")
            .env_remove("SSH_ASKPASS_REQUIRE")
            .stdin(Stdio::null());
    }

    /// `ssh-add -l` lines (empty when the agent has no identities).
    pub(crate) fn listed(&self) -> Vec<String> {
        let out = self.ssh_add(&["-l"]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if stdout.contains("no identities") {
            return Vec::new();
        }
        assert!(out.status.success(), "ssh-add -l failed: {out:?}");
        stdout.lines().map(str::to_string).collect()
    }

    /// Write an askpass script answering `pass`.
    fn askpass(&self, name: &str, pass: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\necho '{pass}'\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        p
    }

    fn ssh_add_askpass(&self, args: &[&str], askpass: &Path) -> Output {
        let mut cmd = Command::new(SSH_ADD);
        cmd.args(args);
        self.client_env(&mut cmd);
        cmd.env("SSH_ASKPASS", askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0");
        run_bounded(cmd)
    }

    pub(crate) fn stop(&mut self) -> Result<(), AgentError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => self
                .rt
                .block_on(async { tokio::time::timeout(DEADLINE, task).await })
                .expect("the agent stops within the deadline")
                .expect("the agent task does not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Run a command to completion, failing the test if it takes longer than the deadline.
pub(crate) fn run_bounded(mut cmd: Command) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(cmd.output());
    });
    rx.recv_timeout(DEADLINE)
        .expect("command finished within the deadline")
        .expect("command could be run")
}

pub(crate) struct KeyFiles {
    pub(crate) ed25519: PathBuf,
    pub(crate) ecdsa: PathBuf,
}

pub(crate) fn keygen(dir: &Path) -> KeyFiles {
    let gen = |name: &str, args: &[&str]| {
        let path = dir.join(name);
        let mut cmd = Command::new(SSH_KEYGEN);
        cmd.args(["-q", "-N", "", "-C", name, "-f"])
            .arg(&path)
            .args(args)
            .stdin(Stdio::null());
        let out = run_bounded(cmd);
        assert!(out.status.success(), "ssh-keygen: {out:?}");
        path
    };
    KeyFiles {
        ed25519: gen("id_ed25519", &["-t", "ed25519"]),
        ecdsa: gen("id_ecdsa", &["-t", "ecdsa", "-b", "256"]),
    }
}

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Raw protocol helpers

pub(crate) fn send(stream: &mut UnixStream, body: &[u8]) {
    let mut msg = (body.len() as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(body);
    stream.write_all(&msg).unwrap();
}

/// One response body, or `None` when the agent closed the connection.
pub(crate) fn recv(stream: &mut UnixStream) -> Option<Vec<u8>> {
    let mut header = [0u8; 4];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(e)
            if e.kind() == std::io::ErrorKind::UnexpectedEof
                || e.kind() == std::io::ErrorKind::ConnectionReset =>
        {
            return None
        }
        Err(e) => panic!("reading from the agent: {e}"),
    }
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body).unwrap();
    Some(body)
}

/// True when the agent closed the connection (EOF or reset), within the read timeout.
fn closed(stream: &mut UnixStream) -> bool {
    let mut b = [0u8; 1];
    match stream.read(&mut b) {
        Ok(0) => true,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
        Ok(_) => false,
        Err(e) => panic!("waiting for the agent to close: {e}"),
    }
}

pub(crate) fn request(stream: &mut UnixStream, req: &Request) -> Response {
    let mut body = Vec::new();
    req.encode(&mut body).unwrap();
    send(stream, &body);
    let answer = recv(stream).expect("an answer");
    Response::decode(&mut &answer[..]).unwrap()
}

const FAILURE: &[u8] = &[5];
const LIST: &[u8] = &[11];

pub(crate) fn public_key(path: &Path) -> ssh_key::PublicKey {
    ssh_key::PublicKey::read_openssh_file(&path.with_extension("pub")).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Socket hardening

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
    let dir = t.path().join("loose");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _enter = rt.enter();
    let err = bind(&dir.join("agent.sock")).unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::SecureFs(SecureFsError::LoosePermissions { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("chmod 700"),
        "says what to do: {err}"
    );
    assert!(!dir.join("agent.sock").exists());
}

#[test]
fn symlinked_socket_dir_is_refused() {
    let rt = runtime();
    let t = short_tempdir();
    let real = t.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
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

#[test]
fn foreign_owned_socket_dir_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("foreign_owned_socket_dir_is_refused: needs root to chown; not checked");
        return;
    }
    let rt = runtime();
    let t = short_tempdir();
    let dir = t.path().join("theirs");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
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
    assert!(err.to_string().contains("auths agent stop"), "{err}");
    // The first agent still serves.
    let mut c = agent.connect();
    send(&mut c, LIST);
    assert_eq!(recv(&mut c).unwrap(), vec![12, 0, 0, 0, 0]);
}

#[test]
fn stale_socket_is_replaced_but_other_files_are_not() {
    let rt = runtime();
    let t = short_tempdir();
    let dir = t.path().join("s");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
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
    // Poll (bounded) until the agent answers.
    let start = Instant::now();
    let mut c = loop {
        if let Ok(c) = UnixStream::connect(&path) {
            break c;
        }
        assert!(start.elapsed() < DEADLINE, "the agent never started");
        std::thread::yield_now();
    };
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    send(&mut c, LIST);
    assert_eq!(recv(&mut c).unwrap(), vec![12, 0, 0, 0, 0]);
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

    let out = agent.ssh_add(&[s(&keys.ed25519), s(&keys.ecdsa)]);
    assert!(out.status.success(), "{out:?}");
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
    assert!(agent
        .ssh_add(&[s(&keys.ed25519), s(&keys.ecdsa)])
        .status
        .success());
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
    assert!(agent.ssh_add(&[s(&keys.ed25519)]).status.success());
    agent.clock.advance(29 * MIN);
    assert_eq!(agent.listed().len(), 1, "listing is not activity");
    agent.clock.advance(MIN);
    assert!(agent.listed().is_empty(), "30 min idle: wiped");
}

#[test]
fn absolute_cap_wipes_keys_despite_activity() {
    let policy = UnlockPolicy {
        idle_timeout: 30 * MIN,
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
    assert!(agent.ssh_add(&[s(&keys.ed25519)]).status.success());
    for _ in 0..2 {
        agent.clock.advance(25 * MIN);
        // Adding a key is activity: the idle timer slides.
        assert!(agent.ssh_add(&[s(&keys.ecdsa)]).status.success());
    }
    assert_eq!(agent.listed().len(), 2);
    agent.clock.advance(10 * MIN);
    assert!(agent.listed().is_empty(), "1 h cap reached: wiped");
}

#[test]
fn lock_extension_wipes_everything_and_query_lists_extensions() {
    let agent = Agent::start(Arc::new(NeverTouched::default()), Opts::default());
    let keys = keygen(agent.dir.path());
    assert!(agent.ssh_add(&[s(&keys.ed25519)]).status.success());
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
    assert_eq!(recv(&mut other).unwrap(), vec![12, 0, 0, 0, 0]);
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
    assert_eq!(recv(&mut c).unwrap(), vec![12, 0, 0, 0, 0]);
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
    assert_eq!(recv(&mut c).unwrap(), vec![12, 0, 0, 0, 0]);
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
    assert_eq!(recv(&mut other).unwrap(), vec![12, 0, 0, 0, 0]);

    let started = Instant::now();
    assert!(closed(&mut in_body), "a stalled message is dropped");
    assert!(closed(&mut in_header), "a stalled length prefix is dropped");
    assert!(started.elapsed() < DEADLINE);

    // Both stalls outlived the read timeout; the idle connection still works.
    send(&mut idle, LIST);
    assert_eq!(recv(&mut idle).unwrap(), vec![12, 0, 0, 0, 0]);
}

// ---------------------------------------------------------------------------------------------
// Cross-user

/// Fork a child that becomes uid/gid 65534 (nobody), connects to `path`, sends a request and
/// reports: 0 closed without an answer, 1 got an answer, 2 could not connect, 3 setuid failed.
/// Only async-signal-safe calls after fork.
#[cfg(target_os = "linux")]
fn connect_as_nobody(path: &Path) -> i32 {
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
    if !nix::unistd::geteuid().is_root() {
        eprintln!("other_users_are_refused_at_accept: needs root to switch uid; not checked");
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
    assert_eq!(recv(&mut c).unwrap(), vec![12, 0, 0, 0, 0]);

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
    assert!(agent
        .ssh_add(&[s(&keys.ed25519), s(&keys.ecdsa)])
        .status
        .success());

    // A raw sign request for each key type.
    let mut c = agent.connect();
    for k in [&keys.ed25519, &keys.ecdsa] {
        let key = public_key(k);
        let req = Request::SignRequest(ssh_agent_lib::proto::SignRequest {
            credential: PublicCredential::Key(key.key_data().clone()),
            data: b"bytes to sign".to_vec(),
            flags: 0,
        });
        assert_eq!(request(&mut c, &req), Response::Failure);
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
    let req = Request::SignRequest(ssh_agent_lib::proto::SignRequest {
        credential: PublicCredential::Key(foreign.public_key().key_data().clone()),
        data: b"x".to_vec(),
        flags: 0,
    });
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

#[test]
fn hang_up_cancels_the_pending_touch_and_does_not_block_others() {
    let (tx, events) = mpsc::channel();
    let gate = Arc::new(PendingTouch {
        events: Mutex::new(tx),
    });
    let agent = Agent::start(gate, Opts::default());
    let keys = keygen(agent.dir.path());
    assert!(agent.ssh_add(&[s(&keys.ed25519)]).status.success());

    let mut c = agent.connect();
    let mut body = Vec::new();
    Request::SignRequest(ssh_agent_lib::proto::SignRequest {
        credential: PublicCredential::Key(public_key(&keys.ed25519).key_data().clone()),
        data: b"pending".to_vec(),
        flags: 0,
    })
    .encode(&mut body)
    .unwrap();
    send(&mut c, &body);
    assert_eq!(events.recv_timeout(DEADLINE).unwrap(), "pending");

    // While the touch is pending, requests that need none are answered.
    assert_eq!(agent.listed().len(), 1);
    assert!(agent.ssh_add(&[s(&keys.ecdsa)]).status.success());
    assert_eq!(agent.listed().len(), 2);

    // The client gives up: the gate's future is dropped (the touch is cancelled).
    drop(c);
    assert_eq!(events.recv_timeout(DEADLINE).unwrap(), "cancelled");
    assert_eq!(agent.listed().len(), 2, "the agent keeps serving");
}

#[test]
fn shutdown_cancels_a_pending_touch() {
    let (tx, events) = mpsc::channel();
    let gate = Arc::new(PendingTouch {
        events: Mutex::new(tx),
    });
    let mut agent = Agent::start(gate, Opts::default());
    let keys = keygen(agent.dir.path());
    assert!(agent.ssh_add(&[s(&keys.ed25519)]).status.success());
    let mut c = agent.connect();
    let mut body = Vec::new();
    Request::SignRequest(ssh_agent_lib::proto::SignRequest {
        credential: PublicCredential::Key(public_key(&keys.ed25519).key_data().clone()),
        data: b"pending".to_vec(),
        flags: 0,
    })
    .encode(&mut body)
    .unwrap();
    send(&mut c, &body);
    assert_eq!(events.recv_timeout(DEADLINE).unwrap(), "pending");
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
    assert!(agent.ssh_add(&[s(&keys.ed25519)]).status.success());

    let mut c = agent.connect();
    let mut sign = Vec::new();
    Request::SignRequest(ssh_agent_lib::proto::SignRequest {
        credential: PublicCredential::Key(public_key(&keys.ed25519).key_data().clone()),
        data: b"pipelined".to_vec(),
        flags: 0,
    })
    .encode(&mut sign)
    .unwrap();
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
