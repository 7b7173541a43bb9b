//! The virtual key driven through the report-level `Transport` with hand-built CTAPHID
//! packets (framing.rs), the way a host on hidraw sees it.

use std::time::{Duration, Instant};

use auths_presence::ctap::cbor::{self, Value};
use auths_presence::ctap::framing::{
    cmd, err, fragment, keepalive, Message, Packet, Progress, Reassembler, Report, CID_BROADCAST,
    REPORT_LEN,
};
use auths_presence::ctap::virtual_key::{
    HidTimings, StateLocation, TouchError, TouchMode, VirtualKey, VirtualKeyConfig, VIRTUAL_AAGUID,
};
use auths_presence::ctap::{Transport, TransportError};
use sha2::{Digest, Sha256};

/// Every read in these tests is bounded by this.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

fn config(mode: TouchMode) -> VirtualKeyConfig {
    VirtualKeyConfig {
        state: StateLocation::InMemory,
        touch_mode: mode,
        timings: HidTimings {
            touch_timeout: Duration::from_secs(10),
            msg_timeout: Duration::from_millis(150),
            keepalive_interval: Duration::from_millis(100),
        },
        pin: None,
        u2f_only: false,
        max_credentials_in_list: None,
        cred_protect: None,
    }
}

fn start(mode: TouchMode) -> VirtualKey {
    VirtualKey::start(config(mode)).unwrap()
}

const AUTO: TouchMode = TouchMode::Auto {
    delay: Duration::ZERO,
};

struct Host<T: Transport> {
    t: T,
}

impl<T: Transport> Host<T> {
    fn send(&mut self, cid: u32, command: u8, payload: &[u8]) {
        for r in fragment(cid, command, payload).unwrap() {
            self.t.write_report(&r).unwrap();
        }
    }

    fn raw(&mut self, r: &Report) {
        self.t.write_report(r).unwrap();
    }

    /// The next message on `cid` is KEEPALIVE with status UPNEEDED.
    fn expect_up_needed(&mut self, cid: u32) {
        let ka = self.recv(cid);
        assert_eq!(
            (ka.cmd, ka.payload[0]),
            (cmd::KEEPALIVE, keepalive::UPNEEDED)
        );
    }

    /// The next complete message on `cid`; reports for other channels are skipped.
    fn recv(&mut self, cid: u32) -> Message {
        let deadline = Instant::now() + READ_TIMEOUT;
        let mut asm: Option<Reassembler> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self
                .t
                .read_report(left)
                .unwrap()
                .unwrap_or_else(|| panic!("no answer on channel {cid:08x} in time"));
            let p = Packet::parse(&r);
            if p.cid() != cid {
                continue;
            }
            let progress = match asm.as_mut() {
                None => {
                    let (a, pr) = Reassembler::start(&p).unwrap();
                    asm = a;
                    pr
                }
                Some(a) => a.push(&p).unwrap(),
            };
            if let Progress::Done(m) = progress {
                return m;
            }
        }
    }

    /// The next non-KEEPALIVE message on `cid`, and the KEEPALIVE statuses seen before it.
    fn recv_final(&mut self, cid: u32) -> (Message, Vec<u8>) {
        let mut ka = Vec::new();
        loop {
            let m = self.recv(cid);
            if m.cmd == cmd::KEEPALIVE {
                ka.push(m.payload[0]);
            } else {
                return (m, ka);
            }
        }
    }

    /// Nothing more arrives for `cid` within `wait` (used only where silence is the point).
    #[cfg_attr(not(unix), allow(dead_code))]
    fn silent(&mut self, cid: u32, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.t.read_report(left).unwrap() {
                None => return true,
                Some(r) if Packet::parse(&r).cid() == cid => return false,
                Some(_) => {}
            }
        }
    }

    fn init(&mut self) -> u32 {
        let nonce = rand::random::<[u8; 8]>();
        self.send(CID_BROADCAST, cmd::INIT, &nonce);
        loop {
            let m = self.recv(CID_BROADCAST);
            if m.payload[..8] == nonce {
                assert_eq!(m.cmd, cmd::INIT);
                assert_eq!(m.payload.len(), 17);
                return u32::from_be_bytes(m.payload[8..12].try_into().unwrap());
            }
        }
    }

    fn cbor(&mut self, cid: u32, command: u8, req: Option<Value>) -> (u8, Option<Value>) {
        let mut payload = vec![command];
        if let Some(v) = req {
            payload.extend(cbor::encode(&v));
        }
        self.send(cid, cmd::CBOR, &payload);
        let (m, _) = self.recv_final(cid);
        assert_eq!(m.cmd, cmd::CBOR, "answer {m:?}");
        let body = (m.payload.len() > 1).then(|| cbor::decode(&m.payload[1..]).unwrap());
        (m.payload[0], body)
    }
}

