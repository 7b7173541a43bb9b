//! One CTAPHID channel on one key (CTAP 2.1 §11.2): the INIT handshake with a checked nonce
//! (§11.2.9.1.3), and request/response transactions with KEEPALIVE handling, CANCEL, a
//! per-read timeout and an overall deadline.
//!
//! The protocol lives in [`transaction`](super::transaction), a state machine with no I/O;
//! this module only drives it: reports out and in over a [`Transport`], the clock, and the
//! cancel token. Generic over [`Transport`], so the same code talks to a YubiKey, the virtual
//! key and `sim:` sockets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::framing::{capability, cmd, CID_BROADCAST};
use super::transaction::{Event, KeepaliveStatus, Timeouts, Transaction};
use super::transport::Transport;
use super::{CtapError, HidErrorCode};

/// First wait after a CHANNEL_BUSY answer.
const BUSY_BACKOFF_FIRST: Duration = Duration::from_millis(20);
/// Longest wait between two tries of a busy key.
const BUSY_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Timeouts for one device.
#[derive(Debug, Clone, Copy)]
pub struct DeviceOptions {
    /// Longest silence accepted between two reports of ours (keys send KEEPALIVE every
    /// 100 ms while they work or wait for a touch).
    pub read_timeout: Duration,
    /// Longest a whole transaction may take, touch included.
    pub deadline: Duration,
    /// How often a blocked read wakes up to look at the cancel token.
    pub poll_interval: Duration,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            read_timeout: Duration::from_secs(3),
            deadline: Duration::from_secs(60),
            poll_interval: Duration::from_millis(25),
        }
    }
}

/// Cancels a running transaction from another thread: the transaction sends CTAPHID_CANCEL
/// and then takes the key's answer (CTAP2_ERR_KEEPALIVE_CANCEL).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the transaction to cancel.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether cancel was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the key said about itself in its INIT reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitInfo {
    /// CTAPHID protocol version (2).
    pub protocol: u8,
    /// Device version: major, minor, build.
    pub version: (u8, u8, u8),
    /// Capability flags ([`capability`]).
    pub capabilities: u8,
}

/// One allocated channel on one key.
pub struct Device<T: Transport> {
    transport: T,
    cid: u32,
    info: InitInfo,
    opts: DeviceOptions,
}

impl<T: Transport> std::fmt::Debug for Device<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("cid", &format_args!("{:08x}", self.cid))
            .field("info", &self.info)
            .finish()
    }
}

impl<T: Transport> Device<T> {
    /// Allocate a channel: CTAPHID_INIT on the broadcast channel with a fresh 8-byte nonce.
    /// Replies carrying another nonce belong to someone else and are skipped; if only such
    /// replies come, the result is [`CtapError::InitNonceMismatch`].
    pub fn open(transport: T, opts: DeviceOptions) -> Result<Self, CtapError> {
        let mut dev = Device {
            transport,
            cid: CID_BROADCAST,
            info: InitInfo {
                protocol: 0,
                version: (0, 0, 0),
                capabilities: 0,
            },
            opts,
        };
        let nonce: [u8; 8] = rand::random();
        let reply = dev.transact_inner(cmd::INIT, &nonce, &mut |_| {}, None, Some(nonce))?;
        if reply.len() < 17 {
            return Err(CtapError::InvalidResponse(format!(
                "INIT reply of {} bytes, expected 17",
                reply.len()
            )));
        }
        let cid = u32::from_be_bytes([reply[8], reply[9], reply[10], reply[11]]);
        if cid == 0 || cid == CID_BROADCAST {
            return Err(CtapError::InvalidResponse(format!(
                "INIT reply assigned the reserved channel {cid:08x}"
            )));
        }
        dev.cid = cid;
        dev.info = InitInfo {
            protocol: reply[12],
            version: (reply[13], reply[14], reply[15]),
            capabilities: reply[16],
        };
        Ok(dev)
    }

    /// The channel id the key gave us.
    pub fn channel(&self) -> u32 {
        self.cid
    }

    /// What the key said in its INIT reply.
    pub fn info(&self) -> InitInfo {
        self.info
    }

    /// The timeouts in force.
    pub fn options(&self) -> DeviceOptions {
        self.opts
    }

    /// CTAPHID_PING: the key echoes `data`.
    pub fn ping(&mut self, data: &[u8]) -> Result<Vec<u8>, CtapError> {
        let echo = self.transact(cmd::PING, data, &mut |_| {}, None)?;
        if echo != data {
            return Err(CtapError::InvalidResponse(
                "PING echo differs from what was sent".into(),
            ));
        }
        Ok(echo)
    }

    /// CTAPHID_WINK: the key blinks.
    pub fn wink(&mut self) -> Result<(), CtapError> {
        self.transact(cmd::WINK, &[], &mut |_| {}, None).map(|_| ())
    }

