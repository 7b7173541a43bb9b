//! The real host client (`Device` and the CTAP2 client operations) against the virtual key
//! through its 64-byte report transport: the code that talks to a YubiKey, end to end, with
//! `verify_assertion` at the end as the agent does it.
//!
//! Waits are bounded: threads hand their results back over channels read with a timeout, and
//! the moment a key waits for a touch is learned from the keepalive callback, never guessed
//! with a sleep.

use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use auths_presence::ctap::client_pin::{self, permissions, PinError, PinUvAuthToken};
use auths_presence::ctap::command::{
    Algorithm, GetAssertionRequest, GetAssertionResponse, MakeCredentialRequest,
    MakeCredentialResponse, PinUvAuth, RelyingParty, UserEntity,
};
use auths_presence::ctap::cose::{CoseKey, ALG_EDDSA, ALG_ES256};
use auths_presence::ctap::device::{CancelToken, Device, DeviceOptions};
use auths_presence::ctap::pin::PinProtocol;
use auths_presence::ctap::transaction::KeepaliveStatus;
use auths_presence::ctap::virtual_key::{
    HidTimings, PinConfig, StateLocation, TouchError, TouchMode, VirtualKey, VirtualKeyConfig,
    VirtualTransport, VIRTUAL_AAGUID,
};
use auths_presence::ctap::{CtapError, HidErrorCode, StatusCode, TransportError};
use auths_presence::presence::verify::{
    verify_assertion, AllowedCredential, Expected, VerifiedAssertion, VerifyError,
};
use sha2::{Digest, Sha256};

const RP: &str = "auths:presence";

/// Longest any test waits for a thread's result; far above what any step needs.
const BOUND: Duration = Duration::from_secs(10);

const AUTO: TouchMode = TouchMode::Auto {
    delay: Duration::ZERO,
};

fn opts() -> DeviceOptions {
    DeviceOptions {
        read_timeout: Duration::from_secs(2),
        deadline: Duration::from_secs(5),
        poll_interval: Duration::from_millis(10),
    }
}

fn start(mode: TouchMode, touch_timeout: Duration) -> VirtualKey {
    start_with_pin(mode, touch_timeout, None)
}

fn start_with_pin(mode: TouchMode, touch_timeout: Duration, pin: Option<PinConfig>) -> VirtualKey {
    VirtualKey::start(VirtualKeyConfig {
        state: StateLocation::InMemory,
        touch_mode: mode,
        timings: HidTimings {
            touch_timeout,
            msg_timeout: Duration::from_millis(500),
            keepalive_interval: Duration::from_millis(20),
        },
        pin,
        u2f_only: false,
        max_credentials_in_list: None,
        cred_protect: None,
    })
    .unwrap()
}

fn open(key: &VirtualKey) -> Device<VirtualTransport> {
    Device::open(key.connect(), opts()).unwrap()
}

/// A fresh client data hash, as the agent makes one per request.
fn fresh_cdh() -> [u8; 32] {
    Sha256::digest(rand::random::<[u8; 32]>()).into()
}

/// A credential as enrollment stores it.
struct Enrolled {
    id: Vec<u8>,
    public_key: CoseKey,
    sign_count: u32,
}

impl Enrolled {
    fn allowed(&self, sign_count: u32) -> Vec<AllowedCredential> {
        vec![AllowedCredential {
            id: self.id.clone(),
            public_key: self.public_key,
            sign_count,
        }]
    }
}

fn enroll<T: auths_presence::ctap::Transport>(dev: &mut Device<T>, alg: Algorithm) -> Enrolled {
    let user_id: [u8; 16] = rand::random();
    let req = MakeCredentialRequest {
        client_data_hash: fresh_cdh(),
        rp: RelyingParty {
            id: RP,
            name: Some("auths presence gate"),
        },
        user: UserEntity {
            id: &user_id,
            name: Some("auths"),
            display_name: None,
        },
        algorithms: &[alg],
        exclude_list: &[],
        pin_uv_auth: None,
    };
    let resp = dev.make_credential(&req, &mut |_| {}, None).unwrap();
    let ad = &resp.auth_data;
    assert!(ad.flags.user_present(), "makeCredential without UP");
    assert_eq!(ad.rp_id_hash, <[u8; 32]>::from(Sha256::digest(RP)));
    let att = ad
        .attested_credential_data
        .as_ref()
        .expect("attested credential data");
    assert_eq!(att.aaguid, VIRTUAL_AAGUID);
    let public_key = att.public_key().unwrap();
    assert_eq!(public_key.algorithm(), alg.cose_id());
    Enrolled {
        id: att.credential_id.clone(),
        public_key,
        sign_count: ad.sign_count,
    }
}

