//! A virtual FIDO2 security key that speaks CTAPHID at the 64-byte report level, for tests,
//! `auths sim` and `auths demo`. It is a product feature, and it must never be mistaken for
//! hardware: its AAGUID is [`VIRTUAL_AAGUID`], its getInfo firmwareVersion is
//! [`authenticator::VIRTUAL_FIRMWARE_VERSION`] and its CTAPHID build byte is `'V'`.
//!
//! - [`authenticator`]: CTAP2 (CTAP 2.1 §6), pure.
//! - [`hid`]: the device side of CTAPHID (CTAP 2.1 §11.2), pure, clock passed in.
//! - [`state`]: master secret and sign counter in a 0600 file.
//! - [`u2f`]: U2F (CTAP1) request APDUs, for a key started U2F-only
//!   ([`VirtualKeyConfig::u2f_only`]: no CTAP2, as a YubiKey 4), pure.
//! - [`VirtualKey`]: the running device, a thread fed by a channel. [`VirtualKey::connect`]
//!   opens a [`VirtualTransport`], like opening the hidraw node: every open transport
//!   receives every input report (hosts filter by channel id).
//! - `sim` (Unix, and Windows with named pipes; elsewhere it fails, [`SIM_AVAILABLE`] is
//!   false): [`serve_unix`] puts a key behind a Unix socket, [`SimTransport`] is the
//!   host side of that socket, [`sim_touch`] presses the button through the control socket.

pub mod authenticator;
pub mod client_pin;
pub mod hid;
mod sim;
pub mod state;
pub mod u2f;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use authenticator::{Authenticator, Pending, Step, VIRTUAL_AAGUID};
pub use client_pin::PinConfig;
pub use hid::{HidDevice, HidTimings, TouchError, TouchMode};
pub use sim::control::{ControlCommand, ControlError, ControlReply};
pub use sim::{
    control_path, serve_unix, sim_busy, sim_touch, SimError, SimServer, SimTransport,
    AVAILABLE as SIM_AVAILABLE,
};
pub use state::{KeyState, StateError};

use super::framing::Report;
use super::transport::{Transport, TransportError};

/// Where the virtual key keeps its master secret and counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// In memory only: a new key every start.
    InMemory,
    /// A JSON state file (mode 0600), created on first use.
    File(PathBuf),
}

/// How to run a virtual key.
#[derive(Debug, Clone)]
pub struct VirtualKeyConfig {
    /// The state.
    pub state: StateLocation,
    /// The virtual user's behaviour.
    pub touch_mode: TouchMode,
    /// Timers (touch timeout, message timeout, keepalive interval).
    pub timings: HidTimings,
    /// authenticatorClientPIN, when set (no PIN is set at start; setPIN sets one).
    pub pin: Option<PinConfig>,
    /// A U2F-only key (no CTAP2; U2F over CTAPHID_MSG), as a YubiKey 4 (`--u2f-only`).
    pub u2f_only: bool,
    /// getInfo maxCredentialCountInList, when not the default 8 (keys that take fewer).
    pub max_credentials_in_list: Option<usize>,
    /// The credProtect level of new credentials whose request names none (default 1; 3 makes
    /// every credential need the user verified).
    pub cred_protect: Option<u8>,
}

impl Default for VirtualKeyConfig {
    fn default() -> Self {
        VirtualKeyConfig {
            state: StateLocation::InMemory,
            touch_mode: TouchMode::Auto {
                delay: Duration::ZERO,
            },
            timings: HidTimings::default(),
            pin: None,
            u2f_only: false,
            max_credentials_in_list: None,
            cred_protect: None,
        }
    }
}

/// The virtual key could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VirtualKeyError {
    /// Its state file cannot be used.
    #[error(transparent)]
    State(#[from] StateError),
    /// The device thread could not be started.
    #[error("cannot start the virtual key's thread: {0}")]
    Thread(#[source] std::io::Error),
}

enum Event {
    Report(Report),
    Hold(Duration),
    Connect(Sender<Report>),
    Touch(Sender<Result<(), TouchError>>),
    SetMode(TouchMode),
    Shutdown,
}

/// A cheap, cloneable handle on a running key (what servers hold).
#[derive(Clone)]
struct Handle {
    events: Sender<Event>,
    touches: Arc<AtomicU64>,
}

impl Handle {
    fn connect(&self) -> VirtualTransport {
        let (tx, rx) = mpsc::channel();
        // If the key is gone, the transport reads Disconnected.
        let _ = self.events.send(Event::Connect(tx));
        VirtualTransport {
            events: self.events.clone(),
            reports: rx,
        }
    }

    fn hold_for(&self, duration: Duration) {
        let _ = self.events.send(Event::Hold(duration));
    }

    fn touch(&self) -> Result<(), TouchError> {
        let (tx, rx) = mpsc::channel();
        if self.events.send(Event::Touch(tx)).is_err() {
            return Err(TouchError::NothingWaiting);
        }
        rx.recv().unwrap_or(Err(TouchError::NothingWaiting))
    }
}

/// A running virtual key.
pub struct VirtualKey {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for VirtualKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualKey")
            .field("touch_count", &self.touch_count())
            .finish_non_exhaustive()
    }
}

