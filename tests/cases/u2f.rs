//! U2F-only keys (CTAP1): the virtual key with `u2f_only`, reached through the real CTAPHID
//! framing and [`select::open_transport`] as the agent opens a key, enrolled with
//! `enroll_key` and touched with `presence::touch`, so every signature is checked by
//! `verify_assertion` like a CTAP2 key's; behind the real gate and agent socket, with
//! `ssh-keygen -Y sign` and the audit log verified; then `auths sim serve --u2f-only` driven
//! through the binary as a user would.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use auths_presence::ctap::backend::SecurityKey;
use auths_presence::ctap::command::Algorithm;
use auths_presence::ctap::device::{CancelToken, DeviceOptions};
use auths_presence::ctap::select::{self, OpenedKey};
use auths_presence::ctap::virtual_key::u2f::ATTESTATION_CERTIFICATE;
use auths_presence::ctap::virtual_key::{
    HidTimings, StateLocation, TouchError as KeyTouchError, TouchMode, VirtualKey, VirtualKeyConfig,
};
use auths_presence::ctap::{CtapError, StatusCode};
use auths_presence::presence::enrollment::{enroll_key, Enrollment, EnrollmentError, TokenStore};
use auths_presence::presence::pin_entry::NoPinSource;
use auths_presence::presence::touch::{touch, verify_evidence, Credentials, TouchError};
use serde_json::Value;

use super::support::agent::{Agent, Opts};
use super::support::cli::{Sim, User};
use super::support::gate::presence_gate;
use super::support::openssh::{keygen, run_bounded, s, SSH_KEYGEN};
use super::support::{short_tempdir, DEADLINE};

const RP_ID: &str = "auths:presence";
const AUTO: TouchMode = TouchMode::Auto {
    delay: std::time::Duration::ZERO,
};

fn start(state: &Path, mode: TouchMode) -> Arc<VirtualKey> {
    Arc::new(
        VirtualKey::start(VirtualKeyConfig {
            state: StateLocation::File(state.to_path_buf()),
            touch_mode: mode,
            timings: HidTimings::default(),
            pin: None,
            u2f_only: true,
            max_credentials_in_list: None,
            cred_protect: None,
        })
        .unwrap(),
    )
}

fn options(deadline: std::time::Duration) -> DeviceOptions {
    DeviceOptions {
        deadline,
        ..DeviceOptions::default()
    }
}

/// Open the key as the agent does: a CTAPHID channel, the backend chosen by what it speaks.
fn open(key: &VirtualKey, opts: DeviceOptions) -> Box<dyn SecurityKey> {
    select::open_transport(Box::new(key.connect()), "virtual u2f".into(), opts, true).unwrap()
}

fn enroll(
    key: &VirtualKey,
    store: &TokenStore,
    on_up_needed: &mut dyn FnMut(),
) -> Result<Enrollment, EnrollmentError> {
    let mut opened = open(key, options(DEADLINE));
    enroll_key(
        opened.as_mut(),
        store,
        None,
        RP_ID,
        &[Algorithm::Es256, Algorithm::EdDsa],
        on_up_needed,
        &mut NoPinSource,
    )
}

fn sign(
    key: &mut Box<dyn SecurityKey>,
    store: &TokenStore,
    on_up_needed: &mut dyn FnMut(),
    cancel: &CancelToken,
) -> Result<auths_presence::presence::touch::VerifiedTouch, TouchError> {
    let creds = Credentials::enrolled(&store.list().unwrap()).unwrap();
    let ask = auths_presence::presence::touch::Ask {
        creds: &creds,
        client_data: "u2f test client data",
        require_uv: false,
        pin_token: None,
    };
    let wait = auths_presence::ctap::backend::Waiting {
        on_up_needed,
        on_busy: None,
        cancel: Some(cancel),
    };
    touch(key, &ask, wait)
}

