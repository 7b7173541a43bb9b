//! PIN/UV auth protocols One and Two (CTAP 2.1 §6.5.6 and §6.5.7): the key agreement, the
//! shared secret, and the encryption and MACs that clientPIN, makeCredential and getAssertion
//! use. Both sides are here, since the arithmetic is the same: the platform side
//! ([`PinProtocol::encapsulate`]) for our client, the authenticator side
//! ([`PinProtocol::decapsulate`]) for the virtual key. An independent implementation checks
//! the pair (python-fido2's `ClientPin` against `auths sim serve`).
//!
//! - Key agreement: ECDH on P-256; the key agreement key travels as a COSE_Key with
//!   `alg: -25` (ECDH-ES+HKDF-256), though that algorithm is not what is used (§6.5.6).
//! - One: shared secret = SHA-256(Z); AES-256-CBC with a zero IV; MAC = the first 16 bytes of
//!   HMAC-SHA-256.
//! - Two: shared secret = HKDF-SHA-256(Z, salt 32 zero bytes, "CTAP2 HMAC key") ‖
//!   HKDF-SHA-256(Z, salt 32 zero bytes, "CTAP2 AES key"); AES-256-CBC with a random IV sent
//!   before the ciphertext; MAC = the whole HMAC-SHA-256, keyed with the HMAC half of the
//!   shared secret or with the whole pinUvAuthToken.
//!
//! Secrets (Z, the shared secret, PINs, tokens) live in zeroizing buffers; MAC checks are
//! constant time.

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::Zeroizing;

use super::cbor::Value;

/// COSE key type EC2.
const KTY_EC2: i64 = 2;
/// COSE curve P-256.
const CRV_P256: i64 = 1;
/// ECDH-ES+HKDF-256, the `alg` a key agreement key carries (§6.5.6).
pub const ALG_ECDH_ES_HKDF_256: i64 = -25;
/// AES block size.
const BLOCK: usize = 16;

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// Why a PIN/UV auth protocol step failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PinProtocolError {
    /// The key agreement key is not a P-256 COSE_Key with the labels §6.5.6 names.
    #[error("the security key's key agreement key is malformed: {0}")]
    BadKeyAgreement(&'static str),
    /// Ciphertext (or plaintext to encrypt) that is not a whole number of AES blocks.
    #[error("{0} bytes is not a whole number of 16-byte blocks")]
    NotBlockAligned(usize),
    /// A protocol Two ciphertext shorter than its IV.
    #[error("the ciphertext is shorter than its IV")]
    NoIv,
    /// A key of the wrong length for this protocol.
    #[error("a {len}-byte key does not fit PIN/UV auth protocol {protocol}")]
    KeyLength {
        /// The protocol number.
        protocol: u64,
        /// The length given.
        len: usize,
    },
}

/// A PIN/UV auth protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinProtocol {
    /// Protocol One (CTAP 2.0 keys; §6.5.6).
    One,
    /// Protocol Two (CTAP 2.1; §6.5.7).
    Two,
}

/// A shared secret from the key agreement: 32 bytes (One) or 64 bytes (Two), zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

impl SharedSecret {
    /// The secret's bytes (the key [`PinProtocol::authenticate`] takes).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A P-256 key agreement public key (the authenticator's or ours), as COSE_Key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAgreementKey(p256::PublicKey);

impl KeyAgreementKey {
    /// The public half of `secret`.
    pub fn of(secret: &p256::SecretKey) -> KeyAgreementKey {
        KeyAgreementKey(secret.public_key())
    }

    /// Parse strictly: kty EC2, crv P-256, 32-byte x and y on the curve, `alg` absent or -25,
    /// no other labels.
    pub fn from_cbor(v: &Value) -> Result<KeyAgreementKey, PinProtocolError> {
        let bad = PinProtocolError::BadKeyAgreement;
        let map = v.as_map().ok_or(bad("not a map"))?;
        for (k, _) in map {
            if !matches!(k.as_i64(), Some(1 | 3 | -1 | -2 | -3)) {
                return Err(bad("unexpected label"));
            }
        }
        let int = |l: i64| v.get_int(l).and_then(Value::as_i64);
        if int(1) != Some(KTY_EC2) {
            return Err(bad("kty is not EC2"));
        }
        if int(-1) != Some(CRV_P256) {
            return Err(bad("curve is not P-256"));
        }
        if v.get_int(3).is_some() && int(3) != Some(ALG_ECDH_ES_HKDF_256) {
            return Err(bad("alg is not ECDH-ES+HKDF-256"));
        }
        let coord = |l: i64| -> Result<[u8; 32], PinProtocolError> {
            let b = v
                .get_int(l)
                .and_then(Value::as_bytes)
                .ok_or(bad("coordinate missing"))?;
            <[u8; 32]>::try_from(b).map_err(|_| bad("coordinate is not 32 bytes"))
        };
        let (x, y) = (coord(-2)?, coord(-3)?);
        let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
        Option::<p256::PublicKey>::from(p256::PublicKey::from_encoded_point(&point))
            .map(KeyAgreementKey)
            .ok_or(bad("point is not on P-256"))
    }

