//! A sealed key file from a user-writable `$AUTHS_HOME/keys/`: parsed strictly, then opened
//! with a fixed credential and secret, which must fail cleanly for anything but a file sealed
//! for them (the seed is one).
#![no_main]
use std::path::Path;

use auths_presence::presence::sealed::{SealedKey, Unsealer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = SealedKey::parse(data, Path::new("fuzz.sealed")) else {
        return;
    };
    let _ = key.unseal(&Unsealer {
        credential_id: b"fuzz-credential",
        output: &[7; 32],
    });
    let again = SealedKey::parse(&key.to_json(), Path::new("fuzz.sealed")).unwrap();
    assert_eq!(again, key);
});
