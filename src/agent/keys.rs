//! Identity keys held in memory, and the unlock window that bounds how long they stay there.
//!
//! Keys are `ssh_key::PrivateKey` values (their secret parts zeroize on drop). The window
//! opens when the first key is added and closes, wiping every key, on the first of: the sliding
//! idle timeout, the absolute cap since the window opened, the maximum number of signatures, or
//! an explicit [`KeyStore::wipe`]. Per-key lifetimes (the `ssh-add -t` constraint,
//! `SSH_AGENT_CONSTRAIN_LIFETIME`, draft-miller-ssh-agent "Key Constraints") remove single keys.
//!
//! The protocol lock (draft-miller-ssh-agent "Locking and unlocking an agent", `ssh-add -x`) differs from OpenSSH's: we keep
//! no plaintext key while locked. The keys are serialised, sealed with ChaCha20-Poly1305 under a
//! key derived from the passphrase with Argon2id, and the plaintext is dropped; unlock opens the
//! seal or restores nothing.
//!
//! Time is always an explicit `now` argument, so tests move it instead of sleeping.

use std::time::{Duration, Instant};

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use sha2::{Digest, Sha256};
use ssh_key::private::{EcdsaKeypair, Ed25519Keypair, KeypairData};
use ssh_key::public::KeyData;
use ssh_key::{Certificate, HashAlg, PrivateKey, Signature};
use zeroize::Zeroizing;

use super::{AgentError, KeyCheck, SealError};
use crate::presence::gate::Approval;
use crate::presence::request::UnsealAsk;
use crate::presence::sealed::{SealError as SealedError, SealedKey};
use crate::presence::touch::HmacSecret;

/// Where the agent reads the time. Injected so tests move time instead of sleeping.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The monotonic system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to (tests, simulations).
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    offset: std::sync::Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock {
            base: Instant::now(),
            offset: std::sync::Mutex::new(Duration::ZERO),
        }
    }
}

impl ManualClock {
    /// A clock standing at the current instant.
    pub fn new() -> Self {
        Self::default()
    }

    /// Move the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut off = self.offset.lock().unwrap_or_else(|e| e.into_inner());
        *off += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Bounds of one unlock window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnlockPolicy {
    /// Keys are wiped after this long without a signature (sliding). Adding a key does not
    /// extend it: a same-user process adding throwaway keys cannot keep the window open.
    pub idle_timeout: Duration,
    /// Keys are wiped this long after the window opened, whatever the activity.
    pub max_unlock: Duration,
    /// Keys are wiped after this many signatures in one window, when set.
    pub max_signatures: Option<u64>,
}

impl Default for UnlockPolicy {
    fn default() -> Self {
        UnlockPolicy {
            idle_timeout: Duration::from_secs(30 * 60),
            max_unlock: Duration::from_secs(4 * 60 * 60),
            max_signatures: None,
        }
    }
}

/// Why the keys were wiped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WipeReason {
    /// No activity for the idle timeout.
    Idle,
    /// The absolute cap since unlock passed.
    MaxUnlock,
    /// The maximum number of signatures was reached.
    MaxSignatures,
    /// An explicit wipe (`auths agent lock`, `ssh-add -D`, shutdown).
    Explicit,
    /// The protocol lock sealed the keys: no plaintext key is left.
    Locked,
}

/// Argon2id cost for the protocol lock's key derivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for SealParams {
    /// OWASP's recommended minimum for Argon2id: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        SealParams {
            m_cost: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

/// One public identity as listed to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicIdentity {
    /// The public key.
    pub key_data: KeyData,
    /// The comment given when the key was added.
    pub comment: String,
    /// OpenSSH fingerprint, `SHA256:…`.
    pub fingerprint: String,
}

/// The outcome of [`KeyStore::sign`]: the approval comes back either way, so the caller settles
/// it ([`Approval::signed`] before handing out the signature, or [`Approval::not_signed`]).
#[derive(Debug)]
#[must_use = "the approval must be settled"]
pub struct Signing {
    /// The approval the signature was asked under.
    pub approval: Approval,
    /// The signature, or why it was not made.
    pub result: Result<Signature, AgentError>,
    /// Set when the store wiped its keys on the way (the signature cap was reached, or the
    /// window had closed): the caller ends the gate's grants once the approval is settled.
    pub wiped: Option<WipeReason>,
}

struct Entry {
    key: PrivateKey,
    fingerprint: String,
    meta: KeyMeta,
    /// OpenSSH certificates of this key (`ssh-add` adds `id-cert.pub` with `id`): listed as
    /// identities of their own, signing with this key. Public, not secret.
    certs: Vec<(Certificate, String)>,
}

/// At most this many certificates are kept for one key.
pub const MAX_CERTIFICATES_PER_KEY: usize = 8;

/// A certificate as listed to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicCertificate {
    /// The certificate.
    pub certificate: Certificate,
    /// The comment given when it was added.
    pub comment: String,
}

/// What the agent knows of a key besides its secret (never secret itself).
#[derive(Debug, Clone, Copy, Default)]
struct KeyMeta {
    /// Per-key lifetime (`ssh-add -t`).
    expires: Option<Instant>,
    /// Added with `ssh-add -c`: every signature needs its own touch, no grant covers it.
    confirm: bool,
}

/// A key the agent holds, as a signature request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldKey {
    /// OpenSSH fingerprint, `SHA256:…`.
    pub fingerprint: String,
    /// Added with the confirm constraint (`ssh-add -c`): no grant may cover its signatures.
    pub confirm: bool,
    /// A sealed key that is not open: the approving touch must unseal it.
    pub unseal: Option<UnsealAsk>,
}

/// A sealed identity key the agent lists: its public half and the sealed file, never a
/// plaintext key. The touch that approves its first signature of a window unseals it.
struct SealedEntry {
    file: SealedKey,
    public: KeyData,
    fingerprint: String,
    /// The file it was read from: read again when a security key it has no wrap for answers
    /// (`auths key rewrap` may have added one since).
    source: Option<std::path::PathBuf>,
}

struct Window {
    opened: Instant,
    last_activity: Instant,
    signatures: u64,
}

/// Keys sealed under the lock passphrase; nothing here is plaintext key material.
struct Sealed {
    salt: [u8; 16],
    nonce: [u8; 12],
    ciphertext: Vec<u8>,
    /// Per-key expiry and constraints, in the order of the sealed keys (not secret).
    meta: Vec<KeyMeta>,
    /// Each sealed key's certificates, in the same order (not secret).
    certs: Vec<Vec<(Certificate, String)>>,
}

/// The agent's keys and unlock window. Callers hold it behind a mutex that is never held across
/// an await on the gate.
pub struct KeyStore {
    policy: UnlockPolicy,
    seal_params: SealParams,
    entries: Vec<Entry>,
    window: Option<Window>,
    sealed: Option<Sealed>,
    /// Sealed identity keys (`$AUTHS_HOME/keys`): listed at once, opened by a touch. Not
    /// secret, so wipes keep them; the plaintext a touch opened is an ordinary entry.
    sealed_keys: Vec<SealedEntry>,
    /// Why the keys were last wiped (or sealed), until [`KeyStore::take_wiped`] reports it.
    wiped: Option<WipeReason>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("policy", &self.policy)
            .field("keys", &self.entries.len())
            .field("locked", &self.sealed.is_some())
            .finish()
    }
}

