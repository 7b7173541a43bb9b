//! `*_authdata_parse.txt`: every authenticatorData parses or fails exactly as the record says.

use auths_presence::ctap::authdata::{AuthDataError, AuthenticatorData};
use auths_presence::ctap::cbor::{self, CborError};

use crate::vector_records::{load_all, load_where, Record};

const FILES: &[&str] = &[
    "libfido2_authdata_parse.txt",
    "simplewebauthn_authdata_parse.txt",
    "webauthn_rs_authdata_parse.txt",
];

/// Why each `parse_error` record must fail: every one is listed, so a new one is looked at.
fn expected_error(name: &str, e: &AuthDataError) -> bool {
    match name {
        "libfido2-cred-authdata-dupkeys" => matches!(
            e,
            AuthDataError::Cbor {
                field: "credentialPublicKey",
                source: CborError::DuplicateKey(_)
            }
        ),
        "libfido2-cred-authdata-unsorted-keys" => matches!(
            e,
            AuthDataError::Cbor {
                field: "credentialPublicKey",
                source: CborError::UnsortedKeys(_)
            }
        ),
        // a3 01 63 "OKP" ...: three pairs decode (text kty), then a fourth dangles.
        "wrs-test-solokey-v2-a-sealed-ed25519-invalid-cbor-authdata" => matches!(
            e,
            AuthDataError::InvalidCoseKey(_) | AuthDataError::TrailingBytes(_)
        ),
        other => panic!("parse_error record {other} has no expected error listed: {e:?}"),
    }
}

fn check_ok(r: &Record, ad: &AuthenticatorData, raw: &[u8]) -> usize {
    let name = r.name();
    let mut checked = 0;
    for (k, v) in r.expects() {
        let hex = || hex::decode(v).unwrap_or_else(|e| panic!("{name}: expect.{k}: {e}"));
        let acd = || {
            ad.attested_credential_data
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: no attested credential data"))
        };
        match k {
            "rp_id_hash" => assert_eq!(ad.rp_id_hash.to_vec(), hex(), "{name}"),
            "flags" => assert_eq!(vec![ad.flags.bits()], hex(), "{name}"),
            "sign_count" => assert_eq!(ad.sign_count.to_string(), v, "{name}"),
            "aaguid" => assert_eq!(acd().aaguid.to_vec(), hex(), "{name}"),
            "cred_id" => assert_eq!(acd().credential_id, hex(), "{name}"),
            "cose_key" => assert_eq!(cbor::encode(&acd().public_key_cose), hex(), "{name}"),
            "cose_alg" => {
                let key = acd()
                    .public_key()
                    .unwrap_or_else(|e| panic!("{name}: COSE key: {e}"));
                assert_eq!(key.algorithm().to_string(), v, "{name}");
            }
            "has_attested_credential_data" => assert_eq!(
                ad.attested_credential_data.is_some().to_string(),
                v,
                "{name}"
            ),
            "extensions_cbor" => {
                let ext = ad.extensions.as_ref().expect("extensions");
                assert_eq!(cbor::encode(ext), hex(), "{name}");
            }
            "extension_ids" => {
                let ext = ad.extensions.as_ref().expect("extensions");
                let ids: Vec<&str> = ext
                    .as_map()
                    .expect("map")
                    .iter()
                    .map(|(k, _)| k.as_text().expect("text key"))
                    .collect();
                assert_eq!(ids.join(","), v, "{name}");
            }
            other => panic!("{name}: unhandled expect.{other}"),
        }
        checked += 1;
    }
    // Flags agree with what was found.
    assert_eq!(
        ad.flags.attested_credential_data(),
        ad.attested_credential_data.is_some()
    );
    assert_eq!(ad.flags.extension_data(), ad.extensions.is_some());
    // And serialising gives the same bytes back.
    assert_eq!(ad.to_bytes(), raw, "{name}: round trip");
    checked
}

#[test]
fn authdata_parse_vectors() {
    let (mut ok, mut err, mut expects) = (0, 0, 0);
    for r in load_all(FILES) {
        let raw = r.hex("auth_data");
        let parsed = AuthenticatorData::parse(&raw);
        match (r.req("expected"), parsed) {
            ("parse_ok", Ok(ad)) => {
                expects += check_ok(&r, &ad, &raw);
                ok += 1;
            }
            ("parse_error", Err(e)) => {
                assert!(
                    expected_error(&r.name(), &e),
                    "{}: wrong error {e:?}",
                    r.name()
                );
                err += 1;
            }
            (want, got) => panic!("{} {}: expected {want}, got {got:?}", r.file, r.name()),
        }
    }
    // README: 9 records, 3 of them malformed COSE keys.
    assert_eq!((ok, err), (6, 3));
    assert!(expects >= 30, "only {expects} expect.* fields checked");
}

#[test]
fn truncations_of_vectors_fail_cleanly() {
    for r in load_where(FILES, "expected", "parse_ok") {
        let raw = r.hex("auth_data");
        for n in 0..raw.len() {
            assert!(
                AuthenticatorData::parse(&raw[..n]).is_err(),
                "{} truncated to {n} parsed",
                r.name()
            );
        }
    }
}
