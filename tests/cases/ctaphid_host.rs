//! The CTAPHID host code against keys that misbehave: every failure is a typed error, never a
//! panic, and never a hang past the deadline. The misbehaving key is a scripted transport;
//! the code under test (`ctap::device`) is the real one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use auths_presence::ctap::device::{CancelToken, Device, DeviceOptions};
use auths_presence::ctap::framing::{self, cmd, Packet, Report, REPORT_LEN};
use auths_presence::ctap::transaction::KeepaliveStatus;
use auths_presence::ctap::{CtapError, HidErrorCode, Transport, TransportError};

const CID: u32 = 0x0102_0304;

/// What the scripted key sends back after a request (not INIT) arrives.
type Script = Box<dyn FnMut(&framing::Message) -> Vec<Event> + Send>;

enum Event {
    Report(Report),
    Disconnect,
}

struct ScriptedKey {
    script: Script,
    pending: VecDeque<Event>,
    partial: Option<framing::Reassembler>,
    writes: Vec<Report>,
    gone: bool,
    init_nonce_override: Option<[u8; 8]>,
    /// Once the script runs dry, send this report every 10 ms (a key that never finishes).
    forever: Option<Report>,
}

impl ScriptedKey {
    fn new(script: Script) -> Self {
        ScriptedKey {
            script,
            pending: VecDeque::new(),
            partial: None,
            writes: Vec::new(),
            gone: false,
            init_nonce_override: None,
            forever: None,
        }
    }
}

fn init_reply(nonce: &[u8], cid: u32) -> Report {
    let mut payload = nonce.to_vec();
    payload.extend_from_slice(&cid.to_be_bytes());
    payload.extend_from_slice(&[2, 5, 4, 3, 0x05]);
    framing::fragment(framing::CID_BROADCAST, cmd::INIT, &payload).unwrap()[0]
}

