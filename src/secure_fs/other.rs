//! Other platforms (neither Unix nor Windows): no owner or permission model we know; only
//! symlinks are refused.

use std::path::Path;

use super::SecureFsError;

pub(crate) fn create_dir_private(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir(dir)
}

/// Other platforms: nothing beyond the symlink check.
pub(crate) fn check_owner_and_access(
    _path: &Path,
    _md: &std::fs::Metadata,
    _want_dir: bool,
) -> Result<(), SecureFsError> {
    Ok(())
}

pub(crate) use super::plain::{private_open_options, sync_dir};

/// The open file itself: no advisory lock is known on this platform.
pub type FileLock = std::fs::File;

/// No lock is taken (see [`FileLock`]).
pub fn lock_exclusive(file: std::fs::File) -> std::io::Result<FileLock> {
    Ok(file)
}
