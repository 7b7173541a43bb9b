//! Desktop notifications: "Touch your security key" while the key blinks (or wants its PIN),
//! withdrawn the moment the request it belongs to is approved, refused, timed out or given up,
//! so stale ones never pile up.
//!
//! The notifier is one more subscriber of the [`Prompter`]'s events, on a task of its own: the
//! gate only sends into a broadcast channel and never waits for a notification server. Every
//! call to the server is bounded by [`CALL_BOUND`]; when no server answers, the failure is
//! logged once and the notifier carries on (a later call may find one). A notification can
//! never refuse or delay a signature.
//!
//! Each notification is keyed by its request id: the touch prompt of a request that first
//! wanted its PIN replaces the PIN one, and the request's outcome closes it. Text a peer
//! controls is escaped before it gets here (control characters, bidi overrides); markup
//! characters are neutralised here too ([`body_text`]), since notification servers may
//! interpret `<b>`, `<a href>` and `&entities;` in the body.
//!
//! Platforms: Linux speaks the freedesktop Notifications interface over the session bus
//! (`linux`, pure-Rust zbus); macOS posts through `osascript` (`macos`: cannot be withdrawn);
//! Windows shows a notification-area balloon, a toast on Windows 10 and 11 (`windows`).

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use super::prompt::{escape_control, PromptEvent, Prompter};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(windows)]
mod windows;

#[cfg(target_os = "linux")]
pub use linux::Dbus as Platform;
#[cfg(target_os = "macos")]
pub use macos::Osascript as Platform;
#[cfg(windows)]
pub use windows::Balloons as Platform;

/// Longest one call to the notification server may take before it is given up.
pub const CALL_BOUND: Duration = Duration::from_secs(3);
/// Body text longer than this many characters is cut (with "…").
pub const MAX_BODY_CHARS: usize = 600;
/// Notifications tracked at once; past it the oldest is withdrawn (only one request waits for
/// a touch at a time, so this is never reached in normal use).
pub const MAX_OPEN: usize = 16;
/// How long a quiet [`Notifier::notice`] stays up.
pub const NOTICE_EXPIRY: Duration = Duration::from_secs(8);

/// Why a notification could not be shown or withdrawn.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// No session bus / notification centre to talk to.
    #[error("no desktop notification service: {0}")]
    Unavailable(String),
    /// The service answered with an error.
    #[error("the notification service refused: {0}")]
    Refused(String),
    /// The service did not answer in time.
    #[error("the notification service did not answer within {0:?}")]
    Timeout(Duration),
    /// This platform has no notifications (yet).
    #[error("desktop notifications are not available on this platform")]
    Unsupported,
}

/// How urgent a notification is (freedesktop urgency levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// A notice.
    Normal,
    /// The key is waiting for the user.
    Critical,
}

/// One notification. `summary` is our own fixed text; `body` has been through [`clean`]
/// (no control characters, bounded), and the backend makes it markup-safe with [`body_text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The title line.
    pub summary: String,
    /// Who asks and what.
    pub body: String,
    /// How urgent.
    pub urgency: Urgency,
    /// When the server should drop it by itself (a bound in case the agent dies first).
    pub expire: Duration,
}

/// A notification service: the session's notification server, or a test double of it.
pub trait Backend: Send + 'static {
    /// Show `n`, replacing the one `replaces` names; returns the server's id for it.
    fn show(
        &mut self,
        replaces: Option<u32>,
        n: &Notification,
    ) -> impl Future<Output = Result<u32, NotifyError>> + Send;
    /// Withdraw notification `id`.
    fn close(&mut self, id: u32) -> impl Future<Output = Result<(), NotifyError>> + Send;
}

/// What an event asks of the notifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Show (or update) the notification of request `key`.
    Show {
        /// Request id.
        key: String,
        /// What to show.
        notification: Notification,
    },
    /// Withdraw the notification of request `key`, if one is up.
    Close {
        /// Request id.
        key: String,
    },
    /// A short notice that expires by itself and is not tracked.
    Notice(Notification),
}

