//! The presence gate: a verified touch on an enrolled key before every approval, one device
//! interaction at a time, every outcome logged as a receipt.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::MutexGuard;

use tokio::sync::OwnedMutexGuard;

use crate::ctap::backend::Waiting;
use crate::ctap::client_pin::{permissions, PinUvAuthToken};
use crate::ctap::device::{CancelToken, DeviceOptions};
use crate::ctap::select::{self, DeviceSelector};
use crate::ctap::{CtapError, StatusCode};

use super::audit::{highest_counters, AuditLog, Evidence, Receipt};
use super::challenge::ClientData;
use super::enrollment::TokenStore;
use super::gate::{Approval, ApproveFuture, Basis, Gate, GateError, Settle};
use super::lazy_counters::LazyCounters;
use super::pin_entry::{PinRequest, PinSource};
use super::policy::{Covers, Grants, Policy};
use super::prompt::{
    describe_peer, requested, touch_message, watched, watched_peer, what_is_signed, PromptEvent,
    Prompter,
};
use super::request::ApprovalRequest;
use super::rules::{RulesHolder, Verdict};
use super::touch::{self, Credentials, HmacSecret, PresenceKey, TouchError, VerifiedTouch};

/// Opens the key for one approval (a key may be unplugged and re-plugged between two).
pub trait KeyOpener: Send + Sync {
    /// Open the key.
    fn open(&self) -> Result<Box<dyn PresenceKey>, CtapError>;

    /// Open the key, telling `on_busy` each time it answers that another program holds it.
    fn open_reporting_busy(
        &self,
        on_busy: &mut dyn FnMut(),
    ) -> Result<Box<dyn PresenceKey>, CtapError> {
        let _ = on_busy;
        self.open()
    }
}

/// A [`KeyOpener`] from a function that is told when the key is busy.
pub struct BusyAwareOpener<F>(pub F);

impl<F> KeyOpener for BusyAwareOpener<F>
where
    F: Fn(&mut dyn FnMut()) -> Result<Box<dyn PresenceKey>, CtapError> + Send + Sync,
{
    fn open(&self) -> Result<Box<dyn PresenceKey>, CtapError> {
        (self.0)(&mut || {})
    }

    fn open_reporting_busy(
        &self,
        on_busy: &mut dyn FnMut(),
    ) -> Result<Box<dyn PresenceKey>, CtapError> {
        (self.0)(on_busy)
    }
}

impl<F> KeyOpener for F
where
    F: Fn() -> Result<Box<dyn PresenceKey>, CtapError> + Send + Sync,
{
    fn open(&self) -> Result<Box<dyn PresenceKey>, CtapError> {
        self()
    }
}

/// A source of monotonic time for grant lifetimes (tests inject one; nobody sleeps).
pub type GateClock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Opens keys by device selector (`usb`, `usb:PATH`, `sim:SOCKET`, `windows`).
#[derive(Debug, Clone)]
pub struct SelectorOpener {
    /// Which key.
    pub selector: DeviceSelector,
    /// Timeouts; `deadline` is the touch timeout.
    pub options: DeviceOptions,
}

impl KeyOpener for SelectorOpener {
    fn open(&self) -> Result<Box<dyn PresenceKey>, CtapError> {
        self.open_reporting_busy(&mut || {})
    }

    fn open_reporting_busy(
        &self,
        on_busy: &mut dyn FnMut(),
    ) -> Result<Box<dyn PresenceKey>, CtapError> {
        let key = select::open_key_reporting_busy(
            &self.selector,
            self.options,
            &mut |n| eprintln!("{n} security keys are plugged in: touch the one you want to use."),
            on_busy,
        )?;
        Ok(Box::new(key))
    }
}

/// When the gate has the key verify the user (PIN or built-in UV) besides the touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserVerification {
    /// Only when the key demands it (alwaysUv): a touch is enough otherwise.
    #[default]
    Discouraged,
    /// Every touch also verifies the user: the UV flag must be set in the verified assertion.
    Required,
}

