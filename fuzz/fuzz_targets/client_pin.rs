//! A clientPIN answer from a device (CTAP 2.1 §6.5.5): status byte, then the response map
//! (key agreement key, encrypted token, retries). A decoded key agreement key must survive
//! a round trip, and decrypting whatever token came must not panic under either protocol.
#![no_main]
use auths_presence::ctap::client_pin::ClientPinResponse;
use auths_presence::ctap::command::split_status;
use auths_presence::ctap::pin::{KeyAgreementKey, PinProtocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = split_status(data) else {
        return;
    };
    let Ok(r) = ClientPinResponse::decode(body) else {
        return;
    };
    if let Some(k) = &r.key_agreement {
        assert_eq!(KeyAgreementKey::from_cbor(&k.to_cbor()).as_ref(), Ok(k));
        for p in [PinProtocol::One, PinProtocol::Two] {
            let (_, secret) = p.encapsulate(k);
            if let Some(t) = &r.pin_uv_auth_token {
                let _ = p.decrypt(&secret, t);
            }
        }
    }
    assert_eq!(
        ClientPinResponse::decode(&r.encode()).as_ref().ok(),
        Some(&r)
    );
});