/// `text` safe for a notification: control characters escaped, cut at [`MAX_BODY_CHARS`].
/// Escaping is idempotent, so already-escaped event text passes unchanged.
pub fn clean(text: &str) -> String {
    let escaped = escape_control(text);
    if escaped.chars().count() <= MAX_BODY_CHARS {
        return escaped;
    }
    let mut cut: String = escaped.chars().take(MAX_BODY_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// `body` as it goes to a server: with `markup` (the server said it interprets body markup)
/// `&`, `<` and `>` become entities, so a peer's `<a href=…>` or `&#10;` shows as typed;
/// without, `<` and `>` become ‹ and ›, since servers that do not support markup are told to
/// strip tags, which would hide text between them.
pub fn body_text(body: &str, markup: bool) -> String {
    let mut out = String::with_capacity(body.len());
    for c in clean(body).chars() {
        match (c, markup) {
            ('&', true) => out.push_str("&amp;"),
            ('<', true) => out.push_str("&lt;"),
            ('>', true) => out.push_str("&gt;"),
            ('<', false) => out.push('\u{2039}'),
            ('>', false) => out.push('\u{203a}'),
            _ => out.push(c),
        }
    }
    out
}

/// Notifier settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long a waiting notification stays up at most if nothing withdraws it (the agent
    /// died): a little past the touch timeout.
    pub wait_expiry: Duration,
}

/// The notification an event calls for, if any.
pub fn action_for(event: &PromptEvent, opts: &Options) -> Option<Action> {
    let wait = |key: &str, summary: &str, body: String, urgency| Action::Show {
        key: key.to_owned(),
        notification: Notification {
            summary: summary.to_owned(),
            body: clean(&body),
            urgency,
            expire: opts.wait_expiry,
        },
    };
    match event {
        PromptEvent::Pending { id, message, .. } => Some(wait(
            id,
            "Touch your security key",
            sentence(
                message
                    .strip_prefix("Touch your security key to ")
                    .unwrap_or(message),
            ),
            Urgency::Critical,
        )),
        PromptEvent::PinNeeded { id, message } => Some(wait(
            id,
            "Enter your security key's PIN",
            sentence(message),
            Urgency::Critical,
        )),
        PromptEvent::KeyBusy { id, message } => Some(wait(
            id,
            "Security key busy",
            message.clone(),
            Urgency::Normal,
        )),
        PromptEvent::Approved { id }
        | PromptEvent::Denied { id, .. }
        | PromptEvent::Granted { id, .. } => Some(Action::Close { key: id.clone() }),
        PromptEvent::SocketReplaced { path } => Some(Action::Notice(Notification {
            summary: "auths agent wiped its keys".into(),
            body: clean(&format!(
                "Its socket {path} was moved aside or replaced. Run `auths agent status`."
            )),
            urgency: Urgency::Critical,
            expire: NOTICE_EXPIRY,
        })),
        // A caller rule refused without a blink: a quiet notice that expires by itself.
        PromptEvent::RuleDenied { reason, .. } => Some(Action::Notice(Notification {
            summary: "auths refused a request".into(),
            body: clean(&sentence(reason)),
            urgency: Urgency::Normal,
            expire: NOTICE_EXPIRY,
        })),
        PromptEvent::Requested { .. } | PromptEvent::Contention { .. } => None,
    }
}

/// "approve a git commit…" → "Approve a git commit….": a sentence for a notification body.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut s: String = chars
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default();
    s.push_str(chars.as_str());
    s
}

/// A running notifier: send it quiet notices; it stops when the agent's prompter is dropped.
#[derive(Debug, Clone)]
pub struct Notifier {
    notices: mpsc::Sender<Notification>,
}

impl Notifier {
    /// Subscribe to `prompter` now (no event after this call is missed) and show its waits
    /// through `backend` on a task of its own. Needs a tokio runtime.
    pub fn spawn<B: Backend>(prompter: &Prompter, backend: B, opts: Options) -> Notifier {
        let events = prompter.subscribe();
        let (notices, notice_rx) = mpsc::channel(8);
        tokio::spawn(run(events, notice_rx, backend, opts));
        Notifier { notices }
    }

    /// A short notice that does not wait for anything and expires by itself ("a request was
    /// refused by a rule"). Never blocks: dropped when the notifier is behind.
    pub fn notice(&self, summary: &str, body: &str) {
        let _ = self.notices.try_send(Notification {
            summary: clean(summary),
            body: clean(body),
            urgency: Urgency::Normal,
            expire: NOTICE_EXPIRY,
        });
    }
}

/// The notifier's state: which request has which notification up, and whether a failure was
/// logged already.
struct State<B> {
    backend: B,
    open: VecDeque<(String, u32)>,
    told: bool,
}

impl<B: Backend> State<B> {
    async fn apply(&mut self, action: Action) {
        match action {
            Action::Show { key, notification } => {
                let at = self.open.iter().position(|(k, _)| *k == key);
                let replaces = at.map(|i| self.open[i].1);
                let shown = bounded(self.backend.show(replaces, &notification)).await;
                match (self.result(shown), at) {
                    (Some(id), Some(i)) => self.open[i].1 = id,
                    (Some(id), None) => {
                        self.open.push_back((key, id));
                        if self.open.len() > MAX_OPEN {
                            if let Some((_, old)) = self.open.pop_front() {
                                self.close_id(old).await;
                            }
                        }
                    }
                    (None, _) => {}
                }
            }
            Action::Close { key } => {
                if let Some(i) = self.open.iter().position(|(k, _)| *k == key) {
                    if let Some((_, id)) = self.open.remove(i) {
                        self.close_id(id).await;
                    }
                }
            }
            Action::Notice(n) => {
                let shown = bounded(self.backend.show(None, &n)).await;
                self.result(shown);
            }
        }
    }

