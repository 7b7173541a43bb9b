//! Unix: the agent listens on a Unix socket in a private directory; peers are identified by
//! the kernel ([`crate::agent::peer::from_unix_stream`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Listener;
use crate::agent::AgentError;
use crate::presence::request::Requester;

/// Our effective uid: connections must have it.
pub(crate) fn current_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The listener [`bind`] returns on this platform.
pub type AgentListener = UnixAgentListener;

/// A Unix socket listener.
#[derive(Debug)]
pub struct UnixAgentListener {
    inner: tokio::net::UnixListener,
    bound: Option<BoundSocket>,
}

impl UnixAgentListener {
    /// Wrap a bound tokio listener (tests bind their own); the socket file at its path now is
    /// remembered as ours.
    pub fn from_tokio(inner: tokio::net::UnixListener) -> Self {
        let bound = inner
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            .and_then(BoundSocket::at);
        UnixAgentListener { inner, bound }
    }
}

/// The socket file a listener was bound to: its path and the (device, inode) the file had
/// then. When the path names another file, or none, somebody moved the socket aside or
/// replaced it (a same-user process can rename a socket in the agent's own directory and put a
/// relay at its path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundSocket {
    path: PathBuf,
    id: (u64, u64),
}

impl BoundSocket {
    fn at(path: PathBuf) -> Option<Self> {
        file_id(&path).map(|id| BoundSocket { path, id })
    }

    /// The path the socket was bound at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True while the path still names the socket file we bound (one `lstat`).
    pub fn still_ours(&self) -> bool {
        file_id(&self.path) == Some(self.id)
    }
}

impl Listener for UnixAgentListener {
    type Stream = tokio::net::UnixStream;

    async fn accept(&mut self) -> std::io::Result<(Self::Stream, Requester)> {
        loop {
            let (stream, _) = self.inner.accept().await?;
            match crate::agent::peer::from_unix_stream(&stream) {
                Ok(peer) => return Ok((stream, peer)),
                Err(_) => continue,
            }
        }
    }

    fn bound_socket(&self) -> Option<BoundSocket> {
        self.bound.clone()
    }
}

/// Prepare `path` and bind a listener there: the directory is created 0700 or verified, a live
/// agent is not stolen, a stale socket is replaced, the socket is made 0600 before any accept.
/// Must be called inside a tokio runtime.
pub fn bind(path: &Path) -> Result<UnixAgentListener, AgentError> {
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

/// The socket file [`bind`] made, remembered by (device, inode) so that at exit only our own
/// socket is removed, not one a newer agent put at the same path.
pub(crate) struct BoundEndpoint(Option<(u64, u64)>);

impl BoundEndpoint {
    /// Remember the file at `path`.
    pub(crate) fn of(path: &Path) -> Self {
        BoundEndpoint(file_id(path))
    }

    /// Remove `path` if it is still the file we remembered.
    pub(crate) fn remove_if_ours(&self, path: &Path) {
        if self.0.is_some() && file_id(path) == self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Identity (device, inode) of the file at `path`, to remove only our own socket at exit.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Connect to the agent socket (the client side, for [`crate::agent::client`]).
pub(crate) fn connect(
    socket: &Path,
    timeout: Option<Duration>,
) -> std::io::Result<std::os::unix::net::UnixStream> {
    let s = std::os::unix::net::UnixStream::connect(socket)?;
    s.set_read_timeout(timeout)?;
    s.set_write_timeout(timeout)?;
    Ok(s)
}
