//! Peer identity on a Unix socket: the credentials and process details come from this
//! system's module (`super::os`), which also confirms that the details are the connecting
//! process's ([`Identity`]).

use std::os::unix::fs::MetadataExt;

use super::Requester;
use crate::presence::request::{FileId, Identity};

/// Read the peer's identity from a connected Unix socket. When it cannot be confirmed that
/// the details describe the process that connected, only the uid and pid are kept and the
/// requester is [`Identity::Exited`] (or [`Identity::Unconfirmed`] where the platform cannot
/// tell).
pub fn from_unix_stream(stream: &tokio::net::UnixStream) -> std::io::Result<Requester> {
    let (uid, pid) = super::os::credentials(stream)?;
    let witness = super::os::witness(stream, pid);
    let mut info = Requester {
        uid,
        pid,
        ..Requester::default()
    };
    super::os::complete(&mut info);
    Ok(match super::os::confirm(&witness, &info) {
        Identity::Confirmed => Requester {
            identity: Identity::Confirmed,
            ..info
        },
        Identity::Exited => info.exited(),
        Identity::Unconfirmed => info,
    })
}

/// The identity (device, inode) of the file at `path`, following links: on Linux
/// `/proc/PID/exe`, the kernel's own link to the executable, so a file moved into place at the
/// same path afterwards is another file.
pub(super) fn file_id(path: &str) -> Option<FileId> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileId {
        dev: m.dev(),
        ino: m.ino(),
    })
}
