//! Caller rules: which programs may ask for a touch at all, and under which policy.
//!
//! `$AUTHS_HOME/rules.toml` (or `auths agent start --rules FILE`) is an ordered list of
//! `[[rule]]` tables; the first rule that matches a request decides it. A rule matches on any
//! of: the identity key (`key`: a `SHA256:` fingerprint, or the key's comment), the requesting
//! executable (`exe`, an absolute path), its parent's executable (`parent`), the kind of data
//! (`kind`: `sshsig`, `userauth`, `other`), the SSHSIG `namespace`, and for ssh logins the
//! server's `host_key` fingerprint from a verified `session-bind@openssh.com`. Every condition
//! takes one string or a list (any of them); all conditions of a rule must hold. A rule says
//! `action = "allow"` (optionally with a `policy` in the `--policy` syntax and
//! `uv = "required"`) or `action = "deny"`.
//!
//! Without a rules file everyone may ask under the agent's `--policy` ([`Verdict::Unruled`]).
//! With one, a request no rule allows is refused before the key is asked for anything.
//!
//! An `exe` or `parent` condition only matches a requester whose identity was *confirmed*
//! (its details were read while the connecting process was alive): a process that exited, or
//! one the platform cannot confirm, only matches rules without those conditions.
//!
//! The file is read strictly: at most [`MAX_RULES_BYTES`] bytes and [`MAX_RULES`] rules,
//! unknown fields refused, paths absolute, fingerprints `SHA256:` + 43 base64 characters,
//! namespaces of a bounded alphabet. It must belong to the user (or root) and be writable by
//! nobody else, and so must its directory: otherwise another user could choose who may ask.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use thiserror::Error;

use super::policy::{Policy, PolicyError};
use super::prompt::escape_control;
use super::request::{ApprovalRequest, PayloadKind, Requester};

/// File name inside `AUTHS_HOME`.
pub const RULES_FILE: &str = "rules.toml";
/// The largest rules file read.
pub const MAX_RULES_BYTES: usize = 64 * 1024;
/// The most rules a file may hold.
pub const MAX_RULES: usize = 256;
/// The most values one condition may list.
pub const MAX_VALUES: usize = 64;
/// The longest rule name, key comment, namespace.
const MAX_NAME: usize = 64;
const MAX_COMMENT: usize = 256;
const MAX_PATH: usize = 4096;

/// Why a rules file was not taken. The old rules (if any) stay in force.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RulesError {
    /// The file could not be opened or read.
    #[error("cannot read the rules file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Not a regular file (a FIFO, a directory, a device).
    #[error("{0} is not a regular file")]
    NotARegularFile(PathBuf),
    /// The file or its directory belongs to another user.
    #[error("{path} is owned by uid {owner}, neither you (uid {me}) nor root: another user could choose who may ask for a touch; `chown` it to yourself")]
    ForeignOwner {
        /// The file or directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our uid.
        me: u32,
    },
    /// Group or others may write the file or its directory.
    #[error("{path} has mode {mode:o}: group or others may write it, so another user could choose who may ask for a touch; `chmod go-w {path}`")]
    Writable {
        /// The file or directory.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The platform's file protection refused it (Windows ACLs).
    #[error(transparent)]
    Unsafe(#[from] crate::secure_fs::SecureFsError),
    /// Longer than [`MAX_RULES_BYTES`].
    #[error("the rules file is larger than {MAX_RULES_BYTES} bytes")]
    TooLarge,
    /// Not UTF-8.
    #[error("the rules file is not UTF-8 text")]
    NotUtf8,
    /// Not TOML, or not the rules format (the message names the line and the field).
    #[error("the rules file does not parse: {0}")]
    Syntax(String),
    /// More than [`MAX_RULES`] rules.
    #[error("the rules file holds {0} rules; at most {MAX_RULES} are read")]
    TooManyRules(usize),
    /// One rule is wrong.
    #[error("rule {number}{}: {problem}", name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default())]
    Rule {
        /// Its position, from 1.
        number: usize,
        /// Its `name`, escaped.
        name: Option<String>,
        /// What is wrong.
        problem: RuleProblem,
    },
    /// `--rules FILE` names a file that does not exist.
    #[error("the rules file {0} does not exist")]
    Missing(PathBuf),
}

/// What is wrong with one rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RuleProblem {
    /// `exe` or `parent` is not an absolute path.
    #[error("{field} {value:?} is not an absolute path")]
    RelativePath {
        /// The field.
        field: &'static str,
        /// The value, escaped.
        value: String,
    },
    /// A fingerprint that is not `SHA256:` and 43 base64 characters.
    #[error("{field} {value:?} is not a fingerprint of the form SHA256:<43 base64 characters> (as `ssh-keygen -lf` prints it)")]
    Fingerprint {
        /// The field.
        field: &'static str,
        /// The value, escaped.
        value: String,
    },
    /// A namespace that is empty, too long or holds other characters than letters, digits
    /// and `.-_@+`.
    #[error("namespace {0:?} must be 1 to 64 letters, digits or .-_@+")]
    Namespace(String),
    /// Not one of `sshsig`, `userauth`, `other`.
    #[error("kind {0:?} is not one of sshsig, userauth, other")]
    Kind(String),
    /// A name or comment that is empty, too long or holds control characters.
    #[error("{field} {value:?} must be 1 to {max} characters without control characters")]
    Text {
        /// The field.
        field: &'static str,
        /// The value, escaped.
        value: String,
        /// The longest allowed.
        max: usize,
    },
    /// A condition with an empty list or more than [`MAX_VALUES`] values.
    #[error("{0} must list 1 to 64 values")]
    Count(&'static str),
    /// The policy does not parse.
    #[error("policy: {0}")]
    Policy(PolicyError),
    /// `uv` other than `required`.
    #[error("uv {0:?}: the only value is \"required\" (leave it out otherwise)")]
    Uv(String),
    /// `action` other than `allow` or `deny`.
    #[error("action {0:?} is not allow or deny")]
    Action(String),
    /// `policy` or `uv` on a deny rule.
    #[error("a deny rule takes no policy or uv")]
    DenyWithPolicy,
    /// Conditions that no request can meet together.
    #[error("{0}")]
    Contradiction(&'static str),
}

/// One string or a list of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    key: Option<OneOrMany>,
    exe: Option<OneOrMany>,
    parent: Option<OneOrMany>,
    kind: Option<OneOrMany>,
    namespace: Option<OneOrMany>,
    host_key: Option<OneOrMany>,
    action: String,
    policy: Option<String>,
    uv: Option<String>,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The request may ask for a touch.
    Allow {
        /// The policy it is asked under; `None`: the agent's `--policy`.
        policy: Option<Policy>,
        /// The key must verify the user (PIN or built-in UV) for this request.
        uv_required: bool,
    },
    /// Refused at once, without a blink.
    Deny,
}

/// An identity key condition: its fingerprint or its comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMatch {
    /// `SHA256:…`.
    Fingerprint(String),
    /// The comment the key was added with.
    Comment(String),
}

