//! An attestation statement as a key returns it at enrollment: the input is a 32-byte
//! clientDataHash followed by a CBOR attestationObject {fmt, attStmt, authData}; the statement
//! is verified against the bundled roots (packed x5c / self, fido-u2f, none). Whatever the
//! bytes, verification ends with a verdict or a typed error, never `virtual` for a statement
//! judged alone, and `attested` only with the bundled root's fingerprint.
#![no_main]
use auths_presence::ctap::cbor;
use auths_presence::presence::attestation::{verify, Statement, Trust, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 32 {
        return;
    }
    let (cdh, rest) = data.split_at(32);
    let cdh: [u8; 32] = cdh.try_into().unwrap();
    let Ok(obj) = cbor::decode(rest) else {
        return;
    };
    let (Some(fmt), Some(att_stmt), Some(auth_data)) = (
        obj.get_text("fmt").and_then(|v| v.as_text()),
        obj.get_text("attStmt"),
        obj.get_text("authData").and_then(|v| v.as_bytes()),
    ) else {
        return;
    };
    let trust = Trust::bundled();
    if let Ok(a) = verify(
        &Statement {
            fmt,
            att_stmt,
            auth_data,
            client_data_hash: &cdh,
        },
        &trust,
    ) {
        assert_ne!(a.verdict, Verdict::Virtual);
        if a.verdict == Verdict::Attested {
            let fp = a.root_fingerprint.expect("attested names its root");
            assert!(trust.anchors().iter().any(|r| r.cert.fingerprint() == fp));
        }
    }
});
