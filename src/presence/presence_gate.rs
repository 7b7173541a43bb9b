//! The presence gate: a verified touch on an enrolled key before every approval, one device
//! interaction at a time, every outcome logged as a receipt.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::ctap::backend::SecurityKey;
use crate::ctap::command::GetAssertionResponse;
use crate::ctap::device::{CancelToken, DeviceOptions};
use crate::ctap::select::{self, DeviceSelector};
use crate::ctap::{CtapError, StatusCode};

use super::audit::{AuditLog, Outcome, Receipt};
use super::challenge::{client_data_hash, ClientData};
use super::enrollment::{Enrollment, TokenStore};
use super::gate::{Approval, ApproveFuture, Gate, GateError};
use super::policy::{Grants, Policy};
use super::prompt::{touch_message, PromptEvent, Prompter};
use super::request::ApprovalRequest;
use super::verify::{verify_assertion, Expected};

/// presence's one interface to a security key: an assertion with a touch.
pub trait PresenceKey: Send {
    /// authenticatorGetAssertion with `up: true` over `client_data` (the exact client data
    /// bytes: CTAP keys get its SHA-256, webauthn.dll takes the bytes and hashes them itself);
    /// `on_up_needed` runs when the key starts blinking; `cancel` aborts it (CTAPHID_CANCEL).
    fn get_assertion(
        &mut self,
        rp_id: &str,
        client_data: &[u8],
        allow_list: &[&[u8]],
        on_up_needed: &mut dyn FnMut(),
        cancel: &CancelToken,
    ) -> Result<GetAssertionResponse, CtapError>;

    /// True for the virtual key.
    fn is_virtual(&self) -> bool;
}

/// Any backend (CTAPHID or webauthn.dll) as the gate's key.
impl<K: SecurityKey> PresenceKey for K {
    fn get_assertion(
        &mut self,
        rp_id: &str,
        client_data: &[u8],
        allow_list: &[&[u8]],
        on_up_needed: &mut dyn FnMut(),
        cancel: &CancelToken,
    ) -> Result<GetAssertionResponse, CtapError> {
        SecurityKey::get_assertion(
            self,
            rp_id,
            client_data,
            allow_list,
            on_up_needed,
            Some(cancel),
        )
    }

    fn is_virtual(&self) -> bool {
        SecurityKey::is_virtual(self)
    }
}

/// Opens the key for one approval (a key may be unplugged and re-plugged between two).
pub trait KeyOpener: Send + Sync {
    /// Open the key.
    fn open(&self) -> Result<Box<dyn PresenceKey>, CtapError>;
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
        let key = select::open_key(&self.selector, self.options, &mut |n| {
            eprintln!("{n} security keys are plugged in: touch the one you want to use.")
        })?;
        Ok(Box::new(key))
    }
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
    prompter: Prompter,
    touch_timeout: Duration,
    clock: GateClock,
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

impl PresenceGate {
    /// A gate over the enrollments and audit log in `config.home`. Refuses to start without
    /// an enrolled key.
    pub fn new(config: GateConfig) -> Result<PresenceGate, GateError> {
        let store = TokenStore::open(&config.home).map_err(|e| GateError::Device(e.to_string()))?;
        let enrolled = store.list().map_err(|e| GateError::Device(e.to_string()))?;
        if enrolled.is_empty() {
            return Err(GateError::NotEnrolled);
        }
        Ok(PresenceGate {
            inner: Arc::new(Inner {
                store,
                audit: AuditLog::new(&config.home),
                opener: config.opener,
                device_turn: Arc::new(tokio::sync::Mutex::new(())),
                grants: Mutex::new(Grants::new(config.policy)),
                prompter: config.prompter,
                touch_timeout: config.touch_timeout,
                clock: config.clock.unwrap_or_else(|| Arc::new(Instant::now)),
            }),
        })
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
        if let Ok(mut g) = self.inner.grants.lock() {
            g.clear();
        }
    }

    fn try_grant(inner: &Inner, request: &ApprovalRequest) -> Option<Approval> {
        let (grant_of, remaining) = inner.grants.lock().ok()?.take(
            &request.key_fingerprint,
            &request.requester,
            (inner.clock)(),
        )?;
        let id = Receipt::new_id();
        let receipt = Receipt {
            grant_of: Some(grant_of.clone()),
            ..Receipt::for_request(&id, Outcome::Granted, request)
        };
        // No receipt, no signature: a grant use that cannot be logged is refused.
        inner.audit.append(&receipt).ok()?;
        inner.prompter.emit(PromptEvent::Granted {
            id: id.clone(),
            grant_of,
            remaining,
        });
        Some(Approval::new(
            request.key_fingerprint.clone(),
            request.data_digest,
            id,
        ))
    }