/// A virtual key that touches itself, a channel to it, and one credential of `alg` enrolled
/// through that channel.
fn enrolled_key(
    touch_timeout: Duration,
    alg: Algorithm,
) -> (VirtualKey, Device<VirtualTransport>, Enrolled) {
    let key = start(AUTO, touch_timeout);
    let mut dev = open(&key);
    let cred = enroll(&mut dev, alg);
    (key, dev, cred)
}

fn assertion_request<'a>(
    rp_id: &'a str,
    cdh: [u8; 32],
    allow: &'a [&'a [u8]],
) -> GetAssertionRequest<'a> {
    GetAssertionRequest {
        rp_id,
        client_data_hash: cdh,
        allow_list: allow,
        user_verification: false,
        pin_uv_auth: None,
    }
}

/// One getAssertion for `cred` on `rp_id` with a fresh clientDataHash, returned with the
/// result.
fn request_assertion<T: auths_presence::ctap::Transport>(
    dev: &mut Device<T>,
    rp_id: &str,
    cred: &Enrolled,
    on_keepalive: &mut dyn FnMut(KeepaliveStatus),
) -> ([u8; 32], Result<GetAssertionResponse, CtapError>) {
    let cdh = fresh_cdh();
    let allow = [cred.id.as_slice()];
    let r = dev.get_assertion(&assertion_request(rp_id, cdh, &allow), on_keepalive, None);
    (cdh, r)
}

/// A getAssertion for `cred` on [`RP`] that must succeed.
fn assert_once<T: auths_presence::ctap::Transport>(
    dev: &mut Device<T>,
    cred: &Enrolled,
) -> ([u8; 32], GetAssertionResponse) {
    let (cdh, r) = request_assertion(dev, RP, cred, &mut |_| {});
    (cdh, r.unwrap())
}

/// `r` failed with the CTAP status `want`.
fn assert_status<T: std::fmt::Debug>(r: &Result<T, CtapError>, want: StatusCode) {
    assert!(
        matches!(r, Err(CtapError::Status(s)) if *s == want),
        "want {want:?}, got {r:?}"
    );
}

fn verify(
    cred: &Enrolled,
    stored: u32,
    cdh: [u8; 32],
    resp: &GetAssertionResponse,
) -> Result<VerifiedAssertion, VerifyError> {
    let allowed = cred.allowed(stored);
    verify_assertion(
        &Expected {
            rp_id: RP,
            client_data_hash: cdh,
            allowed: &allowed,
            require_uv: false,
        },
        resp,
    )
}

/// Run `f` on its own thread; its result comes back through [`Bounded::wait`].
struct Bounded<R> {
    rx: Receiver<R>,
    thread: Option<JoinHandle<()>>,
}

impl<R: Send + 'static> Bounded<R> {
    fn spawn(f: impl FnOnce() -> R + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        Bounded {
            rx,
            thread: Some(thread),
        }
    }

    fn wait(mut self) -> R {
        let r = self
            .rx
            .recv_timeout(BOUND)
            .expect("the client thread neither answered nor failed in time: a hang");
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        r
    }
}

/// `op` on `dev` on its own thread, with a keepalive callback that reports each status.
fn in_thread<R: Send + 'static>(
    mut dev: Device<VirtualTransport>,
    op: impl FnOnce(&mut Device<VirtualTransport>, &mut dyn FnMut(KeepaliveStatus)) -> R
        + Send
        + 'static,
) -> (Receiver<KeepaliveStatus>, Bounded<R>) {
    let (ka_tx, ka_rx) = mpsc::channel();
    let job = Bounded::spawn(move || {
        let mut on_keepalive = |s| {
            let _ = ka_tx.send(s);
        };
        op(&mut dev, &mut on_keepalive)
    });
    (ka_rx, job)
}

/// A getAssertion result with the client data hash it was asked for.
type AssertionOutcome = (Result<GetAssertionResponse, CtapError>, [u8; 32]);

