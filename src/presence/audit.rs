//! Receipts: every signature and every denial, appended to `$AUTHS_HOME/audit.jsonl` (0600,
//! append-only, one JSON object per line, never a secret). Approvals keep the client data,
//! authenticator data, assertion signature and credential id, so `auths audit verify` can
//! prove offline, against the enrolled keys, that every signature had a touch behind it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::request::Requester;
use crate::secure_fs::{self, SecureFsError};

/// File name inside `AUTHS_HOME`.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// What happened to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A verified touch approved this signature.
    Approved,
    /// Signed under a grant opened by an earlier verified touch (`grant_of`).
    Granted,
    /// Refused: no touch, a failed verification, a cancelled request.
    Denied,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Random id, referenced by grants.
    pub id: String,
    /// Unix time.
    pub time: u64,
    /// What happened.
    pub outcome: Outcome,
    /// Identity key fingerprint.
    pub key: String,
    /// SHA-256 of the bytes to sign, hex.
    pub digest: String,
    /// SSHSIG namespace, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Who asked.
    pub peer: Requester,
    /// Exact client data JSON the key signed (approvals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_data: Option<String>,
    /// authenticatorData, hex (approvals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_data: Option<String>,
    /// Assertion signature, hex (approvals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Credential id, hex (approvals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// Receipt id of the touch whose grant covered this signature (granted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_of: Option<String>,
    /// Why it was denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The approving credential lives on the virtual key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub virtual_key: bool,
}

impl Receipt {
    /// A receipt for `request` with no evidence yet (fill in the fields the outcome needs).
    pub fn for_request(
        id: &str,
        outcome: Outcome,
        request: &super::request::ApprovalRequest,
    ) -> Receipt {
        Receipt {
            id: id.to_owned(),
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            outcome,
            key: request.key_fingerprint.clone(),
            digest: hex::encode(request.data_digest),
            namespace: request.namespace.clone(),
            peer: request.requester.clone(),
            client_data: None,
            auth_data: None,
            signature: None,
            credential_id: None,
            grant_of: None,
            reason: None,
            virtual_key: false,
        }
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
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(SecureFsError::Io {
                    path: self.path.clone(),
                    source,
                }
                .into())
            }
        };
        secure_fs::check_private(&self.path, false)?;
        Ok(parse_lines(&text))
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
    /// Every line that did not verify.
    pub problems: Vec<Finding>,
}

