//! Authenticator data and COSE public keys.
//!
//! - `authenticatorData` (WebAuthn §6.1, CTAP 2.1 §6.1.2 / §6.2.2): rpIdHash (32) || flags (1)
//!   || signCount (4, big-endian) || attested credential data (when AT) || extensions (when ED).
//! - Attested credential data (WebAuthn §6.5.1): aaguid (16) || credentialIdLength (2,
//!   big-endian) || credentialId || credentialPublicKey (one CBOR item, a COSE_Key).
//! - COSE keys (RFC 9053 §2.1, §2.2, §7; WebAuthn §5.8.5): ES256 (kty EC2, alg -7, crv P-256)
//!   and EdDSA (kty OKP, alg -8, crv Ed25519). Every other algorithm is a typed
//!   [`CoseKeyError::UnsupportedAlgorithm`].
//!
//! Parsing is strict: the AT and ED flags must match what is present, lengths are checked,
//! embedded CBOR must be CTAP2 canonical, and no byte may be left over. Nothing here panics on
//! any input.

use thiserror::Error;

use super::cbor::{self, CborError, Value};

/// Flag bits of the authenticatorData flags byte (WebAuthn §6.1).
pub mod flag {
    /// UP: user present (the key was touched).
    pub const UP: u8 = 0x01;
    /// UV: user verified (PIN or biometrics).
    pub const UV: u8 = 0x04;
    /// BE: backup eligible (a multi-device credential).
    pub const BE: u8 = 0x08;
    /// BS: backed up.
    pub const BS: u8 = 0x10;
    /// AT: attested credential data is included.
    pub const AT: u8 = 0x40;
    /// ED: an extensions map is included.
    pub const ED: u8 = 0x80;
}

/// Length of rpIdHash || flags || signCount.
pub const HEADER_LEN: usize = 37;

/// COSE algorithm identifier for ES256 (ECDSA P-256 with SHA-256).
pub const ALG_ES256: i64 = -7;
/// COSE algorithm identifier for EdDSA (here: Ed25519).
pub const ALG_EDDSA: i64 = -8;

/// The flags byte of authenticatorData.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// The raw byte.
    pub fn bits(self) -> u8 {
        self.0
    }
    /// UP: the user touched the key.
    pub fn user_present(self) -> bool {
        self.0 & flag::UP != 0
    }
    /// UV: the user was verified (PIN, fingerprint).
    pub fn user_verified(self) -> bool {
        self.0 & flag::UV != 0
    }
    /// BE: the credential may be backed up (synced passkey).
    pub fn backup_eligible(self) -> bool {
        self.0 & flag::BE != 0
    }
    /// BS: the credential is backed up.
    pub fn backed_up(self) -> bool {
        self.0 & flag::BS != 0
    }
    /// AT: attested credential data follows the header.
    pub fn attested_credential_data(self) -> bool {
        self.0 & flag::AT != 0
    }
    /// ED: an extensions map follows.
    pub fn extension_data(self) -> bool {
        self.0 & flag::ED != 0
    }
}

/// Why authenticatorData did not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthDataError {
    /// Fewer bytes than a field needs.
    #[error("authenticatorData is truncated in {field}: needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// Bytes left after everything the flags announce.
    #[error("{0} unexpected bytes at the end of authenticatorData (flags announce no more data)")]
    TrailingBytes(usize),
    /// The embedded COSE key or extensions are not canonical CBOR.
    #[error("authenticatorData {field} is not CTAP2 canonical CBOR: {source}")]
    Cbor {
        /// `credentialPublicKey` or `extensions`.
        field: &'static str,
        /// What the decoder found.
        source: CborError,
    },
    /// The credential public key is not a COSE_Key map with integer kty and alg.
    #[error("authenticatorData credential public key is not a COSE_Key: {0}")]
    InvalidCoseKey(CoseKeyError),
    /// The extensions item is not a map with text keys.
    #[error("authenticatorData extensions are not a map with text keys")]
    InvalidExtensions,
}

/// Attested credential data (WebAuthn §6.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedCredentialData {
    /// The authenticator model's AAGUID.
    pub aaguid: [u8; 16],
    /// The credential id (at most 1023 bytes by WebAuthn; we take what the 2-byte length says).
    pub credential_id: Vec<u8>,
    /// The credential public key as decoded (a COSE_Key map). Use [`Self::public_key`] for a
    /// verified ES256 / EdDSA key.
    pub public_key_cose: Value,
}

