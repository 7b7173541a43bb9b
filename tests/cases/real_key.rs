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
        .make_credential(
            &MakeCredentialRequest {
                client_data_hash: [1; 32],
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
                pin_uv_auth: None,
            },
            &mut prompt,
            None,
        )
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
