//! A small blocking ssh-agent client for the CLI (`auths agent add|lock|status`) and tests:
//! one request, one response, over the agent's Unix socket or Windows named pipe
//! (draft-miller-ssh-agent "Protocol Messages").

use std::path::Path;
use std::time::Duration;

use ssh_agent_lib::proto::{Extension, Request, Response};

use super::session::WIPE_EXTENSION;
use super::AgentError;

/// Send one request and read its response: over the Unix socket, or on Windows the named
/// pipe (opened as a file; Windows offers no read timeout on it, so `timeout` applies on Unix
/// only).
pub fn request(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, AgentError> {
    let s = super::listener::connect(socket, Some(timeout)).map_err(|e| {
        AgentError::Client(format!(
            "no agent answers at {} ({e}); start one with `auths agent start`",
            socket.display()
        ))
    })?;
    exchange(s, req)
}

/// True when an agent accepts connections at `socket`.
pub fn is_listening(socket: &Path) -> bool {
    super::listener::connect(socket, Some(Duration::from_secs(1))).is_ok()
}

/// One request/response exchange on a connected stream (length-prefixed, capped answer).
fn exchange(
    mut s: impl std::io::Read + std::io::Write,
    req: &Request,
) -> Result<Response, AgentError> {
    use super::session::MAX_MESSAGE_LEN;
    use ssh_encoding::{Decode, Encode};
    let io = |e: std::io::Error| AgentError::Client(format!("talking to the agent failed: {e}"));
    let mut body = Vec::new();
    req.encode(&mut body)
        .map_err(|e| AgentError::Client(format!("cannot encode the request: {e}")))?;
    let len =
        u32::try_from(body.len()).map_err(|_| AgentError::Client("request too large".into()))?;
    s.write_all(&len.to_be_bytes()).map_err(io)?;
    s.write_all(&body).map_err(io)?;
    s.flush().map_err(io)?;
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

/// Open the watch stream of the agent at `socket` (see [`super::watch`]).
pub fn connect_watch(socket: &Path) -> std::io::Result<impl std::io::Read> {
    super::listener::connect(&super::watch::watch_path(socket), None)
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
