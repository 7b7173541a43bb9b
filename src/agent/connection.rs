//! Frame I/O on one agent connection, and the hang-up watch while a signature waits for the
//! gate. What the bytes mean is [`super::codec`]'s business.
//!
//! Reading (draft-miller-ssh-agent "Protocol Messages"): the agent waits without limit for the
//! first byte of a message (an idle client is fine), then the rest of it must arrive within
//! the read timeout (a slow-loris client is dropped). A length over
//! [`MAX_MESSAGE_LEN`](super::codec::MAX_MESSAGE_LEN) is reported as [`Frame::TooLarge`]
//! before any body is read. Writes are bounded by the same timeout.
//!
//! While a signature waits for the gate, [`Connection::watch_hang_up`] reads the socket: a
//! hang-up drops the approval future (the gate cancels the touch) and nothing is signed.
//! Bytes a client pipelines meanwhile are kept (zeroized, at most [`PREFETCH_LIMIT`]) and
//! served before the socket on the next read.

use std::future::Future;
use std::time::Duration;

use ssh_agent_lib::proto::Response;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use zeroize::Zeroizing;

use super::codec::{encode_response, frame_len, TooLarge};

/// Bytes read ahead while a signature waits for the gate, at most.
const PREFETCH_LIMIT: usize = 64 * 1024;
const CHUNK: usize = 4096;

/// One frame read from a connection.
pub(crate) enum Frame {
    /// A message body, zeroized on drop (it may hold a private key or a passphrase).
    Message(Zeroizing<Vec<u8>>),
    /// The header announced more than the cap; the body was not read.
    TooLarge(TooLarge),
}

/// How waiting under the hang-up watch ended.
pub(crate) enum Watched<T> {
    /// The awaited future finished.
    Done(T),
    /// The client hung up (or its socket failed); the future was dropped.
    HungUp,
    /// The agent is shutting down; the future was dropped.
    Shutdown,
}

/// One client connection: the stream, the bytes read ahead, and the read/write timeout.
pub(crate) struct Connection<S> {
    stream: S,
    /// Bytes read while watching for a hang-up during a gate wait; consumed before the socket.
    prefetch: Zeroizing<Vec<u8>>,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    /// Wrap `stream`; a started message must be finished, and a response written, in `timeout`.
    pub(crate) fn new(stream: S, timeout: Duration) -> Self {
        Connection {
            stream,
            prefetch: Zeroizing::new(Vec::new()),
            timeout,
        }
    }

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
    /// timeout. A stalled client gets an error of kind [`std::io::ErrorKind::TimedOut`].
    /// `None` when the client closed the connection between messages.
    #[cfg(test)]
    pub(crate) async fn read_frame(&mut self) -> std::io::Result<Option<Frame>> {
        match self.read_start().await? {
            None => Ok(None),
            Some(first) => self.read_rest(first).await.map(Some),
        }
    }

    /// Wait (without limit) for the first byte of a message; `None` when the client closed the
    /// connection between messages. Cancel-safe: no byte is lost when the wait is dropped.
    pub(crate) async fn read_start(&mut self) -> std::io::Result<Option<u8>> {
        let mut first = [0u8; 1];
        match self.read_some(&mut first).await? {
            0 => Ok(None),
            _ => Ok(Some(first[0])),
        }
    }

    /// Read the rest of the message that began with `first` within the timeout. A stalled
    /// client gets an error of kind [`std::io::ErrorKind::TimedOut`].
    pub(crate) async fn read_rest(&mut self, first: u8) -> std::io::Result<Frame> {
        let mut header = [first, 0, 0, 0];
        let timeout = self.timeout;
        let rest = async {
            self.read_exact(&mut header[1..]).await?;
            let len = match frame_len(header) {
                Ok(len) => len,
                Err(too_large) => return Ok(Frame::TooLarge(too_large)),
            };
            let mut body = Zeroizing::new(vec![0u8; len]);
            self.read_exact(&mut body).await?;
            Ok(Frame::Message(body))
        };
        tokio::time::timeout(timeout, rest)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }

