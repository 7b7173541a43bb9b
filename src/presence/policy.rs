//! Touch policies and the grants one touch may open.
//!
//! - `per-signature` (default): every signature needs its own touch.
//! - `batch:N:T[:scope]`: one touch approves up to N signatures within T for one scope
//!   (`git rebase -S` runs one `ssh-keygen` per commit, all children of one git: scope `parent`,
//!   the default for batches).
//! - `per-peer:T[:scope]`: one touch per new peer, valid for T (default scope `process`).
//!
//! A grant is bound to the identity key and to the scope's identity (pid + start time, so a
//! reused pid is another peer). When the platform cannot tell the scope's identity (no pid, no
//! parent), no grant is opened or matched: that request needs its own touch (fail closed).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::challenge::GrantTerms;
use super::request::{ApprovalRequest, FileId, PayloadKind, Requester};
use super::rules::RuleRef;
use super::verify::VerifiedAssertion;

/// Who shares a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The same process (pid and start time).
    Process,
    /// Children of the same parent process (parent pid and its start time).
    Parent,
    /// The same session (setsid).
    Session,
    /// Any process of the user: the loosest, for those who accept it.
    User,
}

impl Scope {
    /// The name used on the command line and in client data.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Process => "process",
            Scope::Parent => "parent",
            Scope::Session => "session",
            Scope::User => "user",
        }
    }

    /// The identity of `r` under this scope, or None when the platform did not tell it.
    pub fn key(self, r: &Requester) -> Option<ScopeKey> {
        match self {
            Scope::Process => Some(ScopeKey::Process(r.pid?, r.start_time?)),
            Scope::Parent => Some(ScopeKey::Parent(r.parent_pid?, r.parent_start_time?)),
            Scope::Session => Some(ScopeKey::Session(r.session_id?)),
            Scope::User => Some(ScopeKey::User(r.uid)),
        }
    }
}

impl FromStr for Scope {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "process" => Ok(Scope::Process),
            "parent" => Ok(Scope::Parent),
            "session" => Ok(Scope::Session),
            "user" => Ok(Scope::User),
            other => Err(PolicyError::UnknownScope(other.to_owned())),
        }
    }
}

/// Why a policy, scope or duration string does not parse. Each message names the accepted
/// forms, since these strings are typed by people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not one of the policy forms.
    #[error("unknown policy {0:?}: the forms are per-signature, batch:N:T[:scope] and per-peer:T[:scope] (e.g. batch:20:60s:parent)")]
    UnknownPolicy(String),
    /// A batch size that is not a whole number of at least 1.
    #[error("batch size {0:?} must be a whole number of at least 1")]
    BatchSize(String),
    /// Not one of the scopes.
    #[error("unknown scope {0:?}: the scopes are process, parent, session and user")]
    UnknownScope(String),
    /// A duration that does not parse.
    #[error("cannot read duration {0:?}: the form is e.g. 30s, 15m, 4h or 1h30m")]
    Duration(String),
    /// A zero duration.
    #[error("duration {0:?} must be more than zero")]
    ZeroDuration(String),
    /// A duration over [`MAX_DURATION`].
    #[error("duration {0:?} is longer than the limit of 366 days")]
    TooLong(String),
}

/// The identity a grant is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKey {
    /// pid, start time.
    Process(u32, u64),
    /// parent pid, parent start time.
    Parent(u32, u64),
    /// session id.
    Session(u32),
    /// uid.
    User(u32),
}

/// When a touch is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Every signature needs its own touch.
    #[default]
    PerSignature,
    /// One touch approves up to `max` signatures within `ttl` for one scope.
    Batch {
        /// Signatures per touch, the first included.
        max: u32,
        /// Lifetime of the grant.
        ttl: Duration,
        /// Who shares it.
        scope: Scope,
    },
    /// One touch per new peer, valid for `ttl`.
    PerPeer {
        /// Lifetime of the grant.
        ttl: Duration,
        /// Who counts as the same peer.
        scope: Scope,
    },
}

impl Policy {
    /// The grant terms a touch under this policy opens (None for per-signature).
    pub fn grant_terms(&self) -> Option<GrantTerms> {
        match *self {
            Policy::PerSignature => None,
            Policy::Batch { max, ttl, scope } => Some(GrantTerms {
                max_signatures: max,
                ttl_secs: ttl.as_secs(),
                scope: scope.name().to_owned(),
            }),
            Policy::PerPeer { ttl, scope } => Some(GrantTerms {
                max_signatures: u32::MAX,
                ttl_secs: ttl.as_secs(),
                scope: scope.name().to_owned(),
            }),
        }
    }

