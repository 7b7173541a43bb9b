//! The virtual key's CTAP2 authenticator (CTAP 2.1 §6): authenticatorGetInfo,
//! authenticatorMakeCredential, authenticatorGetAssertion, authenticatorSelection and
//! authenticatorReset. Pure logic, no I/O: requests are the bytes of a CTAPHID_CBOR message
//! (command byte, then CBOR), responses are a status byte followed by CBOR.
//!
//! The API has two phases so the CTAPHID layer can wait for a touch, send KEEPALIVE UPNEEDED
//! and honour CANCEL meanwhile: [`Authenticator::begin`] answers at once ([`Step::Done`]) or
//! asks for a touch ([`Step::NeedsTouch`]); [`Authenticator::complete`] finishes a request once
//! the touch came (or did not). Dropping a [`Pending`] abandons the request (CANCEL).
//!
//! # Credentials without storage
//!
//! Credentials are non-discoverable and not stored. The credential id wraps the private key:
//!
//! ```text
//! wrap_key = HKDF-SHA256(salt = "auths-presence virtual key v1", ikm = master secret,
//!                        info = "credential id wrap")
//! id       = 0x01 || nonce (12 random bytes)
//!            || ChaCha20Poly1305(wrap_key, nonce, aad = 0x01 || rpIdHash,
//!                                plaintext = alg byte (1 = ES256, 2 = EdDSA) || 32-byte seed)
//! ```
//!
//! 62 bytes in all. The AEAD tag makes any other id (a flipped bit, another key's id) or the
//! right id presented for another rp id fail to open: such a credential is "not ours".
//! The ES256 seed is the P-256 private scalar; the EdDSA seed is the Ed25519 secret key.
//!
//! # Attestation
//!
//! makeCredential answers with fmt `"packed"` and *self attestation* (WebAuthn §8.2): attStmt
//! is `{alg, sig}`, sig made with the new credential's own private key over
//! `authData || clientDataHash`. There is no attestation certificate: the key is virtual and
//! must never pass for a certified one. Its AAGUID is [`VIRTUAL_AAGUID`].
//!
//! # Sign counter
//!
//! One global counter, incremented and persisted before every makeCredential and
//! getAssertion response; if it cannot be persisted the request fails with CTAP1_ERR_OTHER,
//! so a counter value is never handed out twice.

use std::fmt;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::client_pin::{PinConfig, PinState, UvTokenRequest, Verified};
use super::state::KeyState;
use crate::ctap::authdata::{self, flag, AttestedCredentialData};
use crate::ctap::cbor::{self, Value};
use crate::ctap::client_pin::{permissions, SubCommand, CMD_CLIENT_PIN};
use crate::ctap::command::{
    credential_parameters, descriptor, Algorithm, CMD_GET_ASSERTION, CMD_GET_INFO,
    CMD_MAKE_CREDENTIAL, CMD_RESET, CMD_SELECTION, PUBLIC_KEY,
};
use crate::ctap::cose::{CoseKey, ALG_EDDSA, ALG_ES256};
use crate::ctap::status::StatusCode;

/// getInfo's maxCredentialCountInList by default: longer allowLists get
/// CTAP2_ERR_LIMIT_EXCEEDED ([`Authenticator::with_max_credentials_in_list`] changes it).
pub const MAX_CREDENTIAL_COUNT_IN_LIST: usize = 8;

/// The virtual key's AAGUID: the ASCII bytes of `"auths-virtualkey"`. It is ours, registered
/// nowhere, and is not the AAGUID of any real authenticator, so enrollment can tell that a
/// credential lives on the virtual key.
pub const VIRTUAL_AAGUID: [u8; 16] = *b"auths-virtualkey";

/// getInfo firmwareVersion of the virtual key: the ASCII bytes `"VIRT"` (0x56495254).
pub const VIRTUAL_FIRMWARE_VERSION: u64 = 0x5649_5254;

/// Length of a credential id made by this key.
pub const CREDENTIAL_ID_LEN: usize = 1 + 12 + 1 + 32 + 16;

const ID_VERSION: u8 = 0x01;
const WRAP_SALT: &[u8] = b"auths-presence virtual key v1";
const WRAP_INFO: &[u8] = b"credential id wrap";
const MAX_USER_ID_LEN: usize = 64;

/// getInfo maxMsgSize: longer requests get CTAP2_ERR_REQUEST_TOO_LARGE.
pub const MAX_MSG_SIZE: usize = 1200;

/// The algorithm byte inside a credential id (see the module docs): 1 = ES256, 2 = EdDSA.
/// The first byte of a wrapped credential: the algorithm in the low nibble (1 ES256, 2
/// EdDSA), the credProtect level in the high nibble (0 for level 1, so ids made before
/// credProtect read the same).
fn id_byte(alg: Algorithm, protect: u8, hmac_secret: bool) -> u8 {
    let alg = match alg {
        Algorithm::Es256 => 1,
        Algorithm::EdDsa => 2,
    };
    let level = if protect > 1 { protect << 4 } else { 0 };
    alg | level | if hmac_secret { HMAC_SECRET_BIT } else { 0 }
}

/// The id byte's top bit: the credential was made with the hmac-secret extension, so it has
/// a CredRandom (ids made before hmac-secret read as made without it).
const HMAC_SECRET_BIT: u8 = 0x80;

fn from_id_byte(b: u8) -> Option<(Algorithm, u8, bool)> {
    let alg = match b & 0x0f {
        1 => Algorithm::Es256,
        2 => Algorithm::EdDsa,
        _ => return None,
    };
    let protect = match (b & !HMAC_SECRET_BIT) >> 4 {
        0 => 1,
        l @ 2..=3 => l,
        _ => return None,
    };
    Some((alg, protect, b & HMAC_SECRET_BIT != 0))
}

/// credProtect levels (CTAP 2.1 §12.1): 1 userVerificationOptional, 2 ...OptionalWithCredentialIDList, 3 ...Required.
pub const CRED_PROTECT_UV_REQUIRED: u8 = 3;

/// A private key unwrapped from a credential id (or just made). The seed is zeroized on drop.
pub(super) struct CredentialKey {
    pub(super) alg: Algorithm,
    seed: Zeroizing<[u8; 32]>,
    /// credProtect level (1 to 3).
    pub(super) protect: u8,
    /// Made with hmac-secret: it has a CredRandom (CTAP 2.1 §12.5).
    pub(super) hmac_secret: bool,
}

impl CredentialKey {
    pub(super) fn generate(alg: Algorithm) -> CredentialKey {
        let mut seed = Zeroizing::new([0u8; 32]);
        loop {
            rand::rngs::OsRng.fill_bytes(seed.as_mut());
            // A P-256 scalar must be in [1, n); the chance of a retry is about 2^-32.
            if alg == Algorithm::EdDsa || es256_key(&seed).is_some() {
                return CredentialKey {
                    alg,
                    seed,
                    protect: 1,
                    hmac_secret: false,
                };
            }
        }
    }

    /// The public key, for the client's own COSE_Key encoder.
    pub(super) fn public_key(&self) -> Option<CoseKey> {
        let key = match self.alg {
            Algorithm::Es256 => CoseKey::Es256(*es256_key(&self.seed)?.verifying_key()),
            Algorithm::EdDsa => {
                CoseKey::EdDsa(ed25519_dalek::SigningKey::from_bytes(&self.seed).verifying_key())
            }
        };
        Some(key)
    }

