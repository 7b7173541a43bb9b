//! The parts Windows and other non-Unix platforms share: plain opens (on Windows a new file
//! inherits the private directory's owner-only ACL), no directory fsync, no file lock yet.

use std::path::Path;

use super::{check_private, io_err, SecureFsError};

/// Create a new file (fails if it exists). On Windows it inherits the private directory's
/// ACL (owner-only, see [`super::ensure_private_dir`]).
pub fn open_private_new(path: &Path) -> Result<std::fs::File, SecureFsError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))
}

/// Open `path` for appending, creating it.
pub fn open_private_append(path: &Path) -> Result<std::fs::File, SecureFsError> {
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(io_err(path))?;
    check_private(path, false)?;
    Ok(f)
}

pub(crate) fn sync_dir(_dir: &Path) -> Result<(), SecureFsError> {
    Ok(())
}
