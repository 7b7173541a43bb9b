//! Windows file protection: no mode bits, an ACL instead ([`crate::platform::sddl`]): owner
//! and DACL must admit the current user only.

use std::path::Path;

use super::{io_err, SecureFsError};

pub(crate) fn create_dir_private(dir: &Path) -> std::io::Result<()> {
    crate::platform::windows::current_user_sid()
        .and_then(|sid| {
            crate::platform::sddl::private_dir_sddl(&sid)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })
        .and_then(|sddl| crate::platform::windows::create_dir_with_sddl(dir, &sddl))
}

/// Windows (symlinks, that is reparse points, already refused): the owner must be the current
/// user and the DACL must admit nobody else (fail closed on anything unreadable).
pub(crate) fn check_owner_and_access(
    path: &Path,
    md: &std::fs::Metadata,
    _want_dir: bool,
) -> Result<(), SecureFsError> {
    let me = crate::platform::windows::current_user_sid().map_err(io_err(path))?;
    let (owner, dacl) = crate::platform::windows::owner_and_dacl(path).map_err(io_err(path))?;
    crate::platform::sddl::check_acl(&owner, &me, dacl.as_deref()).map_err(|problem| {
        SecureFsError::LooseAcl {
            path: path.to_path_buf(),
            problem: problem.to_string(),
            fix: crate::platform::sddl::icacls_fix(&path.display().to_string(), md.is_dir()),
        }
    })
}

pub(crate) use super::plain::{private_open_options, sync_dir};

/// A file held under an exclusive `LockFileEx` lock; closing the handle releases it.
#[derive(Debug)]
pub struct FileLock {
    /// Held, never read: the lock lives as long as the handle.
    _file: std::fs::File,
}

/// Wait for an exclusive lock on the whole of `file` (LockFileEx, as flock on Unix).
pub fn lock_exclusive(file: std::fs::File) -> std::io::Result<FileLock> {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Storage::FileSystem::{LockFileEx, LOCKFILE_EXCLUSIVE_LOCK};
    use windows_sys::Win32::System::IO::OVERLAPPED;
    // SAFETY: OVERLAPPED is a plain C struct for which all-zero is the documented initial
    // value (offset 0, no event) for a synchronous handle.
    let mut overlapped: OVERLAPPED = unsafe { std::mem::zeroed() };
    // SAFETY: the handle belongs to `file`, which stays open for the duration of the call, and
    // `overlapped` outlives the call; LockFileEx blocks (no LOCKFILE_FAIL_IMMEDIATELY) until the
    // lock is granted, so nothing is left pending on the OVERLAPPED afterwards.
    let ok = unsafe {
        LockFileEx(
            file.as_raw_handle(),
            LOCKFILE_EXCLUSIVE_LOCK,
            0,
            u32::MAX,
            u32::MAX,
            &mut overlapped,
        )
    };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(FileLock { _file: file })
}