/// getAssertion for `cred_id` on its own thread.
fn assertion_in_thread(
    dev: Device<VirtualTransport>,
    cred_id: Vec<u8>,
    cancel: Option<CancelToken>,
) -> (Receiver<KeepaliveStatus>, Bounded<AssertionOutcome>) {
    in_thread(dev, move |dev, on_keepalive| {
        let cdh = fresh_cdh();
        let allow = [cred_id.as_slice()];
        let r = dev.get_assertion(
            &assertion_request(RP, cdh, &allow),
            on_keepalive,
            cancel.as_ref(),
        );
        (r, cdh)
    })
}

/// makeCredential (ES256) on its own thread.
fn make_credential_in_thread(
    dev: Device<VirtualTransport>,
    cancel: Option<CancelToken>,
) -> (
    Receiver<KeepaliveStatus>,
    Bounded<Result<MakeCredentialResponse, CtapError>>,
) {
    in_thread(dev, move |dev, on_keepalive| {
        let req = MakeCredentialRequest {
            client_data_hash: fresh_cdh(),
            rp: RelyingParty { id: RP, name: None },
            user: UserEntity {
                id: b"user",
                name: None,
                display_name: None,
            },
            algorithms: &[Algorithm::Es256],
            exclude_list: &[],
            pin_uv_auth: None,
        };
        dev.make_credential(&req, on_keepalive, cancel.as_ref())
    })
}

/// Block (bounded) until the key has said it waits for a touch.
/// Start a request (given its cancel token), cancel it once the key waits for a touch, and
/// return what the request ended with.
fn cancelled_while_up_needed<R: Send + 'static>(
    start: impl FnOnce(Option<CancelToken>) -> (Receiver<KeepaliveStatus>, Bounded<R>),
) -> R {
    let cancel = CancelToken::new();
    let (ka, job) = start(Some(cancel.clone()));
    wait_up_needed(&ka);
    cancel.cancel();
    job.wait()
}

fn wait_up_needed(rx: &Receiver<KeepaliveStatus>) {
    loop {
        match rx.recv_timeout(BOUND) {
            Ok(KeepaliveStatus::UpNeeded) => return,
            Ok(_) => continue,
            Err(e) => panic!("no KEEPALIVE UPNEEDED from the key: {e}"),
        }
    }
}

#[test]
fn get_info_reports_both_algorithms_and_the_virtual_aaguid() {
    let key = start(AUTO, Duration::from_secs(5));
    let mut dev = open(&key);
    let info = dev.get_info().unwrap();
    assert_eq!(info.aaguid, VIRTUAL_AAGUID);
    assert!(info.versions.iter().any(|v| v == "FIDO_2_0"));
    assert!(info.supports_algorithm(ALG_ES256));
    assert!(info.supports_algorithm(ALG_EDDSA));
    assert_eq!(dev.info().protocol, 2);
}

#[test]
fn get_info_and_init_advertise_only_what_the_key_does() {
    use auths_presence::ctap::cbor::{self, Value};
    use auths_presence::ctap::framing::{capability, cmd};
    let key = start(AUTO, Duration::from_secs(5));
    let mut dev = open(&key);
    let info = dev.get_info().unwrap();
    assert!(
        !info.versions.iter().any(|v| v == "U2F_V2"),
        "{:?}",
        info.versions
    );
    assert_ne!(info.option("rk"), Some(true));
    assert_eq!(info.option("clientPin"), None);
    assert!(info.pin_uv_auth_protocols.is_empty());
    // No CTAP1: INIT says NMSG, and CTAPHID_MSG is an invalid command.
    let caps = dev.info().capabilities;
    assert_eq!(caps & capability::NMSG, capability::NMSG);
    assert_eq!(caps & capability::CBOR, capability::CBOR);
    let err = dev
        .transact(cmd::MSG, &[0; 7], &mut |_| {}, None)
        .unwrap_err();
    assert!(
        matches!(err, CtapError::Hid(HidErrorCode::InvalidCmd)),
        "{err:?}"
    );
    // No resident keys: a makeCredential asking for one is refused.
    let user_id = [1u8; 16];
    let req = MakeCredentialRequest {
        client_data_hash: fresh_cdh(),
        rp: RelyingParty { id: RP, name: None },
        user: UserEntity {
            id: &user_id,
            name: None,
            display_name: None,
        },
        algorithms: &[Algorithm::Es256],
        exclude_list: &[],
        pin_uv_auth: None,
    };
    let payload = req.to_payload();
    let Value::Map(mut params) = cbor::decode(&payload[1..]).unwrap() else {
        panic!("parameters are a map")
    };
    params.retain(|(k, _)| *k != Value::int(7));
    params.push((
        Value::int(7),
        Value::Map(vec![(Value::text("rk"), Value::Bool(true))]),
    ));
    let mut rk_payload = vec![payload[0]];
    rk_payload.extend(cbor::encode(&Value::Map(params)));
    let resp = dev.cbor(&rk_payload, &mut |_| {}, None).unwrap();
    assert_eq!(resp, vec![StatusCode::UnsupportedOption.byte()]);
}

