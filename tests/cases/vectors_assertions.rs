//! Assertion vectors from real keys, the W3C spec and other projects, plus derived tampered
//! variants. For every record: ES256 / EdDSA signatures verify or fail exactly as `expected`
//! says; every other algorithm is refused by COSE key parsing as unsupported (counted, so
//! nothing is skipped silently); and where the record is a real assertion with a known rp id
//! the whole of `verify_assertion` runs and fails with the check the tamper targets.

use std::collections::BTreeMap;

use auths_presence::ctap::authdata::AuthenticatorData;
use auths_presence::ctap::cbor::{self, Value};
use auths_presence::ctap::command::GetAssertionResponse;
use auths_presence::ctap::cose::{CoseKey, CoseKeyError, CoseKeyFromBytesError, SignatureError};
use auths_presence::presence::verify::{
    verify_assertion, AllowedCredential, Expected, VerifiedAssertion, VerifyError,
};
use sha2::{Digest, Sha256};

use crate::vector_records::{load, lookup, Record};

const FILES: &[&str] = &[
    "java_webauthn_server_real_examples.txt",
    "w3c_webauthn_l3_assertions.txt",
    "webauthn_rs_assertions.txt",
    "simplewebauthn_assertions.txt",
    "python_fido2_assertions.txt",
    "libfido2_regress_assertions.txt",
    "derived_tampered_invalid.txt",
];

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
struct Counts {
    records: usize,
    valid: usize,
    invalid: usize,
    unsupported: usize,
    full_verify: usize,
}

/// The message a record's signature covers.
fn message(r: &Record) -> Vec<u8> {
    if r.req("kind") == "raw_message" {
        return r.hex("message");
    }
    let mut m = r.hex("auth_data");
    let cdh = r.hex("client_data_hash");
    assert_eq!(cdh.len(), 32, "{}", r.name());
    m.extend_from_slice(&cdh);
    m
}

/// The raw key field agrees with the COSE key.
fn check_public_key_field(r: &Record, key: &CoseKey) {
    let Some(raw) = r.opt_hex("public_key") else {
        return;
    };
    let ours = match key {
        CoseKey::Es256(k) => k.to_encoded_point(false).as_bytes().to_vec(),
        CoseKey::EdDsa(k) => k.as_bytes().to_vec(),
        _ => unreachable!("only ES256 and EdDSA exist"),
    };
    assert_eq!(ours, raw, "{}: public_key", r.name());
}

/// authData parses and agrees with the record's flags / sign_count / rp_id_hash.
fn check_auth_data(r: &Record, key: Option<&CoseKey>) -> Option<AuthenticatorData> {
    let raw = r.opt_hex("auth_data")?;
    let name = r.name();
    let ad = AuthenticatorData::parse(&raw).unwrap_or_else(|e| panic!("{name}: authData: {e}"));
    assert_eq!(ad.flags.bits(), r.hex_byte("flags"), "{name}");
    assert_eq!(i64::from(ad.sign_count), r.int("sign_count"), "{name}");
    assert_eq!(ad.rp_id_hash.to_vec(), r.hex("rp_id_hash"), "{name}");
    assert_eq!(ad.to_bytes(), raw, "{name}: round trip");
    // A self-attestation's authData carries the credential key that signed it (except
    // libfido2's x5c attestation, signed by the certificate's key).
    if r.req("kind") == "self_attestation" && name != "libfido2-regress-cred-packed-x5c-attestation"
    {
        let acd = ad
            .attested_credential_data
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: self-attestation without AT"));
        if let Some(key) = key {
            assert_eq!(acd.public_key().as_ref(), Ok(key), "{name}: embedded key");
        }
    }
    Some(ad)
}

/// The rp id a record (or, for a derived one, its base) was made for, when known and
/// consistent with the untampered rpIdHash.
fn rp_id_for(r: &Record) -> Option<String> {
    let base = match r.get("derived_from") {
        Some(reference) => lookup(reference),
        None => r.clone(),
    };
    let rp_id = base.get("rp_id")?.to_owned();
    let hash: [u8; 32] = Sha256::digest(rp_id.as_bytes()).into();
    (hash.to_vec() == base.hex("rp_id_hash")).then_some(rp_id)
}

fn response(r: &Record, cred_id: Option<&[u8]>) -> GetAssertionResponse {
    let mut m = vec![
        (Value::int(2), Value::Bytes(r.hex("auth_data"))),
        (Value::int(3), Value::Bytes(r.hex("signature"))),
    ];
    if let Some(id) = cred_id {
        m.push((
            Value::int(1),
            Value::Map(vec![
                (Value::text("id"), Value::bytes(id)),
                (Value::text("type"), Value::text("public-key")),
            ]),
        ));
    }
    GetAssertionResponse::decode(&cbor::encode(&Value::Map(m)))
        .unwrap_or_else(|e| panic!("{}: {e}", r.name()))
}

