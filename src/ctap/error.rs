//! The CTAP layer's one error enum. Variants carry what was wrong; the CLI turns them into
//! messages that say what to do next.

use std::time::Duration;

use thiserror::Error;

use super::authdata::AuthDataError;
use super::cbor::CborError;
use super::framing::FramingError;
use super::status::StatusCode;
use super::transport::TransportError;
use super::u2f::U2fError;

/// A CTAPHID-level error code sent by the key in a CTAPHID_ERROR message (CTAP 2.1 §11.2.9.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HidErrorCode {
    /// ERR_INVALID_CMD.
    InvalidCmd,
    /// ERR_INVALID_PAR.
    InvalidPar,
    /// ERR_INVALID_LEN.
    InvalidLen,
    /// ERR_INVALID_SEQ.
    InvalidSeq,
    /// ERR_MSG_TIMEOUT.
    MsgTimeout,
    /// ERR_CHANNEL_BUSY.
    ChannelBusy,
    /// ERR_LOCK_REQUIRED.
    LockRequired,
    /// ERR_INVALID_CHANNEL.
    InvalidChannel,
    /// ERR_OTHER.
    Other,
    /// A code the spec does not define.
    Unknown(u8),
}

impl HidErrorCode {
    /// Map the byte from a CTAPHID_ERROR payload.
    pub fn from_byte(b: u8) -> HidErrorCode {
        use super::framing::err;
        match b {
            err::INVALID_CMD => HidErrorCode::InvalidCmd,
            err::INVALID_PAR => HidErrorCode::InvalidPar,
            err::INVALID_LEN => HidErrorCode::InvalidLen,
            err::INVALID_SEQ => HidErrorCode::InvalidSeq,
            err::MSG_TIMEOUT => HidErrorCode::MsgTimeout,
            err::CHANNEL_BUSY => HidErrorCode::ChannelBusy,
            err::LOCK_REQUIRED => HidErrorCode::LockRequired,
            err::INVALID_CHANNEL => HidErrorCode::InvalidChannel,
            err::OTHER => HidErrorCode::Other,
            other => HidErrorCode::Unknown(other),
        }
    }

    /// The byte on the wire.
    pub fn byte(self) -> u8 {
        use super::framing::err;
        match self {
            HidErrorCode::InvalidCmd => err::INVALID_CMD,
            HidErrorCode::InvalidPar => err::INVALID_PAR,
            HidErrorCode::InvalidLen => err::INVALID_LEN,
            HidErrorCode::InvalidSeq => err::INVALID_SEQ,
            HidErrorCode::MsgTimeout => err::MSG_TIMEOUT,
            HidErrorCode::ChannelBusy => err::CHANNEL_BUSY,
            HidErrorCode::LockRequired => err::LOCK_REQUIRED,
            HidErrorCode::InvalidChannel => err::INVALID_CHANNEL,
            HidErrorCode::Other => err::OTHER,
            HidErrorCode::Unknown(b) => b,
        }
    }
}

/// What a failed webauthn.dll call means (the CLI says what to do about each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WebAuthnFailure {
    /// The dialog was cancelled or timed out.
    #[error("the dialog was cancelled or timed out")]
    Cancelled,
    /// The key does not support what was asked (ES256 or EdDSA credentials).
    #[error("the security key does not support what was asked")]
    NotSupported,
    /// webauthn.dll refused our request as malformed: a bug on our side.
    #[error("webauthn.dll refused the request as malformed")]
    BadRequest,
    /// Anything else.
    #[error("Windows could not use the security key")]
    Other,
}

/// Everything that can go wrong talking CTAP2 to a key.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CtapError {
    /// No FIDO2 key is plugged in (or none we may open).
    #[error("no FIDO2 security key found")]
    NoDevice,
    /// Several keys are plugged in and none was chosen.
    #[error("{0} FIDO2 keys are plugged in and none was touched to choose one")]
    NoDeviceChosen(usize),
    /// The device selector could not be understood.
    #[error("unknown device selector {0:?}: use usb, usb:PATH, sim:SOCKET or windows")]
    BadSelector(String),
    /// Could not open the device (permissions, busy).
    #[error("cannot open the security key at {path}: {reason}")]
    Open {
        /// Device path.
        path: String,
        /// What the OS said.
        reason: String,
    },
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The key sent a report that breaks CTAPHID framing.
    #[error("the security key broke CTAPHID framing: {0}")]
    Framing(#[from] FramingError),
    /// The key said nothing for longer than the per-read timeout.
    #[error("the security key did not answer within {0:?}")]
    ReadTimeout(Duration),
    /// The whole transaction took longer than its deadline.
    #[error("the security key did not finish within {0:?}")]
    Deadline(Duration),
    /// The INIT reply carried another nonce (another program's INIT, or a confused key).
    #[error("the security key's INIT reply does not match our nonce")]
    InitNonceMismatch,
    /// A reply that is not what the request calls for.
    #[error("the security key answered command 0x{got:02x} to a 0x{expected:02x} request")]
    UnexpectedCommand {
        /// What we sent.
        expected: u8,
        /// What came back.
        got: u8,
    },
    /// The key sent a CTAPHID_ERROR.
    #[error("the security key reported a CTAPHID error: {0:?}")]
    Hid(HidErrorCode),
    /// The key answered with a non-zero CTAP2 status.
    #[error("the security key refused: {0}")]
    Status(StatusCode),
    /// The response is not canonical CBOR.
    #[error("the security key's response is not valid CTAP2 CBOR: {0}")]
    Cbor(#[from] CborError),
    /// The response decoded but is missing a field or has a wrong type.
    #[error("the security key's response is malformed: {0}")]
    InvalidResponse(String),
    /// The key's CTAP2 response had no status byte at all.
    #[error("the security key sent an empty CTAP2 response (no status byte)")]
    EmptyResponse,
    /// The authenticatorData inside a response does not parse.
    #[error("the security key's authenticatorData is malformed: {0}")]
    AuthData(AuthDataError),
    /// This build or platform cannot do what was asked.
    #[error("{0}")]
    Unsupported(String),
    /// webauthn.dll (Windows) failed with an HRESULT.
    #[error("the Windows security key dialog failed: {name} (HRESULT 0x{hresult:08x}): {kind}")]
    WebAuthn {
        /// The HRESULT.
        hresult: u32,
        /// What `WebAuthNGetErrorName` calls it.
        name: String,
        /// What the HRESULT means for us.
        kind: WebAuthnFailure,
    },
    /// The request was cancelled from our side before the key answered.
    #[error("the request was cancelled")]
    Cancelled,
    /// A U2F (CTAP1) exchange failed: the key refused, or its answer does not parse.
    #[error(transparent)]
    U2f(#[from] U2fError),
    /// The key answered CHANNEL_BUSY until the deadline: another program kept it.
    #[error("the security key stayed busy with another program for {0:?}")]
    Busy(Duration),
}