    async fn close_id(&mut self, id: u32) {
        let closed = bounded(self.backend.close(id)).await;
        self.result(closed);
    }

    /// Withdraw everything (events were missed, or the agent stops).
    async fn close_all(&mut self) {
        while let Some((_, id)) = self.open.pop_front() {
            self.close_id(id).await;
        }
    }

    fn result<T>(&mut self, r: Result<T, NotifyError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                if !self.told {
                    self.told = true;
                    eprintln!(
                        "desktop notifications: {} (signing goes on; this is said once; \
                         `auths agent watch` shows the same events)",
                        escape_control(&e.to_string())
                    );
                }
                None
            }
        }
    }
}

async fn bounded<T>(call: impl Future<Output = Result<T, NotifyError>>) -> Result<T, NotifyError> {
    tokio::time::timeout(CALL_BOUND, call)
        .await
        .unwrap_or(Err(NotifyError::Timeout(CALL_BOUND)))
}

async fn run<B: Backend>(
    mut events: broadcast::Receiver<PromptEvent>,
    mut notices: mpsc::Receiver<Notification>,
    backend: B,
    opts: Options,
) {
    let mut state = State {
        backend,
        open: VecDeque::new(),
        told: false,
    };
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    if let Some(action) = action_for(&event, &opts) {
                        state.apply(action).await;
                    }
                }
                // Missed events may have been the outcomes of what is up: withdraw it all
                // rather than leave stale prompts.
                Err(broadcast::error::RecvError::Lagged(_)) => state.close_all().await,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            Some(n) = notices.recv() => state.apply(Action::Notice(n)).await,
        }
    }
    state.close_all().await;
}

