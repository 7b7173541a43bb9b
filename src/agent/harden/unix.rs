//! Other Unix systems: no core dumps.

use crate::agent::AgentError;

/// `RLIMIT_CORE` 0.
pub fn harden_process() -> Result<(), AgentError> {
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0).map_err(
        |source| AgentError::Hardening {
            call: "setrlimit(RLIMIT_CORE, 0)",
            source,
        },
    )
}