    fn scope(&self) -> Option<Scope> {
        match *self {
            Policy::PerSignature => None,
            Policy::Batch { scope, .. } | Policy::PerPeer { scope, .. } => Some(scope),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::PerSignature => write!(f, "per-signature"),
            Policy::Batch { max, ttl, scope } => {
                write!(f, "batch:{max}:{}s:{}", ttl.as_secs(), scope.name())
            }
            Policy::PerPeer { ttl, scope } => {
                write!(f, "per-peer:{}s:{}", ttl.as_secs(), scope.name())
            }
        }
    }
}

impl FromStr for Policy {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["per-signature"] => Ok(Policy::PerSignature),
            ["batch", n, t, rest @ ..] if rest.len() <= 1 => {
                let max: u32 = n
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| PolicyError::BatchSize((*n).to_owned()))?;
                let ttl = parse_duration(t)?;
                let scope = scope_or(rest, Scope::Parent)?;
                Ok(Policy::Batch { max, ttl, scope })
            }
            ["per-peer", t, rest @ ..] if rest.len() <= 1 => {
                let ttl = parse_duration(t)?;
                let scope = scope_or(rest, Scope::Process)?;
                Ok(Policy::PerPeer { ttl, scope })
            }
            _ => Err(PolicyError::UnknownPolicy(s.to_owned())),
        }
    }
}

/// The scope named in `rest` (the optional last part of a policy string), or `default`.
fn scope_or(rest: &[&str], default: Scope) -> Result<Scope, PolicyError> {
    rest.first().map_or(Ok(default), |s| s.parse())
}

/// The longest duration any option takes (a year and a day): grant lifetimes, unlock caps and
/// timeouts beyond it are typing mistakes, and refusing them keeps every `now + duration` far
/// from the clock's range.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 86400);

/// Parse `90`, `90s`, `30m`, `4h`, `1h30m`, `2d`. Zero and more than [`MAX_DURATION`] are
/// refused.
pub fn parse_duration(s: &str) -> Result<Duration, PolicyError> {
    let bad = || PolicyError::Duration(s.to_owned());
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !num.is_empty() {
        total = total
            .checked_add(num.parse().map_err(|_| bad())?)
            .ok_or_else(bad)?;
    }
    if total == 0 {
        return Err(PolicyError::ZeroDuration(s.to_owned()));
    }
    if total > MAX_DURATION.as_secs() {
        return Err(PolicyError::TooLong(s.to_owned()));
    }
    Ok(Duration::from_secs(total))
}

/// One open grant.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Receipt id of the touch that opened it.
    pub receipt_id: String,
    /// Identity key it covers.
    pub key_fingerprint: String,
    /// Who may use it.
    pub scope_key: ScopeKey,
    /// What it covers besides the key: the executable, the namespace, the kind of data.
    pub covers: Covers,
    /// Signatures left.
    pub remaining: u32,
    /// When it lapses.
    pub expires: Instant,
    /// The caller rule whose policy opened it: it serves only requests that rule allowed
    /// (`None`: no rules file was in force).
    pub rule: Option<RuleRef>,
}

/// What one touch approved besides the identity key and the scope: requests from the same
/// executable (path and file identity), with the same SSHSIG namespace and kind of data. A git
/// hook that runs another program, another namespace, an ssh login or a forged git object
/// each need their own touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covers {
    exe: String,
    exe_file: Option<FileId>,
    namespace: Option<String>,
    kind: PayloadKind,
}

impl Covers {
    /// What a grant opened by a touch for `request` covers; `None` when the request cannot
    /// share a grant: its executable is unknown, its requester's identity was not confirmed
    /// (the process exited, or its pid may name another process), or its key was added with
    /// `ssh-add -c`.
    pub fn of(request: &ApprovalRequest) -> Option<Covers> {
        if request.confirm_each || !request.requester.is_confirmed() {
            return None;
        }
        Some(Covers {
            exe: request.requester.exe.clone()?,
            exe_file: request.requester.exe_file,
            namespace: request.namespace.clone(),
            kind: request.kind,
        })
    }
}

/// One signature taken from an open grant: the proof, besides a verified touch, that the gate
/// may approve. Only [`Grants::take`] makes one, and it is not `Clone`.
#[derive(Debug, PartialEq, Eq)]
pub struct GrantUse {
    grant_of: String,
    key_fingerprint: String,
    remaining: u32,
}

