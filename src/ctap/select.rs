//! Which key to talk to. Selectors: `usb` (the one plugged-in FIDO key, or the one touched
//! when several are), `usb:PATH`, `sim:SOCKET` (a running `auths sim serve`), `windows`
//! (webauthn.dll). `AUTHS_DEVICE` sets the default.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::backend::SecurityKey;
use super::command::GetInfoResponse;
use super::device::{Device, DeviceOptions};
use super::framing::capability;
use super::status::StatusCode;
use super::transaction::KeepaliveStatus;
use super::transport::Transport;
use super::u2f::U2fKey;
use super::virtual_key::authenticator::VIRTUAL_AAGUID;
use super::{CtapError, HidErrorCode};

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

/// What a channel turned out to speak.
enum Opened {
    /// CTAP2: getInfo answered.
    Ctap2(Box<OpenedKey>),
    /// U2F only (CTAP1 over CTAPHID_MSG).
    U2f(U2fKey),
}

impl Opened {
    fn boxed(self) -> Box<dyn SecurityKey> {
        match self {
            Opened::Ctap2(k) => k,
            Opened::U2f(k) => Box::new(k),
        }
    }

    fn ctap2(self) -> Result<OpenedKey, CtapError> {
        match self {
            Opened::Ctap2(k) => Ok(*k),
            Opened::U2f(k) => Err(CtapError::Unsupported(format!(
                "{} is a U2F-only key (no CTAP2): open it with select::open_key",
                k.description()
            ))),
        }
    }

    /// Blink and wait for a touch (choosing among several keys).
    fn select(&mut self, cancel: &super::device::CancelToken) -> Result<(), CtapError> {
        match self {
            Opened::Ctap2(k) => k.device.selection(&mut |_| {}, Some(cancel)),
            Opened::U2f(k) => k.wait_for_touch(super::backend::Waiting {
                on_up_needed: &mut || {},
                on_busy: None,
                cancel: Some(cancel),
            }),
        }
    }
}

fn finish(
    transport: Box<dyn Transport>,
    description: String,
    opts: DeviceOptions,
    sim: bool,
    on_busy: &mut dyn FnMut(),
) -> Result<OpenedKey, CtapError> {
    open_channel(transport, description, opts, sim, on_busy)?.ctap2()
}

/// Allocate a channel and find what the key speaks: U2F when the INIT capabilities lack CBOR,
/// or when getInfo is refused as an unknown command (CTAP1_ERR_INVALID_COMMAND, or
/// CTAPHID's ERR_INVALID_CMD) by a key that has CTAPHID_MSG (no NMSG); CTAP2 otherwise.
/// `on_busy` hears each time the key answers that another program holds it.
fn open_channel(
    transport: Box<dyn Transport>,
    description: String,
    opts: DeviceOptions,
    sim: bool,
    on_busy: &mut dyn FnMut(),
) -> Result<Opened, CtapError> {
    let mut device = Device::open(transport, opts)?;
    let capabilities = device.info().capabilities;
    let has_msg = capabilities & capability::NMSG == 0;
    if capabilities & capability::CBOR == 0 {
        return Ok(Opened::U2f(U2fKey::open(device, description, sim)?));
    }
    let info = match device.get_info_reporting(&mut |s| {
        if s == KeepaliveStatus::Busy {
            on_busy()
        }
    }) {
        Ok(info) => info,
        Err(
            CtapError::Status(StatusCode::InvalidCommand)
            | CtapError::Hid(HidErrorCode::InvalidCmd),
        ) if has_msg => return Ok(Opened::U2f(U2fKey::open(device, description, sim)?)),
        Err(e) => return Err(e),
    };
    let aaguid = info.aaguid;
    Ok(Opened::Ctap2(Box::new(OpenedKey {
        device,
        description,
        aaguid,
        is_virtual: sim || aaguid == VIRTUAL_AAGUID,
        info,
    })))
}

/// Open a channel on any report transport (e.g. an in-process virtual key) behind the
/// backend-neutral [`SecurityKey`]: [`OpenedKey`] for CTAP2, [`U2fKey`] for a U2F-only key,
/// chosen as [`open_key`] chooses. `is_virtual` is forced on.
pub fn open_transport(
    transport: Box<dyn Transport>,
    description: String,
    opts: DeviceOptions,
    is_virtual: bool,
) -> Result<Box<dyn SecurityKey>, CtapError> {
    Ok(open_channel(transport, description, opts, is_virtual, &mut || {})?.boxed())
}

/// Open the selected key. With `usb` and several keys plugged in, every key blinks
/// (authenticatorSelection) and the first one touched is used; `on_choose` is called once
/// before that wait so a prompt can be shown.
pub fn open(
    selector: &DeviceSelector,
    opts: DeviceOptions,
    on_choose: &mut dyn FnMut(usize),
) -> Result<OpenedKey, CtapError> {
    open_channel_of(selector, opts, on_choose, &mut || {})?.ctap2()
}

fn open_channel_of(
    selector: &DeviceSelector,
    opts: DeviceOptions,
    on_choose: &mut dyn FnMut(usize),
    on_busy: &mut dyn FnMut(),
) -> Result<Opened, CtapError> {
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
/// through webauthn.dll ([`super::winhello`]), everything else as a CTAPHID channel: CTAP2
/// ([`OpenedKey`]) or, for a U2F-only key, U2F ([`U2fKey`]).
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
        other => Ok(open_channel_of(other, opts, on_choose, on_busy)?.boxed()),
    }
}

fn open_sim(
    path: &std::path::Path,
    opts: DeviceOptions,
    on_busy: &mut dyn FnMut(),
) -> Result<Opened, CtapError> {
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
    open_channel(
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
) -> Result<Opened, CtapError> {
    let t = super::hid::HidTransport::open(path)?;
    let desc = super::hid::enumerate()
        .ok()
        .and_then(|l| l.into_iter().find(|k| k.path == path))
        .map(|k| k.describe())
        .unwrap_or_else(|| path.to_owned());
    open_channel(Box::new(t), desc, opts, false, on_busy)
}

fn open_usb(
    opts: DeviceOptions,
    on_choose: &mut dyn FnMut(usize),
    on_busy: &mut dyn FnMut(),
) -> Result<Opened, CtapError> {
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
                        key.select(&cancel)?;
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