/// One rule, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Position in the file, from 1.
    pub number: usize,
    /// Its `name`.
    pub name: Option<String>,
    /// Any of these identity keys (empty: any key).
    pub keys: Vec<KeyMatch>,
    /// Any of these requester executables.
    pub exes: Vec<String>,
    /// Any of these parent executables.
    pub parents: Vec<String>,
    /// Any of these kinds of data.
    pub kinds: Vec<PayloadKind>,
    /// Any of these SSHSIG namespaces.
    pub namespaces: Vec<String>,
    /// Any of these server host keys (ssh logins).
    pub host_keys: Vec<String>,
    /// What it does.
    pub action: Action,
}

/// What a request is, as rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// `SHA256:…` of the identity key.
    pub key_fingerprint: &'a str,
    /// The identity key's comment.
    pub key_comment: Option<&'a str>,
    /// Who asks.
    pub requester: &'a Requester,
    /// What kind of data.
    pub kind: PayloadKind,
    /// SSHSIG namespace.
    pub namespace: Option<&'a str>,
    /// For an ssh login, the verified server host key.
    pub host_key: Option<&'a str>,
}

impl<'a> Query<'a> {
    /// The query of `request`.
    pub fn of(request: &'a ApprovalRequest) -> Query<'a> {
        Query {
            key_fingerprint: &request.key_fingerprint,
            key_comment: request.key_comment.as_deref(),
            requester: &request.requester,
            kind: request.kind,
            namespace: request.namespace.as_deref(),
            host_key: request.login.as_ref().and_then(|l| l.host_key.as_deref()),
        }
    }
}

/// Which rule of which loaded file: grants opened under a rule serve only requests that the
/// same rule of the same load matched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleRef {
    /// Which load of the rules (counts up on every successful load).
    pub generation: u64,
    /// The rule's position, from 1.
    pub number: usize,
    /// Its `name`.
    pub name: Option<String>,
}

impl RuleRef {
    /// "rule 3 (deny-all)", "rule 2": escaped.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("rule {} ({})", self.number, escape_control(n)),
            None => format!("rule {}", self.number),
        }
    }
}

/// What an allowing rule applies to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRule {
    /// Which rule.
    pub rule: RuleRef,
    /// Its policy; `None`: the agent's.
    pub policy: Option<Policy>,
    /// It requires user verification.
    pub uv_required: bool,
}

/// What the rules say about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No rules file: everyone may ask, under the agent's `--policy`.
    Unruled,
    /// A rule allows it.
    Allow(AppliedRule),
    /// Refused without a blink: by a deny rule (`rule`), or because no rule allows it.
    Deny {
        /// The deny rule that matched; `None` when no rule matched.
        rule: Option<RuleRef>,
        /// The sentence that says why ("refused by rule 3 (deny-all): /usr/bin/python3 is not
        /// allowed to ask for an SSHSIG signature (namespace git)"), peer text escaped.
        reason: String,
    },
}

