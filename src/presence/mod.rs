//! The gate: enrollment, client data that binds a touch to a request, verification, policy,
//! audit. Knows nothing of sockets.

pub mod attestation;
pub mod audit;
pub mod challenge;
pub mod enrollment;
pub mod fault;
pub mod gate;
pub mod group_commit;
pub mod home;
pub mod key_channel;
mod lazy_counters;
pub mod notify;
pub mod pin_entry;
pub mod pinentry;
pub mod policy;
pub mod presence_gate;
pub mod prompt;
pub mod proof;
pub mod request;
pub mod rules;
pub mod seal_ops;
pub mod sealed;
pub mod touch;
pub mod verify;

/// An error and its causes on one line (`what: why: deeper why`), for receipts, prompts and
/// audit findings, which keep no error values.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
