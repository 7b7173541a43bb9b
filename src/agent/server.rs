//! The agent's socket and accept loop.
//!
//! draft-miller-ssh-agent ("Security Considerations") leaves the protection of the agent's socket to the
//! implementation; ours must not regress:
//! - the socket's directory is created 0700 or verified (a group/world-accessible, foreign-owned
//!   or symlinked directory is refused, never fixed: [`crate::secure_fs`]);
//! - the socket is 0600 before the first accept;
//! - a live agent already listening on the path is not stolen; a stale socket is replaced.
//!
//! [`run`] takes a bound [`Listener`] and a shutdown future (mini-redis style) so tests bind
//! their own socket; shutdown waits for every handler.
//!
//! The agent keeps answering: accept never waits for a free slot. Above the connection cap
//! ([`DEFAULT_MAX_CONNECTIONS`], lowered to what the open-file limit allows, which is raised to
//! its hard limit at start) the connection idle longest is closed to make room; connections
//! inside a request or waiting for a touch are never closed for this (`super::registry`).
//!
//! A socket moved aside: a process running as the user can rename the socket in its own
//! directory and put a relay at the path, which then sees every key added through it. Once a
//! second (the sweep) and at every accept the agent checks that its path still names the
//! socket it bound ([`BoundSocket`], Unix only: a named pipe cannot be moved). When it does
//! not, the agent wipes every key, logs it, tells watchers
//! ([`PromptEvent::SocketReplaced`]) and remembers it for `auths agent status`, once.
//!
//! Windows: the [`Listener`] is a named pipe (default `\\.\pipe\auths-agent-<user>`,
//! [`default_pipe_name`]) created with a security descriptor that admits the current user only
//! ([`crate::platform::sddl::pipe_sddl`]), remote clients rejected, and the first-instance flag
//! set so a pipe somebody else created first is refused rather than joined. Each client's
//! token user must be ours ([`super::peer`]). Win32-OpenSSH's `ssh-add` and `ssh-keygen`
//! reach it through `SSH_AUTH_SOCK`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

pub use super::harden::harden_process;
use super::harden::raise_open_files_limit;
use super::keys::{Clock, KeyStore, SealParams, SystemClock, UnlockPolicy, WipeReason};
#[cfg(unix)]
pub use super::listener::UnixAgentListener;
pub use super::listener::{
    bind, default_pipe_name, is_pipe_name, BoundSocket, Listener, PIPE_PREFIX,
};
use super::listener::{current_uid, BoundEndpoint};
use super::log::{evictions_line, EventLog, Stderr};
use super::registry::Registry;
use super::session;
use super::AgentError;
use crate::presence::gate::Gate;
use crate::presence::prompt::{escape_control, PromptEvent, Prompter};

/// Validated agent settings (the CLI converts its flags into this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Where the socket lives; its directory must be private.
    pub socket_path: PathBuf,
    /// Sliding idle timeout of the unlock window.
    pub idle_timeout: Duration,
    /// Absolute cap of the unlock window.
    pub max_unlock: Duration,
    /// Signatures per unlock window, when capped.
    pub max_signatures: Option<u64>,
    /// A client that starts a message must finish it within this time.
    pub read_timeout: Duration,
    /// Connections kept open at once; above this the longest-idle one is closed for a new one.
    pub max_connections: usize,
    /// Sealed identity keys listed from the start (`$AUTHS_HOME/keys`), each opened by the
    /// touch that approves its first signature of a window.
    pub sealed_keys: Vec<crate::presence::sealed::SealedKey>,
    /// Where the sealed keys live (`$AUTHS_HOME/keys`): a key is read again from there when
    /// a security key it has no wrap for answers.
    pub sealed_dir: Option<PathBuf>,
}

impl AgentConfig {
    /// Defaults: 30 min idle, 4 h cap, no signature cap, 10 s read timeout, 1024 connections.
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        let policy = UnlockPolicy::default();
        AgentConfig {
            socket_path: socket_path.into(),
            idle_timeout: policy.idle_timeout,
            max_unlock: policy.max_unlock,
            max_signatures: policy.max_signatures,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            sealed_keys: Vec::new(),
            sealed_dir: None,
        }
    }

    /// The unlock window part of the settings.
    pub fn policy(&self) -> UnlockPolicy {
        UnlockPolicy {
            idle_timeout: self.idle_timeout,
            max_unlock: self.max_unlock,
            max_signatures: self.max_signatures,
        }
    }
}

