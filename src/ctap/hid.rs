//! Real keys through hidapi: enumerate FIDO HID interfaces (usage page 0xF1D0, usage 0x01,
//! CTAP 2.1 §11.2.8.1), open them, and move 64-byte reports with a read timeout.
//!
//! Linux uses hidapi's native hidraw backend (see Cargo.toml for why); macOS opens devices
//! non-exclusively so a browser can use the key while the agent runs. Windows reaches keys
//! through webauthn.dll instead (raw FIDO HID needs Administrator there).

use std::ffi::CString;
use std::time::Duration;

use super::framing::{Report, REPORT_LEN};
use super::transport::{Transport, TransportError};
use super::CtapError;

/// FIDO alliance HID usage page.
pub const FIDO_USAGE_PAGE: u16 = 0xf1d0;
/// CTAPHID usage on that page.
pub const FIDO_USAGE_CTAPHID: u16 = 0x01;

/// One FIDO key found by enumeration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HidKeyInfo {
    /// Platform path (`/dev/hidraw3`, an IOService path on macOS).
    pub path: String,
    /// USB vendor id.
    pub vendor_id: u16,
    /// USB product id.
    pub product_id: u16,
    /// Manufacturer string, when the key gives one.
    pub manufacturer: Option<String>,
    /// Product string, when the key gives one.
    pub product: Option<String>,
}

impl HidKeyInfo {
    /// A short human name: "Yubico YubiKey OTP+FIDO+CCID (/dev/hidraw3)".
    pub fn describe(&self) -> String {
        let name = [self.manufacturer.as_deref(), self.product.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let name = if name.is_empty() {
            format!("{:04x}:{:04x}", self.vendor_id, self.product_id)
        } else {
            name
        };
        format!("{name} ({})", self.path)
    }
}

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
        let device = api.open_path(&cpath).map_err(|e| {
            open_err(format!(
                "{e}; on Linux install udev/70-auths-fido.rules (see README) and re-plug the key"
            ))
        })?;
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
