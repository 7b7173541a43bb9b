//! Why the agent last refused a process, and the `refusal@auths-presence` extension that tells
//! it to that process's parent (`auths git sign`, which runs `ssh-keygen -Y sign` for git and
//! explains a refusal that ssh-keygen reports only as "agent refused operation").
//!
//! The store is small and forgets: at most [`MAX_REFUSALS`] entries (one per requesting
//! process: a new refusal replaces that process's earlier one; the oldest entry goes first when
//! the store is full), each kept for [`REFUSAL_TTL`]. A reason is a short sentence built by the
//! agent (never the peer's bytes as they came: executable names and namespaces are escaped),
//! with no secrets in it.
//!
//! Who may read a reason: a peer of the agent's uid (every connection is), and only reasons
//! recorded for itself, for a process whose parent it is, or for its own parent, each
//! identified by pid *and* process start time as the kernel told them when each connected,
//! and only when those details were confirmed ([`Requester::is_confirmed`]). Another
//! same-user program learns nothing about requests other programs made, beyond those of its
//! children and of the process that started it. (The parent relation is what `auths git sign`
//! uses on Unix: it becomes `ssh-keygen` by exec, so that ssh-keygen's parent stays git and a
//! batch grant scoped to the parent still covers a whole `git rebase -S`, and a helper it
//! forked beforehand, connected while its parent was still that process, asks.)
//!
//! The answer is an `SSH_AGENT_EXTENSION_RESPONSE` (29) named like the request whose
//! contents are
//!
//! ```text
//! uint32  n (at most MAX_REFUSALS)
//! n times:
//!   uint32  pid of the refused process
//!   uint32  seconds since the refusal
//!   string  the reason (UTF-8, at most MAX_REASON_LEN bytes)
//! ```
//!
//! newest first. The request carries no contents.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ssh_agent_lib::proto::extension::MessageExtension;
use ssh_encoding::{CheckedSum, Decode, Encode, Reader, Writer};

use super::AgentError;
use crate::presence::gate::GateError;
use crate::presence::prompt::{describe_peer, escape_control, what_is_signed};
use crate::presence::request::{ApprovalRequest, Requester};

/// Name of the refusal extension.
pub const REFUSAL_EXTENSION: &str = "refusal@auths-presence";

/// At most this many refusals are kept (one per process).
pub const MAX_REFUSALS: usize = 64;

/// A refusal is forgotten this long after it was made.
pub const REFUSAL_TTL: Duration = Duration::from_secs(300);

/// A reason longer than this is cut (at a character boundary) and ends in "…".
pub const MAX_REASON_LEN: usize = 512;

/// A process, as pid and start time (so a reused pid is another process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcessId {
    pid: u32,
    start_time: u64,
}

impl ProcessId {
    fn of(r: &Requester) -> Option<ProcessId> {
        if !r.is_confirmed() {
            return None;
        }
        Some(ProcessId {
            pid: r.pid?,
            start_time: r.start_time?,
        })
    }

    fn parent_of(r: &Requester) -> Option<ProcessId> {
        if !r.is_confirmed() {
            return None;
        }
        Some(ProcessId {
            pid: r.parent_pid?,
            start_time: r.parent_start_time?,
        })
    }
}

#[derive(Debug)]
struct Entry {
    process: ProcessId,
    parent: Option<ProcessId>,
    at: Instant,
    reason: String,
}

/// The last refusal of each recently refused process.
#[derive(Debug, Default)]
pub struct Refusals {
    entries: Mutex<VecDeque<Entry>>,
}

/// One refusal as the extension returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The refused process.
    pub pid: u32,
    /// Seconds between the refusal and the question.
    pub age_secs: u32,
    /// What happened, in a sentence (escaped, bounded).
    pub reason: String,
}