    /// The credential's CredRandom (CTAP 2.1 §12.5), one with and one without user
    /// verification, derived from its private key so the credential id carries it. `None` for
    /// a credential made without hmac-secret.
    pub(super) fn cred_random(&self, uv: bool) -> Option<Zeroizing<[u8; 32]>> {
        use hmac::Mac;
        if !self.hmac_secret {
            return None;
        }
        let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(self.seed.as_ref()).ok()?;
        mac.update(b"auths virtual key hmac-secret CredRandom");
        mac.update(&[u8::from(uv)]);
        Some(Zeroizing::new(mac.finalize().into_bytes().into()))
    }

    /// ES256: DER-encoded ECDSA signature (SHA-256 inside); EdDSA: the raw 64 bytes.
    pub(super) fn sign(&self, msg: &[u8]) -> Option<Vec<u8>> {
        match self.alg {
            Algorithm::Es256 => {
                use p256::ecdsa::signature::Signer;
                let sk = es256_key(&self.seed)?;
                let sig: p256::ecdsa::Signature = sk.sign(msg);
                Some(sig.to_der().as_bytes().to_vec())
            }
            Algorithm::EdDsa => {
                use ed25519_dalek::Signer;
                let sk = ed25519_dalek::SigningKey::from_bytes(&self.seed);
                Some(sk.sign(msg).to_bytes().to_vec())
            }
        }
    }
}

fn es256_key(seed: &[u8; 32]) -> Option<p256::ecdsa::SigningKey> {
    p256::ecdsa::SigningKey::from_bytes(seed.into()).ok()
}

/// What [`Authenticator::begin`] decided.
#[derive(Debug)]
pub enum Step {
    /// The response, ready to send: status byte, then CBOR (if any).
    Done(Vec<u8>),
    /// The request waits for a touch; hand it to [`Authenticator::complete`].
    NeedsTouch(Pending),
}

/// A checked hmac-secret request (CTAP 2.1 §12.5): what the output is encrypted with, and the
/// one or two 32-byte salts.
struct HmacSecretAsk {
    protocol: crate::ctap::pin::PinProtocol,
    shared: crate::ctap::pin::SharedSecret,
    salts: Zeroizing<Vec<u8>>,
}

/// A request that waits for a touch. Dropping it abandons the request.
pub struct Pending {
    kind: PendingKind,
}

enum PendingKind {
    MakeCredential {
        rp_id_hash: [u8; 32],
        client_data_hash: Vec<u8>,
        alg: Algorithm,
        uv: bool,
        /// credProtect level, and whether the request asked for it (then it is reported).
        protect: (u8, bool),
        /// The request asked for hmac-secret (and the key has it).
        hmac_secret: bool,
    },
    Excluded,
    GetAssertion {
        rp_id_hash: [u8; 32],
        client_data_hash: Vec<u8>,
        credential_id: Vec<u8>,
        key: CredentialKey,
        uv: bool,
        /// The hmac-secret request, checked: its protocol, shared secret and salts.
        hmac_secret: Option<HmacSecretAsk>,
    },
    Selection,
    Reset,
    UvToken(UvTokenRequest),
}

impl Pending {
    /// The CTAP2 command byte of the waiting request.
    pub fn command(&self) -> u8 {
        match self.kind {
            PendingKind::MakeCredential { .. } | PendingKind::Excluded => CMD_MAKE_CREDENTIAL,
            PendingKind::GetAssertion { .. } => CMD_GET_ASSERTION,
            PendingKind::Selection => CMD_SELECTION,
            PendingKind::UvToken(_) => CMD_CLIENT_PIN,
            PendingKind::Reset => CMD_RESET,
        }
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No key material, ever.
        f.debug_struct("Pending")
            .field("command", &self.command())
            .finish_non_exhaustive()
    }
}

/// The CTAP2 authenticator of the virtual key.
pub struct Authenticator {
    state: KeyState,
    /// clientPIN, when the key was started with PIN support.
    pin: Option<PinState>,
    /// getInfo maxCredentialCountInList.
    max_in_list: usize,
    /// credProtect level of credentials whose request does not name one.
    default_cred_protect: u8,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("state", &self.state)
            .finish()
    }
}

type CtapResult<T> = Result<T, StatusCode>;

fn status_only(s: StatusCode) -> Vec<u8> {
    vec![s.byte()]
}

fn ok_with(v: &Value) -> Vec<u8> {
    let mut out = vec![0x00];
    out.extend_from_slice(&cbor::encode(v));
    out
}

impl Authenticator {
    /// An authenticator over `state` (master secret and sign counter).
    pub fn new(state: KeyState) -> Authenticator {
        Authenticator {
            state,
            pin: None,
            max_in_list: MAX_CREDENTIAL_COUNT_IN_LIST,
            default_cred_protect: 1,
        }
    }

    /// This authenticator taking allowLists of at most `n` credentials (at least 1), as keys
    /// that report a small maxCredentialCountInList do.
    pub fn with_max_credentials_in_list(self, n: usize) -> Authenticator {
        Authenticator {
            max_in_list: n.max(1),
            ..self
        }
    }

    /// This authenticator making credentials with credProtect `level` (1 to 3) unless a
    /// request names one, as keys configured that way do.
    pub fn with_default_cred_protect(self, level: u8) -> Authenticator {
        Authenticator {
            default_cred_protect: level.clamp(1, CRED_PROTECT_UV_REQUIRED),
            ..self
        }
    }

    /// This authenticator with clientPIN (no PIN set yet), behaving as `config` says.
    pub fn with_pin_support(self, config: PinConfig) -> Authenticator {
        Authenticator {
            pin: Some(PinState::new(config)),
            ..self
        }
    }

    /// A power cycle (the key unplugged and plugged in again): PIN use is unblocked, the key
    /// agreement key and any pinUvAuthToken are new.
    pub fn power_cycle(&mut self) {
        if let Some(p) = &mut self.pin {
            p.power_cycle();
        }
    }

    /// The getInfo response of this key.
    pub fn info(&self) -> Value {
        let mut v = get_info();
        if let Value::Map(m) = &mut v {
            for (k, val) in m.iter_mut() {
                if *k == Value::int(0x07) {
                    *val = Value::Unsigned(self.max_in_list as u64);
                }
            }
        }
        let Some(pin) = &self.pin else { return v };
        let config = pin.config();
        if let Value::Map(m) = &mut v {
            for (k, val) in m.iter_mut() {
                if *k == Value::int(0x01) && config.ctap_2_0 {
                    *val = Value::Array(vec![Value::text("FIDO_2_0")]);
                }
                if *k == Value::int(0x04) {
                    if let Value::Map(opts) = val {
                        opts.push((Value::text("clientPin"), Value::Bool(pin.is_set())));
                        if config.builtin_uv && !config.ctap_2_0 {
                            opts.push((Value::text("uv"), Value::Bool(true)));
                        }
                        if !config.ctap_2_0 {
                            opts.push((Value::text("alwaysUv"), Value::Bool(config.always_uv)));
                            opts.push((Value::text("pinUvAuthToken"), Value::Bool(true)));
                            opts.push((Value::text("makeCredUvNotRqd"), Value::Bool(true)));
                        }
                    }
                }
            }
            m.push((Value::int(0x06), Value::Array(pin.protocol_numbers())));
            for (k, val) in m.iter_mut() {
                if *k == Value::int(0x02) {
                    *val =
                        Value::Array(vec![Value::text("credProtect"), Value::text("hmac-secret")]);
                }
            }
            m.push((
                Value::int(0x0d),
                Value::Unsigned(super::client_pin::MIN_PIN_LENGTH as u64),
            ));
        }
        v
    }

