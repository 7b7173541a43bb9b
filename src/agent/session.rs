//! One agent connection: the uid check, then read a frame, dispatch it, write the answer,
//! until the connection ends (draft-miller-ssh-agent "Protocol Messages"). Frame I/O is
//! `connection`'s, the requests are [`super::handler`]'s.
//!
//! A length over [`MAX_MESSAGE_LEN`](super::codec::MAX_MESSAGE_LEN) gets `SSH_AGENT_FAILURE`
//! and the connection is closed; a client that stalls inside a message is dropped; a body
//! that does not decode gets `SSH_AGENT_FAILURE` and the connection stays open. Every
//! abnormal end is logged (see [`super::log`]).
//!
//! Each connection holds a slot in the server's registry: it is idle while it waits for the
//! first byte of a message and busy from then until its answer is written. Only an idle
//! connection can be evicted (closed to make room when the agent holds its cap of
//! connections).

use std::sync::Arc;

use ssh_agent_lib::proto::Response;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::connection::{Connection, Frame};
use super::handler::{Handler, Outcome};
use super::log::session_end_line;
use super::registry::Slot;
use super::server::AgentState;
use crate::presence::request::Requester;

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
    /// A message longer than [`MAX_MESSAGE_LEN`](super::codec::MAX_MESSAGE_LEN) was announced.
    Oversized,
    /// The client stalled in the middle of a message.
    Stalled,
    /// A read or write failed.
    IoError,
    /// The agent is shutting down.
    Shutdown,
    /// The connection was idle longest when the agent held its cap of connections and another
    /// one came: it was closed to make room.
    Evicted,
}

/// Serve one connection until it closes, and log how it ended when that was abnormal. `peer`
/// was read from the kernel at accept; `slot` is the connection's entry in the registry.
pub(crate) async fn serve_connection<S>(
    stream: S,
    peer: Requester,
    state: Arc<AgentState>,
    shutdown: watch::Receiver<bool>,
    slot: Slot,
) -> SessionEnd
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (end, cause) = serve(stream, &peer, &state, shutdown, &slot).await;
    drop(slot);
    if let Some(line) = session_end_line(
        end,
        &peer,
        cause.as_deref().map(|e| e as &dyn std::error::Error),
    ) {
        state.log().record(&line);
    }
    end
}

async fn serve<S>(
    stream: S,
    peer: &Requester,
    state: &Arc<AgentState>,
    mut shutdown: watch::Receiver<bool>,
    slot: &Slot,
) -> (SessionEnd, Option<Box<dyn std::error::Error + Send + Sync>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    if peer.uid != state.uid() {
        // Dropping the stream closes it; the other user learns nothing.
        return (SessionEnd::ForeignUid, None);
    }
    let mut conn = Connection::new(stream, state.read_timeout());
    let mut handler = Handler::new(state, peer);
    loop {
        // Idle: waiting (without limit) for the first byte of the next message.
        let first = tokio::select! {
            b = conn.read_start() => b,
            _ = shutdown.changed() => return (SessionEnd::Shutdown, None),
            _ = slot.evicted() => return (SessionEnd::Evicted, None),
        };
        let first = match first {
            Ok(Some(b)) => b,
            Ok(None) => return (SessionEnd::Closed, None),
            Err(e) => return (SessionEnd::IoError, Some(e.into())),
        };
        if !slot.busy() {
            // Evicted while the byte arrived: the message is not served.
            return (SessionEnd::Evicted, None);
        }
        let frame = tokio::select! {
            f = conn.read_rest(first) => f,
            _ = shutdown.changed() => return (SessionEnd::Shutdown, None),
        };
        let body = match frame {
            Ok(Frame::Message(body)) => body,
            Ok(Frame::TooLarge(too_large)) => {
                let _ = conn.write_response(&Response::Failure).await;
                return (SessionEnd::Oversized, Some(too_large.into()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return (SessionEnd::Stalled, None)
            }
            Err(e) => return (SessionEnd::IoError, Some(e.into())),
        };
        let response = match handler.dispatch(&body, &mut conn, &mut shutdown).await {
            Outcome::Reply(r) => r,
            Outcome::HungUp => return (SessionEnd::HungUpDuringApproval, None),
            Outcome::Shutdown => return (SessionEnd::Shutdown, None),
        };
        drop(body);
        // Idle from the moment the answer goes out: stamped before the write, so a client
        // that has read its answer is sure to be in the idle order already (the order then
        // follows what clients see; stamped after, a descheduled thread could stamp it late).
        slot.idle();
        if let Err(e) = conn.write_response(&response).await {
            return (SessionEnd::IoError, Some(e.into()));
        }
    }
}
