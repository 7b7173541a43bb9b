//! Attestation verified at enrollment: real YubiKey / Security Key attestations (packed x5c and
//! fido-u2f, `tests/vectors/java_webauthn_server_attestations.txt`) verify to the bundled Yubico
//! root; a changed certificate byte, a changed AAGUID and chains we do not trust do not; chains
//! and MDS BLOBs made here under a test root exercise each refusal; and through the binary, the
//! virtual key enrolls as `virtual` and `auths agent start --require-attested` refuses it.

use std::str::FromStr;
use std::time::Duration;

use auths_presence::ctap::authdata::{self, AttestedCredentialData};
use auths_presence::ctap::cbor::{self, Value};
use auths_presence::ctap::cose::CoseKey;
use auths_presence::presence::attestation::mds::{self, MdsError};
use auths_presence::presence::attestation::x509::{Anchor, Cert, X509Error};
use auths_presence::presence::attestation::{
    for_enrollment, verify, AttestationError, Statement, Trust, Verdict,
};
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{SigningKey, VerifyingKey};
use x509_cert::der::asn1::{BitString, OctetString, UtcTime};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

use super::vector_records;

struct Parsed {
    fmt: String,
    att_stmt: Value,
    auth_data: Vec<u8>,
}

fn parse_object(obj: &[u8]) -> Parsed {
    let v = cbor::decode(obj).expect("attestationObject is canonical CBOR");
    Parsed {
        fmt: v.get_text("fmt").unwrap().as_text().unwrap().to_owned(),
        att_stmt: v.get_text("attStmt").unwrap().clone(),
        auth_data: v.get_text("authData").unwrap().as_bytes().unwrap().to_vec(),
    }
}

