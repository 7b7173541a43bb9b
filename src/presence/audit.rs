//! Receipts: every signature and every denial, appended to `$AUTHS_HOME/audit.jsonl` (0600,
//! append-only, one JSON object per line, never a secret). Approvals keep the client data,
//! authenticator data, assertion signature and credential id, so `auths audit verify` can
//! prove offline, against the enrolled keys, that every signature had a touch behind it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::gate::Requester;
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
    pub fn read(&self) -> Result<Vec<(usize, Result<Receipt, String>)>, AuditError> {
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
        Ok(text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, serde_json::from_str(l).map_err(|e| e.to_string())))
            .collect())
    }
}