impl AttestedCredentialData {
    /// The credential public key as an ES256 / EdDSA key, or why it is not one.
    pub fn public_key(&self) -> Result<CoseKey, CoseKeyError> {
        CoseKey::from_cbor(&self.public_key_cose)
    }
}

/// Parsed authenticatorData (WebAuthn §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatorData {
    /// SHA-256 of the rp id the key scoped the credential to.
    pub rp_id_hash: [u8; 32],
    /// The flags byte.
    pub flags: Flags,
    /// The signature counter (0 when the key does not keep one).
    pub sign_count: u32,
    /// Present exactly when AT is set (MakeCredential responses).
    pub attested_credential_data: Option<AttestedCredentialData>,
    /// The extensions map, present exactly when ED is set.
    pub extensions: Option<Value>,
}

fn take<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    n: usize,
    field: &'static str,
) -> Result<&'a [u8], AuthDataError> {
    let available = buf.len().saturating_sub(*pos);
    if n > available {
        return Err(AuthDataError::Truncated {
            field,
            needed: n,
            available,
        });
    }
    let out = &buf[*pos..*pos + n];
    *pos += n;
    Ok(out)
}

fn take_array<const N: usize>(
    buf: &[u8],
    pos: &mut usize,
    field: &'static str,
) -> Result<[u8; N], AuthDataError> {
    let mut out = [0u8; N];
    out.copy_from_slice(take(buf, pos, N, field)?);
    Ok(out)
}

fn take_cbor(buf: &[u8], pos: &mut usize, field: &'static str) -> Result<Value, AuthDataError> {
    let rest = buf.get(*pos..).unwrap_or(&[]);
    if rest.is_empty() {
        return Err(AuthDataError::Truncated {
            field,
            needed: 1,
            available: 0,
        });
    }
    let (v, used) =
        cbor::decode_prefix(rest).map_err(|source| AuthDataError::Cbor { field, source })?;
    *pos += used;
    Ok(v)
}

impl AuthenticatorData {
    /// Parse authenticatorData strictly.
    pub fn parse(bytes: &[u8]) -> Result<AuthenticatorData, AuthDataError> {
        let mut pos = 0;
        let rp_id_hash = take_array::<32>(bytes, &mut pos, "rpIdHash")?;
        let [flags] = take_array::<1>(bytes, &mut pos, "flags")?;
        let flags = Flags(flags);
        let sign_count = u32::from_be_bytes(take_array::<4>(bytes, &mut pos, "signCount")?);

        let attested_credential_data = if flags.attested_credential_data() {
            let aaguid = take_array::<16>(bytes, &mut pos, "aaguid")?;
            let len = u16::from_be_bytes(take_array::<2>(bytes, &mut pos, "credentialIdLength")?);
            let credential_id = take(bytes, &mut pos, usize::from(len), "credentialId")?.to_vec();
            let public_key_cose = take_cbor(bytes, &mut pos, "credentialPublicKey")?;
            check_cose_key_shape(&public_key_cose).map_err(AuthDataError::InvalidCoseKey)?;
            Some(AttestedCredentialData {
                aaguid,
                credential_id,
                public_key_cose,
            })
        } else {
            None
        };

        let extensions = if flags.extension_data() {
            let ext = take_cbor(bytes, &mut pos, "extensions")?;
            let ok = ext
                .as_map()
                .is_some_and(|m| m.iter().all(|(k, _)| k.as_text().is_some()));
            if !ok {
                return Err(AuthDataError::InvalidExtensions);
            }
            Some(ext)
        } else {
            None
        };

        if pos != bytes.len() {
            return Err(AuthDataError::TrailingBytes(bytes.len() - pos));
        }
        Ok(AuthenticatorData {
            rp_id_hash,
            flags,
            sign_count,
            attested_credential_data,
            extensions,
        })
    }

    /// Serialise back to bytes. AT and ED in the output follow what is present, whatever
    /// `self.flags` says; for parsed data the result equals the input.
    pub fn to_bytes(&self) -> Vec<u8> {
        build(
            &self.rp_id_hash,
            self.flags.bits(),
            self.sign_count,
            self.attested_credential_data.as_ref(),
            self.extensions.as_ref(),
        )
    }
}