/// How the gate runs.
pub struct GateConfig {
    /// `AUTHS_HOME`: enrollments and the audit log.
    pub home: std::path::PathBuf,
    /// The key.
    pub opener: Box<dyn KeyOpener>,
    /// When a touch is needed.
    pub policy: Policy,
    /// How long to wait for a touch before cancelling.
    pub touch_timeout: Duration,
    /// Where prompts go.
    pub prompter: Prompter,
    /// Time for grant lifetimes; `None` is the system's monotonic clock.
    pub clock: Option<GateClock>,
    /// When the user is verified besides the touch.
    pub uv: UserVerification,
    /// Where the PIN comes from when it is needed (the agent: `AUTHS_ASKPASS`).
    pub pins: Box<dyn PinSource + Send>,
}

/// The gate: one device interaction at a time, every approval verified and logged.
#[derive(Clone)]
pub struct PresenceGate {
    inner: Arc<Inner>,
}

struct Inner {
    store: TokenStore,
    audit: AuditLog,
    opener: Box<dyn KeyOpener>,
    device_turn: Arc<tokio::sync::Mutex<()>>,
    grants: Mutex<Grants>,
    /// The request whose touch is being asked for, from the moment it needs one until its touch
    /// is verified or fails. A second request that needs a touch meanwhile refuses both: one
    /// touch must never serve whichever of two programs the key happened to take first.
    asking: Mutex<Option<Asking>>,
    /// The highest sign counter verified (or read at start) per credential. tokens.json is a
    /// file a same-user process can edit; lowering a counter there does not lower it here.
    counters: Mutex<CounterFloor>,
    /// tokens.json follows the receipts' counters lazily (see `super::lazy_counters`).
    lazy_counters: LazyCounters,
    prompter: Prompter,
    touch_timeout: Duration,
    clock: GateClock,
    uv: UserVerification,
    pins: Mutex<Box<dyn PinSource + Send>>,
    /// The pinUvAuthToken of the unlock window, never the PIN: zeroized when the keys are
    /// wiped (lock, timeouts, shutdown) or the key refuses it.
    pin_token: Mutex<Option<PinUvAuthToken>>,
    /// Caller rules: who may ask at all, under which policy. Unset: everyone may ask.
    rules: std::sync::OnceLock<Arc<RulesHolder>>,
}

impl std::fmt::Debug for PresenceGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceGate")
            .field("audit", &self.inner.audit.path())
            .field("touch_timeout", &self.inner.touch_timeout)
            .finish_non_exhaustive()
    }
}

/// Cancels the key when the approve future is dropped (the client hung up).
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How an approval of this gate ends: its receipt goes to the audit log, a signed touch opens
/// the grant its client data names, and the device turn (held by a touch's approval) is given
/// back only then, so the next request in line sees that grant and the receipts of touches stay
/// in the order of their sign counters.
struct Settlement {
    inner: Arc<Inner>,
    _turn: Option<OwnedMutexGuard<()>>,
    /// A touch's credential and verified counter: its receipt carries them, tokens.json gets
    /// them after it.
    counter: Option<(Vec<u8>, u32)>,
}

impl Settle for Settlement {
    fn settle(
        self: Box<Self>,
        receipt: Receipt,
        request: &ApprovalRequest,
        touch: Option<&VerifiedTouch>,
    ) -> Result<(), GateError> {
        let inner = &self.inner;
        // The receipt is the one durable write before the signature leaves (it carries the
        // verified counter). Appends group-commit, so the wait for the fsync is moved off
        // this runtime worker, letting other connections' receipts join the same group.
        block_off_runtime(|| inner.audit.append(&receipt))?;
        if let Some((id, count)) = &self.counter {
            super::fault::point(super::fault::AFTER_RECEIPT);
            inner.lazy_counters.queue(id, *count);
        }
        if let Some(touch) = touch {
            inner
                .grants()
                .open(touch.assertion(), &receipt.id, request, (inner.clock)());
        }
        Ok(())
    }
}

