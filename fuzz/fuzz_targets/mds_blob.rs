//! A FIDO MDS3 BLOB (the file `auths token enroll --mds FILE` reads): a JWT whose x5c must
//! chain to the bundled FIDO MDS root and whose signature must verify before its payload is
//! read. Hostile input ends in a typed error.
#![no_main]
use auths_presence::presence::attestation::mds::{fido_root, parse_and_verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let root = fido_root();
    if let Ok(m) = parse_and_verify(data, &root) {
        let _ = m.entry(&[0u8; 16]);
    }
});
