//! The hmac-secret extension (CTAP 2.1 §12.5) end to end over the real CTAPHID channel: our
//! client against the virtual key, and python-fido2 (an independent client) against the same
//! key, whose output for the same credential and salt must be ours byte for byte.

use std::path::Path;
use std::process::Command;

use auths_presence::ctap::client_pin::{permissions, PinUvAuthToken};
use auths_presence::ctap::command::{
    Algorithm, GetAssertionRequest, MakeCredentialRequest, PinUvAuth, RelyingParty, UserEntity,
};
use auths_presence::ctap::device::DeviceOptions;
use auths_presence::ctap::hmac_secret;
use auths_presence::ctap::pin::PinProtocol;
use auths_presence::ctap::select::{self, DeviceSelector, OpenedKey};
use auths_presence::ctap::virtual_key::{HidTimings, PinConfig, VirtualKey};
use auths_presence::ctap::CtapError;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::support::cli::Sim;
use crate::support::gate::{open, start_key, start_key_with_pin, AUTO};
use crate::support::openssh::run_bounded;
use crate::support::{python_fido2, short_tempdir, DEADLINE};

const RP: &str = "auths:presence";

fn options() -> DeviceOptions {
    DeviceOptions {
        deadline: DEADLINE,
        ..DeviceOptions::default()
    }
}

/// An ES256 credential request for our rp id over `cdh`, with `pin_uv_auth` when given.
fn credential_request(
    cdh: [u8; 32],
    pin_uv_auth: Option<PinUvAuth>,
) -> MakeCredentialRequest<'static> {
    MakeCredentialRequest {
        client_data_hash: cdh,
        rp: RelyingParty { id: RP, name: None },
        user: UserEntity {
            id: b"user",
            name: None,
            display_name: None,
        },
        algorithms: &[Algorithm::Es256],
        exclude_list: &[],
        pin_uv_auth,
    }
}

fn make_credential(key: &mut OpenedKey, hmac: bool) -> Vec<u8> {
    let cdh: [u8; 32] = Sha256::digest(rand::random::<[u8; 32]>()).into();
    let req = credential_request(cdh, None);
    let resp = if hmac {
        key.device
            .make_credential_with_hmac_secret(&req, &mut |_| {}, None)
    } else {
        key.device.make_credential(&req, &mut |_| {}, None)
    }
    .unwrap();
    assert_eq!(hmac_secret::created(&resp.auth_data), hmac);
    resp.auth_data
        .attested_credential_data
        .unwrap()
        .credential_id
}

/// One assertion for `cred` carrying `salts`; the decrypted outputs.
fn outputs(
    key: &mut OpenedKey,
    cred: &[u8],
    salts: &[hmac_secret::Salt],
) -> Result<hmac_secret::Output, CtapError> {
    outputs_verified(key, cred, salts, None)
}

/// [`outputs`], with the user verified by `token` when given.
fn outputs_verified(
    key: &mut OpenedKey,
    cred: &[u8],
    salts: &[hmac_secret::Salt],
    token: Option<&PinUvAuthToken>,
) -> Result<hmac_secret::Output, CtapError> {
    let info = key.info.clone();
    let hmac = key.device.hmac_secret_request(&info, salts)?;
    let allow = [cred];
    let client_data_hash: [u8; 32] = rand::random();
    let req = GetAssertionRequest {
        rp_id: RP,
        client_data_hash,
        allow_list: &allow,
        user_verification: false,
        pin_uv_auth: token.map(|t| PinUvAuth {
            protocol: t.protocol().number(),
            param: t.param(&client_data_hash),
        }),
    };
    let resp = key
        .device
        .get_assertion_with_hmac_secret(&req, &hmac, &mut |_| {}, None)?;
    assert!(resp.auth_data.flags.user_present());
    assert_eq!(resp.auth_data.flags.user_verified(), token.is_some());
    hmac.output(&resp.auth_data)
}

fn key_with(protocols: Vec<PinProtocol>) -> (tempfile::TempDir, Arc<VirtualKey>, OpenedKey) {
    let dir = tempfile::tempdir().unwrap();
    let vk = start_key_with_pin(
        &dir.path().join("k.json"),
        AUTO,
        HidTimings::default(),
        Some(PinConfig {
            protocols,
            ..PinConfig::default()
        }),
    );
    let key = open(&vk, options()).unwrap();
    (dir, vk, key)
}

