//! A CTAP2 request to the virtual key's authenticator (`ctap/virtual_key/authenticator.rs`
//! and `client_pin.rs`), as the bytes of one CTAPHID_CBOR message: command byte, then CBOR.
//! The first input byte picks the key: without clientPIN, with clientPIN and no PIN, or with a
//! PIN set (through the real setPIN exchange). Each request that waits for a touch is touched.
//! Nothing may panic; every answer starts with a status byte.
#![no_main]
use auths_presence::ctap::client_pin::{ClientPinRequest, SubCommand};
use auths_presence::ctap::pin::{self, PinProtocol};
use auths_presence::ctap::virtual_key::{Authenticator, KeyState, PinConfig, Step};
use libfuzzer_sys::fuzz_target;

fn answer(a: &mut Authenticator, request: &[u8]) -> Vec<u8> {
    match a.begin(request) {
        Step::Done(r) => r,
        Step::NeedsTouch(p) => a.complete(p, true),
    }
}

fn with_pin_set() -> Authenticator {
    let mut a = Authenticator::new(KeyState::in_memory()).with_pin_support(PinConfig::default());
    let p = PinProtocol::Two;
    let r = answer(
        &mut a,
        &ClientPinRequest::new(p, SubCommand::GetKeyAgreement).to_payload(),
    );
    let theirs = auths_presence::ctap::client_pin::ClientPinResponse::decode(&r[1..])
        .ok()
        .and_then(|r| r.key_agreement)
        .expect("a key agreement key");
    let (ours, secret) = p.encapsulate(&theirs);
    let enc = p
        .encrypt(&secret, &pin::padded_pin(b"1234").expect("short")[..])
        .expect("aligned");
    let set = ClientPinRequest {
        key_agreement: Some(ours),
        pin_uv_auth_param: Some(p.authenticate(secret.as_bytes(), &enc)),
        new_pin_enc: Some(enc),
        ..ClientPinRequest::new(p, SubCommand::SetPin)
    };
    assert_eq!(answer(&mut a, &set.to_payload()), [0]);
    a
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, request)) = data.split_first() else {
        return;
    };
    let mut a = match which % 3 {
        0 => Authenticator::new(KeyState::in_memory()),
        1 => Authenticator::new(KeyState::in_memory()).with_pin_support(PinConfig::default()),
        _ => with_pin_set(),
    };
    let r = answer(&mut a, request);
    assert!(!r.is_empty());
});