fn host(key: &VirtualKey) -> Host<impl Transport> {
    Host { t: key.connect() }
}

/// A host connected to `key`, with a channel allocated by CTAPHID_INIT.
fn channel(key: &VirtualKey) -> (Host<impl Transport>, u32) {
    let mut h = host(key);
    let cid = h.init();
    (h, cid)
}

fn hid_error(m: &Message) -> u8 {
    assert_eq!(m.cmd, cmd::ERROR, "expected CTAPHID_ERROR, got {m:?}");
    m.payload[0]
}

const CDH: [u8; 32] = [0x5a; 32];
const RP: &str = "auths:presence";

fn make_credential_req(algs: &[i64]) -> Value {
    Value::Map(vec![
        (Value::int(1), Value::bytes(&CDH)),
        (
            Value::int(2),
            Value::Map(vec![(Value::text("id"), Value::text(RP))]),
        ),
        (
            Value::int(3),
            Value::Map(vec![(Value::text("id"), Value::bytes(b"u1"))]),
        ),
        (
            Value::int(4),
            Value::Array(
                algs.iter()
                    .map(|a| {
                        Value::Map(vec![
                            (Value::text("alg"), Value::int(*a)),
                            (Value::text("type"), Value::text("public-key")),
                        ])
                    })
                    .collect(),
            ),
        ),
    ])
}

fn get_assertion_req(rp: &str, id: &[u8]) -> Value {
    Value::Map(vec![
        (Value::int(1), Value::text(rp)),
        (Value::int(2), Value::bytes(&CDH)),
        (
            Value::int(3),
            Value::Array(vec![Value::Map(vec![
                (Value::text("id"), Value::bytes(id)),
                (Value::text("type"), Value::text("public-key")),
            ])]),
        ),
    ])
}

/// A virtual key that touches itself, a host channel to it, and the id of one credential of
/// `alg` enrolled on that channel.
fn enrolled_key(alg: i64) -> (VirtualKey, Host<impl Transport>, u32, Vec<u8>) {
    let key = start(AUTO);
    let (mut h, cid) = channel(&key);
    let (id, _, _) = enroll(&mut h, cid, alg);
    (key, h, cid, id)
}

/// makeCredential over CTAPHID; returns (credential id, COSE key, counter).
fn enroll<T: Transport>(h: &mut Host<T>, cid: u32, alg: i64) -> (Vec<u8>, Value, u32) {
    let (status, body) = h.cbor(cid, 0x01, Some(make_credential_req(&[alg])));
    assert_eq!(status, 0);
    let body = body.unwrap();
    let ad = body.get_int(2).unwrap().as_bytes().unwrap();
    assert_eq!(&ad[..32], Sha256::digest(RP.as_bytes()).as_slice());
    assert_eq!(ad[32], 0x41, "UP and AT");
    assert_eq!(&ad[37..53], &VIRTUAL_AAGUID);
    let len = usize::from(u16::from_be_bytes([ad[53], ad[54]]));
    let id = ad[55..55 + len].to_vec();
    let cose = cbor::decode(&ad[55 + len..]).unwrap();
    let mut signed = ad.to_vec();
    signed.extend_from_slice(&CDH);
    let att = body.get_int(3).unwrap();
    assert_eq!(att.get_text("alg").unwrap().as_i64(), Some(alg));
    verify(
        &cose,
        &signed,
        att.get_text("sig").unwrap().as_bytes().unwrap(),
    );
    (id, cose, u32::from_be_bytes(ad[33..37].try_into().unwrap()))
}

