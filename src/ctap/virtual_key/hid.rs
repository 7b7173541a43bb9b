//! The device side of CTAPHID (CTAP 2.1 §11.2): channel allocation, message reassembly with
//! its timeout, CTAPHID errors, KEEPALIVE while a request waits for a touch, CANCEL, and the
//! touch control. A state machine with no I/O and no clock of its own: every call takes
//! `now`, returns the reports to send, and [`HidDevice::next_deadline`] says when
//! [`HidDevice::poll`] must run next. [`super::VirtualKey`] drives it from a thread.
//!
//! Behaviour, as a real key's:
//! - INIT on the broadcast channel allocates a channel; the 17-byte answer (on the broadcast
//!   channel) is nonce, new cid, protocol version 2, device version (major, minor, build),
//!   capabilities CBOR | WINK | NMSG (no CTAP1 MSG). INIT on an allocated channel resyncs
//!   it: any transaction on it is abandoned, and the answer (same cid) comes on that channel.
//! - One transaction at a time: while a message is being received or a request waits for a
//!   touch, a request on another channel gets ERR_CHANNEL_BUSY.
//! - CTAPHID_LOCK (1 byte, 0..=10 seconds; 0 releases) makes other channels get
//!   ERR_CHANNEL_BUSY until it expires.
//! - Errors: ERR_INVALID_CMD (unknown command, CTAP1 MSG), ERR_INVALID_PAR (LOCK over 10 s),
//!   ERR_INVALID_LEN (BCNT over 7609, INIT not 8 bytes, WINK/CANCEL with data, empty CBOR),
//!   ERR_INVALID_SEQ (continuation out of order, or a new message in the middle of one),
//!   ERR_INVALID_CHANNEL (cid 0, unallocated cid, broadcast for anything but INIT),
//!   ERR_MSG_TIMEOUT (a continuation packet did not come in time).
//! - CANCEL has no answer of its own; the request it cancels answers
//!   CTAP2_ERR_KEEPALIVE_CANCEL. A CANCEL with nothing to cancel is ignored.
//! - Stray continuation packets with no message in progress are ignored (§11.2.4).
//! - U2F-only ([`HidDevice::u2f_only`], `auths sim serve --u2f-only`), as a YubiKey 4: the
//!   INIT capabilities are WINK alone (no CBOR, no NMSG), CTAPHID_CBOR gets ERR_INVALID_CMD,
//!   and CTAPHID_MSG carries U2F APDUs ([`super::u2f`]). A U2F key does not hold a request
//!   while it waits: it answers SW_CONDITIONS_NOT_SATISFIED and blinks; a touch while it
//!   blinks (or the Auto mode's, after its delay) approves the next request that needs one.

use std::time::{Duration, Instant};

use thiserror::Error;

use super::authenticator::{Authenticator, Pending, Step};
use crate::ctap::framing::{
    capability, cmd, err, fragment, keepalive, FramingError, Message, Packet, Progress,
    Reassembler, Report, CID_BROADCAST, PROTOCOL_VERSION,
};
use crate::ctap::status::StatusCode;

/// Device version bytes (major, minor, build) in the INIT answer; the build byte is `'V'`
/// (virtual).
pub const DEVICE_VERSION: [u8; 3] = [1, 0, b'V'];
/// The INIT capabilities: WINK and CBOR, and NMSG because CTAP1/U2F (CTAPHID_MSG) is not
/// spoken; getInfo's versions agree (no `U2F_V2`).
pub const CAPABILITIES: u8 = capability::WINK | capability::CBOR | capability::NMSG;

/// The INIT capabilities of a U2F-only key: WINK; no CBOR, and CTAPHID_MSG spoken (no NMSG).
pub const U2F_CAPABILITIES: u8 = capability::WINK;

/// How the virtual user answers requests for a touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TouchMode {
    /// Touch at once (`delay` zero) or after `delay`.
    Auto {
        /// How long the virtual user takes to touch.
        delay: Duration,
    },
    /// The user is away: requests time out with CTAP2_ERR_USER_ACTION_TIMEOUT.
    Never,
    /// Wait for [`HidDevice::touch`] (`auths sim touch`).
    Manual,
}

