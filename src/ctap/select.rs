//! Which key to talk to. Selectors: `usb` (the one plugged-in FIDO key, or the one touched
//! when several are), `usb:PATH`, `sim:SOCKET` (a running `auths sim serve`), `windows`
//! (webauthn.dll). `AUTHS_DEVICE` sets the default.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::backend::SecurityKey;
use super::command::GetInfoResponse;
use super::device::{Device, DeviceOptions};
use super::transaction::KeepaliveStatus;
use super::transport::Transport;
use super::virtual_key::authenticator::VIRTUAL_AAGUID;
use super::CtapError;

/// A device selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSelector {
    /// The plugged-in key (touch to choose among several).
    Usb,
    /// The key at this HID path.
    UsbPath(String),
    /// A virtual key served on this Unix socket.
    Sim(PathBuf),
    /// Windows' webauthn.dll.
    Windows,
}

impl DeviceSelector {
    /// `AUTHS_DEVICE`, or the platform default (`usb`; `windows` on Windows).
    pub fn from_env() -> Result<DeviceSelector, CtapError> {
        match std::env::var("AUTHS_DEVICE") {
            Ok(s) if !s.is_empty() => s.parse(),
            _ if crate::platform::WINDOWS => Ok(DeviceSelector::Windows),
            _ => Ok(DeviceSelector::Usb),
        }
    }
}

impl FromStr for DeviceSelector {
    type Err = CtapError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "usb" => Ok(DeviceSelector::Usb),
            None if s == "windows" => Ok(DeviceSelector::Windows),
            Some(("usb", p)) if !p.is_empty() => Ok(DeviceSelector::UsbPath(p.to_owned())),
            Some(("sim", p)) if !p.is_empty() => Ok(DeviceSelector::Sim(PathBuf::from(p))),
            _ => Err(CtapError::BadSelector(s.to_owned())),
        }
    }
}

impl fmt::Display for DeviceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSelector::Usb => write!(f, "usb"),
            DeviceSelector::UsbPath(p) => write!(f, "usb:{p}"),
            DeviceSelector::Sim(p) => write!(f, "sim:{}", p.display()),
            DeviceSelector::Windows => write!(f, "windows"),
        }
    }
}

/// An open key and what we know about it.
pub struct OpenedKey {
    /// The channel.
    pub device: Device<Box<dyn Transport>>,
    /// For people: product name and path, or the sim socket.
    pub description: String,
    /// AAGUID from getInfo.
    pub aaguid: [u8; 16],
    /// True for the virtual key (its AAGUID, or a `sim:` selector).
    pub is_virtual: bool,
    /// getInfo as the key answered it when the channel was opened.
    pub info: GetInfoResponse,
}

impl fmt::Debug for OpenedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedKey")
            .field("description", &self.description)
            .field("is_virtual", &self.is_virtual)
            .finish()
    }
}

impl OpenedKey {
    /// Open a channel on any report transport (e.g. an in-process virtual key) and read its
    /// getInfo. `is_virtual` is forced on; the AAGUID can only add to it.
    pub fn from_transport(
        transport: Box<dyn Transport>,
        description: String,
        opts: DeviceOptions,
        is_virtual: bool,
    ) -> Result<OpenedKey, CtapError> {
        finish(transport, description, opts, is_virtual, &mut || {})
    }

    /// [`OpenedKey::from_transport`], telling `on_busy` each time the key answers that
    /// another program holds it (getInfo is asked again until the deadline).
    pub fn from_transport_reporting_busy(
        transport: Box<dyn Transport>,
        description: String,
        opts: DeviceOptions,
        is_virtual: bool,
        on_busy: &mut dyn FnMut(),
    ) -> Result<OpenedKey, CtapError> {
        finish(transport, description, opts, is_virtual, on_busy)
    }
}

fn finish(
    transport: Box<dyn Transport>,
    description: String,
    opts: DeviceOptions,
    sim: bool,
    on_busy: &mut dyn FnMut(),
) -> Result<OpenedKey, CtapError> {
    let mut device = Device::open(transport, opts)?;
    let info = device.get_info_reporting(&mut |s| {
        if s == KeepaliveStatus::Busy {
            on_busy()
        }
    })?;
    let aaguid = info.aaguid;
    Ok(OpenedKey {
        device,
        description,
        aaguid,
        is_virtual: sim || aaguid == VIRTUAL_AAGUID,
        info,
    })
}

/// Open the selected key. With `usb` and several keys plugged in, every key blinks
/// (authenticatorSelection) and the first one touched is used; `on_choose` is called once
/// before that wait so a prompt can be shown.
pub fn open(
    selector: &DeviceSelector,
    opts: DeviceOptions,
    on_choose: &mut dyn FnMut(usize),
) -> Result<OpenedKey, CtapError> {
    open_reporting_busy(selector, opts, on_choose, &mut || {})
}

