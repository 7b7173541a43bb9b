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
//! their own socket; a semaphore caps connections; shutdown waits for every handler.
//!
//! Windows: the [`Listener`] is a named pipe (default `\\.\pipe\auths-agent-<user>`,
//! [`default_pipe_name`]) created with a security descriptor that admits the current user only
//! ([`crate::platform::sddl::pipe_sddl`]), remote clients rejected, and the first-instance flag
//! set so a pipe somebody else created first is refused rather than joined. Each client's
//! token user must be ours ([`super::peer`]). Win32-OpenSSH's `ssh-add` and `ssh-keygen`
//! reach it through `SSH_AUTH_SOCK`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::keys::{Clock, KeyStore, SealParams, SystemClock, UnlockPolicy};
use super::peer::PeerInfo;
use super::session;
use super::AgentError;
use crate::presence::gate::Gate;

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
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl AgentConfig {
    /// Defaults: 30 min idle, 4 h cap, no signature cap, 10 s read timeout, 64 connections.
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        let policy = UnlockPolicy::default();
        AgentConfig {
            socket_path: socket_path.into(),
            idle_timeout: policy.idle_timeout,
            max_unlock: policy.max_unlock,
            max_signatures: policy.max_signatures,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
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
/// Default cap on concurrent connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

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

    /// Time a client has to finish a message it started.
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Cap on concurrent connections (at least 1).
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

    /// The key store. Never hold the guard across an await.
    pub fn keys(&self) -> MutexGuard<'_, KeyStore> {
        // A panic while holding the lock leaves a consistent store (every method finishes its
        // mutation before it can fail), so a poisoned lock is still usable.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The gate.
    pub fn gate(&self) -> &Arc<dyn Gate> {
        &self.gate
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

    pub(crate) fn unlock_failures(&self) -> &tokio::sync::Mutex<u32> {
        &self.unlock_failures
    }
}

/// Our effective uid; 0 on Windows, where peers are matched by token user SID at accept.
#[cfg(unix)]
pub(crate) fn current_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Our effective uid; 0 on Windows, where peers are matched by token user SID at accept.
#[cfg(not(unix))]
pub(crate) fn current_uid() -> u32 {
    0
}

/// A source of connections with the peer's identity, read from the OS at accept. Unix sockets
/// implement it now; a Windows named pipe can later.
pub trait Listener: Send {
    /// One accepted connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Wait for the next connection whose peer credentials could be read. Connections whose
    /// credentials cannot be read are closed here (fail closed) and not returned.
    fn accept(&mut self) -> impl Future<Output = std::io::Result<(Self::Stream, PeerInfo)>> + Send;
}

/// A Unix socket listener.
#[cfg(unix)]
#[derive(Debug)]
pub struct UnixAgentListener {
    inner: tokio::net::UnixListener,
}

#[cfg(unix)]
impl UnixAgentListener {
    /// Wrap a bound tokio listener (tests bind their own).
    pub fn from_tokio(inner: tokio::net::UnixListener) -> Self {
        UnixAgentListener { inner }
    }
}

#[cfg(unix)]
impl Listener for UnixAgentListener {
    type Stream = tokio::net::UnixStream;

    async fn accept(&mut self) -> std::io::Result<(Self::Stream, PeerInfo)> {
        loop {
            let (stream, _) = self.inner.accept().await?;
            match super::peer::from_unix_stream(&stream) {
                Ok(peer) => return Ok((stream, peer)),
                Err(_) => continue,
            }
        }
    }
}

/// The pipe-name prefix every Windows named pipe has.
pub const PIPE_PREFIX: &str = r"\\.\pipe\";

/// Our default pipe name for `user` (Windows): `\\.\pipe\auths-agent-<user>`, with
/// characters that do not belong in a pipe name replaced by `_`.
pub fn default_pipe_name(user: &str) -> String {
    let user: String = user
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let user = if user.is_empty() { "user".into() } else { user };
    format!("{PIPE_PREFIX}auths-agent-{user}")
}

/// True for a local named pipe name (`\\.\pipe\NAME`, NAME non-empty, no further `\`).
pub fn is_pipe_name(name: &str) -> bool {
    name.get(..PIPE_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PIPE_PREFIX))
        && name.len() > PIPE_PREFIX.len()
        && !name[PIPE_PREFIX.len()..].contains('\\')
}

/// A Windows named-pipe listener: one pipe instance waits for a client; when one connects, the
/// next instance is created before the connected one is handed out.
#[cfg(windows)]
pub struct PipeAgentListener {
    name: String,
    next: tokio::net::windows::named_pipe::NamedPipeServer,
    descriptor: crate::platform::windows::SecurityDescriptor,
    my_sid: String,
}

#[cfg(windows)]
impl std::fmt::Debug for PipeAgentListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeAgentListener")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[cfg(windows)]
impl PipeAgentListener {
    /// Create the first instance of pipe `name`. Must be called inside a tokio runtime.
    pub fn bind(name: &str) -> Result<PipeAgentListener, AgentError> {
        let path = || PathBuf::from(name);
        if !is_pipe_name(name) {
            return Err(AgentError::BadSocketPath(path()));
        }
        let bind_err = |source| AgentError::Bind {
            path: path(),
            source,
        };
        let my_sid = crate::platform::windows::current_user_sid().map_err(bind_err)?;
        let sddl = crate::platform::sddl::pipe_sddl(&my_sid)
            .map_err(|e| bind_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        let descriptor =
            crate::platform::windows::SecurityDescriptor::from_sddl(&sddl).map_err(bind_err)?;
        let next = match Self::create(name, &descriptor, true) {
            Ok(p) => p,
            // ERROR_ACCESS_DENIED: with FILE_FLAG_FIRST_PIPE_INSTANCE, the pipe exists already
            // (a running agent, or someone squatting the name). ERROR_PIPE_BUSY: same.
            Err(e) if matches!(e.raw_os_error(), Some(5) | Some(231)) => {
                return Err(AgentError::AlreadyRunning(path()))
            }
            Err(e) => return Err(bind_err(e)),
        };
        Ok(PipeAgentListener {
            name: name.to_owned(),
            next,
            descriptor,
            my_sid,
        })
    }

    fn create(
        name: &str,
        descriptor: &crate::platform::windows::SecurityDescriptor,
        first: bool,
    ) -> std::io::Result<tokio::net::windows::named_pipe::NamedPipeServer> {
        let mut attributes = descriptor.attributes();
        let mut opts = tokio::net::windows::named_pipe::ServerOptions::new();
        opts.first_pipe_instance(first)
            .reject_remote_clients(true)
            .access_inbound(true)
            .access_outbound(true);
        // SAFETY: `attributes` is a valid SECURITY_ATTRIBUTES whose descriptor (`descriptor`)
        // outlives the call; CreateNamedPipeW copies what it needs.
        unsafe {
            opts.create_with_security_attributes_raw(
                name,
                (&mut attributes as *mut windows_sys::Win32::Security::SECURITY_ATTRIBUTES).cast(),
            )
        }
    }
}

#[cfg(windows)]
impl Listener for PipeAgentListener {
    type Stream = tokio::net::windows::named_pipe::NamedPipeServer;

    async fn accept(&mut self) -> std::io::Result<(Self::Stream, PeerInfo)> {
        use std::os::windows::io::AsRawHandle;
        loop {
            if let Err(e) = self.next.connect().await {
                // A client that came and went before we connected (ERROR_NO_DATA) leaves this
                // instance unusable: replace it, or the agent would stop accepting.
                self.next = Self::create(&self.name, &self.descriptor, false)?;
                if e.raw_os_error() == Some(232) {
                    continue;
                }
                return Err(e);
            }
            let fresh = Self::create(&self.name, &self.descriptor, false)?;
            let connected = std::mem::replace(&mut self.next, fresh);
            let mut pid = 0u32;
            // SAFETY: the handle belongs to `connected`, a live pipe instance; `pid` is a valid
            // out pointer.
            let ok = unsafe {
                windows_sys::Win32::System::Pipes::GetNamedPipeClientProcessId(
                    connected.as_raw_handle(),
                    &mut pid,
                )
            };
            if ok == 0 || pid == 0 {
                continue;
            }
            match super::peer::from_pipe_client(pid, &self.my_sid) {
                Ok(peer) => return Ok((connected, peer)),
                // Another user, or a process we cannot query: close it (fail closed).
                Err(_) => continue,
            }
        }
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
    let limit = Arc::new(Semaphore::new(state.max_connections));
    let mut tasks = JoinSet::new();
    tasks.spawn(sweep(Arc::clone(&state), watch_rx.clone()));
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(10);
    loop {
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = Arc::clone(&limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let st = Arc::clone(&state);
                let rx = watch_rx.clone();
                tasks.spawn(async move {
                    session::serve_connection(stream, peer, st, rx).await;
                    drop(permit);
                });
            }
            Err(_) => {
                // Out of file descriptors or similar: back off instead of spinning, but keep
                // serving the connections we have.
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

/// Apply the unlock window once a second, so keys go away on time even when nobody asks.
async fn sweep(state: Arc<AgentState>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = state.now();
                let wiped = state.keys().expire(now);
                if wiped.is_some() {
                    state.gate().keys_wiped();
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Prepare `path` and bind a listener there: the directory is created 0700 or verified, a live
/// agent is not stolen, a stale socket is replaced, the socket is made 0600 before any accept.
/// Must be called inside a tokio runtime.
#[cfg(unix)]
pub fn bind(path: &std::path::Path) -> Result<UnixAgentListener, AgentError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => return Err(AgentError::BadSocketPath(path.to_path_buf())),
    };
    crate::secure_fs::ensure_private_dir(dir)?;
    let bind_err = |source| AgentError::Bind {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
        Ok(md) if md.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(AgentError::AlreadyRunning(path.to_path_buf())),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    // Nobody listens: a stale socket from an agent that died.
                    std::fs::remove_file(path).map_err(bind_err)?;
                }
                Err(e) => return Err(bind_err(e)),
            }
        }
        Ok(_) => return Err(AgentError::NotASocket(path.to_path_buf())),
    }
    let std_listener = std::os::unix::net::UnixListener::bind(path).map_err(bind_err)?;
    // The directory is 0700, so nobody else can reach the socket between bind and chmod; a
    // process-wide umask would race with other threads.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    crate::secure_fs::check_private(path, false)?;
    std_listener.set_nonblocking(true).map_err(bind_err)?;
    let listener = tokio::net::UnixListener::from_std(std_listener).map_err(bind_err)?;
    Ok(UnixAgentListener::from_tokio(listener))
}

/// Windows: create the named pipe `path` (a `\\.\pipe\NAME`) for the current user only.
#[cfg(windows)]
pub fn bind(path: &std::path::Path) -> Result<PipeAgentListener, AgentError> {
    PipeAgentListener::bind(&path.to_string_lossy())
}

/// Identity (device, inode) of the file at `path`, to remove only our own socket at exit.
#[cfg(unix)]
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Run the agent described by `config` with `gate` until `shutdown` completes: bind the socket
/// ([`bind`]), serve ([`run`]), then wipe the keys and remove the socket (if it is still ours).
pub async fn serve(
    config: AgentConfig,
    gate: Arc<dyn Gate>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    #[cfg(unix)]
    {
        let listener = bind(&config.socket_path)?;
        let ours = file_id(&config.socket_path);
        let state = Arc::new(AgentState::from_config(&config, gate));
        let result = run(listener, Arc::clone(&state), shutdown).await;
        state.keys().wipe();
        if ours.is_some() && file_id(&config.socket_path) == ours {
            let _ = std::fs::remove_file(&config.socket_path);
        }
        result
    }
    #[cfg(windows)]
    {
        let listener = bind(&config.socket_path)?;
        let state = Arc::new(AgentState::from_config(&config, gate));
        let result = run(listener, Arc::clone(&state), shutdown).await;
        state.keys().wipe();
        result
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (config, gate, shutdown);
        Err(AgentError::Unsupported(
            "the agent needs Unix sockets or Windows named pipes",
        ))
    }
}

/// Harden the agent process before it holds keys: no core dumps (`RLIMIT_CORE` 0) and, on
/// Linux, not dumpable (`PR_SET_DUMPABLE` 0: no core file, no same-user ptrace, `/proc/PID/mem`
/// and friends owned by root). The CLI calls this at agent start.
pub fn harden_process() -> Result<(), AgentError> {
    #[cfg(unix)]
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
        .map_err(|e| AgentError::Hardening(format!("setrlimit(RLIMIT_CORE, 0): {e}")))?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| AgentError::Hardening(format!("prctl(PR_SET_DUMPABLE, 0): {e}")))?;
    Ok(())
}

#[cfg(test)]
mod pipe_name_tests {
    use super::*;

    #[test]
    fn default_pipe_name_is_ours_and_valid() {
        assert_eq!(default_pipe_name("alice"), r"\\.\pipe\auths-agent-alice");
        assert_eq!(
            default_pipe_name(r"DOMAIN\bob smith"),
            r"\\.\pipe\auths-agent-DOMAIN_bob_smith"
        );
        assert_eq!(default_pipe_name(""), r"\\.\pipe\auths-agent-user");
        assert!(is_pipe_name(&default_pipe_name("alice")));
    }

    #[test]
    fn pipe_names_are_checked() {
        assert!(is_pipe_name(r"\\.\pipe\openssh-ssh-agent"));
        assert!(is_pipe_name(r"\\.\PIPE\x"));
        assert!(!is_pipe_name(r"\\.\pipe\"));
        assert!(!is_pipe_name(r"\\server\pipe\x"));
        assert!(!is_pipe_name(r"C:\Users\a\.auths\agent.sock"));
        assert!(!is_pipe_name(r"\\.\pipe\a\b"));
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn hardening_makes_the_process_non_dumpable() {
        super::harden_process().unwrap();
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).unwrap();
        assert_eq!((soft, hard), (0, 0));
    }
}
