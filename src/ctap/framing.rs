//! CTAPHID packets (CTAP 2.1 §11.2.4): initialization and continuation packets on 64-byte
//! HID reports, fragmentation of a message and strict reassembly.
//!
//! Pure functions and a small state machine: no I/O here. The host side (`device`) and the
//! virtual key's device side share this code.

use thiserror::Error;

/// Length of one HID report, without the report-id byte that some HID APIs prepend.
pub const REPORT_LEN: usize = 64;
/// One raw HID report as it crosses the wire.
pub type Report = [u8; REPORT_LEN];
/// Payload bytes in an initialization packet.
pub const INIT_DATA_LEN: usize = REPORT_LEN - 7;
/// Payload bytes in a continuation packet.
pub const CONT_DATA_LEN: usize = REPORT_LEN - 5;
/// Largest CTAPHID message: one init packet and 128 continuation packets (SEQ 0..=127).
pub const MAX_PAYLOAD: usize = INIT_DATA_LEN + 128 * CONT_DATA_LEN;
/// The broadcast channel, used only for CTAPHID_INIT.
pub const CID_BROADCAST: u32 = 0xffff_ffff;

/// CTAPHID command codes (CTAP 2.1 §11.2.9), without the init-packet bit 7.
pub mod cmd {
    /// CTAPHID_PING: echo.
    pub const PING: u8 = 0x01;
    /// CTAPHID_MSG: CTAP1/U2F message.
    pub const MSG: u8 = 0x03;
    /// CTAPHID_LOCK.
    pub const LOCK: u8 = 0x04;
    /// CTAPHID_INIT: channel allocation.
    pub const INIT: u8 = 0x06;
    /// CTAPHID_WINK.
    pub const WINK: u8 = 0x08;
    /// CTAPHID_CBOR: a CTAP2 request or response.
    pub const CBOR: u8 = 0x10;
    /// CTAPHID_CANCEL: abort the running transaction on this channel.
    pub const CANCEL: u8 = 0x11;
    /// CTAPHID_KEEPALIVE: the key is still working (PROCESSING) or waiting for a touch (UPNEEDED).
    pub const KEEPALIVE: u8 = 0x3b;
    /// CTAPHID_ERROR.
    pub const ERROR: u8 = 0x3f;
}

/// CTAPHID protocol version an INIT reply carries (CTAP 2.1 §11.2.9.1.3).
pub const PROTOCOL_VERSION: u8 = 2;

/// Capability flags of the INIT reply (CTAP 2.1 §11.2.9.1.3).
pub mod capability {
    /// CAPABILITY_WINK: the key implements CTAPHID_WINK.
    pub const WINK: u8 = 0x01;
    /// CAPABILITY_CBOR: the key implements CTAPHID_CBOR (CTAP2).
    pub const CBOR: u8 = 0x04;
    /// CAPABILITY_NMSG: the key does NOT implement CTAPHID_MSG (no CTAP1/U2F).
    pub const NMSG: u8 = 0x08;
}

/// CTAPHID_ERROR codes (CTAP 2.1 §11.2.9.1.6).
pub mod err {
    /// The command in the request is invalid.
    pub const INVALID_CMD: u8 = 0x01;
    /// A parameter in the request is invalid.
    pub const INVALID_PAR: u8 = 0x02;
    /// The length field (BCNT) is invalid.
    pub const INVALID_LEN: u8 = 0x03;
    /// The sequence does not match the expected value.
    pub const INVALID_SEQ: u8 = 0x04;
    /// The message has timed out.
    pub const MSG_TIMEOUT: u8 = 0x05;
    /// The device is busy with another channel.
    pub const CHANNEL_BUSY: u8 = 0x06;
    /// Command requires channel lock.
    pub const LOCK_REQUIRED: u8 = 0x0a;
    /// CID is not valid.
    pub const INVALID_CHANNEL: u8 = 0x0b;
    /// Unspecified error.
    pub const OTHER: u8 = 0x7f;
}

/// KEEPALIVE status bytes (CTAP 2.1 §11.2.9.2.1).
pub mod keepalive {
    /// The authenticator is still processing the current request.
    pub const PROCESSING: u8 = 1;
    /// The authenticator is waiting for user presence.
    pub const UPNEEDED: u8 = 2;
}