fn enroll_assert_verify(alg: Algorithm) {
    let (key, mut dev, cred) = enrolled_key(Duration::from_secs(5), alg);

    let (cdh1, r1) = assert_once(&mut dev, &cred);
    let v1 = verify(&cred, cred.sign_count, cdh1, &r1).unwrap();
    assert_eq!(v1.algorithm(), alg.cose_id());
    assert_eq!(v1.credential_id(), cred.id.as_slice());
    assert!(v1.flags().user_present());
    assert!(
        v1.sign_count() > cred.sign_count,
        "counter did not increase"
    );

    // The next assertion, checked against the counter stored after the first, passes.
    let (cdh2, r2) = assert_once(&mut dev, &cred);
    assert_ne!(cdh1, cdh2);
    let v2 = verify(&cred, v1.sign_count(), cdh2, &r2).unwrap();
    assert!(v2.sign_count() > v1.sign_count());

    // Replaying the first response after the second was accepted: the counter went back.
    assert_eq!(
        verify(&cred, v2.sign_count(), cdh1, &r1),
        Err(VerifyError::CounterNotIncreased {
            stored: v2.sign_count(),
            received: v1.sign_count(),
        })
    );
    // The second response does not verify against the first's client data hash.
    assert!(matches!(
        verify(&cred, v1.sign_count(), cdh1, &r2),
        Err(VerifyError::Signature(_))
    ));
    // Enroll + two assertions, each one auto touch.
    assert_eq!(key.touch_count(), 3);
}

#[test]
fn es256_enroll_assert_verify_and_counter() {
    enroll_assert_verify(Algorithm::Es256);
}

#[test]
fn eddsa_enroll_assert_verify_and_counter() {
    enroll_assert_verify(Algorithm::EdDsa);
}

#[test]
fn both_credentials_on_one_key_are_told_apart() {
    let key = start(AUTO, Duration::from_secs(5));
    let mut dev = open(&key);
    let es = enroll(&mut dev, Algorithm::Es256);
    let ed = enroll(&mut dev, Algorithm::EdDsa);
    assert_ne!(es.id, ed.id);
    let (cdh, resp) = assert_once(&mut dev, &ed);
    // Checked against the other credential only: not ours.
    assert_eq!(
        verify(&es, 0, cdh, &resp),
        Err(VerifyError::UnknownCredential)
    );
    let mut allowed = es.allowed(es.sign_count);
    allowed.extend(ed.allowed(ed.sign_count));
    let v = verify_assertion(
        &Expected {
            rp_id: RP,
            client_data_hash: cdh,
            allowed: &allowed,
            require_uv: false,
        },
        &resp,
    )
    .unwrap();
    assert_eq!(v.credential_id(), ed.id.as_slice());
    assert_eq!(v.algorithm(), ALG_EDDSA);
}

#[test]
fn wrong_rp_id_gives_no_credentials() {
    let (_key, mut dev, cred) = enrolled_key(Duration::from_secs(5), Algorithm::Es256);
    let (_, r) = request_assertion(&mut dev, "example.org", &cred, &mut |_| {});
    assert_status(&r, StatusCode::NoCredentials);
    // The channel is still usable.
    let (cdh, resp) = assert_once(&mut dev, &cred);
    verify(&cred, cred.sign_count, cdh, &resp).unwrap();
}

