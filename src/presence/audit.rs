//! Receipts: every signature and every denial, appended to `$AUTHS_HOME/audit.jsonl` (0600,
//! append-only, one JSON object per line, never a secret). Approvals keep the client data,
//! authenticator data, assertion signature and credential id, so `auths audit verify` can
//! prove offline, against the enrolled keys, that every signature had a touch behind it.
//!
//! The log is a hash chain (format version 2): every line carries `"v":2` and `"prev"`, the
//! SHA-256 of the exact bytes of the line before it (32 zero bytes for the first line of a
//! log). Enrollments and removals are lines of the chain too, and the chain begins with a
//! `chain_started` line that names the enrollments of that moment. The client data of every
//! touch carries the chain head when the touch was asked for, so the security key's signature
//! commits to every line before it: a line deleted, inserted, reordered or edited before the
//! last touch breaks either a `prev` or a touch's commitment, and [`verify_chain`] says where.
//! Lines after the last touch are reported as not yet anchored. Older logs (lines without `v`)
//! are read as before and reported as unanchored.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::challenge::{ClientData, GrantTerms};
use super::enrollment::Enrollment;
use super::group_commit::GroupCommit;
use super::policy::{PolicyError, Scope};
use super::request::{ApprovalRequest, PayloadKind, Requester};
use super::touch::{self, Credentials, TouchEvidence};
use crate::secure_fs::{self, SecureFsError};

/// File name inside `AUTHS_HOME`.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// The lock file that serialises appends (the agent and `auths token` both write).
const AUDIT_LOCK: &str = "audit.lock";

/// Format version of chained lines (`"v"`); lines without `v` are the older, unchained format.
pub const CHAIN_VERSION: u32 = 2;

/// The chain head of an empty log.
pub const GENESIS: [u8; 32] = [0; 32];

/// Longest line read back from the log (a receipt is a few KiB).
const MAX_LINE: usize = 1 << 20;

/// SHA-256 of the exact bytes of one line, without its newline: what the next line's `prev`
/// and a touch's `chain` name.
pub fn line_hash(raw: &str) -> [u8; 32] {
    Sha256::digest(raw.as_bytes()).into()
}

/// A line of the chain that is not a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ChainEvent {
    /// The first line of the chain: the enrollments in tokens.json at that moment, taken as
    /// they were, and how many older-format lines come before it.
    ChainStarted {
        /// Unix time.
        time: u64,
        /// The enrolled credentials when the chain began.
        enrollments: Vec<Enrollment>,
        /// Lines of the older format before this one.
        #[serde(default)]
        older_lines: usize,
    },
    /// `auths token enroll` added a credential.
    Enrolled {
        /// Unix time.
        time: u64,
        /// What was enrolled, with its attestation.
        enrollment: Box<Enrollment>,
    },
    /// `auths token remove` removed one.
    Removed {
        /// Unix time.
        time: u64,
        /// The enrollment's id.
        id: String,
        /// Its credential id.
        #[serde(with = "hex::serde")]
        credential_id: Vec<u8>,
    },
}

impl ChainEvent {
    /// An enrollment, stamped now.
    pub fn enrolled(enrollment: &Enrollment) -> ChainEvent {
        ChainEvent::Enrolled {
            time: unix_now(),
            enrollment: Box::new(enrollment.clone()),
        }
    }

    /// A removal, stamped now.
    pub fn removed(enrollment: &Enrollment) -> ChainEvent {
        ChainEvent::Removed {
            time: unix_now(),
            id: enrollment.id.clone(),
            credential_id: enrollment.credential_id.clone(),
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What one line of the log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A receipt.
    Receipt(Box<Receipt>),
    /// An enrollment, a removal, the chain's start.
    Event(Box<ChainEvent>),
}

/// One line of the log as read: its number, its exact bytes' hash, its format and what it holds
/// (or why it does not parse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLine {
    /// Line number in the file (1-based).
    pub number: usize,
    /// SHA-256 of the line's bytes.
    pub hash: [u8; 32],
    /// Format version: 1 for the older format, [`CHAIN_VERSION`] for chained lines.
    pub version: u32,
    /// The hash of the line before, as this line names it (chained lines only).
    pub prev: Option<[u8; 32]>,
    /// The receipt or event, or why the line does not parse.
    pub entry: Result<Entry, String>,
}

/// The line as written: version, the previous line's hash, then the receipt's or the event's
/// own members.
#[derive(Serialize)]
struct LineOut<'a, T: Serialize> {
    v: u32,
    prev: String,
    #[serde(flatten)]
    body: &'a T,
}

/// Parse one line of the log (its bytes, without the newline).
pub fn parse_line(number: usize, raw: &str) -> ChainLine {
    let hash = line_hash(raw);
    let mut line = ChainLine {
        number,
        hash,
        version: 1,
        prev: None,
        entry: Err(String::new()),
    };
    let mut map: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(raw) {
        Ok(m) => m,
        Err(e) => {
            line.entry = Err(e.to_string());
            return line;
        }
    };
    let Some(v) = map.remove("v") else {
        line.entry = serde_json::from_value(serde_json::Value::Object(map))
            .map(|r| Entry::Receipt(Box::new(r)))
            .map_err(|e| e.to_string());
        return line;
    };
    line.version = match v.as_u64() {
        Some(v) if v == u64::from(CHAIN_VERSION) => CHAIN_VERSION,
        _ => {
            line.entry = Err(format!(
                "format version {v} is not one this auths reads ({CHAIN_VERSION})"
            ));
            return line;
        }
    };
    line.prev = map
        .remove("prev")
        .and_then(|p| p.as_str().and_then(|p| hex::decode(p).ok()))
        .and_then(|p| <[u8; 32]>::try_from(p).ok());
    if line.prev.is_none() {
        line.entry = Err("a chained line without a 32-byte hex `prev`".into());
        return line;
    }
    let body = serde_json::Value::Object(map);
    line.entry = if body.get("event").is_some() {
        serde_json::from_value(body).map(|e| Entry::Event(Box::new(e)))
    } else {
        serde_json::from_value(body).map(|r| Entry::Receipt(Box::new(r)))
    }
    .map_err(|e| e.to_string());
    line
}

