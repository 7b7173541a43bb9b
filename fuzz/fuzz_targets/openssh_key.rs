//! Key files the CLI reads: an OpenSSH public key line (`auths git setup --key`) and an
//! OpenSSH private key file (`auths agent add KEYFILE`). Encrypted keys are not decrypted:
//! their KDF rounds come from the file, so that path is bounded by the user's own patience.
#![no_main]
use auths_presence::text::{key_without_comment, private_key_from_openssh};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(line) = key_without_comment(s) {
        assert_eq!(
            key_without_comment(&line).expect("our own line parses"),
            line
        );
    }
    if let Ok(key) = private_key_from_openssh(s) {
        let _ = key.public_key().fingerprint(ssh_key::HashAlg::Sha256);
        let _ = key.public_key().to_openssh();
    }
});