fn verify(cose: &Value, msg: &[u8], sig: &[u8]) {
    match cose.get_int(3).unwrap().as_i64().unwrap() {
        -7 => {
            use p256::ecdsa::signature::Verifier;
            assert_eq!(cose.get_int(1).unwrap().as_i64(), Some(2));
            assert_eq!(cose.get_int(-1).unwrap().as_i64(), Some(1));
            let mut sec1 = vec![4u8];
            sec1.extend_from_slice(cose.get_int(-2).unwrap().as_bytes().unwrap());
            sec1.extend_from_slice(cose.get_int(-3).unwrap().as_bytes().unwrap());
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
            let sig = p256::ecdsa::Signature::from_der(sig).unwrap();
            vk.verify(msg, &sig).unwrap();
        }
        -8 => {
            assert_eq!(cose.get_int(1).unwrap().as_i64(), Some(1));
            assert_eq!(cose.get_int(-1).unwrap().as_i64(), Some(6));
            let x: [u8; 32] = cose
                .get_int(-2)
                .unwrap()
                .as_bytes()
                .unwrap()
                .try_into()
                .unwrap();
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap();
            assert_eq!(sig.len(), 64);
            let sig = ed25519_dalek::Signature::from_slice(sig).unwrap();
            vk.verify_strict(msg, &sig).unwrap();
        }
        other => panic!("unexpected alg {other}"),
    }
}

#[test]
fn init_allocates_channels_echoes_nonce_and_resyncs() {
    let key = start(AUTO);
    let mut h = host(&key);
    let nonce = [9u8, 8, 7, 6, 5, 4, 3, 2];
    h.send(CID_BROADCAST, cmd::INIT, &nonce);
    let m = h.recv(CID_BROADCAST);
    assert_eq!(m.cmd, cmd::INIT);
    assert_eq!(m.payload.len(), 17);
    assert_eq!(&m.payload[..8], &nonce);
    let cid = u32::from_be_bytes(m.payload[8..12].try_into().unwrap());
    assert!(cid != 0 && cid != CID_BROADCAST);
    assert_eq!(m.payload[12], 2, "CTAPHID protocol 2");
    assert_eq!(m.payload[16] & 0x0d, 0x0d, "CBOR | WINK | NMSG");
    let cid2 = h.init();
    assert_ne!(cid, cid2);
    // INIT on an allocated channel resyncs it: same cid, answered on that channel.
    h.send(cid, cmd::INIT, &nonce);
    let m = h.recv(cid);
    assert_eq!(&m.payload[..8], &nonce);
    assert_eq!(&m.payload[8..12], &cid.to_be_bytes());
    // WINK works and getInfo marks the key as virtual.
    h.send(cid, cmd::WINK, &[]);
    assert_eq!(h.recv(cid).cmd, cmd::WINK);
    let (status, info) = h.cbor(cid, 0x04, None);
    assert_eq!(status, 0);
    assert_eq!(
        info.unwrap().get_int(3).unwrap().as_bytes(),
        Some(&VIRTUAL_AAGUID[..])
    );
}

#[test]
fn every_open_handle_sees_every_report() {
    let key = start(AUTO);
    let mut a = host(&key);
    let mut b = host(&key);
    let cid = a.init();
    a.send(cid, cmd::PING, b"hello");
    assert_eq!(a.recv(cid).payload, b"hello");
    assert_eq!(b.recv(cid).payload, b"hello", "hidraw-like fan-out");
}

#[test]
fn ping_multi_packet_round_trip() {
    let key = start(AUTO);
    let (mut h, cid) = channel(&key);
    let payload: Vec<u8> = (0..1000u32).map(|i| (i * 31) as u8).collect();
    h.send(cid, cmd::PING, &payload);
    let m = h.recv(cid);
    assert_eq!(m.cmd, cmd::PING);
    assert_eq!(m.payload, payload);
}

#[test]
fn channel_busy_for_second_channel_during_pending_touch() {
    let key = start(TouchMode::Manual);
    let (mut h, a) = channel(&key);
    let b = h.init();
    h.send(a, cmd::CBOR, &[0x0b]);
    h.expect_up_needed(a);
    h.send(b, cmd::PING, b"x");
    assert_eq!(hid_error(&h.recv(b)), err::CHANNEL_BUSY);
    key.touch().unwrap();
    let (m, _) = h.recv_final(a);
    assert_eq!((m.cmd, m.payload.as_slice()), (cmd::CBOR, &[0u8][..]));
    // Free again.
    h.send(b, cmd::PING, b"y");
    assert_eq!(h.recv(b).payload, b"y");
    assert_eq!(key.touch_count(), 1);
}