/// A loaded rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
    source: String,
    origin: Option<PathBuf>,
    generation: u64,
}

fn problem(number: usize, name: &Option<String>, problem: RuleProblem) -> RulesError {
    RulesError::Rule {
        number,
        name: name.as_deref().map(escape_control),
        problem,
    }
}

fn list(field: &'static str, v: Option<OneOrMany>) -> Result<Vec<String>, RuleProblem> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let v = v.into_vec();
    if v.is_empty() || v.len() > MAX_VALUES {
        return Err(RuleProblem::Count(field));
    }
    Ok(v)
}

fn text(field: &'static str, s: &str, max: usize) -> Result<(), RuleProblem> {
    if s.is_empty() || s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(RuleProblem::Text {
            field,
            value: escape_control(s),
            max,
        });
    }
    Ok(())
}

/// True for `SHA256:` followed by 43 characters of unpadded standard base64 (how OpenSSH
/// prints a SHA-256 fingerprint).
pub fn is_fingerprint(s: &str) -> bool {
    s.strip_prefix("SHA256:").is_some_and(|b| {
        b.len() == 43
            && b.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
    })
}

fn fingerprint(field: &'static str, s: String) -> Result<String, RuleProblem> {
    if is_fingerprint(&s) {
        Ok(s)
    } else {
        Err(RuleProblem::Fingerprint {
            field,
            value: escape_control(&s),
        })
    }
}

fn absolute(field: &'static str, s: String) -> Result<String, RuleProblem> {
    text(field, &s, MAX_PATH)?;
    // A Unix path starts with `/` everywhere; `C:\…` is absolute on Windows only.
    if s.starts_with('/') || Path::new(&s).is_absolute() {
        Ok(s)
    } else {
        Err(RuleProblem::RelativePath {
            field,
            value: escape_control(&s),
        })
    }
}

/// True for a namespace the rules accept: 1 to 64 of letters, digits and `.-_@+`.
pub fn is_namespace(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-_@+".contains(&c))
}

/// `sshsig`, `userauth`, `other`.
pub fn parse_kind(s: &str) -> Result<PayloadKind, RuleProblem> {
    match s {
        "sshsig" => Ok(PayloadKind::Sshsig),
        "userauth" => Ok(PayloadKind::Userauth),
        "other" => Ok(PayloadKind::Other),
        other => Err(RuleProblem::Kind(escape_control(other))),
    }
}

/// The name a kind has in a rules file.
pub fn kind_name(k: PayloadKind) -> &'static str {
    match k {
        PayloadKind::Sshsig => "sshsig",
        PayloadKind::Userauth => "userauth",
        PayloadKind::Other => "other",
    }
}

impl Rule {
    fn from_raw(number: usize, raw: RawRule) -> Result<Rule, RulesError> {
        let name = raw.name.clone();
        let err = |p| problem(number, &name, p);
        if let Some(n) = &raw.name {
            text("name", n, MAX_NAME).map_err(err)?;
        }
        let keys = list("key", raw.key)
            .and_then(|v| {
                v.into_iter()
                    .map(|k| {
                        if k.starts_with("SHA256:") {
                            fingerprint("key", k).map(KeyMatch::Fingerprint)
                        } else {
                            text("key comment", &k, MAX_COMMENT).map(|()| KeyMatch::Comment(k))
                        }
                    })
                    .collect()
            })
            .map_err(err)?;
        let paths = |field, v| -> Result<Vec<String>, RuleProblem> {
            list(field, v)?
                .into_iter()
                .map(|p| absolute(field, p))
                .collect()
        };
        let exes = paths("exe", raw.exe).map_err(err)?;
        let parents = paths("parent", raw.parent).map_err(err)?;
        let kinds: Vec<PayloadKind> = list("kind", raw.kind)
            .and_then(|v| v.iter().map(|k| parse_kind(k)).collect())
            .map_err(err)?;
        let namespaces: Vec<String> = list("namespace", raw.namespace)
            .and_then(|v| {
                v.into_iter()
                    .map(|ns| {
                        if is_namespace(&ns) {
                            Ok(ns)
                        } else {
                            Err(RuleProblem::Namespace(escape_control(&ns)))
                        }
                    })
                    .collect()
            })
            .map_err(err)?;
        let host_keys: Vec<String> = list("host_key", raw.host_key)
            .and_then(|v| v.into_iter().map(|h| fingerprint("host_key", h)).collect())
            .map_err(err)?;
        if !namespaces.is_empty() && !kinds.is_empty() && !kinds.contains(&PayloadKind::Sshsig) {
            return Err(err(RuleProblem::Contradiction(
                "namespace applies to SSHSIG signatures only, and kind leaves sshsig out",
            )));
        }
        if !host_keys.is_empty() && !kinds.is_empty() && !kinds.contains(&PayloadKind::Userauth) {
            return Err(err(RuleProblem::Contradiction(
                "host_key applies to ssh logins only, and kind leaves userauth out",
            )));
        }
        if !host_keys.is_empty() && !namespaces.is_empty() {
            return Err(err(RuleProblem::Contradiction(
                "host_key (ssh logins) and namespace (SSHSIG signatures) never hold together",
            )));
        }
        let action = match raw.action.as_str() {
            "deny" => {
                if raw.policy.is_some() || raw.uv.is_some() {
                    return Err(err(RuleProblem::DenyWithPolicy));
                }
                Action::Deny
            }
            "allow" => {
                let policy = raw
                    .policy
                    .as_deref()
                    .map(str::parse::<Policy>)
                    .transpose()
                    .map_err(|e| err(RuleProblem::Policy(e)))?;
                let uv_required = match raw.uv.as_deref() {
                    None => false,
                    Some("required") => true,
                    Some(other) => return Err(err(RuleProblem::Uv(escape_control(other)))),
                };
                Action::Allow {
                    policy,
                    uv_required,
                }
            }
            other => return Err(err(RuleProblem::Action(escape_control(other)))),
        };
        Ok(Rule {
            number,
            name,
            keys,
            exes,
            parents,
            kinds,
            namespaces,
            host_keys,
            action,
        })
    }

