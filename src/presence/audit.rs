//! Receipts: every signature and every denial, appended to `$AUTHS_HOME/audit.jsonl` (0600,
//! append-only, one JSON object per line, never a secret). Approvals keep the client data,
//! authenticator data, assertion signature and credential id, so `auths audit verify` can
//! prove offline, against the enrolled keys, that every signature had a touch behind it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::challenge::{ClientData, GrantTerms};
use super::enrollment::Enrollment;
use super::policy::{PolicyError, Scope};
use super::request::{ApprovalRequest, PayloadKind, Requester};
use super::touch::{self, Credentials, TouchEvidence};
use crate::secure_fs::{self, SecureFsError};

/// File name inside `AUTHS_HOME`.
pub const AUDIT_FILE: &str = "audit.jsonl";

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
}

/// One line of the log: its number and the receipt, or why it does not parse.
pub type LogLine = (usize, Result<Receipt, String>);

/// The append-only log.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    /// The log in `home`.
    pub fn new(home: &Path) -> AuditLog {
        AuditLog {
            path: home.join(AUDIT_FILE),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one receipt as one line, written with a single `write` and fsynced, so lines
    /// never interleave and a crash loses at most the line being written.
    pub fn append(&self, receipt: &Receipt) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(receipt).map_err(|e| AuditError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        let mut f = secure_fs::open_private_append(&self.path)?;
        let werr = |source| AuditError::Write {
            path: self.path.clone(),
            source,
        };
        f.write_all(&line).map_err(werr)?;
        f.sync_data().map_err(werr)?;
        Ok(())
    }

    /// Every line, parsed; a line that does not parse is returned as its error text with its
    /// line number, so `verify` can report it.
    pub fn read(&self) -> Result<Vec<LogLine>, AuditError> {
        let Some(bytes) = secure_fs::read_private(&self.path)? else {
            return Ok(Vec::new());
        };
        // A line that is not UTF-8 is reported on its own, as every other bad line is.
        Ok(parse_lines(&String::from_utf8_lossy(&bytes)))
    }
}

/// Parse the text of a log: one receipt per non-blank line, numbered from 1; a line that does
/// not parse is kept as its error text. What [`AuditLog::read`] does after reading the file.
pub fn parse_lines(text: &str) -> Vec<LogLine> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, serde_json::from_str(l).map_err(|e| e.to_string())))
        .collect()
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
pub fn verify_log(lines: &[LogLine], enrollments: &[Enrollment]) -> VerifyReport {
    let mut report = VerifyReport::default();
    let mut counters: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut grants: HashMap<String, OpenGrant> = HashMap::new();

    for (line, parsed) in lines {
        let receipt = match parsed {
            Ok(r) => r,
            Err(e) => {
                report.problems.push(Finding {
                    line: *line,
                    id: None,
                    outcome: None,
                    problem: Some(format!("not a receipt: {e}")),
                });
                continue;
            }
        };
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
                &mut counters,
                &mut grants,
            ),
            Evidence::Granted { grant_of } => verify_granted(receipt, grant_of, &mut grants),
        };
        match checked {
            Ok(()) => match (receipt.outcome(), receipt.signed) {
                (Outcome::Denied, _) => report.denied += 1,
                (_, false) => report.unsigned += 1,
                (Outcome::Approved, true) => report.approved += 1,
                (Outcome::Granted, true) => report.granted += 1,
            },
            Err(problem) => report.problems.push(Finding {
                line: *line,
                id: Some(receipt.id.clone()),
                outcome: Some(receipt.outcome()),
                problem: Some(problem),
            }),
        }
    }
    report
}

fn verify_approved(
    receipt: &Receipt,
    evidence: &TouchEvidence,
    user_verified: bool,
    enrollments: &[Enrollment],
    counters: &mut HashMap<Vec<u8>, u32>,
    grants: &mut HashMap<String, OpenGrant>,
) -> Result<(), String> {
    let enrolled = enrollments
        .iter()
        .find(|e| e.credential_id == evidence.credential_id)
        .ok_or("the credential is not enrolled (removed, or never ours)")?;
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
    if let (Some(terms), true) = (client_data.grant, receipt.signed) {
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
    Ok(())
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
