//! The virtual key enrolled through the real client and behind the real [`PresenceGate`], as
//! `auths token enroll` and `auths agent start` put a real key there. The key speaks CTAPHID
//! reports through [`VirtualKey::connect`]; nothing of the gate or the client is replaced.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auths_presence::ctap::command::Algorithm;
use auths_presence::ctap::device::DeviceOptions;
use auths_presence::ctap::select::OpenedKey;
use auths_presence::ctap::virtual_key::{
    HidTimings, StateLocation, TouchMode, VirtualKey, VirtualKeyConfig,
};
use auths_presence::ctap::CtapError;
use auths_presence::presence::enrollment::{enroll_key, TokenStore};
use auths_presence::presence::policy::Policy;
use auths_presence::presence::presence_gate::{GateClock, GateConfig, KeyOpener, PresenceGate};
use auths_presence::presence::prompt::{PromptEvent, Prompter};

use super::DEADLINE;

/// The virtual user touches at once.
pub const AUTO: TouchMode = TouchMode::Auto {
    delay: Duration::ZERO,
};

/// Start a virtual key keeping its secret and counter in `state`.
pub fn start_key(state: &Path, mode: TouchMode, timings: HidTimings) -> Arc<VirtualKey> {
    Arc::new(
        VirtualKey::start(VirtualKeyConfig {
            state: StateLocation::File(state.to_path_buf()),
            touch_mode: mode,
            timings,
            pin: None,
        })
        .unwrap(),
    )
}

/// Open the key as the agent opens a real one: the real CTAPHID channel over its reports.
pub fn open(key: &VirtualKey, options: DeviceOptions) -> Result<OpenedKey, CtapError> {
    OpenedKey::from_transport(Box::new(key.connect()), "virtual".into(), options, true)
}

/// Enroll an ES256 credential of `key` in the token store at `home`, as `auths token enroll`
/// does (the key must touch: give it [`AUTO`]). Returns the key's touch count afterwards.
pub fn enroll(key: &VirtualKey, home: &Path, options: DeviceOptions) -> u64 {
    let store = TokenStore::open(home).unwrap();
    let mut opened = open(key, options).unwrap();
    enroll_key(
        &mut opened,
        &store,
        None,
        "auths:presence",
        &[Algorithm::Es256],
        &mut || {},
        &mut auths_presence::presence::pin_entry::NoPinSource,
    )
    .unwrap();
    key.touch_count()
}

/// The gate over the enrollments at `home`, opening its key with `opener`.
pub fn presence_gate(
    home: &Path,
    opener: impl KeyOpener + 'static,
    policy: Policy,
    touch_timeout: Duration,
    prompter: Prompter,
    clock: Option<GateClock>,
) -> PresenceGate {
    PresenceGate::new(GateConfig {
        home: home.to_path_buf(),
        opener: Box::new(opener),
        policy,
        touch_timeout,
        prompter,
        clock,
    })
    .unwrap()
}

/// The next prompt event that `want` accepts, within [`DEADLINE`].
pub fn wait_event(
    rx: &mut tokio::sync::broadcast::Receiver<PromptEvent>,
    want: fn(&PromptEvent) -> bool,
) -> PromptEvent {
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(
            Instant::now() < deadline,
            "no such prompt event within the deadline"
        );
        match rx.try_recv() {
            Ok(e) if want(&e) => return e,
            Ok(_) => continue,
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("prompt channel: {e}"),
        }
    }
}

/// Every prompt event up to and including the first that `last` accepts, within [`DEADLINE`].
pub fn events_until(
    rx: &mut tokio::sync::broadcast::Receiver<PromptEvent>,
    last: fn(&PromptEvent) -> bool,
) -> Vec<PromptEvent> {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "no such prompt event within the deadline; saw {seen:?}"
        );
        match rx.try_recv() {
            Ok(e) => {
                let done = last(&e);
                seen.push(e);
                if done {
                    return seen;
                }
            }
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("prompt channel: {e}"),
        }
    }
}
