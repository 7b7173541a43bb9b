//! Where "touch your key" goes: the terminal when the agent runs in the foreground, and every
//! `auths agent watch` subscriber (a status-bar touch detector), as JSON events.
//!
//! Prompts name who asks and what, so a person can tell their own `git commit` from a
//! surprise: "Touch your security key to approve a git commit or tag signature (namespace git)
//! for ssh-keygen (pid 4242) ← git (pid 4240), key SHA256:…", and what else the one touch
//! opens under a batch or per-peer policy. Every string a peer controls is escaped first.

use serde::Serialize;
use tokio::sync::broadcast;

use super::challenge::GrantTerms;
use super::request::{ApprovalRequest, Identity, LoginDetails, PayloadKind, Requester};

/// One event for watchers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PromptEvent {
    /// The key is blinking and waits for a touch.
    Pending {
        /// Request id (the receipt id it will get).
        id: String,
        /// The human prompt.
        message: String,
        /// Who asks.
        peer: Requester,
        /// Identity key.
        key: String,
        /// SSHSIG namespace.
        namespace: Option<String>,
    },
    /// A verified touch approved the request.
    Approved {
        /// Request id.
        id: String,
    },
    /// An open grant covered the request; no touch was needed.
    Granted {
        /// Request id.
        id: String,
        /// The receipt whose touch opened the grant.
        grant_of: String,
        /// Signatures left in the grant.
        remaining: u32,
        /// Who asked.
        peer: Requester,
        /// SSHSIG namespace.
        namespace: Option<String>,
    },
    /// Two programs asked for a touch at once; both are refused.
    Contention {
        /// The one that asked first (its pending touch was cancelled).
        first: String,
        /// The one that asked second.
        second: String,
    },
    /// The request was refused.
    Denied {
        /// Request id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The agent's socket path no longer names its socket (moved aside, replaced or removed):
    /// the agent wiped every key.
    SocketReplaced {
        /// The socket path, control characters escaped.
        path: String,
    },
    /// A sign request reached the gate, before anything was decided (a grant, a contention, a
    /// touch): every request is seen, also one that waits its turn or is refused. Its `id` is
    /// the one its later events and its receipt carry. Peer text is escaped.
    Requested {
        /// Request id (the receipt id it will get).
        id: String,
        /// "ssh (pid 4242) asks to sign an ssh login as git to host key SHA256:…, key SHA256:…".
        message: String,
        /// Who asks, executable paths escaped.
        peer: Requester,
        /// Identity key.
        key: String,
        /// What kind of bytes.
        kind: PayloadKind,
        /// SSHSIG namespace, escaped.
        namespace: Option<String>,
        /// For an ssh login: the user (escaped) and the host key.
        login: Option<LoginDetails>,
        /// It came from another host through a forwarded agent.
        forwarded: bool,
    },
    /// A caller rule refused the request at once: the key was not asked for anything. Every
    /// string is escaped.
    RuleDenied {
        /// Request id (its denial receipt's id).
        id: String,
        /// The deny rule that matched ("rule 3 (deny-all)"); `None` when no rule matched.
        rule: Option<String>,
        /// "refused by rule 3 (deny-all): /usr/bin/python3 (pid 42) is not allowed to ask for
        /// an SSHSIG signature (namespace git) with key SHA256:…".
        reason: String,
        /// Who asked, executable paths escaped.
        peer: Requester,
        /// Identity key.
        key: String,
        /// What kind of bytes.
        kind: PayloadKind,
        /// SSHSIG namespace, escaped.
        namespace: Option<String>,
    },
    /// The key wants its PIN before it can blink for this request: the PIN dialog
    /// (`AUTHS_ASKPASS`, pinentry) is being asked. Its outcome follows as `approved` or
    /// `denied` under the same id (a `pending` comes first when the touch follows).
    PinNeeded {
        /// Request id.
        id: String,
        /// "Enter the PIN of … to approve … for …", peer text escaped.
        message: String,
    },
    /// The key answered that another program holds it: the gate waits its turn (until the
    /// touch timeout) before the key can blink for this request.
    KeyBusy {
        /// Request id.
        id: String,
        /// The human line, peer text escaped.
        message: String,
    },
}

/// Sends prompts to the terminal and to watchers.
#[derive(Debug, Clone)]
pub struct Prompter {
    tx: broadcast::Sender<PromptEvent>,
    terminal: bool,
}

