//! The one interface between the CTAPHID host code and a key: 64-byte reports in and out.
//! hidapi (real keys), the virtual key in-process, and `sim:` sockets all implement it, so
//! the code tests exercise is the code that talks to a YubiKey.

use std::time::Duration;

use thiserror::Error;

use super::framing::Report;

/// A failure below CTAPHID: the device is gone or the OS refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The device was unplugged or the connection closed.
    #[error("the security key disconnected")]
    Disconnected,
    /// An OS-level I/O error.
    #[error("I/O error talking to the security key: {0}")]
    Io(#[from] std::io::Error),
    /// An error reported by the HID library.
    #[error("HID error: {0}")]
    Hid(String),
}

/// Raw 64-byte HID reports to and from one key.
pub trait Transport: Send {
    /// Send one output report.
    fn write_report(&mut self, report: &Report) -> Result<(), TransportError>;

    /// Wait at most `timeout` for one input report; `Ok(None)` when none came in time.
    fn read_report(&mut self, timeout: Duration) -> Result<Option<Report>, TransportError>;
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn write_report(&mut self, report: &Report) -> Result<(), TransportError> {
        (**self).write_report(report)
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Option<Report>, TransportError> {
        (**self).read_report(timeout)
    }
}
