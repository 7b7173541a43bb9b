//! Identity keys sealed by security keys (the hmac-secret extension, CTAP 2.1 §12.5): the
//! private key on disk is encrypted under a random data key, and the data key is wrapped once
//! per enrolled security key under a key derived from that security key's hmac-secret output
//! for the file's salt. Nothing on disk signs anything without one of those security keys.
//!
//! The file (`$AUTHS_HOME/keys/<id>.sealed`, JSON, 0600, written atomically), version 1:
//! - `type` `auths.sealed-key.v1`; `id` (16 hex digits: the start of SHA-256 of the public key
//!   blob); `label`; `public_key` (the OpenSSH public key line); `salt` (32 random bytes, hex,
//!   this file's hmac-secret salt); `uv` (sealed under the secret the key gives only with the
//!   user verified); `created` (Unix time);
//! - `wraps`: per security key, its `credential_id`, a `nonce` and `wrapped`, the data key
//!   under ChaCha20-Poly1305 with KEK = HKDF-SHA-256(ikm = the hmac-secret output, salt =
//!   `salt`, info = "auths sealed key v1 kek" ‖ credential id), associated data = the header
//!   below ‖ the credential id;
//! - `nonce` and `ciphertext`: the OpenSSH private key (its binary encoding) under
//!   ChaCha20-Poly1305 with the data key; associated data = "auths.sealed-key.v1" ‖ 0 ‖ `id` ‖
//!   0 ‖ the public key without its comment. A changed public key, id or ciphertext fails
//!   to open; the label may change.
//!
//! The hmac-secret output, the KEK and the data key live in [`Zeroizing`] buffers only.

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::secure_fs::{self, SecureFsError};

/// The `type` of a sealed key file.
pub const SEALED_TYPE: &str = "auths.sealed-key.v1";

/// Directory of sealed keys inside `AUTHS_HOME`.
pub const KEYS_DIR: &str = "keys";

/// File name extension of a sealed key.
pub const EXTENSION: &str = "sealed";

/// Largest sealed key file read (an RSA-8192 key is about 5 KiB).
pub const MAX_FILE: usize = 64 * 1024;

/// Most wraps in one file (one per enrolled security key).
pub const MAX_WRAPS: usize = 32;

const KEK_INFO: &[u8] = b"auths sealed key v1 kek";

/// One security key's hmac-secret output for a file's salt, with its credential.
pub struct Unsealer<'a> {
    /// The credential that answered.
    pub credential_id: &'a [u8],
    /// Its hmac-secret output for the file's salt.
    pub output: &'a [u8; 32],
}

/// The data key wrapped for one security key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wrap {
    /// The credential whose hmac-secret output unwraps it.
    #[serde(with = "hex::serde")]
    pub credential_id: Vec<u8>,
    #[serde(with = "hex::serde")]
    nonce: Vec<u8>,
    #[serde(with = "hex::serde")]
    wrapped: Vec<u8>,
}

/// A sealed identity key, as its file holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedKey {
    #[serde(rename = "type")]
    kind: String,
    /// 16 hex digits, from the public key.
    pub id: String,
    /// A name for people.
    pub label: String,
    /// The OpenSSH public key line.
    pub public_key: String,
    /// This file's hmac-secret salt.
    #[serde(with = "hex::serde")]
    pub salt: Vec<u8>,
    /// Sealed under the secret a security key gives only with the user verified (PIN, finger).
    #[serde(default)]
    pub uv: bool,
    /// Unix time it was sealed.
    pub created: u64,
    /// The data key, wrapped per security key.
    pub wraps: Vec<Wrap>,
    #[serde(with = "hex::serde")]
    nonce: Vec<u8>,
    #[serde(with = "hex::serde")]
    ciphertext: Vec<u8>,
}