impl Prompter {
    /// `terminal`: also print human prompts on stderr.
    pub fn new(terminal: bool) -> Prompter {
        let (tx, _) = broadcast::channel(64);
        Prompter { tx, terminal }
    }

    /// A new watcher.
    pub fn subscribe(&self) -> broadcast::Receiver<PromptEvent> {
        self.tx.subscribe()
    }

    /// Announce an event.
    pub fn emit(&self, event: PromptEvent) {
        if self.terminal {
            match &event {
                PromptEvent::Pending { message, .. } => eprintln!("{message}"),
                PromptEvent::Approved { .. } => eprintln!("Touch verified: signed."),
                PromptEvent::Granted {
                    remaining,
                    peer,
                    namespace,
                    ..
                } => eprintln!(
                    "Signed under an open grant for {}{} ({remaining} left).",
                    describe_peer(peer),
                    namespace
                        .as_deref()
                        .map(|ns| format!(", namespace {}", escape_control(ns)))
                        .unwrap_or_default()
                ),
                PromptEvent::Contention { first, second } => eprintln!(
                    "Two programs asked for a touch at once ({first}, {second}): both refused."
                ),
                PromptEvent::Denied { reason, .. } => eprintln!("Refused: {reason}"),
                PromptEvent::SocketReplaced { path } => eprintln!(
                    "The agent's socket {path} was moved aside or replaced: every key was wiped."
                ),
                // The touch prompt follows when one is needed; watchers see every request.
                PromptEvent::Requested { .. } => {}
                PromptEvent::KeyBusy { message, .. } => eprintln!("{message}"),
                PromptEvent::RuleDenied { reason, .. } => {
                    eprintln!("Refused without a touch: {reason}")
                }
                PromptEvent::PinNeeded { message, .. } => eprintln!("{message}"),
            }
        }
        // No watcher is fine.
        let _ = self.tx.send(event);
    }
}