/// Default time a client has to finish a message it started.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on open connections (lowered when the open-file limit cannot hold it).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// File descriptors kept free of connections: the listener, the watch socket and its watchers
/// ([`super::watch::MAX_WATCHERS`]), the security key, logs and the runtime.
const RESERVED_FDS: u64 = 128;

/// What every connection shares: the keys, the gate, the clock and the limits.
pub struct AgentState {
    keys: Mutex<KeyStore>,
    gate: Arc<dyn Gate>,
    clock: Arc<dyn Clock>,
    uid: u32,
    read_timeout: Duration,
    max_connections: usize,
    /// Serialises `ssh-add -X` attempts and counts consecutive wrong passphrases.
    unlock_failures: tokio::sync::Mutex<u32>,
    /// Where failed requests and abnormal connection ends are logged.
    log: Arc<dyn EventLog>,
    /// Where watchers hear of a replaced socket.
    prompter: Option<Prompter>,
    /// The socket path (escaped) that stopped naming our socket; set once.
    socket_replaced: OnceLock<String>,
    /// The last refusal of each recently refused process (`refusal@auths-presence`).
    refusals: super::refusals::Refusals,
}

impl std::fmt::Debug for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentState")
            .field("uid", &self.uid)
            .field("read_timeout", &self.read_timeout)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl AgentState {
    /// Empty key store under `policy`, the system clock, our effective uid, default limits.
    pub fn new(policy: UnlockPolicy, gate: Arc<dyn Gate>) -> Self {
        AgentState {
            keys: Mutex::new(KeyStore::new(policy)),
            gate,
            clock: Arc::new(SystemClock),
            uid: current_uid(),
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            unlock_failures: tokio::sync::Mutex::new(0),
            log: Arc::new(Stderr),
            prompter: None,
            socket_replaced: OnceLock::new(),
            refusals: super::refusals::Refusals::default(),
        }
    }

    /// State for `config`.
    pub fn from_config(config: &AgentConfig, gate: Arc<dyn Gate>) -> Self {
        AgentState::new(config.policy(), gate)
            .with_read_timeout(config.read_timeout)
            .with_max_connections(config.max_connections)
    }

    /// Read time from `clock` (tests move a [`super::keys::ManualClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Log failed requests and abnormal connection ends to `log` instead of stderr.
    pub fn with_log(mut self, log: Arc<dyn EventLog>) -> Self {
        self.log = log;
        self
    }

    /// Tell `prompter`'s watchers when the socket is moved aside or replaced.
    pub fn with_prompter(mut self, prompter: Prompter) -> Self {
        self.prompter = Some(prompter);
        self
    }

    /// Time a client has to finish a message it started.
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Cap on open connections (at least 1): above it the longest-idle one is closed.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Argon2id costs of the protocol lock.
    pub fn with_seal_params(self, params: SealParams) -> Self {
        let keys = self
            .keys
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .with_seal_params(params);
        AgentState {
            keys: Mutex::new(keys),
            ..self
        }
    }

    /// Run `f` on the key store, then, if it wiped (or sealed) the keys, end the gate's
    /// grants ([`AgentState::keys_wiped`]). Request handlers reach the store this way.
    pub fn with_keys<T>(&self, f: impl FnOnce(&mut KeyStore) -> T) -> T {
        let (out, wiped) = {
            let mut keys = self.keys();
            let out = f(&mut keys);
            (out, keys.take_wiped())
        };
        if let Some(reason) = wiped {
            self.keys_wiped(reason);
        }
        out
    }

    /// Wipe every key, plaintext and sealed, and end every grant (`auths agent lock`,
    /// shutdown).
    pub fn wipe_keys(&self) {
        self.with_keys(|k| k.wipe());
    }

    /// Apply the unlock window at `now`; when it closed, the grants end too.
    pub fn expire(&self, now: Instant) -> Option<WipeReason> {
        self.with_keys(|k| k.expire(now))
    }

    /// The keys were wiped (or sealed) for `reason`: every open grant ends, so the next
    /// signature needs a touch even if the same key comes back. The one place grants end
    /// (the gate's interface takes no reason: every wipe ends every grant).
    pub fn keys_wiped(&self, _reason: WipeReason) {
        self.gate.keys_wiped();
    }

    /// The key store. Never hold the guard across an await; a wipe made through it is not
    /// reported to the gate (use [`AgentState::with_keys`]).
    pub fn keys(&self) -> MutexGuard<'_, KeyStore> {
        // A panic while holding the lock leaves a consistent store (every method finishes its
        // mutation before it can fail), so a poisoned lock is still usable.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The gate.
    pub fn gate(&self) -> &Arc<dyn Gate> {
        &self.gate
    }

    /// Why recently refused processes were refused: call `record` for every refusal of a
    /// signature (the handler does for sign requests).
    pub fn refusals(&self) -> &super::refusals::Refusals {
        &self.refusals
    }

    /// The current time on the agent's clock.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The uid connections must have.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Time a client has to finish a message.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// The socket path (control characters escaped) that stopped naming the agent's socket,
    /// once that was noticed.
    pub fn socket_replaced(&self) -> Option<&str> {
        self.socket_replaced.get().map(String::as_str)
    }

    /// Check that `socket`'s path still names the socket we bound; the first time it does not,
    /// wipe every key, log it and tell watchers. Once noticed, it is not checked again.
    pub fn check_socket(&self, socket: &BoundSocket) {
        if self.socket_replaced.get().is_none() && !socket.still_ours() {
            self.socket_moved(socket.path());
        }
    }

    fn socket_moved(&self, path: &Path) {
        let shown = escape_control(&path.display().to_string());
        if self.socket_replaced.set(shown.clone()).is_err() {
            return; // noticed already (the sweep and an accept at once)
        }
        self.wipe_keys();
        self.log.record(&format!(
            "auths agent: {shown} no longer names this agent's socket (it was moved aside, \
             replaced or removed): every key was wiped. A process running as you may relay the \
             socket and capture keys added through it. Stop the agent, find out who moved the \
             socket, then start the agent again."
        ));
        if let Some(p) = &self.prompter {
            p.emit(PromptEvent::SocketReplaced { path: shown });
        }
    }

    pub(crate) fn unlock_failures(&self) -> &tokio::sync::Mutex<u32> {
        &self.unlock_failures
    }

    /// Where failures are logged.
    pub fn log(&self) -> &dyn EventLog {
        &*self.log
    }
}

