//! The gate: the one interface the agent uses to ask for a verified touch before it signs.
//!
//! [`Gate::approve`] returns an [`Approval`], the proof token the agent's signing path takes by
//! value (rustls' `HandshakeSignatureValid`): it can be built only from a
//! [`VerifiedTouch`](super::touch::VerifiedTouch), which only the one verification path makes,
//! or from a [`GrantUse`] that [`Grants::take`](super::policy::Grants::take) hands out. So a
//! path that signs without a verified touch does not compile.
//!
//! An approval ends in exactly one receipt: [`Approval::signed`] after the signature was made
//! (the agent hands the signature out only when that receipt is durable), or
//! [`Approval::not_signed`]; an approval dropped unsettled (a panic, a client gone) records
//! that nothing was signed. A receipt never says "signed" for a signature that was not made.

use std::future::Future;
use std::pin::Pin;

use thiserror::Error;

use super::audit::{AuditError, Evidence, Receipt};
use super::challenge::{BindingError, ClientData};
use super::enrollment::EnrollmentError;
use super::policy::GrantUse;
use super::request::ApprovalRequest;
use super::touch::{TouchError, VerifiedTouch};
use super::verify::VerifyError;
use crate::ctap::CtapError;

/// Why the gate did not approve, or could not record an approval.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GateError {
    /// Nobody touched the key within the touch timeout.
    #[error("no touch within {0:?}: the request was cancelled")]
    TouchTimeout(std::time::Duration),
    /// The key answered, and the answer did not verify (wrong rp id, UP clear, bad signature,
    /// counter went back…).
    #[error("the security key's answer did not verify")]
    Verification(#[from] VerifyError),
    /// A verified touch over client data that does not bind this request.
    #[error("the verified touch does not approve this request")]
    Binding(#[from] BindingError),
    /// The security key could not be reached or answered with an error.
    #[error("the security key could not give a touch")]
    Device(#[source] CtapError),
    /// The enrollment store could not be read or the sign counter not saved.
    #[error("the enrolled keys could not be read or updated")]
    Enrollment(#[from] EnrollmentError),
    /// The receipt could not be written; nothing is handed out without one.
    #[error("the receipt could not be written")]
    Audit(#[from] AuditError),
    /// No security key is enrolled.
    #[error("no security key is enrolled")]
    NotEnrolled,
    /// A caller rule refused the request before the key was asked (the sentence names the
    /// rule, the requester and what it asked for).
    #[error("{0}")]
    RuleDenied(String),
    /// Two programs asked for a touch at once: both are refused (the reason names them).
    #[error("{0}")]
    Contention(String),
    /// The request was cancelled (the client went away, or the agent is shutting down).
    #[error("the request was cancelled")]
    Cancelled,
    /// The gate's key worker stopped without an answer (it panicked); nothing was approved.
    #[error("the gate's key worker stopped unexpectedly; nothing was approved")]
    WorkerStopped,
    /// The key needs the user verified and its PIN was wrong, blocked or not usable.
    #[error("the security key's PIN did not verify you")]
    Pin(#[source] crate::ctap::client_pin::PinError),
    /// The key needs the user verified and no PIN was given.
    #[error("the security key needs its PIN")]
    PinEntry(#[source] super::pin_entry::PinEntryError),
    /// The user must be verified (`--uv required`) and the key can verify nobody: it has
    /// neither clientPIN nor built-in UV (a U2F-only key).
    #[error("{0} cannot verify you (it has no PIN and no built-in user verification), and the agent runs with --uv required")]
    CannotVerifyUser(String),
}

impl From<TouchError> for GateError {
    fn from(e: TouchError) -> Self {
        match e {
            TouchError::NotEnrolled => GateError::NotEnrolled,
            TouchError::Enrollment(e) => GateError::Enrollment(e),
            TouchError::Device(e) => GateError::Device(e),
            TouchError::Verification(e) => GateError::Verification(e),
        }
    }
}

/// What an approval rests on: the two proofs, one of which an [`Approval`] must hold.
#[derive(Debug)]
pub(in crate::presence) enum Basis {
    /// A verified touch over client data that binds the request.
    Touch(VerifiedTouch),
    /// One signature of a grant an earlier touch opened.
    Grant(GrantUse),
}

/// Where an approval's receipt goes once the agent knows whether it signed. The presence gate
/// implements it (audit log, grants, prompts); `signed` is true only after the signature was
/// made.
pub(in crate::presence) trait Settle: Send {
    /// Write `receipt` for `request`; after a signed touch also open the grant it approved.
    fn settle(
        self: Box<Self>,
        receipt: Receipt,
        request: &ApprovalRequest,
        touch: Option<&VerifiedTouch>,
    ) -> Result<(), GateError>;
}

/// Proof that a verified touch (or a grant one opened) approved signing exactly one request's
/// bytes with one identity key. Not `Clone`; see the module docs for how it ends.
#[must_use = "an approval must end in Approval::signed or Approval::not_signed"]
pub struct Approval {
    request: ApprovalRequest,
    receipt_id: String,
    basis: Basis,
    settle: Option<Box<dyn Settle>>,
    /// The hmac-secret output the approving touch brought, when the request asked it to unseal
    /// the identity key ([`ApprovalRequest::unseal`]). Zeroized on drop.
    secret: Option<super::touch::HmacSecret>,
}

impl std::fmt::Debug for Approval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approval")
            .field("key", &self.request.key_fingerprint)
            .field("receipt_id", &self.receipt_id)
            .field("basis", &self.basis)
            .finish_non_exhaustive()
    }
}

impl Approval {
    /// An approval resting on `basis`, if it approves `request` exactly: a touch's client data
    /// must bind the request; a grant must be for the request's identity key.
    pub(in crate::presence) fn new(
        basis: Basis,
        request: ApprovalRequest,
        receipt_id: String,
        settle: Box<dyn Settle>,
    ) -> Result<Approval, BindingError> {
        match &basis {
            Basis::Touch(touch) => {
                ClientData::parse(touch.client_data())?.check_binds(&request)?;
            }
            Basis::Grant(grant) if grant.key_fingerprint() != request.key_fingerprint => {
                return Err(BindingError::OtherBytes);
            }
            // A sealed key opens only with a touch's hmac-secret output: no grant stands in.
            Basis::Grant(_) if request.unseal.is_some() => {
                return Err(BindingError::OtherBytes);
            }
            Basis::Grant(_) => {}
        }
        Ok(Approval {
            request,
            receipt_id,
            basis,
            settle: Some(settle),
            secret: None,
        })
    }

    /// The approving touch also unsealed: keep its hmac-secret output for the signer. Only a
    /// touch brings one.
    pub(in crate::presence) fn with_secret(mut self, secret: super::touch::HmacSecret) -> Self {
        if matches!(self.basis, Basis::Touch(_)) {
            self.secret = Some(secret);
        }
        self
    }

    /// The hmac-secret output of the approving touch, for the sealed identity key the request
    /// named (once).
    pub fn take_secret(&mut self) -> Option<super::touch::HmacSecret> {
        self.secret.take()
    }

    /// True when this approval covers signing `digest` with the key `fingerprint`.
    /// The signer calls this before it signs and refuses on false.
    pub fn covers(&self, fingerprint: &str, digest: &[u8; 32]) -> bool {
        self.request.key_fingerprint == fingerprint && &self.request.data_digest == digest
    }

    /// The receipt this approval is logged under.
    pub fn receipt_id(&self) -> &str {
        &self.receipt_id
    }

    /// Signatures left in the grant this approval used, when it used one.
    pub fn grant_remaining(&self) -> Option<u32> {
        match &self.basis {
            Basis::Grant(g) => Some(g.remaining()),
            Basis::Touch(_) => None,
        }
    }

    /// The signature was made: write the receipt that says so. The agent hands the signature
    /// to its client only when this returns `Ok`.
    pub fn signed(mut self) -> Result<(), GateError> {
        self.settle_with(true, None)
    }

    /// The signature was not made (`reason`): write a receipt that says so.
    pub fn not_signed(mut self, reason: &str) -> Result<(), GateError> {
        self.settle_with(false, Some(reason.to_owned()))
    }

    fn settle_with(&mut self, signed: bool, reason: Option<String>) -> Result<(), GateError> {
        let Some(settle) = self.settle.take() else {
            return Ok(());
        };
        let (evidence, touch) = match &self.basis {
            Basis::Touch(t) => (
                Evidence::Approved {
                    touch: t.evidence().clone(),
                    virtual_key: t.virtual_key(),
                    user_verified: t.assertion().flags().user_verified(),
                },
                Some(t),
            ),
            Basis::Grant(g) => (
                Evidence::Granted {
                    grant_of: g.grant_of().to_owned(),
                },
                None,
            ),
        };
        let receipt = Receipt::new(&self.receipt_id, &self.request, evidence, signed, reason);
        settle.settle(receipt, &self.request, touch.filter(|_| signed))
    }
}

impl Drop for Approval {
    fn drop(&mut self) {
        // Unsettled: a panic, or a client gone before signing. Nothing was signed under it.
        let _ = self.settle_with(false, Some("dropped before signing".into()));
    }
}

/// The boxed future `Gate::approve` returns. Dropping it (the client hung up) must cancel the
/// pending touch and make no approval.
pub type ApproveFuture<'a> = Pin<Box<dyn Future<Output = Result<Approval, GateError>> + Send + 'a>>;

/// The agent talks to the gate through this trait only.
pub trait Gate: Send + Sync {
    /// Ask for a verified touch that approves `request`. One device interaction at a time;
    /// concurrent calls wait their turn, each needs its own touch unless policy grants apply.
    fn approve(&self, request: ApprovalRequest) -> ApproveFuture<'_>;

    /// The agent wiped its keys (lock, `ssh-add -D`, a timeout or cap): every open grant ends,
    /// so the next signature needs a touch even if the same key is added again.
    fn keys_wiped(&self) {}

    /// Ask the user for a key file's passphrase (`auths agent add KEYFILE`) through the
    /// gate's own askpass or pinentry program; blocking. Gates that ask nobody cannot.
    fn passphrase(
        &self,
        prompt: &str,
    ) -> Result<zeroize::Zeroizing<String>, super::pin_entry::PinEntryError> {
        let _ = prompt;
        Err(super::pin_entry::PinEntryError::NoSource)
    }

    /// The caller rules this gate applies, if it applies any (`auths agent rules`, reload).
    fn rules(&self) -> Option<std::sync::Arc<super::rules::RulesHolder>> {
        None
    }
}