#[test]
fn cancel_during_upneeded_gives_keepalive_cancel() {
    let (key, mut h, cid, id) = enrolled_key(-7);
    key.set_touch_mode(TouchMode::Manual);
    let mut req = vec![0x02];
    req.extend(cbor::encode(&get_assertion_req(RP, &id)));
    h.send(cid, cmd::CBOR, &req);
    h.expect_up_needed(cid);
    h.send(cid, cmd::CANCEL, &[]);
    let (m, _) = h.recv_final(cid);
    assert_eq!((m.cmd, m.payload.as_slice()), (cmd::CBOR, &[0x2du8][..]));
    assert_eq!(key.touch(), Err(TouchError::NothingWaiting));
    // CANCEL with nothing running has no answer.
    h.send(cid, cmd::CANCEL, &[]);
    h.send(cid, cmd::PING, b"after");
    assert_eq!(h.recv(cid).payload, b"after");
}

#[test]
fn keepalive_upneeded_repeats_until_auto_touch() {
    let key = start(TouchMode::Auto {
        delay: Duration::from_millis(350),
    });
    let (mut h, cid) = channel(&key);
    h.send(cid, cmd::CBOR, &[0x0b]);
    let (m, ka) = h.recv_final(cid);
    assert_eq!(m.payload, [0]);
    assert!(ka.len() >= 3, "keepalives about every 100 ms: {ka:?}");
    assert!(ka.iter().all(|s| *s == keepalive::UPNEEDED));
    assert_eq!(key.touch_count(), 1);
}

#[test]
fn touch_never_times_out_with_user_action_timeout() {
    let mut cfg = config(TouchMode::Never);
    cfg.timings.touch_timeout = Duration::from_millis(250);
    let key = VirtualKey::start(cfg).unwrap();
    let (mut h, cid) = channel(&key);
    let (status, _) = h.cbor(cid, 0x0b, None);
    assert_eq!(status, 0x2f);
    assert_eq!(key.touch_count(), 0);
}

#[test]
fn ctaphid_errors_for_malformed_input() {
    let key = start(AUTO);
    let (mut h, cid) = channel(&key);

    // Unknown command, and CTAP1 MSG on an NMSG key.
    h.send(cid, 0x33, &[]);
    assert_eq!(hid_error(&h.recv(cid)), err::INVALID_CMD);
    h.send(cid, cmd::MSG, &[0; 10]);
    assert_eq!(hid_error(&h.recv(cid)), err::INVALID_CMD);

    // LOCK for more than 10 s.
    h.send(cid, cmd::LOCK, &[11]);
    assert_eq!(hid_error(&h.recv(cid)), err::INVALID_PAR);

    // BCNT over 7609, INIT with a wrong length, CBOR with nothing in it.
    let mut r = [0u8; REPORT_LEN];
    r[..4].copy_from_slice(&cid.to_be_bytes());
    r[4] = 0x80 | cmd::PING;
    r[5..7].copy_from_slice(&7610u16.to_be_bytes());
    h.raw(&r);
    assert_eq!(hid_error(&h.recv(cid)), err::INVALID_LEN);
    h.send(CID_BROADCAST, cmd::INIT, &[1; 7]);
    assert_eq!(hid_error(&h.recv(CID_BROADCAST)), err::INVALID_LEN);
    h.send(cid, cmd::CBOR, &[]);
    assert_eq!(hid_error(&h.recv(cid)), err::INVALID_LEN);

    // Continuation out of order.
    let reports = fragment(cid, cmd::PING, &[7u8; 200]).unwrap();
    h.raw(&reports[0]);
    h.raw(&reports[2]);
    assert_eq!(hid_error(&h.recv(cid)), err::INVALID_SEQ);
    // A new message in the middle of one.
    h.raw(&reports[0]);
    h.raw(&fragment(cid, cmd::PING, b"new").unwrap()[0]);
    assert_eq!(hid_error(&h.recv(cid)), err::INVALID_SEQ);

    // Channel 0, an unallocated channel, broadcast for something other than INIT.
    h.send(0, cmd::PING, b"x");
    assert_eq!(hid_error(&h.recv(0)), err::INVALID_CHANNEL);
    let stranger = cid.wrapping_add(0x1000_0000);
    h.send(stranger, cmd::PING, b"x");
    assert_eq!(hid_error(&h.recv(stranger)), err::INVALID_CHANNEL);
    h.send(CID_BROADCAST, cmd::PING, b"x");
    assert_eq!(hid_error(&h.recv(CID_BROADCAST)), err::INVALID_CHANNEL);

    // The continuation never comes: MSG_TIMEOUT (msg_timeout is 150 ms here).
    h.raw(&reports[0]);
    assert_eq!(hid_error(&h.recv(cid)), err::MSG_TIMEOUT);

    // The device still works.
    h.send(cid, cmd::PING, b"ok");
    assert_eq!(h.recv(cid).payload, b"ok");
}