    /// The COSE_Key map: kty, alg -25, crv, x, y.
    pub fn to_cbor(&self) -> Value {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let p = self.0.to_encoded_point(false);
        // An uncompressed encoding of a valid point always has both coordinates.
        let x = p.x().map(|x| x.to_vec()).unwrap_or_default();
        let y = p.y().map(|y| y.to_vec()).unwrap_or_default();
        Value::Map(vec![
            (Value::int(1), Value::int(KTY_EC2)),
            (Value::int(3), Value::int(ALG_ECDH_ES_HKDF_256)),
            (Value::int(-1), Value::int(CRV_P256)),
            (Value::int(-2), Value::Bytes(x)),
            (Value::int(-3), Value::Bytes(y)),
        ])
    }
}

use p256::elliptic_curve::sec1::FromEncodedPoint;

/// Z: the x-coordinate of `secret` times `peer` (§6.5.6 ecdh).
fn ecdh(secret: &p256::SecretKey, peer: &KeyAgreementKey) -> Zeroizing<[u8; 32]> {
    let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.0.as_affine());
    let mut z = Zeroizing::new([0u8; 32]);
    z.copy_from_slice(shared.raw_secret_bytes());
    z
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn hkdf_sha256(z: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(&[0u8; 32]), z);
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA-256's limit of 255 * 32.
    hk.expand(info, &mut out[..])
        .expect("32 bytes fit HKDF-SHA-256");
    out
}

fn aes_cbc_encrypt(key: &[u8], iv: &[u8; BLOCK], plaintext: &[u8]) -> Vec<u8> {
    let mut enc = Aes256CbcEnc::new(key.into(), iv.into());
    let mut blocks: Zeroizing<Vec<aes::Block>> = Zeroizing::new(
        plaintext
            .chunks_exact(BLOCK)
            .map(|c| *aes::Block::from_slice(c))
            .collect(),
    );
    enc.encrypt_blocks_mut(&mut blocks);
    blocks.iter().flat_map(|b| b.iter().copied()).collect()
}

fn aes_cbc_decrypt(key: &[u8], iv: &[u8; BLOCK], ciphertext: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut dec = Aes256CbcDec::new(key.into(), iv.into());
    let mut blocks: Zeroizing<Vec<aes::Block>> = Zeroizing::new(
        ciphertext
            .chunks_exact(BLOCK)
            .map(|c| *aes::Block::from_slice(c))
            .collect(),
    );
    dec.decrypt_blocks_mut(&mut blocks);
    let mut out = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
    for b in blocks.iter() {
        out.extend_from_slice(b);
    }
    out
}

impl PinProtocol {
    /// The protocol's number on the wire (`pinUvAuthProtocol`).
    pub fn number(self) -> u64 {
        match self {
            PinProtocol::One => 1,
            PinProtocol::Two => 2,
        }
    }

    /// The protocol numbered `n`, if we implement it.
    pub fn from_number(n: u64) -> Option<PinProtocol> {
        match n {
            1 => Some(PinProtocol::One),
            2 => Some(PinProtocol::Two),
            _ => None,
        }
    }

    /// The protocol to use with a key that lists `offered` (getInfo `pinUvAuthProtocols`, in
    /// the key's order of preference): the first one we implement; One when the key lists
    /// none (CTAP 2.0 keys may omit the field).
    pub fn choose(offered: &[u64]) -> Option<PinProtocol> {
        if offered.is_empty() {
            return Some(PinProtocol::One);
        }
        offered.iter().find_map(|n| PinProtocol::from_number(*n))
    }

    /// The shared secret from Z (§6.5.6 / §6.5.7 kdf).
    fn kdf(self, z: &[u8; 32]) -> SharedSecret {
        match self {
            PinProtocol::One => SharedSecret(Zeroizing::new(Sha256::digest(z).to_vec())),
            PinProtocol::Two => {
                let mut s = Zeroizing::new(Vec::with_capacity(64));
                s.extend_from_slice(&hkdf_sha256(z, b"CTAP2 HMAC key")[..]);
                s.extend_from_slice(&hkdf_sha256(z, b"CTAP2 AES key")[..]);
                SharedSecret(s)
            }
        }
    }

    /// Platform side: a fresh key pair, and the secret it shares with `peer` (the
    /// authenticator's key agreement key). Our public key goes to the authenticator in the
    /// clientPIN request.
    pub fn encapsulate(self, peer: &KeyAgreementKey) -> (KeyAgreementKey, SharedSecret) {
        let ours = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let z = ecdh(&ours, peer);
        (KeyAgreementKey::of(&ours), self.kdf(&z))
    }