    /// The blocking part: open the key, ask for the touch, verify, log.
    fn touch_and_verify(
        inner: &Inner,
        request: &ApprovalRequest,
        cancel: &CancelToken,
        id: &str,
    ) -> Result<Approval, GateError> {
        let enrollments = inner
            .store
            .list()
            .map_err(|e| GateError::Device(e.to_string()))?;
        let Some(first) = enrollments.first() else {
            return Err(GateError::NotEnrolled);
        };
        let rp_id = first.rp_id.clone();
        let candidates: Vec<&Enrollment> =
            enrollments.iter().filter(|e| e.rp_id == rp_id).collect();
        let allowed = candidates
            .iter()
            .map(|e| e.allowed())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| GateError::Device(e.to_string()))?;
        let ids: Vec<&[u8]> = candidates
            .iter()
            .map(|e| e.credential_id.as_slice())
            .collect();

        let policy = inner.grants.lock().map(|g| g.policy()).unwrap_or_default();
        let client_data = ClientData::new(request, policy.grant_terms(), now_unix());
        let json = client_data.to_json();
        let hash = client_data_hash(&json);

        let mut key = inner
            .opener
            .open()
            .map_err(|e| GateError::Device(e.to_string()))?;
        let is_virtual = key.is_virtual();
        let message = touch_message(request, is_virtual);
        let prompter = inner.prompter.clone();
        let mut announced = false;
        let mut on_up = || {
            if !announced {
                announced = true;
                prompter.emit(PromptEvent::Pending {
                    id: id.to_owned(),
                    message: message.clone(),
                    peer: request.requester.clone(),
                    key: request.key_fingerprint.clone(),
                    namespace: request.namespace.clone(),
                });
            }
        };
        let response = key
            .get_assertion(&rp_id, json.as_bytes(), &ids, &mut on_up, cancel)
            .map_err(|e| match e {
                _ if cancel.is_cancelled() => GateError::Cancelled,
                CtapError::Deadline(_) | CtapError::Status(StatusCode::UserActionTimeout) => {
                    GateError::TouchTimeout(inner.touch_timeout)
                }
                CtapError::Status(StatusCode::KeepaliveCancel) | CtapError::Cancelled => {
                    GateError::Cancelled
                }
                other => GateError::Device(other.to_string()),
            })?;
        drop(key);
        let verified = verify_assertion(
            &Expected {
                rp_id: &rp_id,
                client_data_hash: hash,
                allowed: &allowed,
                require_uv: false,
            },
            &response,
        )
        .map_err(|e| GateError::Verification(e.to_string()))?;
        // The counter is saved before anything is signed, so a replay of this assertion can
        // never pass the counter check again.
        inner
            .store
            .save_sign_count(verified.credential_id(), verified.sign_count())
            .map_err(|e| GateError::Device(format!("cannot save the sign counter: {e}")))?;
        if cancel.is_cancelled() {
            return Err(GateError::Cancelled);
        }
        let receipt = Receipt {
            client_data: Some(json),
            auth_data: Some(hex::encode(&response.auth_data_raw)),
            signature: Some(hex::encode(&response.signature)),
            credential_id: Some(hex::encode(verified.credential_id())),
            virtual_key: is_virtual,
            ..Receipt::for_request(id, Outcome::Approved, request)
        };
        inner
            .audit
            .append(&receipt)
            .map_err(|e| GateError::Device(format!("cannot write the receipt: {e}")))?;
        if let Ok(mut g) = inner.grants.lock() {
            g.open(
                id,
                &request.key_fingerprint,
                &request.requester,
                (inner.clock)(),
            );
        }
        inner
            .prompter
            .emit(PromptEvent::Approved { id: id.to_owned() });
        Ok(Approval::new(
            request.key_fingerprint.clone(),
            request.data_digest,
            id.to_owned(),
        ))
    }

    fn deny(inner: &Inner, request: &ApprovalRequest, id: &str, error: &GateError) {
        let receipt = Receipt {
            reason: Some(error.to_string()),
            ..Receipt::for_request(id, Outcome::Denied, request)
        };
        let _ = inner.audit.append(&receipt);
        inner.prompter.emit(PromptEvent::Denied {
            id: id.to_owned(),
            reason: error.to_string(),
        });
    }
}

impl Gate for PresenceGate {
    fn approve(&self, request: ApprovalRequest) -> ApproveFuture<'_> {
        let inner = self.inner.clone();
        Box::pin(async move {
            if let Some(a) = Self::try_grant(&inner, &request) {
                return Ok(a);
            }
            // One device interaction at a time; tokio's mutex is fair (FIFO).
            let turn = inner.device_turn.clone().lock_owned().await;
            // A touch that happened while we waited may have opened a grant for us.
            if let Some(a) = Self::try_grant(&inner, &request) {
                return Ok(a);
            }
            let cancel = CancelToken::new();
            let _hangup = CancelOnDrop(cancel.clone());
            let (tx, rx) = tokio::sync::oneshot::channel();
            let worker = inner.clone();
            tokio::task::spawn_blocking(move || {
                let _turn = turn; // held until the key is idle again
                let id = Receipt::new_id();
                let result = Self::touch_and_verify(&worker, &request, &cancel, &id);
                if let Err(e) = &result {
                    Self::deny(&worker, &request, &id, e);
                }
                let _ = tx.send(result);
            });
            rx.await
                .unwrap_or_else(|_| Err(GateError::Device("the key worker stopped".into())))
        })
    }

    fn signed(&self, _approval: &Approval) {}

    fn keys_wiped(&self) {
        self.clear_grants();
    }
}
