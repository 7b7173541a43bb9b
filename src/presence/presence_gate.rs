//! The presence gate: a verified touch on an enrolled key before every approval, one device
//! interaction at a time, every outcome logged as a receipt.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::MutexGuard;

use tokio::sync::OwnedMutexGuard;

use crate::ctap::device::{CancelToken, DeviceOptions};
use crate::ctap::select::{self, DeviceSelector};
use crate::ctap::{CtapError, StatusCode};

use super::audit::{AuditLog, Evidence, Receipt};
use super::challenge::ClientData;
use super::enrollment::TokenStore;
use super::gate::{Approval, ApproveFuture, Gate, GateError, Settle};
use super::policy::{Grants, Policy};
use super::prompt::{touch_message, PromptEvent, Prompter};
use super::request::ApprovalRequest;
use super::touch::{self, Credentials, PresenceKey, TouchError, VerifiedTouch};

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

/// How an approval of this gate ends: its receipt goes to the audit log, a signed touch opens
/// the grant its client data names, and the device turn (held by a touch's approval) is given
/// back only then, so the next request in line sees that grant and the receipts of touches stay
/// in the order of their sign counters.
struct Settlement {
    inner: Arc<Inner>,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl Settle for Settlement {
    fn settle(
        self: Box<Self>,
        receipt: Receipt,
        touch: Option<&VerifiedTouch>,
    ) -> Result<(), GateError> {
        let inner = &self.inner;
        inner.audit.append(&receipt)?;
        if let Some(touch) = touch {
            inner.grants().open(
                touch.assertion(),
                &receipt.id,
                &receipt.key,
                &receipt.peer,
                (inner.clock)(),
            );
        }
        Ok(())
    }
}

impl Inner {
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
        if store.list()?.is_empty() {
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
        self.inner.grants().clear();
    }

    fn try_grant(inner: &Arc<Inner>, request: &ApprovalRequest) -> Option<Approval> {
        let grant = inner.grants().take(
            &request.key_fingerprint,
            &request.requester,
            (inner.clock)(),
        )?;
        let id = Receipt::new_id();
        let (grant_of, remaining) = (grant.grant_of().to_owned(), grant.remaining());
        let settle = Box::new(Settlement {
            inner: Arc::clone(inner),
            _turn: None,
        });
        let approval = Approval::from_grant(grant, request.clone(), id.clone(), settle).ok()?;
        inner.prompter.emit(PromptEvent::Granted {
            id,
            grant_of,
            remaining,
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
    ) -> Result<VerifiedTouch, GateError> {
        let creds = Credentials::enrolled(&inner.store.list()?)?;
        let terms = inner.grants().policy().grant_terms();
        let client_data = ClientData::new(request, terms, now_unix()).to_json();

        let mut key = inner.opener.open().map_err(GateError::Device)?;
        let message = touch_message(request, key.is_virtual());
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
        let touched = touch::touch(
            key.as_mut(),
            &creds,
            &client_data,
            false,
            &mut on_up,
            cancel,
        );
        drop(key);
        let verified = touched.map_err(|e| match e {
            _ if cancel.is_cancelled() => GateError::Cancelled,
            TouchError::Device(
                CtapError::Deadline(_) | CtapError::Status(StatusCode::UserActionTimeout),
            ) => GateError::TouchTimeout(inner.touch_timeout),
            TouchError::Device(
                CtapError::Status(StatusCode::KeepaliveCancel) | CtapError::Cancelled,
            ) => GateError::Cancelled,
            other => GateError::from(other),
        })?;
        inner.store.save_sign_count(
            verified.assertion().credential_id(),
            verified.assertion().sign_count(),
        )?;
        if cancel.is_cancelled() {
            return Err(GateError::Cancelled);
        }
        Ok(verified)
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
                let id = Receipt::new_id();
                let touched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    Self::touch_and_verify(&worker, &request, &cancel, &id)
                }))
                .unwrap_or(Err(GateError::WorkerStopped));
                let result = touched.and_then(|touch| {
                    // The turn stays with the approval until its receipt is written.
                    let settle = Box::new(Settlement {
                        inner: Arc::clone(&worker),
                        _turn: Some(turn),
                    });
                    Ok(Approval::from_touch(
                        touch,
                        request.clone(),
                        id.clone(),
                        settle,
                    )?)
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
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::ctap::command::Algorithm;
    use crate::ctap::select::OpenedKey;
    use crate::ctap::virtual_key::{StateLocation, TouchMode, VirtualKey, VirtualKeyConfig};
    use crate::presence::audit::{verify_log, Outcome};
    use crate::presence::enrollment::enroll_key;
    use crate::presence::request::Requester;

    struct Setup {
        _dir: tempfile::TempDir,
        gate: PresenceGate,
        home: std::path::PathBuf,
        panic_next: Arc<AtomicBool>,
    }

    fn options() -> DeviceOptions {
        DeviceOptions {
            deadline: Duration::from_secs(5),
            ..DeviceOptions::default()
        }
    }

    /// A gate over an enrolled virtual key that touches at once; its opener panics once when
    /// `panic_next` is set.
    fn setup(policy: Policy) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let key = Arc::new(
            VirtualKey::start(VirtualKeyConfig {
                state: StateLocation::InMemory,
                touch_mode: TouchMode::Auto {
                    delay: Duration::ZERO,
                },
                timings: Default::default(),
            })
            .unwrap(),
        );
        let store = TokenStore::open(&home).unwrap();
        let connect = {
            let key = Arc::clone(&key);
            move || OpenedKey::from_transport(Box::new(key.connect()), "v".into(), options(), true)
        };
        let mut opened = connect().unwrap();
        enroll_key(
            &mut opened,
            &store,
            None,
            "auths:presence",
            &[Algorithm::Es256],
            &mut || {},
        )
        .unwrap();
        let panic_next = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&panic_next);
        let opener = move || -> Result<Box<dyn PresenceKey>, CtapError> {
            if flag.swap(false, Ordering::SeqCst) {
                panic!("a key backend bug");
            }
            Ok(Box::new(connect()?))
        };
        let gate = PresenceGate::new(GateConfig {
            home: home.clone(),
            opener: Box::new(opener),
            policy,
            touch_timeout: Duration::from_secs(5),
            prompter: Prompter::new(false),
            clock: None,
        })
        .unwrap();
        Setup {
            _dir: dir,
            gate,
            home,
            panic_next,
        }
    }