/// Parse the text of a log into its lines (blank lines skipped, numbered from 1).
pub fn parse_chain(text: &str) -> Vec<ChainLine> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_line(i + 1, l))
        .collect()
}

/// What happened to a request, in one word (for listings and findings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A verified touch approved this request.
    Approved,
    /// An open grant, opened by an earlier verified touch, covered this request.
    Granted,
    /// Refused: no touch, a failed verification, a cancelled request.
    Denied,
}

/// What a receipt shows for its request: the touch, the grant use, or the denial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Evidence {
    /// A verified touch approved this request; the key's answer, to verify again offline.
    Approved {
        /// What the key answered.
        #[serde(flatten)]
        touch: TouchEvidence,
        /// The approving credential lives on the virtual key.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        virtual_key: bool,
        /// The key verified the user too (PIN or built-in UV): the UV flag of the signed
        /// authenticatorData, which `auths audit verify` checks.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        user_verified: bool,
    },
    /// Covered by the grant that the touch of receipt `grant_of` opened.
    Granted {
        /// Receipt id of the touch whose grant covered this request.
        grant_of: String,
    },
    /// Refused; nothing was signed.
    Denied,
}

impl Evidence {
    /// The outcome in one word.
    pub fn outcome(&self) -> Outcome {
        match self {
            Evidence::Approved { .. } => Outcome::Approved,
            Evidence::Granted { .. } => Outcome::Granted,
            Evidence::Denied => Outcome::Denied,
        }
    }
}

/// One line of the audit log. Written once per request, after its signature was made (or was
/// not): `signed` is true only when the agent holds a signature over the request's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Random id, referenced by grants.
    pub id: String,
    /// Unix time.
    pub time: u64,
    /// Identity key fingerprint.
    pub key: String,
    /// SHA-256 of the bytes to sign, hex.
    pub digest: String,
    /// SSHSIG namespace, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// What kind of bytes.
    #[serde(default)]
    pub kind: PayloadKind,
    /// Who asked.
    pub peer: Requester,
    /// The touch, the grant use or the denial.
    #[serde(flatten)]
    pub evidence: Evidence,
    /// The signature was made.
    #[serde(default)]
    pub signed: bool,
    /// Why nothing was signed (denials, and approvals whose signature failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The caller rule that allowed or refused the request ("rule 3 (deny-all)").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

impl Receipt {
    /// The receipt of `request` under receipt id `id`, stamped now.
    pub fn new(
        id: &str,
        request: &ApprovalRequest,
        evidence: Evidence,
        signed: bool,
        reason: Option<String>,
    ) -> Receipt {
        Receipt {
            id: id.to_owned(),
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            key: request.key_fingerprint.clone(),
            digest: hex::encode(request.data_digest),
            namespace: request.namespace.clone(),
            kind: request.kind,
            peer: request.requester.clone(),
            evidence,
            signed,
            reason,
            rule: request.rule.as_ref().map(|r| r.rule.label()),
        }
    }

    /// The outcome in one word.
    pub fn outcome(&self) -> Outcome {
        self.evidence.outcome()
    }

    /// The request this receipt is about, as the client data of its touch must bind it.
    pub fn request(&self) -> Result<ApprovalRequest, String> {
        let data_digest: [u8; 32] = hex::decode(&self.digest)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or("digest is not 32 bytes of hex")?;
        Ok(ApprovalRequest {
            key_fingerprint: self.key.clone(),
            data_digest,
            namespace: self.namespace.clone(),
            requester: self.peer.clone(),
            kind: self.kind,
            confirm_each: false,
            login: None,
            forwarded: false,
            key_comment: None,
            rule: None,
            unseal: None,
        })
    }

    /// A fresh receipt id.
    pub fn new_id() -> String {
        hex::encode(rand::random::<[u8; 12]>())
    }
}