/// The whole verification, as the gate runs it, on one real (or tampered) assertion.
fn full_verify(r: &Record, key: &CoseKey, rp_id: &str) {
    let name = r.name();
    let cred_id = r
        .opt_hex("cred_id")
        .unwrap_or_else(|| b"credential-id-unknown-to-source".to_vec());
    let cdh: [u8; 32] = r.hex("client_data_hash").try_into().expect("32 bytes");
    let ad = AuthenticatorData::parse(&r.hex("auth_data")).expect("checked");
    let count = ad.sign_count;
    let allowed = |stored: u32| {
        vec![
            AllowedCredential {
                id: b"another-enrolled-credential".to_vec(),
                public_key: *key,
                sign_count: 0,
            },
            AllowedCredential {
                id: cred_id.clone(),
                public_key: *key,
                sign_count: stored,
            },
        ]
    };
    let stored = count.saturating_sub(1);
    let allow = allowed(stored);
    let expected = Expected {
        rp_id,
        client_data_hash: cdh,
        allowed: &allow,
        require_uv: false,
    };
    let got = verify_assertion(&expected, &response(r, Some(&cred_id)));

    // What must happen, derived from the bytes; the tamper text must agree.
    let rp_ok = ad.rp_id_hash == <[u8; 32]>::from(Sha256::digest(rp_id.as_bytes()));
    let want: Result<(), fn(&VerifyError) -> bool> = if !rp_ok {
        Err(|e| *e == VerifyError::RpIdHashMismatch)
    } else if !ad.flags.user_present() {
        Err(|e| *e == VerifyError::UserNotPresent)
    } else if r.req("expected") == "valid" {
        Ok(())
    } else {
        Err(|e| matches!(e, VerifyError::Signature(_)))
    };
    if let Some(tamper) = r.get("tamper") {
        assert_eq!(tamper.contains("rpIdHash"), !rp_ok, "{name}: {tamper}");
        assert_eq!(
            tamper.contains("UP bit"),
            rp_ok && !ad.flags.user_present(),
            "{name}: {tamper}"
        );
    }
    match (want, got) {
        (Ok(()), Ok(v)) => check_verified(r, &v, &cred_id, key, count),
        (Err(pred), Err(e)) => assert!(pred(&e), "{name}: wrong rejection {e:?}"),
        (want, got) => panic!(
            "{name}: wanted {}, got {got:?}",
            if want.is_ok() {
                "success"
            } else {
                "a rejection"
            }
        ),
    }
    if r.req("expected") != "valid" || !rp_ok || !ad.flags.user_present() {
        return;
    }

    // The same valid assertion, replayed: the counter rule catches it (unless the key keeps
    // no counter at all).
    if count > 0 {
        let allow = allowed(count);
        let e = verify_assertion(
            &Expected {
                allowed: &allow,
                ..expected
            },
            &response(r, Some(&cred_id)),
        );
        assert_eq!(
            e,
            Err(VerifyError::CounterNotIncreased {
                stored: count,
                received: count
            }),
            "{name}"
        );
    }
    // UV demanded: only keys that set UV pass.
    let e = verify_assertion(
        &Expected {
            require_uv: true,
            ..expected
        },
        &response(r, Some(&cred_id)),
    );
    if ad.flags.user_verified() {
        assert!(e.is_ok(), "{name}: {e:?}");
    } else {
        assert_eq!(e, Err(VerifyError::UserNotVerified), "{name}");
    }
    // Credential omitted: fine with one allowed, ambiguous with two.
    let one = &allow[1..];
    let v = verify_assertion(
        &Expected {
            allowed: one,
            ..expected
        },
        &response(r, None),
    );
    assert!(v.is_ok(), "{name}: {v:?}");
    assert_eq!(
        verify_assertion(&expected, &response(r, None)),
        Err(VerifyError::CredentialMissing { allowed: 2 }),
        "{name}"
    );
    // A credential id we did not allow.
    assert_eq!(
        verify_assertion(&expected, &response(r, Some(b"not-enrolled"))),
        Err(VerifyError::UnknownCredential),
        "{name}"
    );
    // The right credential, but we expected another rp.
    assert_eq!(
        verify_assertion(
            &Expected {
                rp_id: "auths:presence",
                ..expected
            },
            &response(r, Some(&cred_id))
        ),
        Err(VerifyError::RpIdHashMismatch),
        "{name}"
    );
}