    /// The current sign counter.
    pub fn counter(&self) -> u32 {
        self.state.counter()
    }

    /// The next value of the one persisted sign counter (CTAP2 and U2F share it).
    pub(super) fn next_counter(&mut self) -> CtapResult<u32> {
        self.state.next_counter().map_err(|_| StatusCode::Other)
    }

    /// Start a request: `request` is the CTAPHID_CBOR payload (command byte, then CBOR).
    pub fn begin(&mut self, request: &[u8]) -> Step {
        let Some((&command, params)) = request.split_first() else {
            return Step::Done(status_only(StatusCode::InvalidLength));
        };
        if request.len() > MAX_MSG_SIZE {
            return Step::Done(status_only(StatusCode::RequestTooLarge));
        }
        let result = match command {
            CMD_GET_INFO => no_params(params).map(|()| Step::Done(ok_with(&self.info()))),
            CMD_CLIENT_PIN => self.client_pin(params),
            CMD_MAKE_CREDENTIAL => self.make_credential(params),
            CMD_GET_ASSERTION => self.get_assertion(params),
            CMD_SELECTION => no_params(params).map(|()| {
                Step::NeedsTouch(Pending {
                    kind: PendingKind::Selection,
                })
            }),
            CMD_RESET => no_params(params).map(|()| {
                Step::NeedsTouch(Pending {
                    kind: PendingKind::Reset,
                })
            }),
            _ => Err(StatusCode::InvalidCommand),
        };
        result.unwrap_or_else(|s| Step::Done(status_only(s)))
    }

    /// Finish a request that waited for a touch. `touched == false` means nobody touched the
    /// key in time: CTAP2_ERR_USER_ACTION_TIMEOUT.
    pub fn complete(&mut self, pending: Pending, touched: bool) -> Vec<u8> {
        if !touched {
            return status_only(StatusCode::UserActionTimeout);
        }
        self.finish(pending.kind, true).unwrap_or_else(status_only)
    }

    fn finish(&mut self, kind: PendingKind, up: bool) -> CtapResult<Vec<u8>> {
        match kind {
            PendingKind::Selection => Ok(vec![0x00]),
            PendingKind::UvToken(request) => {
                let pin = self.pin.as_mut().ok_or(StatusCode::InvalidCommand)?;
                let mut out = vec![0x00];
                out.extend_from_slice(&pin.uv_token(request)?.encode());
                Ok(out)
            }
            PendingKind::Excluded => Err(StatusCode::CredentialExcluded),
            PendingKind::Reset => {
                self.state.reset().map_err(|_| StatusCode::Other)?;
                if let Some(p) = &mut self.pin {
                    p.reset();
                }
                Ok(vec![0x00])
            }
            PendingKind::MakeCredential {
                rp_id_hash,
                client_data_hash,
                alg,
                uv,
                protect,
                hmac_secret,
            } => {
                let mut key = CredentialKey::generate(alg);
                key.protect = protect.0;
                key.hmac_secret = hmac_secret;
                let id = self.wrap(&rp_id_hash, &key)?;
                let public_key = key.public_key().ok_or(StatusCode::Other)?;
                let counter = self.state.next_counter().map_err(|_| StatusCode::Other)?;
                // `build` sets AT itself, as the attested credential data is present.
                let attested = AttestedCredentialData {
                    aaguid: VIRTUAL_AAGUID,
                    credential_id: id,
                    public_key_cose: public_key.to_cbor(),
                };
                let flags = flag::UP | if uv { flag::UV } else { 0 };
                // The level is reported when asked for, or when it is not the default 1.
                let mut outputs = Vec::new();
                if protect.1 || protect.0 > 1 {
                    outputs.push((
                        Value::text("credProtect"),
                        Value::Unsigned(u64::from(protect.0)),
                    ));
                }
                if hmac_secret {
                    outputs.push((Value::text("hmac-secret"), Value::Bool(true)));
                }
                let ext = (!outputs.is_empty()).then_some(Value::Map(outputs));
                let auth_data =
                    authdata::build(&rp_id_hash, flags, counter, Some(&attested), ext.as_ref());
                let mut signed = auth_data.clone();
                signed.extend_from_slice(&client_data_hash);
                let sig = key.sign(&signed).ok_or(StatusCode::Other)?;
                let att_stmt = Value::Map(vec![
                    (Value::text("alg"), Value::int(alg.cose_id())),
                    (Value::text("sig"), Value::Bytes(sig)),
                ]);
                Ok(ok_with(&Value::Map(vec![
                    (Value::int(1), Value::text("packed")),
                    (Value::int(2), Value::Bytes(auth_data)),
                    (Value::int(3), att_stmt),
                ])))
            }
            PendingKind::GetAssertion {
                rp_id_hash,
                client_data_hash,
                credential_id,
                key,
                uv,
                hmac_secret,
            } => {
                let counter = self.state.next_counter().map_err(|_| StatusCode::Other)?;
                let flags = if up { flag::UP } else { 0 } | if uv { flag::UV } else { 0 };
                let ext = match hmac_secret {
                    None => None,
                    Some(ask) => hmac_secret_output(&key, uv, &ask)?,
                };
                let auth_data = authdata::build(&rp_id_hash, flags, counter, None, ext.as_ref());
                let mut signed = auth_data.clone();
                signed.extend_from_slice(&client_data_hash);
                let sig = key.sign(&signed).ok_or(StatusCode::Other)?;
                Ok(ok_with(&Value::Map(vec![
                    (Value::int(1), descriptor(&credential_id)),
                    (Value::int(2), Value::Bytes(auth_data)),
                    (Value::int(3), Value::Bytes(sig)),
                ])))
            }
        }
    }

    fn wrap_cipher(&self) -> ChaCha20Poly1305 {
        let hk = Hkdf::<Sha256>::new(Some(WRAP_SALT), self.state.master_secret());
        let mut okm = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32: this cannot fail.
        let _ = hk.expand(WRAP_INFO, okm.as_mut());
        ChaCha20Poly1305::new(Key::from_slice(okm.as_ref()))
    }