/// Audit log problems.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The file cannot be used safely.
    #[error(transparent)]
    Fs(#[from] SecureFsError),
    /// Writing failed.
    #[error("cannot append to the audit log {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An append that failed for every line of the group it was written in.
    #[error(transparent)]
    Shared(Arc<AuditError>),
    /// The log's last line cannot be read back to chain the next one to it.
    #[error("cannot read the end of the audit log {path}: {reason}")]
    Tail {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One line of the log: its number and the receipt, or why it does not parse.
pub type LogLine = (usize, Result<Receipt, String>);

/// The group committer of a log's appends: a line's JSON in, its hash (the new head) out.
type Appends = GroupCommit<String, Result<[u8; 32], Arc<AuditError>>>;

/// The append-only log.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    home: PathBuf,
    /// Appends of this log (and its clones) that arrive together share one write and fsync.
    commits: Arc<Appends>,
    /// The end of the log as this process last wrote it, with the file's length and mtime
    /// then: while both are unchanged nobody else appended, and the end need not be read back.
    known_end: Arc<std::sync::Mutex<Option<KnownEnd>>>,
}

/// The end of the log after our last write.
#[derive(Debug, Clone, Copy)]
struct KnownEnd {
    len: u64,
    modified: std::time::SystemTime,
    head: [u8; 32],
}

/// The end of the log, as the next line must chain to it.
struct Tail {
    /// Hash of the last line ([`GENESIS`] for an empty log).
    head: [u8; 32],
    /// The chain has begun (a chained line is in the log).
    chained: bool,
    /// The file does not end with a newline (a line cut short by a crash).
    cut: bool,
}

impl AuditLog {
    /// The log in `home`.
    pub fn new(home: &Path) -> AuditLog {
        AuditLog {
            path: home.join(AUDIT_FILE),
            home: home.to_path_buf(),
            commits: Arc::default(),
            known_end: Arc::default(),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one receipt as one chained line.
    pub fn append(&self, receipt: &Receipt) -> Result<(), AuditError> {
        self.append_line(receipt).map(|_| ())
    }

    /// Append an enrollment, a removal: a line of the chain like a receipt.
    pub fn record(&self, event: &ChainEvent) -> Result<(), AuditError> {
        self.append_line(event).map(|_| ())
    }

    /// The chain head (hex): the hash of the last line, which the next touch's client data
    /// commits to. Begins the chain first when the log has none yet.
    pub fn head(&self) -> Result<String, AuditError> {
        let _lock = self.lock()?;
        let tail = self.current_tail()?;
        if tail.chained {
            return Ok(hex::encode(tail.head));
        }
        let mut out = Vec::new();
        let head = self.start_chain(&tail, &mut out)?;
        self.write(&out)?;
        Ok(hex::encode(head))
    }

    /// Append `body` as the next line of the chain (beginning the chain first when the log
    /// has none), written with one `write` under the append lock and fsynced, so lines never
    /// interleave and a crash loses at most the lines being written. Returns the new head.
    ///
    /// Lines that arrive together (grant uses of many clients at once) are group-committed:
    /// one write and one fsync for the group, in arrival order, each line chained to the one
    /// before it; no caller returns before its own line is durable.
    fn append_line<T: Serialize>(&self, body: &T) -> Result<[u8; 32], AuditError> {
        let werr = |reason: String| AuditError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(reason),
        };
        let body = serde_json::to_string(body).map_err(|e| werr(e.to_string()))?;
        if !(body.starts_with('{') && body.ends_with('}')) {
            return Err(werr("a line must be a JSON object".into()));
        }
        self.commits
            .commit(
                body,
                |group| self.write_group(&group),
                || Err(Arc::new(werr("the audit writer panicked".into()))),
            )
            .map_err(|e| Arc::try_unwrap(e).unwrap_or_else(AuditError::Shared))
    }

    /// Write one group of lines (JSON objects, in order) after the chain's end: one write,
    /// one fsync. The outcome is the same for every line of the group.
    fn write_group(&self, bodies: &[String]) -> Vec<Result<[u8; 32], Arc<AuditError>>> {
        let written = (|| {
            let _lock = self.lock()?;
            let tail = self.current_tail()?;
            let mut out = Vec::new();
            let mut prev = if tail.chained {
                if tail.cut {
                    out.push(b'\n');
                }
                tail.head
            } else {
                self.start_chain(&tail, &mut out)?
            };
            let mut heads = Vec::with_capacity(bodies.len());
            for body in bodies {
                prev = encode_object_line(prev, body, &mut out);
                heads.push(prev);
            }
            self.forget_end();
            self.write(&out)?;
            if let Some(head) = heads.last() {
                self.remember_end(*head);
            }
            Ok::<_, AuditError>(heads)
        })();
        match written {
            Ok(heads) => heads.into_iter().map(Ok).collect(),
            Err(e) => {
                let e = Arc::new(e);
                bodies.iter().map(|_| Err(Arc::clone(&e))).collect()
            }
        }
    }

    /// Put the `chain_started` line (after a newline, if the last line was cut short) into
    /// `out`; returns its hash.
    fn start_chain(&self, tail: &Tail, out: &mut Vec<u8>) -> Result<[u8; 32], AuditError> {
        if tail.cut {
            out.push(b'\n');
        }
        let older_lines = match secure_fs::read_private(&self.path)? {
            Some(bytes) => bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .count(),
            None => 0,
        };
        // The enrollments of this moment are taken as they are: the chain vouches only for
        // what is enrolled or removed after it began.
        let enrollments = super::enrollment::TokenStore::open(&self.home)
            .and_then(|s| s.list())
            .unwrap_or_default();
        let start = ChainEvent::ChainStarted {
            time: unix_now(),
            enrollments,
            older_lines,
        };
        self.encode_line(tail.head, &start, out)
    }

    fn encode_line<T: Serialize>(
        &self,
        prev: [u8; 32],
        body: &T,
        out: &mut Vec<u8>,
    ) -> Result<[u8; 32], AuditError> {
        let line = serde_json::to_string(&LineOut {
            v: CHAIN_VERSION,
            prev: hex::encode(prev),
            body,
        })
        .map_err(|e| AuditError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        Ok(line_hash(&line))
    }

    fn write(&self, bytes: &[u8]) -> Result<(), AuditError> {
        let mut f = secure_fs::open_private_append(&self.path)?;
        let werr = |source| AuditError::Write {
            path: self.path.clone(),
            source,
        };
        f.write_all(bytes).map_err(werr)?;
        f.sync_data().map_err(werr)?;
        Ok(())
    }

    fn known_end(&self) -> std::sync::MutexGuard<'_, Option<KnownEnd>> {
        self.known_end.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forget_end(&self) {
        *self.known_end() = None;
    }

    /// After our write (under the append lock): the log ends with `head`.
    fn remember_end(&self, head: [u8; 32]) {
        if let Ok(md) = std::fs::symlink_metadata(&self.path) {
            if let Ok(modified) = md.modified() {
                *self.known_end() = Some(KnownEnd {
                    len: md.len(),
                    modified,
                    head,
                });
            }
        }
    }

    /// The end of the log (under the append lock): as we left it when the file's length and
    /// mtime say nobody wrote since, else read back from the file.
    fn current_tail(&self) -> Result<Tail, AuditError> {
        let known = *self.known_end();
        if let Some(k) = known {
            let same = std::fs::symlink_metadata(&self.path)
                .ok()
                .is_some_and(|md| md.len() == k.len && md.modified().ok() == Some(k.modified));
            if same {
                return Ok(Tail {
                    head: k.head,
                    chained: true,
                    cut: false,
                });
            }
            self.forget_end();
        }
        self.tail()
    }

    fn lock(&self) -> Result<secure_fs::FileLock, AuditError> {
        let path = self.home.join(AUDIT_LOCK);
        let file = secure_fs::open_private_append(&path)?;
        secure_fs::lock_exclusive(file).map_err(|source| AuditError::Write { path, source })
    }

    /// Read the end of the log: the last line's hash and whether the chain has begun. Only the
    /// last line is read, backwards from the end; the whole file only when that line does not
    /// parse (a line cut short, an edit) and the chain must be looked for.
    fn tail(&self) -> Result<Tail, AuditError> {
        use std::io::{Read, Seek, SeekFrom};
        let terr = |reason: String| AuditError::Tail {
            path: self.path.clone(),
            reason,
        };
        let mut f = match secure_fs::open_private_read(&self.path)? {
            Some(f) => f,
            None => {
                return Ok(Tail {
                    head: GENESIS,
                    chained: false,
                    cut: false,
                })
            }
        };
        let len = f.seek(SeekFrom::End(0)).map_err(|e| terr(e.to_string()))?;
        if len == 0 {
            return Ok(Tail {
                head: GENESIS,
                chained: false,
                cut: false,
            });
        }
        let mut buf: Vec<u8> = Vec::new();
        let mut from = len;
        let last = loop {
            let start = from.saturating_sub(64 * 1024);
            let mut chunk = vec![0u8; (from - start) as usize];
            f.seek(SeekFrom::Start(start))
                .and_then(|_| f.read_exact(&mut chunk))
                .map_err(|e| terr(e.to_string()))?;
            chunk.extend_from_slice(&buf);
            buf = chunk;
            from = start;
            let text = trim_end_newlines(&buf);
            if let Some(i) = text.iter().rposition(|b| *b == b'\n') {
                break text[i + 1..].to_vec();
            }
            if from == 0 {
                break text.to_vec();
            }
            if buf.len() > MAX_LINE {
                return Err(terr(format!(
                    "its last line is longer than {MAX_LINE} bytes"
                )));
            }
        };
        let cut = len > 0 && buf.last() != Some(&b'\n');
        if last.iter().all(u8::is_ascii_whitespace) {
            return Ok(Tail {
                head: GENESIS,
                chained: false,
                cut,
            });
        }
        let raw = String::from_utf8_lossy(&last);
        let line = parse_line(0, &raw);
        let chained = match (&line.entry, line.version) {
            (Ok(_), v) => v == CHAIN_VERSION,
            // A line that does not parse: the chain has begun if any chained line came before.
            (Err(_), _) => self
                .read_chain()?
                .iter()
                .any(|l| l.version == CHAIN_VERSION && l.entry.is_ok()),
        };
        Ok(Tail {
            head: line.hash,
            chained,
            cut,
        })
    }

    /// Every line, parsed, as the chain verifier reads it.
    pub fn read_chain(&self) -> Result<Vec<ChainLine>, AuditError> {
        let Some(bytes) = secure_fs::read_private(&self.path)? else {
            return Ok(Vec::new());
        };
        // A line that is not UTF-8 is reported on its own, as every other bad line is; its
        // hash is of the replaced text, so the next line's `prev` shows the damage too.
        Ok(parse_chain(&String::from_utf8_lossy(&bytes)))
    }

    /// Every receipt, parsed; a line that does not parse is returned as its error text with
    /// its line number. Enrollment lines and the chain's start are left out.
    pub fn read(&self) -> Result<Vec<LogLine>, AuditError> {
        Ok(receipts_of(&self.read_chain()?))
    }
}

/// The chained line for `body`, a JSON object serialized on its own: `{"v":2,"prev":…,`
/// followed by the object's members, byte for byte what serializing [`LineOut`] gives. Put
/// into `out` with its newline; returns its hash.
fn encode_object_line(prev: [u8; 32], body: &str, out: &mut Vec<u8>) -> [u8; 32] {
    let start = out.len();
    out.extend_from_slice(b"{\"v\":");
    out.extend_from_slice(CHAIN_VERSION.to_string().as_bytes());
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(hex::encode(prev).as_bytes());
    out.push(b'"');
    // `body` starts with `{` and ends with `}` (checked by the caller).
    let members = &body[1..];
    if members != "}" {
        out.push(b',');
    }
    out.extend_from_slice(members.as_bytes());
    let hash: [u8; 32] = Sha256::digest(&out[start..]).into();
    out.push(b'\n');
    hash
}

fn trim_end_newlines(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && (b[end - 1] == b'\n' || b[end - 1] == b'\r') {
        end -= 1;
    }
    &b[..end]
}

/// Per credential, the highest sign counter a touch receipt of `lines` carries (approved
/// receipts, signed or not: the key gave that counter either way).
///
/// The receipt is the one durable write before a signature is released; tokens.json follows
/// lazily. After a crash between the two, the agent takes the higher of tokens.json and this,
/// so an assertion whose counter is not above the last one receipted is refused. The values
/// only ever raise a floor: an edited log can make the gate stricter, never laxer.
pub fn highest_counters(lines: &[ChainLine]) -> HashMap<Vec<u8>, u32> {
    let mut highest: HashMap<Vec<u8>, u32> = HashMap::new();
    for line in lines {
        let Ok(Entry::Receipt(r)) = &line.entry else {
            continue;
        };
        let Evidence::Approved { touch, .. } = &r.evidence else {
            continue;
        };
        let Ok(auth_data) = crate::ctap::authdata::AuthenticatorData::parse(&touch.auth_data)
        else {
            continue;
        };
        let c = highest.entry(touch.credential_id.clone()).or_insert(0);
        *c = (*c).max(auth_data.sign_count);
    }
    highest
}

/// The receipts among chain lines (and the lines that do not parse), for listings and the
/// receipt-level checks of [`verify_log`].
pub fn receipts_of(lines: &[ChainLine]) -> Vec<LogLine> {
    lines
        .iter()
        .filter_map(|l| match &l.entry {
            Ok(Entry::Receipt(r)) => Some((l.number, Ok((**r).clone()))),
            Ok(Entry::Event(_)) => None,
            Err(e) => Some((l.number, Err(e.clone()))),
        })
        .collect()
}

/// Parse the text of a log: one receipt per non-blank line, numbered from 1; a line that does
/// not parse is kept as its error text. What [`AuditLog::read`] does after reading the file.
pub fn parse_lines(text: &str) -> Vec<LogLine> {
    receipts_of(&parse_chain(text))
}

/// The result of re-verifying one receipt offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Line number in the log (1-based).
    pub line: usize,
    /// Receipt id, when the line parsed.
    pub id: Option<String>,
    /// What the receipt claims.
    pub outcome: Option<Outcome>,
    /// None when it verified; the reason otherwise.
    pub problem: Option<String>,
}

/// Summary of `auths audit verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Signatures approved by a verified touch.
    pub approved: usize,
    /// Signatures made under a grant whose opening touch verified.
    pub granted: usize,
    /// Denials (nothing was signed).
    pub denied: usize,
    /// Verified approvals whose signature was not made (the signer failed, or the client left).
    pub unsigned: usize,
    /// Every line that did not verify.
    pub problems: Vec<Finding>,
    /// What the hash chain shows (empty for [`verify_log`], which checks receipts alone).
    #[serde(default)]
    pub chain: ChainReport,
}

/// What [`verify_chain`] found about the chain itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// The log has a chain (format version 2).
    pub chained: bool,
    /// Lines in the older, unchained format (before the chain began): their receipts were
    /// checked against tokens.json, but nothing anchors them.
    pub older_lines: usize,
    /// The last line that a touch's signature commits to (0 when none does).
    pub anchored_through: usize,
    /// Chained lines after it: not yet anchored by a touch, so an edit there cannot be seen.
    pub unanchored: usize,
    /// The credentials the chain enrolled (and removed), with their attestation verdict.
    pub credentials: Vec<ChainCredential>,
}

