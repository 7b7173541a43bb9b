//! Enrolled security-key credentials, kept in `$AUTHS_HOME/tokens.json`: directory 0700, file
//! 0600, replaced atomically, versioned schema. Several keys may be enrolled (a main and a
//! backup). Read-modify-write cycles hold an advisory lock (`tokens.lock`) so the agent saving
//! a sign counter and a concurrent `auths token enroll` never lose each other's update.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::verify::AllowedCredential;
use crate::ctap::cose::CoseKey;
use crate::secure_fs::{self, SecureFsError};

/// Version of the file format written by this program.
pub const SCHEMA_VERSION: u32 = 1;
/// File name inside `AUTHS_HOME`.
pub const TOKENS_FILE: &str = "tokens.json";

/// One enrolled credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// Short stable id shown to people: the first 8 bytes of SHA-256(credential id), hex.
    pub id: String,
    /// Label chosen at enrollment ("main", "backup").
    pub label: String,
    /// The credential id the key returned (hex).
    #[serde(with = "hex::serde")]
    pub credential_id: Vec<u8>,
    /// The credential public key as a COSE_Key in canonical CBOR (hex).
    #[serde(with = "hex::serde")]
    pub public_key_cose: Vec<u8>,
    /// COSE algorithm: -7 (ES256) or -8 (EdDSA).
    pub algorithm: i64,
    /// Relying-party id the credential is scoped to.
    pub rp_id: String,
    /// AAGUID of the authenticator model (hex).
    #[serde(with = "hex::serde")]
    pub aaguid: Vec<u8>,
    /// True when the credential lives on the virtual key, not on hardware.
    pub virtual_key: bool,
    /// How the key was described when enrolled (product name or device selector).
    pub device: String,
    /// Unix time of enrollment.
    pub created: u64,
    /// Highest signature counter seen from this credential.
    pub sign_count: u32,
    /// The protocol the key spoke at enrollment: `"ctap2"`, or `"u2f"` for a U2F-only key.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// The attestation certificate the key sent at enrollment (DER, hex; empty when none).
    #[serde(default, with = "hex::serde")]
    pub attestation_certificate: Vec<u8>,
    /// The key made the credential with credProtect userVerificationRequired (level 3, as
    /// the key reported it): it answers for it only when the user is verified too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uv_required: bool,
    /// The client data the credential was made over (`auths.presence.enroll.v1`): its
    /// `chain` is the audit chain's head at enrollment, which the attestation signed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_data: String,
    /// The credential was made with hmac-secret: it can seal identity keys (`auths key`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hmac_secret: bool,
    /// The attestation statement and its verdict (`unchecked` for enrollments made before
    /// auths verified attestation).
    #[serde(default)]
    pub attestation: super::attestation::Attestation,
}

/// The `type` of an enrollment's client data.
pub const ENROLL_TYPE: &str = "auths.presence.enroll.v1";

/// The client data of a new credential: its type, a fresh nonce and the audit chain's head.
fn enrollment_client_data(chain_head: &str) -> String {
    serde_json::json!({
        "type": ENROLL_TYPE,
        "nonce": hex::encode(rand::random::<[u8; 32]>()),
        "chain": chain_head,
    })
    .to_string()
}

/// The chain head an enrollment's client data names, when it is ours.
pub fn enrollment_chain_head(client_data: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(client_data).ok()?;
    if v.get("type")?.as_str()? != ENROLL_TYPE {
        return None;
    }
    Some(v.get("chain")?.as_str()?.to_owned())
}

fn default_protocol() -> String {
    crate::ctap::backend::PROTOCOL_CTAP2.to_owned()
}

impl Enrollment {
    /// The short id for a credential id.
    pub fn short_id(credential_id: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(credential_id)[..8])
    }

    /// The credential as the verifier wants it (public key parsed strictly).
    pub fn allowed(&self) -> Result<AllowedCredential, EnrollmentError> {
        let public_key = CoseKey::from_cbor_bytes(&self.public_key_cose).map_err(|e| {
            EnrollmentError::Corrupt {
                path: PathBuf::from(TOKENS_FILE),
                reason: format!("enrolled key {} has an unusable public key: {e}", self.id),
            }
        })?;
        Ok(AllowedCredential {
            id: self.credential_id.clone(),
            public_key,
            sign_count: self.sign_count,
        })
    }

    /// Human name for the credential's COSE algorithm.
    pub fn algorithm_name(&self) -> &'static str {
        crate::ctap::cose::algorithm_name(self.algorithm)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokensFile {
    version: u32,
    tokens: Vec<Enrollment>,
}

