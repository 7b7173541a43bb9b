//! CTAP2 status codes (CTAP 2.1 §8.2 "Status codes"). Every code is a variant; codes we do not
//! know keep their byte in [`StatusCode::Unknown`], so nothing is lost in translation.

/// A non-zero CTAP2 status byte from the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusCode {
    /// 0x01 CTAP1_ERR_INVALID_COMMAND: the command is not supported by this key.
    InvalidCommand,
    /// 0x02 CTAP1_ERR_INVALID_PARAMETER: a command parameter is invalid.
    InvalidParameter,
    /// 0x03 CTAP1_ERR_INVALID_LENGTH: the request length is invalid.
    InvalidLength,
    /// 0x04 CTAP1_ERR_INVALID_SEQ: invalid message sequencing.
    InvalidSeq,
    /// 0x05 CTAP1_ERR_TIMEOUT: the message timed out.
    Timeout,
    /// 0x06 CTAP1_ERR_CHANNEL_BUSY: the key is busy with another request.
    ChannelBusy,
    /// 0x0A CTAP1_ERR_LOCK_REQUIRED: the command requires a channel lock.
    LockRequired,
    /// 0x0B CTAP1_ERR_INVALID_CHANNEL: the channel is not valid.
    InvalidChannel,
    /// 0x11 CTAP2_ERR_CBOR_UNEXPECTED_TYPE: the request has a CBOR item of an unexpected type.
    CborUnexpectedType,
    /// 0x12 CTAP2_ERR_INVALID_CBOR: the request is not valid CBOR.
    InvalidCbor,
    /// 0x14 CTAP2_ERR_MISSING_PARAMETER: a required parameter is missing.
    MissingParameter,
    /// 0x15 CTAP2_ERR_LIMIT_EXCEEDED: a limit was exceeded.
    LimitExceeded,
    /// 0x17 CTAP2_ERR_FP_DATABASE_FULL: the fingerprint database is full.
    FpDatabaseFull,
    /// 0x18 CTAP2_ERR_LARGE_BLOB_STORAGE_FULL: large blob storage is full.
    LargeBlobStorageFull,
    /// 0x19 CTAP2_ERR_CREDENTIAL_EXCLUDED: a credential in the exclude list is on this key.
    CredentialExcluded,
    /// 0x21 CTAP2_ERR_PROCESSING: the key is still processing.
    Processing,
    /// 0x22 CTAP2_ERR_INVALID_CREDENTIAL: the credential is not valid for this key.
    InvalidCredential,
    /// 0x23 CTAP2_ERR_USER_ACTION_PENDING: a user action is pending.
    UserActionPending,
    /// 0x24 CTAP2_ERR_OPERATION_PENDING: another operation is pending.
    OperationPending,
    /// 0x25 CTAP2_ERR_NO_OPERATIONS: no request is pending.
    NoOperations,
    /// 0x26 CTAP2_ERR_UNSUPPORTED_ALGORITHM: none of the offered algorithms is supported.
    UnsupportedAlgorithm,
    /// 0x27 CTAP2_ERR_OPERATION_DENIED: the operation was denied.
    OperationDenied,
    /// 0x28 CTAP2_ERR_KEY_STORE_FULL: the key's credential storage is full.
    KeyStoreFull,
    /// 0x2A CTAP2_ERR_NO_OPERATION_PENDING: no operation is pending.
    NoOperationPending,
    /// 0x2B CTAP2_ERR_UNSUPPORTED_OPTION: an option is not supported.
    UnsupportedOption,
    /// 0x2C CTAP2_ERR_INVALID_OPTION: an option is not valid for this command.
    InvalidOption,
    /// 0x2D CTAP2_ERR_KEEPALIVE_CANCEL: the request was cancelled.
    KeepaliveCancel,
    /// 0x2E CTAP2_ERR_NO_CREDENTIALS: no valid credential on this key.
    NoCredentials,
    /// 0x2F CTAP2_ERR_USER_ACTION_TIMEOUT: nobody touched the key in time.
    UserActionTimeout,
    /// 0x30 CTAP2_ERR_NOT_ALLOWED: the operation is not allowed.
    NotAllowed,
    /// 0x31 CTAP2_ERR_PIN_INVALID: wrong PIN.
    PinInvalid,
    /// 0x32 CTAP2_ERR_PIN_BLOCKED: the PIN is blocked.
    PinBlocked,
    /// 0x33 CTAP2_ERR_PIN_AUTH_INVALID: PIN authentication failed.
    PinAuthInvalid,
    /// 0x34 CTAP2_ERR_PIN_AUTH_BLOCKED: PIN authentication is blocked until the key is re-plugged.
    PinAuthBlocked,
    /// 0x35 CTAP2_ERR_PIN_NOT_SET: no PIN is set.
    PinNotSet,
    /// 0x36 CTAP2_ERR_PUAT_REQUIRED: the key requires a PIN or user verification.
    PuatRequired,
    /// 0x37 CTAP2_ERR_PIN_POLICY_VIOLATION: the PIN violates the key's policy.
    PinPolicyViolation,
    /// 0x39 CTAP2_ERR_REQUEST_TOO_LARGE: the request is too large for the key.
    RequestTooLarge,
    /// 0x3A CTAP2_ERR_ACTION_TIMEOUT: the action timed out.
    ActionTimeout,
    /// 0x3B CTAP2_ERR_UP_REQUIRED: user presence is required.
    UpRequired,
    /// 0x3C CTAP2_ERR_UV_BLOCKED: built-in user verification is blocked.
    UvBlocked,
    /// 0x3D CTAP2_ERR_INTEGRITY_FAILURE: integrity check failed.
    IntegrityFailure,
    /// 0x3E CTAP2_ERR_INVALID_SUBCOMMAND: invalid subcommand.
    InvalidSubcommand,
    /// 0x3F CTAP2_ERR_UV_INVALID: user verification failed.
    UvInvalid,
    /// 0x40 CTAP2_ERR_UNAUTHORIZED_PERMISSION: the permission is not authorized.
    UnauthorizedPermission,
    /// 0x7F CTAP1_ERR_OTHER: unspecified error.
    Other,
    /// A status byte this crate does not know (extension, vendor, or future codes).
    Unknown(u8),
}

