//! `auths sim serve`: a [`VirtualKey`](super::VirtualKey) behind Unix sockets.
//!
//! - The data socket (`P`) carries raw 64-byte CTAPHID reports in both directions, no other
//!   framing. Each client connection is one open handle on the key (one
//!   [`VirtualTransport`]): like hidraw, every connection receives every input report.
//! - The control socket (`P.ctl`, the same path with `.ctl` appended) takes one text line per
//!   request and answers one line:
//!   `touch` -> `ok` or `error nothing is waiting for a touch`;
//!   `count` -> the decimal touch count; anything else -> `error unknown command`.
//!   The protocol itself is [`control`], pure and on every platform.
//! - Shutdown does not depend on the socket paths (they may be gone, e.g. removed by a test's
//!   clean-up): the accept loops poll their listener together with a wake-up socket pair.
//!
//! Both sockets are created with mode 0600; a missing parent directory is created with mode
//! 0700. A stale socket (nobody listening) is replaced; a live one is an error.

//!
//! The platform half (see `crate::platform` for the scheme): `unix`; `windows`, where the two
//! sockets are named pipes (`\\.\pipe\NAME` and `\\.\pipe\NAME.ctl`, current user only);
//! `unsupported` elsewhere, where [`AVAILABLE`] is false and everything fails with
//! [`SimError::Unsupported`].

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::secure_fs::SecureFsError;

pub mod control;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;
#[cfg(not(any(unix, windows)))]
mod unsupported;
#[cfg(not(any(unix, windows)))]
use unsupported as imp;

pub use imp::{serve_unix, sim_busy, sim_touch, SimServer, SimTransport, AVAILABLE};

/// A sim socket problem.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SimError {
    /// Another `auths sim serve` already listens there.
    #[error("{0} is in use by a running virtual key")]
    InUse(PathBuf),
    /// The path exists and is not a socket.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// The socket directory is not private.
    #[error(transparent)]
    Fs(#[from] SecureFsError),
    /// Socket I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `auths sim touch` found nothing waiting for a touch.
    #[error("the virtual key is not waiting for a touch")]
    NothingWaiting,
    /// The control socket answered something we do not understand.
    #[error("unexpected answer from the virtual key's control socket {0}")]
    UnexpectedReply(PathBuf),
    /// On Windows the sim's socket is a named pipe name, and this is not one.
    #[error("{0} is not a named pipe name; on Windows use --socket \\\\.\\pipe\\NAME")]
    NotAPipeName(PathBuf),
    /// This platform has no Unix sockets.
    #[error("the virtual key's sockets need Unix sockets; not available on this platform")]
    Unsupported,
}

/// The control socket of the data socket at `path`: `path` with `.ctl` appended.
pub fn control_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".ctl");
    PathBuf::from(p)
}
