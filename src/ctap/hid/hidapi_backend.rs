//! hidapi (Linux hidraw, macOS IOKit non-exclusive): enumerate, open, move reports.

use std::ffi::CString;
use std::time::Duration;

use super::{HidKeyInfo, FIDO_USAGE_CTAPHID, FIDO_USAGE_PAGE};
use crate::ctap::framing::{Report, REPORT_LEN};
use crate::ctap::transport::{Transport, TransportError};
use crate::ctap::CtapError;

fn hid_err(e: hidapi::HidError) -> TransportError {
    TransportError::Hid(e.to_string())
}

/// List plugged-in FIDO keys.
pub fn enumerate() -> Result<Vec<HidKeyInfo>, CtapError> {
    let api = hidapi::HidApi::new().map_err(|e| CtapError::Transport(hid_err(e)))?;
    let mut keys: Vec<HidKeyInfo> = api
        .device_list()
        .filter(|d| d.usage_page() == FIDO_USAGE_PAGE && d.usage() == FIDO_USAGE_CTAPHID)
        .map(|d| HidKeyInfo {
            path: d.path().to_string_lossy().into_owned(),
            vendor_id: d.vendor_id(),
            product_id: d.product_id(),
            manufacturer: d.manufacturer_string().map(str::to_owned),
            product: d.product_string().map(str::to_owned),
        })
        .collect();
    keys.sort_by(|a, b| a.path.cmp(&b.path));
    keys.dedup_by(|a, b| a.path == b.path);
    Ok(keys)
}

/// An open FIDO HID interface.
pub struct HidTransport {
    device: hidapi::HidDevice,
    path: String,
}

impl std::fmt::Debug for HidTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HidTransport")
            .field("path", &self.path)
            .finish()
    }
}

impl HidTransport {
    /// Open the key at `path`.
    pub fn open(path: &str) -> Result<HidTransport, CtapError> {
        let open_err = |reason: String| CtapError::Open {
            path: path.to_owned(),
            reason,
        };
        let api = hidapi::HidApi::new().map_err(|e| open_err(e.to_string()))?;
        let cpath = CString::new(path).map_err(|_| open_err("path contains a NUL byte".into()))?;
        let device = api.open_path(&cpath).map_err(|e| open_err(e.to_string()))?;
        Ok(HidTransport {
            device,
            path: path.to_owned(),
        })
    }

    /// The path this transport was opened on.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Transport for HidTransport {
    fn write_report(&mut self, report: &Report) -> Result<(), TransportError> {
        // hidapi wants the report id first; FIDO keys use no report ids, so it is 0.
        let mut buf = [0u8; REPORT_LEN + 1];
        buf[1..].copy_from_slice(report);
        let n = self.device.write(&buf).map_err(hid_err)?;
        if n < REPORT_LEN {
            return Err(TransportError::Disconnected);
        }
        Ok(())
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Option<Report>, TransportError> {
        let mut buf = [0u8; REPORT_LEN];
        let ms = i32::try_from(timeout.as_millis())
            .unwrap_or(i32::MAX)
            .max(1);
        let n = self.device.read_timeout(&mut buf, ms).map_err(hid_err)?;
        // A short input report stays zero-padded, as the HID layer would pad it; framing
        // checks the content.
        Ok((n > 0).then_some(buf))
    }
}