impl StatusCode {
    /// Map a status byte; `0x00` (CTAP2_OK) is not an error and maps to `None`.
    pub fn from_byte(b: u8) -> Option<StatusCode> {
        Some(match b {
            0x00 => return None,
            0x01 => StatusCode::InvalidCommand,
            0x02 => StatusCode::InvalidParameter,
            0x03 => StatusCode::InvalidLength,
            0x04 => StatusCode::InvalidSeq,
            0x05 => StatusCode::Timeout,
            0x06 => StatusCode::ChannelBusy,
            0x0a => StatusCode::LockRequired,
            0x0b => StatusCode::InvalidChannel,
            0x11 => StatusCode::CborUnexpectedType,
            0x12 => StatusCode::InvalidCbor,
            0x14 => StatusCode::MissingParameter,
            0x15 => StatusCode::LimitExceeded,
            0x17 => StatusCode::FpDatabaseFull,
            0x18 => StatusCode::LargeBlobStorageFull,
            0x19 => StatusCode::CredentialExcluded,
            0x21 => StatusCode::Processing,
            0x22 => StatusCode::InvalidCredential,
            0x23 => StatusCode::UserActionPending,
            0x24 => StatusCode::OperationPending,
            0x25 => StatusCode::NoOperations,
            0x26 => StatusCode::UnsupportedAlgorithm,
            0x27 => StatusCode::OperationDenied,
            0x28 => StatusCode::KeyStoreFull,
            0x2a => StatusCode::NoOperationPending,
            0x2b => StatusCode::UnsupportedOption,
            0x2c => StatusCode::InvalidOption,
            0x2d => StatusCode::KeepaliveCancel,
            0x2e => StatusCode::NoCredentials,
            0x2f => StatusCode::UserActionTimeout,
            0x30 => StatusCode::NotAllowed,
            0x31 => StatusCode::PinInvalid,
            0x32 => StatusCode::PinBlocked,
            0x33 => StatusCode::PinAuthInvalid,
            0x34 => StatusCode::PinAuthBlocked,
            0x35 => StatusCode::PinNotSet,
            0x36 => StatusCode::PuatRequired,
            0x37 => StatusCode::PinPolicyViolation,
            0x39 => StatusCode::RequestTooLarge,
            0x3a => StatusCode::ActionTimeout,
            0x3b => StatusCode::UpRequired,
            0x3c => StatusCode::UvBlocked,
            0x3d => StatusCode::IntegrityFailure,
            0x3e => StatusCode::InvalidSubcommand,
            0x3f => StatusCode::UvInvalid,
            0x40 => StatusCode::UnauthorizedPermission,
            0x7f => StatusCode::Other,
            other => StatusCode::Unknown(other),
        })
    }