    fn request(digest: u8) -> ApprovalRequest {
        ApprovalRequest {
            key_fingerprint: "SHA256:identity".into(),
            data_digest: [digest; 32],
            namespace: Some("git".into()),
            requester: Requester {
                uid: 1000,
                pid: Some(42),
                start_time: Some(7),
                ..Requester::default()
            },
        }
    }

    fn receipts(home: &Path) -> Vec<Receipt> {
        AuditLog::new(home)
            .read()
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.unwrap())
            .collect()
    }

    fn report(home: &Path) -> crate::presence::audit::VerifyReport {
        let lines = AuditLog::new(home).read().unwrap();
        verify_log(&lines, &TokenStore::open(home).unwrap().list().unwrap())
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_panicking_worker_denies_and_the_policy_holds_afterwards() {
        let s = setup("batch:3:60s:process".parse().unwrap());
        s.panic_next.store(true, Ordering::SeqCst);
        let first = s.gate.approve(request(1)).await;
        assert!(matches!(first, Err(GateError::WorkerStopped)), "{first:?}");
        let r = receipts(&s.home);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].outcome(), Outcome::Denied);
        assert!(!r[0].signed, "a panic leaves no false receipt");

        // The grants lock is not poisoned and the batch policy still holds: one touch, then
        // grant uses.
        let touched = s.gate.approve(request(2)).await.unwrap();
        assert_eq!(touched.grant_remaining(), None, "a touch");
        touched.signed().unwrap();
        let granted = s.gate.approve(request(3)).await.unwrap();
        assert_eq!(
            granted.grant_remaining(),
            Some(1),
            "a grant use, not a touch"
        );
        granted.signed().unwrap();
        let rep = report(&s.home);
        assert!(rep.ok(), "{:?}", rep.problems);
        assert_eq!((rep.denied, rep.approved, rep.granted), (1, 1, 1));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_receipt_says_signed_only_after_the_signature() {
        let s = setup("batch:3:60s:process".parse().unwrap());
        let approval = s.gate.approve(request(1)).await.unwrap();
        assert!(
            receipts(&s.home).is_empty(),
            "nothing is written before the outcome"
        );
        approval.not_signed("the signer failed").unwrap();
        let r = receipts(&s.home);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].outcome(), Outcome::Approved);
        assert!(!r[0].signed);
        assert_eq!(r[0].reason.as_deref(), Some("the signer failed"));
        // An unsigned touch opens no grant: the next request needs its own touch.
        let next = s.gate.approve(request(2)).await.unwrap();
        assert_eq!(next.grant_remaining(), None);
        // Dropped unsettled (a panic in the agent, a client gone): recorded as not signed.
        drop(next);
        let r = receipts(&s.home);
        assert_eq!(r.len(), 2);
        assert!(!r[1].signed);
        let rep = report(&s.home);
        assert!(rep.ok(), "{:?}", rep.problems);
        assert_eq!((rep.approved, rep.unsigned), (0, 2));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_approval_covers_only_its_own_key_and_bytes() {
        let s = setup(Policy::PerSignature);
        let approval = s.gate.approve(request(1)).await.unwrap();
        assert!(approval.covers("SHA256:identity", &[1; 32]));
        assert!(!approval.covers("SHA256:identity", &[2; 32]));
        assert!(!approval.covers("SHA256:other", &[1; 32]));
        approval.signed().unwrap();
    }
}