/// A report that does not follow CTAPHID framing rules.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FramingError {
    /// The payload is larger than a CTAPHID message can carry.
    #[error("message of {0} bytes exceeds the CTAPHID maximum of {MAX_PAYLOAD}")]
    TooLong(usize),
    /// A continuation packet came with the wrong sequence number.
    #[error("continuation packet out of order: expected SEQ {expected}, got {got}")]
    BadSeq {
        /// The sequence number we expected.
        expected: u8,
        /// The one that arrived.
        got: u8,
    },
    /// A continuation packet was expected but an initialization packet arrived.
    #[error("initialization packet (command 0x{0:02x}) arrived in the middle of a message")]
    UnexpectedInit(u8),
    /// An initialization packet was expected but a continuation packet arrived.
    #[error("continuation packet (SEQ {0}) arrived with no message in progress")]
    UnexpectedCont(u8),
    /// A packet for another channel arrived while a message was being reassembled.
    #[error("packet for channel {got:08x} interleaved with a message on channel {expected:08x}")]
    ChannelMismatch {
        /// The channel of the message in progress.
        expected: u32,
        /// The channel of the packet that arrived.
        got: u32,
    },
}

/// One decoded CTAPHID packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// First packet of a message.
    Init {
        /// Channel id.
        cid: u32,
        /// Command, with bit 7 cleared.
        cmd: u8,
        /// Total payload length the message announces.
        bcnt: u16,
        /// The 57 data bytes of this packet (padding included).
        data: [u8; INIT_DATA_LEN],
    },
    /// A continuation packet.
    Cont {
        /// Channel id.
        cid: u32,
        /// Sequence number, 0..=127.
        seq: u8,
        /// The 59 data bytes of this packet (padding included).
        data: [u8; CONT_DATA_LEN],
    },
}

impl Packet {
    /// Decode a report. Every 64-byte report is one of the two kinds, so this cannot fail;
    /// the checks happen in [`Reassembler`].
    pub fn parse(report: &Report) -> Packet {
        let cid = u32::from_be_bytes([report[0], report[1], report[2], report[3]]);
        if report[4] & 0x80 != 0 {
            let mut data = [0u8; INIT_DATA_LEN];
            data.copy_from_slice(&report[7..]);
            Packet::Init {
                cid,
                cmd: report[4] & 0x7f,
                bcnt: u16::from_be_bytes([report[5], report[6]]),
                data,
            }
        } else {
            let mut data = [0u8; CONT_DATA_LEN];
            data.copy_from_slice(&report[5..]);
            Packet::Cont {
                cid,
                seq: report[4],
                data,
            }
        }
    }

    /// The channel this packet belongs to.
    pub fn cid(&self) -> u32 {
        match self {
            Packet::Init { cid, .. } | Packet::Cont { cid, .. } => *cid,
        }
    }
}

/// A complete CTAPHID message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Channel id.
    pub cid: u32,
    /// Command, with bit 7 cleared.
    pub cmd: u8,
    /// The payload, exactly BCNT bytes.
    pub payload: Vec<u8>,
}

/// Split one message into reports: an init packet, then continuation packets with SEQ 0, 1, …
/// Unused bytes are zero.
pub fn fragment(cid: u32, cmd: u8, payload: &[u8]) -> Result<Vec<Report>, FramingError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(FramingError::TooLong(payload.len()));
    }
    let mut out = Vec::with_capacity(
        1 + payload
            .len()
            .saturating_sub(INIT_DATA_LEN)
            .div_ceil(CONT_DATA_LEN),
    );
    let mut r = [0u8; REPORT_LEN];
    r[..4].copy_from_slice(&cid.to_be_bytes());
    r[4] = cmd | 0x80;
    r[5..7].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    let first = payload.len().min(INIT_DATA_LEN);
    r[7..7 + first].copy_from_slice(&payload[..first]);
    out.push(r);
    for (seq, chunk) in payload[first..].chunks(CONT_DATA_LEN).enumerate() {
        let mut r = [0u8; REPORT_LEN];
        r[..4].copy_from_slice(&cid.to_be_bytes());
        r[4] = seq as u8;
        r[5..5 + chunk.len()].copy_from_slice(chunk);
        out.push(r);
    }
    Ok(out)
}

/// Result of feeding one packet to a [`Reassembler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// More continuation packets are needed.
    NeedMore,
    /// The message is complete.
    Done(Message),
}

/// Reassembles one message on one channel, checking SEQ order and length as it goes.
#[derive(Debug)]
pub struct Reassembler {
    cid: u32,
    cmd: u8,
    bcnt: usize,
    next_seq: u8,
    buf: Vec<u8>,
}

