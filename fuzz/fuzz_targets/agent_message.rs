//! An ssh-agent message body from a peer on the socket (draft-miller-ssh-agent §3): the
//! request decoder, and the SSHSIG namespace read from the data of a sign request.
#![no_main]
use auths_presence::agent::codec::{decode_request, sshsig_namespace};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_request(data);
    if let Some(ns) = sshsig_namespace(data) {
        // The namespace is a prefix of what follows the magic and its length.
        assert!(ns.len() + 10 <= data.len());
    }
});