/// Fingerprint of a public key in OpenSSH's `SHA256:…` form.
pub fn fingerprint(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A key the agent can hold, whose public half is its private half's: an Ed25519 key whose
/// public key is derived from its seed, or a P-256 key whose scalar `d` is in `[1, n)` and whose
/// point is `d·G`, uncompressed (as OpenSSH writes it). A mismatched pair would be listed under
/// one key and sign with another.
/// The key types a sealed key may be (its private half is checked as [`check_supported`] does
/// when it is opened).
fn check_supported_public(key: &KeyData) -> Result<(), AgentError> {
    match key {
        KeyData::Ed25519(_) | KeyData::Ecdsa(_) | KeyData::Rsa(_) => Ok(()),
        other => Err(AgentError::UnsupportedKey(other.algorithm().to_string())),
    }
}

fn check_supported(key: &KeypairData) -> Result<(), AgentError> {
    // One ECDSA curve's check: the scalar is in [1, n) and its point is the public key.
    macro_rules! ec_pair {
        ($curve:ident, $public:expr, $private:expr) => {{
            let secret = $curve::SecretKey::from_slice($private.as_slice())
                .map_err(|_| AgentError::InvalidKey(KeyCheck::Scalar))?;
            if secret.public_key().to_encoded_point(false) == *$public {
                Ok(())
            } else {
                Err(AgentError::InvalidKey(KeyCheck::Mismatch))
            }
        }};
    }
    match key {
        KeypairData::Ed25519(k) => {
            if Ed25519Keypair::from(k.private.clone()).public == k.public {
                Ok(())
            } else {
                Err(AgentError::InvalidKey(KeyCheck::Mismatch))
            }
        }
        KeypairData::Ecdsa(EcdsaKeypair::NistP256 { public, private }) => {
            ec_pair!(p256, public, private)
        }
        KeypairData::Ecdsa(EcdsaKeypair::NistP384 { public, private }) => {
            ec_pair!(p384, public, private)
        }
        KeypairData::Ecdsa(EcdsaKeypair::NistP521 { public, private }) => {
            ec_pair!(p521, public, private)
        }
        KeypairData::Rsa(k) => {
            use rsa::traits::PublicKeyParts;
            let key = rsa_private(k)?;
            let bits = key.n().bits();
            if !(2048..=8192).contains(&bits) {
                return Err(AgentError::InvalidKey(KeyCheck::RsaSize(bits)));
            }
            key.validate()
                .map_err(|_| AgentError::InvalidKey(KeyCheck::RsaParts))
        }
        other => Err(AgentError::UnsupportedKey(
            other
                .algorithm()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "unknown".into()),
        )),
    }
}

/// The same certificate, whatever comment each copy carries (a request names the blob).
fn same_certificate(a: &Certificate, b: &Certificate) -> bool {
    use ssh_encoding::Encode;
    let blob = |c: &Certificate| {
        let mut v = Vec::new();
        c.encode(&mut v).ok().map(|_| v)
    };
    matches!((blob(a), blob(b)), (Some(x), Some(y)) if x == y)
}

/// The key pair a certificate add carries: the certificate's public key with the private
/// half the message holds (OpenSSH sends only the private parts; the Ed25519 form repeats its
/// public key, which must be the certificate's). The halves are checked at
/// [`KeyStore::add_certificate`].
pub fn keypair_for_certificate(
    certificate: &Certificate,
    private: ssh_agent_lib::proto::PrivateKeyData,
) -> Result<KeypairData, AgentError> {
    use ssh_agent_lib::proto::{EcdsaPrivateKey as Agent, PrivateKeyData as P};
    use ssh_key::public::EcdsaPublicKey as Public;
    let mismatch = AgentError::InvalidKey(KeyCheck::CertificateKey);
    Ok(match (certificate.public_key(), private) {
        (KeyData::Ed25519(public), P::Ed25519(pair)) => {
            if pair.public != *public {
                return Err(mismatch);
            }
            KeypairData::Ed25519(pair)
        }
        (KeyData::Ecdsa(Public::NistP256(public)), P::Ecdsa(Agent::NistP256(private))) => {
            KeypairData::Ecdsa(EcdsaKeypair::NistP256 {
                public: *public,
                private,
            })
        }
        (KeyData::Ecdsa(Public::NistP384(public)), P::Ecdsa(Agent::NistP384(private))) => {
            KeypairData::Ecdsa(EcdsaKeypair::NistP384 {
                public: *public,
                private,
            })
        }
        (KeyData::Ecdsa(Public::NistP521(public)), P::Ecdsa(Agent::NistP521(private))) => {
            KeypairData::Ecdsa(EcdsaKeypair::NistP521 {
                public: *public,
                private,
            })
        }
        (KeyData::Rsa(public), P::Rsa(private)) => KeypairData::Rsa(ssh_key::private::RsaKeypair {
            public: public.clone(),
            private,
        }),
        (KeyData::Dsa(_), P::Dsa(_)) => return Err(AgentError::UnsupportedKey("ssh-dss".into())),
        _ => return Err(mismatch),
    })
}

/// The rsa crate's private key of `k`, built from n, e, d, p and q (ssh-key 0.6.7's own
/// conversion passes p twice for the primes, so it cannot be used).
fn rsa_private(k: &ssh_key::private::RsaKeypair) -> Result<rsa::RsaPrivateKey, AgentError> {
    let parts = || -> Result<rsa::RsaPrivateKey, ssh_key::Error> {
        let n = rsa::BigUint::try_from(&k.public.n)?;
        let e = rsa::BigUint::try_from(&k.public.e)?;
        let d = rsa::BigUint::try_from(&k.private.d)?;
        let p = rsa::BigUint::try_from(&k.private.p)?;
        let q = rsa::BigUint::try_from(&k.private.q)?;
        rsa::RsaPrivateKey::from_components(n, e, d, vec![p, q]).map_err(|_| ssh_key::Error::Crypto)
    };
    parts().map_err(|_| AgentError::InvalidKey(KeyCheck::RsaParts))
}

/// `SSH_AGENT_RSA_SHA2_256` and `SSH_AGENT_RSA_SHA2_512` (draft-miller-ssh-agent §4.5.1).
const RSA_SHA2_256: u32 = 2;
const RSA_SHA2_512: u32 = 4;

/// The hash an RSA signature is made with under sign-request `flags`: SHA-512 or SHA-256 as
/// asked; none (plain `ssh-rsa`, SHA-1) is refused.
pub fn rsa_hash(flags: u32) -> Result<HashAlg, AgentError> {
    if flags & RSA_SHA2_512 != 0 {
        Ok(HashAlg::Sha512)
    } else if flags & RSA_SHA2_256 != 0 {
        Ok(HashAlg::Sha256)
    } else {
        Err(AgentError::Sha1Refused)
    }
}

/// Sign `data` with `key`: RSA keys with the hash `flags` ask for, every other key as its
/// algorithm defines.
fn sign_with(key: &PrivateKey, data: &[u8], flags: u32) -> Result<Signature, AgentError> {
    let KeypairData::Rsa(k) = key.key_data() else {
        return key.try_sign(data).map_err(AgentError::Sign);
    };
    use rsa::signature::{SignatureEncoding, Signer as _};
    let hash = rsa_hash(flags)?;
    let private = rsa_private(k)?;
    let bytes = match hash {
        HashAlg::Sha256 => rsa::pkcs1v15::SigningKey::<Sha256>::new(private)
            .try_sign(data)
            .map_err(AgentError::Sign)?
            .to_vec(),
        _ => rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(private)
            .try_sign(data)
            .map_err(AgentError::Sign)?
            .to_vec(),
    };
    Signature::new(ssh_key::Algorithm::Rsa { hash: Some(hash) }, bytes).map_err(AgentError::Key)
}