impl GrantUse {
    /// Receipt id of the touch that opened the grant.
    pub fn grant_of(&self) -> &str {
        &self.grant_of
    }

    /// The identity key the grant covers.
    pub fn key_fingerprint(&self) -> &str {
        &self.key_fingerprint
    }

    /// Signatures left in the grant after this one.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }
}

/// Open grants under one policy.
#[derive(Debug, Default)]
pub struct Grants {
    policy: Policy,
    open: Vec<Grant>,
}

impl Grants {
    /// No grants yet.
    pub fn new(policy: Policy) -> Grants {
        Grants {
            policy,
            open: Vec::new(),
        }
    }

    /// The agent's policy (`--policy`).
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The policy `request` is asked under: its caller rule's, else the agent's.
    pub fn policy_for(&self, request: &ApprovalRequest) -> Policy {
        request
            .rule
            .as_ref()
            .and_then(|r| r.policy)
            .unwrap_or(self.policy)
    }

    /// Use one signature of a grant that covers this request. The [`GrantUse`] is the only
    /// way to an approval without a touch.
    pub fn take(&mut self, request: &ApprovalRequest, now: Instant) -> Option<GrantUse> {
        self.open.retain(|g| g.expires > now && g.remaining > 0);
        let scope_key = self.policy_for(request).scope()?.key(&request.requester)?;
        let covers = Covers::of(request)?;
        let rule = request.rule.as_ref().map(|r| &r.rule);
        let g = self.open.iter_mut().find(|g| {
            g.scope_key == scope_key
                && g.key_fingerprint == request.key_fingerprint
                && g.covers == covers
                && g.rule.as_ref() == rule
        })?;
        g.remaining = g.remaining.checked_sub(1)?;
        Some(GrantUse {
            grant_of: g.receipt_id.clone(),
            key_fingerprint: g.key_fingerprint.clone(),
            remaining: g.remaining,
        })
    }

    /// After a verified touch (`proof`) for `request` whose signature was made: open the grant
    /// it approved (the touch itself used one signature). Does nothing under per-signature,
    /// when the scope or the executable is unknown, for a key added with `ssh-add -c`, or when
    /// the lifetime does not fit the clock (fail closed).
    pub fn open(
        &mut self,
        proof: &VerifiedAssertion,
        receipt_id: &str,
        request: &ApprovalRequest,
        now: Instant,
    ) {
        // The proof is what makes this call possible; what it proves is in the receipt.
        let _ = proof;
        let policy = self.policy_for(request);
        let (max, ttl) = match policy {
            Policy::PerSignature => return,
            Policy::Batch { max, ttl, .. } => (max, ttl),
            Policy::PerPeer { ttl, .. } => (u32::MAX, ttl),
        };
        let Some(scope_key) = policy.scope().and_then(|s| s.key(&request.requester)) else {
            return;
        };
        let Some(covers) = Covers::of(request) else {
            return;
        };
        let (Some(remaining), Some(expires)) = (max.checked_sub(1), now.checked_add(ttl)) else {
            return;
        };
        if remaining == 0 {
            return;
        }
        self.open.push(Grant {
            receipt_id: receipt_id.to_owned(),
            key_fingerprint: request.key_fingerprint.clone(),
            scope_key,
            covers,
            remaining,
            expires,
            rule: request.rule.as_ref().map(|r| r.rule.clone()),
        });
    }

    /// Forget every grant (lock, shutdown).
    pub fn clear(&mut self) {
        self.open.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(pid: u32, ppid: u32) -> Requester {
        Requester {
            uid: 1000,
            pid: Some(pid),
            start_time: Some(u64::from(pid) * 10),
            parent_pid: Some(ppid),
            parent_start_time: Some(u64::from(ppid) * 10),
            session_id: Some(1),
            ..Requester::process(1000, pid, "/usr/bin/ssh-keygen")
        }
        .with_exe_file(FileId { dev: 1, ino: 42 })
    }

    #[test]
    fn parses_policies() {
        assert_eq!("per-signature".parse::<Policy>(), Ok(Policy::PerSignature));
        assert_eq!(
            "batch:20:60s".parse::<Policy>(),
            Ok(Policy::Batch {
                max: 20,
                ttl: Duration::from_secs(60),
                scope: Scope::Parent
            })
        );
        assert_eq!(
            "per-peer:5m:session".parse::<Policy>(),
            Ok(Policy::PerPeer {
                ttl: Duration::from_secs(300),
                scope: Scope::Session
            })
        );
        for bad in [
            "batch:0:60s",
            "batch:x:1s",
            "batch:3:0s",
            "per-peer",
            "batch:3:1s:world",
            "everything",
        ] {
            assert!(bad.parse::<Policy>().is_err(), "{bad}");
        }
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("99999999999999999999d").is_err());
        // Found by fuzzing: a TTL this long overflowed `now + ttl` in the gate's worker.
        assert!(parse_duration("106751991167301d").is_err());
        assert_eq!(
            "batch:2:106751991167301d".parse::<Policy>(),
            Err(PolicyError::TooLong("106751991167301d".into()))
        );
        assert_eq!(parse_duration("366d"), Ok(MAX_DURATION));
        assert!(parse_duration("366d1s").is_err());
    }