#[test]
fn u2f_only_key_enrolls_and_signs_through_ctaphid_and_verifies() {
    let dir = short_tempdir();
    let key = start(&dir.path().join("k.state"), AUTO);
    // The CTAP2 backend refuses it; the selector's opener picks U2F.
    let refused =
        OpenedKey::from_transport(Box::new(key.connect()), "v".into(), options(DEADLINE), true);
    assert!(refused.is_err(), "a U2F-only key has no getInfo");

    let store = TokenStore::open(&dir.path().join("home")).unwrap();
    let e = enroll(&key, &store, &mut || {}).unwrap();
    assert_eq!(e.protocol, "u2f");
    assert_eq!(e.algorithm, -7, "U2F is ES256 only");
    assert_eq!(e.aaguid, vec![0; 16]);
    assert_eq!(e.attestation_certificate, ATTESTATION_CERTIFICATE);
    assert!(e.virtual_key);
    assert_eq!(e.sign_count, 0);
    assert_eq!(key.touch_count(), 1);

    let mut k = open(&key, options(DEADLINE));
    assert_eq!(k.protocol(), "u2f");
    assert_eq!(k.supported_algorithms().unwrap(), Some(vec![-7]));
    let uv = k.uv_info().unwrap();
    assert!(!uv.pin_set && !uv.needed_to_sign() && !uv.needed_to_enroll());
    let first = sign(&mut k, &store, &mut || {}, &CancelToken::new()).unwrap();
    let a = first.assertion();
    assert_eq!(a.credential_id(), e.credential_id.as_slice());
    assert!(a.flags().user_present());
    assert!(!a.flags().user_verified());
    assert_eq!(first.evidence().auth_data.len(), 37);
    assert!(first.virtual_key());
    store
        .save_sign_count(a.credential_id(), a.sign_count())
        .unwrap();

    // What a receipt keeps verifies offline, as `auths audit verify` does.
    let before = Credentials::enrolled(std::slice::from_ref(&e)).unwrap();
    verify_evidence(&before, first.evidence(), false).unwrap();

    // The counter goes up with every signature, and a second one is a second touch.
    let second = sign(&mut k, &store, &mut || {}, &CancelToken::new()).unwrap();
    assert!(second.assertion().sign_count() > a.sign_count());
    assert_eq!(key.touch_count(), 3);
}

/// A U2F-only key whose INIT reply claims CBOR (reports pass through, the capability byte gains
/// CAPABILITY_CBOR): its CTAPHID_CBOR still gets ERR_INVALID_CMD, as such keys answer.
struct ClaimsCbor(auths_presence::ctap::virtual_key::VirtualTransport);

impl auths_presence::ctap::Transport for ClaimsCbor {
    fn write_report(
        &mut self,
        report: &[u8; 64],
    ) -> Result<(), auths_presence::ctap::TransportError> {
        self.0.write_report(report)
    }

    fn read_report(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Option<[u8; 64]>, auths_presence::ctap::TransportError> {
        use auths_presence::ctap::framing::{capability, cmd};
        let mut r = self.0.read_report(timeout)?;
        if let Some(report) = &mut r {
            if report[4] == 0x80 | cmd::INIT {
                // 7 header bytes, then nonce (8), cid (4), versions (4), capabilities.
                report[7 + 16] |= capability::CBOR;
            }
        }
        Ok(r)
    }
}

#[test]
fn a_key_that_claims_cbor_but_refuses_get_info_falls_back_to_u2f() {
    let dir = short_tempdir();
    let key = start(&dir.path().join("k.state"), AUTO);
    let open_claiming = || {
        select::open_transport(
            Box::new(ClaimsCbor(key.connect())),
            "claims cbor".into(),
            options(DEADLINE),
            true,
        )
        .unwrap()
    };
    let mut k = open_claiming();
    assert_eq!(k.protocol(), "u2f");
    let store = TokenStore::open(&dir.path().join("home")).unwrap();
    let e = enroll_key(
        k.as_mut(),
        &store,
        None,
        RP_ID,
        &[Algorithm::Es256],
        &mut || {},
        &mut NoPinSource,
    )
    .unwrap();
    assert_eq!(e.protocol, "u2f");
    let mut k = open_claiming();
    sign(&mut k, &store, &mut || {}, &CancelToken::new()).unwrap();
}

#[test]
fn manual_touch_is_asked_for_once_and_approves_one_request() {
    let dir = short_tempdir();
    let key = start(&dir.path().join("k.state"), TouchMode::Manual);
    let store = TokenStore::open(&dir.path().join("home")).unwrap();
    let asked = AtomicUsize::new(0);
    // The user touches when the key blinks, as `auths sim touch` would.
    let mut press = || {
        asked.fetch_add(1, Ordering::SeqCst);
        key.touch().expect("the key blinks when it asks");
    };
    enroll(&key, &store, &mut press).unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 1, "one prompt per request");
    assert_eq!(key.touch_count(), 1);
    // The touch was used up: nothing waits now.
    assert_eq!(key.touch(), Err(KeyTouchError::NothingWaiting));

    let mut k = open(&key, options(DEADLINE));
    sign(&mut k, &store, &mut press, &CancelToken::new()).unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert_eq!(key.touch_count(), 2);
    assert_eq!(key.touch(), Err(KeyTouchError::NothingWaiting));
}

