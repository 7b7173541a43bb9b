//! The strict canonical CBOR decoder (CTAP 2.1 §8 "Message Encoding"), fed bytes a device
//! sends. Whatever it accepts is canonical, so encoding it again gives the same bytes.
#![no_main]
use auths_presence::ctap::cbor::{decode, decode_prefix, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = decode(data) {
        assert_eq!(encode(&v), data, "accepted input is not canonical: {v:?}");
    }
    if let Ok((v, used)) = decode_prefix(data) {
        assert!(used <= data.len());
        assert_eq!(encode(&v), &data[..used]);
    }
});