    /// Wrap `key` into a credential id for `rp_id_hash` (also the U2F key handle, whose
    /// application parameter is the same SHA-256 of the rp id).
    pub(super) fn wrap(&self, rp_id_hash: &[u8; 32], key: &CredentialKey) -> CtapResult<Vec<u8>> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut plaintext = Zeroizing::new([0u8; 33]);
        plaintext[0] = id_byte(key.alg, key.protect, key.hmac_secret);
        plaintext[1..].copy_from_slice(key.seed.as_ref());
        let aad = id_aad(rp_id_hash);
        let sealed = self
            .wrap_cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_ref(),
                    aad: &aad,
                },
            )
            .map_err(|_| StatusCode::Other)?;
        let mut id = Vec::with_capacity(CREDENTIAL_ID_LEN);
        id.push(ID_VERSION);
        id.extend_from_slice(&nonce);
        id.extend_from_slice(&sealed);
        Ok(id)
    }

    /// Open a credential id: `Some` only when this key made it for this rp id.
    pub(super) fn unwrap_id(&self, rp_id_hash: &[u8; 32], id: &[u8]) -> Option<CredentialKey> {
        if id.len() != CREDENTIAL_ID_LEN || id[0] != ID_VERSION {
            return None;
        }
        let aad = id_aad(rp_id_hash);
        let plaintext = Zeroizing::new(
            self.wrap_cipher()
                .decrypt(
                    Nonce::from_slice(&id[1..13]),
                    Payload {
                        msg: &id[13..],
                        aad: &aad,
                    },
                )
                .ok()?,
        );
        let (&alg, seed) = plaintext.split_first()?;
        let (alg, protect, hmac_secret) = from_id_byte(alg)?;
        let mut s = Zeroizing::new([0u8; 32]);
        s.copy_from_slice(seed.get(..32)?);
        Some(CredentialKey {
            alg,
            seed: s,
            protect,
            hmac_secret,
        })
    }

    fn make_credential(&mut self, params: &[u8]) -> CtapResult<Step> {
        let req = decode_request(params)?;
        let client_data_hash = client_data_hash_param(req_field(&req, 1)?)?;
        let rp = as_map(req_field(&req, 2)?)?;
        let rp_id = as_text(map_field(rp, "id")?)?;
        opt_text(rp, "name")?;
        let user = as_map(req_field(&req, 3)?)?;
        let user_id = as_bytes(map_field(user, "id")?)?;
        if user_id.len() > MAX_USER_ID_LEN {
            return Err(StatusCode::InvalidLength);
        }
        opt_text(user, "name")?;
        opt_text(user, "displayName")?;
        let params_list = as_array(req_field(&req, 4)?)?;
        let mut chosen = None;
        for p in params_list {
            let p = as_map(p)?;
            let alg = as_int(map_field(p, "alg")?)?;
            let ty = as_text(map_field(p, "type")?)?;
            if chosen.is_none() && ty == PUBLIC_KEY {
                chosen = Algorithm::from_cose_id(alg);
            }
        }
        let exclude = opt_int_field(&req, 5).map(as_array).transpose()?;
        let opts = extensions_options_and_pin(&req, 6)?;
        let asked = cred_protect(opt_int_field(&req, 6))?;
        let protect = (asked.unwrap_or(self.default_cred_protect), asked.is_some());
        // hmac-secret needs the clientPIN key agreement: only a key with clientPIN has it.
        let hmac_secret = self.pin.is_some() && hmac_secret_asked(opt_int_field(&req, 6))?;
        let alg = chosen.ok_or(StatusCode::UnsupportedAlgorithm)?;
        let uv = self.check_pin_uv_auth(
            &req,
            6,
            permissions::MAKE_CREDENTIAL,
            rp_id,
            client_data_hash,
        )?;
        if opts.rk == Some(true) {
            return Err(StatusCode::UnsupportedOption);
        }
        if opts.uv == Some(true) {
            return Err(StatusCode::InvalidOption);
        }
        if opts.up == Some(false) {
            return Err(StatusCode::InvalidOption);
        }
        let rp_id_hash: [u8; 32] = Sha256::digest(rp_id.as_bytes()).into();
        if let Some(list) = exclude {
            for d in list {
                if let Some(id) = descriptor_id(d)? {
                    if self.unwrap_id(&rp_id_hash, id).is_some() {
                        return Ok(Step::NeedsTouch(Pending {
                            kind: PendingKind::Excluded,
                        }));
                    }
                }
            }
        }
        Ok(Step::NeedsTouch(Pending {
            kind: PendingKind::MakeCredential {
                rp_id_hash,
                client_data_hash: client_data_hash.to_vec(),
                alg,
                uv,
                protect,
                hmac_secret,
            },
        }))
    }

    fn get_assertion(&mut self, params: &[u8]) -> CtapResult<Step> {
        let req = decode_request(params)?;
        let rp_id = as_text(req_field(&req, 1)?)?;
        let client_data_hash = client_data_hash_param(req_field(&req, 2)?)?;
        let allow = opt_int_field(&req, 3).map(as_array).transpose()?;
        if allow.is_some_and(|a| a.len() > self.max_in_list) {
            // More than getInfo's maxCredentialCountInList: hosts must split the list.
            return Err(StatusCode::LimitExceeded);
        }
        let opts = extensions_options_and_pin(&req, 4)?;
        if opts.uv == Some(true) {
            return Err(StatusCode::InvalidOption);
        }
        if opts.rk.is_some() {
            return Err(StatusCode::InvalidOption);
        }
        let uv =
            self.check_pin_uv_auth(&req, 4, permissions::GET_ASSERTION, rp_id, client_data_hash)?;
        let hmac_secret = self.hmac_secret_ask(opt_int_field(&req, 4))?;
        let rp_id_hash: [u8; 32] = Sha256::digest(rp_id.as_bytes()).into();
        // Check every descriptor's shape first, then look for ours.
        let mut ids = Vec::new();
        for d in allow.unwrap_or(&[]) {
            if let Some(id) = descriptor_id(d)? {
                ids.push(id);
            }
        }
        // No discoverable credentials: without an allowList there is nothing to find.
        // A credential made with credProtect userVerificationRequired is not there for a
        // request whose user was not verified (§12.1).
        let found = ids.iter().find_map(|id| {
            self.unwrap_id(&rp_id_hash, id)
                .filter(|k| uv || k.protect < CRED_PROTECT_UV_REQUIRED)
                .map(|k| (id.to_vec(), k))
        });
        let (credential_id, key) = found.ok_or(StatusCode::NoCredentials)?;
        let kind = PendingKind::GetAssertion {
            rp_id_hash,
            client_data_hash: client_data_hash.to_vec(),
            credential_id,
            key,
            uv,
            hmac_secret,
        };
        if opts.up == Some(false) {
            // Silent assertion: no touch, UP flag clear.
            return self.finish(kind, false).map(Step::Done);
        }
        Ok(Step::NeedsTouch(Pending { kind }))
    }
}

impl Authenticator {
    /// authenticatorClientPIN: only on a key started with PIN support.
    fn client_pin(&mut self, params: &[u8]) -> CtapResult<Step> {
        let pin = self.pin.as_mut().ok_or(StatusCode::InvalidCommand)?;
        let req = decode_request(params)?;
        let field = |k: u64| opt_int_field(&req, k).cloned();
        let sub = field(2).and_then(|v| v.as_u64());
        if sub == Some(SubCommand::GetPinUvAuthTokenUsingUv.number()) {
            // Built-in UV: the token comes after the (virtual) finger.
            let request = pin.uv_token_request(&field)?;
            return Ok(Step::NeedsTouch(Pending {
                kind: PendingKind::UvToken(request),
            }));
        }
        let answer = pin.command(&field)?;
        let body = answer.encode();
        let mut out = vec![0x00];
        out.extend_from_slice(&body);
        Ok(Step::Done(out))
    }

