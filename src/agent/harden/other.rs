//! Non-Unix systems: nothing to do here yet.

use super::OpenFiles;
use crate::agent::AgentError;

/// Nothing to harden on this platform yet.
pub fn harden_process() -> Result<(), AgentError> {
    Ok(())
}

/// No open-file limit to raise (a Windows process has no `RLIMIT_NOFILE`).
pub(crate) fn raise_open_files_limit() -> OpenFiles {
    OpenFiles {
        limit: None,
        error: None,
    }
}
