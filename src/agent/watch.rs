//! `auths agent watch`: a second socket beside the agent's (`agent.sock.watch`) that streams
//! pending approvals and their outcomes as JSON lines, for a terminal or a status-bar touch
//! detector. Same hardening as the agent socket (private directory, 0600, same uid only).
//!
//! A watcher first gets `{"event":"watching"}` (from then on it misses no event), then one line
//! per [`PromptEvent`]. At most [`MAX_WATCHERS`] are served at once; one more gets
//! `{"event":"refused","reason":…}` and is closed. Each watcher's task also reads its stream,
//! so a watcher that closes is gone at once, not at the next event; one that stops reading for
//! [`WRITE_TIMEOUT`] is dropped.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::task::JoinSet;

use super::listener::Listener;
use super::AgentError;
use crate::presence::prompt::{PromptEvent, Prompter};

/// Watchers served at once.
pub const MAX_WATCHERS: usize = 64;

/// A watcher that does not take a line within this time is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the watch socket says besides the events themselves.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Greeting {
    /// Subscribed: every event from now on follows.
    Watching,
    /// Too many watchers; this one is closed.
    Refused { reason: String },
}

/// The watch socket beside an agent socket.
pub fn watch_path(agent_socket: &Path) -> PathBuf {
    let mut p = agent_socket.as_os_str().to_owned();
    p.push(".watch");
    PathBuf::from(p)
}

/// Serve watchers until `shutdown` completes. On Windows the watch endpoint is the pipe
/// `<agent pipe>.watch`, with the agent pipe's protection; where the agent cannot listen
/// ([`super::listener::bind`] fails), neither can this.
pub async fn serve(
    path: &Path,
    prompter: Prompter,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let listener = super::listener::bind(path)?;
    run(listener, prompter, shutdown).await;
    let _ = std::fs::remove_file(path);
    Ok(())
}

/// Serve watchers from `listener` until `shutdown` completes; then every watcher is closed.
pub async fn run<L: Listener>(
    mut listener: L,
    prompter: Prompter,
    shutdown: impl Future<Output = ()>,
) {
    let me = super::listener::current_uid();
    let mut watchers = JoinSet::new();
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let (mut stream, peer) = match accepted {
            Ok(a) => a,
            Err(_) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(10);
        if peer.uid != me {
            continue; // dropped: other users see nothing
        }
        // Watchers that closed have ended their tasks already; count only the live ones.
        while watchers.try_join_next().is_some() {}
        if watchers.len() >= MAX_WATCHERS {
            let refused = Greeting::Refused {
                reason: format!(
                    "{MAX_WATCHERS} watchers are connected already; close one and try again"
                ),
            };
            // Answered from its own task, so a refused watcher that does not read cannot
            // hold up the accept loop.
            tokio::spawn(async move {
                let _ = write_line(&mut stream, &refused).await;
            });
            continue;
        }
        let rx = prompter.subscribe();
        watchers.spawn(watcher(stream, rx));
    }
    // Dropping the set aborts every watcher task, which closes its stream.
    drop(watchers);
}

/// One watcher: the greeting, then every event, until it closes, stops reading or the
/// prompter goes away.
async fn watcher<S>(mut stream: S, mut rx: broadcast::Receiver<PromptEvent>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    if write_line(&mut stream, &Greeting::Watching).await.is_err() {
        return;
    }
    let mut scratch = [0u8; 64];
    loop {
        let event = tokio::select! {
            e = rx.recv() => match e {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            // A watcher has nothing to say: what it sends is ignored, its EOF ends it.
            n = stream.read(&mut scratch) => match n {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
        };
        if write_line(&mut stream, &event).await.is_err() {
            return;
        }
    }
}

/// `value` as one JSON line, written within [`WRITE_TIMEOUT`].
async fn write_line<S: AsyncWrite + Unpin>(
    stream: &mut S,
    value: &impl Serialize,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&line))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}
