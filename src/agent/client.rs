//! A small blocking ssh-agent client for the CLI (`auths agent add|lock|status`) and tests:
//! one request, one response, over the agent's Unix socket (draft-miller-ssh-agent
//! "Protocol Messages").

use std::path::Path;
use std::time::Duration;

use ssh_agent_lib::proto::{Extension, Request, Response};

use super::session::WIPE_EXTENSION;
use super::AgentError;

/// Send one request and read its response.
#[cfg(unix)]
pub fn request(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, AgentError> {
    use super::session::MAX_MESSAGE_LEN;
    use ssh_encoding::{Decode, Encode};
    use std::io::{Read, Write};
    let io = |e: std::io::Error| AgentError::Client(format!("talking to the agent failed: {e}"));
    let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        AgentError::Client(format!(
            "no agent answers at {} ({e}); start one with `auths agent start`",
            socket.display()
        ))
    })?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut body = Vec::new();
    req.encode(&mut body)
        .map_err(|e| AgentError::Client(format!("cannot encode the request: {e}")))?;
    let len =
        u32::try_from(body.len()).map_err(|_| AgentError::Client("request too large".into()))?;
    s.write_all(&len.to_be_bytes()).map_err(io)?;
    s.write_all(&body).map_err(io)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).map_err(io)?;
    let len = u32::from_be_bytes(len);
    if len > MAX_MESSAGE_LEN {
        return Err(AgentError::Client(format!(
            "the agent sent a {len}-byte answer"
        )));
    }
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf).map_err(io)?;
    let mut reader = buf.as_slice();
    Response::decode(&mut reader)
        .map_err(|e| AgentError::Client(format!("cannot decode the agent's answer: {e}")))
}

/// Not available without Unix sockets.
#[cfg(not(unix))]
pub fn request(socket: &Path, _req: &Request, _timeout: Duration) -> Result<Response, AgentError> {
    Err(AgentError::Client(format!(
        "cannot reach the agent at {}: named-pipe clients are not built yet",
        socket.display()
    )))
}

/// Ask the agent to wipe every key (what `auths agent lock` does).
pub fn wipe(socket: &Path) -> Result<(), AgentError> {
    let ext = Extension {
        name: WIPE_EXTENSION.to_owned(),
        details: Vec::new().into(),
    };
    match request(socket, &Request::Extension(ext), Duration::from_secs(10))? {
        Response::Success => Ok(()),
        _ => Err(AgentError::Client("the agent refused to lock".into())),
    }
}