    /// The byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            StatusCode::InvalidCommand => 0x01,
            StatusCode::InvalidParameter => 0x02,
            StatusCode::InvalidLength => 0x03,
            StatusCode::InvalidSeq => 0x04,
            StatusCode::Timeout => 0x05,
            StatusCode::ChannelBusy => 0x06,
            StatusCode::LockRequired => 0x0a,
            StatusCode::InvalidChannel => 0x0b,
            StatusCode::CborUnexpectedType => 0x11,
            StatusCode::InvalidCbor => 0x12,
            StatusCode::MissingParameter => 0x14,
            StatusCode::LimitExceeded => 0x15,
            StatusCode::FpDatabaseFull => 0x17,
            StatusCode::LargeBlobStorageFull => 0x18,
            StatusCode::CredentialExcluded => 0x19,
            StatusCode::Processing => 0x21,
            StatusCode::InvalidCredential => 0x22,
            StatusCode::UserActionPending => 0x23,
            StatusCode::OperationPending => 0x24,
            StatusCode::NoOperations => 0x25,
            StatusCode::UnsupportedAlgorithm => 0x26,
            StatusCode::OperationDenied => 0x27,
            StatusCode::KeyStoreFull => 0x28,
            StatusCode::NoOperationPending => 0x2a,
            StatusCode::UnsupportedOption => 0x2b,
            StatusCode::InvalidOption => 0x2c,
            StatusCode::KeepaliveCancel => 0x2d,
            StatusCode::NoCredentials => 0x2e,
            StatusCode::UserActionTimeout => 0x2f,
            StatusCode::NotAllowed => 0x30,
            StatusCode::PinInvalid => 0x31,
            StatusCode::PinBlocked => 0x32,
            StatusCode::PinAuthInvalid => 0x33,
            StatusCode::PinAuthBlocked => 0x34,
            StatusCode::PinNotSet => 0x35,
            StatusCode::PuatRequired => 0x36,
            StatusCode::PinPolicyViolation => 0x37,
            StatusCode::RequestTooLarge => 0x39,
            StatusCode::ActionTimeout => 0x3a,
            StatusCode::UpRequired => 0x3b,
            StatusCode::UvBlocked => 0x3c,
            StatusCode::IntegrityFailure => 0x3d,
            StatusCode::InvalidSubcommand => 0x3e,
            StatusCode::UvInvalid => 0x3f,
            StatusCode::UnauthorizedPermission => 0x40,
            StatusCode::Other => 0x7f,
            StatusCode::Unknown(b) => b,
        }
    }

    /// The spec name, e.g. `CTAP2_ERR_KEEPALIVE_CANCEL`.
    pub fn name(self) -> &'static str {
        match self {
            StatusCode::InvalidCommand => "CTAP1_ERR_INVALID_COMMAND",
            StatusCode::InvalidParameter => "CTAP1_ERR_INVALID_PARAMETER",
            StatusCode::InvalidLength => "CTAP1_ERR_INVALID_LENGTH",
            StatusCode::InvalidSeq => "CTAP1_ERR_INVALID_SEQ",
            StatusCode::Timeout => "CTAP1_ERR_TIMEOUT",
            StatusCode::ChannelBusy => "CTAP1_ERR_CHANNEL_BUSY",
            StatusCode::LockRequired => "CTAP1_ERR_LOCK_REQUIRED",
            StatusCode::InvalidChannel => "CTAP1_ERR_INVALID_CHANNEL",
            StatusCode::CborUnexpectedType => "CTAP2_ERR_CBOR_UNEXPECTED_TYPE",
            StatusCode::InvalidCbor => "CTAP2_ERR_INVALID_CBOR",
            StatusCode::MissingParameter => "CTAP2_ERR_MISSING_PARAMETER",
            StatusCode::LimitExceeded => "CTAP2_ERR_LIMIT_EXCEEDED",
            StatusCode::FpDatabaseFull => "CTAP2_ERR_FP_DATABASE_FULL",
            StatusCode::LargeBlobStorageFull => "CTAP2_ERR_LARGE_BLOB_STORAGE_FULL",
            StatusCode::CredentialExcluded => "CTAP2_ERR_CREDENTIAL_EXCLUDED",
            StatusCode::Processing => "CTAP2_ERR_PROCESSING",
            StatusCode::InvalidCredential => "CTAP2_ERR_INVALID_CREDENTIAL",
            StatusCode::UserActionPending => "CTAP2_ERR_USER_ACTION_PENDING",
            StatusCode::OperationPending => "CTAP2_ERR_OPERATION_PENDING",
            StatusCode::NoOperations => "CTAP2_ERR_NO_OPERATIONS",
            StatusCode::UnsupportedAlgorithm => "CTAP2_ERR_UNSUPPORTED_ALGORITHM",
            StatusCode::OperationDenied => "CTAP2_ERR_OPERATION_DENIED",
            StatusCode::KeyStoreFull => "CTAP2_ERR_KEY_STORE_FULL",
            StatusCode::NoOperationPending => "CTAP2_ERR_NO_OPERATION_PENDING",
            StatusCode::UnsupportedOption => "CTAP2_ERR_UNSUPPORTED_OPTION",
            StatusCode::InvalidOption => "CTAP2_ERR_INVALID_OPTION",
            StatusCode::KeepaliveCancel => "CTAP2_ERR_KEEPALIVE_CANCEL",
            StatusCode::NoCredentials => "CTAP2_ERR_NO_CREDENTIALS",
            StatusCode::UserActionTimeout => "CTAP2_ERR_USER_ACTION_TIMEOUT",
            StatusCode::NotAllowed => "CTAP2_ERR_NOT_ALLOWED",
            StatusCode::PinInvalid => "CTAP2_ERR_PIN_INVALID",
            StatusCode::PinBlocked => "CTAP2_ERR_PIN_BLOCKED",
            StatusCode::PinAuthInvalid => "CTAP2_ERR_PIN_AUTH_INVALID",
            StatusCode::PinAuthBlocked => "CTAP2_ERR_PIN_AUTH_BLOCKED",
            StatusCode::PinNotSet => "CTAP2_ERR_PIN_NOT_SET",
            StatusCode::PuatRequired => "CTAP2_ERR_PUAT_REQUIRED",
            StatusCode::PinPolicyViolation => "CTAP2_ERR_PIN_POLICY_VIOLATION",
            StatusCode::RequestTooLarge => "CTAP2_ERR_REQUEST_TOO_LARGE",
            StatusCode::ActionTimeout => "CTAP2_ERR_ACTION_TIMEOUT",
            StatusCode::UpRequired => "CTAP2_ERR_UP_REQUIRED",
            StatusCode::UvBlocked => "CTAP2_ERR_UV_BLOCKED",
            StatusCode::IntegrityFailure => "CTAP2_ERR_INTEGRITY_FAILURE",
            StatusCode::InvalidSubcommand => "CTAP2_ERR_INVALID_SUBCOMMAND",
            StatusCode::UvInvalid => "CTAP2_ERR_UV_INVALID",
            StatusCode::UnauthorizedPermission => "CTAP2_ERR_UNAUTHORIZED_PERMISSION",
            StatusCode::Other => "CTAP1_ERR_OTHER",
            StatusCode::Unknown(_) => "unknown status",
        }
    }

    /// What it means, in words.
    pub fn description(self) -> &'static str {
        match self {
            StatusCode::InvalidCommand => "the command is not supported by this key",
            StatusCode::InvalidParameter => "a command parameter is invalid",
            StatusCode::InvalidLength => "the request length is invalid",
            StatusCode::InvalidSeq => "invalid message sequencing",
            StatusCode::Timeout => "the message timed out",
            StatusCode::ChannelBusy => "the key is busy with another request",
            StatusCode::LockRequired => "the command requires a channel lock",
            StatusCode::InvalidChannel => "the channel is not valid",
            StatusCode::CborUnexpectedType => "the request has a CBOR item of an unexpected type",
            StatusCode::InvalidCbor => "the request is not valid CBOR",
            StatusCode::MissingParameter => "a required parameter is missing",
            StatusCode::LimitExceeded => "a limit was exceeded",
            StatusCode::FpDatabaseFull => "the fingerprint database is full",
            StatusCode::LargeBlobStorageFull => "large blob storage is full",
            StatusCode::CredentialExcluded => "a credential in the exclude list is on this key",
            StatusCode::Processing => "the key is still processing",
            StatusCode::InvalidCredential => "the credential is not valid for this key",
            StatusCode::UserActionPending => "a user action is pending",
            StatusCode::OperationPending => "another operation is pending",
            StatusCode::NoOperations => "no request is pending",
            StatusCode::UnsupportedAlgorithm => "none of the offered algorithms is supported",
            StatusCode::OperationDenied => "the operation was denied",
            StatusCode::KeyStoreFull => "the key's credential storage is full",
            StatusCode::NoOperationPending => "no operation is pending",
            StatusCode::UnsupportedOption => "an option is not supported",
            StatusCode::InvalidOption => "an option is not valid for this command",
            StatusCode::KeepaliveCancel => "the request was cancelled",
            StatusCode::NoCredentials => "no valid credential on this key",
            StatusCode::UserActionTimeout => "nobody touched the key in time",
            StatusCode::NotAllowed => "the operation is not allowed",
            StatusCode::PinInvalid => "wrong PIN",
            StatusCode::PinBlocked => "the PIN is blocked",
            StatusCode::PinAuthInvalid => "PIN authentication failed",
            StatusCode::PinAuthBlocked => {
                "PIN authentication is blocked until the key is re-plugged"
            }
            StatusCode::PinNotSet => "no PIN is set",
            StatusCode::PuatRequired => "the key requires a PIN or user verification",
            StatusCode::PinPolicyViolation => "the PIN violates the key's policy",
            StatusCode::RequestTooLarge => "the request is too large for the key",
            StatusCode::ActionTimeout => "the action timed out",
            StatusCode::UpRequired => "user presence is required",
            StatusCode::UvBlocked => "built-in user verification is blocked",
            StatusCode::IntegrityFailure => "integrity check failed",
            StatusCode::InvalidSubcommand => "invalid subcommand",
            StatusCode::UvInvalid => "user verification failed",
            StatusCode::UnauthorizedPermission => "the permission is not authorized",
            StatusCode::Other => "unspecified error",
            StatusCode::Unknown(_) => "the key answered with a status this program does not know",
        }
    }
}

impl std::fmt::Display for StatusCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (0x{:02x}, {})",
            self.description(),
            self.byte(),
            self.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        assert_eq!(StatusCode::from_byte(0), None);
        for b in 1..=255u8 {
            let s = StatusCode::from_byte(b).unwrap();
            assert_eq!(s.byte(), b);
        }
        assert_eq!(
            StatusCode::from_byte(0x2d),
            Some(StatusCode::KeepaliveCancel)
        );
        assert_eq!(StatusCode::from_byte(0xf3), Some(StatusCode::Unknown(0xf3)));
    }
}
