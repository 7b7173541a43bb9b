//! `*_ctap2_responses.txt`: each response decodes with the strict decoders of
//! `ctap::command` and reports exactly the `expect.*` values; `canonical_ctap2 = no` fails
//! strict decoding.

use auths_presence::ctap::authdata::AuthenticatorData;
use auths_presence::ctap::cbor::{self, Value};
use auths_presence::ctap::command::{
    split_status, GetAssertionResponse, GetInfoResponse, MakeCredentialResponse,
};
use auths_presence::ctap::CtapError;

use crate::vector_records::{load_all, load_where, Record};

const FILES: &[&str] = &[
    "libfido2_ctap2_responses.txt",
    "mozilla_authenticator_rs_ctap2_responses.txt",
    "python_fido2_ctap2_responses.txt",
    "webauthn_rs_ctap2_responses.txt",
];

fn list<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

/// `k:v` pairs joined by commas, as the vectors write a map.
fn pairs<T: std::fmt::Display>(v: &[(String, T)]) -> String {
    v.iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn hexv(name: &str, k: &str, v: &str) -> Vec<u8> {
    hex::decode(v).unwrap_or_else(|e| panic!("{name}: expect.{k}: {e}"))
}

/// Checks shared by makeCredential and getAssertion: the parsed authData.
fn auth_data_field(name: &str, ad: &AuthenticatorData, raw: &[u8], k: &str, v: &str) -> bool {
    match k {
        "auth_data" => assert_eq!(raw, hexv(name, k, v), "{name}"),
        "rp_id_hash" => assert_eq!(ad.rp_id_hash.to_vec(), hexv(name, k, v), "{name}"),
        "flags" => assert_eq!(vec![ad.flags.bits()], hexv(name, k, v), "{name}"),
        "sign_count" => assert_eq!(ad.sign_count.to_string(), v, "{name}"),
        _ => return false,
    }
    true
}

fn check_get_info(r: &Record, body: &[u8]) -> usize {
    let name = r.name();
    let info = GetInfoResponse::decode(body).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut n = 0;
    for (k, v) in r.expects() {
        let got = match k {
            "versions" => list(&info.versions),
            "extensions" => list(&info.extensions),
            "aaguid" => hex::encode(info.aaguid),
            "options" => pairs(&info.options),
            "max_msg_size" => opt(info.max_msg_size),
            "pin_uv_auth_protocols" => list(&info.pin_uv_auth_protocols),
            "max_cred_count_in_list" => opt(info.max_credential_count_in_list),
            "max_cred_id_length" => opt(info.max_credential_id_length),
            "transports" => list(&info.transports),
            "algorithms" => list(&info.algorithms),
            "max_serialized_large_blob_array" => opt(info.max_serialized_large_blob_array),
            "force_pin_change" => opt(info.force_pin_change),
            "min_pin_length" => opt(info.min_pin_length),
            "firmware_version" => opt(info.firmware_version),
            "max_cred_blob_length" => opt(info.max_cred_blob_length),
            "max_rpids_for_set_min_pin_length" => opt(info.max_rpids_for_set_min_pin_length),
            "preferred_platform_uv_attempts" => opt(info.preferred_platform_uv_attempts),
            "uv_modality" => opt(info.uv_modality),
            "certifications" => pairs(&info.certifications),
            "remaining_discoverable_credentials" => opt(info.remaining_discoverable_credentials),
            "unknown_keys" => list(&info.unknown_keys),
            other => panic!("{name}: unhandled expect.{other}"),
        };
        assert_eq!(got, v, "{name}: expect.{k}");
        n += 1;
    }
    // Our client relies on these two helpers.
    assert_eq!(info.option("up"), Some(true), "{name}: up option");
    assert!(info.supports_algorithm(-7), "{name}: ES256");
    n
}

fn check_make_credential(r: &Record, body: &[u8]) -> usize {
    let name = r.name();
    let mc = MakeCredentialResponse::decode(body).unwrap_or_else(|e| panic!("{name}: {e}"));
    let acd = mc
        .auth_data
        .attested_credential_data
        .as_ref()
        .expect("checked by the decoder");
    let mut n = 0;
    for (k, v) in r.expects() {
        if auth_data_field(&name, &mc.auth_data, &mc.auth_data_raw, k, v) {
            n += 1;
            continue;
        }
        let att = |key: &str| mc.att_stmt.get_text(key);
        match k {
            "fmt" => assert_eq!(mc.fmt, v, "{name}"),
            "aaguid" => assert_eq!(acd.aaguid.to_vec(), hexv(&name, k, v), "{name}"),
            "cred_id" => assert_eq!(acd.credential_id, hexv(&name, k, v), "{name}"),
            "cose_key" => assert_eq!(
                cbor::encode(&acd.public_key_cose),
                hexv(&name, k, v),
                "{name}"
            ),
            "cose_alg" => {
                let key = acd
                    .public_key()
                    .unwrap_or_else(|e| panic!("{name}: COSE key: {e}"));
                assert_eq!(key.algorithm().to_string(), v, "{name}");
            }
            "authdata_extensions_cbor" => assert_eq!(
                mc.auth_data.extensions.as_ref().map(cbor::encode),
                Some(hexv(&name, k, v)),
                "{name}"
            ),
            "att_stmt_alg" => assert_eq!(
                att("alg").and_then(Value::as_i64).map(|a| a.to_string()),
                Some(v.to_owned()),
                "{name}"
            ),
            "att_stmt_sig" => assert_eq!(
                att("sig").and_then(Value::as_bytes),
                Some(&hexv(&name, k, v)[..]),
                "{name}"
            ),
            "x5c_count" => assert_eq!(
                att("x5c")
                    .and_then(Value::as_array)
                    .map(|a| a.len().to_string()),
                Some(v.to_owned()),
                "{name}"
            ),
            "ep_att" => assert_eq!(opt(mc.ep_att), v, "{name}"),
            other => panic!("{name}: unhandled expect.{other}"),
        }
        n += 1;
    }
    n
}

fn check_get_assertion(r: &Record, body: &[u8]) -> usize {
    let name = r.name();
    let ga = GetAssertionResponse::decode(body).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut n = 0;
    for (k, v) in r.expects() {
        if auth_data_field(&name, &ga.auth_data, &ga.auth_data_raw, k, v) {
            n += 1;
            continue;
        }
        let user = ga.user.as_ref();
        match k {
            "credential_id" => assert_eq!(
                ga.credential.as_ref().map(|c| c.id.clone()),
                Some(hexv(&name, k, v)),
                "{name}"
            ),
            "credential_type" => assert_eq!(
                ga.credential.as_ref().map(|c| c.cred_type.as_str()),
                Some(v),
                "{name}"
            ),
            "signature" => assert_eq!(ga.signature, hexv(&name, k, v), "{name}"),
            "user_id" => assert_eq!(user.map(|u| u.id.clone()), Some(hexv(&name, k, v))),
            "user_name" => assert_eq!(user.and_then(|u| u.name.as_deref()), Some(v)),
            "user_display_name" => {
                assert_eq!(user.and_then(|u| u.display_name.as_deref()), Some(v))
            }
            "number_of_credentials" => assert_eq!(opt(ga.number_of_credentials), v, "{name}"),
            other => panic!("{name}: unhandled expect.{other}"),
        }
        n += 1;
    }
    n
}

fn decode_any(command: &str, body: &[u8]) -> Result<(), CtapError> {
    match command {
        "authenticatorGetInfo" => GetInfoResponse::decode(body).map(drop),
        "authenticatorMakeCredential" => MakeCredentialResponse::decode(body).map(drop),
        "authenticatorGetAssertion" => GetAssertionResponse::decode(body).map(drop),
        other => panic!("unknown command {other}"),
    }
}

/// Re-encode a `59 00 xx` (non-minimal byte string length) as `58 xx`: the one
/// non-canonical construct the README lists. Returns `None` when there is none.
fn fix_nonminimal_len(bytes: &[u8]) -> Option<Vec<u8>> {
    let i = bytes
        .windows(3)
        .position(|w| w[0] == 0x59 && w[1] == 0x00 && w[2] >= 24)?;
    let mut out = bytes[..i].to_vec();
    out.extend_from_slice(&[0x58, bytes[i + 2]]);
    out.extend_from_slice(&bytes[i + 3..]);
    Some(out)
}

#[test]
fn ctap2_response_vectors() {
    let (mut records, mut noncanonical, mut expects) = (0, 0, 0);
    let mut per_command = [0usize; 3];
    for r in load_all(FILES) {
        let name = r.name();
        let mut body = r.hex("response_cbor");
        // With the status byte in front, split_status hands back exactly the CBOR.
        if let Some(status) = r.get("status") {
            assert_eq!(status, "00", "{name}");
            let mut full = vec![0u8];
            full.extend_from_slice(&body);
            assert_eq!(split_status(&full).unwrap(), &body[..]);
        }
        let command = r.req("command");
        match r.req("canonical_ctap2") {
            "yes" => {}
            "no" => {
                let e = decode_any(command, &body).expect_err(&name);
                assert!(matches!(e, CtapError::Cbor(_)), "{name}: {e:?}");
                body = fix_nonminimal_len(&body)
                    .unwrap_or_else(|| panic!("{name}: no non-minimal length found"));
                noncanonical += 1;
            }
            other => panic!("{name}: canonical_ctap2 = {other}"),
        }
        assert_eq!(r.req("expected"), "parse_ok", "{name}");
        expects += match command {
            "authenticatorGetInfo" => {
                per_command[0] += 1;
                check_get_info(&r, &body)
            }
            "authenticatorMakeCredential" => {
                per_command[1] += 1;
                check_make_credential(&r, &body)
            }
            "authenticatorGetAssertion" => {
                per_command[2] += 1;
                check_get_assertion(&r, &body)
            }
            other => panic!("{name}: unknown command {other}"),
        };
        records += 1;
    }
    assert_eq!(records, 16, "README lists 16 CTAP2 responses");
    assert_eq!(per_command, [6, 7, 3]);
    assert_eq!(noncanonical, 1);
    assert!(expects >= 150, "only {expects} expect.* fields checked");
}

#[test]
fn truncated_and_trailing_responses_fail() {
    for r in load_where(FILES, "canonical_ctap2", "yes") {
        let body = r.hex("response_cbor");
        let command = r.req("command");
        for n in [0, 1, body.len() / 2, body.len() - 1] {
            assert!(
                matches!(decode_any(command, &body[..n]), Err(CtapError::Cbor(_))),
                "{} truncated to {n}",
                r.name()
            );
        }
        let mut long = body.clone();
        long.push(0);
        assert!(matches!(
            decode_any(command, &long),
            Err(CtapError::Cbor(_))
        ));
    }
}

#[test]
fn corrupted_responses_never_panic() {
    // Every single-byte corruption of every response: an error or a value, never a panic.
    let mut decoded = 0usize;
    for r in load_all(FILES) {
        let body = r.hex("response_cbor");
        let command = r.req("command");
        for i in 0..body.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut b = body.clone();
                b[i] ^= x;
                if decode_any(command, &b).is_ok() {
                    decoded += 1;
                }
            }
        }
    }
    // Flips inside byte strings (signatures, ids) still decode: the decoders are not
    // rejecting everything.
    assert!(decoded > 0);
}

