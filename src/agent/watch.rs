//! `auths agent watch`: a second socket beside the agent's (`agent.sock.watch`) that streams
//! pending approvals and their outcomes as JSON lines, for a terminal or a status-bar touch
//! detector. Same hardening as the agent socket (private directory, 0600, same uid only).

use std::future::Future;
use std::path::{Path, PathBuf};

use super::AgentError;
use crate::presence::prompt::Prompter;

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
    use super::listener::Listener;
    use tokio::io::AsyncWriteExt;
    use tokio::sync::broadcast;
    let mut listener = super::listener::bind(path)?;
    let me = super::listener::current_uid();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let Ok((mut stream, peer)) = accepted else {
            continue;
        };
        if peer.uid != me {
            continue; // dropped: other users see nothing
        }
        let mut rx = prompter.subscribe();
        tokio::spawn(async move {
            loop {
                let event = match rx.recv().await {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let mut line = serde_json::to_vec(&event).unwrap_or_default();
                line.push(b'\n');
                if stream.write_all(&line).await.is_err() {
                    return;
                }
            }
        });
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}