/// What [`KeyStore::prepare_sign`] hands out: the key to sign with (or why not), and the wipe
/// the count caused, if any.
#[must_use = "finish_sign makes the signature and gives the approval back"]
pub struct Prepared {
    result: Result<PrivateKey, AgentError>,
    wiped: Option<WipeReason>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("ok", &self.result.is_ok())
            .field("wiped", &self.wiped)
            .finish()
    }
}

/// The second half of [`KeyStore::sign`]: sign `data` with the prepared key, outside the
/// store's lock; the approval comes back to be settled.
pub fn finish_sign(prepared: Prepared, data: &[u8], flags: u32, approval: Approval) -> Signing {
    let Prepared { result, wiped } = prepared;
    Signing {
        approval,
        result: result.and_then(|private| sign_with(&private, data, flags)),
        wiped,
    }
}

impl KeyStore {
    /// An empty, unlocked store.
    pub fn new(policy: UnlockPolicy) -> Self {
        KeyStore {
            policy,
            seal_params: SealParams::default(),
            entries: Vec::new(),
            window: None,
            sealed: None,
            sealed_keys: Vec::new(),
            wiped: None,
        }
    }

    /// List the sealed identity key `file` (replacing one with the same public key). Nothing
    /// is opened: the touch that approves its first signature unseals it.
    pub fn load_sealed(
        &mut self,
        file: SealedKey,
        source: Option<std::path::PathBuf>,
    ) -> Result<String, AgentError> {
        let public = ssh_key::PublicKey::from_openssh(&file.public_key)
            .map_err(AgentError::Key)?
            .key_data()
            .clone();
        check_supported_public(&public)?;
        let fingerprint = fingerprint(&public);
        self.sealed_keys.retain(|e| e.fingerprint != fingerprint);
        self.sealed_keys.push(SealedEntry {
            file,
            public,
            fingerprint: fingerprint.clone(),
            source,
        });
        Ok(fingerprint)
    }

    /// Sealed identity keys listed, and how many of them are open at `now`.
    pub fn sealed_counts(&mut self, now: Instant) -> (u32, u32) {
        self.expire(now);
        let open = self
            .sealed_keys
            .iter()
            .filter(|s| self.entries.iter().any(|e| e.fingerprint == s.fingerprint))
            .count();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        (count(self.sealed_keys.len()), count(open))
    }

    /// Open the sealed key `key` with the approving touch's hmac-secret output, and hold it
    /// as a plaintext key of this window (which opens if none is open; the idle and absolute
    /// caps wipe it, and the next signature unseals again).
    pub fn unseal(
        &mut self,
        key: &KeyData,
        secret: &HmacSecret,
        now: Instant,
    ) -> Result<(), AgentError> {
        self.expire(now);
        if self.is_locked() {
            return Err(AgentError::Locked);
        }
        let entry = self
            .sealed_keys
            .iter_mut()
            .find(|e| &e.public == key)
            .ok_or(AgentError::NoSuchKey)?;
        if entry.file.uv && !secret.user_verified() {
            return Err(AgentError::Unseal(
                crate::presence::sealed::SealError::WrongSecret,
            ));
        }
        let private = match entry.file.unseal(&secret.unsealer()) {
            Err(SealedError::NotWrappedFor { credential }) => {
                // A wrap added to the file since it was read (`auths key rewrap`): the file
                // as it is now, if it is still this key under the same salt.
                let newer = entry
                    .source
                    .as_deref()
                    .and_then(|p| Some((crate::secure_fs::read_private(p).ok()??, p)))
                    .and_then(|(bytes, p)| SealedKey::parse(&bytes, p).ok())
                    .filter(|n| n.id == entry.file.id && n.salt == entry.file.salt);
                let Some(newer) = newer else {
                    return Err(AgentError::Unseal(SealedError::NotWrappedFor {
                        credential,
                    }));
                };
                let private = newer
                    .unseal(&secret.unsealer())
                    .map_err(AgentError::Unseal)?;
                entry.file = newer;
                private
            }
            other => other.map_err(AgentError::Unseal)?,
        };
        let comment = entry.file.label.clone();
        let keypair = private.key_data().clone();
        drop(private);
        self.add(keypair, comment, None, now)?;
        Ok(())
    }

    /// Use other Argon2id costs for the protocol lock.
    pub fn with_seal_params(mut self, params: SealParams) -> Self {
        self.seal_params = params;
        self
    }

    /// The unlock policy.
    pub fn policy(&self) -> UnlockPolicy {
        self.policy
    }

    /// True while `ssh-add -x` has sealed the keys.
    pub fn is_locked(&self) -> bool {
        self.sealed.is_some()
    }

    /// Number of plaintext keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no plaintext key is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Apply the window and per-key lifetimes at `now`: drop expired keys, and wipe everything
    /// (sealed keys too) when the window closed. Returns the reason when the window closed.
    pub fn expire(&mut self, now: Instant) -> Option<WipeReason> {
        self.entries
            .retain(|e| e.meta.expires.is_none_or(|deadline| now < deadline));
        // A sealed key whose lifetime ends cannot be dropped without the passphrase: `unlock`
        // filters it out.
        let reason = self.window.as_ref().and_then(|w| {
            if now.saturating_duration_since(w.opened) >= self.policy.max_unlock {
                Some(WipeReason::MaxUnlock)
            } else if now.saturating_duration_since(w.last_activity) >= self.policy.idle_timeout {
                Some(WipeReason::Idle)
            } else {
                None
            }
        });
        if let Some(r) = reason {
            self.wipe_all(r);
            return Some(r);
        }
        if self.entries.is_empty() && self.sealed.is_none() {
            self.window = None;
        }
        None
    }

    /// Wipe every key, plaintext and sealed, and close the window (`auths agent lock`).
    pub fn wipe(&mut self) -> WipeReason {
        self.wipe_all(WipeReason::Explicit);
        WipeReason::Explicit
    }

    /// Why the keys were wiped (or sealed) since the last call, if they were. Every wipe is
    /// recorded here, including those inside other methods (a window that closed when a
    /// request arrived, the signature cap), so the caller can end the gate's grants.
    pub fn take_wiped(&mut self) -> Option<WipeReason> {
        self.wiped.take()
    }

    fn wipe_all(&mut self, reason: WipeReason) {
        // Dropping PrivateKey zeroizes its secret parts.
        self.entries.clear();
        self.entries.shrink_to_fit();
        self.sealed = None;
        self.window = None;
        self.wiped = Some(reason);
    }

    /// A signature: the idle timeout slides (opening the window if none is open).
    fn touch_window(&mut self, now: Instant) {
        self.open_window(now).last_activity = now;
    }

    /// A key was added: the window opens if none is open, and is not extended otherwise.
    fn open_window(&mut self, now: Instant) -> &mut Window {
        self.window.get_or_insert(Window {
            opened: now,
            last_activity: now,
            signatures: 0,
        })
    }

    /// The identities held, for `SSH_AGENTC_REQUEST_IDENTITIES`. Empty while locked.
    pub fn identities(&mut self, now: Instant) -> Vec<PublicIdentity> {
        self.expire(now);
        if self.is_locked() {
            return Vec::new();
        }
        let mut ids: Vec<PublicIdentity> = self
            .entries
            .iter()
            .map(|e| PublicIdentity {
                key_data: e.key.public_key().key_data().clone(),
                comment: e.key.comment().to_string(),
                fingerprint: e.fingerprint.clone(),
            })
            .collect();
        for s in &self.sealed_keys {
            if !ids.iter().any(|i| i.fingerprint == s.fingerprint) {
                ids.push(PublicIdentity {
                    key_data: s.public.clone(),
                    comment: s.file.label.clone(),
                    fingerprint: s.fingerprint.clone(),
                });
            }
        }
        ids
    }