/// libfido2's recorded clientPIN answers (in the CTAPHID frame vectors): the key agreement
/// key is a valid P-256 point, the retries count and the encrypted token decode strictly.
#[test]
fn libfido2_client_pin_answers_decode() {
    use auths_presence::ctap::client_pin::ClientPinResponse;
    let recs = load_all(&["libfido2_ctaphid_frames.txt"]);
    let payload = |name: &str| {
        let r = recs
            .iter()
            .find(|r| r.get("name") == Some(name))
            .unwrap_or_else(|| panic!("{name} is in the vectors"));
        hexv(name, "msg0.payload", r.get("expect.msg0.payload").unwrap())
    };
    let decode = |name: &str| {
        let p = payload(name);
        ClientPinResponse::decode(split_status(&p).unwrap()).unwrap()
    };
    let ka = decode("libfido2-cbor-clientpin-keyagreement");
    assert!(ka.key_agreement.is_some());
    assert_eq!(
        (ka.pin_uv_auth_token, ka.pin_retries),
        (None, None),
        "nothing else"
    );
    let token = decode("libfido2-cbor-clientpin-pintoken");
    assert_eq!(token.pin_uv_auth_token.map(|t| t.len()), Some(16));
    assert_eq!(
        decode("libfido2-cbor-clientpin-retries").pin_retries,
        Some(8)
    );
    // The same key agreement key with one coordinate byte changed is off the curve.
    let mut bad = payload("libfido2-cbor-clientpin-keyagreement");
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(ClientPinResponse::decode(split_status(&bad).unwrap()).is_err());
}
