//! The gate: the one interface the agent uses to ask for a verified touch before it signs.
//!
//! `approve` returns an [`Approval`], a proof token that only this module can build (after the
//! assertion has been verified), and the agent's signing path takes it by value: a path that
//! signs without a verified touch does not compile (rustls' `HandshakeSignatureValid` idea).

use std::future::Future;
use std::pin::Pin;

use thiserror::Error;

use super::request::ApprovalRequest;

/// Why the gate did not approve.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GateError {
    /// Nobody touched the key within the touch timeout.
    #[error("no touch within {0:?}: the request was cancelled")]
    TouchTimeout(std::time::Duration),
    /// The assertion did not verify (wrong rp id, UP clear, bad signature, counter went back…).
    #[error("the security key's answer did not verify: {0}")]
    Verification(String),
    /// The security key could not be reached or answered with an error.
    #[error("security key error: {0}")]
    Device(String),
    /// No security key is enrolled.
    #[error("no security key is enrolled; run `auths token enroll` first")]
    NotEnrolled,
    /// The request was cancelled (the client went away, or the agent is shutting down).
    #[error("the request was cancelled")]
    Cancelled,
}

/// Proof that a verified touch approved signing `data_digest` with `key_fingerprint`.
/// Only `presence` can construct it.
#[derive(Debug)]
pub struct Approval {
    key_fingerprint: String,
    data_digest: [u8; 32],
    /// Receipt line id in the audit log, for the agent's own logs.
    receipt_id: String,
}

impl Approval {
    /// Built only by the gate, after verification.
    #[allow(dead_code)]
    pub(in crate::presence) fn new(
        key_fingerprint: String,
        data_digest: [u8; 32],
        receipt_id: String,
    ) -> Self {
        Approval {
            key_fingerprint,
            data_digest,
            receipt_id,
        }
    }

    /// True when this approval covers signing `digest` with the key `fingerprint`.
    /// The signer calls this before it signs and refuses on false.
    pub fn covers(&self, fingerprint: &str, digest: &[u8; 32]) -> bool {
        self.key_fingerprint == fingerprint && &self.data_digest == digest
    }

    /// The receipt this approval was logged under.
    pub fn receipt_id(&self) -> &str {
        &self.receipt_id
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

    /// Outcome of a signature made under `approval` (for the audit log): called by the agent
    /// after it signed.
    fn signed(&self, approval: &Approval);

    /// The agent wiped its keys (lock, `ssh-add -D`, a timeout or cap): every open grant ends,
    /// so the next signature needs a touch even if the same key is added again.
    fn keys_wiped(&self) {}
}