/// Run `f`, which blocks, on this thread; on a multi-thread tokio runtime's worker, tell the
/// runtime first so its other tasks move to another worker meanwhile.
fn block_off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The request a touch is being asked for.
struct Asking {
    /// "ssh-keygen (pid 4242) ← git (pid 4240)".
    who: String,
    /// Cancels its touch.
    cancel: CancelToken,
    /// Set when a second request came: the reason both are refused.
    contended: Arc<Mutex<Option<String>>>,
}

/// Holds the gate's [`Asking`] slot for one request; gives it back when dropped (the touch was
/// verified or failed, a grant covered the request after all, or the client went away).
struct AskingSlot {
    inner: Arc<Inner>,
    contended: Arc<Mutex<Option<String>>>,
}

impl AskingSlot {
    /// Why this request must be refused, when a second one came while it asked.
    fn contention(&self) -> Option<String> {
        self.contended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for AskingSlot {
    fn drop(&mut self) {
        let mut asking = self.inner.asking();
        if asking
            .as_ref()
            .is_some_and(|a| Arc::ptr_eq(&a.contended, &self.contended))
        {
            *asking = None;
        }
    }
}

/// A request that was announced and waits for the device turn. Dropped there (its client hung
/// up), it is denied as cancelled, so no announced request goes without an outcome; once it has
/// the turn it is forgotten, and the grant or the touch decides.
struct Queued<'a> {
    inner: &'a Inner,
    request: &'a ApprovalRequest,
    id: &'a str,
    waiting: bool,
}

impl Queued<'_> {
    fn has_its_turn(mut self) {
        self.waiting = false;
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.waiting {
            PresenceGate::deny(self.inner, self.request, self.id, &GateError::Cancelled);
        }
    }
}

/// Per credential, the highest sign counter this gate knows of.
#[derive(Debug, Default)]
struct CounterFloor(std::collections::HashMap<Vec<u8>, u32>);

impl CounterFloor {
    fn raise(&mut self, id: &[u8], count: u32) {
        let c = self.0.entry(id.to_vec()).or_insert(count);
        *c = (*c).max(count);
    }

    fn get(&self, id: &[u8]) -> Option<u32> {
        self.0.get(id).copied()
    }
}

