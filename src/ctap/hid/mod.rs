//! Real keys through hidapi: enumerate FIDO HID interfaces (usage page 0xF1D0, usage 0x01,
//! CTAP 2.1 §11.2.8.1), open them, and move 64-byte reports with a read timeout.
//!
//! Linux uses hidapi's native hidraw backend (see Cargo.toml for why); macOS opens devices
//! non-exclusively so a browser can use the key while the agent runs. Windows reaches keys
//! through webauthn.dll instead (raw FIDO HID needs Administrator there).

//!
//! The platform half (see `crate::platform` for the scheme): `hidapi_backend` on Linux and
//! macOS; `unsupported` elsewhere, where [`enumerate`] and [`HidTransport::open`] fail.

#[cfg(any(target_os = "linux", target_os = "macos"))]
mod hidapi_backend;
#[cfg(any(target_os = "linux", target_os = "macos"))]
use hidapi_backend as imp;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod unsupported;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
use unsupported as imp;

pub use imp::{enumerate, HidTransport};

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