#[test]
fn touch_never_gives_user_action_timeout() {
    let (key, mut dev, cred) = enrolled_key(Duration::from_millis(300), Algorithm::Es256);
    key.set_touch_mode(TouchMode::Never);
    let mut seen = Vec::new();
    let started = Instant::now();
    let (_, r) = request_assertion(&mut dev, RP, &cred, &mut |s| seen.push(s));
    assert_status(&r, StatusCode::UserActionTimeout);
    assert!(started.elapsed() < opts().deadline);
    assert_eq!(seen, vec![KeepaliveStatus::UpNeeded]);
    assert_eq!(key.touch_count(), 1, "only the enrollment was touched");
}

#[test]
fn cancel_during_up_needed_gives_keepalive_cancel_and_no_touch() {
    let key = start(TouchMode::Manual, Duration::from_secs(5));
    let r = cancelled_while_up_needed(|cancel| make_credential_in_thread(open(&key), cancel));
    assert_status(&r, StatusCode::KeepaliveCancel);
    assert_eq!(key.touch_count(), 0);
    // The cancelled request no longer waits: a touch now finds nothing to approve.
    assert_eq!(key.touch(), Err(TouchError::NothingWaiting));
    assert_eq!(key.touch_count(), 0);
}

#[test]
fn cancelled_assertion_is_not_signed_and_the_channel_stays_usable() {
    let (key, dev, cred) = enrolled_key(Duration::from_secs(5), Algorithm::Es256);
    key.set_touch_mode(TouchMode::Manual);
    let (r, _) =
        cancelled_while_up_needed(|cancel| assertion_in_thread(dev, cred.id.clone(), cancel));
    assert_status(&r, StatusCode::KeepaliveCancel);
    assert_eq!(key.touch_count(), 1, "only the enrollment was touched");

    // A new request after the cancel is answered normally.
    key.set_touch_mode(AUTO);
    let mut dev = open(&key);
    let (cdh, resp) = assert_once(&mut dev, &cred);
    verify(&cred, cred.sign_count, cdh, &resp).unwrap();
}

#[test]
fn a_second_program_waits_its_turn_while_the_first_waits_for_a_touch() {
    let (key, first, cred) = enrolled_key(Duration::from_secs(5), Algorithm::EdDsa);
    key.set_touch_mode(TouchMode::Manual);

    let (ka, job) = assertion_in_thread(first, cred.id.clone(), None);
    wait_up_needed(&ka);

    // A second program opens the same key and gets its own channel (INIT always works), but
    // the key answers it CHANNEL_BUSY while the first waits for a touch: it is told so, and
    // waits its turn instead of failing.
    let (ka2, second) = assertion_in_thread(open(&key), cred.id.clone(), None);
    match ka2.recv_timeout(BOUND) {
        Ok(KeepaliveStatus::Busy) => {}
        Ok(s) => panic!("the second program heard {s:?} before the key was free"),
        Err(e) => panic!("the second program was not told the key is busy: {e}"),
    }
    key.touch().unwrap();
    let (r, cdh) = job.wait();
    verify(&cred, cred.sign_count, cdh, &r.unwrap()).unwrap();

    // The key is free: the second request reaches it and waits for its own touch.
    wait_up_needed(&ka2);
    key.touch().unwrap();
    let (r, cdh) = second.wait();
    let resp = r.unwrap();
    assert!(resp.auth_data.sign_count > cred.sign_count);
    verify(&cred, cred.sign_count + 1, cdh, &resp).unwrap();
    assert_eq!(key.touch_count(), 3);
}

#[test]
fn key_disappearing_mid_transaction_is_a_typed_error_not_a_hang() {
    let key = start(TouchMode::Manual, Duration::from_secs(30));
    let started = Instant::now();
    let (ka, job) = make_credential_in_thread(open(&key), None);
    wait_up_needed(&ka);
    key.shutdown();
    let r = job.wait();
    assert!(
        matches!(r, Err(CtapError::Transport(TransportError::Disconnected))),
        "{r:?}"
    );
    assert!(started.elapsed() < opts().deadline, "not bounded");
}

#[test]
fn ping_through_the_client_echoes_multi_packet_payloads() {
    let key = start(AUTO, Duration::from_secs(5));
    let mut dev = open(&key);
    for len in [0usize, 1, 57, 58, 1024, 7609] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        assert_eq!(dev.ping(&data).unwrap(), data, "len {len}");
    }
}