    /// Add (or replace) an identity. `lifetime` is the `ssh-add -t` constraint.
    pub fn add(
        &mut self,
        keypair: KeypairData,
        comment: String,
        lifetime: Option<Duration>,
        now: Instant,
    ) -> Result<String, AgentError> {
        self.expire(now);
        if self.is_locked() {
            return Err(AgentError::Locked);
        }
        check_supported(&keypair)?;
        let key = PrivateKey::new(keypair, comment).map_err(AgentError::Key)?;
        let fingerprint = fingerprint(key.public_key().key_data());
        let expires = match lifetime {
            // A lifetime past the clock's range is no lifetime we can keep: refuse it.
            Some(l) => Some(
                now.checked_add(l)
                    .ok_or(AgentError::Unsupported("a key lifetime this long"))?,
            ),
            None => None,
        };
        // The same key again keeps its certificates.
        let certs = self
            .entries
            .iter_mut()
            .find(|e| e.fingerprint == fingerprint)
            .map(|e| std::mem::take(&mut e.certs))
            .unwrap_or_default();
        self.entries.retain(|e| e.fingerprint != fingerprint);
        self.entries.push(Entry {
            key,
            fingerprint: fingerprint.clone(),
            meta: KeyMeta {
                expires,
                confirm: false,
            },
            certs,
        });
        self.open_window(now);
        Ok(fingerprint)
    }

    /// Add an OpenSSH certificate with its key (`keypair`, from [`keypair_for_certificate`]):
    /// the key is added too when it is not held (as [`Self::add`] would), and must be the held
    /// one, private half included, when it is. A lifetime shortens the key's (both go
    /// together). The CA's signature over the certificate must verify (whether the CA is
    /// trusted is the server's business; so is an expired certificate, which is kept).
    pub fn add_certificate(
        &mut self,
        certificate: Certificate,
        keypair: KeypairData,
        comment: String,
        lifetime: Option<Duration>,
        now: Instant,
    ) -> Result<String, AgentError> {
        self.expire(now);
        if self.is_locked() {
            return Err(AgentError::Locked);
        }
        check_supported(&keypair)?;
        if KeyData::try_from(&keypair).map_err(AgentError::Key)? != *certificate.public_key() {
            return Err(AgentError::InvalidKey(KeyCheck::CertificateKey));
        }
        certificate
            .verify_signature()
            .map_err(|_| AgentError::InvalidKey(KeyCheck::CertificateSignature))?;
        let fingerprint = fingerprint(certificate.public_key());
        let held = self
            .entries
            .iter()
            .position(|e| e.fingerprint == fingerprint);
        let index = match held {
            Some(i) => {
                if *self.entries[i].key.key_data() != keypair {
                    return Err(AgentError::InvalidKey(KeyCheck::CertificateKey));
                }
                if let Some(l) = lifetime {
                    let deadline = now
                        .checked_add(l)
                        .ok_or(AgentError::Unsupported("a key lifetime this long"))?;
                    let meta = &mut self.entries[i].meta;
                    meta.expires = Some(meta.expires.map_or(deadline, |d| d.min(deadline)));
                }
                i
            }
            None => {
                self.add(keypair, comment.clone(), lifetime, now)?;
                self.entries.len() - 1
            }
        };
        let certs = &mut self.entries[index].certs;
        certs.retain(|(c, _)| !same_certificate(c, &certificate));
        if certs.len() >= MAX_CERTIFICATES_PER_KEY {
            return Err(AgentError::Unsupported(
                "more than 8 certificates for one key",
            ));
        }
        certs.push((certificate, comment));
        Ok(fingerprint)
    }

    /// The certificates held (none while locked), each after its key's turn in
    /// [`Self::identities`].
    pub fn certificates(&mut self, now: Instant) -> Vec<PublicCertificate> {
        self.expire(now);
        self.entries
            .iter()
            .flat_map(|e| e.certs.iter())
            .map(|(c, comment)| PublicCertificate {
                certificate: c.clone(),
                comment: comment.clone(),
            })
            .collect()
    }

    /// The key a held certificate certifies, for a signature request that names the
    /// certificate. Fails while locked, and for a certificate not held (even of a held key).
    pub fn lookup_certificate(
        &mut self,
        certificate: &Certificate,
        now: Instant,
    ) -> Result<HeldKey, AgentError> {
        self.expire(now);
        if self.is_locked() {
            return Err(AgentError::Locked);
        }
        self.entries
            .iter()
            .find(|e| {
                e.certs
                    .iter()
                    .any(|(c, _)| same_certificate(c, certificate))
            })
            .map(|e| HeldKey {
                fingerprint: e.fingerprint.clone(),
                confirm: e.meta.confirm,
                unseal: None,
            })
            .ok_or(AgentError::NoSuchKey)
    }

    /// Remove one certificate (its key stays).
    pub fn remove_certificate(
        &mut self,
        certificate: &Certificate,
        now: Instant,
    ) -> Result<(), AgentError> {
        self.expire(now);
        if self.is_locked() {
            return Err(AgentError::Locked);
        }
        let mut found = false;
        for e in &mut self.entries {
            let before = e.certs.len();
            e.certs.retain(|(c, _)| !same_certificate(c, certificate));
            found |= e.certs.len() != before;
        }
        if found {
            Ok(())
        } else {
            Err(AgentError::NoSuchKey)
        }
    }

    /// Remove one identity (its certificates go with it).
    pub fn remove(&mut self, key: &KeyData, now: Instant) -> Result<(), AgentError> {
        self.expire(now);
        if self.is_locked() {
            return Err(AgentError::Locked);
        }
        let before = self.entries.len() + self.sealed_keys.len();
        self.entries
            .retain(|e| e.key.public_key().key_data() != key);
        // Its sealed file stays on disk (`auths key remove` deletes it); the agent forgets it
        // until it is added again or restarts.
        self.sealed_keys.retain(|e| &e.public != key);
        if self.entries.len() + self.sealed_keys.len() == before {
            return Err(AgentError::NoSuchKey);
        }
        if self.entries.is_empty() {
            self.window = None;
        }
        Ok(())
    }

    /// Remove every identity (`ssh-add -D`).
    pub fn remove_all(&mut self, now: Instant) -> Result<(), AgentError> {
        self.expire(now);
        if self.is_locked() {
            return Err(AgentError::Locked);
        }
        self.sealed_keys.clear();
        self.wipe_all(WipeReason::Explicit);
        Ok(())
    }

    /// The fingerprint of a held key, before asking the gate. Fails while locked.
    pub fn lookup(&mut self, key: &KeyData, now: Instant) -> Result<HeldKey, AgentError> {
        self.expire(now);
        if self.is_locked() {
            return Err(AgentError::Locked);
        }
        if let Some(e) = self
            .entries
            .iter()
            .find(|e| e.key.public_key().key_data() == key)
        {
            return Ok(HeldKey {
                fingerprint: e.fingerprint.clone(),
                confirm: e.meta.confirm,
                unseal: None,
            });
        }
        self.sealed_keys
            .iter()
            .find(|e| &e.public == key)
            .map(|e| HeldKey {
                fingerprint: e.fingerprint.clone(),
                confirm: false,
                unseal: Some(UnsealAsk {
                    key_id: e.file.id.clone(),
                    salt: e.file.salt_bytes(),
                    uv: e.file.uv,
                }),
            })
            .ok_or(AgentError::NoSuchKey)
    }