/// Timers of the device.
#[derive(Debug, Clone, Copy)]
pub struct HidTimings {
    /// How long a request waits for a touch before CTAP2_ERR_USER_ACTION_TIMEOUT (all modes).
    pub touch_timeout: Duration,
    /// How long the device waits for the next continuation packet before ERR_MSG_TIMEOUT.
    pub msg_timeout: Duration,
    /// Interval of KEEPALIVE UPNEEDED while waiting for a touch. Values below
    /// [`MIN_KEEPALIVE_INTERVAL`] (zero included) are raised to it by [`HidDevice::new`].
    pub keepalive_interval: Duration,
}

/// Shortest KEEPALIVE interval the device uses: a zero interval would never move the next
/// KEEPALIVE past `now`, and a tiny one would flood the host.
pub const MIN_KEEPALIVE_INTERVAL: Duration = Duration::from_millis(10);

impl Default for HidTimings {
    fn default() -> Self {
        HidTimings {
            touch_timeout: Duration::from_secs(30),
            msg_timeout: Duration::from_millis(500),
            keepalive_interval: Duration::from_millis(100),
        }
    }
}

/// A touch that found nothing to approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TouchError {
    /// No request is waiting for a touch.
    #[error("nothing is waiting for a touch on the virtual key")]
    NothingWaiting,
}

struct Assembly {
    reassembler: Reassembler,
    deadline: Instant,
}

struct Waiting {
    cid: u32,
    pending: Pending,
    deadline: Instant,
    next_keepalive: Instant,
    auto_at: Option<Instant>,
}

/// A U2F key blinking after a SW_CONDITIONS_NOT_SATISFIED: until when, and when the Auto
/// mode's virtual user touches.
#[derive(Debug, Clone, Copy)]
struct U2fBlink {
    until: Instant,
    auto_at: Option<Instant>,
}

/// The touch state of the U2F side.
#[derive(Debug, Default)]
struct U2fTouch {
    /// The key blinks (a request needed a touch and did not have one).
    blinking: Option<U2fBlink>,
    /// A touch came while it blinked: it approves the next request that needs one, until then.
    touched_until: Option<Instant>,
}

impl U2fTouch {
    /// Whether a U2F request that needs a touch may have one at `now`: one touch (manual, or
    /// the Auto mode's) is consumed; otherwise the key blinks and the answer is 0x6985.
    fn take(&mut self, mode: TouchMode, touch_timeout: Duration, now: Instant) -> bool {
        let manual = self.touched_until.take().is_some_and(|until| now < until);
        let blink = self.blinking.filter(|b| now < b.until);
        let auto =
            mode == TouchMode::Auto {
                delay: Duration::ZERO,
            } || blink.is_some_and(|b| b.auto_at.is_some_and(|at| now >= at));
        if manual || auto {
            self.blinking = None;
            return true;
        }
        self.blinking = Some(blink.unwrap_or(U2fBlink {
            until: now + touch_timeout,
            auto_at: match mode {
                TouchMode::Auto { delay } => Some(now + delay),
                _ => None,
            },
        }));
        false
    }
}

/// The device side of CTAPHID over one [`Authenticator`].
pub struct HidDevice {
    authenticator: Authenticator,
    timings: HidTimings,
    mode: TouchMode,
    channels: Vec<u32>,
    next_cid: u32,
    assembly: Option<Assembly>,
    waiting: Option<Waiting>,
    lock: Option<(u32, Instant)>,
    touches: u64,
    u2f_only: bool,
    u2f: U2fTouch,
}

impl std::fmt::Debug for HidDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HidDevice")
            .field("mode", &self.mode)
            .field("channels", &self.channels.len())
            .field("waiting", &self.waiting.is_some())
            .field("touches", &self.touches)
            .finish_non_exhaustive()
    }
}

/// Most channels kept; the oldest is forgotten beyond this, as keys with small tables do.
const MAX_CHANNELS: usize = 64;

fn error_report(cid: u32, code: u8) -> Vec<Report> {
    frame(cid, cmd::ERROR, &[code])
}

fn frame(cid: u32, command: u8, payload: &[u8]) -> Vec<Report> {
    // Every payload we build is far below the CTAPHID maximum; the fallback never happens.
    fragment(cid, command, payload)
        .unwrap_or_else(|_| fragment(cid, cmd::ERROR, &[err::OTHER]).unwrap_or_default())
}