    /// getAssertion's hmac-secret extension input (CTAP 2.1 §12.5), checked before any touch:
    /// keyAgreement (1), saltEnc (2), saltAuth (3) and pinUvAuthProtocol (4, 1 when absent);
    /// saltAuth must be the MAC of saltEnc under the shared secret, and the salts 32 or 64
    /// bytes. `None` when the request does not ask for it.
    fn hmac_secret_ask(&self, extensions: Option<&Value>) -> CtapResult<Option<HmacSecretAsk>> {
        use crate::ctap::pin::PinProtocol;
        let Some(ext) = extensions else {
            return Ok(None);
        };
        let Some((_, input)) = as_map(ext)?
            .iter()
            .find(|(k, _)| k.as_text() == Some("hmac-secret"))
        else {
            return Ok(None);
        };
        // Without clientPIN there is no key agreement, so no hmac-secret: an extension the
        // key does not support is ignored (CTAP 2.1 §9).
        let Some(pin) = self.pin.as_ref() else {
            return Ok(None);
        };
        let input = as_map(input)?;
        let field = |k: u64| {
            input
                .iter()
                .find(|(key, _)| *key == Value::Unsigned(k))
                .map(|(_, v)| v)
        };
        let protocol = match field(4) {
            None => PinProtocol::One,
            Some(v) => v
                .as_u64()
                .and_then(PinProtocol::from_number)
                .ok_or(StatusCode::InvalidParameter)?,
        };
        let shared = pin.hmac_secret_shared(protocol, field(1))?;
        let salt_enc = as_bytes(field(2).ok_or(StatusCode::MissingParameter)?)?;
        let salt_auth = as_bytes(field(3).ok_or(StatusCode::MissingParameter)?)?;
        if !protocol.verify(shared.as_bytes(), salt_enc, salt_auth) {
            return Err(StatusCode::PinAuthInvalid);
        }
        let salts = protocol
            .decrypt(&shared, salt_enc)
            .map_err(|_| StatusCode::InvalidLength)?;
        if salts.len() != 32 && salts.len() != 64 {
            return Err(StatusCode::InvalidLength);
        }
        Ok(Some(HmacSecretAsk {
            protocol,
            shared,
            salts,
        }))
    }

    /// The pinUvAuthParam and pinUvAuthProtocol after the extensions at `extensions_key`:
    /// whether a valid one made this request user-verified.
    fn check_pin_uv_auth(
        &mut self,
        req: &[(Value, Value)],
        extensions_key: u64,
        permission: u64,
        rp_id: &str,
        client_data_hash: &[u8],
    ) -> CtapResult<bool> {
        let param = opt_int_field(req, extensions_key + 2);
        let protocol = opt_int_field(req, extensions_key + 3);
        let Some(pin) = self.pin.as_mut() else {
            if param.is_some() {
                // A key without clientPIN has no PIN to check a pinUvAuthParam against.
                return Err(StatusCode::PinNotSet);
            }
            if let Some(p) = protocol {
                as_int(p)?;
            }
            return Ok(false);
        };
        let v = pin.check_request(param, protocol, permission, rp_id, client_data_hash)?;
        Ok(v == Verified::UserVerified)
    }
}

fn id_aad(rp_id_hash: &[u8; 32]) -> [u8; 33] {
    let mut aad = [0u8; 33];
    aad[0] = ID_VERSION;
    aad[1..].copy_from_slice(rp_id_hash);
    aad
}

/// The authenticatorGetInfo response (CTAP 2.1 §6.4), shaped like a YubiKey 5's but marked as
/// virtual by its AAGUID and firmwareVersion, and advertising only what the key does:
/// - versions FIDO_2_0 and FIDO_2_1, not U2F_V2: there is no CTAP1/U2F (CTAPHID_MSG gets
///   ERR_INVALID_CMD, and the INIT capabilities carry NMSG);
/// - option `rk` false: resident keys are refused (CTAP2_ERR_UNSUPPORTED_OPTION);
/// - no `clientPin` option and no pinUvAuthProtocols: authenticatorClientPIN (0x06) is not
///   implemented (`clientPin: false` would claim a PIN could be set).
pub fn get_info() -> Value {
    Value::Map(vec![
        (
            Value::int(0x01),
            Value::Array(vec![Value::text("FIDO_2_0"), Value::text("FIDO_2_1")]),
        ),
        // credProtect only; unknown extensions in requests are ignored.
        (
            Value::int(0x02),
            Value::Array(vec![Value::text("credProtect")]),
        ),
        (Value::int(0x03), Value::bytes(&VIRTUAL_AAGUID)),
        (
            Value::int(0x04),
            Value::Map(vec![
                (Value::text("rk"), Value::Bool(false)),
                (Value::text("up"), Value::Bool(true)),
                (Value::text("plat"), Value::Bool(false)),
            ]),
        ),
        (Value::int(0x05), Value::int(MAX_MSG_SIZE as i64)),
        (
            Value::int(0x07),
            Value::int(MAX_CREDENTIAL_COUNT_IN_LIST as i64),
        ),
        (Value::int(0x08), Value::int(128)),
        (Value::int(0x09), Value::Array(vec![Value::text("usb")])),
        (
            Value::int(0x0a),
            Value::Array(vec![
                credential_parameters(ALG_ES256),
                credential_parameters(ALG_EDDSA),
            ]),
        ),
        (Value::int(0x0e), Value::Unsigned(VIRTUAL_FIRMWARE_VERSION)),
    ])
}

// ---- strict request parsing -------------------------------------------------------------

fn no_params(params: &[u8]) -> CtapResult<()> {
    if params.is_empty() {
        Ok(())
    } else {
        Err(StatusCode::InvalidLength)
    }
}

fn decode_request(params: &[u8]) -> CtapResult<Vec<(Value, Value)>> {
    if params.is_empty() {
        return Err(StatusCode::MissingParameter);
    }
    let v = cbor::decode(params).map_err(|_| StatusCode::InvalidCbor)?;
    match v {
        Value::Map(m) => {
            if m.iter().any(|(k, _)| !matches!(k, Value::Unsigned(_))) {
                return Err(StatusCode::CborUnexpectedType);
            }
            Ok(m)
        }
        _ => Err(StatusCode::CborUnexpectedType),
    }
}

fn opt_int_field(req: &[(Value, Value)], key: u64) -> Option<&Value> {
    req.iter()
        .find(|(k, _)| *k == Value::Unsigned(key))
        .map(|(_, v)| v)
}

fn req_field(req: &[(Value, Value)], key: u64) -> CtapResult<&Value> {
    opt_int_field(req, key).ok_or(StatusCode::MissingParameter)
}

fn map_field<'a>(map: &'a [(Value, Value)], key: &str) -> CtapResult<&'a Value> {
    map.iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
        .ok_or(StatusCode::MissingParameter)
}

fn opt_text(map: &[(Value, Value)], key: &str) -> CtapResult<()> {
    match map.iter().find(|(k, _)| k.as_text() == Some(key)) {
        Some((_, v)) => as_text(v).map(|_| ()),
        None => Ok(()),
    }
}

fn as_map(v: &Value) -> CtapResult<&[(Value, Value)]> {
    v.as_map().ok_or(StatusCode::CborUnexpectedType)
}

fn as_array(v: &Value) -> CtapResult<&[Value]> {
    v.as_array().ok_or(StatusCode::CborUnexpectedType)
}

fn as_text(v: &Value) -> CtapResult<&str> {
    v.as_text().ok_or(StatusCode::CborUnexpectedType)
}

fn as_bytes(v: &Value) -> CtapResult<&[u8]> {
    v.as_bytes().ok_or(StatusCode::CborUnexpectedType)
}

fn as_int(v: &Value) -> CtapResult<i64> {
    match v {
        Value::Unsigned(_) | Value::Negative(_) => v.as_i64().ok_or(StatusCode::InvalidParameter),
        _ => Err(StatusCode::CborUnexpectedType),
    }
}

fn client_data_hash_param(v: &Value) -> CtapResult<&[u8]> {
    let h = as_bytes(v)?;
    if h.len() != 32 {
        return Err(StatusCode::InvalidLength);
    }
    Ok(h)
}