impl Transport for ScriptedKey {
    fn write_report(&mut self, report: &Report) -> Result<(), TransportError> {
        if self.gone {
            return Err(TransportError::Disconnected);
        }
        self.writes.push(*report);
        let packet = Packet::parse(report);
        let done = match &mut self.partial {
            Some(r) => match r.push(&packet).unwrap() {
                framing::Progress::Done(m) => Some(m),
                framing::Progress::NeedMore => None,
            },
            None => {
                let (r, p) = framing::Reassembler::start(&packet).unwrap();
                self.partial = r;
                match p {
                    framing::Progress::Done(m) => Some(m),
                    framing::Progress::NeedMore => None,
                }
            }
        };
        if let Some(m) = done {
            self.partial = None;
            if m.cmd == cmd::INIT {
                let nonce = self
                    .init_nonce_override
                    .unwrap_or_else(|| m.payload[..8].try_into().unwrap());
                self.pending
                    .push_back(Event::Report(init_reply(&nonce, CID)));
            } else {
                let events = (self.script)(&m);
                self.pending.extend(events);
            }
        }
        Ok(())
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Option<Report>, TransportError> {
        match self.pending.pop_front() {
            Some(Event::Report(r)) => Ok(Some(r)),
            Some(Event::Disconnect) => {
                self.gone = true;
                Err(TransportError::Disconnected)
            }
            None if self.gone => Err(TransportError::Disconnected),
            None if self.forever.is_some() && self.writes.len() > 1 => {
                std::thread::sleep(Duration::from_millis(10).min(timeout));
                Ok(self.forever)
            }
            None => {
                // Nothing to say: behave like a blocking read that times out.
                std::thread::sleep(timeout);
                Ok(None)
            }
        }
    }
}

fn opts() -> DeviceOptions {
    DeviceOptions {
        read_timeout: Duration::from_millis(300),
        deadline: Duration::from_secs(2),
        poll_interval: Duration::from_millis(10),
    }
}

fn reports(cid: u32, command: u8, payload: &[u8]) -> Vec<Event> {
    framing::fragment(cid, command, payload)
        .unwrap()
        .into_iter()
        .map(Event::Report)
        .collect()
}

fn open(script: Script) -> Device<ScriptedKey> {
    Device::open(ScriptedKey::new(script), opts()).expect("INIT")
}

fn echo() -> Script {
    Box::new(|m| reports(CID, m.cmd, &m.payload))
}

#[test]
fn init_allocates_channel_and_ping_echoes() {
    let mut dev = open(echo());
    assert_eq!(dev.channel(), CID);
    assert_eq!(dev.info().version, (5, 4, 3));
    let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    assert_eq!(dev.ping(&data).unwrap(), data);
}

#[test]
fn init_with_foreign_nonce_is_refused() {
    let mut key = ScriptedKey::new(echo());
    key.init_nonce_override = Some([9; 8]);
    let start = Instant::now();
    let err = Device::open(key, opts()).unwrap_err();
    assert!(matches!(err, CtapError::InitNonceMismatch), "{err:?}");
    assert!(start.elapsed() < opts().deadline + Duration::from_millis(500));
}

#[test]
fn reports_for_other_channels_are_skipped() {
    let mut dev = open(Box::new(|m| {
        let mut ev = reports(
            0x0bad_0bad,
            m.cmd,
            b"not for you, this is a long payload for someone else ....",
        );
        ev.extend(reports(CID, m.cmd, &m.payload));
        ev
    }));
    assert_eq!(dev.ping(b"hello").unwrap(), b"hello");
}

#[test]
fn keepalives_reach_the_callback_once_per_change() {
    let mut dev = open(Box::new(|m| {
        let mut ev = Vec::new();
        for status in [1u8, 2, 2, 2] {
            ev.extend(reports(CID, cmd::KEEPALIVE, &[status]));
        }
        ev.extend(reports(CID, cmd::CBOR, &[0x00, 0xa0]));
        let _ = m;
        ev
    }));
    let mut seen = Vec::new();
    let resp = dev.cbor(&[0x04], &mut |s| seen.push(s), None).unwrap();
    assert_eq!(resp, vec![0x00, 0xa0]);
    assert_eq!(
        seen,
        vec![KeepaliveStatus::Processing, KeepaliveStatus::UpNeeded]
    );
}

/// The framing error `r` failed with.
fn framing_error<T: std::fmt::Debug>(r: Result<T, CtapError>) -> framing::FramingError {
    match r {
        Err(CtapError::Framing(e)) => e,
        other => panic!("want a framing error, got {other:?}"),
    }
}

#[test]
fn wrong_seq_is_a_framing_error() {
    let mut dev = open(Box::new(|m| {
        let mut r = framing::fragment(CID, m.cmd, &[7u8; 200]).unwrap();
        r[2][4] = 5; // second continuation claims SEQ 5
        r.into_iter().map(Event::Report).collect()
    }));
    assert_eq!(
        framing_error(dev.ping(&[7u8; 200])),
        framing::FramingError::BadSeq {
            expected: 1,
            got: 5
        }
    );
}

#[test]
fn bcnt_over_maximum_is_refused() {
    let mut dev = open(Box::new(|_| {
        let mut r = [0u8; REPORT_LEN];
        r[..4].copy_from_slice(&CID.to_be_bytes());
        r[4] = cmd::PING | 0x80;
        r[5..7].copy_from_slice(&7610u16.to_be_bytes());
        vec![Event::Report(r)]
    }));
    assert_eq!(
        framing_error(dev.ping(b"x")),
        framing::FramingError::TooLong(7610)
    );
}

#[test]
fn truncated_message_times_out_within_bounds() {
    let mut dev = open(Box::new(|m| {
        let mut r = framing::fragment(CID, m.cmd, &[1u8; 300]).unwrap();
        r.truncate(3);
        r.into_iter().map(Event::Report).collect()
    }));
    let start = Instant::now();
    let err = dev.ping(&[1u8; 300]).unwrap_err();
    assert!(matches!(err, CtapError::ReadTimeout(_)), "{err:?}");
    assert!(start.elapsed() < opts().deadline);
}

#[test]
fn silent_key_times_out() {
    let mut dev = open(Box::new(|_| Vec::new()));
    let err = dev.cbor(&[0x04], &mut |_| {}, None).unwrap_err();
    assert!(matches!(err, CtapError::ReadTimeout(_)), "{err:?}");
}

#[test]
fn endless_keepalives_stop_at_the_deadline() {
    let mut key = ScriptedKey::new(Box::new(|_| Vec::new()));
    key.forever = Some(framing::fragment(CID, cmd::KEEPALIVE, &[2]).unwrap()[0]);
    let mut dev = Device::open(key, opts()).unwrap();
    let start = Instant::now();
    let err = dev.cbor(&[0x02], &mut |_| {}, None).unwrap_err();
    assert!(matches!(err, CtapError::Deadline(_)), "{err:?}");
    assert!(start.elapsed() < opts().deadline + Duration::from_secs(1));
    // The key is left idle: a CANCEL went out.
    let key = dev.into_transport();
    let last = Packet::parse(key.writes.last().unwrap());
    assert!(matches!(last, Packet::Init { cmd: c, .. } if c == cmd::CANCEL));
}

#[test]
fn key_that_disappears_mid_message() {
    let mut dev = open(Box::new(|m| {
        let mut ev: Vec<Event> = framing::fragment(CID, m.cmd, &[1u8; 300])
            .unwrap()
            .into_iter()
            .take(2)
            .map(Event::Report)
            .collect();
        ev.push(Event::Disconnect);
        ev
    }));
    let err = dev.ping(&[1u8; 300]).unwrap_err();
    assert!(
        matches!(err, CtapError::Transport(TransportError::Disconnected)),
        "{err:?}"
    );
}

/// A key that answers CHANNEL_BUSY `busy` times, then OK.
fn busy_then_ok(busy: usize) -> Script {
    let mut left = busy;
    Box::new(move |m| {
        if m.cmd != cmd::CBOR {
            return reports(CID, m.cmd, &m.payload);
        }
        if left > 0 {
            left -= 1;
            return reports(CID, cmd::ERROR, &[0x06]);
        }
        reports(CID, cmd::CBOR, &[0x00])
    })
}

#[test]
fn a_busy_key_is_asked_again_until_it_is_free() {
    let mut dev = open(busy_then_ok(3));
    let mut seen = Vec::new();
    let r = dev.cbor(&[0x02], &mut |s| seen.push(s), None).unwrap();
    assert_eq!(r, [0x00]);
    assert_eq!(
        seen,
        vec![KeepaliveStatus::Busy; 3],
        "each busy answer is told"
    );
}

#[test]
fn waiting_for_a_busy_key_ends_at_a_cancel_or_the_deadline() {
    let mut dev = open(busy_then_ok(usize::MAX));
    let cancel = CancelToken::new();
    let mut busy = 0;
    let err = dev
        .cbor(
            &[0x02],
            &mut |s| {
                if s == KeepaliveStatus::Busy {
                    busy += 1;
                    if busy == 2 {
                        cancel.cancel();
                    }
                }
            },
            Some(&cancel),
        )
        .unwrap_err();
    assert!(matches!(err, CtapError::Cancelled), "{err:?}");
    assert_eq!(busy, 2);
    let mut dev = Device::open(
        ScriptedKey::new(busy_then_ok(usize::MAX)),
        DeviceOptions {
            deadline: Duration::from_millis(100),
            ..opts()
        },
    )
    .unwrap();
    let err = dev.cbor(&[0x02], &mut |_| {}, None).unwrap_err();
    assert!(
        matches!(err, CtapError::Busy(d) if d == Duration::from_millis(100)),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the security key stayed busy with another program for 100ms"
    );
}

#[test]
fn ctaphid_error_is_typed() {
    // Not CHANNEL_BUSY, which is waited out (above): other CTAPHID errors end the request.
    let mut dev = open(Box::new(|_| reports(CID, cmd::ERROR, &[0x04])));
    let err = dev.cbor(&[0x02], &mut |_| {}, None).unwrap_err();
    assert!(
        matches!(err, CtapError::Hid(HidErrorCode::InvalidSeq)),
        "{err:?}"
    );
    let mut dev = open(Box::new(|_| reports(CID, cmd::ERROR, &[0x55])));
    let err = dev.cbor(&[0x02], &mut |_| {}, None).unwrap_err();
    assert!(
        matches!(err, CtapError::Hid(HidErrorCode::Unknown(0x55))),
        "{err:?}"
    );
}

#[test]
fn reply_with_wrong_command_is_refused() {
    let mut dev = open(Box::new(|_| reports(CID, cmd::PING, b"?")));
    let err = dev.cbor(&[0x04], &mut |_| {}, None).unwrap_err();
    assert!(
        matches!(
            err,
            CtapError::UnexpectedCommand {
                expected: 0x10,
                got: 0x01
            }
        ),
        "{err:?}"
    );
}

#[test]
fn continuation_without_init_is_refused() {
    let mut dev = open(Box::new(|m| {
        let r = framing::fragment(CID, m.cmd, &[1u8; 300]).unwrap();
        vec![Event::Report(r[1])]
    }));
    assert_eq!(
        framing_error(dev.ping(&[1u8; 300])),
        framing::FramingError::UnexpectedCont(0)
    );
}

#[test]
fn cancel_from_another_thread_sends_cancel_and_takes_the_keys_answer() {
    // The key says UPNEEDED until it sees CANCEL, then answers CTAP2_ERR_KEEPALIVE_CANCEL.
    let mut key = ScriptedKey::new(Box::new(|m| {
        if m.cmd == cmd::CANCEL {
            reports(CID, cmd::CBOR, &[0x2d])
        } else {
            Vec::new()
        }
    }));
    key.forever = Some(framing::fragment(CID, cmd::KEEPALIVE, &[2]).unwrap()[0]);
    let mut dev = Device::open(key, opts()).unwrap();
    let token = CancelToken::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let t2 = token.clone();
    let handle = std::thread::spawn(move || {
        let mut on_ka = |s| {
            if s == KeepaliveStatus::UpNeeded {
                let _ = tx.send(());
            }
        };
        let r = dev.cbor(&[0x02], &mut on_ka, Some(&t2));
        (r, dev.into_transport())
    });
    rx.recv_timeout(Duration::from_secs(2))
        .expect("UPNEEDED seen");
    token.cancel();
    let (resp, key) = handle.join().unwrap();
    assert_eq!(
        resp.unwrap(),
        vec![0x2d],
        "the key's CTAP2_ERR_KEEPALIVE_CANCEL is returned"
    );
    let sent_cancel = key
        .writes
        .iter()
        .any(|r| matches!(Packet::parse(r), Packet::Init { cmd: c, .. } if c == cmd::CANCEL));
    assert!(sent_cancel);
}

#[test]
fn bad_cbor_and_unknown_status_are_typed_errors() {
    use auths_presence::ctap::cbor::CborError;
    use auths_presence::ctap::StatusCode;
    // Non-canonical CBOR (a map with unsorted keys) after CTAP2_OK.
    let mut dev = open(Box::new(|_| {
        reports(CID, cmd::CBOR, &[0x00, 0xa2, 0x02, 0x01, 0x01, 0x01])
    }));
    let err = dev.get_info().unwrap_err();
    assert!(
        matches!(err, CtapError::Cbor(CborError::UnsortedKeys(_))),
        "{err:?}"
    );
    // Garbage that is not CBOR at all.
    let mut dev = open(Box::new(|_| reports(CID, cmd::CBOR, &[0x00, 0xff, 0xff])));
    assert!(matches!(dev.get_info().unwrap_err(), CtapError::Cbor(_)));
    // A status byte nobody defined keeps its value.
    let mut dev = open(Box::new(|_| reports(CID, cmd::CBOR, &[0xf3])));
    let err = dev.get_info().unwrap_err();
    assert!(
        matches!(err, CtapError::Status(StatusCode::Unknown(0xf3))),
        "{err:?}"
    );
    // An empty CBOR response has not even a status byte.
    let mut dev = open(Box::new(|_| reports(CID, cmd::CBOR, &[])));
    assert!(dev.get_info().is_err());
}
