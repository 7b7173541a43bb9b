//! Other platforms (neither Unix nor Windows): no owner or permission model we know; only
//! symlinks are refused.

use std::path::Path;

use super::{io_err, SecureFsError};

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), SecureFsError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Other platforms: only symlinks are refused.
pub fn check_private(path: &Path, want_dir: bool) -> Result<(), SecureFsError> {
    let md = std::fs::symlink_metadata(path).map_err(io_err(path))?;
    if md.file_type().is_symlink() {
        return Err(SecureFsError::Symlink(path.to_path_buf()));
    }
    if want_dir && !md.is_dir() {
        return Err(SecureFsError::NotADirectory(path.to_path_buf()));
    }
    Ok(())
}

pub(crate) use super::plain::sync_dir;
pub use super::plain::{open_private_append, open_private_new};

/// The open file itself: no advisory lock is known on this platform.
pub type FileLock = std::fs::File;

/// No lock is taken (see [`FileLock`]).
pub fn lock_exclusive(file: std::fs::File) -> std::io::Result<FileLock> {
    Ok(file)
}