/// A PublicKeyCredentialDescriptor: `Some(id)` for type "public-key", `None` for other types
/// (skipped, as the spec says).
fn descriptor_id(v: &Value) -> CtapResult<Option<&[u8]>> {
    let d = as_map(v)?;
    let ty = as_text(map_field(d, "type")?)?;
    let id = as_bytes(map_field(d, "id")?)?;
    if let Some((_, t)) = d.iter().find(|(k, _)| k.as_text() == Some("transports")) {
        as_array(t)?;
    }
    Ok((ty == PUBLIC_KEY).then_some(id))
}

#[derive(Default)]
struct Options {
    rk: Option<bool>,
    up: Option<bool>,
    uv: Option<bool>,
}

/// The first two of the four parameters makeCredential and getAssertion both end with, at
/// consecutive keys from `extensions_key` (CTAP 2.1 §6.1.2: 6 to 9; §6.2.2: 4 to 7):
/// extensions and options. Returns the options.
fn extensions_options_and_pin(req: &[(Value, Value)], extensions_key: u64) -> CtapResult<Options> {
    if let Some(ext) = opt_int_field(req, extensions_key) {
        // Extensions are optional; none is implemented, so requests for them are ignored
        // (WebAuthn §9).
        as_map(ext)?;
    }
    // pinUvAuthParam and pinUvAuthProtocol: [`Authenticator::check_pin_uv_auth`].
    parse_options(opt_int_field(req, extensions_key + 1))
}

/// The credProtect level a makeCredential's extensions ask for: `None` when they do not.
fn cred_protect(extensions: Option<&Value>) -> CtapResult<Option<u8>> {
    let Some(ext) = extensions else {
        return Ok(None);
    };
    let Some((_, v)) = as_map(ext)?
        .iter()
        .find(|(k, _)| k.as_text() == Some("credProtect"))
    else {
        return Ok(None);
    };
    match v.as_u64() {
        Some(l @ 1..=3) => Ok(Some(l as u8)),
        _ => Err(StatusCode::InvalidParameter),
    }
}

/// Whether makeCredential's extensions ask for hmac-secret (`"hmac-secret": true`).
fn hmac_secret_asked(extensions: Option<&Value>) -> CtapResult<bool> {
    let Some(ext) = extensions else {
        return Ok(false);
    };
    match as_map(ext)?
        .iter()
        .find(|(k, _)| k.as_text() == Some("hmac-secret"))
    {
        None => Ok(false),
        Some((_, v)) => v.as_bool().ok_or(StatusCode::CborUnexpectedType),
    }
}

/// The hmac-secret output of an assertion (CTAP 2.1 §12.5): HMAC-SHA-256 of each salt under
/// the credential's CredRandom (with or without UV), encrypted with the shared secret, as the
/// authenticatorData extensions map.
fn hmac_secret_output(
    key: &CredentialKey,
    uv: bool,
    ask: &HmacSecretAsk,
) -> CtapResult<Option<Value>> {
    use hmac::Mac;
    // A credential made without hmac-secret has no CredRandom: the extension is left out.
    let Some(cred_random) = key.cred_random(uv) else {
        return Ok(None);
    };
    let mut out = Zeroizing::new(Vec::with_capacity(ask.salts.len()));
    for salt in ask.salts.chunks(32) {
        let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(cred_random.as_ref())
            .map_err(|_| StatusCode::Other)?;
        mac.update(salt);
        out.extend_from_slice(&mac.finalize().into_bytes());
    }
    let enc = ask
        .protocol
        .encrypt(&ask.shared, &out)
        .map_err(|_| StatusCode::Other)?;
    Ok(Some(Value::Map(vec![(
        Value::text("hmac-secret"),
        Value::Bytes(enc),
    )])))
}

