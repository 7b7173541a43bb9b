//! The parts Windows and other non-Unix platforms share: plain opens (on Windows a new file
//! inherits the private directory's owner-only ACL), no directory fsync, no file lock yet.

use std::path::Path;

use super::SecureFsError;

/// No mode bits or open flags to add.
pub(crate) fn private_open_options() -> std::fs::OpenOptions {
    std::fs::OpenOptions::new()
}

pub(crate) fn sync_dir(_dir: &Path) -> Result<(), SecureFsError> {
    Ok(())
}