    /// Send a CTAP2 request (command byte + CBOR) and return the raw response (status byte +
    /// CBOR). `on_keepalive` hears each change of KEEPALIVE status; `cancel` may be triggered
    /// from another thread.
    pub fn cbor(
        &mut self,
        request: &[u8],
        on_keepalive: &mut dyn FnMut(KeepaliveStatus),
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<u8>, CtapError> {
        if self.info.capabilities & capability::CBOR == 0 {
            return Err(CtapError::InvalidResponse(
                "this key does not speak CTAP2 (no CBOR capability): it is a U2F-only key".into(),
            ));
        }
        self.when_not_busy(on_keepalive, cancel, |dev, on_keepalive| {
            dev.transact(cmd::CBOR, request, on_keepalive, cancel)
        })
    }

    /// Send a CTAP1/U2F request APDU in a CTAPHID_MSG and return the response APDU (data and
    /// status word), waiting out CHANNEL_BUSY as [`Self::cbor`] does. Refused before anything
    /// is sent when the INIT capabilities carry NMSG (the key has no CTAPHID_MSG).
    pub fn msg(&mut self, apdu: &[u8], cancel: Option<&CancelToken>) -> Result<Vec<u8>, CtapError> {
        if self.info.capabilities & capability::NMSG != 0 {
            return Err(CtapError::Unsupported(
                "this key does not speak U2F (its INIT capabilities carry NMSG)".into(),
            ));
        }
        self.when_not_busy(&mut |_| {}, cancel, |dev, on_keepalive| {
            dev.transact(cmd::MSG, apdu, on_keepalive, cancel)
        })
    }

    /// Run `op` until the key stops answering CHANNEL_BUSY (another program holds it, e.g. a
    /// browser waiting for a WebAuthn touch): each busy answer is told to `on_keepalive` as
    /// [`KeepaliveStatus::Busy`], then `op` runs again after a backoff (20 ms doubling to
    /// 500 ms), until the deadline ([`CtapError::Busy`]) or a cancel. A busy key did not take
    /// the request, so sending it again is safe.
    fn when_not_busy<R>(
        &mut self,
        on_keepalive: &mut dyn FnMut(KeepaliveStatus),
        cancel: Option<&CancelToken>,
        mut op: impl FnMut(&mut Self, &mut dyn FnMut(KeepaliveStatus)) -> Result<R, CtapError>,
    ) -> Result<R, CtapError> {
        let start = Instant::now();
        let mut backoff = BUSY_BACKOFF_FIRST;
        loop {
            match op(self, on_keepalive) {
                Err(CtapError::Hid(HidErrorCode::ChannelBusy)) => {}
                other => return other,
            }
            on_keepalive(KeepaliveStatus::Busy);
            let resume = Instant::now() + backoff;
            if resume.duration_since(start) >= self.opts.deadline {
                return Err(CtapError::Busy(self.opts.deadline));
            }
            // Wait in poll-interval slices so a cancel is seen at once.
            loop {
                if cancel.is_some_and(CancelToken::is_cancelled) {
                    return Err(CtapError::Cancelled);
                }
                let now = Instant::now();
                if now >= resume {
                    break;
                }
                std::thread::sleep(self.opts.poll_interval.min(resume - now));
            }
            backoff = (backoff * 2).min(BUSY_BACKOFF_MAX);
        }
    }

    /// Send one CTAPHID message on our channel and read the reply to it.
    pub fn transact(
        &mut self,
        command: u8,
        payload: &[u8],
        on_keepalive: &mut dyn FnMut(KeepaliveStatus),
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<u8>, CtapError> {
        self.transact_inner(command, payload, on_keepalive, cancel, None)
    }

    /// Drive one [`Transaction`] over the transport: write its reports, read with at most
    /// `poll_interval` per read (so the cancel token is looked at), feed every report to it,
    /// and run its clocks. All protocol decisions are the transaction's.
    fn transact_inner(
        &mut self,
        command: u8,
        payload: &[u8],
        on_keepalive: &mut dyn FnMut(KeepaliveStatus),
        cancel: Option<&CancelToken>,
        init_nonce: Option<[u8; 8]>,
    ) -> Result<Vec<u8>, CtapError> {
        let timeouts = Timeouts {
            read_timeout: self.opts.read_timeout,
            deadline: self.opts.deadline,
        };
        let (mut tx, reports) = Transaction::start(
            self.cid,
            command,
            payload,
            init_nonce,
            timeouts,
            Instant::now(),
        )?;
        for report in &reports {
            self.transport.write_report(report)?;
        }
        loop {
            if cancel.is_some_and(CancelToken::is_cancelled) {
                if let Some(report) = tx.cancel(Instant::now()) {
                    self.transport.write_report(&report)?;
                }
            }
            let now = Instant::now();
            if let Some(expired) = tx.expire(now) {
                if let Some(report) = expired.cancel {
                    // Leave the key idle for whoever comes next; best effort.
                    let _ = self.transport.write_report(&report);
                }
                return Err(expired.error);
            }
            let wait = self
                .opts
                .poll_interval
                .min(tx.next_deadline().saturating_duration_since(now));
            let Some(report) = self.transport.read_report(wait)? else {
                continue;
            };
            match tx.handle_report(&report, Instant::now())? {
                Event::NeedMore => {}
                Event::Keepalive(status) => on_keepalive(status),
                Event::Done(payload) => return Ok(payload),
            }
        }
    }

    /// Give back the transport (e.g. to reopen after an error).
    pub fn into_transport(self) -> T {
        self.transport
    }
}
