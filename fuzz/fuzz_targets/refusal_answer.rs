//! The `refusal@auths-presence` answer as `auths git sign` decodes it from whatever answers at
//! SSH_AUTH_SOCK: bounded counts and reasons, and every reason it returns escaped.
#![no_main]
use auths_presence::agent::refusals::{RefusalAnswer, MAX_REASON_LEN, MAX_REFUSALS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(answer) = RefusalAnswer::from_bytes(data) {
        assert!(answer.refusals.len() <= MAX_REFUSALS);
        for r in &answer.refusals {
            assert!(!r.reason.chars().any(char::is_control), "{:?}", r.reason);
            // Escaping may lengthen it; the wire form was bounded.
            assert!(r.reason.len() <= MAX_REASON_LEN * 10);
        }
    }
});