fn parse_options(v: Option<&Value>) -> CtapResult<Options> {
    let mut o = Options::default();
    let Some(v) = v else { return Ok(o) };
    for (k, val) in as_map(v)? {
        let k = as_text(k)?;
        let b = val.as_bool().ok_or(StatusCode::CborUnexpectedType)?;
        match k {
            "rk" => o.rk = Some(b),
            "up" => o.up = Some(b),
            "uv" => o.uv = Some(b),
            _ => {} // unknown options are ignored
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctap::authdata::AuthenticatorData;
    use crate::ctap::command::payload;

    fn auth() -> Authenticator {
        Authenticator::new(KeyState::in_memory())
    }

    fn make_cred_req(rp: &str, algs: &[i64], extra: Vec<(Value, Value)>) -> Vec<u8> {
        let mut m = vec![
            (Value::int(1), Value::bytes(&[7u8; 32])),
            (
                Value::int(2),
                Value::Map(vec![(Value::text("id"), Value::text(rp))]),
            ),
            (
                Value::int(3),
                Value::Map(vec![
                    (Value::text("id"), Value::bytes(b"user")),
                    (Value::text("name"), Value::text("alice")),
                ]),
            ),
            (
                Value::int(4),
                Value::Array(algs.iter().map(|&a| credential_parameters(a)).collect()),
            ),
        ];
        m.extend(extra);
        payload(CMD_MAKE_CREDENTIAL, Value::Map(m))
    }

    fn get_assertion_req(rp: &str, ids: &[&[u8]], extra: Vec<(Value, Value)>) -> Vec<u8> {
        let mut m = vec![
            (Value::int(1), Value::text(rp)),
            (Value::int(2), Value::bytes(&[9u8; 32])),
            (
                Value::int(3),
                Value::Array(ids.iter().map(|id| descriptor(id)).collect()),
            ),
        ];
        m.extend(extra);
        payload(CMD_GET_ASSERTION, Value::Map(m))
    }

    /// getAssertion's hmac-secret input as a platform would build it, naming `claimed` as its
    /// protocol when given, with `tweak` applied to (saltEnc, saltAuth) before sending.
    fn hmac_request(
        a: &mut Authenticator,
        protocol: crate::ctap::pin::PinProtocol,
        id: &[u8],
        salts: &[u8],
        claimed: Option<u64>,
        tweak: impl Fn(&mut Vec<u8>, &mut Vec<u8>),
    ) -> (Vec<u8>, crate::ctap::pin::SharedSecret) {
        use crate::ctap::client_pin::ClientPinRequest;
        let Step::Done(resp) =
            a.begin(&ClientPinRequest::new(protocol, SubCommand::GetKeyAgreement).to_payload())
        else {
            panic!("getKeyAgreement waits for nothing")
        };
        let r = crate::ctap::client_pin::ClientPinResponse::decode(&resp[1..]).unwrap();
        let (ours, shared) = protocol.encapsulate(&r.key_agreement.unwrap());
        let mut enc = protocol.encrypt(&shared, salts).unwrap();
        let mut auth = protocol.authenticate(shared.as_bytes(), &enc);
        tweak(&mut enc, &mut auth);
        let ext = Value::Map(vec![(
            Value::text("hmac-secret"),
            Value::Map(vec![
                (Value::int(1), ours.to_cbor()),
                (Value::int(2), Value::Bytes(enc)),
                (Value::int(3), Value::Bytes(auth)),
                (
                    Value::int(4),
                    Value::Unsigned(claimed.unwrap_or(protocol.number())),
                ),
            ]),
        )]);
        let extra = vec![(Value::int(4), ext)];
        (
            run(a, &get_assertion_req("example.org", &[id], extra)),
            shared,
        )
    }

    #[test]
    fn hmac_secret_inputs_are_checked_before_any_touch() {
        use crate::ctap::pin::PinProtocol;
        let mut a = auth().with_pin_support(PinConfig {
            protocols: vec![PinProtocol::Two],
            ..PinConfig::default()
        });
        let hmac = vec![(
            Value::int(6),
            Value::Map(vec![(Value::text("hmac-secret"), Value::Bool(true))]),
        )];
        let v = ok_value(&run(
            &mut a,
            &make_cred_req("example.org", &[ALG_ES256], hmac),
        ));
        let ad = AuthenticatorData::parse(v.get_int(2).unwrap().as_bytes().unwrap()).unwrap();
        let id = ad.attested_credential_data.unwrap().credential_id;
        let p = PinProtocol::Two;
        let salt = [5u8; 32];

        let (ok, shared) = hmac_request(&mut a, p, &id, &salt, None, |_, _| {});
        let body = ok_value(&ok);
        let ad = AuthenticatorData::parse(body.get_int(2).unwrap().as_bytes().unwrap()).unwrap();
        let enc = ad.extensions.unwrap().as_map().unwrap()[0]
            .1
            .as_bytes()
            .unwrap()
            .to_vec();
        let without_uv = p.decrypt(&shared, &enc).unwrap();
        assert_eq!(without_uv.len(), 32);

        // A flipped saltAuth bit, salts of 16 bytes, a protocol the key does not offer.
        let (bad, _) = hmac_request(&mut a, p, &id, &salt, None, |_, auth| auth[0] ^= 1);
        assert_eq!(bad, vec![0x33], "PIN_AUTH_INVALID");
        let (short, _) = hmac_request(&mut a, p, &id, &[5u8; 16], None, |_, _| {});
        assert_eq!(short, vec![0x03], "INVALID_LENGTH");
        let (other, _) = hmac_request(&mut a, p, &id, &salt, Some(1), |_, _| {});
        assert_ne!(other[0], 0, "protocol one is not offered");
    }

    fn run(a: &mut Authenticator, req: &[u8]) -> Vec<u8> {
        match a.begin(req) {
            Step::Done(r) => r,
            Step::NeedsTouch(p) => a.complete(p, true),
        }
    }

    fn ok_value(resp: &[u8]) -> Value {
        assert_eq!(resp[0], 0, "status {:02x}", resp[0]);
        cbor::decode(&resp[1..]).unwrap()
    }

    /// Returns (credential id, COSE key bytes, authData).
    fn enroll(a: &mut Authenticator, rp: &str, algs: &[i64]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let v = ok_value(&run(a, &make_cred_req(rp, algs, vec![])));
        assert_eq!(v.get_int(1).unwrap().as_text(), Some("packed"));
        let ad = v.get_int(2).unwrap().as_bytes().unwrap().to_vec();
        assert_eq!(&ad[..32], Sha256::digest(rp.as_bytes()).as_slice());
        assert_eq!(ad[32], flag::UP | flag::AT);
        assert_eq!(&ad[37..53], &VIRTUAL_AAGUID);
        let len = usize::from(u16::from_be_bytes([ad[53], ad[54]]));
        assert_eq!(len, CREDENTIAL_ID_LEN);
        let id = ad[55..55 + len].to_vec();
        let (cose, used) = cbor::decode_prefix(&ad[55 + len..]).unwrap();
        assert_eq!(
            used,
            ad.len() - 55 - len,
            "no trailing bytes after the COSE key"
        );
        let cose_bytes = cbor::encode(&cose);
        assert_eq!(cose_bytes, ad[55 + len..], "COSE key is canonical");
        // Self attestation verifies with the credential key.
        let att = v.get_int(3).unwrap();
        let sig = att.get_text("sig").unwrap().as_bytes().unwrap();
        let mut signed = ad.clone();
        signed.extend_from_slice(&[7u8; 32]);
        verify(&cose, &signed, sig);
        (id, cose_bytes, ad)
    }

    /// Verify with the client's own COSE verifier (itself checked against p256 and
    /// ed25519-dalek in `cose`'s tests).
    fn verify(cose: &Value, msg: &[u8], sig: &[u8]) {
        CoseKey::from_cbor(cose).unwrap().verify(msg, sig).unwrap();
    }

    #[test]
    fn get_info_is_canonical_and_virtual() {
        let mut a = auth();
        let resp = run(&mut a, &[CMD_GET_INFO]);
        let v = ok_value(&resp);
        assert_eq!(cbor::encode(&v), resp[1..]);
        assert_eq!(v.get_int(3).unwrap().as_bytes(), Some(&VIRTUAL_AAGUID[..]));
        assert_eq!(v.get_int(5).unwrap().as_u64(), Some(1200));
        assert_eq!(
            v.get_int(0x0e).unwrap().as_u64(),
            Some(VIRTUAL_FIRMWARE_VERSION)
        );
        assert_eq!(run(&mut a, &[CMD_GET_INFO, 0xa0]), vec![0x03]);
    }

    #[test]
    fn get_info_advertises_only_what_is_supported() {
        let mut a = auth();
        let v = ok_value(&run(&mut a, &[CMD_GET_INFO]));
        let versions: Vec<&str> = v
            .get_int(1)
            .and_then(Value::as_array)
            .unwrap()
            .iter()
            .filter_map(Value::as_text)
            .collect();
        assert_eq!(versions, ["FIDO_2_0", "FIDO_2_1"], "no U2F_V2: no CTAP1");
        let opts = v.get_int(4).unwrap();
        assert_eq!(opts.get_text("rk").and_then(Value::as_bool), Some(false));
        assert_eq!(opts.get_text("clientPin"), None);
        assert_eq!(
            v.get_int(6),
            None,
            "no pinUvAuthProtocols without clientPIN"
        );
        // What it does not advertise, it refuses.
        let rk = Value::Map(vec![(Value::text("rk"), Value::Bool(true))]);
        let req = make_cred_req("rp", &[ALG_ES256], vec![(Value::int(7), rk)]);
        assert_eq!(
            run(&mut a, &req),
            vec![StatusCode::UnsupportedOption.byte()]
        );
        assert_eq!(
            run(&mut a, &[0x06, 0xa0]),
            vec![StatusCode::InvalidCommand.byte()]
        );
    }

    #[test]
    fn make_credential_and_assert_both_algorithms() {
        for alg in [ALG_ES256, ALG_EDDSA] {
            let mut a = auth();
            let (id, cose, _) = enroll(&mut a, "auths:presence", &[alg]);
            let cose = cbor::decode(&cose).unwrap();
            assert_eq!(cose.get_int(3).unwrap().as_i64(), Some(alg));
            for expect_counter in [2u32, 3] {
                let v = ok_value(&run(
                    &mut a,
                    &get_assertion_req("auths:presence", &[&id], vec![]),
                ));
                let cred = v.get_int(1).unwrap();
                assert_eq!(cred.get_text("id").unwrap().as_bytes(), Some(&id[..]));
                let ad = v.get_int(2).unwrap().as_bytes().unwrap();
                assert_eq!(ad.len(), 37);
                assert_eq!(ad[32], flag::UP);
                assert_eq!(
                    u32::from_be_bytes([ad[33], ad[34], ad[35], ad[36]]),
                    expect_counter
                );
                let mut signed = ad.to_vec();
                signed.extend_from_slice(&[9u8; 32]);
                verify(&cose, &signed, v.get_int(3).unwrap().as_bytes().unwrap());
            }
        }
    }

    #[test]
    fn first_supported_algorithm_in_callers_order() {
        let mut a = auth();
        let (_, cose, _) = enroll(&mut a, "rp", &[-257, ALG_EDDSA, ALG_ES256]);
        assert_eq!(
            cbor::decode(&cose).unwrap().get_int(3).unwrap().as_i64(),
            Some(ALG_EDDSA)
        );
        assert_eq!(
            run(&mut a, &make_cred_req("rp", &[-257, -35], vec![])),
            vec![0x26]
        );
    }

    #[test]
    fn foreign_tampered_or_other_rp_ids_are_not_ours() {
        let mut a = auth();
        let (id, _, _) = enroll(&mut a, "rp-a", &[ALG_ES256]);
        let mut flipped = id.clone();
        flipped[20] ^= 0x01;
        assert_eq!(
            run(&mut a, &get_assertion_req("rp-a", &[&flipped], vec![])),
            vec![0x2e]
        );
        assert_eq!(
            run(&mut a, &get_assertion_req("rp-b", &[&id], vec![])),
            vec![0x2e]
        );
        assert_eq!(
            run(&mut a, &get_assertion_req("rp-a", &[], vec![])),
            vec![0x2e]
        );
        let mut other = auth();
        assert_eq!(
            run(&mut other, &get_assertion_req("rp-a", &[&id], vec![])),
            vec![0x2e]
        );
        // A foreign id first, ours second: ours is used.
        let v = ok_value(&run(
            &mut a,
            &get_assertion_req("rp-a", &[&flipped, &id], vec![]),
        ));
        assert_eq!(
            v.get_int(1).unwrap().get_text("id").unwrap().as_bytes(),
            Some(&id[..])
        );
    }

    #[test]
    fn exclude_list_after_touch() {
        let mut a = auth();
        let (id, _, _) = enroll(&mut a, "rp", &[ALG_ES256]);
        let excl = Value::Array(vec![descriptor(&id)]);
        let req = make_cred_req("rp", &[ALG_ES256], vec![(Value::int(5), excl)]);
        match a.begin(&req) {
            Step::NeedsTouch(p) => assert_eq!(a.complete(p, true), vec![0x19]),
            Step::Done(r) => panic!("answered without a touch: {r:?}"),
        }
    }

    #[test]
    fn options() {
        let mut a = auth();
        let (id, _, _) = enroll(&mut a, "rp", &[ALG_ES256]);
        let opt = |k: &str, b: bool| {
            (
                Value::int(5),
                Value::Map(vec![(Value::text(k), Value::Bool(b))]),
            )
        };
        // up:false answers at once with UP clear.
        match a.begin(&get_assertion_req("rp", &[&id], vec![opt("up", false)])) {
            Step::Done(r) => {
                let v = ok_value(&r);
                assert_eq!(v.get_int(2).unwrap().as_bytes().unwrap()[32], 0);
            }
            Step::NeedsTouch(_) => panic!("up:false must not wait"),
        }
        assert_eq!(
            run(
                &mut a,
                &get_assertion_req("rp", &[&id], vec![opt("uv", true)])
            ),
            vec![0x2c]
        );
        let mk_opt = |k: &str| {
            (
                Value::int(7),
                Value::Map(vec![(Value::text(k), Value::Bool(true))]),
            )
        };
        assert_eq!(
            run(
                &mut a,
                &make_cred_req("rp", &[ALG_ES256], vec![mk_opt("rk")])
            ),
            vec![0x2b]
        );
        assert_eq!(
            run(
                &mut a,
                &make_cred_req("rp", &[ALG_ES256], vec![mk_opt("uv")])
            ),
            vec![0x2c]
        );
        // An allowList longer than maxCredentialCountInList is refused before any touch.
        let many: Vec<&[u8]> = vec![id.as_slice(); MAX_CREDENTIAL_COUNT_IN_LIST + 1];
        assert_eq!(
            run(&mut a, &get_assertion_req("rp", &many, vec![])),
            vec![0x15]
        );
        // Not touched: timeout.
        match a.begin(&get_assertion_req("rp", &[&id], vec![])) {
            Step::NeedsTouch(p) => assert_eq!(a.complete(p, false), vec![0x2f]),
            Step::Done(_) => panic!(),
        }
    }

    #[test]
    fn strict_input() {
        let mut a = auth();
        assert_eq!(run(&mut a, &[0x42]), vec![0x01]);
        assert_eq!(run(&mut a, &[]), vec![0x03]);
        assert_eq!(run(&mut a, &[CMD_GET_ASSERTION; 1201]), vec![0x39]);
        // Non-canonical: 0x18 0x01 is a non-minimal 1.
        assert_eq!(
            run(&mut a, &[CMD_GET_ASSERTION, 0xa1, 0x18, 0x01, 0x01]),
            vec![0x12]
        );
        assert_eq!(run(&mut a, &[CMD_GET_ASSERTION, 0xff]), vec![0x12]);
        // Not a map.
        assert_eq!(run(&mut a, &[CMD_GET_ASSERTION, 0x80]), vec![0x11]);
        // Missing clientDataHash.
        let req = cbor::encode(&Value::Map(vec![(Value::int(1), Value::text("rp"))]));
        assert_eq!(
            run(&mut a, &[&[CMD_GET_ASSERTION][..], &req].concat()),
            vec![0x14]
        );
        // rpId of the wrong type.
        let req = cbor::encode(&Value::Map(vec![
            (Value::int(1), Value::int(5)),
            (Value::int(2), Value::bytes(&[0; 32])),
        ]));
        assert_eq!(
            run(&mut a, &[&[CMD_GET_ASSERTION][..], &req].concat()),
            vec![0x11]
        );
        // makeCredential without user.
        let req = cbor::encode(&Value::Map(vec![
            (Value::int(1), Value::bytes(&[0; 32])),
            (
                Value::int(2),
                Value::Map(vec![(Value::text("id"), Value::text("rp"))]),
            ),
        ]));
        assert_eq!(
            run(&mut a, &[&[CMD_MAKE_CREDENTIAL][..], &req].concat()),
            vec![0x14]
        );
        // pubKeyCredParams entry without alg.
        let req = make_cred_req("rp", &[], vec![]);
        let mut v = cbor::decode(&req[1..]).unwrap();
        if let Value::Map(m) = &mut v {
            m[3].1 = Value::Array(vec![Value::Map(vec![(
                Value::text("type"),
                Value::text(PUBLIC_KEY),
            )])]);
        }
        assert_eq!(
            run(
                &mut a,
                &[&[CMD_MAKE_CREDENTIAL][..], &cbor::encode(&v)].concat()
            ),
            vec![0x14]
        );
    }

    #[test]
    fn selection_needs_touch_and_debug_hides_secrets() {
        let mut a = auth();
        let (id, _, _) = enroll(&mut a, "rp", &[ALG_EDDSA]);
        match a.begin(&[CMD_SELECTION]) {
            Step::NeedsTouch(p) => assert_eq!(a.complete(p, true), vec![0x00]),
            Step::Done(_) => panic!(),
        }
        match a.begin(&get_assertion_req("rp", &[&id], vec![])) {
            Step::NeedsTouch(p) => {
                let s = format!("{p:?} {a:?}");
                assert!(!s.contains("seed") && !s.contains("master"), "{s}");
            }
            Step::Done(_) => panic!(),
        }
    }

    #[test]
    fn reset_forgets_credentials() {
        let mut a = auth();
        let (id, _, _) = enroll(&mut a, "rp", &[ALG_ES256]);
        assert_eq!(run(&mut a, &[CMD_RESET]), vec![0x00]);
        assert_eq!(
            run(&mut a, &get_assertion_req("rp", &[&id], vec![])),
            vec![0x2e]
        );
    }
}