// ---- clientPIN (CTAP 2.1 §6.5) against the virtual key started with PIN support ----------

fn pin_key(protocols: Vec<PinProtocol>) -> (VirtualKey, Device<VirtualTransport>) {
    let key = start_with_pin(
        AUTO,
        Duration::from_secs(5),
        Some(PinConfig {
            protocols,
            ..PinConfig::default()
        }),
    );
    let dev = open(&key);
    (key, dev)
}

/// A getAssertion for `cred` on `rp_id` carrying `token`'s pinUvAuthParam.
fn assert_with_token<T: auths_presence::ctap::Transport>(
    dev: &mut Device<T>,
    rp_id: &str,
    cred: &Enrolled,
    token: &PinUvAuthToken,
) -> ([u8; 32], Result<GetAssertionResponse, CtapError>) {
    let cdh = fresh_cdh();
    let allow = [cred.id.as_slice()];
    let req = GetAssertionRequest {
        pin_uv_auth: Some(PinUvAuth {
            protocol: token.protocol().number(),
            param: token.param(&cdh),
        }),
        ..assertion_request(rp_id, cdh, &allow)
    };
    (cdh, dev.get_assertion(&req, &mut |_| {}, None))
}

fn pin_set_token_and_user_verified_assertion(protocols: Vec<PinProtocol>) {
    let (_key, mut dev) = pin_key(protocols.clone());
    let info = dev.get_info().unwrap();
    assert_eq!(info.option("clientPin"), Some(false), "supported, not set");
    assert_eq!(info.option("pinUvAuthToken"), Some(true));
    assert_eq!(
        info.pin_uv_auth_protocols,
        protocols.iter().map(|p| p.number()).collect::<Vec<_>>()
    );
    // No PIN yet: a token cannot be had.
    assert!(matches!(
        dev.pin_token(&info, b"123456", permissions::GET_ASSERTION, RP),
        Err(PinError::PinNotSet)
    ));
    assert!(matches!(
        dev.set_pin(&info, b"123"),
        Err(PinError::PolicyViolation {
            min_length: Some(4)
        })
    ));
    dev.set_pin(&info, b"123456").unwrap();
    let info = dev.get_info().unwrap();
    assert_eq!(info.option("clientPin"), Some(true));
    assert!(dev.set_pin(&info, b"654321").is_err(), "setPIN only once");
    let protocol = client_pin::protocol_for(&info).unwrap();
    assert_eq!(protocol, protocols[0]);
    assert_eq!(dev.pin_retries(protocol).unwrap(), (8, false));

    // makeCredUvNotRqd: enrollment needs no PIN.
    let cred = enroll(&mut dev, Algorithm::Es256);
    let token = dev
        .pin_token(&info, b"123456", permissions::GET_ASSERTION, RP)
        .unwrap();
    let (cdh, r) = assert_with_token(&mut dev, RP, &cred, &token);
    let resp = r.unwrap();
    assert!(resp.auth_data.flags.user_present() && resp.auth_data.flags.user_verified());
    verify(&cred, 0, cdh, &resp).unwrap();
    // Without the token: presence only.
    let (_, plain) = assert_once(&mut dev, &cred);
    assert!(!plain.auth_data.flags.user_verified());

    // A token bound to another rp id, or without the ga permission, approves nothing here.
    let other = dev
        .pin_token(
            &info,
            b"123456",
            permissions::GET_ASSERTION,
            "other.example",
        )
        .unwrap();
    assert_status(
        &assert_with_token(&mut dev, RP, &cred, &other).1,
        StatusCode::PinAuthInvalid,
    );
    let mc_only = dev
        .pin_token(&info, b"123456", permissions::MAKE_CREDENTIAL, RP)
        .unwrap();
    assert_status(
        &assert_with_token(&mut dev, RP, &cred, &mc_only).1,
        StatusCode::PinAuthInvalid,
    );
    // Each new token replaces the last: the first one no longer verifies.
    assert_status(
        &assert_with_token(&mut dev, RP, &cred, &token).1,
        StatusCode::PinAuthInvalid,
    );
}

#[test]
fn pin_protocol_two_sets_a_pin_and_its_token_makes_assertions_user_verified() {
    pin_set_token_and_user_verified_assertion(vec![PinProtocol::Two, PinProtocol::One]);
}

