//! Private files and directories: `AUTHS_HOME` and the socket directory are 0700 and owned by
//! us, files are 0600 and replaced atomically (write a temp file, fsync, rename, fsync the
//! directory), so a crash never leaves a half-written enrollment or key state behind.
//! Loose permissions are refused, never silently fixed (fail closed), as OpenSSH does for
//! its key files.
//!
//! Windows has no mode bits: there the same rule is an ACL ([`crate::platform::sddl`]): the
//! directory is created owned by the current user with a protected DACL that admits only that
//! user (inherited by the files created in it), and an existing path whose owner is someone
//! else or whose DACL admits anyone else (LocalSystem and Administrators excepted) is refused.

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// A private path that cannot be used safely.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SecureFsError {
    /// The directory is a symbolic link.
    #[error("{0} is a symbolic link; refusing to use it (remove it and let auths create a real directory)")]
    Symlink(PathBuf),
    /// The path exists but is not a directory.
    #[error("{0} exists and is not a directory")]
    NotADirectory(PathBuf),
    /// Another user owns the directory.
    #[error("{path} is owned by uid {owner}, not by you (uid {me}); refusing to use it")]
    ForeignOwner {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our uid.
        me: u32,
    },
    /// Group or others can reach into the directory or read the file.
    #[error("{path} has mode {mode:o}; it must not be accessible by group or others. Fix it with: chmod {want:o} {path}")]
    LoosePermissions {
        /// The path.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
        /// The mode we require.
        want: u32,
    },
    /// The Windows ACL admits someone else, or another user owns the path.
    #[error("{path}: {problem}; it must admit only you. Fix it with: {fix}")]
    LooseAcl {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        problem: String,
        /// The command that fixes it.
        fix: String,
    },
    /// An I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SecureFsError + '_ {
    move |source| SecureFsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Create `dir` with mode 0700 if missing (parents too), or verify an existing one: a real
/// directory (not a symlink), owned by us, with no group/other permission bits.
pub fn ensure_private_dir(dir: &Path) -> Result<(), SecureFsError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
            }
            create_private_dir(dir)?;
        }
        Err(e) => return Err(io_err(dir)(e)),
        Ok(_) => {}
    }
    check_private(dir, true)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), SecureFsError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

#[cfg(windows)]
fn create_private_dir(dir: &Path) -> Result<(), SecureFsError> {
    let made = crate::platform::windows::current_user_sid()
        .and_then(|sid| {
            crate::platform::sddl::private_dir_sddl(&sid)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })
        .and_then(|sddl| crate::platform::windows::create_dir_with_sddl(dir, &sddl));
    match made {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

#[cfg(not(any(unix, windows)))]
fn create_private_dir(dir: &Path) -> Result<(), SecureFsError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Verify that `path` is ours and private: for a directory no group/other bits at all, for a
/// file no group/other bits either (0600 or stricter). Symlinks are refused.
#[cfg(unix)]
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

/// Windows: refuse symlinks (reparse points), then check owner and DACL: the owner must be
/// the current user and the DACL must admit nobody else (fail closed on anything unreadable).
#[cfg(windows)]
pub fn check_private(path: &Path, want_dir: bool) -> Result<(), SecureFsError> {
    let md = std::fs::symlink_metadata(path).map_err(io_err(path))?;
    if md.file_type().is_symlink() {
        return Err(SecureFsError::Symlink(path.to_path_buf()));
    }
    if want_dir && !md.is_dir() {
        return Err(SecureFsError::NotADirectory(path.to_path_buf()));
    }
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

/// Other platforms: only symlinks are refused.
#[cfg(not(any(unix, windows)))]
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

/// Replace `path` atomically with `bytes`, mode 0600: write `path.tmp-<pid>-<rand>`, fsync,
/// rename over `path`, fsync the directory. Readers see the old or the new content, never a mix.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), SecureFsError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut f = open_private_new(&tmp)?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Create a new file with mode 0600 (fails if it exists).
#[cfg(unix)]
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

/// Create a new file (fails if it exists). On Windows it inherits the private directory's
/// ACL (owner-only, see [`ensure_private_dir`]).
#[cfg(not(unix))]
pub fn open_private_new(path: &Path) -> Result<std::fs::File, SecureFsError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))
}

/// Open `path` for appending, creating it with mode 0600; an existing file must be private.
#[cfg(unix)]
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

/// Open `path` for appending, creating it.
#[cfg(not(unix))]
pub fn open_private_append(path: &Path) -> Result<std::fs::File, SecureFsError> {
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(io_err(path))?;
    check_private(path, false)?;
    Ok(f)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), SecureFsError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), SecureFsError> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
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