/// Problems with the enrollment store.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EnrollmentError {
    /// The file or directory cannot be used safely.
    #[error(transparent)]
    Fs(#[from] SecureFsError),
    /// The enrollment was saved, but its line in the audit chain was not written.
    #[error("the audit chain did not record it: {0}; `auths audit verify` will report this key until the log can be written")]
    Audit(#[from] super::audit::AuditError),
    /// The file is not valid JSON of our schema.
    #[error("{path} is corrupt ({reason}); it was left untouched")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Written by a newer version of auths.
    #[error(
        "{path} has schema version {found}, newer than this auths understands ({SCHEMA_VERSION})"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The version in it.
        found: u32,
    },
    /// No enrollment matches the id or label.
    #[error("no enrolled key matches {0:?}")]
    NotFound(String),
    /// More than one enrollment matches a label.
    #[error("{0:?} matches several enrolled keys")]
    Ambiguous(String),
    /// The credential is enrolled already.
    #[error("this credential is enrolled already (id {0})")]
    Duplicate(String),
    /// The security key failed or refused.
    #[error(transparent)]
    Device(#[from] crate::ctap::CtapError),
    /// The key is enrolled already (it recognised a credential in the exclude list).
    #[error("this security key is enrolled already")]
    KeyAlreadyEnrolled,
    /// Nobody touched the key in time.
    #[error("nobody touched the key in time")]
    NoTouch,
    /// The key's answer cannot be accepted.
    #[error("refusing the key's new credential: {0}")]
    BadCredential(String),
    /// The key needs its PIN and it was wrong, blocked, or could not be used.
    #[error(transparent)]
    Pin(#[from] crate::ctap::client_pin::PinError),
    /// The key needs its PIN and none was given.
    #[error(transparent)]
    PinEntry(#[from] super::pin_entry::PinEntryError),
    /// The label is taken.
    #[error("a key labelled {0:?} is enrolled already")]
    LabelTaken(String),
    /// The one algorithm asked for (`--alg`) is not among those the key lists.
    #[error("this security key does not support {asked}; it lists {supported}")]
    AlgorithmNotSupported {
        /// The algorithm asked for.
        asked: &'static str,
        /// What the key lists (getInfo algorithms).
        supported: String,
    },
    /// The key's attestation statement is wrong, or its model is refused by the MDS BLOB.
    #[error("refusing the key's new credential: {0}")]
    Attestation(#[from] super::attestation::AttestationError),
    /// The lock could not be taken.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The enrollment store in one `AUTHS_HOME`.
#[derive(Debug, Clone)]
pub struct TokenStore {
    home: PathBuf,
}

impl TokenStore {
    /// The store in `home` (created 0700 when missing, verified otherwise).
    pub fn open(home: &Path) -> Result<TokenStore, EnrollmentError> {
        secure_fs::ensure_private_dir(home)?;
        Ok(TokenStore {
            home: home.to_path_buf(),
        })
    }

    /// Path of the tokens file.
    pub fn path(&self) -> PathBuf {
        self.home.join(TOKENS_FILE)
    }

    /// All enrollments.
    pub fn list(&self) -> Result<Vec<Enrollment>, EnrollmentError> {
        Ok(self.read()?.tokens)
    }

    /// Add an enrollment; refuses a duplicate credential id. The enrollment becomes a line of
    /// the audit chain too, which `auths audit verify` trusts rather than this file.
    pub fn add(&self, e: Enrollment) -> Result<(), EnrollmentError> {
        let event = super::audit::ChainEvent::enrolled(&e);
        self.update(|f| {
            if f.tokens.iter().any(|t| t.credential_id == e.credential_id) {
                return Err(EnrollmentError::Duplicate(e.id.clone()));
            }
            f.tokens.push(e);
            Ok(())
        })?;
        super::audit::AuditLog::new(&self.home).record(&event)?;
        Ok(())
    }

    /// Remove by id (or a unique id prefix) or label; returns what was removed. The removal is
    /// a line of the audit chain too.
    pub fn remove(&self, id_or_label: &str) -> Result<Enrollment, EnrollmentError> {
        let mut removed = None;
        self.update(|f| {
            let idx = find(&f.tokens, id_or_label)?;
            removed = Some(f.tokens.remove(idx));
            Ok(())
        })?;
        let removed = removed.ok_or_else(|| EnrollmentError::NotFound(id_or_label.to_owned()))?;
        super::audit::AuditLog::new(&self.home)
            .record(&super::audit::ChainEvent::removed(&removed))?;
        Ok(removed)
    }

    /// Record the highest sign counter seen for a credential. Never lowers it.
    pub fn save_sign_count(&self, credential_id: &[u8], count: u32) -> Result<(), EnrollmentError> {
        self.update(|f| {
            let t = f
                .tokens
                .iter_mut()
                .find(|t| t.credential_id == credential_id)
                .ok_or_else(|| EnrollmentError::NotFound(Enrollment::short_id(credential_id)))?;
            t.sign_count = t.sign_count.max(count);
            Ok(())
        })
    }

    fn read(&self) -> Result<TokensFile, EnrollmentError> {
        let path = self.path();
        match secure_fs::read_private(&path)? {
            Some(bytes) => parse_tokens_file(&bytes, &path),
            None => Ok(TokensFile {
                version: SCHEMA_VERSION,
                tokens: Vec::new(),
            }),
        }
    }

    fn update(
        &self,
        change: impl FnOnce(&mut TokensFile) -> Result<(), EnrollmentError>,
    ) -> Result<(), EnrollmentError> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        change(&mut file)?;
        file.version = SCHEMA_VERSION;
        let mut json = serde_json::to_vec_pretty(&file).map_err(|e| EnrollmentError::Corrupt {
            path: self.path(),
            reason: e.to_string(),
        })?;
        json.push(b'\n');
        secure_fs::atomic_write(&self.path(), &json)?;
        Ok(())
    }

    fn lock(&self) -> Result<secure_fs::FileLock, EnrollmentError> {
        let path = self.home.join("tokens.lock");
        let file = secure_fs::open_private_append(&path)?;
        secure_fs::lock_exclusive(file).map_err(|source| EnrollmentError::Lock { path, source })
    }
}

/// Parse the bytes of a tokens file (`path` only names it in errors): the schema version is
/// checked first, so a newer file is reported as such rather than as corrupt.
fn parse_tokens_file(bytes: &[u8], path: &Path) -> Result<TokensFile, EnrollmentError> {
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let v: Versioned = serde_json::from_slice(bytes).map_err(|e| EnrollmentError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if v.version > SCHEMA_VERSION {
        return Err(EnrollmentError::NewerSchema {
            path: path.to_path_buf(),
            found: v.version,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| EnrollmentError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The enrollments in the bytes of a tokens file, parsed as [`TokenStore`] reads them (no
/// file access; `path` only names the file in errors).
pub fn parse_tokens(bytes: &[u8], path: &Path) -> Result<Vec<Enrollment>, EnrollmentError> {
    Ok(parse_tokens_file(bytes, path)?.tokens)
}

/// Find the single enrollment matching an id, unique id prefix (4+ chars) or label.
pub fn find(tokens: &[Enrollment], id_or_label: &str) -> Result<usize, EnrollmentError> {
    if let Some(i) = tokens.iter().position(|t| t.id == id_or_label) {
        return Ok(i);
    }
    let by_label: Vec<usize> = (0..tokens.len())
        .filter(|&i| tokens[i].label == id_or_label)
        .collect();
    let matches = if by_label.is_empty() && id_or_label.len() >= 4 {
        (0..tokens.len())
            .filter(|&i| tokens[i].id.starts_with(id_or_label))
            .collect()
    } else {
        by_label
    };
    match matches.as_slice() {
        [] => Err(EnrollmentError::NotFound(id_or_label.to_owned())),
        [i] => Ok(*i),
        _ => Err(EnrollmentError::Ambiguous(id_or_label.to_owned())),
    }
}

/// The credProtect level the key reported in a new credential's authenticatorData
/// extensions (CTAP 2.1 §12.1), if it did.
fn cred_protect_level(auth_data: &crate::ctap::authdata::AuthenticatorData) -> Option<u64> {
    auth_data
        .extensions
        .as_ref()?
        .get_text("credProtect")?
        .as_u64()
}

/// A pinUvAuthToken with the mc permission for `rp_id`: from the key's built-in user
/// verification when it has one (unless it is blocked), else from a PIN `pins` gives. One
/// try: a wrong PIN is an error that says how many tries are left, never asked again on its
/// own.
fn user_token(
    key: &mut dyn crate::ctap::backend::SecurityKey,
    pins: &mut dyn super::pin_entry::PinSource,
    rp_id: &str,
    on_up_needed: &mut dyn FnMut(),
) -> Result<crate::ctap::client_pin::PinUvAuthToken, EnrollmentError> {
    use crate::ctap::client_pin::{permissions, PinError};
    if key.uv_info().is_some_and(|u| u.builtin_uv) {
        let wait = crate::ctap::backend::Waiting {
            on_up_needed,
            on_busy: None,
            cancel: None,
        };
        match key.uv_token(permissions::MAKE_CREDENTIAL, rp_id, wait) {
            Ok(t) => return Ok(t),
            Err(PinError::UvBlocked) => {}
            Err(e) => return Err(e.into()),
        }
    }
    pin_token(key, pins, rp_id)
}

/// A pinUvAuthToken with the mc permission for `rp_id`, from a PIN `pins` gives.
fn pin_token(
    key: &mut dyn crate::ctap::backend::SecurityKey,
    pins: &mut dyn super::pin_entry::PinSource,
    rp_id: &str,
) -> Result<crate::ctap::client_pin::PinUvAuthToken, EnrollmentError> {
    use crate::ctap::client_pin::permissions;
    let description = key.description().to_owned();
    let pin = pins.pin(&super::pin_entry::PinRequest {
        key: &description,
        purpose: "enroll it",
        retries: None,
    })?;
    Ok(key.pin_token(pin.as_bytes(), permissions::MAKE_CREDENTIAL, rp_id)?)
}

/// Create a credential on `key` (one touch) and store its enrollment: the algorithms of
/// `preferred` the key supports are offered in that order (one algorithm alone, as `--alg`
/// asks, must be supported), credentials already enrolled for `rp_id` go in the exclude
/// list (so the same key is not enrolled twice), and the answer is checked (rp id hash, UP,
/// a COSE key we can verify with, the attestation statement against the bundled roots)
/// before anything is stored.
pub fn enroll_key(
    key: &mut dyn crate::ctap::backend::SecurityKey,
    store: &TokenStore,
    label: Option<&str>,
    rp_id: &str,
    preferred: &[crate::ctap::command::Algorithm],
    on_up_needed: &mut dyn FnMut(),
    pins: &mut dyn super::pin_entry::PinSource,
) -> Result<Enrollment, EnrollmentError> {
    let trust = super::attestation::Trust::bundled();
    enroll_key_with_trust(
        key,
        store,
        label,
        rp_id,
        preferred,
        on_up_needed,
        pins,
        &trust,
    )
}

/// [`enroll_key`], judging the attestation against `trust` (bundled roots, an MDS BLOB).
#[allow(clippy::too_many_arguments)]
pub fn enroll_key_with_trust(
    key: &mut dyn crate::ctap::backend::SecurityKey,
    store: &TokenStore,
    label: Option<&str>,
    rp_id: &str,
    preferred: &[crate::ctap::command::Algorithm],
    on_up_needed: &mut dyn FnMut(),
    pins: &mut dyn super::pin_entry::PinSource,
    trust: &super::attestation::Trust,
) -> Result<Enrollment, EnrollmentError> {
    use crate::ctap::backend::MakeCredentialArgs;
    use crate::ctap::command::{RelyingParty, UserEntity};
    use crate::ctap::{CtapError, StatusCode};
    use sha2::Digest;

    let existing = store.list()?;
    let label = label.map(str::to_owned).unwrap_or_else(|| {
        if existing.is_empty() {
            "main".to_owned()
        } else {
            format!("key{}", existing.len() + 1)
        }
    });
    if existing.iter().any(|e| e.label == label) {
        return Err(EnrollmentError::LabelTaken(label));
    }
    // CTAP keys say what they support (getInfo); webauthn.dll picks from our list itself.
    let supported = key.supported_algorithms()?;
    let algorithms: Vec<_> = preferred
        .iter()
        .copied()
        .filter(|a| supported.as_ref().is_none_or(|s| s.contains(&a.cose_id())))
        .collect();
    if algorithms.is_empty() {
        if let ([only], Some(listed)) = (preferred, &supported) {
            return Err(EnrollmentError::AlgorithmNotSupported {
                asked: crate::ctap::cose::algorithm_name(only.cose_id()),
                supported: listed
                    .iter()
                    .map(|a| crate::ctap::cose::algorithm_name(*a))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        return Err(EnrollmentError::BadCredential(
            "this key supports neither ES256 nor EdDSA".into(),
        ));
    }
    let exclude: Vec<&[u8]> = existing
        .iter()
        .filter(|e| e.rp_id == rp_id)
        .map(|e| e.credential_id.as_slice())
        .collect();
    // The client data of an enrollment names the audit chain's head, so the key's attestation
    // signature (over authData and its hash) commits to the log before the enrollment, and a
    // fresh nonce; CTAP keys get its SHA-256, webauthn.dll hashes it itself.
    let head = super::audit::AuditLog::new(&store.home).head()?;
    let challenge = enrollment_client_data(&head);
    let challenge = challenge.as_bytes();
    let user_id: [u8; 16] = rand::random();
    let display = format!("auths presence gate ({label})");
    // A key that needs the user verified to make a credential (alwaysUv, or a PIN on a CTAP
    // 2.0 key) gets the PIN up front; one that says so only by refusing (PUAT_REQUIRED, the
    // same byte as CTAP 2.0's PIN_REQUIRED) gets it then, and the request is made again.
    let uv = key.uv_info();
    let mut token = None;
    if uv.is_some_and(|u| u.needed_to_enroll()) {
        token = Some(user_token(key, pins, rp_id, &mut *on_up_needed)?);
    }
    let resp = loop {
        let mut args = MakeCredentialArgs {
            client_data: challenge,
            rp: RelyingParty {
                id: rp_id,
                name: Some("auths presence gate"),
            },
            user: UserEntity {
                id: &user_id,
                name: Some("auths"),
                display_name: Some(&display),
            },
            algorithms: &algorithms,
            exclude_list: &exclude,
            pin_token: None,
        };
        args.pin_token = token.as_ref();
        let wait = crate::ctap::backend::Waiting {
            on_up_needed: &mut *on_up_needed,
            on_busy: None,
            cancel: None,
        };
        match key.make_credential(&args, wait) {
            Err(CtapError::Status(StatusCode::PuatRequired)) if token.is_none() && uv.is_some() => {
                token = Some(user_token(key, pins, rp_id, &mut *on_up_needed)?);
            }
            Err(CtapError::Status(StatusCode::CredentialExcluded)) => {
                return Err(EnrollmentError::KeyAlreadyEnrolled)
            }
            Err(CtapError::Status(StatusCode::UserActionTimeout)) | Err(CtapError::Deadline(_)) => {
                return Err(EnrollmentError::NoTouch)
            }
            other => break other?,
        }
    };
    let attested = resp
        .auth_data
        .attested_credential_data
        .as_ref()
        .ok_or_else(|| EnrollmentError::BadCredential("no credential in the answer".into()))?;
    let public_key = attested
        .public_key()
        .map_err(|e| EnrollmentError::BadCredential(e.to_string()))?;
    if !algorithms
        .iter()
        .any(|a| a.cose_id() == public_key.algorithm())
    {
        return Err(EnrollmentError::BadCredential(format!(
            "its algorithm ({}) was not one we offered",
            crate::ctap::cose::algorithm_name(public_key.algorithm())
        )));
    }
    if resp.auth_data.rp_id_hash != <[u8; 32]>::from(sha2::Sha256::digest(rp_id.as_bytes())) {
        return Err(EnrollmentError::BadCredential(
            "it was made for another relying party".into(),
        ));
    }
    if !resp.auth_data.flags.user_present() {
        return Err(EnrollmentError::BadCredential(
            "it was made without a touch (UP flag clear)".into(),
        ));
    }
    let attestation = super::attestation::for_enrollment(
        &super::attestation::Statement {
            fmt: &resp.fmt,
            att_stmt: &resp.att_stmt,
            auth_data: &resp.auth_data_raw,
            client_data_hash: &crate::ctap::backend::client_data_hash(challenge),
        },
        trust,
        key.is_virtual(),
    )?;
    let enrollment = Enrollment {
        id: Enrollment::short_id(&attested.credential_id),
        label,
        credential_id: attested.credential_id.clone(),
        public_key_cose: public_key.to_cbor_bytes(),
        algorithm: public_key.algorithm(),
        rp_id: rp_id.to_owned(),
        aaguid: attested.aaguid.to_vec(),
        virtual_key: key.is_virtual(),
        device: key.description().to_owned(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        sign_count: resp.auth_data.sign_count,
        protocol: key.protocol().to_owned(),
        attestation_certificate: crate::ctap::u2f::attestation_certificate(&resp)
            .unwrap_or_default(),
        uv_required: cred_protect_level(&resp.auth_data) == Some(3),
        hmac_secret: crate::ctap::hmac_secret::created(&resp.auth_data),
        client_data: String::from_utf8_lossy(challenge).into_owned(),
        attestation,
    };
    store.add(enrollment.clone())?;
    Ok(enrollment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cred: &[u8], label: &str) -> Enrollment {
        Enrollment {
            id: Enrollment::short_id(cred),
            label: label.into(),
            credential_id: cred.to_vec(),
            public_key_cose: vec![0xa0],
            algorithm: -7,
            rp_id: "auths:presence".into(),
            aaguid: vec![0; 16],
            virtual_key: true,
            device: "sim".into(),
            created: 1,
            sign_count: 0,
            protocol: "ctap2".into(),
            attestation_certificate: Vec::new(),
            uv_required: false,
            hmac_secret: false,
            client_data: String::new(),
            attestation: Default::default(),
        }
    }

    #[test]
    fn add_list_remove_and_counter() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("home");
        let s = TokenStore::open(&home).unwrap();
        assert!(s.list().unwrap().is_empty());
        s.add(sample(b"one", "main")).unwrap();
        s.add(sample(b"two", "backup")).unwrap();
        assert!(matches!(
            s.add(sample(b"two", "x")),
            Err(EnrollmentError::Duplicate(_))
        ));
        s.save_sign_count(b"one", 7).unwrap();
        s.save_sign_count(b"one", 3).unwrap();
        let l = s.list().unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].sign_count, 7, "never lowered");
        assert_eq!(s.remove("backup").unwrap().credential_id, b"two");
        let id = s.list().unwrap()[0].id.clone();
        assert_eq!(s.remove(&id[..6]).unwrap().label, "main");
        assert!(matches!(
            s.remove("main"),
            Err(EnrollmentError::NotFound(_))
        ));
    }

    #[test]
    fn corrupt_and_newer_files_are_refused_and_kept() {
        let t = tempfile::tempdir().unwrap();
        let s = TokenStore::open(&t.path().join("h")).unwrap();
        secure_fs::atomic_write(&s.path(), b"{not json").unwrap();
        assert!(matches!(s.list(), Err(EnrollmentError::Corrupt { .. })));
        assert!(matches!(
            s.add(sample(b"x", "l")),
            Err(EnrollmentError::Corrupt { .. })
        ));
        assert_eq!(std::fs::read(s.path()).unwrap(), b"{not json");
        secure_fs::atomic_write(&s.path(), br#"{"version": 9, "tokens": []}"#).unwrap();
        assert!(matches!(
            s.list(),
            Err(EnrollmentError::NewerSchema { found: 9, .. })
        ));
    }
}
