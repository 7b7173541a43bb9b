//! authenticatorData (WebAuthn §6.1) with attested credential data and extensions, and COSE
//! keys (RFC 9053 §7), as a device returns them. A parsed value written out parses again to
//! the same value. The input is also checked as a signature (strict DER for ES256, 64 bytes
//! for EdDSA) under fixed keys: the P-256 and Ed25519 base points.
#![no_main]
use auths_presence::ctap::authdata::AuthenticatorData;
use auths_presence::ctap::cose::CoseKey;
use libfuzzer_sys::fuzz_target;

fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let es256 = CoseKey::es256_from_coordinates(
        &hex32("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"),
        &hex32("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"),
    )
    .expect("the P-256 base point is a valid key");
    let _ = es256.verify(b"message", data);
    let mut ed = [0x66u8; 32];
    ed[0] = 0x58;
    let eddsa = CoseKey::eddsa_from_bytes(&ed).expect("the Ed25519 base point is a valid key");
    let _ = eddsa.verify(b"message", data);

    if let Ok(ad) = AuthenticatorData::parse(data) {
        let again = AuthenticatorData::parse(&ad.to_bytes()).expect("our own bytes parse");
        assert_eq!(again, ad);
        if let Some(acd) = &ad.attested_credential_data {
            if let Ok(key) = acd.public_key() {
                let _ = key.verify(data, data);
            }
        }
    }
    if let Ok(key) = CoseKey::from_cbor_bytes(data) {
        let again = CoseKey::from_cbor_bytes(&key.to_cbor_bytes()).expect("our own key parses");
        assert_eq!(again, key);
        let _ = key.verify(data, data);
    }
});
