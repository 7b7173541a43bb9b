//! The host side of one CTAPHID transaction (CTAP 2.1 §11.2.4 message framing, §11.2.9.1
//! commands, §11.2.9.1.5 CANCEL, §11.2.9.2.1 KEEPALIVE) as a state machine with no I/O and no
//! clock of its own, the mirror of the virtual key's device side
//! ([`virtual_key::hid`](super::virtual_key::hid)):
//!
//! - [`Transaction::start`] takes the request and returns the reports to send;
//! - [`Transaction::handle_report`] takes the key's reports one at a time, with `now`, and says
//!   what happened ([`Event`]) or what was wrong ([`CtapError`]);
//! - [`Transaction::next_deadline`] says when [`Transaction::expire`] must run if no report
//!   comes; [`Transaction::expire`] turns a passed deadline into its error (and, for the
//!   overall deadline, the CANCEL that leaves the key idle);
//! - [`Transaction::cancel`] returns the CTAPHID_CANCEL report to send; the key's answer to
//!   the cancelled request (CTAP2_ERR_KEEPALIVE_CANCEL) still arrives as [`Event::Done`].
//!
//! Checks come before any work (rustls' habit): reports for other channels are skipped (other
//! programs may share the key), then the command, SEQ order and BCNT of ours are checked by
//! [`framing`](super::framing). An INIT on the broadcast channel carries a nonce; replies with
//! another nonce are someone else's and are skipped, and a key that sends only those ends in
//! [`CtapError::InitNonceMismatch`].
//!
//! [`Device`](super::device::Device) drives this over a [`Transport`](super::Transport).

use std::time::{Duration, Instant};

use super::framing::{self, cmd, Packet, Progress, Reassembler, Report, CID_BROADCAST};
use super::{CtapError, HidErrorCode};

/// What a KEEPALIVE said (CTAP 2.1 §11.2.9.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveStatus {
    /// The key is working on the request.
    Processing,
    /// The key waits for a touch: show the prompt now.
    UpNeeded,
    /// A status byte the spec does not define.
    Other(u8),
    /// Not a KEEPALIVE: the client's own report that the key answered CHANNEL_BUSY (another
    /// program is using it) and that it waits its turn to ask again.
    Busy,
}

impl KeepaliveStatus {
    /// Map the status byte of a KEEPALIVE.
    pub fn from_byte(b: u8) -> KeepaliveStatus {
        match b {
            framing::keepalive::PROCESSING => KeepaliveStatus::Processing,
            framing::keepalive::UPNEEDED => KeepaliveStatus::UpNeeded,
            other => KeepaliveStatus::Other(other),
        }
    }
}

/// The two clocks of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Longest silence accepted between two reports of ours.
    pub read_timeout: Duration,
    /// Longest the whole transaction may take, touch included.
    pub deadline: Duration,
}

/// What one report from the key meant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Nothing to act on yet: a continuation of our reply, a report for another channel, a
    /// foreign INIT reply, or a KEEPALIVE that repeats the last status.
    NeedMore,
    /// A KEEPALIVE whose status differs from the previous one (the first one included).
    Keepalive(KeepaliveStatus),
    /// The reply is complete: its payload, exactly BCNT bytes. The transaction is over.
    Done(Vec<u8>),
}

/// A deadline passed: the error to return and, when the overall deadline passed before a
/// CANCEL went out, the CANCEL to send (best effort) so the key is left idle.
#[derive(Debug)]
pub struct Expired {
    /// What the transaction ends with.
    pub error: CtapError,
    /// A CTAPHID_CANCEL report to send before giving up, if any.
    pub cancel: Option<Report>,
}

/// One request/response exchange on one channel.
#[derive(Debug)]
pub struct Transaction {
    cid: u32,
    command: u8,
    init_nonce: Option<[u8; 8]>,
    timeouts: Timeouts,
    started: Instant,
    last_heard: Instant,
    cancel_sent: bool,
    last_status: Option<KeepaliveStatus>,
    partial: Option<Reassembler>,
    foreign_init: bool,
    finished: bool,
}

/// The single CANCEL report for `cid` (an empty CTAPHID_CANCEL message fits one packet).
fn cancel_report(cid: u32) -> Report {
    let mut r = [0u8; framing::REPORT_LEN];
    r[..4].copy_from_slice(&cid.to_be_bytes());
    r[4] = cmd::CANCEL | 0x80;
    r
}