impl Refusals {
    /// Record that `peer` was refused for `reason` (a sentence for the user; it is escaped and
    /// cut to [`MAX_REASON_LEN`] here). A peer that cannot be identified (no pid or start
    /// time, or not confirmed) is not recorded: nobody could ask for it safely.
    pub fn record(&self, peer: &Requester, reason: &str, now: Instant) {
        let Some(process) = ProcessId::of(peer) else {
            return;
        };
        let entry = Entry {
            process,
            parent: ProcessId::parent_of(peer),
            at: now,
            reason: bounded(&escape_control(reason)),
        };
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        expire(&mut entries, now);
        entries.retain(|e| e.process != process);
        while entries.len() >= MAX_REFUSALS {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// The refusals `asker` may read: its own, its children's and its parent's, newest first.
    pub fn for_asker(&self, asker: &Requester, now: Instant) -> Vec<Refusal> {
        let Some(me) = ProcessId::of(asker) else {
            return Vec::new();
        };
        let my_parent = ProcessId::parent_of(asker);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        expire(&mut entries, now);
        entries
            .iter()
            .rev()
            .filter(|e| e.process == me || e.parent == Some(me) || Some(e.process) == my_parent)
            .map(|e| Refusal {
                pid: e.process.pid,
                age_secs: u32::try_from(now.saturating_duration_since(e.at).as_secs())
                    .unwrap_or(u32::MAX),
                reason: e.reason.clone(),
            })
            .collect()
    }

    /// How many refusals are kept (tests).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when none are kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn expire(entries: &mut VecDeque<Entry>, now: Instant) {
    entries.retain(|e| now.saturating_duration_since(e.at) < REFUSAL_TTL);
}

fn bounded(s: &str) -> String {
    if s.len() <= MAX_REASON_LEN {
        return s.to_owned();
    }
    let mut end = MAX_REASON_LEN - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The reason for a refused signature, for the user: what happened first, then which request
/// it was ("no touch within 30 s; the key blinked for ssh-keygen (pid 12) ← git (pid 10), a git
/// commit or tag signature (namespace git), key SHA256:…"). `request` is what the gate was
/// asked, when it was asked; `peer` describes the requester otherwise.
pub fn sign_refusal_reason(
    error: &AgentError,
    request: Option<&ApprovalRequest>,
    peer: &Requester,
) -> String {
    let about = |verb: &str| match request {
        Some(r) => format!(
            "{verb} {}, {}, key {}",
            describe_peer(&r.requester),
            what_is_signed(r),
            r.key_fingerprint
        ),
        None => format!("asked by {}", describe_peer(peer)),
    };
    match error {
        AgentError::NotApproved(GateError::TouchTimeout(d)) => format!(
            "no touch within {}; {}",
            seconds(*d),
            about("the key blinked for")
        ),
        AgentError::NotApproved(GateError::Cancelled) => {
            format!("the request was cancelled; {}", about("it was from"))
        }
        AgentError::NotApproved(e) => {
            format!("{}; {}", with_sources(e), about("the key was asked for"))
        }
        e => format!("{}; {}", with_sources(e), about("asked by")),
    }
}

/// "30 s", "1.5 s".
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// `e` with its sources, ": "-joined (every error of the agent and gate says what happened
/// without secrets).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The extension's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefusalAnswer {
    /// Newest first.
    pub refusals: Vec<Refusal>,
}

impl RefusalAnswer {
    /// Decode an answer's contents, every byte of them (trailing bytes are an error).
    pub fn from_bytes(mut bytes: &[u8]) -> ssh_encoding::Result<RefusalAnswer> {
        let answer = RefusalAnswer::decode(&mut bytes)?;
        if !bytes.is_empty() {
            return Err(ssh_encoding::Error::TrailingData {
                remaining: bytes.len(),
            });
        }
        Ok(answer)
    }
}

impl MessageExtension for RefusalAnswer {
    const NAME: &'static str = REFUSAL_EXTENSION;
}

impl Encode for RefusalAnswer {
    fn encoded_len(&self) -> ssh_encoding::Result<usize> {
        let mut lens = vec![4];
        for r in &self.refusals {
            lens.push(8);
            lens.push(r.reason.encoded_len()?);
        }
        lens.checked_sum()
    }

    fn encode(&self, writer: &mut impl Writer) -> ssh_encoding::Result<()> {
        let n = u32::try_from(self.refusals.len()).map_err(|_| ssh_encoding::Error::Length)?;
        n.encode(writer)?;
        for r in &self.refusals {
            r.pid.encode(writer)?;
            r.age_secs.encode(writer)?;
            r.reason.encode(writer)?;
        }
        Ok(())
    }
}

impl Decode for RefusalAnswer {
    type Error = ssh_encoding::Error;

    fn decode(reader: &mut impl Reader) -> ssh_encoding::Result<Self> {
        let n = u32::decode(reader)?;
        if usize::try_from(n).map_or(true, |n| n > MAX_REFUSALS) {
            return Err(ssh_encoding::Error::Length);
        }
        let mut refusals = Vec::new();
        for _ in 0..n {
            let pid = u32::decode(reader)?;
            let age_secs = u32::decode(reader)?;
            let reason = String::decode(reader)?;
            if reason.len() > MAX_REASON_LEN {
                return Err(ssh_encoding::Error::Length);
            }
            refusals.push(Refusal {
                pid,
                age_secs,
                reason: escape_control(&reason),
            });
        }
        Ok(RefusalAnswer { refusals })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::request::Identity;
    use ssh_agent_lib::proto::Extension;

    fn proc(pid: u32, start: u64, parent: Option<(u32, u64)>) -> Requester {
        Requester {
            uid: 1000,
            pid: Some(pid),
            start_time: Some(start),
            exe: Some("/usr/bin/ssh-keygen".into()),
            parent_pid: parent.map(|p| p.0),
            parent_start_time: parent.map(|p| p.1),
            parent_exe: parent.map(|_| "/usr/bin/auths".into()),
            identity: Identity::Confirmed,
            ..Requester::default()
        }
    }

    #[test]
    fn only_the_process_and_its_parent_read_a_refusal() {
        let store = Refusals::default();
        let now = Instant::now();
        let child = proc(20, 500, Some((10, 400)));
        store.record(&child, "no touch within 30 s", now);
        let parent = proc(10, 400, None);
        let got = store.for_asker(&parent, now + Duration::from_secs(3));
        assert_eq!(
            got,
            [Refusal {
                pid: 20,
                age_secs: 3,
                reason: "no touch within 30 s".into()
            }]
        );
        assert_eq!(store.for_asker(&child, now).len(), 1);
        // Same pid, another process (start time differs): nothing.
        assert!(store.for_asker(&proc(10, 401, None), now).is_empty());
        // The refused process's own child may read it (auths git sign's helper, whose parent
        // became ssh-keygen by exec).
        assert_eq!(
            store.for_asker(&proc(30, 600, Some((20, 500))), now).len(),
            1
        );
        // The child of another process that had the refused pid (another start time): nothing.
        assert!(store
            .for_asker(&proc(30, 600, Some((20, 501))), now)
            .is_empty());
        // A sibling, or the grandparent: nothing.
        assert!(store
            .for_asker(&proc(21, 500, Some((10, 400))), now)
            .is_empty());
        assert!(store.for_asker(&proc(1, 1, None), now).is_empty());
        // An unconfirmed asker learns nothing even with the right pid.
        let mut unconfirmed = parent.clone();
        unconfirmed.identity = Identity::Exited;
        assert!(store.for_asker(&unconfirmed, now).is_empty());
    }

    #[test]
    fn unidentified_peers_are_not_recorded_and_entries_expire_and_are_capped() {
        let store = Refusals::default();
        let now = Instant::now();
        store.record(&Requester::process(1000, 5, "/bin/x"), "r", now);
        assert!(store.is_empty(), "no start time: not recorded");
        for i in 0..(MAX_REFUSALS as u32 + 10) {
            store.record(&proc(100 + i, 1, Some((9, 9))), &format!("r{i}"), now);
        }
        assert_eq!(store.len(), MAX_REFUSALS);
        let got = store.for_asker(&proc(9, 9, None), now);
        assert_eq!(got.len(), MAX_REFUSALS);
        assert_eq!(got[0].reason, format!("r{}", MAX_REFUSALS + 9));
        // A second refusal of the same process replaces its first.
        store.record(&proc(100 + 20, 1, Some((9, 9))), "again", now);
        assert_eq!(store.len(), MAX_REFUSALS);
        assert!(store
            .for_asker(&proc(9, 9, None), now + REFUSAL_TTL)
            .is_empty());
        assert!(store.is_empty());
    }

    #[test]
    fn reasons_are_escaped_and_bounded() {
        let store = Refusals::default();
        let now = Instant::now();
        let child = proc(20, 500, Some((10, 400)));
        store.record(&child, &format!("evil\x1b[2J{}", "é".repeat(400)), now);
        let r = &store.for_asker(&child, now)[0].reason;
        assert!(r.starts_with("evil\\u{1b}[2J"), "{r}");
        assert!(r.len() <= MAX_REASON_LEN && r.ends_with('…'), "{}", r.len());
    }

    #[test]
    fn the_timeout_reason_names_the_requester_and_what_was_asked() {
        let mut peer = proc(20, 500, Some((10, 400)));
        peer.parent_exe = Some("/usr/bin/git".into());
        let request = ApprovalRequest {
            key_fingerprint: "SHA256:abc".into(),
            namespace: Some("git".into()),
            kind: crate::presence::request::PayloadKind::Sshsig,
            requester: peer.clone(),
            ..ApprovalRequest::default()
        };
        let e = AgentError::NotApproved(GateError::TouchTimeout(Duration::from_secs(30)));
        assert_eq!(
            sign_refusal_reason(&e, Some(&request), &peer),
            "no touch within 30 s; the key blinked for ssh-keygen (pid 20) \u{2190} git (pid 10), \
             a git commit or tag signature (namespace git), key SHA256:abc"
        );
        assert_eq!(
            sign_refusal_reason(&AgentError::Sha1Refused, None, &peer),
            "an ssh-rsa signature (SHA-1) was asked for; only rsa-sha2-256 and rsa-sha2-512 are \
             made; asked by ssh-keygen (pid 20) \u{2190} git (pid 10)"
        );
    }

    #[test]
    fn the_answer_round_trips_and_decodes_strictly() {
        let answer = RefusalAnswer {
            refusals: vec![Refusal {
                pid: 4,
                age_secs: 2,
                reason: "no touch".into(),
            }],
        };
        let ext = Extension::new_message(answer.clone()).unwrap();
        assert_eq!(ext.name, REFUSAL_EXTENSION);
        assert_eq!(ext.parse_message::<RefusalAnswer>().unwrap(), Some(answer));
        let mut too_many = Vec::new();
        (MAX_REFUSALS as u32 + 1).encode(&mut too_many).unwrap();
        assert!(RefusalAnswer::decode(&mut too_many.as_slice()).is_err());
        assert!(RefusalAnswer::decode(&mut [0u8, 0, 0, 1, 0].as_slice()).is_err());
    }
}