impl VerifyReport {
    /// True when every line verified.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Re-verify every receipt against the enrolled credentials, offline:
/// - approved: the client data hashes to what the key signed, names this key and digest, the
///   authenticator data has our rp id hash and UP, the signature verifies with the enrolled
///   credential, and the sign counter increased over the previous receipt of that credential;
/// - granted: the grant it names is an earlier verified approval of the same key whose client
///   data carried grant terms, used within its time and count, by a requester in its scope;
/// - denied: parses (nothing was signed, so there is nothing to prove).
pub fn verify_log(
    lines: &[LogLine],
    enrollments: &[super::enrollment::Enrollment],
) -> VerifyReport {
    use super::challenge::{client_data_hash, ClientData};
    use super::policy::Scope;
    use crate::ctap::authdata::AuthenticatorData;
    use sha2::{Digest, Sha256};
    use std::collections::HashMap;

    struct Open {
        key: String,
        terms: super::challenge::GrantTerms,
        peer: Requester,
        created: u64,
        used: u32,
    }
    let mut report = VerifyReport::default();
    let mut counters: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut grants: HashMap<String, Open> = HashMap::new();

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
        let mut check = || -> Result<(), String> {
            match receipt.outcome {
                Outcome::Denied => Ok(()),
                Outcome::Approved => {
                    let field = |f: &Option<String>, name: &str| {
                        f.clone()
                            .ok_or_else(|| format!("approved receipt without {name}"))
                    };
                    let json = field(&receipt.client_data, "client data")?;
                    let auth_data = hex::decode(field(&receipt.auth_data, "authenticator data")?)
                        .map_err(|e| e.to_string())?;
                    let signature = hex::decode(field(&receipt.signature, "signature")?)
                        .map_err(|e| e.to_string())?;
                    let cred = hex::decode(field(&receipt.credential_id, "credential id")?)
                        .map_err(|e| e.to_string())?;
                    let cd = ClientData::parse(&json)?;
                    let digest: [u8; 32] = hex::decode(&receipt.digest)
                        .ok()
                        .and_then(|d| d.try_into().ok())
                        .ok_or("digest is not 32 bytes of hex")?;
                    if !cd.approves(&receipt.key, &digest) {
                        return Err("the touch approved other bytes or another key than this receipt claims".into());
                    }
                    if cd.peer != receipt.peer {
                        return Err(
                            "the touch approved another requester than this receipt names".into(),
                        );
                    }
                    let e = enrollments
                        .iter()
                        .find(|e| e.credential_id == cred)
                        .ok_or("the credential is not enrolled (removed, or never ours)")?;
                    let ad = AuthenticatorData::parse(&auth_data).map_err(|e| e.to_string())?;
                    if ad.rp_id_hash != <[u8; 32]>::from(Sha256::digest(e.rp_id.as_bytes())) {
                        return Err("authenticator data is for another relying party".into());
                    }
                    if !ad.flags.user_present() {
                        return Err("authenticator data shows no touch (UP clear)".into());
                    }
                    let key = e.allowed().map_err(|e| e.to_string())?.public_key;
                    let mut msg = auth_data.clone();
                    msg.extend_from_slice(&client_data_hash(&json));
                    key.verify(&msg, &signature)
                        .map_err(|e| format!("assertion signature does not verify: {e}"))?;
                    if let Some(prev) = counters.get(&cred) {
                        if (ad.sign_count != 0 || *prev != 0) && ad.sign_count <= *prev {
                            return Err(format!(
                                "sign counter {} does not increase over {prev}: replayed or cloned",
                                ad.sign_count
                            ));
                        }
                    }
                    counters.insert(cred, ad.sign_count);
                    if let Some(terms) = cd.grant {
                        grants.insert(
                            receipt.id.clone(),
                            Open {
                                key: receipt.key.clone(),
                                terms,
                                peer: receipt.peer.clone(),
                                created: receipt.time,
                                used: 1,
                            },
                        );
                    }
                    Ok(())
                }
                Outcome::Granted => {
                    let of = receipt
                        .grant_of
                        .as_deref()
                        .ok_or("granted receipt without grant_of")?;
                    let g = grants
                        .get_mut(of)
                        .ok_or("names a grant that no earlier verified touch opened")?;
                    if g.key != receipt.key {
                        return Err("used a grant opened for another key".into());
                    }
                    if receipt.time > g.created.saturating_add(g.terms.ttl_secs) {
                        return Err("used a grant after it expired".into());
                    }
                    if g.used >= g.terms.max_signatures {
                        return Err("used a grant beyond its signature count".into());
                    }
                    let scope: Scope = g.terms.scope.parse()?;
                    match (scope.key(&g.peer), scope.key(&receipt.peer)) {
                        (Some(a), Some(b)) if a == b => {}
                        _ => return Err("used a grant from outside its scope".into()),
                    }
                    g.used += 1;
                    Ok(())
                }
            }
        };
        match check() {
            Ok(()) => match receipt.outcome {
                Outcome::Approved => report.approved += 1,
                Outcome::Granted => report.granted += 1,
                Outcome::Denied => report.denied += 1,
            },
            Err(problem) => report.problems.push(Finding {
                line: *line,
                id: Some(receipt.id.clone()),
                outcome: Some(receipt.outcome),
                problem: Some(problem),
            }),
        }
    }
    report
}