impl Transaction {
    /// Start a transaction: `command` with `payload` on channel `cid`. For CTAPHID_INIT pass
    /// the nonce (the payload) as `init_nonce`, so replies carrying another nonce are skipped.
    /// Returns the reports to send, in order.
    pub fn start(
        cid: u32,
        command: u8,
        payload: &[u8],
        init_nonce: Option<[u8; 8]>,
        timeouts: Timeouts,
        now: Instant,
    ) -> Result<(Transaction, Vec<Report>), CtapError> {
        let reports = framing::fragment(cid, command, payload)?;
        let t = Transaction {
            cid,
            command,
            init_nonce,
            timeouts,
            started: now,
            last_heard: now,
            cancel_sent: false,
            last_status: None,
            partial: None,
            foreign_init: false,
            finished: false,
        };
        Ok((t, reports))
    }

    /// The channel of this transaction.
    pub fn channel(&self) -> u32 {
        self.cid
    }

    /// The command of the request (and of the reply it waits for).
    pub fn command(&self) -> u8 {
        self.command
    }

    /// Whether a CANCEL was sent.
    pub fn cancel_sent(&self) -> bool {
        self.cancel_sent
    }

    /// When [`Self::expire`] must run if no report comes first: the earlier of the overall
    /// deadline and the end of the allowed silence.
    pub fn next_deadline(&self) -> Instant {
        (self.started + self.timeouts.deadline).min(self.last_heard + self.timeouts.read_timeout)
    }

    /// Check the clocks. `None` while both run; otherwise the error the transaction ends
    /// with: [`CtapError::Deadline`] (with a CANCEL to send unless one went out already or
    /// this is the broadcast channel), or, after a silence of `read_timeout`,
    /// [`CtapError::Cancelled`] after a cancel, [`CtapError::InitNonceMismatch`] when only
    /// foreign INIT replies came, else [`CtapError::ReadTimeout`].
    pub fn expire(&mut self, now: Instant) -> Option<Expired> {
        if self.finished {
            return None;
        }
        if now.saturating_duration_since(self.started) >= self.timeouts.deadline {
            self.finished = true;
            let cancel = (!self.cancel_sent && self.cid != CID_BROADCAST).then(|| {
                self.cancel_sent = true;
                cancel_report(self.cid)
            });
            return Some(Expired {
                error: CtapError::Deadline(self.timeouts.deadline),
                cancel,
            });
        }
        if now.saturating_duration_since(self.last_heard) >= self.timeouts.read_timeout {
            self.finished = true;
            let error = if self.cancel_sent {
                CtapError::Cancelled
            } else if self.foreign_init {
                CtapError::InitNonceMismatch
            } else {
                CtapError::ReadTimeout(self.timeouts.read_timeout)
            };
            return Some(Expired {
                error,
                cancel: None,
            });
        }
        None
    }

    /// Cancel the request: the CTAPHID_CANCEL report to send, once (`None` if one went out
    /// already or the transaction is over). The key's answer still comes through
    /// [`Self::handle_report`]; if the key goes silent instead, [`Self::expire`] ends the
    /// transaction with [`CtapError::Cancelled`] after `read_timeout`.
    pub fn cancel(&mut self, now: Instant) -> Option<Report> {
        if self.cancel_sent || self.finished {
            return None;
        }
        self.cancel_sent = true;
        self.last_heard = now;
        Some(cancel_report(self.cid))
    }

    /// One report from the key. Errors end the transaction: framing violations
    /// ([`CtapError::Framing`], e.g. `UnexpectedCont`, `BadSeq`, `TooLong`), a CTAPHID_ERROR
    /// ([`CtapError::Hid`]), a reply to another command ([`CtapError::UnexpectedCommand`]).
    /// A finished transaction ignores further reports ([`Event::NeedMore`]).
    pub fn handle_report(&mut self, report: &Report, now: Instant) -> Result<Event, CtapError> {
        if self.finished {
            return Ok(Event::NeedMore);
        }
        let result = self.handle_packet(&Packet::parse(report), now);
        if matches!(result, Ok(Event::Done(_)) | Err(_)) {
            self.finished = true;
            self.partial = None;
        }
        result
    }

