//! x5c certificate chains (DER, hostile): the input is a sequence of certificates, each
//! preceded by a 2-byte big-endian length. Parsed strictly (size and count bounded), walked up
//! to the bundled roots, and the leaf checked against WebAuthn §8.2.1 and an AAGUID.
#![no_main]
use auths_presence::presence::attestation::x509::{parse_chain, walk, ChainEnd};
use auths_presence::presence::attestation::Trust;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut certs: Vec<&[u8]> = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 && certs.len() < 8 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        let n = n.min(rest.len());
        certs.push(&rest[..n]);
        rest = &rest[n..];
    }
    let Ok(chain) = parse_chain(&certs) else {
        return;
    };
    let _ = chain[0].check_packed_leaf(&[0u8; 16]);
    let _ = chain[0].public_key();
    let _ = chain[0].subject();
    let trust = Trust::bundled();
    if let Ok(ChainEnd::Trusted(a)) = walk(&chain, trust.anchors()) {
        assert!(trust.anchors().iter().any(|r| r.cert.der() == a.cert.der()));
    }
});