    /// Mark the key `fingerprint` as added with the confirm constraint (`ssh-add -c`): every
    /// signature with it needs its own touch.
    pub fn set_confirm(&mut self, fingerprint: &str) {
        for e in self
            .entries
            .iter_mut()
            .filter(|e| e.fingerprint == fingerprint)
        {
            e.meta.confirm = true;
        }
    }

    /// Sign `data` with `key`, under `approval`, which must cover this key's fingerprint and
    /// SHA-256 of `data`. Counts towards the window's signature cap; when that (or a window
    /// that closed meanwhile) wipes the keys, [`Signing::wiped`] says so.
    pub fn sign(
        &mut self,
        key: &KeyData,
        data: &[u8],
        flags: u32,
        approval: Approval,
        now: Instant,
    ) -> Signing {
        let prepared = self.prepare_sign(key, data, &approval, now);
        finish_sign(prepared, data, flags, approval)
    }

    /// The first half of [`KeyStore::sign`], the part that needs the store: check the
    /// approval covers `key` and `data`, count the signature in the window (wiping when that
    /// reaches the cap), and hand out a copy of the private key for [`finish_sign`], which
    /// callers run once they have let go of the store (so signatures of several connections
    /// run on several cores). The copy zeroizes when dropped.
    pub fn prepare_sign(
        &mut self,
        key: &KeyData,
        data: &[u8],
        approval: &Approval,
        now: Instant,
    ) -> Prepared {
        let digest: [u8; 32] = Sha256::digest(data).into();
        let result = if approval.covers(&fingerprint(key), &digest) {
            self.take_signer(key, now)
        } else {
            Err(AgentError::ApprovalMismatch)
        };
        Prepared {
            result,
            wiped: self.take_wiped(),
        }
    }

    /// The signing key after the approval was checked, counted in the window. Private: only
    /// [`KeyStore::prepare_sign`] (and this module's tests) reach it.
    fn take_signer(&mut self, key: &KeyData, now: Instant) -> Result<PrivateKey, AgentError> {
        self.expire(now);
        if self.is_locked() {
            return Err(AgentError::Locked);
        }
        let private = self
            .entries
            .iter()
            .find(|e| e.key.public_key().key_data() == key)
            .ok_or(AgentError::NoSuchKey)?
            .key
            .clone();
        self.touch_window(now);
        let cap_reached = match (&mut self.window, self.policy.max_signatures) {
            (Some(w), Some(max)) => {
                w.signatures += 1;
                w.signatures >= max
            }
            (Some(w), None) => {
                w.signatures += 1;
                false
            }
            _ => false,
        };
        if cap_reached {
            self.wipe_all(WipeReason::MaxSignatures);
        }
        Ok(private)
    }

    /// [`KeyStore::sign`] without an approval, for this module's tests.
    #[cfg(test)]
    fn sign_approved(
        &mut self,
        key: &KeyData,
        data: &[u8],
        flags: u32,
        now: Instant,
    ) -> Result<Signature, AgentError> {
        let private = self.take_signer(key, now)?;
        sign_with(&private, data, flags)
    }

    /// `ssh-add -x`: seal every key under `passphrase` and drop the plaintext.
    pub fn lock(&mut self, passphrase: &Zeroizing<String>, now: Instant) -> Result<(), AgentError> {
        self.expire(now);
        if self.is_locked() {
            return Err(AgentError::Locked);
        }
        let mut plaintext = Zeroizing::new(Vec::new());
        for e in &self.entries {
            let bytes = e.key.to_bytes().map_err(AgentError::Key)?;
            let len = u32::try_from(bytes.len()).map_err(|_| SealError::KeyTooLarge)?;
            plaintext.extend_from_slice(&len.to_be_bytes());
            plaintext.extend_from_slice(&bytes);
        }
        let salt: [u8; 16] = rand::random();
        let nonce: [u8; 12] = rand::random();
        let key = derive_key(passphrase.as_bytes(), &salt, self.seal_params)?;
        let cipher = ChaCha20Poly1305::new(key.as_ref().into());
        let ciphertext = cipher
            .encrypt(&nonce.into(), plaintext.as_slice())
            .map_err(|_| SealError::Encrypt)?;
        let meta = self.entries.iter().map(|e| e.meta).collect();
        let certs = self
            .entries
            .iter_mut()
            .map(|e| std::mem::take(&mut e.certs))
            .collect();
        self.entries.clear();
        self.entries.shrink_to_fit();
        self.sealed = Some(Sealed {
            salt,
            nonce,
            ciphertext,
            meta,
            certs,
        });
        self.wiped = Some(WipeReason::Locked);
        Ok(())
    }

    /// `ssh-add -X`: open the seal with `passphrase`. A wrong passphrase restores nothing and
    /// leaves the agent locked.
    pub fn unlock(
        &mut self,
        passphrase: &Zeroizing<String>,
        now: Instant,
    ) -> Result<(), AgentError> {
        self.expire(now);
        let sealed = self.sealed.as_ref().ok_or(AgentError::NotLocked)?;
        let key = derive_key(passphrase.as_bytes(), &sealed.salt, self.seal_params)?;
        let cipher = ChaCha20Poly1305::new(key.as_ref().into());
        let plaintext = Zeroizing::new(
            cipher
                .decrypt(&sealed.nonce.into(), sealed.ciphertext.as_slice())
                .map_err(|_| AgentError::BadPassphrase)?,
        );
        let mut restored = Vec::with_capacity(sealed.meta.len());
        let mut rest: &[u8] = &plaintext;
        for (i, meta) in sealed.meta.iter().enumerate() {
            let (len, tail) = rest.split_first_chunk::<4>().ok_or(SealError::Corrupt)?;
            let len = u32::from_be_bytes(*len) as usize;
            if tail.len() < len {
                return Err(SealError::Corrupt.into());
            }
            let (bytes, tail) = tail.split_at(len);
            rest = tail;
            let key = PrivateKey::from_bytes(bytes).map_err(AgentError::Key)?;
            if meta.expires.is_some_and(|d| now >= d) {
                continue;
            }
            let fingerprint = fingerprint(key.public_key().key_data());
            restored.push(Entry {
                key,
                fingerprint,
                meta: *meta,
                certs: sealed.certs.get(i).cloned().unwrap_or_default(),
            });
        }
        self.sealed = None;
        self.entries = restored;
        Ok(())
    }
}