impl HidDevice {
    /// A device in front of `authenticator`.
    pub fn new(authenticator: Authenticator, mode: TouchMode, timings: HidTimings) -> HidDevice {
        let timings = HidTimings {
            keepalive_interval: timings.keepalive_interval.max(MIN_KEEPALIVE_INTERVAL),
            ..timings
        };
        HidDevice {
            authenticator,
            timings,
            mode,
            channels: Vec::new(),
            next_cid: 1 + (rand::random::<u32>() & 0x00ff_ffff),
            assembly: None,
            waiting: None,
            lock: None,
            touches: 0,
            u2f_only: false,
            u2f: U2fTouch::default(),
        }
    }

    /// This device as a U2F-only key (see the module docs).
    pub fn u2f_only(self) -> HidDevice {
        HidDevice {
            u2f_only: true,
            ..self
        }
    }

    /// Touches that approved a request so far (auto touches included).
    pub fn touch_count(&self) -> u64 {
        self.touches
    }

    /// The touch mode.
    pub fn touch_mode(&self) -> TouchMode {
        self.mode
    }

    /// Whether a request waits for a touch.
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// Another program holds the key for `duration` (a browser waiting for a WebAuthn
    /// touch): every channel's request gets ERR_CHANNEL_BUSY until then, as under a CTAPHID
    /// LOCK that no channel of ours owns.
    pub fn hold_for(&mut self, duration: Duration, now: Instant) {
        self.lock = Some((CID_BROADCAST, now + duration));
    }

    /// Change how the virtual user answers; a waiting request follows the new mode.
    pub fn set_touch_mode(&mut self, mode: TouchMode, now: Instant) -> Vec<Report> {
        self.mode = mode;
        if let Some(b) = &mut self.u2f.blinking {
            b.auto_at = match mode {
                TouchMode::Auto { delay } => Some(now + delay),
                _ => None,
            };
        }
        if let Some(w) = &mut self.waiting {
            w.auto_at = match mode {
                TouchMode::Auto { delay } => Some(now + delay),
                _ => None,
            };
        }
        self.poll(now)
    }

    /// The user touches the key.
    pub fn touch(&mut self) -> Result<Vec<Report>, TouchError> {
        if self.waiting.is_none() {
            // A blinking U2F key: the touch approves the next request that needs one.
            let b = self.u2f.blinking.take().ok_or(TouchError::NothingWaiting)?;
            self.u2f.touched_until = Some(b.until);
            return Ok(Vec::new());
        }
        let w = self.waiting.take().ok_or(TouchError::NothingWaiting)?;
        Ok(self.finish_touch(w))
    }

    fn finish_touch(&mut self, w: Waiting) -> Vec<Report> {
        self.touches += 1;
        let resp = self.authenticator.complete(w.pending, true);
        frame(w.cid, cmd::CBOR, &resp)
    }

