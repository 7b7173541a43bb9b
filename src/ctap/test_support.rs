//! Helpers the ctap unit tests share.

use super::cose::CoseKey;

/// The bytes of the hex string `s`.
pub(crate) fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// A fixed ES256 test key and its COSE public key.
pub(crate) fn es256_key() -> (p256::ecdsa::SigningKey, CoseKey) {
    let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let pk = CoseKey::Es256(*sk.verifying_key());
    (sk, pk)
}
