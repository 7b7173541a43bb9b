//! Client data read back from a receipt in the (user-writable) audit log.
#![no_main]
use auths_presence::presence::challenge::{client_data_hash, ClientData};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cd) = ClientData::parse(text) {
        let json = cd.to_json();
        assert_eq!(ClientData::parse(&json).expect("our own JSON parses"), cd);
        let _ = client_data_hash(&json);
        let _ = cd.approves(&cd.key, &[0u8; 32]);
    }
});