/// Why a sealed key cannot be made, read or opened.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SealError {
    /// The file cannot be used safely.
    #[error(transparent)]
    Fs(#[from] SecureFsError),
    /// The file is not a sealed key of this version.
    #[error("{path} is not a sealed key auths can read: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No wrap for the security key that answered.
    #[error("this key was sealed before the security key {credential} was added to it; unseal it once with a key that can (`auths key rewrap`), which adds this one")]
    NotWrappedFor {
        /// Short id of the credential.
        credential: String,
    },
    /// The wrap does not open with this security key's output.
    #[error("the security key's secret does not open this key file (another salt, or the file was changed): restore the file from a copy, or seal the key again")]
    WrongSecret,
    /// The key itself does not open: the file was changed.
    #[error("the sealed key does not open: its public key, id or ciphertext was changed; restore the file from a copy, or seal the key again")]
    Tampered,
    /// The private key cannot be encoded or decoded.
    #[error("the private key: {0}")]
    Key(String),
    /// Nothing to seal with.
    #[error("no security key that can seal (hmac-secret) is enrolled: enroll one with `auths token enroll`")]
    NoSealer,
    /// No sealed key matches.
    #[error("no sealed key matches {0:?} (see `auths key list`)")]
    NotFound(String),
    /// More than one matches.
    #[error("{0:?} matches several sealed keys; use the id")]
    Ambiguous(String),
    /// A sealed key with this id exists.
    #[error("this key is sealed already (id {0})")]
    Exists(String),
}

fn cipher(key: &[u8; 32]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(Key::from_slice(key))
}

fn kek(output: &[u8; 32], salt: &[u8], credential_id: &[u8]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(salt), output);
    let mut info = KEK_INFO.to_vec();
    info.extend_from_slice(credential_id);
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA-256's limit: this cannot fail.
    let _ = hk.expand(&info, okm.as_mut());
    okm
}

/// The id of a key: the first 8 bytes of SHA-256 of its public key blob, hex.
pub fn key_id(public: &ssh_key::PublicKey) -> Result<String, SealError> {
    let blob = public
        .to_bytes()
        .map_err(|e| SealError::Key(e.to_string()))?;
    Ok(hex::encode(&Sha256::digest(&blob)[..8]))
}

impl SealedKey {
    /// Seal `private` for every security key in `sealers` (each one's output for `salt`).
    pub fn seal(
        private: &ssh_key::PrivateKey,
        label: &str,
        salt: [u8; 32],
        uv: bool,
        sealers: &[Unsealer<'_>],
        now_unix: u64,
    ) -> Result<SealedKey, SealError> {
        if sealers.is_empty() {
            return Err(SealError::NoSealer);
        }
        let public = private.public_key().clone();
        let mut public_line = public.clone();
        public_line.set_comment(label);
        let public_key = public_line
            .to_openssh()
            .map_err(|e| SealError::Key(e.to_string()))?;
        let id = key_id(&public)?;
        let mut data_key = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, data_key.as_mut());
        let plaintext = Zeroizing::new(
            private
                .to_bytes()
                .map_err(|e| SealError::Key(e.to_string()))?
                .to_vec(),
        );
        let mut key = SealedKey {
            kind: SEALED_TYPE.into(),
            id,
            label: label.to_owned(),
            public_key,
            salt: salt.to_vec(),
            uv,
            created: now_unix,
            wraps: Vec::new(),
            nonce: rand::random::<[u8; 12]>().to_vec(),
            ciphertext: Vec::new(),
        };
        let header = key.header()?;
        key.ciphertext = cipher(&data_key)
            .encrypt(
                Nonce::from_slice(&key.nonce),
                Payload {
                    msg: &plaintext,
                    aad: &header,
                },
            )
            .map_err(|_| SealError::Key("encryption failed".into()))?;
        for s in sealers {
            key.add_wrap(&data_key, s)?;
        }
        Ok(key)
    }

    /// The associated data of the ciphertext: type, id and the public key without comment.
    fn header(&self) -> Result<Vec<u8>, SealError> {
        let public = ssh_key::PublicKey::from_openssh(&self.public_key)
            .map_err(|e| SealError::Key(e.to_string()))?;
        let blob = public
            .to_bytes()
            .map_err(|e| SealError::Key(e.to_string()))?;
        let mut h = SEALED_TYPE.as_bytes().to_vec();
        h.push(0);
        h.extend_from_slice(self.id.as_bytes());
        h.push(0);
        h.extend_from_slice(&blob);
        Ok(h)
    }