/// Serialise authenticatorData. The AT and ED bits of `flags` are set or cleared to match
/// whether `attested` and `extensions` are given, so the output always parses.
///
/// A credential id longer than 65535 bytes cannot be represented; it is cut to that length
/// (WebAuthn caps ids at 1023 bytes, so no real caller comes near).
pub fn build(
    rp_id_hash: &[u8; 32],
    flags: u8,
    sign_count: u32,
    attested: Option<&AttestedCredentialData>,
    extensions: Option<&Value>,
) -> Vec<u8> {
    let mut flags = flags & !(flag::AT | flag::ED);
    if attested.is_some() {
        flags |= flag::AT;
    }
    if extensions.is_some() {
        flags |= flag::ED;
    }
    let mut out = Vec::with_capacity(HEADER_LEN + 256);
    out.extend_from_slice(rp_id_hash);
    out.push(flags);
    out.extend_from_slice(&sign_count.to_be_bytes());
    if let Some(a) = attested {
        let id = &a.credential_id[..a.credential_id.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&a.aaguid);
        // The slice above is at most u16::MAX long.
        out.extend_from_slice(&(id.len() as u16).to_be_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(&cbor::encode(&a.public_key_cose));
    }
    if let Some(e) = extensions {
        out.extend_from_slice(&cbor::encode(e));
    }
    out
}

/// A COSE_Key is a map with an integer kty (1) and, for WebAuthn, an integer alg (3).
fn check_cose_key_shape(v: &Value) -> Result<(), CoseKeyError> {
    if v.as_map().is_none() {
        return Err(CoseKeyError::NotAMap);
    }
    for label in [label::KTY, label::ALG] {
        match v.get_int(label) {
            None => return Err(CoseKeyError::Missing(label)),
            Some(x) if x.as_i64().is_none() => return Err(CoseKeyError::WrongType(label)),
            Some(_) => {}
        }
    }
    Ok(())
}

/// COSE_Key labels (RFC 9052 §7.1, RFC 9053 §7.1, §7.2).
mod label {
    pub const KTY: i64 = 1;
    pub const ALG: i64 = 3;
    pub const CRV: i64 = -1;
    pub const X: i64 = -2;
    pub const Y: i64 = -3;
}

const KTY_OKP: i64 = 1;
const KTY_EC2: i64 = 2;
const CRV_P256: i64 = 1;
const CRV_ED25519: i64 = 6;

/// Why a COSE_Key is not an ES256 or EdDSA key we accept.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CoseKeyError {
    /// Not a CBOR map.
    #[error("COSE key is not a CBOR map")]
    NotAMap,
    /// A required label is absent.
    #[error("COSE key has no label {0}")]
    Missing(i64),
    /// A label has the wrong CBOR type.
    #[error("COSE key label {0} has the wrong type")]
    WrongType(i64),
    /// A map key that is not an integer, or a label ES256 / EdDSA keys do not have.
    #[error("COSE key has an unexpected label {0:?}")]
    UnexpectedLabel(Value),
    /// An algorithm outside ES256 (-7) and EdDSA (-8), e.g. RS256, ES384, ML-DSA.
    #[error("unsupported COSE algorithm {alg} ({}): only ES256 (-7) and EdDSA (-8) are supported", algorithm_name(*alg))]
    UnsupportedAlgorithm {
        /// The COSE algorithm id.
        alg: i64,
    },
    /// The key type does not go with the algorithm.
    #[error("COSE key type {kty} does not fit algorithm {alg}")]
    KeyTypeMismatch {
        /// The algorithm.
        alg: i64,
        /// The key type found.
        kty: i64,
    },
    /// The curve does not go with the algorithm.
    #[error("COSE curve {crv} does not fit algorithm {alg}")]
    CurveMismatch {
        /// The algorithm.
        alg: i64,
        /// The curve found.
        crv: i64,
    },
    /// A coordinate is not 32 bytes.
    #[error("COSE key coordinate (label {label}) is {len} bytes, expected 32")]
    BadCoordinateLength {
        /// The label (-2 x, -3 y).
        label: i64,
        /// Its length.
        len: usize,
    },
    /// The coordinates are not a valid point (not on P-256, not a valid Ed25519 point, or a
    /// small-order Ed25519 point).
    #[error("COSE key is not a valid public key point")]
    InvalidPoint,
}