    /// An SSHSIG request for namespace git by `r`, with key `key`.
    fn req(key: &str, r: &Requester) -> ApprovalRequest {
        ApprovalRequest {
            key_fingerprint: key.into(),
            namespace: Some("git".into()),
            requester: r.clone(),
            kind: PayloadKind::Sshsig,
            ..ApprovalRequest::default()
        }
    }

    fn taken(g: &mut Grants, key: &str, r: &Requester, now: Instant) -> Option<(String, u32)> {
        take_req(g, &req(key, r), now)
    }

    fn take_req(g: &mut Grants, r: &ApprovalRequest, now: Instant) -> Option<(String, u32)> {
        g.take(r, now)
            .map(|u| (u.grant_of().to_owned(), u.remaining()))
    }

    #[test]
    fn a_grant_covers_only_what_its_touch_approved() {
        let mut g = Grants::new("batch:10:60s:parent".parse().unwrap());
        let t0 = Instant::now();
        let opened = req("K", &peer(10, 1));
        g.open(&VerifiedAssertion::for_tests(), "r1", &opened, t0);
        assert_eq!(
            take_req(&mut g, &req("K", &peer(11, 1)), t0),
            Some(("r1".into(), 8))
        );
        let mut other_exe = req("K", &peer(12, 1));
        other_exe.requester.exe = Some("/tmp/hook".into());
        let mut same_path_other_file = req("K", &peer(12, 1));
        same_path_other_file.requester.exe_file = Some(FileId { dev: 1, ino: 999 });
        let other_namespace = ApprovalRequest {
            namespace: Some("file".into()),
            ..req("K", &peer(12, 1))
        };
        let userauth = ApprovalRequest {
            namespace: None,
            kind: PayloadKind::Userauth,
            ..req("K", &peer(12, 1))
        };
        let other_data = ApprovalRequest {
            namespace: None,
            kind: PayloadKind::Other,
            ..req("K", &peer(12, 1))
        };
        let confirm_key = ApprovalRequest {
            confirm_each: true,
            ..req("K", &peer(12, 1))
        };
        for (what, r) in [
            ("another executable", &other_exe),
            ("another file at the same path", &same_path_other_file),
            ("another namespace", &other_namespace),
            ("an ssh login", &userauth),
            ("unknown data", &other_data),
            ("a key added with ssh-add -c", &confirm_key),
        ] {
            assert_eq!(take_req(&mut g, r, t0), None, "{what} needs its own touch");
        }
        // A touch for a confirm key, or by an unknown executable, opens nothing.
        let mut g = Grants::new("batch:10:60s:parent".parse().unwrap());
        g.open(&VerifiedAssertion::for_tests(), "r2", &confirm_key, t0);
        let mut no_exe = req("K", &peer(12, 1));
        no_exe.requester.exe = None;
        g.open(&VerifiedAssertion::for_tests(), "r3", &no_exe, t0);
        assert_eq!(taken(&mut g, "K", &peer(12, 1), t0), None);
        assert_eq!(take_req(&mut g, &no_exe, t0), None);
    }

    #[test]
    fn batch_grant_counts_expires_and_is_scoped() {
        let policy: Policy = "batch:3:60s:parent".parse().unwrap();
        let mut g = Grants::new(policy);
        let proof = VerifiedAssertion::for_tests();
        let t0 = Instant::now();
        assert_eq!(taken(&mut g, "K", &peer(10, 1), t0), None);
        g.open(&proof, "r1", &req("K", &peer(10, 1)), t0);
        assert_eq!(taken(&mut g, "K", &peer(11, 1), t0), Some(("r1".into(), 1)));
        assert_eq!(taken(&mut g, "other key", &peer(12, 1), t0), None);
        assert_eq!(taken(&mut g, "K", &peer(12, 2), t0), None, "another parent");
        assert_eq!(taken(&mut g, "K", &peer(12, 1), t0), Some(("r1".into(), 0)));
        assert_eq!(
            taken(&mut g, "K", &peer(13, 1), t0),
            None,
            "N+1-th needs a touch"
        );
        g.open(&proof, "r2", &req("K", &peer(10, 1)), t0);
        assert_eq!(
            taken(&mut g, "K", &peer(14, 1), t0 + Duration::from_secs(61)),
            None,
            "after T"
        );
    }