    fn add_wrap(&mut self, data_key: &[u8; 32], s: &Unsealer<'_>) -> Result<(), SealError> {
        if self.wraps.len() >= MAX_WRAPS {
            return Err(SealError::Key(format!(
                "a key can be sealed for at most {MAX_WRAPS} security keys"
            )));
        }
        let kek = kek(s.output, &self.salt, s.credential_id);
        let nonce: [u8; 12] = rand::random();
        let mut aad = self.header()?;
        aad.extend_from_slice(s.credential_id);
        let wrapped = cipher(&kek)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: data_key,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Key("wrapping failed".into()))?;
        self.wraps.retain(|w| w.credential_id != s.credential_id);
        self.wraps.push(Wrap {
            credential_id: s.credential_id.to_vec(),
            nonce: nonce.to_vec(),
            wrapped,
        });
        Ok(())
    }

    /// The credentials this key is sealed for.
    pub fn sealed_for(&self) -> impl Iterator<Item = &[u8]> {
        self.wraps.iter().map(|w| w.credential_id.as_slice())
    }

    fn data_key(&self, s: &Unsealer<'_>) -> Result<Zeroizing<[u8; 32]>, SealError> {
        let wrap = self
            .wraps
            .iter()
            .find(|w| w.credential_id == s.credential_id)
            .ok_or_else(|| SealError::NotWrappedFor {
                credential: super::enrollment::Enrollment::short_id(s.credential_id),
            })?;
        if wrap.nonce.len() != 12 {
            return Err(SealError::WrongSecret);
        }
        let kek = kek(s.output, &self.salt, s.credential_id);
        let mut aad = self.header()?;
        aad.extend_from_slice(s.credential_id);
        let plain = Zeroizing::new(
            cipher(&kek)
                .decrypt(
                    Nonce::from_slice(&wrap.nonce),
                    Payload {
                        msg: &wrap.wrapped,
                        aad: &aad,
                    },
                )
                .map_err(|_| SealError::WrongSecret)?,
        );
        let mut k = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(SealError::WrongSecret);
        }
        k.copy_from_slice(&plain);
        Ok(k)
    }

    /// Open the key with one security key's output; the public key must match the file's.
    pub fn unseal(&self, s: &Unsealer<'_>) -> Result<ssh_key::PrivateKey, SealError> {
        let data_key = self.data_key(s)?;
        if self.nonce.len() != 12 {
            return Err(SealError::Tampered);
        }
        let header = self.header()?;
        let plain = Zeroizing::new(
            cipher(&data_key)
                .decrypt(
                    Nonce::from_slice(&self.nonce),
                    Payload {
                        msg: &self.ciphertext,
                        aad: &header,
                    },
                )
                .map_err(|_| SealError::Tampered)?,
        );
        let private =
            ssh_key::PrivateKey::from_bytes(&plain).map_err(|e| SealError::Key(e.to_string()))?;
        let want = ssh_key::PublicKey::from_openssh(&self.public_key)
            .map_err(|e| SealError::Key(e.to_string()))?;
        if private.public_key().key_data() != want.key_data() {
            return Err(SealError::Tampered);
        }
        Ok(private)
    }

    /// Add wraps for `more` security keys, opening the data key with `with`.
    pub fn rewrap(&mut self, with: &Unsealer<'_>, more: &[Unsealer<'_>]) -> Result<(), SealError> {
        // The data key must open the key itself: a wrap is never added for a changed file.
        self.unseal(with)?;
        let data_key = self.data_key(with)?;
        for s in more {
            self.add_wrap(&data_key, s)?;
        }
        Ok(())
    }

    /// Parse a sealed key file strictly (`path` names it in errors).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<SealedKey, SealError> {
        let corrupt = |reason: String| SealError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.len() > MAX_FILE {
            return Err(corrupt(format!("it is larger than {MAX_FILE} bytes")));
        }
        let k: SealedKey = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if k.kind != SEALED_TYPE {
            return Err(corrupt(format!(
                "its type is {:?}, not {SEALED_TYPE}",
                super::prompt::escape_control(&k.kind)
            )));
        }
        if k.salt.len() != 32 || k.nonce.len() != 12 || k.wraps.len() > MAX_WRAPS {
            return Err(corrupt("a salt, nonce or wrap count out of bounds".into()));
        }
        if k.id.len() != 16 || !k.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(corrupt("its id is not 16 hex digits".into()));
        }
        let public = ssh_key::PublicKey::from_openssh(&k.public_key)
            .map_err(|e| corrupt(format!("its public key: {e}")))?;
        if key_id(&public)? != k.id {
            return Err(corrupt("its id does not belong to its public key".into()));
        }
        Ok(k)
    }

    /// The file's hmac-secret salt (32 bytes in every parsed or sealed file; zeros for none,
    /// which no wrap opens with).
    pub fn salt_bytes(&self) -> [u8; 32] {
        self.salt.as_slice().try_into().unwrap_or([0; 32])
    }

    /// The file's bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// The sealed keys in one `AUTHS_HOME`.
