//! Other Unix systems: uid and pid through tokio, no process details.

use std::io;

use super::Requester;

pub(super) fn complete(_info: &mut Requester) {}

/// uid (`getpeereid`) and pid (`LOCAL_PEERPID` where available) via tokio.
pub(super) fn credentials(stream: &tokio::net::UnixStream) -> io::Result<(u32, Option<u32>)> {
    let cred = stream.peer_cred()?;
    let pid = cred.pid().and_then(|p| u32::try_from(p).ok());
    Ok((cred.uid(), pid))
}
