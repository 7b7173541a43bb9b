//! Peer identity on a Unix socket: the credentials and process details come from this
//! system's module (`super::os`).

use super::Requester;

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