/// `text` with control characters (C0, DEL, C1) and bidirectional overrides escaped as
/// `\u{..}` (or `\n`, `\t`…), so text a peer controls (an executable name, an SSHSIG
/// namespace, an extension name) cannot move the cursor, recolour, erase or reorder what a
/// terminal or a log shows.
pub fn escape_control(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// "a git commit or tag signature (namespace git)", "an SSHSIG signature (namespace file)",
/// "an ssh login as git to host key SHA256:…", "unknown data": what the bytes are, with peer
/// text escaped, and "(forwarded from another host)" after it when another host sent it.
pub fn what_is_signed(req: &ApprovalRequest) -> String {
    let what = match (req.kind, req.namespace.as_deref()) {
        (PayloadKind::Sshsig, Some("git")) => {
            "a git commit or tag signature (namespace git)".into()
        }
        (PayloadKind::Sshsig, Some(ns)) => {
            format!("an SSHSIG signature (namespace {})", escape_control(ns))
        }
        (PayloadKind::Userauth, _) => match &req.login {
            Some(login) => format!("an ssh login {}", describe_login(login)),
            None => "an ssh login".into(),
        },
        (kind, _) => kind.name().to_owned(),
    };
    if req.forwarded {
        return format!("{what} (forwarded from another host)");
    }
    what
}

/// "as git to host key SHA256:…", "as git (host not identified)": the user name is escaped
/// already ([`LoginDetails`]); escaping is idempotent, so it is escaped again here regardless.
pub fn describe_login(login: &LoginDetails) -> String {
    let user = escape_control(&login.user);
    match &login.host_key {
        Some(fp) => format!("as {user} to host key {}", escape_control(fp)),
        None => format!("as {user} (host not identified)"),
    }
}

/// `text` as watchers get it: control characters, ANSI escapes and bidi overrides escaped.
pub fn watched(text: &Option<String>) -> Option<String> {
    text.as_deref().map(escape_control)
}

/// The requester as watchers get it: the executable paths escaped.
pub fn watched_peer(r: &Requester) -> Requester {
    Requester {
        exe: watched(&r.exe),
        parent_exe: watched(&r.parent_exe),
        ..r.clone()
    }
}

/// The [`PromptEvent::Requested`] event of a request that reached the gate as `id`.
pub fn requested(req: &ApprovalRequest, id: &str) -> PromptEvent {
    let escape = watched;
    let r = &req.requester;
    PromptEvent::Requested {
        id: id.to_owned(),
        message: format!(
            "{} asks to sign {}, key {}",
            describe_peer(r),
            what_is_signed(req),
            req.key_fingerprint
        ),
        peer: watched_peer(r),
        key: req.key_fingerprint.clone(),
        kind: req.kind,
        namespace: escape(&req.namespace),
        login: req.login.as_ref().map(|l| LoginDetails {
            user: escape_control(&l.user),
            host_key: escape(&l.host_key),
        }),
        forwarded: req.forwarded,
    }
}

/// "one touch approves up to 50 signatures within 120 s by ssh-keygen children of git (pid
/// 593), namespace git".
pub fn grant_phrase(req: &ApprovalRequest, terms: &GrantTerms) -> String {
    let r = &req.requester;
    let exe = short_name(&r.exe);
    let who = match terms.scope.as_str() {
        "parent" => format!(
            "{exe} children of {} (pid {})",
            short_name(&r.parent_exe),
            r.parent_pid
                .map_or_else(|| "unknown".into(), |p| p.to_string())
        ),
        "session" => format!(
            "{exe} in session {}",
            r.session_id
                .map_or_else(|| "unknown".into(), |p| p.to_string())
        ),
        "user" => format!("{exe}, any process of yours"),
        _ => format!(
            "{exe} (pid {})",
            r.pid.map_or_else(|| "unknown".into(), |p| p.to_string())
        ),
    };
    let count = if terms.max_signatures == u32::MAX {
        "any number of signatures".to_owned()
    } else {
        format!("up to {} signatures", terms.max_signatures)
    };
    let mut s = format!(
        "one touch approves {count} within {} s by {who}",
        terms.ttl_secs
    );
    match req.namespace.as_deref() {
        Some(ns) => s.push_str(&format!(", namespace {}", escape_control(ns))),
        None => s.push_str(&format!(", {} only", req.kind.name())),
    }
    s
}

fn short_name(exe: &Option<String>) -> String {
    exe.as_deref()
        .map(|e| escape_control(e.rsplit('/').next().unwrap_or(e)))
        .unwrap_or_else(|| "unknown process".to_owned())
}

/// "ssh-keygen (pid 4242) ← git (pid 4240)", with control characters escaped; "pid 4242
/// (process exited)" when the process that connected was gone before it could be identified.
pub fn describe_peer(r: &Requester) -> String {
    if r.identity == Identity::Exited {
        return match r.pid {
            Some(pid) => format!("pid {pid} (process exited)"),
            None => "an unknown process (process exited)".to_owned(),
        };
    }
    let name = short_name;
    let mut s = match r.pid {
        Some(pid) => format!("{} (pid {pid})", name(&r.exe)),
        None => format!("{} (pid unknown)", name(&r.exe)),
    };
    if let Some(ppid) = r.parent_pid {
        s.push_str(&format!(" \u{2190} {} (pid {ppid})", name(&r.parent_exe)));
    }
    s
}

/// The full touch prompt for a request: who asks, what kind of data, with which key; and,
/// when the touch opens a grant (`opens`), what else that one touch approves.
pub fn touch_message(
    req: &ApprovalRequest,
    virtual_key: bool,
    opens: Option<&GrantTerms>,
) -> String {
    let mut s = format!(
        "Touch your security key to approve {} for {}, key {}",
        what_is_signed(req),
        describe_peer(&req.requester),
        req.key_fingerprint
    );
    if let Some(terms) = opens {
        s.push_str(&format!("; {}", grant_phrase(req, terms)));
    }
    if let Some(u) = &req.unseal {
        // The id is 16 hex digits (checked when the file was read).
        s.push_str(&format!(
            "; this touch also unseals the key (sealed key {}{}) until the unlock window ends",
            escape_control(&u.key_id),
            if u.uv { ", your PIN or finger too" } else { "" }
        ));
    }
    if let Some(applied) = &req.rule {
        // The label is escaped (a rule's name comes from a user-writable file).
        s.push_str(&format!(" (allowed by caller {})", applied.rule.label()));
    }
    if virtual_key {
        s.push_str(" [VIRTUAL KEY: not hardware]");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_control("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(escape_control("x\ny\r\t"), "x\\ny\\r\\t");
        assert_eq!(escape_control("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(
            escape_control("evil\u{202e}gpj.exe"),
            "evil\\u{202e}gpj.exe"
        );
        assert_eq!(escape_control("ssh-keygen ← git"), "ssh-keygen ← git");
        // A namespace or an executable name cannot erase the prompt and print another.
        let req = ApprovalRequest {
            key_fingerprint: "SHA256:xyz".into(),
            data_digest: [0; 32],
            namespace: Some("git\x1b[2K\rTouch your security key for ssh-keygen".into()),
            requester: Requester::process(1, 1, "/tmp/\x1b[1Aevil"),
            kind: PayloadKind::Sshsig,
            confirm_each: false,
            login: None,
            forwarded: false,
            key_comment: None,
            rule: None,
            unseal: None,
        };
        let terms = GrantTerms {
            max_signatures: 5,
            ttl_secs: 60,
            scope: "parent".into(),
        };
        for m in [
            touch_message(&req, false, None),
            touch_message(&req, false, Some(&terms)),
        ] {
            assert!(!m.chars().any(char::is_control), "{m}");
        }
    }

    #[test]
    fn prompt_names_requester_and_parent() {
        let req = ApprovalRequest {
            key_fingerprint: "SHA256:xyz".into(),
            data_digest: [0; 32],
            namespace: Some("git".into()),
            requester: Requester {
                parent_pid: Some(4240),
                parent_exe: Some("/usr/bin/git".into()),
                ..Requester::process(1, 4242, "/usr/bin/ssh-keygen")
            },
            kind: PayloadKind::Sshsig,
            confirm_each: false,
            login: None,
            forwarded: false,
            key_comment: None,
            rule: None,
            unseal: None,
        };
        assert_eq!(
            touch_message(&req, false, None),
            "Touch your security key to approve a git commit or tag signature (namespace git) for ssh-keygen (pid 4242) \u{2190} git (pid 4240), key SHA256:xyz"
        );
        let terms = GrantTerms {
            max_signatures: 50,
            ttl_secs: 120,
            scope: "parent".into(),
        };
        assert_eq!(
            touch_message(&req, true, Some(&terms)),
            "Touch your security key to approve a git commit or tag signature (namespace git) for ssh-keygen (pid 4242) \u{2190} git (pid 4240), key SHA256:xyz; one touch approves up to 50 signatures within 120 s by ssh-keygen children of git (pid 4240), namespace git [VIRTUAL KEY: not hardware]"
        );
        let login = ApprovalRequest {
            namespace: None,
            kind: PayloadKind::Userauth,
            ..req
        };
        assert!(touch_message(&login, false, Some(&terms))
            .contains("approve an ssh login for ssh-keygen"));
    }

    #[test]
    fn a_login_prompt_names_the_user_the_host_key_and_forwarding() {
        let req = ApprovalRequest {
            key_fingerprint: "SHA256:id".into(),
            requester: Requester::process(1, 4242, "/usr/bin/ssh"),
            kind: PayloadKind::Userauth,
            login: Some(LoginDetails {
                user: "git".into(),
                host_key: Some("SHA256:host".into()),
            }),
            forwarded: true,
            ..ApprovalRequest::default()
        };
        assert_eq!(
            touch_message(&req, false, None),
            "Touch your security key to approve an ssh login as git to host key SHA256:host \
             (forwarded from another host) for ssh (pid 4242), key SHA256:id"
        );
        let unbound = ApprovalRequest {
            login: Some(LoginDetails {
                user: "a\x1b[2Jb".into(),
                host_key: None,
            }),
            forwarded: false,
            requester: Requester::process(1, 4242, "/tmp/\u{202e}hss"),
            namespace: Some("n\x07".into()),
            ..req
        };
        assert!(what_is_signed(&unbound).ends_with("as a\\u{1b}[2Jb (host not identified)"));
        // The announcement of a request escapes what the peer chose.
        let PromptEvent::Requested {
            id,
            message,
            peer,
            namespace,
            login,
            ..
        } = requested(&unbound, "r1")
        else {
            unreachable!()
        };
        assert_eq!(id, "r1");
        assert_eq!(
            message,
            "\\u{202e}hss (pid 4242) asks to sign an ssh login as a\\u{1b}[2Jb (host not \
             identified), key SHA256:id"
        );
        assert_eq!(peer.exe.as_deref(), Some("/tmp/\\u{202e}hss"));
        assert_eq!(namespace.as_deref(), Some("n\\u{7}"));
        assert!(!login.unwrap().user.chars().any(char::is_control));
    }
}