    #[test]
    fn a_lifetime_past_the_clock_opens_no_grant_and_does_not_panic() {
        // Grants built directly (not through parse_duration's cap): checked arithmetic.
        let mut g = Grants::new(Policy::Batch {
            max: 2,
            ttl: Duration::MAX,
            scope: Scope::Parent,
        });
        let t0 = Instant::now();
        g.open(
            &VerifiedAssertion::for_tests(),
            "r",
            &req("K", &peer(10, 1)),
            t0,
        );
        assert_eq!(taken(&mut g, "K", &peer(11, 1), t0), None);
    }

    #[test]
    fn a_rules_policy_applies_and_its_grant_serves_only_that_rule() {
        use crate::presence::rules::{AppliedRule, RuleRef};
        let applied = |number, generation, policy: Option<&str>| AppliedRule {
            rule: RuleRef {
                generation,
                number,
                name: None,
            },
            policy: policy.map(|p| p.parse().unwrap()),
            uv_required: false,
        };
        let under = |rule: Option<AppliedRule>| ApprovalRequest {
            rule,
            ..req("K", &peer(10, 1))
        };
        // The agent's policy is per-signature; rule 1's opens a batch.
        let mut g = Grants::new(Policy::PerSignature);
        let t0 = Instant::now();
        let batch = under(Some(applied(1, 1, Some("batch:3:60s:user"))));
        assert_eq!(
            g.policy_for(&batch),
            "batch:3:60s:user".parse::<Policy>().unwrap()
        );
        g.open(&VerifiedAssertion::for_tests(), "r1", &batch, t0);
        for (what, r) in [
            ("no rule", under(None)),
            (
                "another rule",
                under(Some(applied(2, 1, Some("batch:3:60s:user")))),
            ),
            (
                "the same rule after a reload",
                under(Some(applied(1, 2, Some("batch:3:60s:user")))),
            ),
        ] {
            assert_eq!(take_req(&mut g, &r, t0), None, "{what}");
        }
        assert_eq!(take_req(&mut g, &batch, t0), Some(("r1".into(), 1)));
        // A rule without a policy takes the agent's: per-signature opens nothing.
        let mut g = Grants::new(Policy::PerSignature);
        let plain = under(Some(applied(3, 1, None)));
        g.open(&VerifiedAssertion::for_tests(), "r2", &plain, t0);
        assert_eq!(take_req(&mut g, &plain, t0), None);
    }

    #[test]
    fn unknown_scope_identity_fails_closed() {
        let mut g = Grants::new("per-peer:60s:process".parse().unwrap());
        // The executable is known; the process identity (pid, start time) is not.
        let anon = Requester {
            pid: None,
            ..Requester::process(1000, 0, "/usr/bin/ssh-keygen")
        };
        let t0 = Instant::now();
        g.open(&VerifiedAssertion::for_tests(), "r", &req("K", &anon), t0);
        assert_eq!(taken(&mut g, "K", &anon, t0), None);
    }

    #[test]
    fn an_unconfirmed_requester_neither_opens_nor_uses_a_grant() {
        use crate::presence::request::Identity;
        let t0 = Instant::now();
        for identity in [Identity::Exited, Identity::Unconfirmed] {
            // Every field matches the grant's; only the identity was not confirmed (its pid
            // may name another process than the one that connected).
            let doubtful = Requester {
                identity,
                ..peer(10, 1)
            };
            let mut g = Grants::new("batch:5:60s:user".parse().unwrap());
            g.open(
                &VerifiedAssertion::for_tests(),
                "r",
                &req("K", &doubtful),
                t0,
            );
            assert_eq!(
                taken(&mut g, "K", &peer(10, 1), t0),
                None,
                "{identity:?} opened none"
            );
            g.open(
                &VerifiedAssertion::for_tests(),
                "r",
                &req("K", &peer(10, 1)),
                t0,
            );
            assert_eq!(
                taken(&mut g, "K", &doubtful, t0),
                None,
                "{identity:?} uses none"
            );
            assert_eq!(taken(&mut g, "K", &peer(10, 1), t0), Some(("r".into(), 3)));
        }
    }
}
