//! Other platforms: neither Unix sockets nor named pipes; binding fails.

use std::path::Path;
use std::time::Duration;

use super::Listener;
use crate::agent::AgentError;
use crate::presence::request::Requester;

/// No uid to match.
pub(crate) fn current_uid() -> u32 {
    0
}

/// The listener [`bind`] returns on this platform.
pub type AgentListener = UnsupportedListener;

/// Never constructed: [`bind`] fails.
#[derive(Debug)]
pub struct UnsupportedListener(());

impl Listener for UnsupportedListener {
    type Stream = tokio::io::DuplexStream;

    async fn accept(&mut self) -> std::io::Result<(Self::Stream, Requester)> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "no Unix sockets or named pipes on this platform",
        ))
    }
}

/// Fails: the agent needs Unix sockets or Windows named pipes.
pub fn bind(_path: &Path) -> Result<UnsupportedListener, AgentError> {
    Err(AgentError::Unsupported(
        "the agent needs Unix sockets or Windows named pipes",
    ))
}

/// Nothing is ever bound.
pub(crate) struct BoundEndpoint;

impl BoundEndpoint {
    pub(crate) fn of(_path: &Path) -> Self {
        BoundEndpoint
    }

    pub(crate) fn remove_if_ours(&self, _path: &Path) {}
}

/// No client side either.
pub(crate) fn connect(
    _socket: &Path,
    _timeout: Option<Duration>,
) -> std::io::Result<std::fs::File> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no Unix sockets or named pipes on this platform",
    ))
}
