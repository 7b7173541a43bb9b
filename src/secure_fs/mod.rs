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

// The platform half (see `crate::platform` for the scheme): `imp` is this platform's module.
#[cfg(not(any(unix, windows)))]
mod other;
#[cfg(not(any(unix, windows)))]
use other as imp;
#[cfg(not(unix))]
mod plain;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

use imp::{check_owner_and_access, create_dir_private, private_open_options, sync_dir};
pub use imp::{lock_exclusive, FileLock};

/// A private path that cannot be used safely.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SecureFsError {
    /// The directory is a symbolic link.
    #[error("{0} is a symbolic link; refusing to use it")]
    Symlink(PathBuf),
    /// The path exists but is not a directory.
    #[error("{0} exists and is not a directory")]
    NotADirectory(PathBuf),
    /// The path is not a regular file (a FIFO, a device, a socket, a directory).
    #[error("{0} is not a regular file; refusing to use it")]
    NotARegularFile(PathBuf),
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
    #[error("{path} has mode {mode:o}; it must not be accessible by group or others (mode {want:o} at most)")]
    LoosePermissions {
        /// The path.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
        /// The mode we require.
        want: u32,
    },
    /// The Windows ACL admits someone else, or another user owns the path.
    #[error("{path}: {problem}; it must admit only you")]
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

/// Create the directory `dir` (its parent exists) private from the start; one that already
/// exists is left for [`check_private`] to judge.
fn create_private_dir(dir: &Path) -> Result<(), SecureFsError> {
    match create_dir_private(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Verify that `path` is ours and private. Symlinks are refused everywhere, and so is a
/// non-directory when `want_dir`; then the platform checks owner and access: on Unix no
/// group/other bits at all (0700 directories, 0600 files or stricter), on Windows an owner and
/// DACL that admit the current user only, elsewhere nothing more.
pub fn check_private(path: &Path, want_dir: bool) -> Result<(), SecureFsError> {
    let md = std::fs::symlink_metadata(path).map_err(io_err(path))?;
    if md.file_type().is_symlink() {
        return Err(SecureFsError::Symlink(path.to_path_buf()));
    }
    if want_dir && !md.is_dir() {
        return Err(SecureFsError::NotADirectory(path.to_path_buf()));
    }
    check_owner_and_access(path, &md, want_dir)
}

/// Create a new file (fails if it exists), private from the start: mode 0600 and no symlink
/// followed on Unix; on Windows it inherits the private directory's owner-only ACL (see
/// [`ensure_private_dir`]).
pub fn open_private_new(path: &Path) -> Result<std::fs::File, SecureFsError> {
    private_open_options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))
}

/// Open `path` for appending, creating it as [`open_private_new`] does; an existing file must
/// be a private regular file (a FIFO put in its place is refused, never waited on).
pub fn open_private_append(path: &Path) -> Result<std::fs::File, SecureFsError> {
    let f = private_open_options()
        .append(true)
        .create(true)
        .open(path)
        .map_err(io_err(path))?;
    regular(&f, path)?;
    check_private(path, false)?;
    Ok(f)
}

/// The whole of the private regular file `path`, or `None` when there is none. Opened without
/// blocking (a FIFO put in its place is refused, never waited on) and checked on the open
/// handle, so what is read is what was checked.
pub fn read_private(path: &Path) -> Result<Option<Vec<u8>>, SecureFsError> {
    use std::io::Read;
    let Some(mut f) = open_private_read(path)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(io_err(path))?;
    Ok(Some(bytes))
}

/// The private regular file `path` opened for reading, or `None` when there is none; checked
/// as [`read_private`] checks it.
pub fn open_private_read(path: &Path) -> Result<Option<std::fs::File>, SecureFsError> {
    let f = match private_open_options().read(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    regular(&f, path)?;
    check_private(path, false)?;
    Ok(Some(f))
}

/// Refuse an open handle that is not a regular file.
fn regular(f: &std::fs::File, path: &Path) -> Result<(), SecureFsError> {
    let md = f.metadata().map_err(io_err(path))?;
    if !md.is_file() {
        return Err(SecureFsError::NotARegularFile(path.to_path_buf()));
    }
    Ok(())
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