/// Serve connections from `listener` until `shutdown` completes, then stop accepting, tell
/// every connection to finish (pending approvals are dropped, i.e. cancelled) and wait for them.
pub async fn run<L: Listener>(
    mut listener: L,
    state: Arc<AgentState>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let (notify, watch_rx) = watch::channel(false);
    let registry = Registry::new(connection_cap(&state));
    let socket = listener.bound_socket();
    let mut tasks = JoinSet::new();
    tasks.spawn(sweep(
        Arc::clone(&state),
        socket.clone(),
        Arc::clone(&registry),
        watch_rx.clone(),
    ));
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(10);
    loop {
        while tasks.try_join_next().is_some() {}
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                // Before anything is served: this may be a relay at the path connecting.
                if let Some(s) = &socket {
                    state.check_socket(s);
                }
                let slot = registry.admit();
                let st = Arc::clone(&state);
                let rx = watch_rx.clone();
                tasks.spawn(async move {
                    session::serve_connection(stream, peer, st, rx, slot).await;
                });
            }
            Err(_) => {
                // Out of file descriptors or similar: free one by closing the longest-idle
                // connection, and back off instead of spinning while it goes.
                registry.evict_one();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    let _ = notify.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// The configured cap, lowered so that the connections fit in the open-file limit (raised to
/// its hard limit first; a failure to raise it is logged, not fatal).
fn connection_cap(state: &AgentState) -> usize {
    let files = raise_open_files_limit();
    let fit = files.limit.map_or(usize::MAX, |l| {
        usize::try_from(l.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX)
    });
    let cap = state.max_connections.min(fit).max(1);
    if let Some((soft, hard, e)) = files.error {
        state.log().record(&format!(
            "auths agent: cannot raise the open-file limit from {soft} to {hard} ({e}); \
             keeping at most {cap} connections open"
        ));
    }
    cap
}

/// Once a second: apply the unlock window, so keys go away on time even when nobody asks;
/// check that the socket is still where it was bound; log how many idle connections were
/// closed to make room.
async fn sweep(
    state: Arc<AgentState>,
    socket: Option<BoundSocket>,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                state.expire(state.now());
                if let Some(s) = &socket {
                    state.check_socket(s);
                }
                match registry.take_evicted() {
                    0 => {}
                    n => state.log().record(&evictions_line(n, registry.cap())),
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Run the agent described by `config` with `gate` until `shutdown` completes: bind the socket
/// ([`bind`]), serve ([`run`]), then wipe the keys and remove the socket (if it is still ours).
pub async fn serve(
    config: AgentConfig,
    gate: Arc<dyn Gate>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    serve_with_prompter(config, gate, None, shutdown).await
}

/// [`serve`], telling `prompter`'s watchers when the socket is moved aside or replaced.
pub async fn serve_with_prompter(
    config: AgentConfig,
    gate: Arc<dyn Gate>,
    prompter: Option<Prompter>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let listener = bind(&config.socket_path)?;
    let ours = BoundEndpoint::of(&config.socket_path);
    let mut state = AgentState::from_config(&config, gate);
    for key in &config.sealed_keys {
        // A sealed key of a type the agent cannot sign with is skipped, and said so.
        let source = config
            .sealed_dir
            .as_ref()
            .map(|d| d.join(format!("{}.{}", key.id, crate::presence::sealed::EXTENSION)));
        if let Err(e) = state.with_keys(|k| k.load_sealed(key.clone(), source)) {
            state.log.record(&format!(
                "sealed key {} not listed: {}",
                key.id,
                crate::presence::error_chain(&e)
            ));
        }
    }
    if let Some(p) = prompter {
        state = state.with_prompter(p);
    }
    let state = Arc::new(state);
    let result = run(listener, Arc::clone(&state), shutdown).await;
    state.wipe_keys();
    ours.remove_if_ours(&config.socket_path);
    result
}

#[cfg(all(test, unix))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::presence::gate::{ApproveFuture, GateError};
    use crate::presence::request::ApprovalRequest;

    /// Refuses every request; counts wipes.
    #[derive(Default)]
    struct CountWipes(AtomicUsize);

    impl Gate for CountWipes {
        fn approve(&self, _request: ApprovalRequest) -> ApproveFuture<'_> {
            Box::pin(async { Err(GateError::Cancelled) })
        }
        fn keys_wiped(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl EventLog for Lines {
        fn record(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_owned());
        }
    }

    #[test]
    fn a_moved_or_removed_socket_is_acted_on_once() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _enter = rt.enter();
        let dir = tempfile::tempdir().unwrap();
        for remove in [false, true] {
            let path = dir.path().join(format!("agent-{remove}.sock"));
            let listener =
                UnixAgentListener::from_tokio(tokio::net::UnixListener::bind(&path).unwrap());
            let socket = listener.bound_socket().expect("a bound socket file");
            assert_eq!(socket.path(), path);
            let gate = Arc::new(CountWipes::default());
            let log = Arc::new(Lines::default());
            let prompter = Prompter::new(false);
            let mut events = prompter.subscribe();
            let state = AgentState::new(UnlockPolicy::default(), gate.clone())
                .with_log(log.clone())
                .with_prompter(prompter);

            state.check_socket(&socket);
            assert_eq!(state.socket_replaced(), None, "still ours");
            assert_eq!(gate.0.load(Ordering::SeqCst), 0);

            if remove {
                std::fs::remove_file(&path).unwrap();
            } else {
                std::fs::rename(&path, dir.path().join("aside.sock")).unwrap();
                drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
            }
            for _ in 0..3 {
                state.check_socket(&socket);
            }
            let shown = path.display().to_string();
            assert_eq!(state.socket_replaced(), Some(shown.as_str()));
            assert_eq!(gate.0.load(Ordering::SeqCst), 1, "wiped once");
            assert_eq!(
                events.try_recv().unwrap(),
                PromptEvent::SocketReplaced { path: shown }
            );
            assert!(events.try_recv().is_err(), "one event");
            let lines = log.0.lock().unwrap();
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(lines[0].contains("every key was wiped"), "{lines:?}");
        }
    }
}
