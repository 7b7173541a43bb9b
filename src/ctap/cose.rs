//! COSE public keys as WebAuthn uses them (RFC 9052 §7, RFC 9053 §2.1, §2.2, §7; WebAuthn
//! §5.8.5, §6.5.1.1): ES256 (kty EC2, alg -7, crv P-256) and EdDSA (kty OKP, alg -8, crv
//! Ed25519), strict parsing of the COSE_Key map, and signature verification. Every other
//! algorithm is a typed [`CoseKeyError::UnsupportedAlgorithm`].
//!
//! The COSE algorithm ids ([`ALG_ES256`], [`ALG_EDDSA`]) are defined here once, for the client
//! and the virtual key alike.

use thiserror::Error;

use super::cbor::{self, CborError, Value};

/// COSE algorithm identifier for ES256 (ECDSA P-256 with SHA-256).
pub const ALG_ES256: i64 = -7;
/// COSE algorithm identifier for EdDSA (here: Ed25519).
pub const ALG_EDDSA: i64 = -8;

/// A COSE_Key is a map with an integer kty (1) and, for WebAuthn, an integer alg (3).
pub(crate) fn check_cose_key_shape(v: &Value) -> Result<(), CoseKeyError> {
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
                // Strict DER ECDSA-Sig-Value (RFC 3279 §2.2.3) by the `der` crate: minimal
                // definite lengths, positive minimal INTEGERs of at most 32 bytes, nothing
                // trailing; then 0 < r, s < n. High S stays accepted (no normalisation).
                let sig = p256::ecdsa::Signature::from_der(signature)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctap::test_support::es256_key;
    use p256::ecdsa::signature::Signer;

    fn ed_key() -> (ed25519_dalek::SigningKey, CoseKey) {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let pk = CoseKey::EdDsa(sk.verifying_key());
        (sk, pk)
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
