//! Fault injection for crash tests.
//!
//! Why this exists: the gate's promise that a crash between the receipt (the one durable
//! write before a signature is released) and the lazy tokens.json counter update loses
//! nothing and lets no replayed assertion through can only be shown by killing the real agent
//! exactly there. Sleeps or signals cannot hit that point deterministically, so the agent
//! aborts itself there when `AUTHS_FAULT` names the point. Unset (always, outside tests) it
//! costs one cached environment read. Aborting one's own agent gives nothing to an attacker
//! who can already set its environment.

use std::sync::OnceLock;

/// The environment variable that names a fault point.
pub const FAULT_ENV: &str = "AUTHS_FAULT";

/// After a touch's receipt is durable, before its counter reaches tokens.json.
pub const AFTER_RECEIPT: &str = "after-receipt";

/// Abort the process (no unwinding, no destructors, as a crash) when `AUTHS_FAULT` is `name`.
pub(crate) fn point(name: &str) {
    static FAULT: OnceLock<Option<String>> = OnceLock::new();
    let armed = FAULT.get_or_init(|| std::env::var(FAULT_ENV).ok());
    if armed.as_deref() == Some(name) {
        std::process::abort();
    }
}
