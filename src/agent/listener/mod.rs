//! The agent's endpoint: the [`Listener`] interface (connections with the peer's identity, read
//! from the OS at accept), [`bind`], the client side (`connect`) and this platform's
//! implementation (see `crate::platform` for the scheme):
//! - `unix`: a Unix socket in a private directory, 0600 before the first accept
//!   ([`UnixAgentListener`] on Unix);
//! - `windows`: a named pipe admitting the current user only (`PipeAgentListener` on Windows);
//! - `other`: binding fails.
//!
//! Each exposes the same names: `AgentListener` (what [`bind`] returns), [`bind`],
//! `current_uid`, `connect` and `BoundEndpoint` (what to remove at exit). A Unix listener also
//! says which socket file it is bound to ([`BoundSocket`]), so the agent notices when its path
//! is moved aside or replaced; a Windows named pipe cannot be moved, so there is no such check.

use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::presence::request::Requester;

#[cfg(not(any(unix, windows)))]
mod other;
#[cfg(not(any(unix, windows)))]
use other as imp;
#[cfg(not(any(unix, windows)))]
pub use other::UnsupportedListener;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;
#[cfg(unix)]
pub use unix::{BoundSocket, UnixAgentListener};
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;
#[cfg(windows)]
pub use windows::PipeAgentListener;

pub use imp::{bind, AgentListener};
pub(crate) use imp::{connect, current_uid, BoundEndpoint};

/// A source of connections with the peer's identity, read from the OS at accept. Unix sockets
/// and Windows named pipes implement it.
pub trait Listener: Send {
    /// One accepted connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Wait for the next connection whose peer credentials could be read. Connections whose
    /// credentials cannot be read are closed here (fail closed) and not returned.
    fn accept(&mut self)
        -> impl Future<Output = std::io::Result<(Self::Stream, Requester)>> + Send;

    /// The socket file this listener is bound to, when there is one to check (a Unix socket
    /// [`bind`] made; not a named pipe).
    fn bound_socket(&self) -> Option<BoundSocket> {
        None
    }
}

/// Where there are no socket files to move aside: never constructed.
#[cfg(not(unix))]
#[derive(Debug, Clone)]
pub enum BoundSocket {}

#[cfg(not(unix))]
impl BoundSocket {
    /// Never called: there is no value.
    pub fn path(&self) -> &std::path::Path {
        match *self {}
    }

    /// Never called: there is no value.
    pub fn still_ours(&self) -> bool {
        match *self {}
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

#[cfg(test)]
mod tests {
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
