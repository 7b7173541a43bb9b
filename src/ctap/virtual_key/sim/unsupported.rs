//! No Unix sockets: the sim cannot be served or reached.

use std::path::Path;
use std::time::Duration;

use super::super::VirtualKey;
use super::SimError;
use crate::ctap::framing::Report;
use crate::ctap::transport::{Transport, TransportError};

/// False: no sim sockets on this platform.
pub const AVAILABLE: bool = false;

/// Never constructed: [`serve_unix`] fails.
#[derive(Debug)]
pub enum SimServer {}

impl SimServer {
    /// The data socket.
    pub fn path(&self) -> &Path {
        match *self {}
    }

    /// Stop serving.
    pub fn shutdown(self) {
        match self {}
    }
}

/// Fails with [`SimError::Unsupported`].
pub fn serve_unix(_socket_path: &Path, _key: &VirtualKey) -> Result<SimServer, SimError> {
    Err(SimError::Unsupported)
}

/// Fails with [`SimError::Unsupported`].
pub fn sim_touch(_socket_path: &Path) -> Result<(), SimError> {
    Err(SimError::Unsupported)
}

/// No Unix sockets: no sim.
pub fn sim_busy(_socket_path: &Path, _duration: std::time::Duration) -> Result<(), SimError> {
    Err(SimError::Unsupported)
}

/// Never constructed: [`SimTransport::connect`] fails.
#[derive(Debug)]
pub enum SimTransport {}

impl SimTransport {
    /// Fails: no Unix sockets.
    pub fn connect(_socket_path: &Path) -> Result<SimTransport, TransportError> {
        Err(TransportError::Io(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "sim: devices need Unix sockets",
        )))
    }
}

impl Transport for SimTransport {
    fn write_report(&mut self, _report: &Report) -> Result<(), TransportError> {
        match *self {}
    }

    fn read_report(&mut self, _timeout: Duration) -> Result<Option<Report>, TransportError> {
        match *self {}
    }
}