    /// Authenticator side: the secret `own` (our key agreement key) shares with `peer` (the
    /// platform's key from the request).
    pub fn decapsulate(self, own: &p256::SecretKey, peer: &KeyAgreementKey) -> SharedSecret {
        self.kdf(&ecdh(own, peer))
    }

    fn aes_key(self, secret: &SharedSecret) -> Result<&[u8], PinProtocolError> {
        let key = secret.as_bytes();
        match (self, key.len()) {
            (PinProtocol::One, 32) => Ok(key),
            (PinProtocol::Two, 64) => Ok(&key[32..]),
            (_, len) => Err(PinProtocolError::KeyLength {
                protocol: self.number(),
                len,
            }),
        }
    }

    /// Encrypt `plaintext` (a whole number of blocks) under `secret`.
    pub fn encrypt(
        self,
        secret: &SharedSecret,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, PinProtocolError> {
        if plaintext.len() % BLOCK != 0 {
            return Err(PinProtocolError::NotBlockAligned(plaintext.len()));
        }
        let key = self.aes_key(secret)?;
        Ok(match self {
            PinProtocol::One => aes_cbc_encrypt(key, &[0u8; BLOCK], plaintext),
            PinProtocol::Two => {
                let iv: [u8; BLOCK] = rand::random();
                let mut out = iv.to_vec();
                out.extend_from_slice(&aes_cbc_encrypt(key, &iv, plaintext));
                out
            }
        })
    }

    /// Decrypt `ciphertext` under `secret`.
    pub fn decrypt(
        self,
        secret: &SharedSecret,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, PinProtocolError> {
        let key = self.aes_key(secret)?;
        let (iv, body) = match self {
            PinProtocol::One => ([0u8; BLOCK], ciphertext),
            PinProtocol::Two => {
                if ciphertext.len() < BLOCK {
                    return Err(PinProtocolError::NoIv);
                }
                let (iv, body) = ciphertext.split_at(BLOCK);
                let mut v = [0u8; BLOCK];
                v.copy_from_slice(iv);
                (v, body)
            }
        };
        if body.len() % BLOCK != 0 {
            return Err(PinProtocolError::NotBlockAligned(body.len()));
        }
        Ok(aes_cbc_decrypt(key, &iv, body))
    }

    /// The HMAC key of `key`: a shared secret, or a pinUvAuthToken.
    fn mac_key(self, key: &[u8]) -> &[u8] {
        match self {
            // Two: the HMAC half of a 64-byte shared secret; a token is used whole.
            PinProtocol::Two if key.len() == 64 => &key[..32],
            _ => key,
        }
    }

    /// The MAC of `message` under `key` (a shared secret or a pinUvAuthToken): 16 bytes for
    /// One, 32 for Two.
    pub fn authenticate(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        let mac = hmac_sha256(self.mac_key(key), message);
        match self {
            PinProtocol::One => mac[..16].to_vec(),
            PinProtocol::Two => mac.to_vec(),
        }
    }

    /// Whether `signature` is the MAC of `message` under `key`, in constant time. A signature
    /// of the wrong length never verifies.
    pub fn verify(self, key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        let want = self.authenticate(key, message);
        want.len() == signature.len() && bool::from(want.ct_eq(signature))
    }
}

/// LEFT(SHA-256(pin), 16): what getPinToken and changePIN send, encrypted (§6.5.5.7).
pub fn pin_hash(pin: &[u8]) -> Zeroizing<[u8; 16]> {
    let digest = Zeroizing::new(<[u8; 32]>::from(Sha256::digest(pin)));
    let mut out = Zeroizing::new([0u8; 16]);
    out.copy_from_slice(&digest[..16]);
    out
}

/// A new PIN padded with zeros to 64 bytes (setPIN and changePIN, §6.5.5.5), or `None` when it
/// is longer than 63 bytes (the padded form must end in a zero).
pub fn padded_pin(pin: &[u8]) -> Option<Zeroizing<[u8; 64]>> {
    if pin.len() > 63 {
        return None;
    }
    let mut out = Zeroizing::new([0u8; 64]);
    out[..pin.len()].copy_from_slice(pin);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(p: PinProtocol) -> (SharedSecret, SharedSecret) {
        let authenticator = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let (platform_key, platform_secret) = p.encapsulate(&KeyAgreementKey::of(&authenticator));
        let authenticator_secret = p.decapsulate(&authenticator, &platform_key);
        (platform_secret, authenticator_secret)
    }

    #[test]
    fn both_sides_agree_and_round_trip() {
        for p in [PinProtocol::One, PinProtocol::Two] {
            let (a, b) = pair(p);
            assert_eq!(a, b);
            assert_eq!(
                a.as_bytes().len(),
                if p == PinProtocol::One { 32 } else { 64 }
            );
            let msg = [7u8; 32];
            let ct = p.encrypt(&a, &msg).unwrap();
            assert_eq!(ct.len(), if p == PinProtocol::One { 32 } else { 48 });
            assert_eq!(&p.decrypt(&b, &ct).unwrap()[..], &msg);
            let mac = p.authenticate(a.as_bytes(), b"hello");
            assert_eq!(mac.len(), if p == PinProtocol::One { 16 } else { 32 });
            assert!(p.verify(b.as_bytes(), b"hello", &mac));
            assert!(!p.verify(b.as_bytes(), b"hellO", &mac));
            assert!(!p.verify(b.as_bytes(), b"hello", &mac[..mac.len() - 1]));
        }
    }

    #[test]
    fn protocol_one_is_sha256_and_zero_iv_aes_cbc() {
        // Known-answer: with Z all zeros the secret is SHA-256 of 32 zero bytes.
        let s = PinProtocol::One.kdf(&[0u8; 32]);
        assert_eq!(
            hex::encode(s.as_bytes()),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        // Zero IV: the same plaintext encrypts the same way twice.
        let a = PinProtocol::One.encrypt(&s, &[1u8; 16]).unwrap();
        assert_eq!(a, PinProtocol::One.encrypt(&s, &[1u8; 16]).unwrap());
    }

    #[test]
    fn protocol_two_uses_a_fresh_iv_and_separate_keys() {
        let (a, _) = pair(PinProtocol::Two);
        let x = PinProtocol::Two.encrypt(&a, &[1u8; 16]).unwrap();
        let y = PinProtocol::Two.encrypt(&a, &[1u8; 16]).unwrap();
        assert_ne!(x, y, "random IV");
        assert_ne!(&a.as_bytes()[..32], &a.as_bytes()[32..]);
        // A 32-byte token is used whole as the HMAC key.
        let token = [9u8; 32];
        assert_eq!(
            PinProtocol::Two.authenticate(&token, b"m"),
            hmac_sha256(&token, b"m").to_vec()
        );
    }

    #[test]
    fn bad_lengths_are_refused() {
        let (a, _) = pair(PinProtocol::Two);
        assert_eq!(
            PinProtocol::Two.encrypt(&a, &[0u8; 15]),
            Err(PinProtocolError::NotBlockAligned(15))
        );
        assert_eq!(
            PinProtocol::Two.decrypt(&a, &[0u8; 15]),
            Err(PinProtocolError::NoIv)
        );
        assert_eq!(
            PinProtocol::Two.decrypt(&a, &[0u8; 17]),
            Err(PinProtocolError::NotBlockAligned(1))
        );
        assert!(matches!(
            PinProtocol::One.encrypt(&a, &[0u8; 16]),
            Err(PinProtocolError::KeyLength {
                protocol: 1,
                len: 64
            })
        ));
    }

    #[test]
    fn key_agreement_keys_parse_strictly() {
        let k = KeyAgreementKey::of(&p256::SecretKey::random(&mut rand::rngs::OsRng));
        let v = k.to_cbor();
        assert_eq!(KeyAgreementKey::from_cbor(&v).unwrap(), k);
        let Value::Map(pairs) = v else { unreachable!() };
        type Edit<'a> = &'a dyn Fn(&mut Vec<(Value, Value)>);
        let with = |f: Edit| {
            let mut p = pairs.clone();
            f(&mut p);
            KeyAgreementKey::from_cbor(&Value::Map(p))
        };
        // alg may be absent (some CTAP 2.0 keys), but not another algorithm.
        assert!(with(&|p| p.retain(|(k, _)| k.as_i64() != Some(3))).is_ok());
        assert!(with(&|p| p[1].1 = Value::int(-7)).is_err());
        assert!(with(&|p| p.push((Value::int(4), Value::int(0)))).is_err());
        assert!(with(&|p| p[4].1 = Value::bytes(&[0u8; 31])).is_err());
        assert!(
            with(&|p| p[4].1 = Value::bytes(&[0u8; 32])).is_err(),
            "off the curve"
        );
        assert!(with(&|p| p[2].1 = Value::int(2)).is_err());
    }

    #[test]
    fn pins_hash_and_pad() {
        assert_eq!(
            hex::encode(&pin_hash(b"1234")[..]),
            "03ac674216f3e15c761ee1a5e255f067"
        );
        let p = padded_pin(b"1234").unwrap();
        assert_eq!(&p[..4], b"1234");
        assert!(p[4..].iter().all(|b| *b == 0));
        assert!(padded_pin(&[b'1'; 63]).is_some());
        assert!(padded_pin(&[b'1'; 64]).is_none());
    }
}
