//! Against a real security key, only when `AUTHS_TEST_DEVICE` names one (e.g. `usb` or
//! `usb:/dev/hidraw3`); without it these tests check nothing and say so on stderr ("skipped:
//! …", shown with `-- --nocapture`). With `AUTHS_TEST_TOUCH=1` they also make a credential and
//! an assertion, which needs two touches: the prompts go to stderr
//! (`AUTHS_TEST_DEVICE=usb AUTHS_TEST_TOUCH=1 cargo test real_key -- --nocapture`).

use auths_presence::ctap::command::{
    Algorithm, GetAssertionRequest, MakeCredentialRequest, RelyingParty, UserEntity,
};
use auths_presence::ctap::device::DeviceOptions;
use auths_presence::ctap::select::{self, DeviceSelector};
use auths_presence::ctap::transaction::KeepaliveStatus;
use auths_presence::presence::verify::{verify_assertion, AllowedCredential, Expected};

/// The key `AUTHS_TEST_DEVICE` names; without one, `test` says it skipped.
fn device(test: &str) -> Option<DeviceSelector> {
    let Some(d) = std::env::var("AUTHS_TEST_DEVICE")
        .ok()
        .filter(|d| !d.is_empty())
    else {
        eprintln!(
            "{test}: skipped: set AUTHS_TEST_DEVICE=usb (or usb:PATH) to run against a real key"
        );
        return None;
    };
    Some(d.parse().expect("AUTHS_TEST_DEVICE is a device selector"))
}

/// A makeCredential for the test rp id over `client_data_hash`, offering both algorithms.
fn test_credential(
    client_data_hash: [u8; 32],
    pin_uv_auth: Option<auths_presence::ctap::command::PinUvAuth>,
) -> MakeCredentialRequest<'static> {
    MakeCredentialRequest {
        client_data_hash,
        rp: RelyingParty {
            id: "auths:test",
            name: None,
        },
        user: UserEntity {
            id: b"auths-test",
            name: Some("test"),
            display_name: None,
        },
        algorithms: &[Algorithm::Es256, Algorithm::EdDsa],
        exclude_list: &[],
        pin_uv_auth,
    }
}

#[test]
fn real_key_speaks_ctap2() {
    let Some(sel) = device("real_key_speaks_ctap2") else {
        return;
    };
    let mut key = select::open(&sel, DeviceOptions::default(), &mut |_| {}).expect("open the key");
    let info = key.device.get_info().expect("getInfo");
    assert!(
        info.versions.iter().any(|v| v.starts_with("FIDO_2")),
        "{:?}",
        info.versions
    );
    assert_eq!(key.device.ping(&[0x5a; 300]).unwrap(), vec![0x5a; 300]);
}

#[test]
fn real_key_enrolls_and_asserts_with_touches() {
    const TEST: &str = "real_key_enrolls_and_asserts_with_touches";
    let Some(sel) = device(TEST) else {
        return;
    };
    if std::env::var("AUTHS_TEST_TOUCH").as_deref() != Ok("1") {
        eprintln!("{TEST}: skipped: set AUTHS_TEST_TOUCH=1 too (it needs two touches)");
        return;
    }
    let mut key = select::open(&sel, DeviceOptions::default(), &mut |_| {}).expect("open the key");
    let mut prompt = |s| {
        if s == KeepaliveStatus::UpNeeded {
            eprintln!("touch the security key now");
        }
    };
    let made = key
        .device
        .make_credential(&test_credential([1; 32], None), &mut prompt, None)
        .expect("makeCredential");
    let att = made.auth_data.attested_credential_data.unwrap();
    let allowed = [AllowedCredential {
        id: att.credential_id.clone(),
        public_key: att.public_key().unwrap(),
        sign_count: made.auth_data.sign_count,
    }];
    let ids = [att.credential_id.as_slice()];
    let resp = key
        .device
        .get_assertion(
            &GetAssertionRequest {
                rp_id: "auths:test",
                client_data_hash: [2; 32],
                allow_list: &ids,
                user_verification: false,
                pin_uv_auth: None,
            },
            &mut prompt,
            None,
        )
        .expect("getAssertion");
    verify_assertion(
        &Expected {
            rp_id: "auths:test",
            client_data_hash: [2; 32],
            allowed: &allowed,
            require_uv: false,
        },
        &resp,
    )
    .expect("the real key's assertion verifies");
}

/// The PIN path on a real key with a PIN set: `AUTHS_TEST_PIN` is the key's PIN (a wrong one
/// costs one of its retries, so the test asks for it explicitly). Needs two touches.
#[test]
fn real_key_pin_token_makes_a_user_verified_assertion() {
    use auths_presence::ctap::client_pin::{self, permissions};
    use auths_presence::ctap::command::PinUvAuth;
    const TEST: &str = "real_key_pin_token_makes_a_user_verified_assertion";
    let Some(sel) = device(TEST) else {
        return;
    };
    let Ok(pin) = std::env::var("AUTHS_TEST_PIN") else {
        eprintln!("{TEST}: skipped: set AUTHS_TEST_PIN to the key's PIN (and AUTHS_TEST_TOUCH=1)");
        return;
    };
    if std::env::var("AUTHS_TEST_TOUCH").as_deref() != Ok("1") {
        eprintln!("{TEST}: skipped: set AUTHS_TEST_TOUCH=1 too (it needs two touches)");
        return;
    }
    let mut key = select::open(&sel, DeviceOptions::default(), &mut |_| {}).expect("open the key");
    let info = key.device.get_info().expect("getInfo");
    assert_eq!(
        info.option("clientPin"),
        Some(true),
        "the key has a PIN set"
    );
    let protocol = client_pin::protocol_for(&info).expect("a PIN protocol we speak");
    let (retries, _) = key.device.pin_retries(protocol).expect("getPINRetries");
    eprintln!("{TEST}: {retries} PIN tries left before this test");
    let perms = permissions::MAKE_CREDENTIAL | permissions::GET_ASSERTION;
    let token = key
        .device
        .pin_token(&info, pin.as_bytes(), perms, "auths:test")
        .expect("a pinUvAuthToken from the PIN");
    let mut prompt = |s| {
        if s == KeepaliveStatus::UpNeeded {
            eprintln!("touch the security key now");
        }
    };
    let auth = |cdh: &[u8; 32]| PinUvAuth {
        protocol: token.protocol().number(),
        param: token.param(cdh),
    };
    let made = key
        .device
        .make_credential(
            &test_credential([3; 32], Some(auth(&[3; 32]))),
            &mut prompt,
            None,
        )
        .expect("makeCredential with the PIN");
    assert!(made.auth_data.flags.user_verified());
    let att = made.auth_data.attested_credential_data.unwrap();
    let allowed = [AllowedCredential {
        id: att.credential_id.clone(),
        public_key: att.public_key().unwrap(),
        sign_count: made.auth_data.sign_count,
    }];
    let ids = [att.credential_id.as_slice()];
    let resp = key
        .device
        .get_assertion(
            &GetAssertionRequest {
                rp_id: "auths:test",
                client_data_hash: [4; 32],
                allow_list: &ids,
                user_verification: false,
                pin_uv_auth: Some(auth(&[4; 32])),
            },
            &mut prompt,
            None,
        )
        .expect("getAssertion with the PIN");
    verify_assertion(
        &Expected {
            rp_id: "auths:test",
            client_data_hash: [4; 32],
            allowed: &allowed,
            require_uv: true,
        },
        &resp,
    )
    .expect("the real key's user-verified assertion verifies");
}
