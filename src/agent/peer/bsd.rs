//! Other Unix systems: uid and pid through tokio, no process details.

use std::io;

use super::Requester;
use crate::presence::request::Identity;

pub(super) fn complete(_info: &mut Requester) {}

/// Nothing to check the (absent) process details against.
pub(super) struct Witness;

pub(super) fn witness(_stream: &tokio::net::UnixStream, _pid: Option<u32>) -> Witness {
    Witness
}

/// No process details are read here, so none are confirmed: no grant is ever used.
pub(super) fn confirm(_witness: &Witness, _info: &Requester) -> Identity {
    Identity::Unconfirmed
}

/// uid (`getpeereid`) and pid (`LOCAL_PEERPID` where available) via tokio.
pub(super) fn credentials(stream: &tokio::net::UnixStream) -> io::Result<(u32, Option<u32>)> {
    let cred = stream.peer_cred()?;
    let pid = cred.pid().and_then(|p| u32::try_from(p).ok());
    Ok((cred.uid(), pid))
}
