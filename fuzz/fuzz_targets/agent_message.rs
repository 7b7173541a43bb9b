//! An ssh-agent message body from a peer on the socket (draft-miller-ssh-agent §3): the
//! request decoder, and what the agent reads from the data of a sign request (the SSHSIG
//! namespace, the payload kind).
#![no_main]
use auths_presence::agent::codec::{decode_request, payload_kind, sshsig_namespace};
use auths_presence::presence::request::PayloadKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_request(data);
    let ns = sshsig_namespace(data);
    if let Some(ns) = &ns {
        // The namespace is a prefix of what follows the magic and its length.
        assert!(ns.len() + 10 <= data.len());
    }
    // An SSHSIG blob is never taken for anything else, nor anything else for one.
    assert_eq!(payload_kind(data) == PayloadKind::Sshsig, ns.is_some());
});