fn check_verified(r: &Record, v: &VerifiedAssertion, id: &[u8], key: &CoseKey, count: u32) {
    assert_eq!(v.credential_id(), id, "{}", r.name());
    assert_eq!(v.sign_count(), count);
    assert_eq!(v.algorithm(), key.algorithm());
    assert_eq!(v.algorithm(), r.int("cose_alg"));
    assert_eq!(v.flags().bits(), r.hex_byte("flags"));
}

fn run_file(file: &str) -> Counts {
    let mut c = Counts::default();
    for r in load(file) {
        let name = r.name();
        c.records += 1;
        let expected = r.req("expected");
        let cose_alg = r.int("cose_alg");
        let key = CoseKey::from_cbor_bytes(&r.hex("cose_key"));
        let key = match (cose_alg, key) {
            (-7 | -8, Ok(key)) => key,
            (-7 | -8, Err(e)) => panic!("{name}: COSE key does not parse: {e}"),
            (
                alg,
                Err(CoseKeyFromBytesError::Key(CoseKeyError::UnsupportedAlgorithm { alg: a })),
            ) => {
                assert_eq!(a, alg, "{name}");
                assert!(
                    expected == "unsupported" || expected == "valid",
                    "{name}: expected {expected}"
                );
                // Still, the authData is well formed.
                check_auth_data(&r, None);
                c.unsupported += 1;
                continue;
            }
            (alg, other) => panic!("{name}: alg {alg} gave {other:?}, not unsupported"),
        };
        assert_eq!(key.algorithm(), cose_alg, "{name}");
        assert_eq!(
            (key.algorithm() == -7).then_some("ES256"),
            (r.req("alg") == "ES256").then_some("ES256"),
            "{name}: alg field"
        );
        check_public_key_field(&r, &key);
        let ad = check_auth_data(&r, Some(&key));

        let result = key.verify(&message(&r), &r.hex("signature"));
        match expected {
            "valid" => {
                assert_eq!(result, Ok(()), "{name}");
                c.valid += 1;
            }
            "invalid" => {
                let e = result.expect_err(&name);
                // A truncated signature is refused before any curve arithmetic.
                if let Some(t) = r.get("tamper") {
                    if t.contains("truncated to 63") {
                        assert_eq!(e, SignatureError::BadLength(63), "{name}");
                    } else if t.contains("last byte removed") {
                        assert_eq!(e, SignatureError::MalformedDer, "{name}");
                    } else {
                        assert_eq!(e, SignatureError::Invalid, "{name}");
                    }
                }
                c.invalid += 1;
            }
            other => panic!("{name}: expected = {other} for a supported algorithm"),
        }

        if r.req("kind") == "assertion" && ad.is_some() {
            if let Some(rp_id) = rp_id_for(&r) {
                full_verify(&r, &key, &rp_id);
                c.full_verify += 1;
            }
        }
    }
    c
}

#[test]
fn assertion_vectors() {
    let mut by_file = BTreeMap::new();
    for f in FILES {
        by_file.insert(*f, run_file(f));
    }
    let counts = |records, valid, invalid, unsupported, full_verify| Counts {
        records,
        valid,
        invalid,
        unsupported,
        full_verify,
    };
    // Counts per file (README): every record is accounted for.
    let want = BTreeMap::from([
        // 18 ES256 + 2 EdDSA valid; ML-DSA-44 unsupported.
        (
            "java_webauthn_server_real_examples.txt",
            counts(21, 20, 0, 1, 20),
        ),
        // 11 ES256 + 1 EdDSA; ES384, ES512, RS256, Ed448 unsupported.
        ("w3c_webauthn_l3_assertions.txt", counts(16, 12, 0, 4, 11)),
        // 5 ES256 (2 self-attestations, signature only); Windows Hello RS256 unsupported.
        ("webauthn_rs_assertions.txt", counts(6, 5, 0, 1, 3)),
        ("simplewebauthn_assertions.txt", counts(5, 5, 0, 0, 3)),
        // ES256, EdDSA; the same Ed25519 key as COSE alg -19 is reported unsupported. The
        // ES256 one has an unknown rp id, so only its signature is checked.
        ("python_fido2_assertions.txt", counts(3, 2, 0, 1, 1)),
        // UP clear (valid signature), junk cdh (invalid), x5c attestation.
        ("libfido2_regress_assertions.txt", counts(3, 2, 1, 0, 2)),
        // Every tamper also goes through verify_assertion (rp id from the base record).
        ("derived_tampered_invalid.txt", counts(47, 0, 47, 0, 47)),
    ]);
    assert_eq!(by_file, want);
}
