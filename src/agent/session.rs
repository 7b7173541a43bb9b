//! One agent connection: the uid check, framing, and request dispatch (draft-miller-ssh-agent,
//! "Protocol Messages"; section titles are cited because the numbering moves between drafts).
//!
//! Framing ("Protocol Messages": `uint32 length || byte type || contents`). ssh-agent-lib's
//! codec accepts any length, so framing is ours: a length over [`MAX_MESSAGE_LEN`] (OpenSSH's
//! 256 KiB) gets `SSH_AGENT_FAILURE` and the connection is closed; once the first byte of a
//! message has arrived, the rest must arrive within the read timeout (slow-loris clients are
//! dropped); a body that does not decode gets `SSH_AGENT_FAILURE` and the connection stays open.
//!
//! Requests: "Requesting a list of keys" (`REQUEST_IDENTITIES`), "Private key operations"
//! (`SIGN_REQUEST`: the gate approves first), "Adding keys to the agent" (`ADD_IDENTITY`,
//! `ADD_ID_CONSTRAINED`: the lifetime constraint is honoured, the confirm constraint is implied
//! by the gate), "Removing keys from the agent" (`REMOVE_IDENTITY`, `REMOVE_ALL_IDENTITIES`),
//! "Locking and unlocking an agent" (`LOCK`, `UNLOCK`), "Extension mechanism" (`EXTENSION`;
//! the `query` extension, draft-14 §3.8.1). Anything else gets `SSH_AGENT_FAILURE`.
//!
//! The key store's mutex is never held across the gate's await, so requests that need no touch
//! are never queued behind a pending one. While a signature waits for the gate, the socket is
//! watched: when the client hangs up, the approval future is dropped (the gate cancels the
//! touch) and nothing is signed.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use ssh_agent_lib::proto::extension::QueryResponse;
use ssh_agent_lib::proto::{
    Extension, Identity, KeyConstraint, PrivateCredential, PublicCredential, Request, Response,
};
use ssh_encoding::{Decode, Encode, Reader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use zeroize::Zeroizing;

use super::server::AgentState;
use crate::presence::request::ApprovalRequest;
use crate::presence::request::Requester;

/// Largest message body accepted (OpenSSH's `AGENT_MAX_LEN`, 256 KiB).
pub const MAX_MESSAGE_LEN: u32 = 256 * 1024;

/// Extension that wipes every key, plaintext and sealed (`auths agent lock`).
pub const WIPE_EXTENSION: &str = "wipe@auths-presence";

/// Message extensions this agent supports, answered to `query`.
pub const SUPPORTED_EXTENSIONS: &[&str] = &["query", WIPE_EXTENSION];

/// Added to the answer to a wrong unlock passphrase, per consecutive failure (at most 10 s).
const UNLOCK_FAILURE_DELAY: Duration = Duration::from_millis(100);

/// Bytes read ahead while a signature waits for the gate, at most.
const PREFETCH_LIMIT: usize = 64 * 1024;
const CHUNK: usize = 4096;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd {
    /// The peer runs as another user: closed without an answer.
    ForeignUid,
    /// The client closed the connection.
    Closed,
    /// The client hung up while its signature waited for the gate; nothing was signed.
    HungUpDuringApproval,
    /// A message longer than [`MAX_MESSAGE_LEN`] was announced.
    Oversized,
    /// The client stalled in the middle of a message.
    Stalled,
    /// A read or write failed.
    IoError,
    /// The agent is shutting down.
    Shutdown,
}

enum Frame {
    Message(Zeroizing<Vec<u8>>),
    Eof,
    TooLarge,
}

enum Outcome {
    Reply(Response),
    HungUp,
    Shutdown,
}

/// Serve one connection until it closes. `peer` was read from the kernel at accept.
pub async fn serve_connection<S>(
    stream: S,
    peer: Requester,
    state: Arc<AgentState>,
    mut shutdown: watch::Receiver<bool>,
) -> SessionEnd
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    if peer.uid != state.uid() {
        // Dropping the stream closes it; the other user learns nothing.
        return SessionEnd::ForeignUid;
    }
    let mut conn = Connection {
        stream,
        prefetch: Zeroizing::new(Vec::new()),
        timeout: state.read_timeout(),
    };
    loop {
        let frame = tokio::select! {
            f = conn.read_frame() => f,
            _ = shutdown.changed() => return SessionEnd::Shutdown,
        };
        let body = match frame {
            Ok(Frame::Message(body)) => body,
            Ok(Frame::Eof) => return SessionEnd::Closed,
            Ok(Frame::TooLarge) => {
                let _ = conn.write_response(&Response::Failure).await;
                return SessionEnd::Oversized;
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return SessionEnd::Stalled,
            Err(_) => return SessionEnd::IoError,
        };
        let response = match conn.dispatch(&body, &peer, &state, &mut shutdown).await {
            Outcome::Reply(r) => r,
            Outcome::HungUp => return SessionEnd::HungUpDuringApproval,
            Outcome::Shutdown => return SessionEnd::Shutdown,
        };
        drop(body);
        if conn.write_response(&response).await.is_err() {
            return SessionEnd::IoError;
        }
    }
}

struct Connection<S> {
    stream: S,
    /// Bytes read while watching for a hang-up during a gate wait; consumed before the socket.
    prefetch: Zeroizing<Vec<u8>>,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    async fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.prefetch.is_empty() {
            let n = buf.len().min(self.prefetch.len());
            buf[..n].copy_from_slice(&self.prefetch[..n]);
            self.prefetch.drain(..n);
            return Ok(n);
        }
        self.stream.read(buf).await
    }

    async fn read_exact(&mut self, mut buf: &mut [u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_some(buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// Wait (without limit) for the first byte of a message, then read the rest within the
    /// read timeout.
    async fn read_frame(&mut self) -> std::io::Result<Frame> {
        let mut header = [0u8; 4];
        if self.read_some(&mut header[..1]).await? == 0 {
            return Ok(Frame::Eof);
        }
        let timeout = self.timeout;
        let rest = async {
            self.read_exact(&mut header[1..]).await?;
            let len = u32::from_be_bytes(header);
            if len > MAX_MESSAGE_LEN {
                return Ok(Frame::TooLarge);
            }
            let mut body = Zeroizing::new(vec![0u8; len as usize]);
            self.read_exact(&mut body).await?;
            Ok(Frame::Message(body))
        };
        tokio::time::timeout(timeout, rest)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }

    async fn write_response(&mut self, response: &Response) -> std::io::Result<()> {
        let bytes = encode_response(response).map_err(std::io::Error::other)?;
        tokio::time::timeout(self.timeout, async {
            self.stream.write_all(&bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }

    async fn dispatch(
        &mut self,
        body: &[u8],
        peer: &Requester,
        state: &Arc<AgentState>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let Some(request) = decode_request(body) else {
            return Outcome::Reply(Response::Failure);
        };
        let now = state.now();
        let ok = |r: Result<(), super::AgentError>| {
            Outcome::Reply(match r {
                Ok(()) => Response::Success,
                Err(_) => Response::Failure,
            })
        };
        match request {
            Request::RequestIdentities => {
                let ids = state
                    .keys()
                    .identities(now)
                    .into_iter()
                    .map(|id| Identity {
                        credential: PublicCredential::Key(id.key_data),
                        comment: id.comment,
                    })
                    .collect();
                Outcome::Reply(Response::IdentitiesAnswer(ids))
            }
            Request::SignRequest(req) => self.sign(req, peer, state, shutdown).await,
            Request::AddIdentity(add) => ok(add_identity(state, add.credential, Vec::new())),
            Request::AddIdConstrained(add) => ok(add_identity(
                state,
                add.identity.credential,
                add.constraints,
            )),
            Request::RemoveIdentity(rm) => match rm.credential {
                PublicCredential::Key(key) => ok(state.keys().remove(&key, now)),
                PublicCredential::Cert(_) => Outcome::Reply(Response::Failure),
            },
            Request::RemoveAllIdentities => {
                let r = state.keys().remove_all(now);
                state.gate().keys_wiped();
                ok(r)
            }
            Request::Lock(pass) => {
                let pass = Zeroizing::new(pass);
                let st = Arc::clone(state);
                // Argon2id takes a while: keep it off the async workers.
                let r = tokio::task::spawn_blocking(move || st.keys().lock(&pass, now)).await;
                Outcome::Reply(match r {
                    Ok(Ok(())) => {
                        state.gate().keys_wiped();
                        Response::Success
                    }
                    _ => Response::Failure,
                })
            }
            Request::Unlock(pass) => {
                let pass = Zeroizing::new(pass);
                // One unlock attempt at a time, agent-wide, and each wrong passphrase delays the
                // next answer a little more (as OpenSSH does): guessing stays slow even over
                // many connections. Other requests do not wait for this.
                let mut failures = state.unlock_failures().lock().await;
                let st = Arc::clone(state);
                let r = tokio::task::spawn_blocking(move || st.keys().unlock(&pass, now)).await;
                match r {
                    Ok(Ok(())) => {
                        *failures = 0;
                        Outcome::Reply(Response::Success)
                    }
                    Ok(Err(super::AgentError::BadPassphrase)) => {
                        *failures = failures.saturating_add(1);
                        let delay = UNLOCK_FAILURE_DELAY * (*failures).min(100);
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = shutdown.changed() => return Outcome::Shutdown,
                        }
                        Outcome::Reply(Response::Failure)
                    }
                    _ => Outcome::Reply(Response::Failure),
                }
            }
            Request::Extension(ext) => Outcome::Reply(extension(state, &ext)),
            _ => Outcome::Reply(Response::Failure),
        }
    }

    async fn sign(
        &mut self,
        req: ssh_agent_lib::proto::SignRequest,
        peer: &Requester,
        state: &Arc<AgentState>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Outcome {
        // We hold plain keys only; a certificate names a key we may hold, but we do not store
        // certificates, so asking by certificate fails like an unknown key.
        let PublicCredential::Key(key) = req.credential else {
            return Outcome::Reply(Response::Failure);
        };
        let fingerprint = match state.keys().lookup(&key, state.now()) {
            Ok(fp) => fp,
            Err(_) => return Outcome::Reply(Response::Failure),
        };
        let request = ApprovalRequest {
            key_fingerprint: fingerprint,
            data_digest: Sha256::digest(&req.data).into(),
            namespace: sshsig_namespace(&req.data),
            requester: peer.clone(),
        };
        let approval = {
            let mut approve = state.gate().approve(request);
            let mut chunk = Zeroizing::new([0u8; CHUNK]);
            loop {
                let can_read = self.prefetch.len() < PREFETCH_LIMIT;
                tokio::select! {
                    r = &mut approve => break r,
                    n = self.stream.read(&mut chunk[..]), if can_read => match n {
                        // Hang-up: dropping `approve` cancels the touch; nothing is signed.
                        Ok(0) | Err(_) => return Outcome::HungUp,
                        Ok(n) => {
                            if self.prefetch.capacity() == 0 {
                                // Reserve once so the buffer never reallocates (and never
                                // leaves unzeroized copies of what a client sent).
                                self.prefetch.reserve_exact(PREFETCH_LIMIT + CHUNK);
                            }
                            self.prefetch.extend_from_slice(&chunk[..n]);
                        }
                    },
                    _ = shutdown.changed() => return Outcome::Shutdown,
                }
            }
        };
        let approval = match approval {
            Ok(a) => a,
            Err(_) => return Outcome::Reply(Response::Failure),
        };
        let signing = state.keys().sign(&key, &req.data, approval, state.now());
        match signing.result {
            // No receipt, no signature: it leaves the agent only once its receipt is durable.
            Ok(signature) => match signing.approval.signed() {
                Ok(()) => Outcome::Reply(Response::SignResponse(signature)),
                Err(_) => Outcome::Reply(Response::Failure),
            },
            Err(e) => {
                let _ = signing.approval.not_signed(&e.to_string());
                Outcome::Reply(Response::Failure)
            }
        }
    }
}

fn add_identity(
    state: &AgentState,
    credential: PrivateCredential,
    constraints: Vec<KeyConstraint>,
) -> Result<(), super::AgentError> {
    let PrivateCredential::Key { privkey, comment } = credential else {
        return Err(super::AgentError::Unsupported(
            "certificates cannot be added",
        ));
    };
    let mut lifetime = None;
    for c in constraints {
        match c {
            KeyConstraint::Lifetime(secs) => lifetime = Some(Duration::from_secs(secs.into())),
            // Every signature needs a touch: the gate is a stronger confirmation.
            KeyConstraint::Confirm => {}
            KeyConstraint::Extension(_) => {
                return Err(super::AgentError::Unsupported("key constraint extensions"))
            }
        }
    }
    state
        .keys()
        .add(privkey, comment, lifetime, state.now())
        .map(|_| ())
}

fn extension(state: &AgentState, ext: &Extension) -> Response {
    match ext.name.as_str() {
        "query" => {
            let list = QueryResponse {
                extensions: SUPPORTED_EXTENSIONS.iter().map(|s| s.to_string()).collect(),
            };
            match Extension::new_message(list) {
                Ok(e) => Response::ExtensionResponse(e),
                Err(_) => Response::Failure,
            }
        }
        WIPE_EXTENSION => {
            state.keys().wipe();
            state.gate().keys_wiped();
            Response::Success
        }
        // "Extension mechanism": an unsupported extension gets SSH_AGENT_FAILURE.
        _ => Response::Failure,
    }
}

/// Decode one message body; `None` when it is malformed, unknown, or has trailing bytes.
pub fn decode_request(body: &[u8]) -> Option<Request> {
    let mut reader = body;
    let request = Request::decode(&mut reader).ok()?;
    if !reader.is_finished() {
        return None;
    }
    Some(request)
}

/// Frame a response: `uint32 length || body`.
pub fn encode_response(response: &Response) -> Result<Vec<u8>, ssh_encoding::Error> {
    let len = response.encoded_len()?;
    let mut out = Vec::with_capacity(4 + len);
    u32::try_from(len)
        .map_err(|_| ssh_encoding::Error::Length)?
        .encode(&mut out)?;
    response.encode(&mut out)?;
    Ok(out)
}

/// The namespace of an SSHSIG signed-data blob (OpenSSH `PROTOCOL.sshsig`): the magic
/// `"SSHSIG"` (no length prefix) then `string namespace`. `None` for other data.
pub fn sshsig_namespace(data: &[u8]) -> Option<String> {
    let rest = data.strip_prefix(b"SSHSIG")?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    let ns = rest.get(..len)?;
    String::from_utf8(ns.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshsig_namespace_parses() {
        let mut blob = b"SSHSIG".to_vec();
        blob.extend_from_slice(&3u32.to_be_bytes());
        blob.extend_from_slice(b"git");
        blob.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(sshsig_namespace(&blob).as_deref(), Some("git"));
        assert_eq!(sshsig_namespace(b"SSHSIG\0\0\0\x09git"), None);
        assert_eq!(sshsig_namespace(b"SSHSI"), None);
        assert_eq!(sshsig_namespace(b"\0\0\0\x20session-id..."), None);
        assert_eq!(sshsig_namespace(b"SSHSIG\0\0\0\x01\xff"), None);
    }

    #[test]
    fn decode_refuses_garbage_and_trailing_bytes() {
        assert!(matches!(
            decode_request(&[11]),
            Some(Request::RequestIdentities)
        ));
        assert!(decode_request(&[11, 0]).is_none());
        assert!(decode_request(&[]).is_none());
        assert!(decode_request(&[200]).is_none());
        assert!(decode_request(&[13, 0, 0, 0, 50, 1]).is_none());
    }

    #[test]
    fn failure_frame() {
        assert_eq!(
            encode_response(&Response::Failure).unwrap(),
            vec![0, 0, 0, 1, 5]
        );
    }
}