#[derive(Debug, Clone)]
pub struct SealedStore {
    dir: PathBuf,
}

impl SealedStore {
    /// The store in `home` (its `keys/` directory is created 0700 when first written).
    pub fn new(home: &Path) -> SealedStore {
        SealedStore {
            dir: home.join(KEYS_DIR),
        }
    }

    /// Where key `id` lives.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.{EXTENSION}"))
    }

    /// Every sealed key, sorted by id; a file that does not parse is an error naming it.
    pub fn list(&self) -> Result<Vec<SealedKey>, SealError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(SealError::Corrupt {
                    path: self.dir.clone(),
                    reason: e.to_string(),
                })
            }
        };
        secure_fs::check_private(&self.dir, true)?;
        let mut keys = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
                continue;
            }
            let Some(bytes) = secure_fs::read_private(&path)? else {
                continue;
            };
            keys.push(SealedKey::parse(&bytes, &path)?);
        }
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(keys)
    }

    /// Every sealed key that reads, and the reason for each file that does not (the agent
    /// lists the good ones and says which were left out).
    pub fn load_all(&self) -> (Vec<SealedKey>, Vec<SealError>) {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Vec::new(), Vec::new()),
            Err(e) => {
                let err = SealError::Corrupt {
                    path: self.dir.clone(),
                    reason: e.to_string(),
                };
                return (Vec::new(), vec![err]);
            }
        };
        if let Err(e) = secure_fs::check_private(&self.dir, true) {
            return (Vec::new(), vec![e.into()]);
        }
        let (mut keys, mut errors) = (Vec::new(), Vec::new());
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
                continue;
            }
            match secure_fs::read_private(&path)
                .map_err(SealError::from)
                .and_then(|b| b.map(|b| SealedKey::parse(&b, &path)).transpose())
            {
                Ok(Some(k)) => keys.push(k),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        (keys, errors)
    }

    /// Write `key` (a new one unless `replace`), atomically, 0600.
    pub fn save(&self, key: &SealedKey, replace: bool) -> Result<PathBuf, SealError> {
        secure_fs::ensure_private_dir(&self.dir)?;
        let path = self.path(&key.id);
        if !replace && path.exists() {
            return Err(SealError::Exists(key.id.clone()));
        }
        secure_fs::atomic_write(&path, &key.to_json())?;
        Ok(path)
    }

    /// The key whose id (or unique id prefix) or label is `which`.
    pub fn find(&self, which: &str) -> Result<SealedKey, SealError> {
        let all = self.list()?;
        let by_id: Vec<_> = all.iter().filter(|k| k.id.starts_with(which)).collect();
        let found: Vec<_> = if by_id.is_empty() {
            all.iter().filter(|k| k.label == which).collect()
        } else {
            by_id
        };
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(SealError::NotFound(which.to_owned())),
            _ => Err(SealError::Ambiguous(which.to_owned())),
        }
    }

    /// Remove the key `which` names; returns it.
    pub fn remove(&self, which: &str) -> Result<SealedKey, SealError> {
        let key = self.find(which)?;
        let path = self.path(&key.id);
        std::fs::remove_file(&path).map_err(|e| SealError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private() -> ssh_key::PrivateKey {
        ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap()
    }

    const A: &[u8] = b"credential-a";
    const B: &[u8] = b"credential-b";

    fn sealed(p: &ssh_key::PrivateKey) -> SealedKey {
        SealedKey::seal(
            p,
            "work",
            [1; 32],
            false,
            &[Unsealer {
                credential_id: A,
                output: &[7; 32],
            }],
            1,
        )
        .unwrap()
    }

    #[test]
    fn seals_and_opens_with_the_security_key_secret_only() {
        let p = private();
        let k = sealed(&p);
        let parsed = SealedKey::parse(&k.to_json(), Path::new("k")).unwrap();
        let opened = parsed
            .unseal(&Unsealer {
                credential_id: A,
                output: &[7; 32],
            })
            .unwrap();
        assert_eq!(opened.public_key().key_data(), p.public_key().key_data());
        assert!(matches!(
            parsed.unseal(&Unsealer {
                credential_id: A,
                output: &[8; 32],
            }),
            Err(SealError::WrongSecret)
        ));
        assert!(matches!(
            parsed.unseal(&Unsealer {
                credential_id: B,
                output: &[7; 32],
            }),
            Err(SealError::NotWrappedFor { .. })
        ));
    }

    #[test]
    fn the_file_holds_no_private_key_byte_in_the_clear() {
        let p = private();
        let k = sealed(&p);
        let file = k.to_json();
        let seed = p.key_data().ed25519().unwrap().private.to_bytes();
        let text = String::from_utf8(file.clone()).unwrap();
        assert!(!text.contains(&hex::encode(seed)));
        assert!(!file.windows(seed.len()).any(|w| w == seed));
    }

    #[test]
    fn a_changed_file_does_not_open() {
        let p = private();
        let k = sealed(&p);
        let s = Unsealer {
            credential_id: A,
            output: &[7; 32],
        };
        let mut c = k.clone();
        c.ciphertext[3] ^= 1;
        assert!(matches!(c.unseal(&s), Err(SealError::Tampered)));
        let mut c = k.clone();
        c.salt[0] ^= 1;
        assert!(matches!(c.unseal(&s), Err(SealError::WrongSecret)));
        // Another public key (with its own id): the wraps and ciphertext were made for this one.
        let other = private();
        let mut c = k.clone();
        c.public_key = other.public_key().to_openssh().unwrap();
        c.id = key_id(other.public_key()).unwrap();
        assert!(c.unseal(&s).is_err());
        // The label is for people: it may change.
        let mut c = k.clone();
        c.label = "renamed".into();
        assert!(c.unseal(&s).is_ok());
        // An id that is not the public key's is refused at parse.
        let mut c = k;
        c.id = "0000000000000000".into();
        assert!(matches!(
            SealedKey::parse(&c.to_json(), Path::new("k")),
            Err(SealError::Corrupt { .. })
        ));
    }

    /// Writes the fuzz target's seed when `AUTHS_WRITE_FUZZ_SEED` names a file (by hand only);
    /// always checks that a file sealed for the fuzz target's credential opens with it.
    #[test]
    fn the_fuzz_seed_opens_with_the_fuzz_credential() {
        let p = private();
        let k = SealedKey::seal(
            &p,
            "fuzz",
            [2; 32],
            false,
            &[Unsealer {
                credential_id: b"fuzz-credential",
                output: &[7; 32],
            }],
            1,
        )
        .unwrap();
        let parsed = SealedKey::parse(&k.to_json(), Path::new("seed")).unwrap();
        assert!(parsed
            .unseal(&Unsealer {
                credential_id: b"fuzz-credential",
                output: &[7; 32],
            })
            .is_ok());
        if let Some(out) = std::env::var_os("AUTHS_WRITE_FUZZ_SEED") {
            std::fs::write(out, k.to_json()).unwrap();
        }
    }

    #[test]
    fn a_rewrap_adds_a_backup_that_opens_it_too() {
        let p = private();
        let mut k = sealed(&p);
        let a = Unsealer {
            credential_id: A,
            output: &[7; 32],
        };
        let b = Unsealer {
            credential_id: B,
            output: &[9; 32],
        };
        assert!(k.rewrap(&b, &[]).is_err(), "b cannot open it yet");
        k.rewrap(&a, &[b]).unwrap();
        let b = Unsealer {
            credential_id: B,
            output: &[9; 32],
        };
        assert!(k.unseal(&b).is_ok());
        assert_eq!(k.sealed_for().count(), 2);
    }
}
