//! Peer identity on a Unix socket: the credentials and process details come from this
//! system's module (`super::os`).

use std::os::unix::fs::MetadataExt;

use super::Requester;
use crate::presence::request::FileId;

/// Read the peer's identity from a connected Unix socket.
pub fn from_unix_stream(stream: &tokio::net::UnixStream) -> std::io::Result<Requester> {
    let (uid, pid) = super::os::credentials(stream)?;
    let mut info = Requester {
        uid,
        pid,
        ..Requester::default()
    };
    super::os::complete(&mut info);
    Ok(info)
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
