//! What the agent tells its operator: one line for every request it answers with
//! `SSH_AGENT_FAILURE` (the client sees only that one byte) and one for every connection that
//! ends abnormally, except idle connections closed to make room: those are summed up in one
//! line a second ([`evictions_line`]). Lines go to an [`EventLog`] ([`Stderr`] by default;
//! tests collect them).
//!
//! Peer-controlled text (executable names, extension names, comments inside errors) reaches a
//! terminal here, so every line passes through [`escape_control`] first.

use std::error::Error;
use std::fmt;

use super::session::SessionEnd;
use crate::presence::error_chain;
use crate::presence::prompt::{describe_peer, escape_control};
use crate::presence::request::Requester;

/// Where the agent's log lines go.
pub trait EventLog: Send + Sync {
    /// Record one line (no trailing newline, control characters already escaped).
    fn record(&self, line: &str);
}

/// The default log: one line per event on stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl EventLog for Stderr {
    fn record(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// The request a failure answered, as the log names it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestKind {
    /// `SSH_AGENTC_REQUEST_IDENTITIES`.
    Identities,
    /// `SSH_AGENTC_SIGN_REQUEST`.
    Sign,
    /// `SSH_AGENTC_ADD_IDENTITY` or `SSH_AGENTC_ADD_ID_CONSTRAINED`.
    Add,
    /// `SSH_AGENTC_REMOVE_IDENTITY` or `SSH_AGENTC_REMOVE_ALL_IDENTITIES`.
    Remove,
    /// `SSH_AGENTC_LOCK`.
    Lock,
    /// `SSH_AGENTC_UNLOCK`.
    Unlock,
    /// `SSH_AGENTC_EXTENSION` with this (peer-chosen) name.
    Extension(String),
    /// A request type this agent does not serve (smartcard keys).
    Unsupported,
    /// A body that is not a request.
    Undecodable,
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestKind::Identities => f.write_str("identities"),
            RequestKind::Sign => f.write_str("sign"),
            RequestKind::Add => f.write_str("add"),
            RequestKind::Remove => f.write_str("remove"),
            RequestKind::Lock => f.write_str("lock"),
            RequestKind::Unlock => f.write_str("unlock"),
            RequestKind::Extension(name) => write!(f, "extension {name}"),
            RequestKind::Unsupported => f.write_str("unsupported request"),
            RequestKind::Undecodable => f.write_str("undecodable"),
        }
    }
}

/// The line for a request answered with `SSH_AGENT_FAILURE`.
pub fn failure_line(kind: &RequestKind, peer: &Requester, error: &dyn Error) -> String {
    escape_control(&format!(
        "auths agent: {kind} request from {} failed: {}",
        describe_peer(peer),
        error_chain(error)
    ))
}

/// The line for a connection that ended abnormally; `None` for a normal end (the client
/// closed, the agent shut down) and for an eviction (counted for [`evictions_line`]). `cause` is the error behind the end, when there is one
/// (the I/O error, the oversized header).
pub fn session_end_line(
    end: SessionEnd,
    peer: &Requester,
    cause: Option<&dyn Error>,
) -> Option<String> {
    let what = match end {
        // Evictions are counted and summed up once a second instead ([`evictions_line`]).
        SessionEnd::Closed | SessionEnd::Shutdown | SessionEnd::Evicted => return None,
        SessionEnd::ForeignUid => {
            format!("closed without an answer: it runs as uid {}", peer.uid)
        }
        SessionEnd::HungUpDuringApproval => {
            "hung up while its signature waited for a touch; nothing was signed".to_owned()
        }
        SessionEnd::Oversized => "dropped: it sent an oversized message".to_owned(),
        SessionEnd::Stalled => "dropped: it stalled in the middle of a message".to_owned(),
        SessionEnd::IoError => "dropped: a read or write failed".to_owned(),
    };
    let what = match cause {
        Some(e) => format!("{what}: {}", error_chain(e)),
        None => what,
    };
    Some(escape_control(&format!(
        "auths agent: connection from {} {what}",
        describe_peer(peer)
    )))
}

/// The line for `n` idle connections closed within the last second to make room for new ones,
/// `cap` being the number kept open.
pub fn evictions_line(n: u64, cap: usize) -> String {
    format!(
        "auths agent: closed {n} idle connection(s) in the last second to make room for new ones \
         (at most {cap} are kept open; a program may be opening connections in a loop)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Requester {
        Requester::process(1000, 42, "/usr/bin/ssh-\x1b[31madd")
    }

    #[test]
    fn failure_line_names_request_peer_and_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner"));
        let kind = RequestKind::Extension("x\x1b]0;pwned\x07".into());
        assert_eq!(
            failure_line(&kind, &peer(), &e),
            "auths agent: extension x\\u{1b}]0;pwned\\u{7} request from \
             ssh-\\u{1b}[31madd (pid 42) failed: outer: inner"
        );
    }

    #[test]
    fn only_abnormal_ends_are_logged() {
        let p = peer();
        assert_eq!(session_end_line(SessionEnd::Closed, &p, None), None);
        assert_eq!(session_end_line(SessionEnd::Shutdown, &p, None), None);
        let line = session_end_line(SessionEnd::ForeignUid, &p, None).unwrap();
        assert!(line.contains("uid 1000"), "{line}");
        assert!(!line.contains('\x1b'), "{line}");
        let io = std::io::Error::other("broken pipe");
        let line = session_end_line(SessionEnd::IoError, &p, Some(&io)).unwrap();
        assert!(
            line.ends_with("a read or write failed: broken pipe"),
            "{line}"
        );
        let big = crate::agent::codec::TooLarge(300_000);
        let line = session_end_line(SessionEnd::Oversized, &p, Some(&big)).unwrap();
        assert!(line.contains("a 300000-byte message"), "{line}");
        assert_eq!(session_end_line(SessionEnd::Evicted, &p, None), None);
        for end in [
            SessionEnd::Oversized,
            SessionEnd::Stalled,
            SessionEnd::HungUpDuringApproval,
        ] {
            assert!(session_end_line(end, &p, None).is_some());
        }
    }
}