fn records() -> Vec<vector_records::Record> {
    let path = vector_records::dir().join("java_webauthn_server_attestations.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let r = vector_records::parse("java_webauthn_server_attestations.txt", &text);
    assert!(r.len() >= 16, "{} records", r.len());
    r
}

fn record(name: &str) -> vector_records::Record {
    records()
        .into_iter()
        .find(|r| r.name() == name)
        .unwrap_or_else(|| panic!("no record {name}"))
}

fn judge(p: &Parsed, cdh: &[u8; 32], trust: &Trust) -> Result<Verdict, AttestationError> {
    verify(
        &Statement {
            fmt: &p.fmt,
            att_stmt: &p.att_stmt,
            auth_data: &p.auth_data,
            client_data_hash: cdh,
        },
        trust,
    )
    .map(|a| a.verdict)
}

fn set_x5c0(att_stmt: &Value, cert: Vec<u8>) -> Value {
    let Value::Map(m) = att_stmt else { panic!() };
    Value::Map(
        m.iter()
            .map(|(k, v)| {
                if k.as_text() == Some("x5c") {
                    (k.clone(), Value::Array(vec![Value::Bytes(cert.clone())]))
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect(),
    )
}

#[test]
fn real_yubikey_attestations_verify_to_the_bundled_yubico_root() {
    let trust = Trust::bundled();
    let mut attested = 0;
    for r in records() {
        let p = parse_object(&r.hex("attestation_object"));
        assert_eq!(p.fmt, r.req("fmt"), "{}", r.name());
        let cdh: [u8; 32] = r.hex("client_data_hash").try_into().unwrap();
        use sha2::Digest;
        assert_eq!(
            sha2::Sha256::digest(r.hex("client_data_json")).as_slice(),
            cdh
        );
        let a = verify(
            &Statement {
                fmt: &p.fmt,
                att_stmt: &p.att_stmt,
                auth_data: &p.auth_data,
                client_data_hash: &cdh,
            },
            &trust,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", r.name()));
        assert_eq!(
            a.verdict.as_str(),
            r.req("expected_verdict"),
            "{}",
            r.name()
        );
        assert_eq!(
            a.vendor.as_deref().unwrap_or(""),
            r.req("expected_vendor"),
            "{}",
            r.name()
        );
        assert_eq!(
            a.model.as_deref().unwrap_or(""),
            r.req("expected_model"),
            "{}",
            r.name()
        );
        assert_eq!(
            a.root_fingerprint.as_deref().unwrap_or(""),
            r.req("expected_root_sha256"),
            "{}",
            r.name()
        );
        assert_eq!(
            hex::encode(&p.auth_data[37..53]),
            r.req("aaguid"),
            "{}",
            r.name()
        );
        // The leaf the statement carries is the one the record names.
        let leaf = Cert::parse(&hex::decode(&a.x5c[0]).unwrap(), 0).unwrap();
        assert!(r.req("leaf_subject").contains("Yubico"), "{}", r.name());
        assert!(
            leaf.subject().contains("Yubico U2F EE Serial")
                || leaf.subject().contains("Yubico FIDO EE")
        );
        // The virtual key's verdict is never what a real key gets, and vice versa.
        let v = for_enrollment(
            &Statement {
                fmt: &p.fmt,
                att_stmt: &p.att_stmt,
                auth_data: &p.auth_data,
                client_data_hash: &cdh,
            },
            &trust,
            true,
        )
        .unwrap();
        assert_eq!(v.verdict, Verdict::Virtual);
        assert_eq!(v.vendor, None);
        if a.verdict == Verdict::Attested {
            attested += 1;
        }
    }
    assert!(attested >= 15, "{attested} attested");
}

#[test]
fn a_changed_certificate_byte_fails() {
    let r = record("java-YubiKey5-attestation");
    let p = parse_object(&r.hex("attestation_object"));
    let cdh: [u8; 32] = r.hex("client_data_hash").try_into().unwrap();
    let Value::Array(x5c) = p.att_stmt.get_text("x5c").unwrap() else {
        panic!()
    };
    let cert = x5c[0].as_bytes().unwrap().to_vec();
    // The serial number (inside the signed part) and the last byte of the root's signature.
    for at in [16, cert.len() - 1] {
        let mut c = cert.clone();
        c[at] ^= 0x01;
        let tampered = Parsed {
            fmt: p.fmt.clone(),
            att_stmt: set_x5c0(&p.att_stmt, c),
            auth_data: p.auth_data.clone(),
        };
        match judge(&tampered, &cdh, &Trust::bundled()) {
            Err(AttestationError::Certificate(X509Error::BadSignature { index: 0, .. })) => {}
            other => panic!("byte {at} changed: {other:?}"),
        }
    }
    // And the untouched one verifies.
    assert_eq!(judge(&p, &cdh, &Trust::bundled()), Ok(Verdict::Attested));
}

#[test]
fn a_changed_aaguid_in_auth_data_fails() {
    let r = record("java-YubiKey5Ci-attestation");
    let mut p = parse_object(&r.hex("attestation_object"));
    let cdh: [u8; 32] = r.hex("client_data_hash").try_into().unwrap();
    p.auth_data[40] ^= 0x01;
    // The statement signs authData, so the signature trips first; the AAGUID comparison
    // itself is tested with chains made here (below) where the signature is good.
    assert!(matches!(
        judge(&p, &cdh, &Trust::bundled()),
        Err(AttestationError::BadSignature(_))
    ));
}

#[test]
fn a_real_x5c_whose_root_is_not_bundled_is_untrusted() {
    let r = record("java-Mldsa44-attestation");
    let p = parse_object(&r.hex("attestation_object"));
    let cdh: [u8; 32] = r.hex("client_data_hash").try_into().unwrap();
    assert_eq!(
        judge(&p, &cdh, &Trust::bundled()),
        Ok(Verdict::UntrustedChain)
    );
    // Nor does any Yubico key chain without the Yubico root.
    let y = record("java-YubiKey5Nano-attestation");
    let p = parse_object(&y.hex("attestation_object"));
    let cdh: [u8; 32] = y.hex("client_data_hash").try_into().unwrap();
    assert_eq!(
        judge(&p, &cdh, &Trust::with_anchors(Vec::new())),
        Ok(Verdict::UntrustedChain)
    );
}

// ---------------------------------------------------------------------------------------------
// Chains made here.

const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

fn ext(oid: &str, critical: bool, value: Vec<u8>) -> Extension {
    Extension {
        extn_id: ObjectIdentifier::new_unwrap(oid),
        critical,
        extn_value: OctetString::new(value).unwrap(),
    }
}

fn basic(ca: bool) -> Extension {
    ext(
        "2.5.29.19",
        true,
        BasicConstraints {
            ca,
            path_len_constraint: None,
        }
        .to_der()
        .unwrap(),
    )
}

fn aaguid_ext(aaguid: &[u8; 16], critical: bool) -> Extension {
    ext(
        "1.3.6.1.4.1.45724.1.1.4",
        critical,
        OctetString::new(aaguid.to_vec()).unwrap().to_der().unwrap(),
    )
}

/// A certificate for `subject_key`, issued (signed) by `issuer_key` under `issuer`.
fn make_cert(
    subject: &str,
    issuer: &str,
    subject_key: &VerifyingKey,
    issuer_key: &SigningKey,
    extensions: Vec<Extension>,
) -> Vec<u8> {
    make_cert_v(subject, issuer, subject_key, issuer_key, Some(extensions))
}

/// [`make_cert`]; `None` extensions makes an X.509 version 1 certificate.
fn make_cert_v(
    subject: &str,
    issuer: &str,
    subject_key: &VerifyingKey,
    issuer_key: &SigningKey,
    extensions: Option<Vec<Extension>>,
) -> Vec<u8> {
    use p256::pkcs8::EncodePublicKey;
    let alg = AlgorithmIdentifierOwned {
        oid: ObjectIdentifier::new_unwrap(OID_ECDSA_SHA256),
        parameters: None,
    };
    let spki = SubjectPublicKeyInfoOwned::from_der(
        p256::PublicKey::from(subject_key)
            .to_public_key_der()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let tbs = TbsCertificate {
        version: if extensions.is_some() {
            Version::V3
        } else {
            Version::V1
        },
        serial_number: SerialNumber::new(&[0x01, 0x23]).unwrap(),
        signature: alg.clone(),
        issuer: name(issuer),
        validity: Validity {
            not_before: Time::UtcTime(
                UtcTime::from_unix_duration(Duration::from_secs(1_600_000_000)).unwrap(),
            ),
            not_after: Time::UtcTime(
                UtcTime::from_unix_duration(Duration::from_secs(2_400_000_000)).unwrap(),
            ),
        },
        subject: name(subject),
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions,
    };
    let sig: p256::ecdsa::Signature = issuer_key.sign(&tbs.to_der().unwrap());
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: alg,
        signature: BitString::from_bytes(sig.to_der().as_bytes()).unwrap(),
    }
    .to_der()
    .unwrap()
}

const LEAF_SUBJECT: &str = "CN=Test EE,OU=Authenticator Attestation,O=Test Vendor,C=SE";
const ROOT_SUBJECT: &str = "CN=Test Attestation Root";
const AAGUID: [u8; 16] = *b"auths-test-model";

struct Made {
    root_der: Vec<u8>,
    leaf_key: SigningKey,
    root_key: SigningKey,
}

fn made() -> Made {
    let root_key = SigningKey::random(&mut rand::rngs::OsRng);
    let root_der = make_cert(
        ROOT_SUBJECT,
        ROOT_SUBJECT,
        root_key.verifying_key(),
        &root_key,
        vec![basic(true)],
    );
    Made {
        root_der,
        leaf_key: SigningKey::random(&mut rand::rngs::OsRng),
        root_key,
    }
}

fn anchor(der: &[u8]) -> Anchor {
    Anchor {
        cert: Cert::parse(der, 0).unwrap(),
        vendor: "Test Vendor".into(),
    }
}

/// A packed x5c statement over fresh authData whose AAGUID is `aaguid`, signed by `leaf_key`.
fn packed(leaf_key: &SigningKey, x5c: Vec<Vec<u8>>, aaguid: [u8; 16]) -> (Parsed, [u8; 32]) {
    let cred = SigningKey::random(&mut rand::rngs::OsRng);
    let point = cred.verifying_key().to_encoded_point(false);
    let cose = CoseKey::es256_from_coordinates(
        point.x().unwrap().as_slice().try_into().unwrap(),
        point.y().unwrap().as_slice().try_into().unwrap(),
    )
    .unwrap();
    let acd = AttestedCredentialData {
        aaguid,
        credential_id: vec![9; 32],
        public_key_cose: cose.to_cbor(),
    };
    let auth_data = authdata::build(&[7; 32], 0x01, 1, Some(&acd), None);
    let cdh = [3u8; 32];
    let mut signed = auth_data.clone();
    signed.extend_from_slice(&cdh);
    let sig: p256::ecdsa::Signature = leaf_key.sign(&signed);
    let att_stmt = Value::Map(vec![
        (Value::text("alg"), Value::int(-7)),
        (
            Value::text("sig"),
            Value::Bytes(sig.to_der().as_bytes().to_vec()),
        ),
        (
            Value::text("x5c"),
            Value::Array(x5c.into_iter().map(Value::Bytes).collect()),
        ),
    ]);
    (
        Parsed {
            fmt: "packed".into(),
            att_stmt,
            auth_data,
        },
        cdh,
    )
}

fn leaf(m: &Made, subject: &str, exts: Vec<Extension>) -> Vec<u8> {
    make_cert(
        subject,
        ROOT_SUBJECT,
        m.leaf_key.verifying_key(),
        &m.root_key,
        exts,
    )
}

#[test]
fn a_chain_to_a_given_root_is_attested_and_without_it_untrusted() {
    let m = made();
    let l = leaf(
        &m,
        LEAF_SUBJECT,
        vec![basic(false), aaguid_ext(&AAGUID, false)],
    );
    let (p, cdh) = packed(&m.leaf_key, vec![l.clone()], AAGUID);
    let trust = Trust::with_anchors(vec![anchor(&m.root_der)]);
    let a = verify(
        &Statement {
            fmt: &p.fmt,
            att_stmt: &p.att_stmt,
            auth_data: &p.auth_data,
            client_data_hash: &cdh,
        },
        &trust,
    )
    .unwrap();
    assert_eq!(a.verdict, Verdict::Attested);
    assert_eq!(a.vendor.as_deref(), Some("Test Vendor"));
    // The chain may carry the root itself.
    let (p2, cdh2) = packed(&m.leaf_key, vec![l, m.root_der.clone()], AAGUID);
    assert_eq!(judge(&p2, &cdh2, &trust), Ok(Verdict::Attested));
    // Against the bundled roots only: not attested.
    assert_eq!(
        judge(&p, &cdh, &Trust::bundled()),
        Ok(Verdict::UntrustedChain)
    );
}

#[test]
fn a_self_signed_attestation_certificate_is_not_attested() {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let selfsigned = make_cert(
        LEAF_SUBJECT,
        LEAF_SUBJECT,
        key.verifying_key(),
        &key,
        vec![basic(false)],
    );
    let (p, cdh) = packed(&key, vec![selfsigned.clone()], AAGUID);
    assert_eq!(
        judge(&p, &cdh, &Trust::bundled()),
        Ok(Verdict::UntrustedChain)
    );
    // Even offered as an anchor, a leaf that is not a CA issues nothing, itself included.
    let trust = Trust::with_anchors(vec![anchor(&selfsigned)]);
    assert!(matches!(
        judge(&p, &cdh, &trust),
        Err(AttestationError::Certificate(X509Error::NotCa { .. }))
    ));
}

#[test]
fn the_aaguid_extension_must_match_and_not_be_critical() {
    let m = made();
    let trust = Trust::with_anchors(vec![anchor(&m.root_der)]);
    let l = leaf(
        &m,
        LEAF_SUBJECT,
        vec![basic(false), aaguid_ext(&AAGUID, false)],
    );
    let mut other = AAGUID;
    other[0] ^= 0xff;
    // A good signature over authData naming another model than the certificate.
    let (p, cdh) = packed(&m.leaf_key, vec![l], other);
    assert!(matches!(
        judge(&p, &cdh, &trust),
        Err(AttestationError::Certificate(
            X509Error::AaguidMismatch { .. }
        ))
    ));
    let l = leaf(
        &m,
        LEAF_SUBJECT,
        vec![basic(false), aaguid_ext(&AAGUID, true)],
    );
    let (p, cdh) = packed(&m.leaf_key, vec![l], AAGUID);
    assert!(matches!(
        judge(&p, &cdh, &trust),
        Err(AttestationError::Certificate(X509Error::LeafRequirement(_)))
    ));
}

#[test]
fn leaf_requirements_of_webauthn_8_2_1() {
    let m = made();
    let trust = Trust::with_anchors(vec![anchor(&m.root_der)]);
    for (subject, exts) in [
        (
            "CN=Test EE,OU=Something Else,O=Test Vendor,C=SE",
            vec![basic(false)],
        ),
        (
            "CN=Test EE,OU=Authenticator Attestation,C=SE",
            vec![basic(false)],
        ),
        (
            "CN=Test EE,OU=Authenticator Attestation,O=Test Vendor,C=Sweden",
            vec![basic(false)],
        ),
        (LEAF_SUBJECT, vec![basic(true)]),
    ] {
        let l = leaf(&m, subject, exts);
        let (p, cdh) = packed(&m.leaf_key, vec![l], AAGUID);
        assert!(
            matches!(
                judge(&p, &cdh, &trust),
                Err(AttestationError::Certificate(X509Error::LeafRequirement(_)))
            ),
            "{subject}"
        );
    }
}

#[test]
fn an_issuer_that_is_not_a_ca_breaks_the_chain() {
    let m = made();
    let mid_key = SigningKey::random(&mut rand::rngs::OsRng);
    let mid = make_cert(
        "CN=Test Intermediate",
        ROOT_SUBJECT,
        mid_key.verifying_key(),
        &m.root_key,
        vec![basic(false)],
    );
    let l = make_cert(
        LEAF_SUBJECT,
        "CN=Test Intermediate",
        m.leaf_key.verifying_key(),
        &mid_key,
        vec![basic(false)],
    );
    let (p, cdh) = packed(&m.leaf_key, vec![l.clone(), mid], AAGUID);
    let trust = Trust::with_anchors(vec![anchor(&m.root_der)]);
    assert!(matches!(
        judge(&p, &cdh, &trust),
        Err(AttestationError::Certificate(X509Error::NotCa { index: 1 }))
    ));
    // The same with a CA intermediate is attested.
    let mid = make_cert(
        "CN=Test Intermediate",
        ROOT_SUBJECT,
        mid_key.verifying_key(),
        &m.root_key,
        vec![basic(true)],
    );
    let (p, cdh) = packed(&m.leaf_key, vec![l, mid], AAGUID);
    assert_eq!(judge(&p, &cdh, &trust), Ok(Verdict::Attested));
}

// ---------------------------------------------------------------------------------------------
// MDS BLOBs signed here under a test root (the real FIDO root is bundled for the CLI).

fn b64u(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn blob(m: &Made, signer: &SigningKey, status: &str, with_root: bool) -> Vec<u8> {
    let signer_cert = make_cert(
        "CN=mds.test",
        ROOT_SUBJECT,
        signer.verifying_key(),
        &m.root_key,
        vec![basic(false)],
    );
    let std = base64::engine::general_purpose::STANDARD;
    let header =
        serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [std.encode(&signer_cert)]});
    let roots: Vec<String> = if with_root {
        vec![std.encode(&m.root_der)]
    } else {
        vec![]
    };
    let payload = serde_json::json!({
        "legalHeader": "test", "no": 7, "nextUpdate": "2030-01-01",
        "entries": [{
            "aaguid": "61757468-732d-7465-7374-2d6d6f64656c",
            "metadataStatement": {"description": "Test Model \u{1b}[31m", "attestationRootCertificates": roots},
            "statusReports": [
                {"status": "FIDO_CERTIFIED", "effectiveDate": "2020-01-01"},
                {"status": status, "effectiveDate": "2021-01-01"}
            ]
        }, {"aaid": "FFFF#0001", "statusReports": []}]
    });
    let signing_input = format!(
        "{}.{}",
        b64u(header.to_string().as_bytes()),
        b64u(payload.to_string().as_bytes())
    );
    let sig: p256::ecdsa::Signature = signer.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64u(&sig.to_bytes())).into_bytes()
}

#[test]
fn mds_blob_names_the_model_adds_its_roots_and_refuses_revoked_models() {
    let m = made();
    let mds_root = anchor(&m.root_der);
    let signer = SigningKey::random(&mut rand::rngs::OsRng);
    let l = leaf(
        &m,
        LEAF_SUBJECT,
        vec![basic(false), aaguid_ext(&AAGUID, false)],
    );
    let (p, cdh) = packed(&m.leaf_key, vec![l], AAGUID);
    let stmt = Statement {
        fmt: &p.fmt,
        att_stmt: &p.att_stmt,
        auth_data: &p.auth_data,
        client_data_hash: &cdh,
    };

    // A certified model whose roots the BLOB lists: attested, with its model name.
    let md =
        mds::parse_and_verify(&blob(&m, &signer, "FIDO_CERTIFIED_L1", true), &mds_root).unwrap();
    assert_eq!(md.no, 7);
    assert_eq!(md.len(), 1, "the AAID entry is not looked up by AAGUID");
    let a = verify(&stmt, &Trust::bundled().with_mds(md)).unwrap();
    assert_eq!(a.verdict, Verdict::Attested);
    assert_eq!(a.vendor.as_deref(), Some("Test Vendor"));
    assert_eq!(
        a.model.as_deref(),
        Some("Test Model \u{1b}[31m"),
        "kept; escaped when shown"
    );
    assert_eq!(a.mds_status.as_deref(), Some("FIDO_CERTIFIED_L1"));

    // Each refusing status refuses the enrollment.
    for status in mds::REFUSING_STATUSES {
        let md = mds::parse_and_verify(&blob(&m, &signer, status, true), &mds_root).unwrap();
        match verify(&stmt, &Trust::bundled().with_mds(md)) {
            Err(AttestationError::Revoked { status: s, .. }) => assert_eq!(s, *status),
            other => panic!("{status}: {other:?}"),
        }
    }

    // A revoked model is refused even when it sends no attestation at all.
    let md = mds::parse_and_verify(&blob(&m, &signer, "REVOKED", false), &mds_root).unwrap();
    let none = Parsed {
        fmt: "none".into(),
        att_stmt: Value::Map(vec![]),
        auth_data: p.auth_data.clone(),
    };
    assert!(matches!(
        judge(&none, &cdh, &Trust::bundled().with_mds(md)),
        Err(AttestationError::Revoked { .. })
    ));
    assert_eq!(judge(&none, &cdh, &Trust::bundled()), Ok(Verdict::None));

    // A changed payload byte, or a BLOB under another root, is refused.
    let good = blob(&m, &signer, "FIDO_CERTIFIED", false);
    let dot = good.iter().position(|b| *b == b'.').unwrap();
    let mut bad = good.clone();
    bad[dot + 5] = if bad[dot + 5] == b'A' { b'B' } else { b'A' };
    assert!(matches!(
        mds::parse_and_verify(&bad, &mds_root),
        Err(MdsError::BadSignature | MdsError::NotJwt(_))
    ));
    assert!(matches!(
        mds::parse_and_verify(&good, &mds::fido_root()),
        Err(MdsError::UntrustedChain(_))
    ));
    // Without the roots in the BLOB the chain is still untrusted, but the model is named.
    let md = mds::parse_and_verify(&good, &mds_root).unwrap();
    let a = verify(&stmt, &Trust::bundled().with_mds(md)).unwrap();
    assert_eq!(a.verdict, Verdict::UntrustedChain);
    let too_big = vec![b'a'; mds::MAX_BLOB_LEN + 1];
    assert!(matches!(
        mds::parse_and_verify(&too_big, &mds_root),
        Err(MdsError::TooLarge(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Through the binary.

#[cfg(unix)]
#[test]
fn the_virtual_key_enrolls_as_virtual_and_require_attested_refuses_it() {
    use super::support::cli::{stderr, Sim, User};
    let user = User::new();
    let sim = Sim::start(&user.dir, "k", &[]);
    let out = user.ok(&["token", "enroll", "--device", &sim.device()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("attestation: virtual"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let list = user.json(&["token", "list", "--json"]);
    let t = &list[0];
    assert_eq!(t["attestation"]["verdict"], "virtual", "{t}");
    assert_eq!(t["attestation"]["fmt"], "packed", "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    let human = user.ok(&["token", "list"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("virtual"));

    let refuse = |user: &User| {
        let out = user.auths(&[
            "agent",
            "start",
            "--require-attested",
            "--device",
            &sim.device(),
        ]);
        assert!(!out.status.success(), "agent started");
        let err = stderr(&out);
        assert!(err.contains("--require-attested"), "{err}");
        assert!(err.contains(&id), "names the key: {err}");
        err
    };
    let err = refuse(&user);
    assert!(err.contains("virtual"), "names the verdict: {err}");

    // Editing tokens.json to say "attested" does not help: the statement is checked again.
    let path = user.home.join("tokens.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replace("\"verdict\": \"virtual\"", "\"verdict\": \"attested\"");
    assert_ne!(text, edited);
    std::fs::write(&path, edited).unwrap();
    let err = refuse(&user);
    assert!(err.contains("no longer verifies"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_virtual_u2f_only_key_is_virtual_too() {
    use super::support::cli::{Sim, User};
    let user = User::new();
    let sim = Sim::start(&user.dir, "u", &["--u2f-only"]);
    user.ok(&["token", "enroll", "--device", &sim.device()]);
    let list = user.json(&["token", "list", "--json"]);
    let t = &list[0];
    assert_eq!(t["protocol"], "u2f", "{t}");
    assert_eq!(t["attestation"]["fmt"], "fido-u2f", "{t}");
    assert_eq!(t["attestation"]["verdict"], "virtual", "{t}");
    assert!(t["attestation"].get("vendor").is_none(), "{t}");
}

#[test]
fn a_version_1_root_is_an_anchor_but_never_an_issuer_inside_x5c() {
    // Nitrokey's FIDO2 root is such a certificate (X.509 v1, no basicConstraints).
    let root_key = SigningKey::random(&mut rand::rngs::OsRng);
    let root = make_cert_v(
        ROOT_SUBJECT,
        ROOT_SUBJECT,
        root_key.verifying_key(),
        &root_key,
        None,
    );
    let leaf_key = SigningKey::random(&mut rand::rngs::OsRng);
    let l = make_cert(
        LEAF_SUBJECT,
        ROOT_SUBJECT,
        leaf_key.verifying_key(),
        &root_key,
        vec![basic(false)],
    );
    let trust = Trust::with_anchors(vec![anchor(&root)]);
    let (p, cdh) = packed(&leaf_key, vec![l.clone()], AAGUID);
    assert_eq!(judge(&p, &cdh, &trust), Ok(Verdict::Attested));
    // The same v1 certificate as an intermediate the key sends is not a CA.
    let mid_key = SigningKey::random(&mut rand::rngs::OsRng);
    let mid = make_cert_v(
        "CN=V1 Mid",
        ROOT_SUBJECT,
        mid_key.verifying_key(),
        &root_key,
        None,
    );
    let l2 = make_cert(
        LEAF_SUBJECT,
        "CN=V1 Mid",
        leaf_key.verifying_key(),
        &mid_key,
        vec![basic(false)],
    );
    let (p, cdh) = packed(&leaf_key, vec![l2, mid], AAGUID);
    assert!(matches!(
        judge(&p, &cdh, &trust),
        Err(AttestationError::Certificate(X509Error::NotCa { index: 1 }))
    ));
}

#[test]
fn webauthn_rs_registrations_get_the_verdicts_computed_independently() {
    let path = vector_records::dir().join("webauthn_rs_attestations.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let records = vector_records::parse("webauthn_rs_attestations.txt", &text);
    assert!(records.len() >= 12, "{}", records.len());
    let trust = Trust::bundled();
    let mut seen = std::collections::BTreeSet::new();
    for r in records {
        let p = parse_object(&r.hex("attestation_object"));
        assert_eq!(p.fmt, r.req("fmt"), "{}", r.name());
        let cdh: [u8; 32] = r.hex("client_data_hash").try_into().unwrap();
        let got = judge(&p, &cdh, &trust);
        let want = r.req("expected_verdict");
        seen.insert(want.to_owned());
        match (want, &got) {
            ("error", Err(e)) => match r.req("expected_error") {
                "aaguid-mismatch" => assert!(
                    matches!(
                        e,
                        AttestationError::Certificate(X509Error::AaguidMismatch { .. })
                    ),
                    "{}: {e:?}",
                    r.name()
                ),
                "bad-signature" => assert!(
                    matches!(e, AttestationError::BadSignature(_)),
                    "{}: {e:?}",
                    r.name()
                ),
                "malformed" => assert!(
                    matches!(e, AttestationError::Malformed { .. }),
                    "{}: {e:?}",
                    r.name()
                ),
                other => panic!("{}: unknown expected_error {other}", r.name()),
            },
            (v, Ok(verdict)) => assert_eq!(verdict.as_str(), v, "{}", r.name()),
            (v, Err(e)) => panic!("{}: expected {v}, got {e}", r.name()),
        }
    }
    for v in ["attested", "self", "none", "unchecked", "error"] {
        assert!(seen.contains(v), "the file covers {v}");
    }
}

/// libfido2's regress makeCredential (its `regress/cred.c` wire data, a packed x5c statement
/// by "Yubico U2F Test EE", an X.509 v1 test certificate): decoded as a key's answer, its
/// statement signature verifies with the clientDataHash of `valid_cred()`, and the leaf is
/// refused by WebAuthn §8.2.1 (not version 3), before any chain is looked at.
#[test]
fn libfido2_regress_make_credential_fails_the_leaf_requirements() {
    use auths_presence::ctap::command::MakeCredentialResponse;
    let resp = vector_records::load("libfido2_ctap2_responses.txt")
        .into_iter()
        .find(|r| r.name() == "libfido2-regress-wire-makecred")
        .unwrap();
    let cdh = vector_records::load("libfido2_regress_assertions.txt")
        .into_iter()
        .find(|r| r.name() == "libfido2-regress-cred-packed-x5c-attestation")
        .unwrap()
        .hex("client_data_hash");
    let m = MakeCredentialResponse::decode(&resp.hex("response_cbor")).unwrap();
    let cdh: [u8; 32] = cdh.try_into().unwrap();
    let stmt = Statement {
        fmt: &m.fmt,
        att_stmt: &m.att_stmt,
        auth_data: &m.auth_data_raw,
        client_data_hash: &cdh,
    };
    match verify(&stmt, &Trust::bundled()) {
        Err(AttestationError::Certificate(X509Error::LeafRequirement(r))) => {
            assert!(r.contains("version 3"), "{r}")
        }
        other => panic!("{other:?}"),
    }
    // Another clientDataHash: the statement signature fails.
    let mut other = cdh;
    other[0] ^= 1;
    assert!(matches!(
        verify(
            &Statement {
                client_data_hash: &other,
                ..stmt
            },
            &Trust::bundled()
        ),
        Err(AttestationError::BadSignature(_))
    ));
}

/// What `auths agent start --require-attested` relies on: a stored attestation earns its
/// verdict again only for the credential it was made with.
#[test]
fn a_stored_attestation_is_reverified_for_its_own_credential_only() {
    use auths_presence::ctap::authdata::AuthenticatorData;
    use auths_presence::presence::attestation::reverify;
    let r = record("java-YubiKey5Ci-attestation");
    let p = parse_object(&r.hex("attestation_object"));
    let cdh: [u8; 32] = r.hex("client_data_hash").try_into().unwrap();
    let trust = Trust::bundled();
    let stored = for_enrollment(
        &Statement {
            fmt: &p.fmt,
            att_stmt: &p.att_stmt,
            auth_data: &p.auth_data,
            client_data_hash: &cdh,
        },
        &trust,
        false,
    )
    .unwrap();
    assert_eq!(stored.verdict, Verdict::Attested);
    let acd = AuthenticatorData::parse(&p.auth_data)
        .unwrap()
        .attested_credential_data
        .unwrap();
    let cose = acd.public_key().unwrap().to_cbor_bytes();
    assert_eq!(
        reverify(&stored, &acd.credential_id, &cose, false, &trust),
        Verdict::Attested
    );
    // Someone else's credential id or key, the virtual flag, or an edited statement: not.
    let mut other_id = acd.credential_id.clone();
    other_id[0] ^= 1;
    assert_eq!(
        reverify(&stored, &other_id, &cose, false, &trust),
        Verdict::Unchecked
    );
    let other_key = SigningKey::random(&mut rand::rngs::OsRng);
    let pt = other_key.verifying_key().to_encoded_point(false);
    let other_cose = CoseKey::es256_from_coordinates(
        pt.x().unwrap().as_slice().try_into().unwrap(),
        pt.y().unwrap().as_slice().try_into().unwrap(),
    )
    .unwrap()
    .to_cbor_bytes();
    assert_eq!(
        reverify(&stored, &acd.credential_id, &other_cose, false, &trust),
        Verdict::Unchecked
    );
    assert_eq!(
        reverify(&stored, &acd.credential_id, &cose, true, &trust),
        Verdict::Virtual
    );
    let mut edited = stored.clone();
    edited.client_data_hash = hex::encode([0u8; 32]);
    assert_eq!(
        reverify(&edited, &acd.credential_id, &cose, false, &trust),
        Verdict::Unchecked
    );
}

/// `auths token enroll --mds FILE` checks the BLOB before it asks the key for anything: a
/// BLOB not signed under the FIDO root is refused with what to do, and nothing is enrolled.
#[cfg(unix)]
#[test]
fn enroll_refuses_an_mds_blob_not_signed_by_fido() {
    use super::support::cli::{stderr, Sim, User};
    let user = User::new();
    let sim = Sim::start(&user.dir, "m", &[]);
    let m = made();
    let signer = SigningKey::random(&mut rand::rngs::OsRng);
    let file = user.dir.join("blob.jwt");
    std::fs::write(&file, blob(&m, &signer, "FIDO_CERTIFIED", true)).unwrap();
    for (path, says) in [
        (file.clone(), "not signed under the FIDO MDS root"),
        (user.dir.join("missing.jwt"), "cannot read the MDS BLOB"),
    ] {
        let out = user.auths(&[
            "token",
            "enroll",
            "--device",
            &sim.device(),
            "--mds",
            path.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(says), "{err}");
    }
    let list = user.json(&["token", "list", "--json"]);
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
}
