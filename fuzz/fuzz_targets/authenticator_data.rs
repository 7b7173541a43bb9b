//! authenticatorData (WebAuthn §6.1) with attested credential data and extensions, and COSE
//! keys (RFC 9053 §7), as a device returns them. A parsed value written out parses again to
//! the same value.
#![no_main]
use auths_presence::ctap::authdata::{AuthenticatorData, CoseKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
