//! The ssh-agent server (draft-miller-ssh-agent). Knows nothing of CTAP.
//!
//! - [`peer`]: who is on the other end of a connection (uid, pid, start time, executable,
//!   parent), read once when the connection is accepted.
//! - [`keys`]: identity keys in zeroizing memory, the unlock window, the sealed protocol lock.
//! - [`session`]: one connection: uid check, framing, request dispatch, the gate before every
//!   signature.
//! - [`server`]: the socket (0700 directory, 0600 socket, no stealing a live agent), the accept
//!   loop, connection cap and graceful shutdown.
//!
//! Every signature goes through [`crate::presence::gate::Gate::approve`]; the signing function
//! in [`keys`] takes the resulting [`crate::presence::gate::Approval`] by value.

use std::path::PathBuf;

use thiserror::Error;

use crate::secure_fs::SecureFsError;

pub mod client;
mod harden;
pub mod keys;
pub mod listener;
pub mod peer;
pub mod server;
pub mod session;
pub mod watch;

/// What went wrong in the agent layer. Each message says what to do next.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The socket directory or socket file is unsafe (loose mode, foreign owner, symlink).
    #[error("unsafe agent socket location: {0}")]
    SecureFs(#[from] SecureFsError),
    /// Another agent answers on the socket path: we do not steal it.
    #[error("an agent is already listening on {0}; stop it first (`auths agent stop`) or pass another --socket")]
    AlreadyRunning(PathBuf),
    /// Something that is not a socket sits at the socket path.
    #[error("{0} exists and is not a socket; remove it or pass another --socket")]
    NotASocket(PathBuf),
    /// The socket path has no usable parent directory.
    #[error("socket path {0} has no parent directory; pass an absolute --socket path")]
    BadSocketPath(PathBuf),
    /// Binding or preparing the socket failed.
    #[error("cannot listen on {path}: {source}; check the directory exists and is yours")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the peer's credentials from a connection failed.
    #[error("cannot read the credentials of a connecting process: {0}")]
    PeerCredentials(#[source] std::io::Error),
    /// A key type the agent does not hold.
    #[error("unsupported key type {0}: only ssh-ed25519 and ecdsa-sha2-nistp256 identity keys can be added")]
    UnsupportedKey(String),
    /// A certificate or an unknown constraint was offered.
    #[error("unsupported request: {0}")]
    Unsupported(&'static str),
    /// The agent holds no such identity.
    #[error("the agent does not hold this key; add it with `auths agent add KEYFILE`")]
    NoSuchKey,
    /// The agent is locked with `ssh-add -x`.
    #[error("the agent is locked; unlock it with `ssh-add -X`")]
    Locked,
    /// The agent is not locked (an unlock without a lock).
    #[error("the agent is not locked")]
    NotLocked,
    /// `ssh-add -X` with the wrong passphrase.
    #[error("wrong passphrase; the agent stays locked (try `ssh-add -X` again)")]
    BadPassphrase,
    /// The approval handed to the signer is for another key or other bytes.
    #[error("the approval does not cover this key and data; nothing was signed")]
    ApprovalMismatch,
    /// The key could not sign, or sealing the keys failed.
    #[error("key operation failed: {0}")]
    Crypto(String),
    /// Making the process non-dumpable or disabling core dumps failed.
    #[error("cannot harden the agent process ({0}); refusing to hold keys in a dumpable process")]
    Hardening(String),
    /// A CLI request to a running agent failed.
    #[error("{0}")]
    Client(String),
    /// Any other I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