#[test]
fn ctap2_errors_through_ctaphid() {
    let key = start(AUTO);
    let (mut h, cid) = channel(&key);
    // Unknown CTAP2 command, non-canonical CBOR, wrong type, missing field.
    h.send(cid, cmd::CBOR, &[0x55]);
    assert_eq!(h.recv_final(cid).0.payload, [0x01]);
    h.send(cid, cmd::CBOR, &[0x02, 0xa1, 0x18, 0x01, 0x60]);
    assert_eq!(h.recv_final(cid).0.payload, [0x12]);
    h.send(cid, cmd::CBOR, &[0x02, 0x80]);
    assert_eq!(h.recv_final(cid).0.payload, [0x11]);
    let (s, _) = h.cbor(
        cid,
        0x02,
        Some(Value::Map(vec![(Value::int(1), Value::text(RP))])),
    );
    assert_eq!(s, 0x14);
    let (s, _) = h.cbor(cid, 0x01, Some(make_credential_req(&[-257])));
    assert_eq!(s, 0x26, "UNSUPPORTED_ALGORITHM");
}

#[test]
fn make_credential_then_get_assertion_es256_and_eddsa() {
    let key = start(AUTO);
    let (mut h, cid) = channel(&key);
    let mut last = 0u32;
    for alg in [-7i64, -8] {
        let (id, cose, counter) = enroll(&mut h, cid, alg);
        assert!(counter > last);
        last = counter;
        for _ in 0..2 {
            let (status, body) = h.cbor(cid, 0x02, Some(get_assertion_req(RP, &id)));
            assert_eq!(status, 0);
            let body = body.unwrap();
            let cred = body.get_int(1).unwrap();
            assert_eq!(cred.get_text("id").unwrap().as_bytes(), Some(&id[..]));
            assert_eq!(cred.get_text("type").unwrap().as_text(), Some("public-key"));
            let ad = body.get_int(2).unwrap().as_bytes().unwrap();
            assert_eq!(ad.len(), 37);
            assert_eq!(&ad[..32], Sha256::digest(RP.as_bytes()).as_slice());
            assert_eq!(ad[32] & 0x01, 0x01, "UP");
            let counter = u32::from_be_bytes(ad[33..37].try_into().unwrap());
            assert!(counter > last, "counter increases");
            last = counter;
            let mut signed = ad.to_vec();
            signed.extend_from_slice(&CDH);
            verify(&cose, &signed, body.get_int(3).unwrap().as_bytes().unwrap());
        }
    }
    assert_eq!(key.touch_count(), 6);
}

#[test]
fn tampered_or_foreign_credential_gives_no_credentials() {
    let (_key, mut h, cid, id) = enrolled_key(-8);
    let mut tampered = id.clone();
    tampered[30] ^= 0x80;
    let (s, _) = h.cbor(cid, 0x02, Some(get_assertion_req(RP, &tampered)));
    assert_eq!(s, 0x2e);
    let (s, _) = h.cbor(cid, 0x02, Some(get_assertion_req("other-rp", &id)));
    assert_eq!(s, 0x2e);
    let other = start(AUTO);
    let (mut h2, cid2) = channel(&other);
    let (s, _) = h2.cbor(cid2, 0x02, Some(get_assertion_req(RP, &id)));
    assert_eq!(s, 0x2e, "another key's master secret");
}

#[test]
fn touch_with_nothing_waiting_errors_and_count_counts() {
    let key = start(TouchMode::Manual);
    assert_eq!(key.touch(), Err(TouchError::NothingWaiting));
    assert_eq!(key.touch_count(), 0);
    let (mut h, cid) = channel(&key);
    for n in 1..=2u64 {
        h.send(cid, cmd::CBOR, &[0x0b]);
        assert_eq!(h.recv(cid).cmd, cmd::KEEPALIVE);
        key.touch().unwrap();
        assert_eq!(h.recv_final(cid).0.payload, [0]);
        assert_eq!(key.touch_count(), n);
    }
    assert_eq!(key.touch(), Err(TouchError::NothingWaiting));
    assert_eq!(key.touch_count(), 2);
}

