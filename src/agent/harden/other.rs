//! Non-Unix systems: nothing to do here yet.

use crate::agent::AgentError;

/// Nothing to harden on this platform yet.
pub fn harden_process() -> Result<(), AgentError> {
    Ok(())
}