    /// True when every condition of this rule holds for `q`.
    pub fn matches(&self, q: &Query<'_>) -> bool {
        let confirmed = q.requester.is_confirmed();
        let any = |list: &[String], value: Option<&str>| {
            list.is_empty() || value.is_some_and(|v| list.iter().any(|x| x == v))
        };
        let key_ok = self.keys.is_empty()
            || self.keys.iter().any(|k| match k {
                KeyMatch::Fingerprint(f) => f == q.key_fingerprint,
                KeyMatch::Comment(c) => Some(c.as_str()) == q.key_comment,
            });
        // A path condition needs a confirmed requester: an exited or unconfirmed one may have
        // been given another process's details.
        let exe_ok =
            self.exes.is_empty() || (confirmed && any(&self.exes, q.requester.exe.as_deref()));
        let parent_ok = self.parents.is_empty()
            || (confirmed && any(&self.parents, q.requester.parent_exe.as_deref()));
        key_ok
            && exe_ok
            && parent_ok
            && (self.kinds.is_empty() || self.kinds.contains(&q.kind))
            && any(
                &self.namespaces,
                q.namespace.filter(|_| q.kind == PayloadKind::Sshsig),
            )
            && any(
                &self.host_keys,
                q.host_key.filter(|_| q.kind == PayloadKind::Userauth),
            )
    }

    /// The rule as `auths agent rules --json` shows it.
    pub fn to_json(&self) -> serde_json::Value {
        let mut o = serde_json::Map::new();
        o.insert("number".into(), self.number.into());
        if let Some(n) = &self.name {
            o.insert("name".into(), escape_control(n).into());
        }
        let esc = |v: &[String]| -> serde_json::Value {
            v.iter()
                .map(|s| escape_control(s))
                .collect::<Vec<_>>()
                .into()
        };
        if !self.keys.is_empty() {
            let keys: Vec<String> = self
                .keys
                .iter()
                .map(|k| match k {
                    KeyMatch::Fingerprint(f) | KeyMatch::Comment(f) => f.clone(),
                })
                .collect();
            o.insert("key".into(), esc(&keys));
        }
        for (field, v) in [
            ("exe", &self.exes),
            ("parent", &self.parents),
            ("namespace", &self.namespaces),
            ("host_key", &self.host_keys),
        ] {
            if !v.is_empty() {
                o.insert(field.into(), esc(v));
            }
        }
        if !self.kinds.is_empty() {
            let kinds: Vec<&str> = self.kinds.iter().map(|k| kind_name(*k)).collect();
            o.insert("kind".into(), kinds.into());
        }
        match &self.action {
            Action::Deny => {
                o.insert("action".into(), "deny".into());
            }
            Action::Allow {
                policy,
                uv_required,
            } => {
                o.insert("action".into(), "allow".into());
                if let Some(p) = policy {
                    o.insert("policy".into(), p.to_string().into());
                }
                if *uv_required {
                    o.insert("uv".into(), "required".into());
                }
            }
        }
        serde_json::Value::Object(o)
    }