/// A human name for a COSE algorithm id (for messages).
pub fn algorithm_name(alg: i64) -> &'static str {
    match alg {
        -7 => "ES256",
        -8 => "EdDSA",
        -19 => "Ed25519",
        -35 => "ES384",
        -36 => "ES512",
        -37 => "PS256",
        -47 => "ES256K",
        -48 => "ML-DSA-44",
        -49 => "ML-DSA-65",
        -50 => "ML-DSA-87",
        -53 => "Ed448",
        -257 => "RS256",
        -258 => "RS384",
        -259 => "RS512",
        -65535 => "RS1",
        _ => "unknown",
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// An ES256 signature that is not a strict DER ECDSA-Sig-Value with 0 < r, s < n.
    #[error("ES256 signature is not strict DER")]
    MalformedDer,
    /// An EdDSA signature that is not 64 bytes.
    #[error("EdDSA signature is {0} bytes, expected 64")]
    BadLength(usize),
    /// Well-formed, but not made by this key over this message.
    #[error("signature does not verify")]
    Invalid,
}

/// A credential public key we can verify with: ES256 or EdDSA (Ed25519). Construction checks
/// the point, so every value is a usable key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoseKey {
    /// ECDSA on P-256 with SHA-256 (COSE -7).
    Es256(p256::ecdsa::VerifyingKey),
    /// Ed25519 (COSE -8).
    EdDsa(ed25519_dalek::VerifyingKey),
}

fn coord(map: &Value, l: i64) -> Result<[u8; 32], CoseKeyError> {
    let b = map
        .get_int(l)
        .ok_or(CoseKeyError::Missing(l))?
        .as_bytes()
        .ok_or(CoseKeyError::WrongType(l))?;
    <[u8; 32]>::try_from(b).map_err(|_| CoseKeyError::BadCoordinateLength {
        label: l,
        len: b.len(),
    })
}

fn int_label(map: &Value, l: i64) -> Result<i64, CoseKeyError> {
    map.get_int(l)
        .ok_or(CoseKeyError::Missing(l))?
        .as_i64()
        .ok_or(CoseKeyError::WrongType(l))
}

impl CoseKey {
    /// An ES256 key from its affine coordinates; fails unless (x, y) is on P-256.
    pub fn es256_from_coordinates(x: &[u8; 32], y: &[u8; 32]) -> Result<CoseKey, CoseKeyError> {
        let point = p256::EncodedPoint::from_affine_coordinates(x.into(), y.into(), false);
        p256::ecdsa::VerifyingKey::from_encoded_point(&point)
            .map(CoseKey::Es256)
            .map_err(|_| CoseKeyError::InvalidPoint)
    }

    /// An EdDSA key from its 32-byte encoding; fails for invalid or small-order points.
    pub fn eddsa_from_bytes(x: &[u8; 32]) -> Result<CoseKey, CoseKeyError> {
        let k =
            ed25519_dalek::VerifyingKey::from_bytes(x).map_err(|_| CoseKeyError::InvalidPoint)?;
        if k.is_weak() {
            return Err(CoseKeyError::InvalidPoint);
        }
        Ok(CoseKey::EdDsa(k))
    }

    /// Parse a COSE_Key strictly: exactly the labels the algorithm defines (kty, alg, crv, x
    /// and, for ES256, y), integer labels, 32-byte coordinates, a valid point.
    pub fn from_cbor(v: &Value) -> Result<CoseKey, CoseKeyError> {
        let map = v.as_map().ok_or(CoseKeyError::NotAMap)?;
        let alg = int_label(v, label::ALG)?;
        let (want_kty, want_crv, labels): (i64, i64, &[i64]) = match alg {
            ALG_ES256 => (
                KTY_EC2,
                CRV_P256,
                &[label::KTY, label::ALG, label::CRV, label::X, label::Y],
            ),
            ALG_EDDSA => (
                KTY_OKP,
                CRV_ED25519,
                &[label::KTY, label::ALG, label::CRV, label::X],
            ),
            other => return Err(CoseKeyError::UnsupportedAlgorithm { alg: other }),
        };
        for (k, _) in map {
            match k.as_i64() {
                Some(l) if labels.contains(&l) => {}
                _ => return Err(CoseKeyError::UnexpectedLabel(k.clone())),
            }
        }
        let kty = int_label(v, label::KTY)?;
        if kty != want_kty {
            return Err(CoseKeyError::KeyTypeMismatch { alg, kty });
        }
        let crv = int_label(v, label::CRV)?;
        if crv != want_crv {
            return Err(CoseKeyError::CurveMismatch { alg, crv });
        }
        let x = coord(v, label::X)?;
        if alg == ALG_ES256 {
            let y = coord(v, label::Y)?;
            CoseKey::es256_from_coordinates(&x, &y)
        } else {
            CoseKey::eddsa_from_bytes(&x)
        }
    }