    /// Frame and write `response` within the timeout.
    pub(crate) async fn write_response(&mut self, response: &Response) -> std::io::Result<()> {
        let bytes = encode_response(response).map_err(std::io::Error::other)?;
        tokio::time::timeout(self.timeout, async {
            self.stream.write_all(&bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }

    /// Await `fut` (the gate's approval) while watching the socket: when the client hangs up
    /// or the agent shuts down, `fut` is dropped, which cancels a pending touch. Bytes the
    /// client sends meanwhile are kept for the next [`Connection::read_start`].
    pub(crate) async fn watch_hang_up<F: Future>(
        &mut self,
        fut: F,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Watched<F::Output> {
        tokio::pin!(fut);
        let mut chunk = Zeroizing::new([0u8; CHUNK]);
        loop {
            let can_read = self.prefetch.len() < PREFETCH_LIMIT;
            tokio::select! {
                r = &mut fut => return Watched::Done(r),
                n = self.stream.read(&mut chunk[..]), if can_read => match n {
                    Ok(0) | Err(_) => return Watched::HungUp,
                    Ok(n) => {
                        if self.prefetch.capacity() == 0 {
                            // Reserve once so the buffer never reallocates (and never leaves
                            // unzeroized copies of what a client sent).
                            self.prefetch.reserve_exact(PREFETCH_LIMIT + CHUNK);
                        }
                        self.prefetch.extend_from_slice(&chunk[..n]);
                    }
                },
                _ = shutdown.changed() => return Watched::Shutdown,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::codec::MAX_MESSAGE_LEN;

    const T: Duration = Duration::from_secs(5);

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn frames_are_read_and_eof_between_messages_is_a_close() {
        rt().block_on(async {
            let (a, mut b) = tokio::io::duplex(64);
            let mut conn = Connection::new(a, T);
            b.write_all(&[0, 0, 0, 1, 11]).await.unwrap();
            drop(b);
            assert!(matches!(conn.read_frame().await, Ok(Some(Frame::Message(m))) if *m == [11]));
            assert!(matches!(conn.read_frame().await, Ok(None)));
        });
    }

    #[test]
    fn oversized_header_is_reported_before_the_body() {
        rt().block_on(async {
            let (a, mut b) = tokio::io::duplex(64);
            let mut conn = Connection::new(a, T);
            b.write_all(&(MAX_MESSAGE_LEN + 1).to_be_bytes())
                .await
                .unwrap();
            assert!(matches!(
                conn.read_frame().await,
                Ok(Some(Frame::TooLarge(TooLarge(n)))) if n == MAX_MESSAGE_LEN + 1
            ));
        });
    }

    #[test]
    fn a_started_message_must_finish_within_the_timeout() {
        // A short read timeout: the half-sent header never completes, so the timeout is what
        // ends the read.
        rt().block_on(async {
            let (a, mut b) = tokio::io::duplex(64);
            let mut conn = Connection::new(a, Duration::from_millis(50));
            b.write_all(&[0, 0]).await.unwrap();
            let err = conn.read_frame().await.err().unwrap();
            assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
            drop(b);
        });
    }

    #[test]
    fn hang_up_drops_the_awaited_future_and_pipelined_bytes_are_kept() {
        rt().block_on(async {
            let (_tx, mut shutdown) = watch::channel(false);
            let (a, mut b) = tokio::io::duplex(64);
            let mut conn = Connection::new(a, T);
            // The client pipelines a second message, then the approval finishes.
            b.write_all(&[0, 0, 0, 1, 11]).await.unwrap();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            let fut = async move {
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
                let _ = done_rx.await;
                7
            };
            done_tx.send(()).unwrap();
            assert!(matches!(
                conn.watch_hang_up(fut, &mut shutdown).await,
                Watched::Done(7)
            ));
            assert!(matches!(conn.read_frame().await, Ok(Some(Frame::Message(m))) if *m == [11]));

            // Now the client hangs up while the future never finishes.
            drop(b);
            let pending = std::future::pending::<()>();
            assert!(matches!(
                conn.watch_hang_up(pending, &mut shutdown).await,
                Watched::HungUp
            ));
        });
    }
}