    /// One line for people: "rule 2 (git-signing): exe /usr/bin/ssh-keygen, namespace git →
    /// allow (per-signature)". Escaped.
    pub fn describe(&self) -> String {
        let mut conds = Vec::new();
        let join = |v: &[String]| {
            v.iter()
                .map(|s| escape_control(s))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        if !self.keys.is_empty() {
            let keys: Vec<String> = self
                .keys
                .iter()
                .map(|k| match k {
                    KeyMatch::Fingerprint(f) => f.clone(),
                    KeyMatch::Comment(c) => format!("comment {c}"),
                })
                .collect();
            conds.push(format!("key {}", join(&keys)));
        }
        for (field, v) in [
            ("exe", &self.exes),
            ("parent", &self.parents),
            ("namespace", &self.namespaces),
            ("host_key", &self.host_keys),
        ] {
            if !v.is_empty() {
                conds.push(format!("{field} {}", join(v)));
            }
        }
        if !self.kinds.is_empty() {
            let kinds: Vec<&str> = self.kinds.iter().map(|k| kind_name(*k)).collect();
            conds.push(format!("kind {}", kinds.join(" | ")));
        }
        let conds = if conds.is_empty() {
            "every request".to_owned()
        } else {
            conds.join(", ")
        };
        let label = RuleRef {
            generation: 0,
            number: self.number,
            name: self.name.clone(),
        }
        .label();
        format!(
            "{label}: {conds} \u{2192} {}",
            describe_action(&self.action)
        )
    }
}

/// "allow (batch:20:600s:process, uv required)", "allow (the agent's policy)", "deny".
pub fn describe_action(a: &Action) -> String {
    match a {
        Action::Deny => "deny".into(),
        Action::Allow {
            policy,
            uv_required,
        } => {
            let p = policy.map_or("the agent's policy".to_owned(), |p| p.to_string());
            if *uv_required {
                format!("allow ({p}, uv required)")
            } else {
                format!("allow ({p})")
            }
        }
    }
}

/// "/usr/bin/python3 (pid 42)" or "pid 42 (unconfirmed)": who asks, for a refusal, escaped.
fn who(r: &Requester) -> String {
    let pid = r
        .pid
        .map_or("pid unknown".to_owned(), |p| format!("pid {p}"));
    match (&r.exe, r.is_confirmed()) {
        (Some(exe), true) => format!("{} ({pid})", escape_control(exe)),
        _ => format!("a process whose executable could not be confirmed ({pid})"),
    }
}

/// "an SSHSIG signature (namespace git) with key SHA256:…": what was asked, escaped.
fn what(q: &Query<'_>) -> String {
    let what = match q.kind {
        PayloadKind::Sshsig => match q.namespace {
            Some(ns) => format!("an SSHSIG signature (namespace {})", escape_control(ns)),
            None => "an SSHSIG signature".to_owned(),
        },
        PayloadKind::Userauth => match q.host_key {
            Some(h) => format!("an ssh login to host key {}", escape_control(h)),
            None => "an ssh login (host not identified)".to_owned(),
        },
        PayloadKind::Other => "a signature over unknown data".to_owned(),
    };
    format!("{what} with key {}", escape_control(q.key_fingerprint))
}

impl Rules {
    /// Parse and validate a rules file's text.
    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        if text.len() > MAX_RULES_BYTES {
            return Err(RulesError::TooLarge);
        }
        let raw: RawFile =
            toml::from_str(text).map_err(|e| RulesError::Syntax(escape_control(e.message())))?;
        if raw.rule.len() > MAX_RULES {
            return Err(RulesError::TooManyRules(raw.rule.len()));
        }
        let rules = raw
            .rule
            .into_iter()
            .enumerate()
            .map(|(i, r)| Rule::from_raw(i + 1, r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rules {
            rules,
            source: text.to_owned(),
            origin: None,
            generation: 0,
        })
    }

    /// Read `path` (owned by the user or root, not writable by group or others, nor is its
    /// directory; at most [`MAX_RULES_BYTES`]) and parse it.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = read_rules_file(path)?;
        let mut rules = Rules::parse(&text)?;
        rules.origin = Some(path.to_path_buf());
        Ok(rules)
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The text they were parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The file they were read from.
    pub fn origin(&self) -> Option<&Path> {
        self.origin.as_deref()
    }

    /// Which load they are.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The first rule that matches `q`, if any.
    pub fn first_match(&self, q: &Query<'_>) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(q))
    }