/// [`open`], telling `on_busy` each time the key answers that another program holds it.
pub fn open_reporting_busy(
    selector: &DeviceSelector,
    opts: DeviceOptions,
    on_choose: &mut dyn FnMut(usize),
    on_busy: &mut dyn FnMut(),
) -> Result<OpenedKey, CtapError> {
    match selector {
        DeviceSelector::Sim(path) => open_sim(path, opts, on_busy),
        DeviceSelector::UsbPath(path) => open_usb_path(path, opts, on_busy),
        DeviceSelector::Usb => open_usb(opts, on_choose, on_busy),
        DeviceSelector::Windows => Err(CtapError::Unsupported(
            "the windows device (webauthn.dll) is not a CTAPHID channel; open it with select::open_key".into(),
        )),
    }
}

/// Open the selected key behind the backend-neutral [`SecurityKey`] interface: `windows`
/// through webauthn.dll ([`super::winhello`]), everything else as a CTAPHID channel ([`open`]).
/// Enrollment, `auths token test` and the gate use this.
pub fn open_key(
    selector: &DeviceSelector,
    opts: DeviceOptions,
    on_choose: &mut dyn FnMut(usize),
) -> Result<Box<dyn SecurityKey>, CtapError> {
    open_key_reporting_busy(selector, opts, on_choose, &mut || {})
}

/// [`open_key`], telling `on_busy` each time the key answers that another program holds it.
pub fn open_key_reporting_busy(
    selector: &DeviceSelector,
    opts: DeviceOptions,
    on_choose: &mut dyn FnMut(usize),
    on_busy: &mut dyn FnMut(),
) -> Result<Box<dyn SecurityKey>, CtapError> {
    match selector {
        DeviceSelector::Windows => super::winhello::open(opts),
        other => Ok(Box::new(open_reporting_busy(
            other, opts, on_choose, on_busy,
        )?)),
    }
}

fn open_sim(
    path: &std::path::Path,
    opts: DeviceOptions,
    on_busy: &mut dyn FnMut(),
) -> Result<OpenedKey, CtapError> {
    if !super::virtual_key::SIM_AVAILABLE {
        return Err(CtapError::Open {
            path: path.display().to_string(),
            reason: "sim: devices need Unix sockets".into(),
        });
    }
    let t = super::virtual_key::SimTransport::connect(path).map_err(|e| CtapError::Open {
        path: path.display().to_string(),
        reason: format!(
            "{e} (is `auths sim serve --socket {}` running?)",
            path.display()
        ),
    })?;
    finish(
        Box::new(t),
        format!("virtual key at {}", path.display()),
        opts,
        true,
        on_busy,
    )
}

fn open_usb_path(
    path: &str,
    opts: DeviceOptions,
    on_busy: &mut dyn FnMut(),
) -> Result<OpenedKey, CtapError> {
    let t = super::hid::HidTransport::open(path)?;
    let desc = super::hid::enumerate()
        .ok()
        .and_then(|l| l.into_iter().find(|k| k.path == path))
        .map(|k| k.describe())
        .unwrap_or_else(|| path.to_owned());
    finish(Box::new(t), desc, opts, false, on_busy)
}

fn open_usb(
    opts: DeviceOptions,
    on_choose: &mut dyn FnMut(usize),
    on_busy: &mut dyn FnMut(),
) -> Result<OpenedKey, CtapError> {
    use super::device::CancelToken;
    let keys = super::hid::enumerate()?;
    match keys.len() {
        0 => Err(CtapError::NoDevice),
        1 => open_usb_path(&keys[0].path, opts, on_busy),
        n => {
            on_choose(n);
            // Every key blinks; the first touched wins, the others are cancelled.
            let cancel = CancelToken::new();
            let (tx, rx) = std::sync::mpsc::channel();
            let mut threads = Vec::new();
            for k in keys {
                let tx = tx.clone();
                let cancel = cancel.clone();
                threads.push(std::thread::spawn(move || {
                    // Choosing among several keys: a busy one simply is not chosen.
                    let r = open_usb_path(&k.path, opts, &mut || {}).and_then(|mut key| {
                        key.device.selection(&mut |_| {}, Some(&cancel))?;
                        Ok(key)
                    });
                    let _ = tx.send(r);
                }));
            }
            drop(tx);
            let chosen = rx.iter().flatten().next();
            cancel.cancel();
            for t in threads {
                let _ = t.join();
            }
            chosen.ok_or(CtapError::NoDeviceChosen(n))
        }
    }
}

/// Print-friendly keepalive prompt helper: calls `prompt` once, on the first UPNEEDED.
pub fn on_first_up_needed(mut prompt: impl FnMut()) -> impl FnMut(KeepaliveStatus) {
    let mut shown = false;
    move |s| {
        if s == KeepaliveStatus::UpNeeded && !shown {
            shown = true;
            prompt();
        }
    }
}