impl VirtualKey {
    /// Load (or create) the state and start the device thread.
    pub fn start(config: VirtualKeyConfig) -> Result<VirtualKey, VirtualKeyError> {
        let state = match &config.state {
            StateLocation::InMemory => KeyState::in_memory(),
            StateLocation::File(p) => KeyState::open(p)?,
        };
        let mut authenticator = Authenticator::new(state);
        if let Some(pin) = config.pin {
            authenticator = authenticator.with_pin_support(pin);
        }
        if let Some(n) = config.max_credentials_in_list {
            authenticator = authenticator.with_max_credentials_in_list(n);
        }
        if let Some(level) = config.cred_protect {
            authenticator = authenticator.with_default_cred_protect(level);
        }
        let mut device = HidDevice::new(authenticator, config.touch_mode, config.timings);
        if config.u2f_only {
            device = device.u2f_only();
        }
        let (tx, rx) = mpsc::channel();
        let touches = Arc::new(AtomicU64::new(0));
        let t = touches.clone();
        let thread = std::thread::Builder::new()
            .name("auths-virtual-key".into())
            .spawn(move || run(device, rx, t))
            .map_err(VirtualKeyError::Thread)?;
        Ok(VirtualKey {
            handle: Handle {
                events: tx,
                touches,
            },
            thread: Some(thread),
        })
    }

    /// Open the device, like opening its hidraw node.
    pub fn connect(&self) -> VirtualTransport {
        self.handle.connect()
    }

    /// Press the button: approves the request that waits for a touch; an error when nothing
    /// waits.
    pub fn touch(&self) -> Result<(), TouchError> {
        self.handle.touch()
    }

    /// Touches that approved a request (auto touches included). Updated before the answer
    /// to the request goes out.
    pub fn touch_count(&self) -> u64 {
        self.handle.touches.load(Ordering::SeqCst)
    }

    /// Another program holds the key for `duration`: requests get CHANNEL_BUSY until then.
    pub fn hold_for(&self, duration: Duration) {
        self.handle.hold_for(duration);
    }

    /// Change how the virtual user answers; a waiting request follows the new mode.
    pub fn set_touch_mode(&self, mode: TouchMode) {
        let _ = self.handle.events.send(Event::SetMode(mode));
    }

    /// Stop the device; open transports read [`TransportError::Disconnected`].
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.handle.events.send(Event::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for VirtualKey {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(mut device: HidDevice, events: Receiver<Event>, touches: Arc<AtomicU64>) {
    let mut hosts: Vec<Sender<Report>> = Vec::new();
    loop {
        let event = match device.next_deadline() {
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                match events.recv_timeout(wait) {
                    Ok(e) => Some(e),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            None => match events.recv() {
                Ok(e) => Some(e),
                Err(_) => return,
            },
        };
        let now = Instant::now();
        let out = match event {
            None => device.poll(now),
            Some(Event::Report(r)) => device.handle_report(&r, now),
            Some(Event::Connect(tx)) => {
                hosts.push(tx);
                Vec::new()
            }
            Some(Event::Touch(reply)) => {
                let mut out = device.poll(now);
                let result = device.touch().map(|r| out.extend(r));
                touches.store(device.touch_count(), Ordering::SeqCst);
                let _ = reply.send(result);
                out
            }
            Some(Event::SetMode(mode)) => device.set_touch_mode(mode, now),
            Some(Event::Hold(d)) => {
                device.hold_for(d, now);
                Vec::new()
            }
            Some(Event::Shutdown) => return,
        };
        touches.store(device.touch_count(), Ordering::SeqCst);
        for report in out {
            // Every open handle gets every input report; closed ones are dropped.
            hosts.retain(|h| h.send(report).is_ok());
        }
    }
}

/// One open handle on a [`VirtualKey`]: the in-process [`Transport`].
pub struct VirtualTransport {
    events: Sender<Event>,
    reports: Receiver<Report>,
}

impl std::fmt::Debug for VirtualTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualTransport").finish_non_exhaustive()
    }
}

impl Transport for VirtualTransport {
    fn write_report(&mut self, report: &Report) -> Result<(), TransportError> {
        self.events
            .send(Event::Report(*report))
            .map_err(|_| TransportError::Disconnected)
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Option<Report>, TransportError> {
        match self.reports.recv_timeout(timeout) {
            Ok(r) => Ok(Some(r)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(TransportError::Disconnected),
        }
    }
}