    /// What these rules say about `q`: the first match decides; no match refuses.
    pub fn evaluate(&self, q: &Query<'_>) -> Verdict {
        let Some(rule) = self.first_match(q) else {
            return Verdict::Deny {
                rule: None,
                reason: format!(
                    "refused: no caller rule allows {} to ask for {}",
                    who(q.requester),
                    what(q)
                ),
            };
        };
        let rule_ref = RuleRef {
            generation: self.generation,
            number: rule.number,
            name: rule.name.clone(),
        };
        match &rule.action {
            Action::Deny => Verdict::Deny {
                reason: format!(
                    "refused by {}: {} is not allowed to ask for {}",
                    rule_ref.label(),
                    who(q.requester),
                    what(q)
                ),
                rule: Some(rule_ref),
            },
            Action::Allow {
                policy,
                uv_required,
            } => Verdict::Allow(AppliedRule {
                rule: rule_ref,
                policy: *policy,
                uv_required: *uv_required,
            }),
        }
    }
}

/// The rules file's text, after the owner and mode checks on the file and its directory.
fn read_rules_file(path: &Path) -> Result<String, RulesError> {
    use std::io::Read;
    let read_err = |source| RulesError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A FIFO in the file's place is refused below, never waited on.
        opts.custom_flags(nix::libc::O_NONBLOCK);
    }
    let f = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RulesError::Missing(path.to_path_buf()))
        }
        Err(e) => return Err(read_err(e)),
    };
    let md = f.metadata().map_err(read_err)?;
    if !md.is_file() {
        return Err(RulesError::NotARegularFile(path.to_path_buf()));
    }
    check_protection(path, &md)?;
    let mut bytes = Vec::new();
    f.take(MAX_RULES_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() > MAX_RULES_BYTES {
        return Err(RulesError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| RulesError::NotUtf8)
}

/// Unix: the opened file, and the directory its real path lies in, belong to us or root and
/// are writable by nobody else.
#[cfg(unix)]
fn check_protection(path: &Path, md: &std::fs::Metadata) -> Result<(), RulesError> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let check = |p: &Path, md: &std::fs::Metadata| {
        if md.uid() != me && md.uid() != 0 {
            return Err(RulesError::ForeignOwner {
                path: p.to_path_buf(),
                owner: md.uid(),
                me,
            });
        }
        let mode = md.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(RulesError::Writable {
                path: p.to_path_buf(),
                mode,
            });
        }
        Ok(())
    };
    check(path, md)?;
    let real = std::fs::canonicalize(path).map_err(|source| RulesError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(dir) = real.parent() {
        let dmd = std::fs::metadata(dir).map_err(|source| RulesError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        check(dir, &dmd)?;
    }
    Ok(())
}

/// Elsewhere: the file must be private as `AUTHS_HOME`'s files are (Windows: its ACL).
#[cfg(not(unix))]
fn check_protection(path: &Path, _md: &std::fs::Metadata) -> Result<(), RulesError> {
    crate::secure_fs::check_private(path, false)?;
    Ok(())
}

/// The rules in force, swapped whole on reload; requests read a snapshot.
#[derive(Debug)]
pub struct RulesHolder {
    path: PathBuf,
    /// `--rules FILE` was given: the file must exist. Otherwise `$AUTHS_HOME/rules.toml` is
    /// optional, and without it everyone may ask.
    explicit: bool,
    current: RwLock<Option<Arc<Rules>>>,
    generation: std::sync::atomic::AtomicU64,
}

/// What a (re)load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// `n` rules from `path` are in force.
    Rules {
        /// How many.
        count: usize,
        /// From where.
        path: PathBuf,
    },
    /// There is no rules file: everyone may ask under the agent's policy.
    NoFile(PathBuf),
}

impl std::fmt::Display for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loaded::Rules { count, path } => write!(
                f,
                "{count} caller rule{} from {} in force",
                if *count == 1 { "" } else { "s" },
                escape_control(&path.display().to_string())
            ),
            Loaded::NoFile(path) => write!(
                f,
                "no rules file at {}: every program may ask, under the agent's policy",
                escape_control(&path.display().to_string())
            ),
        }
    }
}

impl RulesHolder {
    /// Holds the rules of `path` once [`RulesHolder::reload`] reads them; `explicit` when the
    /// user named the file (`--rules`), so that a missing one is an error.
    pub fn new(path: PathBuf, explicit: bool) -> RulesHolder {
        RulesHolder {
            path,
            explicit,
            current: RwLock::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A holder with these rules in force (tests, `auths agent rules test`).
    pub fn with_rules(rules: Rules) -> RulesHolder {
        let h = RulesHolder::new(rules.origin.clone().unwrap_or_default(), true);
        h.install(rules);
        h
    }

    /// The file the rules come from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn install(&self, mut rules: Rules) {
        use std::sync::atomic::Ordering;
        rules.generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        // A plain store: nothing that holds the lock can panic half-way, so a poisoned lock
        // is still sound.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(rules));
    }

    /// Read the file again; on any error the rules in force stay and the error says why.
    pub fn reload(&self) -> Result<Loaded, RulesError> {
        match Rules::load(&self.path) {
            Ok(rules) => {
                let count = rules.rules.len();
                self.install(rules);
                Ok(Loaded::Rules {
                    count,
                    path: self.path.clone(),
                })
            }
            Err(RulesError::Missing(_)) if !self.explicit => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(Loaded::NoFile(self.path.clone()))
            }
            Err(e) => Err(e),
        }
    }

