//! Client data read back from a receipt in the (user-writable) audit log.
#![no_main]
use auths_presence::ctap::backend::client_data_hash;
use auths_presence::presence::challenge::ClientData;
use auths_presence::presence::request::ApprovalRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cd) = ClientData::parse(text) {
        let json = cd.to_json();
        assert_eq!(ClientData::parse(&json).expect("our own JSON parses"), cd);
        let _ = client_data_hash(json.as_bytes());
        // The binding check never panics, whatever the client data holds.
        let _ = cd.check_binds(&ApprovalRequest {
            key_fingerprint: cd.key.clone(),
            data_digest: [0u8; 32],
            namespace: cd.namespace.clone(),
            requester: cd.peer.clone(),
            kind: cd.payload,
            confirm_each: false,
            login: None,
            forwarded: false,
            key_comment: None,
            rule: None,
            unseal: None,
        });
    }
});