fn derive_key(
    passphrase: &[u8],
    salt: &[u8; 16],
    params: SealParams,
) -> Result<Zeroizing<[u8; 32]>, AgentError> {
    let params = argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32))
        .map_err(SealError::Argon2)?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, salt, out.as_mut())
        .map_err(SealError::Argon2)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use ssh_encoding::Decode;
    use ssh_key::private::EcdsaPrivateKey;
    use ssh_key::{Algorithm, EcdsaCurve};

    const FAST: SealParams = SealParams {
        m_cost: 64,
        t_cost: 1,
        p_cost: 1,
    };

    fn ed25519() -> KeypairData {
        PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519)
            .unwrap()
            .key_data()
            .clone()
    }

    fn p256() -> KeypairData {
        PrivateKey::random(
            &mut rand::rngs::OsRng,
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
        )
        .unwrap()
        .key_data()
        .clone()
    }

    fn public(k: &KeypairData) -> KeyData {
        KeyData::try_from(k).unwrap()
    }

    fn store(policy: UnlockPolicy) -> KeyStore {
        KeyStore::new(policy).with_seal_params(FAST)
    }

    #[test]
    fn add_list_remove_both_key_types() {
        let t0 = Instant::now();
        let mut s = store(UnlockPolicy::default());
        let (a, b) = (ed25519(), p256());
        let (pa, pb) = (public(&a), public(&b));
        s.add(a, "a".into(), None, t0).unwrap();
        s.add(b, "b".into(), None, t0).unwrap();
        let ids = s.identities(t0);
        assert_eq!(ids.len(), 2);
        assert!(ids[0].fingerprint.starts_with("SHA256:"));
        s.remove(&pa, t0).unwrap();
        assert!(matches!(s.remove(&pa, t0), Err(AgentError::NoSuchKey)));
        assert_eq!(s.identities(t0)[0].key_data, pb);
        s.remove_all(t0).unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn p384_and_p521_keys_are_held_and_a_mismatched_pair_is_refused() {
        let mut s = store(UnlockPolicy::default());
        for curve in [EcdsaCurve::NistP384, EcdsaCurve::NistP521] {
            let k = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ecdsa { curve }).unwrap();
            s.add(k.key_data().clone(), String::new(), None, Instant::now())
                .unwrap();
        }
        // A P-384 point of another scalar.
        let a = PrivateKey::random(
            &mut rand::rngs::OsRng,
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP384,
            },
        )
        .unwrap();
        let b = PrivateKey::random(
            &mut rand::rngs::OsRng,
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP384,
            },
        )
        .unwrap();
        let (
            KeypairData::Ecdsa(EcdsaKeypair::NistP384 { private, .. }),
            KeypairData::Ecdsa(EcdsaKeypair::NistP384 { public, .. }),
        ) = (a.key_data(), b.key_data())
        else {
            unreachable!()
        };
        let mixed = KeypairData::Ecdsa(EcdsaKeypair::NistP384 {
            public: *public,
            private: private.clone(),
        });
        assert!(matches!(
            s.add(mixed, String::new(), None, Instant::now()),
            Err(AgentError::InvalidKey(KeyCheck::Mismatch))
        ));
    }

    #[test]
    fn rsa_signatures_use_the_hash_asked_for_and_never_sha1() {
        assert_eq!(rsa_hash(4).unwrap(), HashAlg::Sha512);
        assert_eq!(rsa_hash(2).unwrap(), HashAlg::Sha256);
        assert_eq!(
            rsa_hash(6).unwrap(),
            HashAlg::Sha512,
            "512 wins when both are set"
        );
        assert!(matches!(rsa_hash(0), Err(AgentError::Sha1Refused)));
        assert!(matches!(rsa_hash(1), Err(AgentError::Sha1Refused)));
    }

    #[test]
    fn signatures_verify_and_count_towards_the_cap() {
        let t0 = Instant::now();
        let mut s = store(UnlockPolicy {
            max_signatures: Some(2),
            ..UnlockPolicy::default()
        });
        let (a, b) = (ed25519(), p256());
        let (pa, pb) = (public(&a), public(&b));
        s.add(a, String::new(), None, t0).unwrap();
        s.add(b, String::new(), None, t0).unwrap();
        let sig = s.sign_approved(&pa, b"one", 0, t0).unwrap();
        pa.verify(b"one", &sig).unwrap();
        assert_eq!(s.len(), 2, "one signature of two: keys stay");
        let sig = s.sign_approved(&pb, b"two", 0, t0).unwrap();
        pb.verify(b"two", &sig).unwrap();
        assert!(
            s.is_empty(),
            "the second signature reached the cap: all keys wiped"
        );
        assert!(matches!(
            s.sign_approved(&pa, b"three", 0, t0),
            Err(AgentError::NoSuchKey)
        ));
    }

    #[test]
    fn every_wipe_is_reported_once_with_its_reason() {
        let t0 = Instant::now();
        let (mut s, pa) = one_key(
            UnlockPolicy {
                max_signatures: Some(1),
                ..UnlockPolicy::default()
            },
            t0,
        );
        assert_eq!(s.take_wiped(), None);
        s.sign_approved(&pa, b"one", 0, t0).unwrap();
        assert_eq!(s.take_wiped(), Some(WipeReason::MaxSignatures));
        assert_eq!(s.take_wiped(), None, "reported once");

        s.add(ed25519(), String::new(), None, t0).unwrap();
        // A window that closes inside another call is reported too.
        assert!(s.identities(t0 + Duration::from_secs(31 * 60)).is_empty());
        assert_eq!(s.take_wiped(), Some(WipeReason::Idle));

        let t1 = t0 + Duration::from_secs(31 * 60);
        s.add(ed25519(), String::new(), None, t1).unwrap();
        s.lock(&Zeroizing::new("p".to_string()), t1).unwrap();
        assert_eq!(s.take_wiped(), Some(WipeReason::Locked));
        s.unlock(&Zeroizing::new("p".to_string()), t1).unwrap();
        s.remove_all(t1).unwrap();
        assert_eq!(s.take_wiped(), Some(WipeReason::Explicit));
    }

    /// A store under `policy` holding one Ed25519 key, added at `t0`, and its public key.
    fn one_key(policy: UnlockPolicy, t0: Instant) -> (KeyStore, KeyData) {
        let mut s = store(policy);
        let a = ed25519();
        let pa = public(&a);
        s.add(a, String::new(), None, t0).unwrap();
        (s, pa)
    }

    #[test]
    fn adding_keys_does_not_extend_the_idle_timeout() {
        let t0 = Instant::now();
        let min = Duration::from_secs(60);
        let (mut s, _) = one_key(UnlockPolicy::default(), t0);
        // A throwaway key every 29 minutes keeps nothing alive.
        s.add(p256(), "throwaway".into(), None, t0 + 29 * min)
            .unwrap();
        assert_eq!(s.expire(t0 + 30 * min), Some(WipeReason::Idle));
        assert!(s.is_empty());
    }

    #[test]
    fn idle_timeout_slides_and_wipes() {
        let t0 = Instant::now();
        let min = Duration::from_secs(60);
        let (mut s, pa) = one_key(UnlockPolicy::default(), t0);
        // Activity at 29 min slides the window.
        s.sign_approved(&pa, b"x", 0, t0 + 29 * min).unwrap();
        assert_eq!(s.expire(t0 + 58 * min), None);
        assert_eq!(s.len(), 1);
        assert_eq!(s.expire(t0 + 59 * min), Some(WipeReason::Idle));
        assert!(s.is_empty());
    }

    #[test]
    fn absolute_cap_wipes_despite_activity() {
        let t0 = Instant::now();
        let min = Duration::from_secs(60);
        let (mut s, pa) = one_key(UnlockPolicy::default(), t0);
        let mut t = t0;
        while t < t0 + 239 * min {
            t += 20 * min;
            if t < t0 + 240 * min {
                s.sign_approved(&pa, b"x", 0, t).unwrap();
            }
        }
        assert_eq!(s.expire(t0 + 240 * min), Some(WipeReason::MaxUnlock));
        assert!(s.is_empty());
    }

    #[test]
    fn per_key_lifetime_removes_only_that_key() {
        let t0 = Instant::now();
        let mut s = store(UnlockPolicy::default());
        s.add(ed25519(), "short".into(), Some(Duration::from_secs(5)), t0)
            .unwrap();
        s.add(p256(), "long".into(), None, t0).unwrap();
        assert_eq!(s.identities(t0 + Duration::from_secs(4)).len(), 2);
        let ids = s.identities(t0 + Duration::from_secs(5));
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].comment, "long");
    }

    #[test]
    fn protocol_lock_seals_and_unlock_restores() {
        let t0 = Instant::now();
        let mut s = store(UnlockPolicy::default());
        let a = ed25519();
        let pa = public(&a);
        s.add(a, "a".into(), None, t0).unwrap();
        s.add(p256(), "b".into(), Some(Duration::from_secs(10)), t0)
            .unwrap();
        let good = Zeroizing::new("correct horse".to_string());
        let bad = Zeroizing::new("wrong".to_string());
        s.lock(&good, t0).unwrap();
        assert!(s.is_locked());
        assert!(s.is_empty(), "no plaintext key while locked");
        assert!(s.identities(t0).is_empty());
        assert!(matches!(s.lookup(&pa, t0), Err(AgentError::Locked)));
        assert!(matches!(s.lock(&good, t0), Err(AgentError::Locked)));
        assert!(matches!(s.unlock(&bad, t0), Err(AgentError::BadPassphrase)));
        assert!(s.is_locked() && s.is_empty());
        // The 10 s key expired while locked: it is not restored.
        s.unlock(&good, t0 + Duration::from_secs(11)).unwrap();
        let ids = s.identities(t0 + Duration::from_secs(11));
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].comment, "a");
        assert!(s
            .sign_approved(&pa, b"m", 0, t0 + Duration::from_secs(11))
            .is_ok());
        assert!(matches!(s.unlock(&good, t0), Err(AgentError::NotLocked)));
    }

    #[test]
    fn window_closing_while_locked_wipes_the_seal() {
        let t0 = Instant::now();
        let (mut s, _) = one_key(UnlockPolicy::default(), t0);
        let pass = Zeroizing::new("p".to_string());
        s.lock(&pass, t0).unwrap();
        assert_eq!(
            s.expire(t0 + Duration::from_secs(31 * 60)),
            Some(WipeReason::Idle)
        );
        assert!(!s.is_locked());
        assert!(matches!(s.unlock(&pass, t0), Err(AgentError::NotLocked)));
    }

    #[test]
    fn explicit_wipe() {
        let t0 = Instant::now();
        let (mut s, _) = one_key(UnlockPolicy::default(), t0);
        assert_eq!(s.wipe(), WipeReason::Explicit);
        assert!(s.is_empty());
    }

    /// A P-256 keypair of the scalar `d` (any 32 bytes, through ssh-key's decoder) and the
    /// point `q`.
    fn p256_pair(d: [u8; 32], q: p256::EncodedPoint) -> KeypairData {
        let mut mpint = vec![0, 0, 0, 32];
        mpint.extend_from_slice(&d);
        let private = EcdsaPrivateKey::<32>::decode(&mut mpint.as_slice()).unwrap();
        KeypairData::Ecdsa(EcdsaKeypair::NistP256 { public: q, private })
    }

    fn point(d: &[u8; 32]) -> p256::EncodedPoint {
        p256::SecretKey::from_slice(d)
            .unwrap()
            .public_key()
            .to_encoded_point(false)
    }

    #[test]
    fn a_p256_key_whose_point_is_not_its_scalars_is_refused() {
        let t0 = Instant::now();
        let mut s = store(UnlockPolicy::default());
        let (d, other) = ([7u8; 32], [8u8; 32]);
        for q in [point(&other), point(&d).compress()] {
            assert!(matches!(
                s.add(p256_pair(d, q), String::new(), None, t0),
                Err(AgentError::InvalidKey(KeyCheck::Mismatch))
            ));
        }
        let n = hex::decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
            .unwrap();
        for bad in [[0u8; 32], <[u8; 32]>::try_from(n).unwrap(), [0xff; 32]] {
            assert!(matches!(
                s.add(p256_pair(bad, point(&d)), String::new(), None, t0),
                Err(AgentError::InvalidKey(KeyCheck::Scalar))
            ));
        }
        assert!(s.is_empty());
        s.add(p256_pair(d, point(&d)), String::new(), None, t0)
            .unwrap();
    }

    #[test]
    fn an_ed25519_key_whose_public_key_is_not_its_seeds_is_refused() {
        let mut k = Ed25519Keypair::from_seed(&[1; 32]);
        k.public = Ed25519Keypair::from_seed(&[2; 32]).public;
        assert!(matches!(
            store(UnlockPolicy::default()).add(
                KeypairData::Ed25519(k),
                String::new(),
                None,
                Instant::now()
            ),
            Err(AgentError::InvalidKey(KeyCheck::Mismatch))
        ));
    }

    /// A scalar with a leading zero byte (OpenSSH's mpint drops it) signs, and survives the
    /// protocol lock: ssh-key seals it in its fixed-size form.
    #[test]
    fn a_p256_scalar_with_leading_zeros_signs_and_survives_the_lock() {
        let t0 = Instant::now();
        let mut s = store(UnlockPolicy::default());
        let mut d = [0x5au8; 32];
        d[..2].fill(0);
        let k = p256_pair(d, point(&d));
        let pk = public(&k);
        s.add(k, "short".into(), None, t0).unwrap();
        let pass = Zeroizing::new("p".to_string());
        s.lock(&pass, t0).unwrap();
        s.unlock(&pass, t0).unwrap();
        let sig = s.sign_approved(&pk, b"data", 0, t0).unwrap();
        pk.verify(b"data", &sig).unwrap();
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point(&d).as_bytes()).unwrap();
        let sig = p256::ecdsa::Signature::try_from(&sig).unwrap();
        vk.verify(b"data", &sig).unwrap();
    }

    /// A user certificate for `key`, signed by `ca`.
    fn certificate(key: &KeypairData, ca: &PrivateKey) -> Certificate {
        let public = KeyData::try_from(key).unwrap();
        let mut b = ssh_key::certificate::Builder::new_with_random_nonce(
            &mut rand::rngs::OsRng,
            public,
            0,
            u64::from(u32::MAX),
        )
        .unwrap();
        b.valid_principal("ada").unwrap();
        b.key_id("ada-laptop").unwrap();
        b.sign(ca).unwrap()
    }

    #[test]
    fn certificates_go_with_their_key() {
        let now = Instant::now();
        let ca = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
        let mut store = KeyStore::new(UnlockPolicy::default()).with_seal_params(FAST);
        let key = ed25519();
        let cert = certificate(&key, &ca);
        // The key is held, its certificate not (yet): asking by it fails.
        store.add(key.clone(), "k".into(), None, now).unwrap();
        assert!(matches!(
            store.lookup_certificate(&cert, now),
            Err(AgentError::NoSuchKey)
        ));
        // Another key's private half with this certificate: refused, nothing changes.
        assert!(matches!(
            store.add_certificate(cert.clone(), ed25519(), "c".into(), None, now),
            Err(AgentError::InvalidKey(KeyCheck::CertificateKey))
        ));
        store
            .add_certificate(cert.clone(), key.clone(), "c".into(), None, now)
            .unwrap();
        // Twice is once.
        store
            .add_certificate(cert.clone(), key.clone(), "c".into(), None, now)
            .unwrap();
        assert_eq!(store.certificates(now).len(), 1);
        assert_eq!(store.len(), 1, "the key is not added twice");
        let held = store.lookup_certificate(&cert, now).unwrap();
        assert_eq!(held.fingerprint, fingerprint(cert.public_key()));
        // Adding the key again keeps its certificate; removing the certificate keeps the key.
        store.add(key.clone(), "k".into(), None, now).unwrap();
        assert_eq!(store.certificates(now).len(), 1);
        store.remove_certificate(&cert, now).unwrap();
        assert!(store.certificates(now).is_empty());
        assert_eq!(store.len(), 1);
        // A certificate with its key not held adds the key; removing the key removes both.
        let other = ed25519();
        let other_cert = certificate(&other, &ca);
        store
            .add_certificate(other_cert.clone(), other.clone(), "o".into(), None, now)
            .unwrap();
        assert_eq!((store.len(), store.certificates(now).len()), (2, 1));
        store
            .remove(&KeyData::try_from(&other).unwrap(), now)
            .unwrap();
        assert!(store.certificates(now).is_empty());
        assert!(store.lookup_certificate(&other_cert, now).is_err());
    }

    #[test]
    fn a_certificate_whose_ca_signature_does_not_verify_is_refused() {
        let now = Instant::now();
        let ca = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
        let key = ed25519();
        let cert = certificate(&key, &ca);
        // The key id changed after signing.
        let mut blob = Vec::new();
        ssh_encoding::Encode::encode(&cert, &mut blob).unwrap();
        let at = blob
            .windows(b"ada-laptop".len())
            .position(|w| w == b"ada-laptop")
            .unwrap();
        blob[at] = b'e';
        let forged = Certificate::decode(&mut blob.as_slice()).unwrap();
        let mut store = KeyStore::new(UnlockPolicy::default()).with_seal_params(FAST);
        assert!(matches!(
            store.add_certificate(forged, key, "c".into(), None, now),
            Err(AgentError::InvalidKey(KeyCheck::CertificateSignature))
        ));
        assert!(store.is_empty());
    }

    /// A sealed Ed25519 key for credential `cred` whose hmac-secret output is `out`.
    fn sealed(cred: &[u8], out: [u8; 32], uv: bool) -> (PrivateKey, SealedKey) {
        let private = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
        let unsealer = crate::presence::sealed::Unsealer {
            credential_id: cred,
            output: &out,
        };
        let file = SealedKey::seal(&private, "sealed", [7; 32], uv, &[unsealer], 0).unwrap();
        (private, file)
    }

    #[test]
    fn a_sealed_key_is_listed_locked_and_opens_only_with_its_secret() {
        let t0 = Instant::now();
        let mut s = store(UnlockPolicy::default());
        let (private, file) = sealed(b"cred-a", [1; 32], false);
        let key = private.public_key().key_data().clone();
        s.load_sealed(file, None).unwrap();
        // Listed at once; the lookup asks the touch to unseal, with the file's salt.
        assert_eq!(s.identities(t0).len(), 1);
        assert_eq!(s.sealed_counts(t0), (1, 0));
        let held = s.lookup(&key, t0).unwrap();
        let ask = held.unseal.expect("an unseal request");
        assert_eq!((ask.salt, ask.uv), ([7; 32], false));
        // Not open: nothing signs.
        assert!(matches!(
            s.sign_approved(&key, b"x", 0, t0),
            Err(AgentError::NoSuchKey)
        ));
        // Another credential, or the wrong output, opens nothing.
        let other = HmacSecret::for_tests(b"cred-b", [1; 32], false);
        assert!(matches!(
            s.unseal(&key, &other, t0),
            Err(AgentError::Unseal(SealedError::NotWrappedFor { .. }))
        ));
        let wrong = HmacSecret::for_tests(b"cred-a", [2; 32], false);
        assert!(matches!(
            s.unseal(&key, &wrong, t0),
            Err(AgentError::Unseal(SealedError::WrongSecret))
        ));
        assert_eq!(s.sealed_counts(t0), (1, 0));
        // The right one opens it: it signs, listed once, lookups need no unseal.
        let right = HmacSecret::for_tests(b"cred-a", [1; 32], false);
        s.unseal(&key, &right, t0).unwrap();
        assert_eq!(s.identities(t0).len(), 1);
        assert_eq!(s.sealed_counts(t0), (1, 1));
        assert!(s.lookup(&key, t0).unwrap().unseal.is_none());
        s.sign_approved(&key, b"x", 0, t0).unwrap();
        // A wipe closes it and keeps it listed; the next signature must unseal again.
        s.wipe();
        assert_eq!(s.identities(t0).len(), 1);
        assert_eq!(s.sealed_counts(t0), (1, 0));
        assert!(s.lookup(&key, t0).unwrap().unseal.is_some());
        // The idle timeout does the same.
        s.unseal(&key, &right, t0).unwrap();
        let later = t0 + UnlockPolicy::default().idle_timeout;
        assert_eq!(s.expire(later), Some(WipeReason::Idle));
        assert!(s.lookup(&key, later).unwrap().unseal.is_some());
        // `ssh-add -D` forgets it (its file stays); `ssh-add -d` too.
        s.remove_all(later).unwrap();
        assert!(s.identities(later).is_empty());
        let (p2, f2) = sealed(b"cred-a", [1; 32], false);
        s.load_sealed(f2, None).unwrap();
        s.remove(p2.public_key().key_data(), later).unwrap();
        assert!(s.identities(later).is_empty());
    }

    #[test]
    fn a_key_sealed_under_uv_opens_only_with_the_user_verified_and_hides_while_locked() {
        let t0 = Instant::now();
        let mut s = store(UnlockPolicy::default());
        let (private, file) = sealed(b"cred-a", [1; 32], true);
        let key = private.public_key().key_data().clone();
        s.load_sealed(file, None).unwrap();
        assert!(s.lookup(&key, t0).unwrap().unseal.unwrap().uv);
        let touch_only = HmacSecret::for_tests(b"cred-a", [1; 32], false);
        assert!(matches!(
            s.unseal(&key, &touch_only, t0),
            Err(AgentError::Unseal(SealedError::WrongSecret))
        ));
        s.unseal(&key, &HmacSecret::for_tests(b"cred-a", [1; 32], true), t0)
            .unwrap();
        // The protocol lock hides the sealed key as it hides the others.
        s.lock(&Zeroizing::new("pw".into()), t0).unwrap();
        assert!(s.identities(t0).is_empty());
        assert!(matches!(s.lookup(&key, t0), Err(AgentError::Locked)));
        s.unlock(&Zeroizing::new("pw".into()), t0).unwrap();
        assert_eq!(s.identities(t0).len(), 1);
    }

    #[test]
    fn a_wrap_added_to_the_file_since_it_was_read_is_found_there() {
        let t0 = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.sealed");
        let mut s = store(UnlockPolicy::default());
        let (private, file) = sealed(b"cred-a", [1; 32], false);
        let key = private.public_key().key_data().clone();
        s.load_sealed(file.clone(), Some(path.clone())).unwrap();
        let backup = HmacSecret::for_tests(b"cred-b", [9; 32], false);
        // Not wrapped for the backup, and no newer file: the error says to rewrap.
        assert!(matches!(
            s.unseal(&key, &backup, t0),
            Err(AgentError::Unseal(SealedError::NotWrappedFor { .. }))
        ));
        let mut newer = file;
        let with = HmacSecret::for_tests(b"cred-a", [1; 32], false);
        newer
            .rewrap(&with.unsealer(), &[backup.unsealer()])
            .unwrap();
        crate::secure_fs::atomic_write(&path, &newer.to_json()).unwrap();
        s.unseal(&key, &backup, t0).unwrap();
        assert_eq!(s.sealed_counts(t0), (1, 1));
    }
}
