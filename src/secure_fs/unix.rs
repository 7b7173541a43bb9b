//! Unix file protection: mode bits (0700 directories, 0600 files), owner uid, `O_NOFOLLOW`,
//! `flock`.

use std::path::Path;

use super::{io_err, SecureFsError};

pub(crate) fn create_dir_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}

/// Owned by our effective uid, and no group/other bits: 0700 for a directory, 0600 or
/// stricter for a file.
pub(crate) fn check_owner_and_access(
    path: &Path,
    md: &std::fs::Metadata,
    want_dir: bool,
) -> Result<(), SecureFsError> {
    use std::os::unix::fs::MetadataExt;
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

/// Files are created with mode 0600, a symlink in the last component is not followed, and the
/// open never blocks (a FIFO in a file's place would otherwise wait for a writer forever; the
/// caller then refuses anything but a regular file).
pub(crate) fn private_open_options() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK);
    opts
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
    fn a_fifo_in_a_files_place_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("audit.jsonl");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Nobody writes to or reads from it: a blocking open would never return.
        assert!(matches!(
            read_private(&fifo),
            Err(SecureFsError::NotARegularFile(_))
        ));
        assert!(open_private_append(&fifo).is_err());
        assert_eq!(read_private(&d.path().join("absent")).unwrap(), None);
        std::fs::write(d.path().join("f"), b"x").unwrap();
        std::fs::set_permissions(
            d.path().join("f"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        assert_eq!(
            read_private(&d.path().join("f")).unwrap(),
            Some(b"x".to_vec())
        );
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
