//! A CTAP2 response from a device (CTAP 2.1 §6): status byte, then the getInfo,
//! makeCredential or getAssertion map. The first input byte picks the decoder; the rest is
//! the response as the device sent it.
#![no_main]
use auths_presence::ctap::command::{
    split_status, GetAssertionResponse, GetInfoResponse, MakeCredentialResponse,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, response)) = data.split_first() else {
        return;
    };
    let Ok(body) = split_status(response) else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(info) = GetInfoResponse::decode(body) {
                let _ = info.option("uv");
                let _ = info.supports_algorithm(-7);
            }
        }
        1 => {
            if let Ok(mc) = MakeCredentialResponse::decode(body) {
                if let Some(acd) = &mc.auth_data.attested_credential_data {
                    let _ = acd.public_key();
                }
            }
        }
        _ => {
            if let Ok(ga) = GetAssertionResponse::decode(body) {
                let _ = ga.signed_message(&[0u8; 32]);
            }
        }
    }
});