#[test]
fn outputs_are_the_same_for_a_salt_differ_between_salts_and_come_in_pairs() {
    for protocol in [PinProtocol::One, PinProtocol::Two] {
        let (_dir, _vk, mut key) = key_with(vec![protocol]);
        let cred = make_credential(&mut key, true);
        let a = [7u8; 32];
        let b = [9u8; 32];
        let first = outputs(&mut key, &cred, &[a]).unwrap();
        let again = outputs(&mut key, &cred, &[a]).unwrap();
        assert_eq!(first.get(0), again.get(0), "{protocol:?}");
        let other = outputs(&mut key, &cred, &[b]).unwrap();
        assert_ne!(first.get(0), other.get(0));
        let both = outputs(&mut key, &cred, &[a, b]).unwrap();
        assert_eq!(both.get(0), first.get(0));
        assert_eq!(both.get(1), other.get(0));
        assert!(first.get(1).is_none());
        // Another credential of the same key has another secret.
        let cred2 = make_credential(&mut key, true);
        assert_ne!(
            outputs(&mut key, &cred2, &[a]).unwrap().get(0),
            first.get(0)
        );
    }
}

#[test]
fn a_verified_user_gets_the_other_secret_of_the_credential() {
    let dir = tempfile::tempdir().unwrap();
    let vk = start_key_with_pin(
        &dir.path().join("k.json"),
        AUTO,
        HidTimings::default(),
        Some(PinConfig {
            pin: Some(zeroize::Zeroizing::new(b"4321".to_vec())),
            ..PinConfig::default()
        }),
    );
    let mut key = open(&vk, options()).unwrap();
    let info = key.info.clone();
    let perms = permissions::MAKE_CREDENTIAL | permissions::GET_ASSERTION;
    let token = key.device.pin_token(&info, b"4321", perms, RP).unwrap();
    let cdh: [u8; 32] = rand::random();
    let req = credential_request(
        cdh,
        Some(PinUvAuth {
            protocol: token.protocol().number(),
            param: token.param(&cdh),
        }),
    );
    let resp = key
        .device
        .make_credential_with_hmac_secret(&req, &mut |_| {}, None)
        .unwrap();
    let cred = resp
        .auth_data
        .attested_credential_data
        .unwrap()
        .credential_id;
    let salt = [3u8; 32];
    let without = outputs_verified(&mut key, &cred, &[salt], None).unwrap();
    let with = outputs_verified(&mut key, &cred, &[salt], Some(&token)).unwrap();
    let again = outputs_verified(&mut key, &cred, &[salt], Some(&token)).unwrap();
    assert_ne!(
        without.get(0),
        with.get(0),
        "CredRandomWithUV is another secret"
    );
    assert_eq!(with.get(0), again.get(0));
}

#[test]
fn a_credential_made_without_hmac_secret_and_a_key_without_it_say_so() {
    let (_dir, _vk, mut key) = key_with(vec![PinProtocol::Two]);
    let plain = make_credential(&mut key, false);
    let e = outputs(&mut key, &plain, &[[1; 32]]).unwrap_err();
    assert!(e.to_string().contains("made without hmac-secret"), "{e}");

    // The virtual key without clientPIN has no key agreement, so no hmac-secret.
    let dir = tempfile::tempdir().unwrap();
    let vk = start_key(&dir.path().join("k.json"), AUTO, HidTimings::default());
    let mut key = open(&vk, options()).unwrap();
    let cred = make_credential(&mut key, false);
    let e = outputs(&mut key, &cred, &[[1; 32]]).unwrap_err();
    assert!(e.to_string().contains("no hmac-secret extension"), "{e}");
}

fn python_fido2_matches_ours(protocol: &str) {
    let dir = short_tempdir();
    let sim = Sim::start(dir.path(), "hs", &["--pin-protocol", protocol]);
    let salt: [u8; 32] = rand::random();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/fido2_hmac_secret.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg(&sim.socket)
        .arg(protocol)
        .arg(hex::encode(salt));
    let out = run_bounded(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python-fido2's hmac-secret against the virtual key, protocol {protocol}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| hex::decode(v.trim()).unwrap())
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
    };
    let cred = field("credential: ");
    let theirs = field("output: ");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok: ")).count(), 5);

    let mut key = select::open(
        &DeviceSelector::Sim(sim.socket.clone()),
        options(),
        &mut |_| {},
    )
    .unwrap();
    let ours = outputs(&mut key, &cred, &[salt]).unwrap();
    assert_eq!(
        ours.get(0).unwrap().as_slice(),
        theirs.as_slice(),
        "our client's output for python-fido2's credential and salt"
    );
}

#[test]
fn python_fido2_hmac_secret_protocol_two_matches_our_client() {
    if python_fido2("python_fido2_hmac_secret_protocol_two_matches_our_client") {
        python_fido2_matches_ours("2");
    }
}

#[test]
fn python_fido2_hmac_secret_protocol_one_matches_our_client() {
    if python_fido2("python_fido2_hmac_secret_protocol_one_matches_our_client") {
        python_fido2_matches_ours("1");
    }
}