    /// The rules in force, if any.
    pub fn current(&self) -> Option<Arc<Rules>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What the rules in force say about `request`.
    pub fn verdict(&self, request: &ApprovalRequest) -> Verdict {
        match self.current() {
            None => Verdict::Unruled,
            Some(rules) => rules.evaluate(&Query::of(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::request::Identity;

    const FP: &str = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
    const FP2: &str = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";

    fn keygen() -> Requester {
        Requester {
            parent_exe: Some("/usr/bin/git".into()),
            parent_pid: Some(1),
            ..Requester::process(1000, 7, "/usr/bin/ssh-keygen")
        }
    }

    fn q<'a>(r: &'a Requester, kind: PayloadKind, ns: Option<&'a str>) -> Query<'a> {
        Query {
            key_fingerprint: FP,
            key_comment: Some("work"),
            requester: r,
            kind,
            namespace: ns,
            host_key: None,
        }
    }

    fn problem_of(text: &str) -> RuleProblem {
        match Rules::parse(text) {
            Err(RulesError::Rule { problem, .. }) => problem,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn each_bad_rule_has_its_typed_error() {
        type Case = (&'static str, fn(&RuleProblem) -> bool);
        let cases: &[Case] = &[
            ("[[rule]]\nexe = \"ssh-keygen\"\naction = \"allow\"", |p| {
                matches!(p, RuleProblem::RelativePath { field: "exe", .. })
            }),
            ("[[rule]]\nparent = \"bin/git\"\naction = \"allow\"", |p| {
                matches!(
                    p,
                    RuleProblem::RelativePath {
                        field: "parent",
                        ..
                    }
                )
            }),
            (
                "[[rule]]\nkey = \"SHA256:short\"\naction = \"allow\"",
                |p| matches!(p, RuleProblem::Fingerprint { field: "key", .. }),
            ),
            ("[[rule]]\nhost_key = \"MD5:aa\"\naction = \"allow\"", |p| {
                matches!(
                    p,
                    RuleProblem::Fingerprint {
                        field: "host_key",
                        ..
                    }
                )
            }),
            ("[[rule]]\nnamespace = \"g i t\"\naction = \"allow\"", |p| {
                matches!(p, RuleProblem::Namespace(_))
            }),
            ("[[rule]]\nnamespace = \"\"\naction = \"allow\"", |p| {
                matches!(p, RuleProblem::Namespace(_))
            }),
            ("[[rule]]\nkind = \"x509\"\naction = \"allow\"", |p| {
                matches!(p, RuleProblem::Kind(_))
            }),
            (
                "[[rule]]\nname = \"a\\u001b[2J\"\naction = \"allow\"",
                |p| matches!(p, RuleProblem::Text { field: "name", value, .. } if !value.contains('\x1b')),
            ),
            ("[[rule]]\nexe = []\naction = \"allow\"", |p| {
                matches!(p, RuleProblem::Count("exe"))
            }),
            (
                "[[rule]]\naction = \"allow\"\npolicy = \"batch:0:1s\"",
                |p| matches!(p, RuleProblem::Policy(PolicyError::BatchSize(_))),
            ),
            ("[[rule]]\naction = \"allow\"\nuv = \"preferred\"", |p| {
                matches!(p, RuleProblem::Uv(_))
            }),
            ("[[rule]]\naction = \"maybe\"", |p| {
                matches!(p, RuleProblem::Action(_))
            }),
            (
                "[[rule]]\naction = \"deny\"\npolicy = \"per-signature\"",
                |p| matches!(p, RuleProblem::DenyWithPolicy),
            ),
            (
                "[[rule]]\nkind = \"userauth\"\nnamespace = \"git\"\naction = \"allow\"",
                |p| matches!(p, RuleProblem::Contradiction(_)),
            ),
        ];
        for (text, ok) in cases {
            let p = problem_of(text);
            assert!(ok(&p), "{text}: {p:?}");
        }
        let e = Rules::parse("[[rule]]\nname = \"x\"\nexe = \"rel\"\naction = \"allow\"")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "rule 1 (x): exe \"rel\" is not an absolute path");
        for text in [
            "[[rule]]\naction = \"allow\"\ncolour = \"red\"",
            "[[rules]]\naction = \"allow\"",
            "[[rule]]\nexe = \"/usr/bin/ssh\"",
            "[[rule]]\nexe = 5\naction = \"allow\"",
            "not toml at all [",
        ] {
            assert!(
                matches!(Rules::parse(text), Err(RulesError::Syntax(_))),
                "{text}"
            );
        }
        let many = "[[rule]]\naction = \"deny\"\n".repeat(MAX_RULES + 1);
        assert!(matches!(
            Rules::parse(&many),
            Err(RulesError::TooManyRules(n)) if n == MAX_RULES + 1
        ));
        let big = format!("# {}\n", "x".repeat(MAX_RULES_BYTES));
        assert!(matches!(Rules::parse(&big), Err(RulesError::TooLarge)));
        // No rules at all: a file that allows nothing.
        assert!(Rules::parse("").unwrap().rules().is_empty());
    }

    #[test]
    fn first_match_wins_and_conditions_all_hold() {
        let rules = Rules::parse(&format!(
            r#"
[[rule]]
name = "git"
exe = "/usr/bin/ssh-keygen"
parent = ["/usr/bin/git", "/usr/lib/git-core/git"]
namespace = "git"
action = "allow"

[[rule]]
name = "logins"
exe = "/usr/bin/ssh"
host_key = ["{FP}", "{FP2}"]
action = "allow"
policy = "batch:20:10m:process"
uv = "required"

[[rule]]
name = "work key elsewhere"
key = "work"
kind = "other"
action = "deny"

[[rule]]
name = "files"
namespace = "file"
action = "allow"

[[rule]]
name = "deny-all"
action = "deny"
"#
        ))
        .unwrap();
        let kg = keygen();
        let allowed = |v: Verdict| match v {
            Verdict::Allow(a) => Some((a.rule.number, a.policy, a.uv_required)),
            Verdict::Deny { .. } | Verdict::Unruled => None,
        };
        assert_eq!(
            allowed(rules.evaluate(&q(&kg, PayloadKind::Sshsig, Some("git")))),
            Some((1, None, false))
        );
        // Another parent: rule 1 does not hold; nothing else allows git.
        let hook = Requester {
            parent_exe: Some("/tmp/hook".into()),
            ..keygen()
        };
        let Verdict::Deny { rule, reason } =
            rules.evaluate(&q(&hook, PayloadKind::Sshsig, Some("git")))
        else {
            panic!("allowed");
        };
        assert_eq!(rule.map(|r| r.number), Some(5));
        assert_eq!(
            reason,
            format!("refused by rule 5 (deny-all): /usr/bin/ssh-keygen (pid 7) is not allowed to ask for an SSHSIG signature (namespace git) with key {FP}")
        );
        // Namespace file: rule 4, whoever asks.
        let py = Requester::process(1000, 9, "/usr/bin/python3\x1b[2J");
        assert_eq!(
            allowed(rules.evaluate(&q(&py, PayloadKind::Sshsig, Some("file")))),
            Some((4, None, false))
        );
        let Verdict::Deny { reason, .. } =
            rules.evaluate(&q(&py, PayloadKind::Sshsig, Some("git")))
        else {
            panic!("allowed");
        };
        assert!(!reason.contains('\x1b'), "{reason}");
        // Logins: only ssh, only to the listed host keys, only userauth.
        let ssh = Requester::process(1000, 11, "/usr/bin/ssh");
        let login = |host: Option<&'static str>| Query {
            host_key: host,
            ..q(&ssh, PayloadKind::Userauth, None)
        };
        let batch: Policy = "batch:20:10m:process".parse().unwrap();
        assert_eq!(
            allowed(rules.evaluate(&login(Some(FP2)))),
            Some((2, Some(batch), true))
        );
        assert_eq!(allowed(rules.evaluate(&login(None))), None);
        assert_eq!(
            allowed(rules.evaluate(&Query {
                host_key: Some(FP),
                ..q(&ssh, PayloadKind::Sshsig, Some("file"))
            })),
            Some((4, None, false)),
            "a host key on an SSHSIG request is no login"
        );
        // The key comment: rule 3 denies before rule 5 would.
        let Verdict::Deny { rule, .. } = rules.evaluate(&q(&py, PayloadKind::Other, None)) else {
            panic!("allowed");
        };
        assert_eq!(rule.map(|r| r.number), Some(3));
    }

    #[test]
    fn a_path_condition_needs_a_confirmed_requester() {
        let rules = Rules::parse(
            "[[rule]]\nexe = \"/usr/bin/ssh-keygen\"\naction = \"allow\"\n\
             [[rule]]\nkind = \"sshsig\"\nnamespace = \"file\"\naction = \"allow\"",
        )
        .unwrap();
        for identity in [Identity::Exited, Identity::Unconfirmed] {
            let doubtful = Requester {
                identity,
                ..keygen()
            };
            let r = rules.evaluate(&q(&doubtful, PayloadKind::Sshsig, Some("git")));
            assert!(matches!(r, Verdict::Deny { rule: None, .. }), "{r:?}");
            let r = rules.evaluate(&q(&doubtful, PayloadKind::Sshsig, Some("file")));
            assert!(
                matches!(&r, Verdict::Allow(a) if a.rule.number == 2),
                "{r:?}"
            );
        }
        let r = rules.evaluate(&q(&keygen(), PayloadKind::Sshsig, Some("git")));
        assert!(matches!(&r, Verdict::Allow(a) if a.rule.number == 1));
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_may_write_keeps_the_old_rules() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let p = d.path().join(RULES_FILE);
        let h = RulesHolder::new(p.clone(), false);
        assert_eq!(h.reload().unwrap(), Loaded::NoFile(p.clone()));
        assert!(h.current().is_none());
        std::fs::write(&p, "[[rule]]\naction = \"deny\"\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(h.reload(), Ok(Loaded::Rules { count: 1, .. })));
        let first = h.current().unwrap();
        assert_eq!(first.generation(), 1);
        std::fs::write(&p, "[[rule]]\naction = \"allow\"\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o664)).unwrap();
        assert!(matches!(
            h.reload(),
            Err(RulesError::Writable { mode: 0o664, .. })
        ));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(h.reload(), Err(RulesError::Writable { .. })));
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(&p, "[[rule]]\naction = \"allow\"\nfoo = 1\n").unwrap();
        assert!(matches!(h.reload(), Err(RulesError::Syntax(_))));
        assert_eq!(h.current(), Some(first), "the old rules stay");
        let fifo = d.path().join("fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(
            Rules::load(&fifo),
            Err(RulesError::NotARegularFile(_))
        ));
        let explicit = RulesHolder::new(d.path().join("absent.toml"), true);
        assert!(matches!(explicit.reload(), Err(RulesError::Missing(_))));
    }
}