/// Whether a desktop session is there to notify (the `--notify` default): Linux, a session
/// bus (`DBUS_SESSION_BUS_ADDRESS`, or `$XDG_RUNTIME_DIR/bus`); macOS and Windows, yes (the
/// agent runs in the user's session).
pub fn desktop_session_found() -> bool {
    if cfg!(any(target_os = "macos", windows)) {
        return true;
    }
    if !cfg!(target_os = "linux") {
        return false;
    }
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|a| !a.is_empty()) {
        return true;
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(|d| std::path::Path::new(&d).join("bus"))
        .is_some_and(|bus| bus.exists())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::request::Requester;

    const OPTS: Options = Options {
        wait_expiry: Duration::from_secs(40),
    };

    fn pending(id: &str, message: &str) -> PromptEvent {
        PromptEvent::Pending {
            id: id.into(),
            message: message.into(),
            peer: Requester::process(1, 2, "/usr/bin/ssh-keygen"),
            key: "SHA256:k".into(),
            namespace: Some("git".into()),
        }
    }

    /// A notification server in memory: records what it was asked, answers like the
    /// specification says (a replaced notification keeps its id), or fails every call.
    #[derive(Default)]
    struct Recording {
        calls: Vec<String>,
        next: u32,
        failing: bool,
    }

    impl Backend for &'static std::sync::Mutex<Recording> {
        async fn show(
            &mut self,
            replaces: Option<u32>,
            n: &Notification,
        ) -> Result<u32, NotifyError> {
            let mut r = self.lock().unwrap();
            r.calls.push(format!("show {replaces:?} {}", n.summary));
            if r.failing {
                return Err(NotifyError::Refused("ServiceUnknown".into()));
            }
            Ok(replaces.unwrap_or_else(|| {
                r.next += 1;
                r.next
            }))
        }

        async fn close(&mut self, id: u32) -> Result<(), NotifyError> {
            let mut r = self.lock().unwrap();
            r.calls.push(format!("close {id}"));
            if r.failing {
                return Err(NotifyError::Refused("ServiceUnknown".into()));
            }
            Ok(())
        }
    }

    fn state(failing: bool) -> State<&'static std::sync::Mutex<Recording>> {
        State {
            backend: Box::leak(Box::new(std::sync::Mutex::new(Recording {
                failing,
                ..Recording::default()
            }))),
            open: VecDeque::new(),
            told: false,
        }
    }

    #[tokio::test]
    async fn a_request_keeps_one_notification_from_its_pin_to_its_outcome() {
        let mut s = state(false);
        let events = [
            PromptEvent::PinNeeded {
                id: "r1".into(),
                message: "Enter the PIN".into(),
            },
            pending("r1", "Touch your security key to approve x"),
            // Another request's outcome leaves r1's notification up.
            PromptEvent::Approved { id: "r0".into() },
            PromptEvent::Denied {
                id: "r1".into(),
                reason: "timed out".into(),
            },
            // Decided already: nothing more to withdraw.
            PromptEvent::Approved { id: "r1".into() },
            pending("r2", "Touch your security key to approve y"),
        ];
        for e in &events {
            if let Some(a) = action_for(e, &OPTS) {
                s.apply(a).await;
            }
        }
        s.close_all().await;
        assert_eq!(
            s.backend.lock().unwrap().calls,
            [
                "show None Enter your security key's PIN",
                "show Some(1) Touch your security key",
                "close 1",
                "show None Touch your security key",
                // The agent stops: what is still up goes.
                "close 2",
            ]
        );
        assert!(s.open.is_empty() && !s.told);
    }

    #[tokio::test]
    async fn a_failing_server_is_told_once_and_tracked_nothing() {
        let mut s = state(true);
        for id in ["r1", "r2"] {
            s.apply(action_for(&pending(id, "Touch"), &OPTS).unwrap())
                .await;
        }
        assert!(s.told && s.open.is_empty());
        assert_eq!(s.backend.lock().unwrap().calls.len(), 2);
    }

    #[tokio::test]
    async fn past_the_bound_the_oldest_notification_is_withdrawn() {
        let mut s = state(false);
        for i in 0..=MAX_OPEN {
            let a = action_for(&pending(&format!("r{i}"), "Touch"), &OPTS).unwrap();
            s.apply(a).await;
        }
        assert_eq!(s.open.len(), MAX_OPEN);
        assert_eq!(s.backend.lock().unwrap().calls.last().unwrap(), "close 1");
    }

    #[test]
    fn markup_and_control_characters_are_neutralised() {
        let body = "a<b>&c\x1b[2J\u{202e}x";
        assert_eq!(
            body_text(body, true),
            "a&lt;b&gt;&amp;c\\u{1b}[2J\\u{202e}x"
        );
        assert_eq!(
            body_text(body, false),
            "a\u{2039}b\u{203a}&c\\u{1b}[2J\\u{202e}x"
        );
        let long = "x".repeat(5000);
        assert_eq!(body_text(&long, true).chars().count(), MAX_BODY_CHARS);
    }

    #[test]
    fn a_caller_rule_denial_is_a_quiet_notice_that_expires_by_itself() {
        let event = PromptEvent::RuleDenied {
            id: "r9".into(),
            rule: Some("rule 2 (deny-all)".into()),
            reason: "refused by rule 2 (deny-all): /usr/bin/python3 (pid 4) is not allowed".into(),
            peer: crate::presence::request::Requester::process(1000, 4, "/usr/bin/python3"),
            key: "SHA256:k".into(),
            kind: crate::presence::request::PayloadKind::Sshsig,
            namespace: Some("git".into()),
        };
        let Some(Action::Notice(n)) = action_for(&event, &OPTS) else {
            panic!("a rule denial is a notice, not a wait")
        };
        assert_eq!(n.urgency, Urgency::Normal);
        assert_eq!(n.expire, NOTICE_EXPIRY);
        assert!(
            n.body.starts_with("Refused by rule 2 (deny-all)"),
            "{}",
            n.body
        );
    }

    #[test]
    fn waits_show_and_outcomes_close_under_the_request_id() {
        let Some(Action::Show { key, notification }) = action_for(
            &pending(
                "r1",
                "Touch your security key to approve a git commit or tag signature for ssh-keygen",
            ),
            &OPTS,
        ) else {
            panic!("a touch wait shows a notification")
        };
        assert_eq!(key, "r1");
        assert_eq!(notification.summary, "Touch your security key");
        assert_eq!(
            notification.body,
            "Approve a git commit or tag signature for ssh-keygen"
        );
        assert_eq!(notification.urgency, Urgency::Critical);
        assert_eq!(notification.expire, OPTS.wait_expiry);
        let pin = PromptEvent::PinNeeded {
            id: "r2".into(),
            message: "Enter the PIN of k to approve x\x07".into(),
        };
        assert!(matches!(
            action_for(&pin, &OPTS),
            Some(Action::Show { key, notification })
                if key == "r2" && notification.body == "Enter the PIN of k to approve x\\u{7}"
        ));
        for outcome in [
            PromptEvent::Approved { id: "r1".into() },
            PromptEvent::Denied {
                id: "r1".into(),
                reason: "timed out".into(),
            },
        ] {
            assert_eq!(
                action_for(&outcome, &OPTS),
                Some(Action::Close { key: "r1".into() })
            );
        }
        assert_eq!(
            action_for(
                &PromptEvent::Contention {
                    first: "a".into(),
                    second: "b".into()
                },
                &OPTS
            ),
            None
        );
    }
}