    fn handle_packet(&mut self, packet: &Packet, now: Instant) -> Result<Event, CtapError> {
        if packet.cid() != self.cid {
            return Ok(Event::NeedMore); // another program's channel
        }
        if let Some(r) = self.partial.as_mut() {
            self.last_heard = now;
            return Ok(match r.push(packet)? {
                Progress::NeedMore => Event::NeedMore,
                Progress::Done(m) => Event::Done(m.payload),
            });
        }
        let (cmd_byte, data) = match packet {
            Packet::Cont { seq, .. } => {
                return Err(framing::FramingError::UnexpectedCont(*seq).into());
            }
            Packet::Init { cmd, data, .. } => (*cmd, data),
        };
        if cmd_byte == cmd::KEEPALIVE {
            self.last_heard = now;
            let status = KeepaliveStatus::from_byte(data[0]);
            if self.last_status == Some(status) {
                return Ok(Event::NeedMore);
            }
            self.last_status = Some(status);
            return Ok(Event::Keepalive(status));
        }
        if cmd_byte == cmd::ERROR {
            let (_, progress) = Reassembler::start(packet)?;
            return match progress {
                Progress::Done(m) if !m.payload.is_empty() => {
                    Err(CtapError::Hid(HidErrorCode::from_byte(m.payload[0])))
                }
                _ => Err(CtapError::InvalidResponse(
                    "CTAPHID_ERROR without an error code".into(),
                )),
            };
        }
        if cmd_byte != self.command {
            return Err(CtapError::UnexpectedCommand {
                expected: self.command,
                got: cmd_byte,
            });
        }
        if let Some(nonce) = &self.init_nonce {
            if &data[..8] != nonce {
                // Another program's INIT on the broadcast channel.
                self.foreign_init = true;
                return Ok(Event::NeedMore);
            }
        }
        let (rest, progress) = Reassembler::start(packet)?;
        self.last_heard = now;
        Ok(match progress {
            Progress::Done(m) => Event::Done(m.payload),
            Progress::NeedMore => {
                self.partial = rest;
                Event::NeedMore
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctap::framing::{fragment, FramingError, REPORT_LEN};

    const CID: u32 = 0x0102_0304;
    const TIMEOUTS: Timeouts = Timeouts {
        read_timeout: Duration::from_millis(300),
        deadline: Duration::from_secs(2),
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn start(command: u8, payload: &[u8], t0: Instant) -> Transaction {
        let (t, reports) = Transaction::start(CID, command, payload, None, TIMEOUTS, t0).unwrap();
        assert_eq!(reports, fragment(CID, command, payload).unwrap());
        t
    }

    fn one(cid: u32, command: u8, payload: &[u8]) -> Report {
        fragment(cid, command, payload).unwrap()[0]
    }

    #[test]
    fn multi_packet_reply_is_reassembled_and_others_skipped() {
        let t0 = Instant::now();
        let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut t = start(cmd::PING, &data, t0);
        let theirs = fragment(0x0bad_0bad, cmd::PING, &[9u8; 100]).unwrap();
        let ours = fragment(CID, cmd::PING, &data).unwrap();
        assert_eq!(t.handle_report(&theirs[0], t0).unwrap(), Event::NeedMore);
        for r in &ours[..ours.len() - 1] {
            assert_eq!(t.handle_report(r, t0).unwrap(), Event::NeedMore);
            assert_eq!(t.handle_report(&theirs[1], t0).unwrap(), Event::NeedMore);
        }
        let last = ours.last().unwrap();
        assert_eq!(t.handle_report(last, t0).unwrap(), Event::Done(data));
        // Over: nothing more happens.
        assert_eq!(t.handle_report(last, t0).unwrap(), Event::NeedMore);
        assert!(t.expire(t0 + ms(10_000)).is_none());
    }

    #[test]
    fn keepalive_events_only_on_change_and_they_reset_the_read_clock() {
        let t0 = Instant::now();
        let mut t = start(cmd::CBOR, &[0x02], t0);
        let ka = |s| one(CID, cmd::KEEPALIVE, &[s]);
        let mut events = Vec::new();
        for (i, s) in [1u8, 2, 2, 2, 0x77].into_iter().enumerate() {
            let now = t0 + ms(200 * (i as u64 + 1));
            events.push(t.handle_report(&ka(s), now).unwrap());
            assert_eq!(t.next_deadline(), now + TIMEOUTS.read_timeout);
        }
        assert_eq!(
            events,
            vec![
                Event::Keepalive(KeepaliveStatus::Processing),
                Event::Keepalive(KeepaliveStatus::UpNeeded),
                Event::NeedMore,
                Event::NeedMore,
                Event::Keepalive(KeepaliveStatus::Other(0x77)),
            ]
        );
        assert!(t.expire(t0 + ms(1200)).is_none());
        let done = t.handle_report(&one(CID, cmd::CBOR, &[0, 0xa0]), t0 + ms(1200));
        assert_eq!(done.unwrap(), Event::Done(vec![0, 0xa0]));
    }

    #[test]
    fn silence_is_a_read_timeout() {
        let t0 = Instant::now();
        let mut t = start(cmd::CBOR, &[0x04], t0);
        assert_eq!(t.next_deadline(), t0 + ms(300));
        assert!(t.expire(t0 + ms(299)).is_none());
        let e = t.expire(t0 + ms(300)).unwrap();
        assert!(matches!(e.error, CtapError::ReadTimeout(d) if d == ms(300)));
        assert!(e.cancel.is_none());
        // Reported once.
        assert!(t.expire(t0 + ms(400)).is_none());
    }

    #[test]
    fn overall_deadline_sends_cancel_once() {
        let t0 = Instant::now();
        let mut t = start(cmd::CBOR, &[0x02], t0);
        let ka = one(CID, cmd::KEEPALIVE, &[2]);
        let mut now = t0;
        while now < t0 + TIMEOUTS.deadline {
            assert!(t.expire(now).is_none());
            t.handle_report(&ka, now).unwrap();
            now += ms(100);
            assert!(t.next_deadline() <= t0 + TIMEOUTS.deadline);
        }
        let e = t.expire(now).unwrap();
        assert!(matches!(e.error, CtapError::Deadline(d) if d == TIMEOUTS.deadline));
        let cancel = e.cancel.expect("a CANCEL leaves the key idle");
        assert_eq!(cancel, one(CID, cmd::CANCEL, &[]));
        assert!(t.cancel(now).is_none());
    }

    #[test]
    fn deadline_after_a_cancel_sends_no_second_cancel() {
        let t0 = Instant::now();
        let mut t = start(cmd::CBOR, &[0x02], t0);
        assert_eq!(t.cancel(t0 + ms(1800)), Some(one(CID, cmd::CANCEL, &[])));
        assert_eq!(t.cancel(t0 + ms(1801)), None);
        let e = t.expire(t0 + TIMEOUTS.deadline).unwrap();
        assert!(matches!(e.error, CtapError::Deadline(_)));
        assert!(e.cancel.is_none());
    }

    #[test]
    fn cancel_then_the_keys_answer_or_silence() {
        let t0 = Instant::now();
        let mut t = start(cmd::CBOR, &[0x02], t0);
        t.handle_report(&one(CID, cmd::KEEPALIVE, &[2]), t0)
            .unwrap();
        assert!(t.cancel(t0 + ms(250)).is_some());
        assert!(t.cancel_sent());
        // The cancel restarts the silence clock.
        assert_eq!(t.next_deadline(), t0 + ms(550));
        let answer = t.handle_report(&one(CID, cmd::CBOR, &[0x2d]), t0 + ms(260));
        assert_eq!(answer.unwrap(), Event::Done(vec![0x2d]));

        let mut t = start(cmd::CBOR, &[0x02], t0);
        t.cancel(t0).unwrap();
        let e = t.expire(t0 + ms(300)).unwrap();
        assert!(matches!(e.error, CtapError::Cancelled), "{:?}", e.error);
    }

    #[test]
    fn foreign_init_nonces_are_skipped_then_a_mismatch() {
        let t0 = Instant::now();
        let nonce = [1, 2, 3, 4, 5, 6, 7, 8];
        let (mut t, reports) =
            Transaction::start(CID_BROADCAST, cmd::INIT, &nonce, Some(nonce), TIMEOUTS, t0)
                .unwrap();
        assert_eq!(reports.len(), 1);
        let reply = |n: &[u8]| {
            let mut p = n.to_vec();
            p.extend_from_slice(&CID.to_be_bytes());
            p.extend_from_slice(&[2, 1, 0, 0, 5]);
            one(CID_BROADCAST, cmd::INIT, &p)
        };
        // Foreign replies do not count as hearing from the key.
        assert_eq!(
            t.handle_report(&reply(&[9; 8]), t0 + ms(100)).unwrap(),
            Event::NeedMore
        );
        assert_eq!(t.next_deadline(), t0 + ms(300));
        let e = t.expire(t0 + ms(300)).unwrap();
        assert!(
            matches!(e.error, CtapError::InitNonceMismatch),
            "{:?}",
            e.error
        );
        // No CANCEL on the broadcast channel, even at the overall deadline.
        let (mut t, _) =
            Transaction::start(CID_BROADCAST, cmd::INIT, &nonce, Some(nonce), TIMEOUTS, t0)
                .unwrap();
        assert!(t.expire(t0 + TIMEOUTS.deadline).unwrap().cancel.is_none());
        // Ours is taken after a foreign one.
        let (mut t, _) =
            Transaction::start(CID_BROADCAST, cmd::INIT, &nonce, Some(nonce), TIMEOUTS, t0)
                .unwrap();
        t.handle_report(&reply(&[9; 8]), t0).unwrap();
        let Event::Done(p) = t.handle_report(&reply(&nonce), t0).unwrap() else {
            panic!("our INIT reply completes the transaction")
        };
        assert_eq!(&p[..8], &nonce);
    }

    #[test]
    fn protocol_violations_are_typed_errors() {
        let t0 = Instant::now();
        // CTAPHID_ERROR.
        let mut t = start(cmd::CBOR, &[0x02], t0);
        let e = t
            .handle_report(&one(CID, cmd::ERROR, &[0x06]), t0)
            .unwrap_err();
        assert!(
            matches!(e, CtapError::Hid(HidErrorCode::ChannelBusy)),
            "{e:?}"
        );
        assert!(t.expire(t0 + ms(10_000)).is_none(), "an error ends it");
        // CTAPHID_ERROR without a code.
        let mut t = start(cmd::CBOR, &[0x02], t0);
        let e = t.handle_report(&one(CID, cmd::ERROR, &[]), t0).unwrap_err();
        assert!(matches!(e, CtapError::InvalidResponse(_)), "{e:?}");
        // A reply to another command.
        let mut t = start(cmd::CBOR, &[0x02], t0);
        let e = t.handle_report(&one(CID, cmd::PING, b"?"), t0).unwrap_err();
        assert!(
            matches!(
                e,
                CtapError::UnexpectedCommand {
                    expected: cmd::CBOR,
                    got: cmd::PING
                }
            ),
            "{e:?}"
        );
        // A continuation with no message in progress.
        let mut t = start(cmd::PING, &[1; 300], t0);
        let r = fragment(CID, cmd::PING, &[1; 300]).unwrap();
        let e = t.handle_report(&r[1], t0).unwrap_err();
        assert!(
            matches!(e, CtapError::Framing(FramingError::UnexpectedCont(0))),
            "{e:?}"
        );
        // SEQ out of order.
        let mut t = start(cmd::PING, &[1; 300], t0);
        t.handle_report(&r[0], t0).unwrap();
        let e = t.handle_report(&r[2], t0).unwrap_err();
        assert!(
            matches!(
                e,
                CtapError::Framing(FramingError::BadSeq {
                    expected: 0,
                    got: 1
                })
            ),
            "{e:?}"
        );
        // BCNT over the maximum.
        let mut t = start(cmd::PING, b"x", t0);
        let mut big = [0u8; REPORT_LEN];
        big[..4].copy_from_slice(&CID.to_be_bytes());
        big[4] = cmd::PING | 0x80;
        big[5..7].copy_from_slice(&7610u16.to_be_bytes());
        let e = t.handle_report(&big, t0).unwrap_err();
        assert!(
            matches!(e, CtapError::Framing(FramingError::TooLong(7610))),
            "{e:?}"
        );
    }

    #[test]
    fn a_truncated_reply_times_out_from_its_last_packet() {
        let t0 = Instant::now();
        let mut t = start(cmd::PING, &[1; 300], t0);
        let r = fragment(CID, cmd::PING, &[1; 300]).unwrap();
        for (i, rep) in r.iter().take(3).enumerate() {
            let now = t0 + ms(100 * i as u64);
            assert_eq!(t.handle_report(rep, now).unwrap(), Event::NeedMore);
        }
        assert_eq!(t.next_deadline(), t0 + ms(500));
        let e = t.expire(t0 + ms(500)).unwrap();
        assert!(
            matches!(e.error, CtapError::ReadTimeout(_)),
            "{:?}",
            e.error
        );
    }

    #[test]
    fn oversized_request_is_refused_before_anything_is_sent() {
        let t0 = Instant::now();
        let big = vec![0u8; framing::MAX_PAYLOAD + 1];
        let e = Transaction::start(CID, cmd::CBOR, &big, None, TIMEOUTS, t0).unwrap_err();
        assert!(matches!(e, CtapError::Framing(FramingError::TooLong(_))));
    }
}
