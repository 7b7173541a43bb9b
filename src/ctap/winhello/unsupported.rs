//! Not Windows: no webauthn.dll.

use crate::ctap::CtapError;

/// The `windows` device exists only on Windows.
pub fn open(
    _opts: crate::ctap::device::DeviceOptions,
) -> Result<Box<dyn crate::ctap::backend::SecurityKey>, CtapError> {
    Err(CtapError::Unsupported(
        "the windows device (webauthn.dll) exists only on Windows; use --device usb or sim:SOCKET"
            .into(),
    ))
}