#[test]
fn pin_protocol_one_sets_a_pin_and_its_token_makes_assertions_user_verified() {
    pin_set_token_and_user_verified_assertion(vec![PinProtocol::One]);
}

#[test]
fn wrong_pins_count_down_and_three_in_a_row_block_pin_use_until_replugged() {
    let (_key, mut dev) = pin_key(vec![PinProtocol::Two]);
    let info = dev.get_info().unwrap();
    dev.set_pin(&info, b"123456").unwrap();
    let info = dev.get_info().unwrap();
    let ga = permissions::GET_ASSERTION;
    for left in [7, 6] {
        match dev.pin_token(&info, b"000000", ga, RP) {
            Err(PinError::WrongPin { retries }) => assert_eq!(retries, Some(left)),
            other => panic!("{other:?}"),
        }
    }
    // The third wrong PIN in a row blocks PIN use until the key is re-plugged; even the
    // right PIN is refused now.
    assert!(matches!(
        dev.pin_token(&info, b"000000", ga, RP),
        Err(PinError::AuthBlocked)
    ));
    assert!(matches!(
        dev.pin_token(&info, b"123456", ga, RP),
        Err(PinError::AuthBlocked)
    ));
    assert_eq!(dev.pin_retries(PinProtocol::Two).unwrap(), (5, true));
    let e = PinError::WrongPin { retries: Some(5) }.to_string();
    assert!(!e.contains("000000") && !e.contains("123456"), "{e}");
}

#[test]
fn an_allow_list_longer_than_the_key_takes_is_probed_in_parts_and_touched_once() {
    // The default (8 in a list), and a key that takes one credential per list.
    for max in [None, Some(1)] {
        allow_list_split(max);
    }
}

fn allow_list_split(max_in_list: Option<usize>) {
    use auths_presence::ctap::backend::{GetAssertionArgs, SecurityKey, Waiting};
    use auths_presence::ctap::select::OpenedKey;
    let key = VirtualKey::start(VirtualKeyConfig {
        max_credentials_in_list: max_in_list,
        ..VirtualKeyConfig::default()
    })
    .unwrap();
    let cred = enroll(&mut open(&key), Algorithm::Es256);
    let mut opened =
        OpenedKey::from_transport(Box::new(key.connect()), "virtual".into(), opts(), true).unwrap();
    let max = opened.info.max_credential_count_in_list.unwrap() as usize;
    // Foreign ids (another key's), with ours in the second part.
    let foreign: Vec<Vec<u8>> = (0..max + 3)
        .map(|_| [rand::random::<[u8; 31]>(), rand::random::<[u8; 31]>()].concat())
        .collect();
    let mut ids: Vec<&[u8]> = foreign.iter().map(Vec::as_slice).collect();
    ids.insert(max + 1, &cred.id);
    let client_data = b"client data";
    let before = key.touch_count();
    let mut prompts = 0;
    let resp = opened
        .get_assertion(
            &GetAssertionArgs {
                rp_id: RP,
                client_data,
                allow_list: &ids,
                pin_token: None,
                user_verification: false,
            },
            Waiting {
                on_up_needed: &mut || prompts += 1,
                on_busy: None,
                cancel: None,
            },
        )
        .unwrap();
    assert!(
        resp.auth_data.flags.user_present(),
        "the real request had a touch"
    );
    assert_eq!(key.touch_count() - before, 1, "probes ask for no touch");
    let cdh: [u8; 32] = Sha256::digest(client_data).into();
    // The probes moved the counter too (they are assertions, UP clear): the touch is later.
    verify(&cred, cred.sign_count + 1, cdh, &resp).unwrap();

    // None of ours: no credential, and no touch asked for.
    let none: Vec<&[u8]> = foreign.iter().map(Vec::as_slice).collect();
    let r = opened.get_assertion(
        &GetAssertionArgs {
            rp_id: RP,
            client_data,
            allow_list: &none,
            pin_token: None,
            user_verification: false,
        },
        Waiting {
            on_up_needed: &mut || prompts += 1,
            on_busy: None,
            cancel: None,
        },
    );
    assert_status(&r, StatusCode::NoCredentials);
    assert_eq!(key.touch_count() - before, 1);
}