    /// Decode CBOR bytes (canonical, nothing trailing) and parse them as a COSE_Key.
    pub fn from_cbor_bytes(bytes: &[u8]) -> Result<CoseKey, CoseKeyFromBytesError> {
        let v = cbor::decode(bytes)?;
        Ok(CoseKey::from_cbor(&v)?)
    }

    /// The COSE_Key map (canonical when passed to [`cbor::encode`]).
    pub fn to_cbor(&self) -> Value {
        match self {
            CoseKey::Es256(k) => {
                let p = k.to_encoded_point(false);
                // An uncompressed encoding of a valid key always has both coordinates.
                let x = p.x().map(|x| x.to_vec()).unwrap_or_default();
                let y = p.y().map(|y| y.to_vec()).unwrap_or_default();
                Value::Map(vec![
                    (Value::int(label::KTY), Value::int(KTY_EC2)),
                    (Value::int(label::ALG), Value::int(ALG_ES256)),
                    (Value::int(label::CRV), Value::int(CRV_P256)),
                    (Value::int(label::X), Value::Bytes(x)),
                    (Value::int(label::Y), Value::Bytes(y)),
                ])
            }
            CoseKey::EdDsa(k) => Value::Map(vec![
                (Value::int(label::KTY), Value::int(KTY_OKP)),
                (Value::int(label::ALG), Value::int(ALG_EDDSA)),
                (Value::int(label::CRV), Value::int(CRV_ED25519)),
                (Value::int(label::X), Value::bytes(k.as_bytes())),
            ]),
        }
    }

    /// The canonical CBOR bytes of [`Self::to_cbor`].
    pub fn to_cbor_bytes(&self) -> Vec<u8> {
        cbor::encode(&self.to_cbor())
    }

    /// The COSE algorithm id: -7 or -8.
    pub fn algorithm(&self) -> i64 {
        match self {
            CoseKey::Es256(_) => ALG_ES256,
            CoseKey::EdDsa(_) => ALG_EDDSA,
        }
    }

    /// Verify `signature` over `message`. ES256: the DER signature as authenticators send it
    /// (strict DER; high-S is accepted, real keys produce it). EdDSA: 64 bytes, verified with
    /// `verify_strict` (canonical S, no small-order R or A).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        match self {
            CoseKey::Es256(k) => {
                use p256::ecdsa::signature::Verifier;
                let (r, s) = parse_der_ecdsa(signature).ok_or(SignatureError::MalformedDer)?;
                let sig = p256::ecdsa::Signature::from_scalars(r, s)
                    .map_err(|_| SignatureError::MalformedDer)?;
                k.verify(message, &sig).map_err(|_| SignatureError::Invalid)
            }
            CoseKey::EdDsa(k) => {
                let bytes = <[u8; 64]>::try_from(signature)
                    .map_err(|_| SignatureError::BadLength(signature.len()))?;
                let sig = ed25519_dalek::Signature::from_bytes(&bytes);
                k.verify_strict(message, &sig)
                    .map_err(|_| SignatureError::Invalid)
            }
        }
    }
}

