//! Unix file protection: mode bits (0700 directories, 0600 files), owner uid, `O_NOFOLLOW`,
//! `flock`.

use std::path::Path;

use super::{io_err, SecureFsError};

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), SecureFsError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Verify that `path` is ours and private: for a directory no group/other bits at all, for a
/// file no group/other bits either (0600 or stricter). Symlinks are refused.
pub fn check_private(path: &Path, want_dir: bool) -> Result<(), SecureFsError> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(path).map_err(io_err(path))?;
    if md.file_type().is_symlink() {
        return Err(SecureFsError::Symlink(path.to_path_buf()));
    }
    if want_dir && !md.is_dir() {
        return Err(SecureFsError::NotADirectory(path.to_path_buf()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if md.uid() != me {
        return Err(SecureFsError::ForeignOwner {
            path: path.to_path_buf(),
            owner: md.uid(),
            me,
        });
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecureFsError::LoosePermissions {
            path: path.to_path_buf(),
            mode,
            want: if want_dir { 0o700 } else { 0o600 },
        });
    }
    Ok(())
}

/// Create a new file with mode 0600 (fails if it exists).
pub fn open_private_new(path: &Path) -> Result<std::fs::File, SecureFsError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(path))
}

/// Open `path` for appending, creating it with mode 0600; an existing file must be private.
pub fn open_private_append(path: &Path) -> Result<std::fs::File, SecureFsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(path))?;
    check_private(path, false)?;
    Ok(f)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), SecureFsError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// An exclusive lock on an open file, released when dropped (`flock`).
pub type FileLock = nix::fcntl::Flock<std::fs::File>;

/// Take an exclusive lock on `file`, waiting for it.
pub fn lock_exclusive(file: std::fs::File) -> std::io::Result<FileLock> {
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| std::io::Error::from(errno))
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_0700_and_refuses_loose_or_symlink() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        ensure_private_dir(&d).unwrap();
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert!(matches!(
            ensure_private_dir(&d),
            Err(SecureFsError::LoosePermissions { .. })
        ));
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(matches!(
            ensure_private_dir(&link),
            Err(SecureFsError::Symlink(_))
        ));
    }

    #[test]
    fn atomic_write_is_0600_and_replaces() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(t.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
