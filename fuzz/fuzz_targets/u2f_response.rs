//! A U2F (CTAP1) response APDU from a device (FIDO U2F Raw Message Formats §4.3, §5.4, §6.2):
//! data, then the status word. The first input byte picks the parser: 0 the status word
//! alone, 1 a U2F_REGISTER response (then its attestation signature is checked, and the
//! fido-u2f attestation built), 2 a U2F_AUTHENTICATE response (then the assertion built), 3
//! U2F_VERSION; the rest is the response as the device sent it. The check is that nothing
//! panics.
#![no_main]
use auths_presence::ctap::u2f::{
    check_version, get_assertion_response, make_credential_response, ok_data, split_status,
    Authentication, Registration,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, response)) = data.split_first() else {
        return;
    };
    let Ok((_, status)) = split_status(response) else {
        return;
    };
    let _ = status.to_string();
    let Ok(body) = ok_data(response) else {
        return;
    };
    match which % 4 {
        0 => {}
        1 => {
            if let Ok(r) = Registration::parse(body) {
                let _ = r.verify(&[1; 32], &[2; 32]);
                let _ = make_credential_response(&[1; 32], &r);
            }
        }
        2 => {
            if let Ok(a) = Authentication::parse(body) {
                let _ = get_assertion_response(&[1; 32], b"key handle", &a);
            }
        }
        _ => {
            let _ = check_version(body);
        }
    }
});