impl Inner {
    fn pin_token(&self) -> MutexGuard<'_, Option<PinUvAuthToken>> {
        self.pin_token.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn asking(&self) -> MutexGuard<'_, Option<Asking>> {
        self.asking.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counter floor; its operations cannot panic, so a poisoned lock is still sound.
    fn counters(&self) -> MutexGuard<'_, CounterFloor> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open grants. Nothing that holds this lock can panic half-way through a change (no
    /// unchecked arithmetic, no indexing), so a lock poisoned elsewhere is still sound and keeps
    /// the policy in force; it never silently falls back to another one.
    fn grants(&self) -> MutexGuard<'_, Grants> {
        self.grants.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PresenceGate {
    /// A gate over the enrollments and audit log in `config.home`. Refuses to start without
    /// an enrolled key.
    pub fn new(config: GateConfig) -> Result<PresenceGate, GateError> {
        let store = TokenStore::open(&config.home)?;
        let enrolled = store.list()?;
        if enrolled.is_empty() {
            return Err(GateError::NotEnrolled);
        }
        let mut counters = CounterFloor::default();
        for e in &enrolled {
            counters.raise(&e.credential_id, e.sign_count);
        }
        // The receipts are the durable record of counters; tokens.json may lag them after a
        // crash. Take the higher of the two, and bring tokens.json up to date.
        let audit = AuditLog::new(&config.home);
        for (id, count) in highest_counters(&audit.read_chain()?) {
            if counters.get(&id).is_some_and(|c| c < count) {
                counters.raise(&id, count);
                store.save_sign_count(&id, count)?;
            }
        }
        Ok(PresenceGate {
            inner: Arc::new(Inner {
                lazy_counters: LazyCounters::new(store.clone()),
                store,
                audit,
                opener: config.opener,
                device_turn: Arc::new(tokio::sync::Mutex::new(())),
                grants: Mutex::new(Grants::new(config.policy)),
                counters: Mutex::new(counters),
                asking: Mutex::new(None),
                prompter: config.prompter,
                touch_timeout: config.touch_timeout,
                clock: config.clock.unwrap_or_else(|| Arc::new(Instant::now)),
                uv: config.uv,
                pins: Mutex::new(config.pins),
                pin_token: Mutex::new(None),
                rules: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Apply the caller rules `rules` holds (reloaded through it) to every request.
    pub fn with_rules(self, rules: Arc<RulesHolder>) -> PresenceGate {
        let _ = self.inner.rules.set(rules);
        self
    }

    /// The prompt channel (for `auths agent watch`).
    pub fn prompter(&self) -> &Prompter {
        &self.inner.prompter
    }

    /// The audit log.
    pub fn audit_path(&self) -> &Path {
        self.inner.audit.path()
    }

    /// Forget every open grant (on lock).
    pub fn clear_grants(&self) {
        self.inner.grants().clear();
        *self.inner.pin_token() = None;
    }

    fn try_grant(inner: &Arc<Inner>, request: &ApprovalRequest, id: &str) -> Option<Approval> {
        // A sealed identity key opens only with a touch: no grant may stand in for it.
        if request.unseal.is_some() {
            return None;
        }
        let grant = inner.grants().take(request, (inner.clock)())?;
        let id = id.to_owned();
        let (grant_of, remaining) = (grant.grant_of().to_owned(), grant.remaining());
        let settle = Box::new(Settlement {
            inner: Arc::clone(inner),
            _turn: None,
            counter: None,
        });
        let approval =
            Approval::new(Basis::Grant(grant), request.clone(), id.clone(), settle).ok()?;
        inner.prompter.emit(PromptEvent::Granted {
            id,
            grant_of,
            remaining,
            peer: watched_peer(&request.requester),
            namespace: watched(&request.namespace),
        });
        Some(approval)
    }

    /// The blocking part: ask for the touch and verify it through the one verification path,
    /// then save the counter (before anything is signed, so a replay of this assertion can
    /// never pass the counter check again).
    fn touch_and_verify(
        inner: &Inner,
        request: &ApprovalRequest,
        cancel: &CancelToken,
        id: &str,
    ) -> Result<(VerifiedTouch, Option<HmacSecret>), GateError> {
        let enrolled = inner.store.list()?;
        let mut creds = Credentials::enrolled(&enrolled)?;
        creds.raise_counters(|id| inner.counters().get(id));
        // A request no grant may cover (a confirm key, an unknown executable) opens none.
        let terms = (inner.grants().policy_for(request).grant_terms())
            .filter(|_| Covers::of(request).is_some());
        let message_terms = terms.clone();
        // The touch commits to the audit chain as it stands: every line before this request.
        let head = inner.audit.head()?;
        let client_data = ClientData::new(request, terms, now_unix())
            .chained(head)
            .to_json();

        // Another program holds the key (a browser waiting for a touch): say so once; the
        // request is sent again until the touch timeout.
        let busy_told = std::cell::Cell::new(false);
        let tell_busy = || {
            if !busy_told.replace(true) {
                inner.prompter.emit(PromptEvent::KeyBusy {
                    id: id.to_owned(),
                    message: format!(
                        "The security key is busy with another program (a browser waiting for a touch?): waiting for it, for {}",
                        describe_peer(&request.requester)
                    ),
                });
            }
        };
        let mut on_busy = tell_busy;
        let mut key = inner
            .opener
            .open_reporting_busy(&mut on_busy)
            .map_err(GateError::Device)?;
        let message = touch_message(request, key.is_virtual(), message_terms.as_ref());
        let prompter = inner.prompter.clone();
        let mut announced = false;
        let mut on_up = || {
            if !announced {
                announced = true;
                prompter.emit(PromptEvent::Pending {
                    id: id.to_owned(),
                    message: message.clone(),
                    peer: watched_peer(&request.requester),
                    key: request.key_fingerprint.clone(),
                    namespace: watched(&request.namespace),
                });
            }
        };
        // The user is verified too when the agent requires it or the key demands it
        // (alwaysUv); a key that says so only by refusing (PUAT_REQUIRED) gets the PIN then.
        // The token of the unlock window is used until the key refuses it (it expired, or
        // the key was re-plugged): then the PIN is asked for once more.
        let uv_info = key.uv_info();
        // A credential made with credProtect level 3 is found only with the user verified.
        let rule_uv = request.rule.as_ref().is_some_and(|r| r.uv_required);
        let mut need_uv = inner.uv == UserVerification::Required
            || rule_uv
            || uv_info.is_some_and(|u| u.needed_to_sign())
            || enrolled.iter().any(|e| e.uv_required)
            // A key sealed under the user-verified secret opens only with the user verified.
            || request.unseal.as_ref().is_some_and(|u| u.uv);
        let mut token = inner.pin_token().take();
        let mut fresh = false;
        let touched = loop {
            if need_uv && token.is_none() && uv_info.is_some() {
                token = Some(Self::user_token(
                    inner,
                    key.as_mut(),
                    request,
                    &creds,
                    &mut on_up,
                    cancel,
                    id,
                )?);
                fresh = true;
            }
            let ask = touch::Ask {
                creds: &creds,
                client_data: &client_data,
                require_uv: need_uv,
                pin_token: token.as_ref().filter(|_| need_uv),
            };
            let wait = Waiting {
                on_up_needed: &mut on_up,
                on_busy: Some(&mut on_busy),
                cancel: Some(cancel),
            };
            let answer = match &request.unseal {
                Some(u) => touch::touch_with_secret(key.as_mut(), &ask, &u.salt, wait)
                    .map(|(t, s)| (t, Some(s))),
                None => touch::touch(key.as_mut(), &ask, wait).map(|t| (t, None)),
            };
            match answer {
                // The window's token is refused: get a fresh one, once.
                Err(TouchError::Device(CtapError::Status(StatusCode::PinAuthInvalid)))
                    if need_uv && !fresh && uv_info.is_some() && !cancel.is_cancelled() =>
                {
                    token = None;
                }
                // The key wants the user verified though it did not say so up front.
                Err(TouchError::Device(CtapError::Status(StatusCode::PuatRequired)))
                    if !need_uv && uv_info.is_some() && !cancel.is_cancelled() =>
                {
                    need_uv = true;
                }
                other => break other,
            }
        };
        if touched.is_ok() {
            *inner.pin_token() = token;
        }
        drop(key);
        let (verified, secret) = touched.map_err(|e| match e {
            _ if cancel.is_cancelled() => GateError::Cancelled,
            TouchError::Device(
                CtapError::Deadline(_) | CtapError::Status(StatusCode::UserActionTimeout),
            ) => GateError::TouchTimeout(inner.touch_timeout),
            TouchError::Device(
                CtapError::Status(StatusCode::KeepaliveCancel) | CtapError::Cancelled,
            ) => GateError::Cancelled,
            other => GateError::from(other),
        })?;
        let (id, count) = (
            verified.assertion().credential_id(),
            verified.assertion().sign_count(),
        );
        // The counter is raised here, before anything is signed; it becomes durable with the
        // touch's receipt, written before the signature leaves (tokens.json follows lazily).
        inner.counters().raise(id, count);
        if cancel.is_cancelled() {
            // No approval, so no receipt will carry this counter: save it now.
            inner.store.save_sign_count(id, count)?;
            return Err(GateError::Cancelled);
        }
        Ok((verified, secret))
    }

    /// A pinUvAuthToken with the ga permission, from the PIN the gate's source gives for
    /// `request`. One try: a wrong PIN refuses the request and says how many tries are left.
    /// A pinUvAuthToken with the ga permission: from the key's built-in user verification
    /// when it has one (the finger on the sensor, announced as the touch is), else, or when
    /// built-in UV is blocked, from the PIN.
    fn user_token(
        inner: &Inner,
        key: &mut dyn PresenceKey,
        request: &ApprovalRequest,
        creds: &Credentials,
        on_up: &mut dyn FnMut(),
        cancel: &CancelToken,
        id: &str,
    ) -> Result<PinUvAuthToken, GateError> {
        if key
            .uv_info()
            .is_some_and(|u| !u.pin_supported && !u.builtin_uv)
        {
            return Err(GateError::CannotVerifyUser(
                crate::presence::prompt::escape_control(key.description()),
            ));
        }
        if key.uv_info().is_some_and(|u| u.builtin_uv) {
            let wait = Waiting {
                on_up_needed: on_up,
                on_busy: None,
                cancel: Some(cancel),
            };
            match key.uv_token(permissions::GET_ASSERTION, creds.rp_id(), wait) {
                Ok(t) => return Ok(t),
                Err(crate::ctap::client_pin::PinError::UvBlocked) => {}
                Err(e) => return Err(GateError::Pin(e)),
            }
        }
        Self::pin_token(inner, key, request, creds, id)
    }

    fn pin_token(
        inner: &Inner,
        key: &mut dyn PresenceKey,
        request: &ApprovalRequest,
        creds: &Credentials,
        id: &str,
    ) -> Result<PinUvAuthToken, GateError> {
        let purpose = format!(
            "approve {} for {}",
            what_is_signed(request),
            describe_peer(&request.requester)
        );
        let description = key.description().to_owned();
        inner.prompter.emit(PromptEvent::PinNeeded {
            id: id.to_owned(),
            message: format!(
                "Enter the PIN of {} to {purpose}",
                crate::presence::prompt::escape_control(&description)
            ),
        });
        let pin = inner
            .pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pin(&PinRequest {
                key: &description,
                purpose: &purpose,
                retries: None,
            })
            .map_err(GateError::PinEntry)?;
        key.pin_token(pin.as_bytes(), permissions::GET_ASSERTION, creds.rp_id())
            .map_err(GateError::Pin)
    }

    /// Take the asking slot for `request`, or, when another request is asking for a touch,
    /// cancel that touch and refuse both.
    fn ask(
        inner: &Arc<Inner>,
        request: &ApprovalRequest,
        cancel: &CancelToken,
        id: &str,
    ) -> Result<AskingSlot, GateError> {
        let who = describe_peer(&request.requester);
        let mut asking = inner.asking();
        if let Some(first) = asking.as_ref() {
            let reason = format!(
                "two programs asked for a touch at once: {} and {who}; retry the one you meant",
                first.who
            );
            *first.contended.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
            first.cancel.cancel();
            inner.prompter.emit(PromptEvent::Contention {
                first: first.who.clone(),
                second: who,
            });
            drop(asking);
            let error = GateError::Contention(reason);
            Self::deny(inner, request, id, &error);
            return Err(error);
        }
        let contended = Arc::new(Mutex::new(None));
        *asking = Some(Asking {
            who,
            cancel: cancel.clone(),
            contended: Arc::clone(&contended),
        });
        Ok(AskingSlot {
            inner: Arc::clone(inner),
            contended,
        })
    }

    /// A caller rule refused `request`: its denial receipt names the rule, watchers hear of
    /// it; the key is not asked for anything. (As for every denial, a receipt that cannot be
    /// written does not change the answer: nothing is signed either way.)
    fn refuse_by_rule(
        inner: &Inner,
        request: &ApprovalRequest,
        id: &str,
        rule: Option<String>,
        reason: &str,
    ) {
        let mut receipt = Receipt::new(
            id,
            request,
            Evidence::Denied,
            false,
            Some(reason.to_owned()),
        );
        receipt.rule = rule.clone();
        let _ = inner.audit.append(&receipt);
        inner.prompter.emit(PromptEvent::RuleDenied {
            id: id.to_owned(),
            rule,
            reason: reason.to_owned(),
            peer: watched_peer(&request.requester),
            key: request.key_fingerprint.clone(),
            kind: request.kind,
            namespace: watched(&request.namespace),
        });
    }

    fn deny(inner: &Inner, request: &ApprovalRequest, id: &str, error: &GateError) {
        let reason = super::error_chain(error);
        let receipt = Receipt::new(id, request, Evidence::Denied, false, Some(reason.clone()));
        let _ = inner.audit.append(&receipt);
        inner.prompter.emit(PromptEvent::Denied {
            id: id.to_owned(),
            reason,
        });
    }
}

impl Gate for PresenceGate {
    fn approve(&self, mut request: ApprovalRequest) -> ApproveFuture<'_> {
        let inner = self.inner.clone();
        Box::pin(async move {
            // One id per request, from its announcement to its receipt, whatever decides it.
            let id = Receipt::new_id();
            // Caller rules first: a request no rule allows never reaches a grant or the key.
            let verdict = inner
                .rules
                .get()
                .map_or(Verdict::Unruled, |r| r.verdict(&request));
            match verdict {
                Verdict::Unruled => request.rule = None,
                Verdict::Allow(applied) => request.rule = Some(applied),
                Verdict::Deny { rule, reason } => {
                    let label = rule.map(|r| r.label());
                    Self::refuse_by_rule(&inner, &request, &id, label, &reason);
                    return Err(GateError::RuleDenied(reason));
                }
            }
            inner.prompter.emit(requested(&request, &id));
            if let Some(a) = Self::try_grant(&inner, &request, &id) {
                return Ok(a);
            }
            let cancel = CancelToken::new();
            let _hangup = CancelOnDrop(cancel.clone());
            let slot = Self::ask(&inner, &request, &cancel, &id)?;
            // Announced and waiting its turn: a hang-up now ends it here, denied with a receipt.
            let queued = Queued {
                inner: &inner,
                request: &request,
                id: &id,
                waiting: true,
            };
            // One device interaction at a time; tokio's mutex is fair (FIFO).
            let turn = inner.device_turn.clone().lock_owned().await;
            queued.has_its_turn();
            // A touch that happened while we waited may have opened a grant for us.
            if let Some(a) = Self::try_grant(&inner, &request, &id) {
                return Ok(a);
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            let worker = inner.clone();
            tokio::task::spawn_blocking(move || {
                let touched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    Self::touch_and_verify(&worker, &request, &cancel, &id)
                }))
                .unwrap_or(Err(GateError::WorkerStopped));
                // A second request came before this touch was verified: refuse it too.
                let touched = match (slot.contention(), touched) {
                    (Some(reason), touched) => {
                        // A verified touch that approves nothing: no receipt carries its
                        // counter, so it is saved now.
                        if let Ok((t, _)) = &touched {
                            let a = t.assertion();
                            let _ = worker
                                .store
                                .save_sign_count(a.credential_id(), a.sign_count());
                        }
                        Err(GateError::Contention(reason))
                    }
                    (None, touched) => touched,
                };
                drop(slot);
                let result = touched.and_then(|(touch, secret)| {
                    let assertion = touch.assertion();
                    let counter = (assertion.credential_id().to_vec(), assertion.sign_count());
                    // The turn stays with the approval until its receipt is written.
                    let settle = Box::new(Settlement {
                        inner: Arc::clone(&worker),
                        _turn: Some(turn),
                        counter: Some(counter),
                    });
                    let basis = Basis::Touch(touch);
                    let approval = Approval::new(basis, request.clone(), id.clone(), settle)?;
                    Ok(match secret {
                        Some(s) => approval.with_secret(s),
                        None => approval,
                    })
                });
                match &result {
                    Ok(_) => worker
                        .prompter
                        .emit(PromptEvent::Approved { id: id.clone() }),
                    Err(e) => Self::deny(&worker, &request, &id, e),
                }
                // If the client is gone, the approval drops here and records "not signed".
                let _ = tx.send(result);
            });
            rx.await.unwrap_or(Err(GateError::WorkerStopped))
        })
    }

    fn keys_wiped(&self) {
        self.clear_grants();
    }

    fn passphrase(
        &self,
        prompt: &str,
    ) -> Result<zeroize::Zeroizing<String>, super::pin_entry::PinEntryError> {
        self.inner
            .pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .passphrase(prompt)
    }

    fn rules(&self) -> Option<Arc<RulesHolder>> {
        self.inner.rules.get().cloned()
    }
}