    /// When [`HidDevice::poll`] must run next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let a = self.assembly.as_ref().map(|a| a.deadline);
        let w = self.waiting.as_ref().map(|w| {
            let mut t = w.deadline.min(w.next_keepalive);
            if let Some(at) = w.auto_at {
                t = t.min(at);
            }
            t
        });
        match (a, w) {
            (Some(a), Some(w)) => Some(a.min(w)),
            (a, w) => a.or(w),
        }
    }

    /// Run the timers: message timeout, automatic touch, touch timeout, KEEPALIVE.
    pub fn poll(&mut self, now: Instant) -> Vec<Report> {
        let mut out = Vec::new();
        if self.assembly.as_ref().is_some_and(|a| now >= a.deadline) {
            if let Some(a) = self.assembly.take() {
                out.extend(error_report(a.reassembler.cid(), err::MSG_TIMEOUT));
            }
        }
        if let Some(mut w) = self.waiting.take() {
            if w.auto_at.is_some_and(|at| now >= at) {
                out.extend(self.finish_touch(w));
            } else if now >= w.deadline {
                let resp = self.authenticator.complete(w.pending, false);
                out.extend(frame(w.cid, cmd::CBOR, &resp));
            } else {
                if now >= w.next_keepalive {
                    out.extend(frame(w.cid, cmd::KEEPALIVE, &[keepalive::UPNEEDED]));
                    // Skip the KEEPALIVEs that a late poll missed in one step; the interval is
                    // never zero (see `new`), so the next one is always after `now`.
                    let interval = self.timings.keepalive_interval;
                    let missed = now.duration_since(w.next_keepalive).as_nanos()
                        / interval.as_nanos().max(1);
                    let steps = u32::try_from(missed + 1).unwrap_or(u32::MAX);
                    w.next_keepalive += interval.saturating_mul(steps);
                }
                self.waiting = Some(w);
            }
        }
        out
    }

    fn busy_cid(&self) -> Option<u32> {
        self.assembly
            .as_ref()
            .map(|a| a.reassembler.cid())
            .or(self.waiting.as_ref().map(|w| w.cid))
    }

    /// One output report from a host.
    pub fn handle_report(&mut self, report: &Report, now: Instant) -> Vec<Report> {
        let mut out = self.poll(now);
        out.extend(self.handle_packet(Packet::parse(report), now));
        out
    }

    fn handle_packet(&mut self, packet: Packet, now: Instant) -> Vec<Report> {
        let cid = packet.cid();
        if cid == 0 {
            return error_report(cid, err::INVALID_CHANNEL);
        }
        // A message in progress.
        if let Some(a) = &mut self.assembly {
            let acid = a.reassembler.cid();
            match &packet {
                Packet::Cont { .. } if cid == acid => {
                    return match a.reassembler.push(&packet) {
                        Ok(Progress::NeedMore) => Vec::new(),
                        Ok(Progress::Done(msg)) => {
                            self.assembly = None;
                            self.dispatch(msg, now)
                        }
                        Err(_) => {
                            self.assembly = None;
                            error_report(cid, err::INVALID_SEQ)
                        }
                    };
                }
                // Continuations for other channels are stray: ignored.
                Packet::Cont { .. } => return Vec::new(),
                Packet::Init { cmd: c, .. } if *c == cmd::INIT => {
                    // INIT always works; on the channel in progress it also aborts the message.
                    if cid == acid {
                        self.assembly = None;
                    }
                }
                Packet::Init { .. } if cid == acid => {
                    self.assembly = None;
                    return error_report(cid, err::INVALID_SEQ);
                }
                Packet::Init { .. } => {
                    return self.busy_or_invalid(cid);
                }
            }
        }
        let Packet::Init {
            cmd: command,
            bcnt,
            data,
            ..
        } = &packet
        else {
            return Vec::new(); // stray continuation
        };
        if *command == cmd::INIT {
            return self.init(cid, *bcnt, data);
        }
        if cid == CID_BROADCAST || !self.channels.contains(&cid) {
            return error_report(cid, err::INVALID_CHANNEL);
        }
        if *command == cmd::CANCEL {
            if self.waiting.as_ref().is_some_and(|w| w.cid == cid) {
                self.waiting = None; // drops the pending request
                return frame(cid, cmd::CBOR, &[StatusCode::KeepaliveCancel.byte()]);
            }
            return Vec::new();
        }
        if self.busy_cid().is_some() {
            return error_report(cid, err::CHANNEL_BUSY);
        }
        if self
            .lock
            .is_some_and(|(owner, until)| owner != cid && now < until)
        {
            return error_report(cid, err::CHANNEL_BUSY);
        }
        match Reassembler::start(&packet) {
            Ok((_, Progress::Done(msg))) => self.dispatch(msg, now),
            Ok((Some(reassembler), Progress::NeedMore)) => {
                self.assembly = Some(Assembly {
                    reassembler,
                    deadline: now + self.timings.msg_timeout,
                });
                Vec::new()
            }
            Ok((None, Progress::NeedMore)) => error_report(cid, err::OTHER),
            Err(FramingError::TooLong(_)) => error_report(cid, err::INVALID_LEN),
            Err(_) => error_report(cid, err::INVALID_PAR),
        }
    }

    fn busy_or_invalid(&self, cid: u32) -> Vec<Report> {
        if cid == CID_BROADCAST || !self.channels.contains(&cid) {
            error_report(cid, err::INVALID_CHANNEL)
        } else {
            error_report(cid, err::CHANNEL_BUSY)
        }
    }

    fn init(&mut self, cid: u32, bcnt: u16, data: &[u8]) -> Vec<Report> {
        if bcnt != 8 {
            return error_report(cid, err::INVALID_LEN);
        }
        let new_cid = if cid == CID_BROADCAST {
            let c = self.allocate();
            self.channels.push(c);
            if self.channels.len() > MAX_CHANNELS {
                self.channels.remove(0);
            }
            c
        } else if self.channels.contains(&cid) {
            // Resync: abandon whatever this channel was doing, without an answer.
            if self
                .assembly
                .as_ref()
                .is_some_and(|a| a.reassembler.cid() == cid)
            {
                self.assembly = None;
            }
            if self.waiting.as_ref().is_some_and(|w| w.cid == cid) {
                self.waiting = None;
            }
            if self.lock.is_some_and(|(owner, _)| owner == cid) {
                self.lock = None;
            }
            cid
        } else {
            return error_report(cid, err::INVALID_CHANNEL);
        };
        let mut payload = Vec::with_capacity(17);
        payload.extend_from_slice(&data[..8]);
        payload.extend_from_slice(&new_cid.to_be_bytes());
        payload.push(PROTOCOL_VERSION);
        payload.extend_from_slice(&DEVICE_VERSION);
        payload.push(if self.u2f_only {
            U2F_CAPABILITIES
        } else {
            CAPABILITIES
        });
        frame(cid, cmd::INIT, &payload)
    }

    fn allocate(&mut self) -> u32 {
        loop {
            let c = self.next_cid;
            self.next_cid = self.next_cid.wrapping_add(1);
            if c != 0 && c != CID_BROADCAST && !self.channels.contains(&c) {
                return c;
            }
        }
    }

    fn dispatch(&mut self, msg: Message, now: Instant) -> Vec<Report> {
        let cid = msg.cid;
        match msg.cmd {
            cmd::PING => frame(cid, cmd::PING, &msg.payload),
            cmd::WINK if msg.payload.is_empty() => frame(cid, cmd::WINK, &[]),
            cmd::WINK => error_report(cid, err::INVALID_LEN),
            cmd::LOCK => match msg.payload[..] {
                [0] => {
                    self.lock = None;
                    frame(cid, cmd::LOCK, &[])
                }
                [secs @ 1..=10] => {
                    self.lock = Some((cid, now + Duration::from_secs(u64::from(secs))));
                    frame(cid, cmd::LOCK, &[])
                }
                [_] => error_report(cid, err::INVALID_PAR),
                _ => error_report(cid, err::INVALID_LEN),
            },
            cmd::CBOR if self.u2f_only => error_report(cid, err::INVALID_CMD),
            cmd::MSG if self.u2f_only => {
                let (mode, timeout) = (self.mode, self.timings.touch_timeout);
                let (u2f, touches) = (&mut self.u2f, &mut self.touches);
                let mut touched = || {
                    let t = u2f.take(mode, timeout, now);
                    *touches += u64::from(t);
                    t
                };
                let answer =
                    super::u2f::handle(&mut self.authenticator, &msg.payload, &mut touched);
                frame(cid, cmd::MSG, &answer)
            }
            cmd::CBOR if msg.payload.is_empty() => error_report(cid, err::INVALID_LEN),
            cmd::CBOR => match self.authenticator.begin(&msg.payload) {
                Step::Done(resp) => frame(cid, cmd::CBOR, &resp),
                Step::NeedsTouch(pending) => {
                    let w = Waiting {
                        cid,
                        pending,
                        deadline: now + self.timings.touch_timeout,
                        next_keepalive: now,
                        auto_at: match self.mode {
                            TouchMode::Auto { delay } => Some(now + delay),
                            _ => None,
                        },
                    };
                    if self.mode
                        == (TouchMode::Auto {
                            delay: Duration::ZERO,
                        })
                    {
                        return self.finish_touch(w);
                    }
                    self.waiting = Some(w);
                    // The first KEEPALIVE goes out at once, so a host can prompt right away.
                    self.poll(now)
                }
            },
            _ => error_report(cid, err::INVALID_CMD),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctap::virtual_key::state::KeyState;

    fn dev(mode: TouchMode) -> HidDevice {
        HidDevice::new(
            Authenticator::new(KeyState::in_memory()),
            mode,
            HidTimings::default(),
        )
    }

    fn init(d: &mut HidDevice, now: Instant) -> u32 {
        let r = fragment(CID_BROADCAST, cmd::INIT, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        let out = d.handle_report(&r[0], now);
        assert_eq!(out.len(), 1);
        let Packet::Init {
            cid,
            cmd: c,
            bcnt,
            data,
        } = Packet::parse(&out[0])
        else {
            panic!()
        };
        assert_eq!((cid, c, bcnt), (CID_BROADCAST, cmd::INIT, 17));
        assert_eq!(&data[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        u32::from_be_bytes([data[8], data[9], data[10], data[11]])
    }

    #[test]
    fn keepalive_timer_and_timeout_without_threads() {
        let mut d = dev(TouchMode::Never);
        let t0 = Instant::now();
        let cid = init(&mut d, t0);
        let out = d.handle_report(&fragment(cid, cmd::CBOR, &[0x0b]).unwrap()[0], t0);
        assert_eq!(out.len(), 1, "one keepalive at once");
        assert_eq!(out[0][4], 0x80 | cmd::KEEPALIVE);
        assert_eq!(d.next_deadline(), Some(t0 + Duration::from_millis(100)));
        let out = d.poll(t0 + Duration::from_millis(350));
        assert_eq!(out.len(), 1);
        assert_eq!(d.next_deadline(), Some(t0 + Duration::from_millis(400)));
        let out = d.poll(t0 + Duration::from_secs(31));
        assert_eq!(out[0][4], 0x80 | cmd::CBOR);
        assert_eq!(out[0][7], 0x2f);
        assert!(!d.is_waiting());
        assert_eq!(d.touch(), Err(TouchError::NothingWaiting));
        assert_eq!(d.touch_count(), 0);
    }

    #[test]
    fn zero_keepalive_interval_is_raised_and_polls_end() {
        let mut d = HidDevice::new(
            Authenticator::new(KeyState::in_memory()),
            TouchMode::Never,
            HidTimings {
                keepalive_interval: Duration::ZERO,
                ..HidTimings::default()
            },
        );
        let t0 = Instant::now();
        let cid = init(&mut d, t0);
        let out = d.handle_report(&fragment(cid, cmd::CBOR, &[0x0b]).unwrap()[0], t0);
        assert_eq!(out.len(), 1, "one keepalive at once");
        assert_eq!(d.next_deadline(), Some(t0 + MIN_KEEPALIVE_INTERVAL));
        // A late poll sends one KEEPALIVE and schedules the next one after `now`.
        let late = t0 + Duration::from_millis(1005);
        assert_eq!(d.poll(late).len(), 1);
        assert_eq!(d.next_deadline(), Some(t0 + Duration::from_millis(1010)));
    }

    #[test]
    fn manual_touch_and_mode_change() {
        let mut d = dev(TouchMode::Manual);
        let t0 = Instant::now();
        let cid = init(&mut d, t0);
        d.handle_report(&fragment(cid, cmd::CBOR, &[0x0b]).unwrap()[0], t0);
        let out = d.touch().unwrap();
        assert_eq!(&out[0][4..8], &[0x80 | cmd::CBOR, 0, 1, 0]);
        assert_eq!(d.touch_count(), 1);
        d.handle_report(&fragment(cid, cmd::CBOR, &[0x0b]).unwrap()[0], t0);
        let out = d.set_touch_mode(
            TouchMode::Auto {
                delay: Duration::ZERO,
            },
            t0,
        );
        assert_eq!(&out[0][4..8], &[0x80 | cmd::CBOR, 0, 1, 0]);
        assert_eq!(d.touch_count(), 2);
    }

    #[test]
    fn u2f_only_key_has_no_cbor_and_answers_msg_with_a_touch_per_request() {
        use crate::ctap::u2f::{register_data, request_apdu, split_status, StatusWord};
        let mut d = dev(TouchMode::Manual).u2f_only();
        let t0 = Instant::now();
        let r = fragment(CID_BROADCAST, cmd::INIT, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        let out = d.handle_report(&r[0], t0);
        assert_eq!(out[0][7 + 16], U2F_CAPABILITIES, "no CBOR, no NMSG");
        let cid = init(&mut d, t0);
        let out = d.handle_report(&fragment(cid, cmd::CBOR, &[0x04]).unwrap()[0], t0);
        assert_eq!(&out[0][4..8], &[0x80 | cmd::ERROR, 0, 1, err::INVALID_CMD]);
        assert_eq!(d.touch(), Err(TouchError::NothingWaiting));

        let apdu = request_apdu(0x01, 0, &register_data(&[1; 32], &[2; 32])).unwrap();
        let send = |d: &mut HidDevice, now| {
            let mut reassembler = None;
            for report in fragment(cid, cmd::MSG, &apdu).unwrap() {
                for out in d.handle_report(&report, now) {
                    let p = Packet::parse(&out);
                    let progress = match reassembler.take() {
                        None => {
                            let (rest, progress) = Reassembler::start(&p).unwrap();
                            reassembler = rest;
                            progress
                        }
                        Some(mut r) => {
                            let progress = r.push(&p).unwrap();
                            reassembler = Some(r);
                            progress
                        }
                    };
                    if let Progress::Done(m) = progress {
                        assert_eq!(m.cmd, cmd::MSG);
                        return split_status(&m.payload).unwrap().1;
                    }
                }
            }
            panic!("no answer")
        };
        assert_eq!(send(&mut d, t0), StatusWord::ConditionsNotSatisfied);
        assert_eq!(send(&mut d, t0), StatusWord::ConditionsNotSatisfied);
        assert_eq!(d.touch().unwrap(), Vec::<Report>::new());
        assert_eq!(d.touch_count(), 0, "counted when a request uses it");
        assert_eq!(send(&mut d, t0), StatusWord::NoError);
        assert_eq!(d.touch_count(), 1);
        // One touch, one request.
        assert_eq!(send(&mut d, t0), StatusWord::ConditionsNotSatisfied);
        // Auto after a delay: blinking until then.
        d.set_touch_mode(
            TouchMode::Auto {
                delay: Duration::from_millis(200),
            },
            t0,
        );
        assert_eq!(send(&mut d, t0), StatusWord::ConditionsNotSatisfied);
        let later = t0 + Duration::from_millis(200);
        assert_eq!(send(&mut d, later), StatusWord::NoError);
        assert_eq!(d.touch_count(), 2);
        // Never: a blink that ends after the touch timeout, and starts again.
        d.set_touch_mode(TouchMode::Never, later);
        assert_eq!(send(&mut d, later), StatusWord::ConditionsNotSatisfied);
        let past = later + HidTimings::default().touch_timeout;
        assert_eq!(send(&mut d, past), StatusWord::ConditionsNotSatisfied);
        assert_eq!(d.touch_count(), 2);
    }

    #[test]
    fn lock_makes_other_channels_busy_until_released() {
        let mut d = dev(TouchMode::Auto {
            delay: Duration::ZERO,
        });
        let t0 = Instant::now();
        let (a, b) = (init(&mut d, t0), init(&mut d, t0));
        let out = d.handle_report(&fragment(a, cmd::LOCK, &[2]).unwrap()[0], t0);
        assert_eq!(&out[0][4..7], &[0x80 | cmd::LOCK, 0, 0]);
        let ping = fragment(b, cmd::PING, b"x").unwrap();
        let out = d.handle_report(&ping[0], t0);
        assert_eq!(&out[0][4..8], &[0x80 | cmd::ERROR, 0, 1, err::CHANNEL_BUSY]);
        let out = d.handle_report(&ping[0], t0 + Duration::from_secs(3));
        assert_eq!(out[0][4], 0x80 | cmd::PING, "the lock expired");
        d.handle_report(&fragment(a, cmd::LOCK, &[10]).unwrap()[0], t0);
        d.handle_report(&fragment(a, cmd::LOCK, &[0]).unwrap()[0], t0);
        assert_eq!(d.handle_report(&ping[0], t0)[0][4], 0x80 | cmd::PING);
    }
}
