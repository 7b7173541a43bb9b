//! macOS: `osascript`'s `display notification`, which posts to the notification centre as
//! Script Editor. It cannot withdraw a notification (the centre keeps it until the user
//! dismisses it, or by the user's banner settings), so `close` does nothing; the text comes in
//! as arguments of the script, never inside its source, so no text can change the script.

use std::process::{Command, Stdio};

use super::{body_text, Backend, Notification, NotifyError};

/// Notifications through `/usr/bin/osascript`.
pub struct Osascript {
    next: u32,
}

impl Osascript {
    /// The same constructor as the other platforms.
    pub fn connect_now() -> Osascript {
        Osascript { next: 0 }
    }
}

impl Backend for Osascript {
    async fn show(&mut self, _: Option<u32>, n: &Notification) -> Result<u32, NotifyError> {
        let summary = super::clean(&n.summary);
        let body = body_text(&n.body, false);
        let run = tokio::task::spawn_blocking(move || {
            Command::new("/usr/bin/osascript")
                .args([
                    "-e",
                    "on run argv",
                    "-e",
                    "display notification (item 2 of argv) with title (item 1 of argv)",
                    "-e",
                    "end run",
                    &summary,
                    &body,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        });
        match run.await {
            Ok(Ok(status)) if status.success() => {
                self.next = self.next.wrapping_add(1);
                Ok(self.next)
            }
            Ok(Ok(status)) => Err(NotifyError::Refused(format!("osascript {status}"))),
            Ok(Err(e)) => Err(NotifyError::Unavailable(format!("osascript: {e}"))),
            Err(e) => Err(NotifyError::Unavailable(format!("osascript: {e}"))),
        }
    }

    async fn close(&mut self, _: u32) -> Result<(), NotifyError> {
        // The notification centre offers osascript no way to withdraw one.
        Ok(())
    }
}