#[cfg(unix)]
#[test]
fn state_file_private_survives_restart_and_corrupt_is_an_error() {
    use auths_presence::ctap::virtual_key::VirtualKeyError;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vk/state.json");
    let mut cfg = config(AUTO);
    cfg.state = StateLocation::File(path.clone());

    let key = VirtualKey::start(cfg.clone()).unwrap();
    let (mut h, cid) = channel(&key);
    let (id, cose, c1) = enroll(&mut h, cid, -7);
    key.shutdown();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let key = VirtualKey::start(cfg.clone()).unwrap();
    let (mut h, cid) = channel(&key);
    let (status, body) = h.cbor(cid, 0x02, Some(get_assertion_req(RP, &id)));
    assert_eq!(status, 0, "the credential survives a restart");
    let body = body.unwrap();
    let ad = body.get_int(2).unwrap().as_bytes().unwrap();
    assert!(u32::from_be_bytes(ad[33..37].try_into().unwrap()) > c1);
    let mut signed = ad.to_vec();
    signed.extend_from_slice(&CDH);
    verify(&cose, &signed, body.get_int(3).unwrap().as_bytes().unwrap());
    key.shutdown();

    std::fs::write(&path, b"{ not json").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        VirtualKey::start(cfg),
        Err(VirtualKeyError::State(_))
    ));
    assert_eq!(std::fs::read(&path).unwrap(), b"{ not json");
}

#[test]
fn shutdown_disconnects_transports() {
    let key = start(AUTO);
    let mut t = key.connect();
    key.shutdown();
    assert!(matches!(
        t.read_report(Duration::from_millis(500)),
        Err(TransportError::Disconnected)
    ));
    assert!(matches!(
        t.write_report(&[0u8; REPORT_LEN]),
        Err(TransportError::Disconnected)
    ));
}

#[cfg(unix)]
#[test]
fn sim_socket_serves_reports_and_touch() {
    use auths_presence::ctap::virtual_key::{serve_unix, sim_touch, SimError, SimTransport};
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("run/vk.sock");
    let key = start(TouchMode::Manual);
    let server = serve_unix(&sock, &key).unwrap();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(matches!(serve_unix(&sock, &key), Err(SimError::InUse(_))));

    assert!(matches!(sim_touch(&sock), Err(SimError::NothingWaiting)));
    let mut h = Host {
        t: SimTransport::connect(&sock).unwrap(),
    };
    let cid = h.init();
    let payload = vec![0xabu8; 300];
    h.send(cid, cmd::PING, &payload);
    assert_eq!(h.recv(cid).payload, payload);

    h.send(cid, cmd::CBOR, &[0x0b]);
    assert_eq!(h.recv(cid).cmd, cmd::KEEPALIVE);
    sim_touch(&sock).unwrap();
    assert_eq!(h.recv_final(cid).0.payload, [0]);
    assert_eq!(key.touch_count(), 1);
    assert!(h.silent(cid, Duration::from_millis(50)));

    // The key goes away: the client reads Disconnected.
    server.shutdown();
    assert!(!sock.exists());
    key.shutdown();
    assert!(matches!(
        h.t.read_report(READ_TIMEOUT),
        Err(TransportError::Disconnected)
    ));
}

/// `auths sim serve` exits on SIGTERM even when its socket files were removed first (as a
/// test's clean-up does): shutdown must not depend on connecting to those paths.
#[cfg(unix)]
#[test]
fn sim_serve_exits_on_sigterm_after_its_sockets_were_removed() {
    use auths_presence::ctap::virtual_key::control_path;
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::process::{Command, Stdio};

    /// Kills and reaps the child if the test fails midway.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    // Short path: Unix socket paths are limited to about 100 bytes.
    let dir = tempfile::Builder::new()
        .prefix("auths-vk")
        .tempdir_in("/tmp")
        .unwrap();
    let sock = dir.path().join("vk.sock");
    let ctl = control_path(&sock);
    let mut child = Reap(
        Command::new(env!("CARGO_BIN_EXE_auths"))
            .args(["sim", "serve", "--socket"])
            .arg(&sock)
            .arg("--state")
            .arg(dir.path().join("vk.state"))
            .env_remove("AUTHS_DEVICE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn auths sim serve"),
    );
    // Ready once both sockets exist (the control socket is bound second).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(sock.exists() && ctl.exists()) {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "auths sim serve exited early"
        );
        assert!(Instant::now() < deadline, "sockets not created in time");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The server answers: it is past start-up and blocked in its accept loops.
    let mut h = Host {
        t: auths_presence::ctap::virtual_key::SimTransport::connect(&sock).unwrap(),
    };
    h.init();

    std::fs::remove_file(&sock).unwrap();
    std::fs::remove_file(&ctl).unwrap();
    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "auths sim serve still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
}