#[test]
fn a_touch_that_never_comes_is_a_deadline() {
    let dir = short_tempdir();
    let key = start(&dir.path().join("k.state"), AUTO);
    let store = TokenStore::open(&dir.path().join("home")).unwrap();
    enroll(&key, &store, &mut || {}).unwrap();
    key.set_touch_mode(TouchMode::Never);

    let short = std::time::Duration::from_millis(300);
    let mut k = open(&key, options(short));
    let mut blinked = 0;
    let r = sign(&mut k, &store, &mut || blinked += 1, &CancelToken::new());
    assert!(
        matches!(r, Err(TouchError::Device(CtapError::Deadline(d))) if d == short),
        "{r:?}"
    );
    assert_eq!(blinked, 1, "the prompt is shown once");

    // Enrolling on a key nobody touches: the enrollment's own error.
    let other = TokenStore::open(&dir.path().join("home2")).unwrap();
    let mut k = open(&key, options(short));
    let e = enroll_key(
        k.as_mut(),
        &other,
        None,
        RP_ID,
        &[Algorithm::Es256],
        &mut || {},
        &mut NoPinSource,
    );
    assert!(matches!(e, Err(EnrollmentError::NoTouch)), "{e:?}");
}

#[test]
fn cancel_stops_the_wait_for_a_touch() {
    let dir = short_tempdir();
    let key = start(&dir.path().join("k.state"), AUTO);
    let store = TokenStore::open(&dir.path().join("home")).unwrap();
    enroll(&key, &store, &mut || {}).unwrap();
    key.set_touch_mode(TouchMode::Never);

    let mut k = open(&key, options(DEADLINE));
    let cancel = CancelToken::new();
    // Cancelled the moment the key starts to blink (as the agent does when the client hangs up).
    let r = sign(&mut k, &store, &mut || cancel.cancel(), &cancel);
    assert!(
        matches!(r, Err(TouchError::Device(CtapError::Cancelled))),
        "{r:?}"
    );
    // The channel still works afterwards.
    key.set_touch_mode(AUTO);
    sign(&mut k, &store, &mut || {}, &CancelToken::new()).unwrap();
}

#[test]
fn check_only_finds_the_right_handle_among_several_and_exclude_list_holds() {
    let dir = short_tempdir();
    let a = start(&dir.path().join("a.state"), AUTO);
    let b = start(&dir.path().join("b.state"), AUTO);
    let store = TokenStore::open(&dir.path().join("home")).unwrap();
    let ea = enroll(&a, &store, &mut || {}).unwrap();
    // Key B does not hold A's handle (check-only: 0x6a80), so it enrolls.
    let eb = enroll(&b, &store, &mut || {}).unwrap();
    assert_ne!(ea.credential_id, eb.credential_id);
    // Key A holds one of the enrolled handles (check-only: 0x6985): refused.
    let again = enroll(&a, &store, &mut || {});
    assert!(
        matches!(again, Err(EnrollmentError::KeyAlreadyEnrolled)),
        "{again:?}"
    );

    for (key, want) in [(&b, &eb), (&a, &ea)] {
        let before = key.touch_count();
        let mut k = open(key, options(DEADLINE));
        let t = sign(&mut k, &store, &mut || {}, &CancelToken::new()).unwrap();
        assert_eq!(t.assertion().credential_id(), want.credential_id.as_slice());
        assert_eq!(key.touch_count(), before + 1, "probes need no touch");
    }
}

#[test]
fn a_foreign_key_handle_is_no_credentials() {
    let dir = short_tempdir();
    let a = start(&dir.path().join("a.state"), AUTO);
    let b = start(&dir.path().join("b.state"), AUTO);
    let c = start(&dir.path().join("c.state"), AUTO);
    let store = TokenStore::open(&dir.path().join("home")).unwrap();
    enroll(&a, &store, &mut || {}).unwrap();

    // One enrolled handle, not C's: U2F_AUTHENTICATE answers 0x6a80.
    let mut k = open(&c, options(DEADLINE));
    let r = sign(&mut k, &store, &mut || {}, &CancelToken::new());
    assert!(
        matches!(
            r,
            Err(TouchError::Device(CtapError::Status(
                StatusCode::NoCredentials
            )))
        ),
        "{r:?}"
    );
    // Several, none C's: every check-only probe says no, and no touch is asked for.
    enroll(&b, &store, &mut || {}).unwrap();
    let mut blinked = false;
    let r = sign(&mut k, &store, &mut || blinked = true, &CancelToken::new());
    assert!(
        matches!(
            r,
            Err(TouchError::Device(CtapError::Status(
                StatusCode::NoCredentials
            )))
        ),
        "{r:?}"
    );
    assert!(!blinked);
    assert_eq!(c.touch_count(), 0);
}