/// Error of [`CoseKey::from_cbor_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CoseKeyFromBytesError {
    /// Not canonical CBOR.
    #[error("COSE key is not CTAP2 canonical CBOR: {0}")]
    Cbor(#[from] CborError),
    /// Canonical CBOR, but not a key we accept.
    #[error(transparent)]
    Key(#[from] CoseKeyError),
}

/// Strict DER ECDSA-Sig-Value (RFC 3279 §2.2.3) for P-256: `30 L 02 Lr r 02 Ls s`, short-form
/// lengths, positive minimal INTEGERs, nothing trailing. Returns r and s left-padded to 32
/// bytes; range checks (0 < r, s < n) are left to `Signature::from_scalars`.
fn parse_der_ecdsa(der: &[u8]) -> Option<([u8; 32], [u8; 32])> {
    let (&tag, rest) = der.split_first()?;
    let (&len, body) = rest.split_first()?;
    if tag != 0x30 || len >= 0x80 || usize::from(len) != body.len() {
        return None;
    }
    let (r, body) = der_uint(body)?;
    let (s, body) = der_uint(body)?;
    if !body.is_empty() {
        return None;
    }
    Some((r, s))
}

fn der_uint(input: &[u8]) -> Option<([u8; 32], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    if tag != 0x02 || len == 0 || len >= 0x80 || len > rest.len() {
        return None;
    }
    let (int, rest) = rest.split_at(len);
    // Negative numbers are not valid r or s.
    if int[0] & 0x80 != 0 {
        return None;
    }
    // Minimal: a leading zero only to keep a high bit from reading as a sign.
    let int = if int[0] == 0 {
        if int.len() == 1 || int[1] & 0x80 == 0 {
            return None;
        }
        &int[1..]
    } else {
        int
    };
    if int.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out[32 - int.len()..].copy_from_slice(int);
    Some((out, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;

    fn es256_key() -> (p256::ecdsa::SigningKey, CoseKey) {
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pk = CoseKey::Es256(*sk.verifying_key());
        (sk, pk)
    }

    fn ed_key() -> (ed25519_dalek::SigningKey, CoseKey) {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let pk = CoseKey::EdDsa(sk.verifying_key());
        (sk, pk)
    }

    fn sample(with_at: bool, with_ed: bool) -> AuthenticatorData {
        let (_, pk) = es256_key();
        AuthenticatorData {
            rp_id_hash: [0xab; 32],
            flags: Flags(
                flag::UP | if with_at { flag::AT } else { 0 } | if with_ed { flag::ED } else { 0 },
            ),
            sign_count: 0x0102_0304,
            attested_credential_data: with_at.then(|| AttestedCredentialData {
                aaguid: [0x11; 16],
                credential_id: vec![1, 2, 3, 4, 5],
                public_key_cose: pk.to_cbor(),
            }),
            extensions: with_ed
                .then(|| Value::Map(vec![(Value::text("credProtect"), Value::int(2))])),
        }
    }

    #[test]
    fn round_trips_all_shapes() {
        for (at, ed) in [(false, false), (true, false), (false, true), (true, true)] {
            let ad = sample(at, ed);
            let bytes = ad.to_bytes();
            let back = AuthenticatorData::parse(&bytes).unwrap();
            assert_eq!(back, ad);
            assert_eq!(back.to_bytes(), bytes);
            if at {
                let key = back.attested_credential_data.unwrap().public_key().unwrap();
                assert_eq!(key.algorithm(), ALG_ES256);
            }
        }
    }

    #[test]
    fn header_only() {
        let bytes = sample(false, false).to_bytes();
        assert_eq!(bytes.len(), HEADER_LEN);
        let ad = AuthenticatorData::parse(&bytes).unwrap();
        assert_eq!(ad.sign_count, 0x0102_0304);
        assert!(ad.flags.user_present());
        assert!(!ad.flags.user_verified());
    }

    #[test]
    fn every_truncation_fails_without_panic() {
        for (at, ed) in [(false, false), (true, false), (false, true), (true, true)] {
            let bytes = sample(at, ed).to_bytes();
            for n in 0..bytes.len() {
                assert!(
                    AuthenticatorData::parse(&bytes[..n]).is_err(),
                    "{at} {ed} {n}"
                );
            }
        }
    }

    #[test]
    fn flags_must_match_content() {
        // AT set, nothing follows.
        let mut b = sample(false, false).to_bytes();
        b[32] |= flag::AT;
        assert!(matches!(
            AuthenticatorData::parse(&b),
            Err(AuthDataError::Truncated {
                field: "aaguid",
                ..
            })
        ));
        // AT data present, AT clear.
        let mut b = sample(true, false).to_bytes();
        b[32] &= !flag::AT;
        assert!(matches!(
            AuthenticatorData::parse(&b),
            Err(AuthDataError::TrailingBytes(_))
        ));
        // ED set, nothing follows.
        let mut b = sample(false, false).to_bytes();
        b[32] |= flag::ED;
        assert!(matches!(
            AuthenticatorData::parse(&b),
            Err(AuthDataError::Truncated {
                field: "extensions",
                ..
            })
        ));
        // Extensions present, ED clear.
        let mut b = sample(false, true).to_bytes();
        b[32] &= !flag::ED;
        assert!(matches!(
            AuthenticatorData::parse(&b),
            Err(AuthDataError::TrailingBytes(_))
        ));
        // Trailing byte.
        let mut b = sample(true, true).to_bytes();
        b.push(0);
        assert_eq!(
            AuthenticatorData::parse(&b),
            Err(AuthDataError::TrailingBytes(1))
        );
    }

    #[test]
    fn credential_id_length_is_checked() {
        let mut b = sample(true, false).to_bytes();
        // credentialIdLength at 37 + 16: claim more than is there.
        b[53] = 0xff;
        b[54] = 0xff;
        assert!(matches!(
            AuthenticatorData::parse(&b),
            Err(AuthDataError::Truncated {
                field: "credentialId",
                ..
            })
        ));
    }

    #[test]
    fn extensions_must_be_a_text_keyed_map() {
        let mut ad = sample(false, true);
        ad.extensions = Some(Value::Array(vec![]));
        assert_eq!(
            AuthenticatorData::parse(&ad.to_bytes()),
            Err(AuthDataError::InvalidExtensions)
        );
        ad.extensions = Some(Value::Map(vec![(Value::int(1), Value::int(1))]));
        assert_eq!(
            AuthenticatorData::parse(&ad.to_bytes()),
            Err(AuthDataError::InvalidExtensions)
        );
    }

    #[test]
    fn non_canonical_cose_key_is_refused() {
        let b = sample(true, false).to_bytes();
        // The COSE map starts at 37 + 16 + 2 + 5 = 60: a5 01 02 03 26 ...; swap to 03 26 01 02.
        let mut bad = b.clone();
        bad[61..65].copy_from_slice(&[0x03, 0x26, 0x01, 0x02]);
        assert!(matches!(
            AuthenticatorData::parse(&bad),
            Err(AuthDataError::Cbor {
                field: "credentialPublicKey",
                source: CborError::UnsortedKeys(_)
            })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic generator: no dependency, no flakiness.
        let mut state = 0x1234_5678_9abc_def0u64;
        let base = sample(true, true).to_bytes();
        for _ in 0..5000 {
            let mut b = base.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state as usize) % b.len();
                b[i] = (state >> 32) as u8;
            }
            let _ = AuthenticatorData::parse(&b);
        }
    }

    #[test]
    fn cose_key_round_trips_and_verifies() {
        let msg = b"authData || clientDataHash";
        let (sk, pk) = es256_key();
        let sig: p256::ecdsa::Signature = sk.sign(msg);
        let der = sig.to_der();
        let parsed = CoseKey::from_cbor_bytes(&pk.to_cbor_bytes()).unwrap();
        assert_eq!(parsed, pk);
        assert_eq!(parsed.verify(msg, der.as_bytes()), Ok(()));
        assert_eq!(
            parsed.verify(b"other", der.as_bytes()),
            Err(SignatureError::Invalid)
        );

        let (sk, pk) = ed_key();
        use ed25519_dalek::Signer as _;
        let sig = sk.sign(msg).to_bytes();
        let parsed = CoseKey::from_cbor_bytes(&pk.to_cbor_bytes()).unwrap();
        assert_eq!(parsed, pk);
        assert_eq!(parsed.algorithm(), ALG_EDDSA);
        assert_eq!(parsed.verify(msg, &sig), Ok(()));
        assert_eq!(
            parsed.verify(msg, &sig[..63]),
            Err(SignatureError::BadLength(63))
        );
        let mut bad = sig;
        bad[0] ^= 1;
        assert_eq!(parsed.verify(msg, &bad), Err(SignatureError::Invalid));
    }

    #[test]
    fn es256_accepts_high_s() {
        let msg = b"m";
        let (sk, pk) = es256_key();
        let sig: p256::ecdsa::Signature = sk.sign(msg);
        let (r, s) = sig.split_scalars();
        let high = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        let (lo, hi) = if sig.normalize_s().is_none() {
            (sig, high)
        } else {
            (high, sig)
        };
        assert!(lo.normalize_s().is_none());
        assert!(hi.normalize_s().is_some());
        assert_eq!(pk.verify(msg, hi.to_der().as_bytes()), Ok(()));
        assert_eq!(pk.verify(msg, lo.to_der().as_bytes()), Ok(()));
    }

    #[test]
    fn es256_rejects_malformed_der() {
        let msg = b"m";
        let (sk, pk) = es256_key();
        let sig: p256::ecdsa::Signature = sk.sign(msg);
        let der = sig.to_der().as_bytes().to_vec();
        let mal = |d: Vec<u8>| assert_eq!(pk.verify(msg, &d), Err(SignatureError::MalformedDer));
        // Raw r||s is not DER.
        mal(sig.to_bytes().to_vec());
        // Trailing byte, outer length too long.
        let mut d = der.clone();
        d.push(0);
        mal(d);
        // Truncated.
        mal(der[..der.len() - 1].to_vec());
        mal(vec![]);
        // Wrong outer tag.
        let mut d = der.clone();
        d[0] = 0x31;
        mal(d);
        // Non-minimal r: an extra leading zero.
        let (r, s) = (sig.r().to_bytes(), sig.s().to_bytes());
        let int = |v: &[u8]| {
            let mut o = vec![0x02, v.len() as u8];
            o.extend_from_slice(v);
            o
        };
        let seq = |a: Vec<u8>, b: Vec<u8>| {
            let mut o = vec![0x30, (a.len() + b.len()) as u8];
            o.extend(a);
            o.extend(b);
            o
        };
        let mut padded = vec![0u8, 0u8];
        padded.extend_from_slice(&r);
        let mut s_pad = vec![0u8];
        s_pad.extend_from_slice(&s);
        mal(seq(int(&padded), int(&s_pad)));
        // Negative r (high bit without a pad).
        let mut neg = r.to_vec();
        neg[0] |= 0x80;
        mal(seq(int(&neg), int(&s_pad)));
        // Zero r.
        mal(seq(int(&[0]), int(&s_pad)));
        // Long-form length.
        let mut d = vec![0x30, 0x81, der[1]];
        d.extend_from_slice(&der[2..]);
        mal(d);
    }

    #[test]
    fn cose_key_strictness() {
        let (_, pk) = es256_key();
        let good = pk.to_cbor();
        let Value::Map(pairs) = good.clone() else {
            unreachable!()
        };
        type Pairs = Vec<(Value, Value)>;
        let with = |f: &dyn Fn(&mut Pairs)| {
            let mut p = pairs.clone();
            f(&mut p);
            CoseKey::from_cbor(&Value::Map(p))
        };
        assert_eq!(
            with(&|p| p[1].1 = Value::int(-257)),
            Err(CoseKeyError::UnsupportedAlgorithm { alg: -257 })
        );
        assert_eq!(
            with(&|p| p[1].1 = Value::int(-35)),
            Err(CoseKeyError::UnsupportedAlgorithm { alg: -35 })
        );
        assert_eq!(
            with(&|p| p[0].1 = Value::int(1)),
            Err(CoseKeyError::KeyTypeMismatch { alg: -7, kty: 1 })
        );
        assert_eq!(
            with(&|p| p[2].1 = Value::int(2)),
            Err(CoseKeyError::CurveMismatch { alg: -7, crv: 2 })
        );
        assert_eq!(
            with(&|p| p[3].1 = Value::bytes(&[1; 31])),
            Err(CoseKeyError::BadCoordinateLength { label: -2, len: 31 })
        );
        assert_eq!(
            with(&|p| p[4].1 = Value::bytes(&[1; 32])),
            Err(CoseKeyError::InvalidPoint)
        );
        assert_eq!(
            with(&|p| p[0].1 = Value::text("EC2")),
            Err(CoseKeyError::WrongType(1))
        );
        assert_eq!(
            with(&|p| {
                p.remove(4);
            }),
            Err(CoseKeyError::Missing(-3))
        );
        assert!(matches!(
            with(&|p| p.push((Value::int(-4), Value::bytes(&[0; 32])))),
            Err(CoseKeyError::UnexpectedLabel(_))
        ));
        assert_eq!(
            CoseKey::from_cbor(&Value::Array(vec![])),
            Err(CoseKeyError::NotAMap)
        );
        // Ed25519 small-order point (the identity) is refused.
        let mut ident = [0u8; 32];
        ident[0] = 1;
        assert_eq!(
            CoseKey::eddsa_from_bytes(&ident),
            Err(CoseKeyError::InvalidPoint)
        );
    }
}