/// A credential as the chain knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainCredential {
    /// Enrollment id.
    pub id: String,
    /// Its credential id, hex.
    pub credential_id: String,
    /// Its label.
    pub label: String,
    /// Line of the chain that enrolled it (the chain's first line for earlier enrollments).
    pub enrolled_line: usize,
    /// Line that removed it, if any.
    pub removed_line: Option<usize>,
    /// How its enrollment was attested: only `attested` proves a genuine security key.
    pub attestation: String,
}

impl ChainReport {
    /// Credentials whose enrollment does not prove a genuine security key.
    pub fn unattested(&self) -> impl Iterator<Item = &ChainCredential> {
        self.credentials
            .iter()
            .filter(|c| c.attestation != "attested")
    }
}

impl VerifyReport {
    /// True when every line verified.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A grant as the verifier tracks it: opened by a verified, signed touch.
struct OpenGrant {
    key: String,
    namespace: Option<String>,
    kind: PayloadKind,
    terms: GrantTerms,
    peer: Requester,
    created: u64,
    used: u32,
    rule: Option<String>,
}

/// The receipt-level checks, with the counters and grants seen so far.
#[derive(Default)]
struct ReceiptChecks {
    counters: HashMap<Vec<u8>, u32>,
    grants: HashMap<String, OpenGrant>,
}

impl ReceiptChecks {
    /// Check one receipt against `enrollments`; count it in `report` or record its problem.
    /// Returns the client data of a verified touch, for the chain's anchor check.
    fn check(
        &mut self,
        report: &mut VerifyReport,
        line: usize,
        receipt: &Receipt,
        enrollments: &[Enrollment],
    ) -> Option<ClientData> {
        let mut client_data = None;
        let checked = match &receipt.evidence {
            Evidence::Denied if receipt.signed => Err("a denial that claims a signature".into()),
            Evidence::Denied => Ok(()),
            Evidence::Approved {
                touch,
                user_verified,
                ..
            } => verify_approved(
                receipt,
                touch,
                *user_verified,
                enrollments,
                &mut self.counters,
                &mut self.grants,
            )
            .map(|cd| client_data = Some(cd)),
            Evidence::Granted { grant_of } => verify_granted(receipt, grant_of, &mut self.grants),
        };
        match checked {
            Ok(()) => match (receipt.outcome(), receipt.signed) {
                (Outcome::Denied, _) => report.denied += 1,
                (_, false) => report.unsigned += 1,
                (Outcome::Approved, true) => report.approved += 1,
                (Outcome::Granted, true) => report.granted += 1,
            },
            Err(problem) => report.problem(line, Some(receipt), problem),
        }
        client_data
    }
}

impl VerifyReport {
    fn problem(&mut self, line: usize, receipt: Option<&Receipt>, problem: String) {
        self.problems.push(Finding {
            line,
            id: receipt.map(|r| r.id.clone()),
            outcome: receipt.map(Receipt::outcome),
            problem: Some(problem),
        });
    }
}

/// Re-verify every receipt against the enrolled credentials, offline, through the same path the
/// gate verifies touches on ([`touch::verify_evidence`], [`ClientData::check_binds`]):
/// - approved: the key's answer verifies (the credential is enrolled, rp id hash, UP, the
///   signature over authData || SHA-256(client data), a sign counter above the previous
///   receipt's for that credential), and the client data binds this receipt's key, bytes,
///   namespace and requester;
/// - granted: the grant it names is an earlier verified and signed approval of the same key
///   whose client data carried grant terms, used within its time and count, by a requester in
///   its scope;
/// - denied: nothing was signed (a denial that claims a signature is a problem).
///
/// This checks receipts alone; [`verify_chain`] checks the log as a whole.
pub fn verify_log(lines: &[LogLine], enrollments: &[Enrollment]) -> VerifyReport {
    let mut report = VerifyReport::default();
    let mut checks = ReceiptChecks::default();
    for (line, parsed) in lines {
        match parsed {
            Ok(receipt) => {
                checks.check(&mut report, *line, receipt, enrollments);
            }
            Err(e) => report.problem(*line, None, format!("not a receipt: {e}")),
        }
    }
    report
}

/// The attestation verdict of an enrollment, in one word: its stored statement checked again
/// against the bundled roots (the line is user-writable), so only a statement that belongs to
/// this credential and chains to a vendor root earns `attested`.
fn attestation_verdict(e: &Enrollment, trust: &super::attestation::Trust) -> String {
    super::attestation::reverify(
        &e.attestation,
        &e.credential_id,
        &e.public_key_cose,
        e.virtual_key,
        trust,
    )
    .as_str()
    .into()
}

/// Verify the whole log: every receipt as [`verify_log`] does, and the chain.
/// - Every chained line names the hash of the line before it; the first chained line is the
///   chain's start, and no older-format line comes after it.
/// - The client data of every touch in the chain commits to a chain head that is a line before
///   it, never one before the previous touch's: so a line deleted, inserted, reordered or
///   edited before the last touch is found, even when every `prev` after it was rewritten.
/// - Receipts in the chain are checked against the credentials the chain itself enrolled (not
///   tokens.json, which any same-user process can write): a signature by a credential the
///   chain never enrolled, or after its removal, is a problem; so is a credential in
///   `tokens` that the chain never enrolled.
/// - Older-format lines are checked against `tokens` and reported as unanchored.
pub fn verify_chain(lines: &[ChainLine], tokens: &[Enrollment]) -> VerifyReport {
    let mut report = VerifyReport::default();
    let mut checks = ReceiptChecks::default();
    // Line hashes seen so far, with their position; the genesis head is position 0.
    let mut seen: HashMap<[u8; 32], usize> = HashMap::from([(GENESIS, 0)]);
    let mut running = GENESIS;
    let mut chained = false;
    let mut last_anchor = 0usize;
    let mut enrolled: Vec<Enrollment> = Vec::new();
    let mut credentials: Vec<ChainCredential> = Vec::new();

    for (pos, line) in lines.iter().enumerate() {
        let pos = pos + 1;
        if line.version != CHAIN_VERSION {
            if chained {
                report.problem(
                    line.number,
                    None,
                    "a line without the chain's format inside the chain: inserted or edited".into(),
                );
            } else {
                report.chain.older_lines += 1;
                match &line.entry {
                    Ok(Entry::Receipt(r)) => {
                        checks.check(&mut report, line.number, r, tokens);
                    }
                    Ok(Entry::Event(_)) => {}
                    Err(e) => report.problem(line.number, None, format!("not a receipt: {e}")),
                }
            }
            running = line.hash;
            seen.insert(line.hash, pos);
            continue;
        }
        if line.prev != Some(running) {
            report.problem(
                line.number,
                None,
                "does not follow the line before it (its `prev` is not that line's hash): a line was deleted, inserted, reordered or edited here".into(),
            );
        }
        let entry = match &line.entry {
            Ok(entry) => entry,
            Err(e) => {
                report.problem(line.number, None, format!("not a line of the log: {e}"));
                running = line.hash;
                seen.insert(line.hash, pos);
                continue;
            }
        };
        let not_started = || {
            "the chain does not begin with its start line: lines before it were deleted".to_owned()
        };
        match entry {
            Entry::Event(e) => match &**e {
                ChainEvent::ChainStarted { enrollments, .. } => {
                    if chained {
                        report.problem(
                            line.number,
                            None,
                            "a second start of the chain: lines before it were replaced".into(),
                        );
                    }
                    for e in enrollments {
                        enroll(&mut enrolled, &mut credentials, e, line.number);
                    }
                }
                _ if !chained => report.problem(line.number, None, not_started()),
                ChainEvent::Enrolled { enrollment, .. } => {
                    if let Err(p) = enrollment_anchor(enrollment, &seen) {
                        report.problem(line.number, None, p);
                    }
                    enroll(&mut enrolled, &mut credentials, enrollment, line.number);
                }
                ChainEvent::Removed { credential_id, .. } => {
                    enrolled.retain(|e| &e.credential_id != credential_id);
                    let removed = hex::encode(credential_id);
                    for c in credentials.iter_mut() {
                        if c.removed_line.is_none() && c.credential_id == removed {
                            c.removed_line = Some(line.number);
                        }
                    }
                }
            },
            Entry::Receipt(r) if !chained => report.problem(line.number, Some(r), not_started()),
            Entry::Receipt(r) => {
                let before = report.problems.len();
                let cd = checks.check(&mut report, line.number, r, &enrolled);
                if let (Some(cd), true) = (cd, report.problems.len() == before) {
                    match anchor(&cd, &seen, last_anchor) {
                        Ok(at) => last_anchor = at,
                        Err(p) => report.problem(line.number, Some(r), p),
                    }
                }
            }
        }
        chained = true;
        running = line.hash;
        seen.insert(line.hash, pos);
    }
    // Which line the last anchor is, by number.
    report.chain.chained = chained;
    report.chain.anchored_through = if last_anchor == 0 {
        0
    } else {
        lines[last_anchor - 1].number
    };
    report.chain.unanchored = lines
        .iter()
        .skip(last_anchor)
        .filter(|l| l.version == CHAIN_VERSION)
        .count();
    if chained {
        for t in tokens {
            if !enrolled.iter().any(|e| e.credential_id == t.credential_id) {
                report.problem(
                    0,
                    None,
                    format!(
                        "tokens.json holds credential {} ({}) that the chain does not have enrolled: added or kept outside `auths token`",
                        super::prompt::escape_control(&t.id),
                        super::prompt::escape_control(&t.label)
                    ),
                );
            }
        }
    }
    report.chain.credentials = credentials;
    report
}
/// Add `e` to the chain's enrolled credentials (an enrollment of a credential enrolled already
/// replaces it: a key enrolled again after its removal).
fn enroll(
    enrolled: &mut Vec<Enrollment>,
    credentials: &mut Vec<ChainCredential>,
    e: &Enrollment,
    line: usize,
) {
    enrolled.retain(|x| x.credential_id != e.credential_id);
    enrolled.push(e.clone());
    let credential_id = hex::encode(&e.credential_id);
    if credentials
        .iter()
        .any(|c| c.credential_id == credential_id && c.removed_line.is_none())
    {
        // The chain began with it already (its start lists tokens.json as it was).
        return;
    }
    credentials.push(ChainCredential {
        id: e.id.clone(),
        credential_id,
        label: e.label.clone(),
        enrolled_line: line,
        removed_line: None,
        attestation: attestation_verdict(e, &super::attestation::Trust::bundled()),
    });
}

/// Check the chain head an enrollment's client data names (enrollments made before it named
/// none): a line before the enrollment's, and the client data the attestation signed.
fn enrollment_anchor(e: &Enrollment, seen: &HashMap<[u8; 32], usize>) -> Result<(), String> {
    if e.client_data.is_empty() {
        return Ok(());
    }
    let signed = &e.attestation.client_data_hash;
    if !signed.is_empty() && *signed != hex::encode(Sha256::digest(e.client_data.as_bytes())) {
        return Err("the enrollment's client data is not what its attestation signed".into());
    }
    let head = super::enrollment::enrollment_chain_head(&e.client_data)
        .and_then(|h| hex::decode(h).ok())
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
        .ok_or("the enrollment's client data names no chain head")?;
    if !seen.contains_key(&head) {
        return Err("the enrollment committed to a chain head that is not in this log: lines before it were deleted, inserted, reordered or edited".into());
    }
    Ok(())
}

/// Check the chain head a touch's client data commits to: a line seen before this receipt, not
/// before the previous touch's anchor. Returns its position.
fn anchor(
    cd: &ClientData,
    seen: &HashMap<[u8; 32], usize>,
    last_anchor: usize,
) -> Result<usize, String> {
    let head = cd
        .chain
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
        .ok_or("the touch does not commit to the chain (its client data has no chain head)")?;
    match seen.get(&head) {
        None => Err("the touch committed to a chain head that is not in this log: lines before it were deleted, inserted, reordered or edited".into()),
        Some(&at) if at < last_anchor => Err(
            "the touch committed to a chain head older than the touch before it: lines were reordered"
                .into(),
        ),
        Some(&at) => Ok(at),
    }
}

fn verify_approved(
    receipt: &Receipt,
    evidence: &TouchEvidence,
    user_verified: bool,
    enrollments: &[Enrollment],
    counters: &mut HashMap<Vec<u8>, u32>,
    grants: &mut HashMap<String, OpenGrant>,
) -> Result<ClientData, String> {
    let enrolled = enrollments
        .iter()
        .find(|e| e.credential_id == evidence.credential_id)
        .ok_or("the credential is not enrolled: removed, or never enrolled through `auths token enroll` (a key added to tokens.json by hand?)")?;
    let mut allowed = enrolled.allowed().map_err(|e| e.to_string())?;
    // The counter rule runs against the previous receipt of this credential, not tokens.json.
    allowed.sign_count = counters.get(&evidence.credential_id).copied().unwrap_or(0);
    let creds = Credentials::new(enrolled.rp_id.clone(), vec![allowed]);
    let verified =
        // A receipt that says the user was verified must show it in what the key signed.
        touch::verify_evidence(&creds, evidence, user_verified)
            .map_err(|e| super::error_chain(&e))?;
    let request = receipt.request()?;
    let client_data = ClientData::parse(&evidence.client_data).map_err(|e| e.to_string())?;
    client_data
        .check_binds(&request)
        .map_err(|e| format!("{e} than this receipt names"))?;
    counters.insert(
        evidence.credential_id.clone(),
        verified.assertion().sign_count(),
    );
    if let (Some(terms), true) = (client_data.grant.clone(), receipt.signed) {
        grants.insert(
            receipt.id.clone(),
            OpenGrant {
                key: receipt.key.clone(),
                namespace: receipt.namespace.clone(),
                kind: receipt.kind,
                terms,
                peer: receipt.peer.clone(),
                created: receipt.time,
                used: 1,
                rule: receipt.rule.clone(),
            },
        );
    }
    Ok(client_data)
}

fn verify_granted(
    receipt: &Receipt,
    grant_of: &str,
    grants: &mut HashMap<String, OpenGrant>,
) -> Result<(), String> {
    let g = grants
        .get_mut(grant_of)
        .ok_or("names a grant that no earlier verified touch opened")?;
    if g.key != receipt.key {
        return Err("used a grant opened for another key".into());
    }
    if g.namespace != receipt.namespace || g.kind != receipt.kind {
        return Err("used a grant opened for another namespace or kind of data".into());
    }
    if g.peer.exe.is_none()
        || g.peer.exe != receipt.peer.exe
        || g.peer.exe_file != receipt.peer.exe_file
    {
        return Err("used a grant opened for another executable".into());
    }
    if g.rule != receipt.rule {
        return Err("used a grant opened under another caller rule".into());
    }
    if receipt.time > g.created.saturating_add(g.terms.ttl_secs) {
        return Err("used a grant after it expired".into());
    }
    if g.used >= g.terms.max_signatures {
        return Err("used a grant beyond its signature count".into());
    }
    let scope: Scope = g
        .terms
        .scope
        .parse()
        .map_err(|e: PolicyError| e.to_string())?;
    match (scope.key(&g.peer), scope.key(&receipt.peer)) {
        (Some(a), Some(b)) if a == b => {}
        _ => return Err("used a grant from outside its scope".into()),
    }
    g.used += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removal(i: usize) -> ChainEvent {
        ChainEvent::Removed {
            time: i as u64,
            id: format!("{i:016x}"),
            credential_id: vec![i as u8],
        }
    }

    /// Every line names the hash of the line before it.
    fn linked(lines: &[ChainLine]) -> bool {
        let mut prev = GENESIS;
        lines.iter().all(|l| {
            let ok = l.prev == Some(prev) && l.entry.is_ok();
            prev = l.hash;
            ok
        })
    }

    #[test]
    fn appends_from_many_writers_at_once_keep_the_chain_linked() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("h");
        secure_fs::ensure_private_dir(&home).unwrap();
        std::thread::scope(|s| {
            for w in 0..4 {
                let home = home.clone();
                s.spawn(move || {
                    // Each writer its own AuditLog, as the agent and `auths token` are.
                    let log = AuditLog::new(&home);
                    for i in 0..25 {
                        log.record(&removal(w * 100 + i)).unwrap();
                    }
                });
            }
        });
        let lines = AuditLog::new(&home).read_chain().unwrap();
        assert_eq!(lines.len(), 101, "the chain's start and every line");
        assert!(matches!(
            lines[0].entry,
            Ok(Entry::Event(ref e)) if matches!(**e, ChainEvent::ChainStarted { .. })
        ));
        assert!(linked(&lines));
        let head = AuditLog::new(&home).head().unwrap();
        assert_eq!(head, hex::encode(lines.last().unwrap().hash));
    }

