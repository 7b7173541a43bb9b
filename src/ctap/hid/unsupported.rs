//! No raw HID here: on Windows it needs Administrator, so keys are reached through
//! webauthn.dll (`--device windows`) instead.

use std::time::Duration;

use super::HidKeyInfo;
use crate::ctap::framing::Report;
use crate::ctap::transport::{Transport, TransportError};
use crate::ctap::CtapError;

const WHY: &str = "raw USB HID needs Administrator on Windows; use --device windows";

/// Fails: no raw HID on this platform.
pub fn enumerate() -> Result<Vec<HidKeyInfo>, CtapError> {
    Err(CtapError::Unsupported(WHY.into()))
}

/// Never constructed: [`HidTransport::open`] fails.
#[derive(Debug)]
pub enum HidTransport {}

impl HidTransport {
    /// Fails: no raw HID on this platform.
    pub fn open(path: &str) -> Result<HidTransport, CtapError> {
        Err(CtapError::Open {
            path: path.to_owned(),
            reason: WHY.into(),
        })
    }
}

impl Transport for HidTransport {
    fn write_report(&mut self, _report: &Report) -> Result<(), TransportError> {
        match *self {}
    }

    fn read_report(&mut self, _timeout: Duration) -> Result<Option<Report>, TransportError> {
        match *self {}
    }
}
