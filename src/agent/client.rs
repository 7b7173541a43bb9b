//! A small blocking ssh-agent client for the CLI (`auths agent add|lock|status`) and tests:
//! one request, one response, over the agent's Unix socket or Windows named pipe
//! (draft-miller-ssh-agent "Protocol Messages").

use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh_agent_lib::proto::{Extension, ProtoError, Request, Response};
use thiserror::Error;

use super::codec::{frame_len, TooLarge, WIPE_EXTENSION};
use super::status::{AgentStatus, STATUS_EXTENSION};
use super::AgentError;

/// Why a request to a running agent failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing accepted a connection at the socket.
    #[error("no agent answers at {}", socket.display())]
    Connect {
        /// The socket (or pipe) tried.
        socket: PathBuf,
        /// Why the connection failed.
        #[source]
        source: std::io::Error,
    },
    /// Writing the request or reading the answer failed.
    #[error("talking to the agent failed")]
    Io(#[source] std::io::Error),
    /// The request could not be encoded.
    #[error("cannot encode the request")]
    Encode(#[source] ssh_encoding::Error),
    /// The request is longer than a frame can say.
    #[error("the request is too large")]
    RequestTooLarge,
    /// The answer announced is longer than the protocol's cap.
    #[error("the agent's answer is too large")]
    AnswerTooLarge(#[source] TooLarge),
    /// The answer is not a response message.
    #[error("cannot decode the agent's answer")]
    Decode(#[source] ProtoError),
    /// The agent answered `SSH_AGENT_FAILURE`.
    #[error("the agent refused the request")]
    Refused,
    /// The agent answered with a message that does not answer this request.
    #[error("the agent sent an unexpected answer")]
    Unexpected,
}

/// Send one request and read its response: over the Unix socket, or on Windows the named
/// pipe (opened as a file; Windows offers no read timeout on it, so `timeout` applies on Unix
/// only).
pub fn request(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, AgentError> {
    let s =
        super::listener::connect(socket, Some(timeout)).map_err(|source| ClientError::Connect {
            socket: socket.to_path_buf(),
            source,
        })?;
    Ok(exchange(s, req)?)
}

/// True when an agent accepts connections at `socket`.
pub fn is_listening(socket: &Path) -> bool {
    super::listener::connect(socket, Some(Duration::from_secs(1))).is_ok()
}

/// One request/response exchange on a connected stream (length-prefixed, capped answer).
fn exchange(
    mut s: impl std::io::Read + std::io::Write,
    req: &Request,
) -> Result<Response, ClientError> {
    use ssh_encoding::{Decode, Encode};
    let mut body = Vec::new();
    req.encode(&mut body).map_err(ClientError::Encode)?;
    let len = u32::try_from(body.len()).map_err(|_| ClientError::RequestTooLarge)?;
    s.write_all(&len.to_be_bytes()).map_err(ClientError::Io)?;
    s.write_all(&body).map_err(ClientError::Io)?;
    s.flush().map_err(ClientError::Io)?;
    let mut header = [0u8; 4];
    s.read_exact(&mut header).map_err(ClientError::Io)?;
    let len = frame_len(header).map_err(ClientError::AnswerTooLarge)?;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).map_err(ClientError::Io)?;
    let mut reader = buf.as_slice();
    Response::decode(&mut reader).map_err(ClientError::Decode)
}

/// Open the watch stream of the agent at `socket` (see [`super::watch`]).
pub fn connect_watch(socket: &Path) -> std::io::Result<impl std::io::Read> {
    super::listener::connect(&super::watch::watch_path(socket), None)
}

/// Ask the agent about itself (what `auths agent status` shows besides the keys).
pub fn status(socket: &Path) -> Result<AgentStatus, AgentError> {
    let ext = Extension {
        name: STATUS_EXTENSION.to_owned(),
        details: Vec::new().into(),
    };
    match request(socket, &Request::Extension(ext), Duration::from_secs(5))? {
        Response::ExtensionResponse(e) => match e.parse_message::<AgentStatus>() {
            Ok(Some(status)) => Ok(status),
            _ => Err(ClientError::Unexpected.into()),
        },
        Response::Failure => Err(ClientError::Refused.into()),
        _ => Err(ClientError::Unexpected.into()),
    }
}

/// Ask the agent at `socket` to read and add the key file at `path` (absolute) itself
/// ([`super::add_file`]): no key byte crosses the socket. The agent may ask a passphrase
/// through its own program, so the wait is long.
pub fn add_file(
    socket: &Path,
    path: &Path,
    lifetime: u32,
) -> Result<super::add_file::AddFileAnswer, AgentError> {
    use super::add_file::{AddFile, AddFileAnswer};
    let path = path.to_str().ok_or(ClientError::Unexpected)?.to_owned();
    let ext = Extension::new_message(AddFile { path, lifetime }).map_err(AgentError::Encode)?;
    match request(socket, &Request::Extension(ext), Duration::from_secs(180))? {
        Response::ExtensionResponse(e) => match e.parse_message::<AddFileAnswer>() {
            Ok(Some(a)) => Ok(a),
            _ => Err(ClientError::Unexpected.into()),
        },
        Response::Failure => Err(ClientError::Refused.into()),
        _ => Err(ClientError::Unexpected.into()),
    }
}

/// Ask the agent at `socket` which refusals this process may read (its own, its children's
/// and its parent's; see [`super::refusals`]), newest first.
pub fn refusals(socket: &Path) -> Result<Vec<super::refusals::Refusal>, AgentError> {
    refusals_on(&mut connect(socket, Duration::from_secs(5))?)
}

/// A connection to the agent at `socket` kept for several requests ([`refusals_on`]): the
/// agent reads who connected (and that process's parent) when it accepts, not per request.
pub fn connect(
    socket: &Path,
    timeout: Duration,
) -> Result<impl std::io::Read + std::io::Write, AgentError> {
    Ok(
        super::listener::connect(socket, Some(timeout)).map_err(|source| ClientError::Connect {
            socket: socket.to_path_buf(),
            source,
        })?,
    )
}

/// [`refusals`] on a connection from [`connect`]. An agent that is not ours answers
/// `SSH_AGENT_FAILURE`: [`ClientError::Refused`].
pub fn refusals_on(
    stream: &mut (impl std::io::Read + std::io::Write),
) -> Result<Vec<super::refusals::Refusal>, AgentError> {
    use super::refusals::{RefusalAnswer, REFUSAL_EXTENSION};
    let ext = Extension {
        name: REFUSAL_EXTENSION.to_owned(),
        details: Vec::new().into(),
    };
    match exchange(stream, &Request::Extension(ext))? {
        Response::ExtensionResponse(e) => match e.parse_message::<RefusalAnswer>() {
            Ok(Some(answer)) => Ok(answer.refusals),
            _ => Err(ClientError::Unexpected.into()),
        },
        Response::Failure => Err(ClientError::Refused.into()),
        _ => Err(ClientError::Unexpected.into()),
    }
}

/// Ask the agent to wipe every key (what `auths agent lock` does).
pub fn wipe(socket: &Path) -> Result<(), AgentError> {
    let ext = Extension {
        name: WIPE_EXTENSION.to_owned(),
        details: Vec::new().into(),
    };
    match request(socket, &Request::Extension(ext), Duration::from_secs(10))? {
        Response::Success => Ok(()),
        Response::Failure => Err(ClientError::Refused.into()),
        _ => Err(ClientError::Unexpected.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream whose answer is fixed and whose written bytes are kept.
    struct Canned {
        answer: std::io::Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl std::io::Read for Canned {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.answer.read(buf)
        }
    }

    impl std::io::Write for Canned {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn canned(answer: &[u8]) -> Canned {
        Canned {
            answer: std::io::Cursor::new(answer.to_vec()),
            written: Vec::new(),
        }
    }

    #[test]
    fn exchange_frames_the_request_and_reads_the_answer() {
        let mut s = canned(&[0, 0, 0, 1, 6]);
        let r = exchange(&mut s, &Request::RequestIdentities).unwrap();
        assert!(matches!(r, Response::Success));
        assert_eq!(s.written, [0, 0, 0, 1, 11]);
    }

    #[test]
    fn oversized_or_short_answers_are_typed_errors() {
        let big = (crate::agent::codec::MAX_MESSAGE_LEN + 1).to_be_bytes();
        assert!(matches!(
            exchange(canned(&big), &Request::RequestIdentities),
            Err(ClientError::AnswerTooLarge(_))
        ));
        let e = exchange(canned(&[0, 0, 0, 5, 6]), &Request::RequestIdentities).unwrap_err();
        assert!(
            matches!(&e, ClientError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof)
        );
        assert!(matches!(
            exchange(canned(&[0, 0, 0, 1, 200]), &Request::RequestIdentities),
            Err(ClientError::Decode(_))
        ));
    }
}
