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
    HidTimings, PinConfig, StateLocation, TouchMode, VirtualKey, VirtualKeyConfig,
};
use auths_presence::ctap::CtapError;
use auths_presence::presence::enrollment::{enroll_key, TokenStore};
use auths_presence::presence::pin_entry::{NoPinSource, PinEntryError, PinRequest, PinSource};
use auths_presence::presence::policy::Policy;
use auths_presence::presence::presence_gate::{
    GateClock, GateConfig, KeyOpener, PresenceGate, UserVerification,
};
use auths_presence::presence::prompt::{PromptEvent, Prompter};
use auths_presence::presence::request::{ApprovalRequest, PayloadKind, Requester};

use super::DEADLINE;

/// The virtual user touches at once.
pub const AUTO: TouchMode = TouchMode::Auto {
    delay: Duration::ZERO,
};

/// Start a virtual key keeping its secret and counter in `state`.
pub fn start_key(state: &Path, mode: TouchMode, timings: HidTimings) -> Arc<VirtualKey> {
    start_key_with_pin(state, mode, timings, None)
}

/// [`start_key`], with clientPIN as `pin` says.
pub fn start_key_with_pin(
    state: &Path,
    mode: TouchMode,
    timings: HidTimings,
    pin: Option<PinConfig>,
) -> Arc<VirtualKey> {
    start_key_with_cred_protect(state, mode, timings, pin, None)
}

/// [`start_key_with_pin`], making credentials with credProtect `cred_protect` by default.
pub fn start_key_with_cred_protect(
    state: &Path,
    mode: TouchMode,
    timings: HidTimings,
    pin: Option<PinConfig>,
    cred_protect: Option<u8>,
) -> Arc<VirtualKey> {
    Arc::new(
        VirtualKey::start(VirtualKeyConfig {
            state: StateLocation::File(state.to_path_buf()),
            touch_mode: mode,
            timings,
            pin,
            u2f_only: false,
            max_credentials_in_list: None,
            cred_protect,
        })
        .unwrap(),
    )
}

/// A PIN source that always gives `pin`, counting how often it was asked and keeping the
/// prompts.
#[derive(Clone)]
pub struct CountedPin {
    pin: String,
    /// The prompts it was shown.
    pub prompts: Arc<std::sync::Mutex<Vec<String>>>,
}

impl CountedPin {
    pub fn new(pin: &str) -> CountedPin {
        CountedPin {
            pin: pin.to_owned(),
            prompts: Arc::default(),
        }
    }

    /// How often it was asked.
    pub fn asked(&self) -> usize {
        self.prompts.lock().unwrap().len()
    }
}

impl PinSource for CountedPin {
    fn pin(
        &mut self,
        request: &PinRequest<'_>,
    ) -> Result<zeroize::Zeroizing<String>, PinEntryError> {
        self.prompts.lock().unwrap().push(request.prompt());
        Ok(zeroize::Zeroizing::new(self.pin.clone()))
    }
}

/// Open the key as the agent opens a real one: the real CTAPHID channel over its reports.
pub fn open(key: &VirtualKey, options: DeviceOptions) -> Result<OpenedKey, CtapError> {
    OpenedKey::from_transport(Box::new(key.connect()), "virtual".into(), options, true)
}

/// [`open`], telling `on_busy` when the key answers that another program holds it.
pub fn open_reporting_busy(
    key: &VirtualKey,
    options: DeviceOptions,
    on_busy: &mut dyn FnMut(),
) -> Result<OpenedKey, CtapError> {
    OpenedKey::from_transport_reporting_busy(
        Box::new(key.connect()),
        "virtual".into(),
        options,
        true,
        on_busy,
    )
}

/// Enroll an ES256 credential of `key` in the token store at `home`, as `auths token enroll`
/// does (the key must touch: give it [`AUTO`]). Returns the key's touch count afterwards.
pub fn enroll(key: &VirtualKey, home: &Path, options: DeviceOptions) -> u64 {
    enroll_with_pins(key, home, options, &mut NoPinSource)
}

/// [`enroll`], with PINs from `pins` when the key needs one.
pub fn enroll_with_pins(
    key: &VirtualKey,
    home: &Path,
    options: DeviceOptions,
    pins: &mut dyn PinSource,
) -> u64 {
    let store = TokenStore::open(home).unwrap();
    let mut opened = open(key, options).unwrap();
    enroll_key(
        &mut opened,
        &store,
        None,
        "auths:presence",
        &[Algorithm::Es256],
        &mut || {},
        pins,
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
    presence_gate_with_uv(
        home,
        opener,
        policy,
        touch_timeout,
        prompter,
        clock,
        (UserVerification::Discouraged, Box::new(NoPinSource)),
    )
}

/// [`presence_gate`], verifying the user as `uv` says, with PINs from its source.
pub fn presence_gate_with_uv(
    home: &Path,
    opener: impl KeyOpener + 'static,
    policy: Policy,
    touch_timeout: Duration,
    prompter: Prompter,
    clock: Option<GateClock>,
    uv: (UserVerification, Box<dyn PinSource + Send>),
) -> PresenceGate {
    PresenceGate::new(GateConfig {
        home: home.to_path_buf(),
        opener: Box::new(opener),
        policy,
        touch_timeout,
        prompter,
        clock,
        uv: uv.0,
        pins: uv.1,
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

/// A git signature request (SSHSIG, namespace git) for the bytes whose digest is `digest`
/// repeated, from a confirmed ssh-keygen (pid 42).
pub fn sshsig_request(digest: u8) -> ApprovalRequest {
    ApprovalRequest {
        key_fingerprint: "SHA256:identity".into(),
        data_digest: [digest; 32],
        namespace: Some("git".into()),
        requester: Requester {
            start_time: Some(7),
            ..Requester::process(1000, 42, "/usr/bin/ssh-keygen")
        },
        kind: PayloadKind::Sshsig,
        confirm_each: false,
        login: None,
        forwarded: false,
        key_comment: None,
        rule: None,
        unseal: None,
    }
}