#[test]
fn the_agent_signs_after_a_u2f_touch_and_the_receipt_verifies() {
    use auths_presence::presence::audit::{verify_chain, AuditLog, Outcome};
    use auths_presence::presence::policy::Policy;
    use auths_presence::presence::prompt::Prompter;
    use auths_presence::presence::touch::PresenceKey;

    let dir = short_tempdir();
    let home = dir.path().join("home");
    let key = start(&dir.path().join("k.state"), AUTO);
    enroll(&key, &TokenStore::open(&home).unwrap(), &mut || {}).unwrap();
    // The gate opens the key as `SelectorOpener` does: the backend the key speaks.
    let opener = {
        let key = key.clone();
        move || -> Result<Box<dyn PresenceKey>, CtapError> {
            let k = select::open_transport(
                Box::new(key.connect()),
                "virtual u2f".into(),
                options(DEADLINE),
                true,
            )?;
            Ok(Box::new(k))
        }
    };
    let gate = presence_gate(
        &home,
        opener,
        Policy::PerSignature,
        DEADLINE,
        Prompter::new(false),
        None,
    );
    let agent = Agent::start(Arc::new(gate), Opts::default());
    let keys = keygen(dir.path());
    agent.add(&[&keys.ed25519]);
    std::fs::remove_file(&keys.ed25519).unwrap();

    let msg = dir.path().join("commit");
    std::fs::write(&msg, "commit one\n").unwrap();
    let pubkey = keys.ed25519.with_extension("pub");
    let mut cmd = std::process::Command::new(SSH_KEYGEN);
    cmd.args(["-Y", "sign", "-n", "git", "-f", s(&pubkey), s(&msg)]);
    agent.client_env(&mut cmd);
    let out = run_bounded(cmd);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        key.touch_count(),
        2,
        "enrollment, then one touch for the signature"
    );

    let lines = AuditLog::new(&home).read().unwrap();
    let outcomes: Vec<Outcome> = lines
        .iter()
        .map(|(_, r)| r.as_ref().unwrap().outcome())
        .collect();
    assert_eq!(outcomes, vec![Outcome::Approved]);
    let tokens = TokenStore::open(&home).unwrap().list().unwrap();
    let chain = AuditLog::new(&home).read_chain().unwrap();
    let report = verify_chain(&chain, &tokens);
    assert!(report.ok(), "{:?}", report.problems);
    assert!(
        report.chain.anchored_through > 0,
        "the U2F touch signs the chain too"
    );
}

#[test]
fn enrollments_written_before_the_protocol_field_read_as_ctap2() {
    use auths_presence::presence::enrollment::parse_tokens;
    let old = br#"{"version":1,"tokens":[{"id":"0123456789abcdef","label":"main",
        "credential_id":"11","public_key_cose":"a0","algorithm":-7,"rp_id":"auths:presence",
        "aaguid":"00","virtual_key":false,"device":"usb","created":1,"sign_count":3}]}"#;
    let t = parse_tokens(old, Path::new("tokens.json")).unwrap();
    assert_eq!(t[0].protocol, "ctap2");
    assert!(t[0].attestation_certificate.is_empty());
}

#[test]
fn auths_sim_serve_u2f_only_enrolls_lists_u2f_and_tests() {
    let user = User::new();
    let mut sim = Sim::start(&user.dir, "u", &["--u2f-only"]);
    let device = sim.device();

    let out = user.ok(&["token", "enroll", "--device", &device]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ES256"), "{stdout}");

    let list = user.json(&["token", "list", "--json"]);
    let t = &list.as_array().expect("a JSON array")[0];
    assert_eq!(t["protocol"], "u2f", "{t}");
    assert_eq!(t["algorithm"], -7, "{t}");
    assert_eq!(t["virtual_key"], Value::Bool(true), "{t}");
    assert_eq!(
        t["attestation_certificate"],
        hex::encode(ATTESTATION_CERTIFICATE),
        "{t}"
    );
    let text = user.ok(&["token", "list"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("PROTO"), "{text}");
    assert!(
        text.lines().nth(1).is_some_and(|l| l.contains(" u2f ")),
        "{text}"
    );

    let test = user.json(&["token", "test", "--device", &device, "--json"]);
    assert_eq!(test["ok"], Value::Bool(true), "{test}");
    assert_eq!(test["user_present"], Value::Bool(true), "{test}");
    assert!(test["sign_count"].as_u64().unwrap() > 0, "{test}");

    assert!(sim.stop(), "auths sim serve did not stop cleanly");
}