    #[test]
    fn many_threads_on_one_log_share_fsyncs_and_keep_the_chain_linked() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("h");
        secure_fs::ensure_private_dir(&home).unwrap();
        let log = AuditLog::new(&home);
        std::thread::scope(|s| {
            for w in 0..8 {
                let log = log.clone();
                s.spawn(move || {
                    for i in 0..25 {
                        log.record(&removal(w * 100 + i)).unwrap();
                    }
                });
            }
        });
        let lines = log.read_chain().unwrap();
        assert_eq!(lines.len(), 201, "the chain's start and every line");
        assert!(linked(&lines));
    }

    #[test]
    fn a_group_line_is_byte_for_byte_the_line_serde_writes() {
        let log = AuditLog::new(Path::new("/nonexistent"));
        for event in [
            removal(7),
            ChainEvent::ChainStarted {
                time: 1,
                enrollments: vec![],
                older_lines: 3,
            },
        ] {
            let prev = [0x5a; 32];
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let ha = log.encode_line(prev, &event, &mut a).unwrap();
            let hb = encode_object_line(prev, &serde_json::to_string(&event).unwrap(), &mut b);
            assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
            assert_eq!(ha, hb);
        }
        let mut out = Vec::new();
        encode_object_line([0; 32], "{}", &mut out);
        assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
    }

    #[test]
    fn the_head_of_an_empty_log_begins_the_chain() {
        let t = tempfile::tempdir().unwrap();
        let log = AuditLog::new(t.path());
        let head = log.head().unwrap();
        let lines = log.read_chain().unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(head, hex::encode(lines[0].hash));
        assert_eq!(log.head().unwrap(), head, "asking again writes nothing");
        assert_eq!(log.read_chain().unwrap().len(), 1);
    }

    #[test]
    fn a_long_last_line_is_read_back_across_chunks() {
        let t = tempfile::tempdir().unwrap();
        let log = AuditLog::new(t.path());
        let mut e = removal(1);
        if let ChainEvent::Removed { id, .. } = &mut e {
            *id = "x".repeat(200_000);
        }
        log.record(&e).unwrap();
        log.record(&e).unwrap();
        let lines = log.read_chain().unwrap();
        assert_eq!(lines.len(), 3);
        assert!(linked(&lines));
    }

    #[test]
    fn lines_of_a_newer_format_or_without_prev_do_not_parse() {
        let l = parse_line(1, r#"{"v":3,"prev":"00","event":"removed"}"#);
        assert!(l.entry.unwrap_err().contains("format version 3"));
        let l = parse_line(
            1,
            r#"{"v":2,"event":"removed","time":1,"id":"a","credential_id":"01"}"#,
        );
        assert!(l.entry.unwrap_err().contains("prev"));
        let ok = format!(
            r#"{{"v":2,"prev":"{}","event":"removed","time":1,"id":"a","credential_id":"01"}}"#,
            "00".repeat(32)
        );
        assert!(parse_line(1, &ok).entry.is_ok());
    }
}