impl Reassembler {
    /// Start a message from its initialization packet. Returns the finished message when it
    /// fits in one packet.
    pub fn start(packet: &Packet) -> Result<(Option<Reassembler>, Progress), FramingError> {
        match packet {
            Packet::Cont { seq, .. } => Err(FramingError::UnexpectedCont(*seq)),
            Packet::Init {
                cid,
                cmd,
                bcnt,
                data,
            } => {
                let bcnt = usize::from(*bcnt);
                if bcnt > MAX_PAYLOAD {
                    return Err(FramingError::TooLong(bcnt));
                }
                let take = bcnt.min(INIT_DATA_LEN);
                if take == bcnt {
                    let msg = Message {
                        cid: *cid,
                        cmd: *cmd,
                        payload: data[..take].to_vec(),
                    };
                    return Ok((None, Progress::Done(msg)));
                }
                let mut buf = Vec::with_capacity(bcnt);
                buf.extend_from_slice(&data[..take]);
                let r = Reassembler {
                    cid: *cid,
                    cmd: *cmd,
                    bcnt,
                    next_seq: 0,
                    buf,
                };
                Ok((Some(r), Progress::NeedMore))
            }
        }
    }

    /// The channel of the message being reassembled.
    pub fn cid(&self) -> u32 {
        self.cid
    }

    /// The command of the message being reassembled.
    pub fn cmd(&self) -> u8 {
        self.cmd
    }

    /// Feed the next packet of this channel.
    pub fn push(&mut self, packet: &Packet) -> Result<Progress, FramingError> {
        match packet {
            Packet::Init { cmd, .. } => Err(FramingError::UnexpectedInit(*cmd)),
            Packet::Cont { cid, seq, data } => {
                if *cid != self.cid {
                    return Err(FramingError::ChannelMismatch {
                        expected: self.cid,
                        got: *cid,
                    });
                }
                if *seq != self.next_seq {
                    return Err(FramingError::BadSeq {
                        expected: self.next_seq,
                        got: *seq,
                    });
                }
                self.next_seq = self.next_seq.wrapping_add(1);
                let take = (self.bcnt - self.buf.len()).min(CONT_DATA_LEN);
                self.buf.extend_from_slice(&data[..take]);
                if self.buf.len() == self.bcnt {
                    Ok(Progress::Done(Message {
                        cid: self.cid,
                        cmd: self.cmd,
                        payload: std::mem::take(&mut self.buf),
                    }))
                } else {
                    Ok(Progress::NeedMore)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reassemble(reports: &[Report]) -> Result<Message, FramingError> {
        let (mut r, mut p) = Reassembler::start(&Packet::parse(&reports[0]))?;
        for rep in &reports[1..] {
            p = r.as_mut().expect("in progress").push(&Packet::parse(rep))?;
        }
        match p {
            Progress::Done(m) => Ok(m),
            Progress::NeedMore => panic!("incomplete"),
        }
    }

    #[test]
    fn round_trip_sizes() {
        for len in [0usize, 1, 57, 58, 116, 117, 255, 1000, MAX_PAYLOAD] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let reports = fragment(0x0102_0304, cmd::CBOR, &payload).unwrap();
            let expect_n = if len <= 57 {
                1
            } else {
                1 + (len - 57).div_ceil(59)
            };
            assert_eq!(reports.len(), expect_n, "len {len}");
            let m = reassemble(&reports).unwrap();
            assert_eq!(m.payload, payload);
            assert_eq!(m.cmd, cmd::CBOR);
            assert_eq!(m.cid, 0x0102_0304);
        }
    }

    #[test]
    fn too_long_refused() {
        assert_eq!(
            fragment(1, cmd::CBOR, &vec![0; MAX_PAYLOAD + 1]),
            Err(FramingError::TooLong(MAX_PAYLOAD + 1))
        );
        let mut r = [0u8; REPORT_LEN];
        r[4] = 0x90;
        r[5..7].copy_from_slice(&((MAX_PAYLOAD + 1) as u16).to_be_bytes());
        assert!(matches!(
            Reassembler::start(&Packet::parse(&r)),
            Err(FramingError::TooLong(_))
        ));
    }

    #[test]
    fn seq_gap_and_interleave_refused() {
        let reports = fragment(7, cmd::CBOR, &[1u8; 200]).unwrap();
        let (mut r, _) = Reassembler::start(&Packet::parse(&reports[0])).unwrap();
        let r = r.as_mut().unwrap();
        assert_eq!(
            r.push(&Packet::parse(&reports[2])),
            Err(FramingError::BadSeq {
                expected: 0,
                got: 1
            })
        );
        let other = fragment(8, cmd::CBOR, &[1u8; 200]).unwrap();
        assert!(matches!(
            r.push(&Packet::parse(&other[1])),
            Err(FramingError::ChannelMismatch { .. })
        ));
        assert!(matches!(
            r.push(&Packet::parse(&other[0])),
            Err(FramingError::UnexpectedInit(_))
        ));
    }
}
