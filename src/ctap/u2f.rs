//! CTAP1/U2F over CTAPHID_MSG, for keys without CTAP2 (YubiKey NEO and 4, older Security Keys,
//! Titan FT): FIDO U2F Raw Message Formats v1.2 (§2 APDU framing, §4 registration, §5
//! authentication, §6 version) and CTAP 2.1 §10 (CTAP1/U2F interoperability: how a WebAuthn
//! request maps onto U2F messages and back).
//!
//! Two layers, as for CTAP2:
//! - pure: [`request_apdu`] builds a request APDU, [`split_status`] / [`Registration::parse`] /
//!   [`Authentication::parse`] parse what the key answers, strictly and with bounded sizes,
//!   into typed [`U2fError`]s. No I/O.
//! - [`U2fKey`]: the [`SecurityKey`] backend over a CTAPHID channel. It maps U2F onto what the
//!   rest of the crate already checks, so enrollment, the gate, receipts and `auths audit
//!   verify` stay one path (CTAP 2.1 §10.2, §10.3):
//!   - U2F_AUTHENTICATE signs `appParam || userPresence || counter || challengeParam`, which is
//!     exactly `authenticatorData (37 bytes) || clientDataHash` when appParam = SHA-256(rp id)
//!     and challengeParam = SHA-256(client data): [`U2fKey::get_assertion`] rebuilds those 37
//!     bytes and answers a [`GetAssertionResponse`] that `verify_assertion` checks as any other.
//!   - U2F_REGISTER becomes a `fido-u2f` attestation (WebAuthn §8.6): authData with the key
//!     handle as credential id and the point as a COSE ES256 key, attStmt `{sig, x5c}`.
//!
//! Request APDUs use the extended length encoding, as libfido2 and python-fido2 send them:
//! `CLA=00 INS P1 P2 00 Lc1 Lc2 data Le1=00 Le2=00` (Lc present even when 0, for VERSION).
//!
//! U2F keys do not wait for a touch: a request that needs one answers
//! SW_CONDITIONS_NOT_SATISFIED (0x6985) at once and the key starts to blink; the request is
//! sent again every [`POLL_INTERVAL`] until the key answers 0x9000 after the touch, the
//! channel's deadline passes ([`CtapError::Deadline`]) or the cancel token is set
//! ([`CtapError::Cancelled`]).

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::authdata::{self, flag, AttestedCredentialData, AuthenticatorData};
use super::backend::{
    client_data_hash, GetAssertionArgs, MakeCredentialArgs, SecurityKey, UvInfo, Waiting,
};
use super::cbor::Value;
use super::client_pin::{PinError, PinUvAuthToken};
use super::command::{
    Algorithm, CredentialDescriptor, GetAssertionResponse, MakeCredentialResponse, PUBLIC_KEY,
};
use super::cose::{CoseKey, ALG_ES256};
use super::device::{CancelToken, Device};
use super::status::StatusCode;
use super::transport::Transport;
use super::CtapError;

/// U2F instruction bytes (Raw Message Formats §3.1, §4.1, §5.1, §6.1).
pub mod ins {
    /// U2F_REGISTER.
    pub const REGISTER: u8 = 0x01;
    /// U2F_AUTHENTICATE.
    pub const AUTHENTICATE: u8 = 0x02;
    /// U2F_VERSION.
    pub const VERSION: u8 = 0x03;
}

/// The control byte (P1) of U2F_AUTHENTICATE (Raw Message Formats §5.1).
pub mod auth_control {
    /// enforce-user-presence-and-sign.
    pub const ENFORCE_USER_PRESENCE_AND_SIGN: u8 = 0x03;
    /// check-only: 0x6985 when the key handle is the key's, 0x6a80 when not; nothing signed.
    pub const CHECK_ONLY: u8 = 0x07;
}

/// Status words (ISO 7816-4, as Raw Message Formats §3.3 uses them).
pub mod sw {
    /// SW_NO_ERROR.
    pub const NO_ERROR: u16 = 0x9000;
    /// SW_CONDITIONS_NOT_SATISFIED: a touch is needed (or, check-only, the handle is ours).
    pub const CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
    /// SW_WRONG_DATA: e.g. a key handle the key did not make.
    pub const WRONG_DATA: u16 = 0x6a80;
    /// SW_WRONG_LENGTH: the request length is wrong.
    pub const WRONG_LENGTH: u16 = 0x6700;
    /// SW_CLA_NOT_SUPPORTED.
    pub const CLA_NOT_SUPPORTED: u16 = 0x6e00;
    /// SW_INS_NOT_SUPPORTED.
    pub const INS_NOT_SUPPORTED: u16 = 0x6d00;
}

/// What U2F_VERSION answers on a U2F 1.1/1.2 key.
pub const VERSION_U2F_V2: &[u8] = b"U2F_V2";
/// Length of the uncompressed P-256 point in a registration response.
pub const PUBLIC_KEY_LEN: usize = 65;
/// Longest key handle: its length is one byte.
pub const MAX_KEY_HANDLE_LEN: usize = 255;
/// Longest attestation certificate we accept (real ones are 500 to 1200 bytes).
pub const MAX_CERTIFICATE_LEN: usize = 4096;
/// Length of the request data of U2F_REGISTER: challenge parameter || application parameter.
pub const REGISTER_DATA_LEN: usize = 64;
/// The wait between two tries while the key answers 0x6985 (libfido2 paces at 100 ms too).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The reserved first byte of a registration response.
pub const REGISTRATION_RESERVED: u8 = 0x05;
/// The first byte of the message a registration signature covers (RFU, zero).
pub const REGISTRATION_SIGNED_PREFIX: u8 = 0x00;
/// The user presence byte of a touched authentication (bit 0; bits 1..7 are RFU, zero).
pub const USER_PRESENT: u8 = 0x01;

/// A status word, named where the U2F specification names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusWord {
    /// 0x9000.
    NoError,
    /// 0x6985: test of user presence required (or, check-only, the handle is ours).
    ConditionsNotSatisfied,
    /// 0x6a80: bad key handle or data.
    WrongData,
    /// 0x6700: wrong request length.
    WrongLength,
    /// 0x6e00: the class byte is not supported.
    ClaNotSupported,
    /// 0x6d00: the instruction is not supported.
    InsNotSupported,
    /// Any other status word.
    Other(u16),
}

impl StatusWord {
    /// Name the two bytes.
    pub fn from_u16(v: u16) -> StatusWord {
        match v {
            sw::NO_ERROR => StatusWord::NoError,
            sw::CONDITIONS_NOT_SATISFIED => StatusWord::ConditionsNotSatisfied,
            sw::WRONG_DATA => StatusWord::WrongData,
            sw::WRONG_LENGTH => StatusWord::WrongLength,
            sw::CLA_NOT_SUPPORTED => StatusWord::ClaNotSupported,
            sw::INS_NOT_SUPPORTED => StatusWord::InsNotSupported,
            other => StatusWord::Other(other),
        }
    }

    /// The two bytes as a number.
    pub fn to_u16(self) -> u16 {
        match self {
            StatusWord::NoError => sw::NO_ERROR,
            StatusWord::ConditionsNotSatisfied => sw::CONDITIONS_NOT_SATISFIED,
            StatusWord::WrongData => sw::WRONG_DATA,
            StatusWord::WrongLength => sw::WRONG_LENGTH,
            StatusWord::ClaNotSupported => sw::CLA_NOT_SUPPORTED,
            StatusWord::InsNotSupported => sw::INS_NOT_SUPPORTED,
            StatusWord::Other(v) => v,
        }
    }
}

impl std::fmt::Display for StatusWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            StatusWord::NoError => "no error",
            StatusWord::ConditionsNotSatisfied => "conditions not satisfied (touch needed)",
            StatusWord::WrongData => "wrong data (unknown key handle)",
            StatusWord::WrongLength => "wrong length",
            StatusWord::ClaNotSupported => "class not supported",
            StatusWord::InsNotSupported => "instruction not supported",
            StatusWord::Other(_) => "unknown status",
        };
        write!(f, "0x{:04x} {name}", self.to_u16())
    }
}

/// Why a U2F exchange failed or a U2F response did not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum U2fError {
    /// A response shorter than its status word.
    #[error("the U2F response of {0} bytes has no status word")]
    NoStatusWord(usize),
    /// The key answered a status word other than 0x9000.
    #[error("the U2F key refused: {0}")]
    Status(StatusWord),
    /// A response field is cut short.
    #[error("the U2F response is truncated in {field}: needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// The registration response does not start with 0x05.
    #[error("the U2F registration response starts with 0x{0:02x}, not the reserved 0x05")]
    ReservedByte(u8),
    /// The public key is not an uncompressed point on P-256.
    #[error("the U2F public key is not an uncompressed P-256 point")]
    InvalidPublicKey,
    /// A key handle of length zero.
    #[error("the U2F key handle is empty")]
    EmptyKeyHandle,
    /// The attestation certificate's DER header is malformed.
    #[error("the U2F attestation certificate is not DER: {0}")]
    CertificateDer(&'static str),
    /// The attestation certificate is longer than [`MAX_CERTIFICATE_LEN`].
    #[error("the U2F attestation certificate of {0} bytes is longer than {MAX_CERTIFICATE_LEN}")]
    CertificateTooLong(usize),
    /// The certificate does not hold a P-256 public key.
    #[error("the U2F attestation certificate holds no P-256 public key")]
    CertificateKey,
    /// A signature that is not a strict DER ECDSA-Sig-Value.
    #[error("the U2F {0} signature is not a DER ECDSA signature")]
    MalformedSignature(&'static str),
    /// The registration signature does not verify with the certificate's key.
    #[error("the U2F registration signature does not verify with the attestation certificate")]
    RegistrationSignature,
    /// A user presence byte with RFU bits set.
    #[error("the U2F user presence byte 0x{0:02x} has reserved bits set")]
    UserPresenceByte(u8),
    /// U2F_VERSION answered something other than `U2F_V2`.
    #[error("the key's U2F version is {0:?}, not U2F_V2")]
    Version(String),
    /// The request data does not fit an extended-length APDU.
    #[error("a U2F request of {0} bytes does not fit an APDU")]
    RequestTooLong(usize),
}

/// A request APDU in extended length encoding: `00 INS P1 P2 00 Lc1 Lc2 data 00 00`.
pub fn request_apdu(ins: u8, p1: u8, data: &[u8]) -> Result<Vec<u8>, U2fError> {
    let lc = u16::try_from(data.len()).map_err(|_| U2fError::RequestTooLong(data.len()))?;
    let mut apdu = Vec::with_capacity(9 + data.len());
    apdu.extend_from_slice(&[0x00, ins, p1, 0x00, 0x00]);
    apdu.extend_from_slice(&lc.to_be_bytes());
    apdu.extend_from_slice(data);
    apdu.extend_from_slice(&[0x00, 0x00]);
    Ok(apdu)
}

/// U2F_REGISTER's request data: challenge parameter || application parameter.
pub fn register_data(challenge: &[u8; 32], application: &[u8; 32]) -> [u8; REGISTER_DATA_LEN] {
    let mut d = [0u8; REGISTER_DATA_LEN];
    d[..32].copy_from_slice(challenge);
    d[32..].copy_from_slice(application);
    d
}

/// U2F_AUTHENTICATE's request data: challenge parameter || application parameter || key
/// handle length || key handle. `None` for a handle U2F cannot carry (empty, or over 255).
pub fn authenticate_data(
    challenge: &[u8; 32],
    application: &[u8; 32],
    key_handle: &[u8],
) -> Option<Vec<u8>> {
    let len = u8::try_from(key_handle.len()).ok().filter(|l| *l > 0)?;
    let mut d = Vec::with_capacity(65 + key_handle.len());
    d.extend_from_slice(challenge);
    d.extend_from_slice(application);
    d.push(len);
    d.extend_from_slice(key_handle);
    Some(d)
}

/// Split a response APDU into its data and status word (the last two bytes).
pub fn split_status(response: &[u8]) -> Result<(&[u8], StatusWord), U2fError> {
    let at = response
        .len()
        .checked_sub(2)
        .ok_or(U2fError::NoStatusWord(response.len()))?;
    let (data, sw) = response.split_at(at);
    Ok((
        data,
        StatusWord::from_u16(u16::from_be_bytes([sw[0], sw[1]])),
    ))
}

/// The data of a 0x9000 response; any other status word is [`U2fError::Status`].
pub fn ok_data(response: &[u8]) -> Result<&[u8], U2fError> {
    match split_status(response)? {
        (data, StatusWord::NoError) => Ok(data),
        (_, sw) => Err(U2fError::Status(sw)),
    }
}

fn take<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    n: usize,
    field: &'static str,
) -> Result<&'a [u8], U2fError> {
    let available = buf.len().saturating_sub(*pos);
    if n > available {
        return Err(U2fError::Truncated {
            field,
            needed: n,
            available,
        });
    }
    let out = &buf[*pos..*pos + n];
    *pos += n;
    Ok(out)
}

/// One DER TLV at the start of `buf`: (tag, header length, value length). Strict DER lengths
/// (definite, minimal, at most two length bytes: nothing here is near 64 KiB); low tag numbers
/// only.
fn der_header(buf: &[u8]) -> Result<(u8, usize, usize), U2fError> {
    let (&tag, rest) = buf.split_first().ok_or(U2fError::CertificateDer("empty"))?;
    if tag & 0x1f == 0x1f {
        return Err(U2fError::CertificateDer("high tag number"));
    }
    let (&first, rest) = rest
        .split_first()
        .ok_or(U2fError::CertificateDer("no length"))?;
    let (len, header) = match first {
        0..=0x7f => (usize::from(first), 2),
        0x81 => match rest.first() {
            Some(&l) if l >= 0x80 => (usize::from(l), 3),
            Some(_) => return Err(U2fError::CertificateDer("non-minimal length")),
            None => return Err(U2fError::CertificateDer("truncated length")),
        },
        0x82 => match rest.get(..2) {
            Some(&[hi, lo]) if hi != 0 => (usize::from(u16::from_be_bytes([hi, lo])), 4),
            Some(_) => return Err(U2fError::CertificateDer("non-minimal length")),
            None => return Err(U2fError::CertificateDer("truncated length")),
        },
        0x80 => return Err(U2fError::CertificateDer("indefinite length")),
        _ => return Err(U2fError::CertificateDer("length over 64 KiB")),
    };
    Ok((tag, header, len))
}

/// One DER element: its tag, the whole TLV, and the value.
type DerElement<'a> = (u8, &'a [u8], &'a [u8]);

/// Split `buf` into its DER elements, every byte accounted for.
fn der_elements(mut buf: &[u8]) -> Result<Vec<DerElement<'_>>, U2fError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (tag, header, len) = der_header(buf)?;
        let total =
            header
                .checked_add(len)
                .filter(|t| *t <= buf.len())
                .ok_or(U2fError::CertificateDer(
                    "element longer than its container",
                ))?;
        out.push((tag, &buf[..total], &buf[header..total]));
        buf = &buf[total..];
    }
    Ok(out)
}

const DER_SEQUENCE: u8 = 0x30;
const DER_CONTEXT_0: u8 = 0xa0;

/// The SubjectPublicKeyInfo of an X.509 certificate (RFC 5280 §4.1): Certificate is a
/// SEQUENCE of tbsCertificate, signatureAlgorithm, signatureValue; tbsCertificate is
/// `[0] version` (optional), serialNumber, signature, issuer, validity, subject,
/// subjectPublicKeyInfo, then optional fields.
fn certificate_spki(cert: &[u8]) -> Result<&[u8], U2fError> {
    let outer = der_elements(cert)?;
    let [(DER_SEQUENCE, _, body)] = outer.as_slice() else {
        return Err(U2fError::CertificateDer("not one SEQUENCE"));
    };
    let parts = der_elements(body)?;
    let [(DER_SEQUENCE, _, tbs), (DER_SEQUENCE, _, _), (0x03, _, _)] = parts.as_slice() else {
        return Err(U2fError::CertificateDer(
            "not tbsCertificate, signatureAlgorithm, signatureValue",
        ));
    };
    let fields = der_elements(tbs)?;
    let skip = usize::from(fields.first().is_some_and(|f| f.0 == DER_CONTEXT_0));
    match fields.get(skip + 5) {
        Some((DER_SEQUENCE, spki, _)) => Ok(spki),
        _ => Err(U2fError::CertificateDer("no subjectPublicKeyInfo")),
    }
}

/// The P-256 key of an attestation certificate.
pub fn certificate_key(cert: &[u8]) -> Result<p256::ecdsa::VerifyingKey, U2fError> {
    use p256::pkcs8::DecodePublicKey;
    let spki = certificate_spki(cert)?;
    p256::PublicKey::from_public_key_der(spki)
        .map(p256::ecdsa::VerifyingKey::from)
        .map_err(|_| U2fError::CertificateKey)
}

fn der_signature(bytes: &[u8], what: &'static str) -> Result<p256::ecdsa::Signature, U2fError> {
    // Strict DER (the `der` crate behind p256): minimal lengths, nothing trailing.
    p256::ecdsa::Signature::from_der(bytes).map_err(|_| U2fError::MalformedSignature(what))
}

/// A U2F_REGISTER response (Raw Message Formats §4.3), parsed strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The new credential's public key: an uncompressed point, checked to be on P-256.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// The key handle (1 to 255 bytes).
    pub key_handle: Vec<u8>,
    /// The attestation certificate, DER, as long as its own header says.
    pub certificate: Vec<u8>,
    /// The attestation signature, a strict DER ECDSA-Sig-Value.
    pub signature: Vec<u8>,
}

impl Registration {
    /// Parse the data of a 0x9000 response: 0x05 || point (65) || L (1) || key handle (L) ||
    /// certificate (DER, length from its header, at most [`MAX_CERTIFICATE_LEN`]) ||
    /// signature (DER, the rest).
    pub fn parse(data: &[u8]) -> Result<Registration, U2fError> {
        let mut pos = 0;
        let reserved = take(data, &mut pos, 1, "reserved byte")?[0];
        if reserved != REGISTRATION_RESERVED {
            return Err(U2fError::ReservedByte(reserved));
        }
        let point = take(data, &mut pos, PUBLIC_KEY_LEN, "public key")?;
        let public_key: [u8; PUBLIC_KEY_LEN] =
            point.try_into().map_err(|_| U2fError::InvalidPublicKey)?;
        es256_key(&public_key)?;
        let len = usize::from(take(data, &mut pos, 1, "key handle length")?[0]);
        if len == 0 {
            return Err(U2fError::EmptyKeyHandle);
        }
        let key_handle = take(data, &mut pos, len, "key handle")?.to_vec();
        let rest = &data[pos..];
        let (tag, header, body) = der_header(rest)?;
        if tag != DER_SEQUENCE {
            return Err(U2fError::CertificateDer("not a SEQUENCE"));
        }
        let cert_len = header + body;
        if cert_len > MAX_CERTIFICATE_LEN {
            return Err(U2fError::CertificateTooLong(cert_len));
        }
        let certificate = take(data, &mut pos, cert_len, "attestation certificate")?.to_vec();
        let signature = data[pos..].to_vec();
        der_signature(&signature, "registration")?;
        Ok(Registration {
            public_key,
            key_handle,
            certificate,
            signature,
        })
    }

    /// The message the attestation signature covers: 0x00 || appParam || challengeParam ||
    /// key handle || public key.
    pub fn signed_message(&self, application: &[u8; 32], challenge: &[u8; 32]) -> Vec<u8> {
        let mut m = Vec::with_capacity(1 + 64 + self.key_handle.len() + PUBLIC_KEY_LEN);
        m.push(REGISTRATION_SIGNED_PREFIX);
        m.extend_from_slice(application);
        m.extend_from_slice(challenge);
        m.extend_from_slice(&self.key_handle);
        m.extend_from_slice(&self.public_key);
        m
    }

    /// Verify the attestation signature with the certificate's P-256 key.
    pub fn verify(&self, application: &[u8; 32], challenge: &[u8; 32]) -> Result<(), U2fError> {
        use p256::ecdsa::signature::Verifier;
        let key = certificate_key(&self.certificate)?;
        let sig = der_signature(&self.signature, "registration")?;
        key.verify(&self.signed_message(application, challenge), &sig)
            .map_err(|_| U2fError::RegistrationSignature)
    }

    /// The credential public key as a COSE ES256 key.
    pub fn cose_key(&self) -> Result<CoseKey, U2fError> {
        es256_key(&self.public_key)
    }
}

fn es256_key(point: &[u8; PUBLIC_KEY_LEN]) -> Result<CoseKey, U2fError> {
    // Uncompressed SEC1 only: 0x04 || x || y, and on the curve.
    let (0x04, xy) = (point[0], &point[1..]) else {
        return Err(U2fError::InvalidPublicKey);
    };
    let (x, y) = xy.split_at(32);
    let x: [u8; 32] = x.try_into().map_err(|_| U2fError::InvalidPublicKey)?;
    let y: [u8; 32] = y.try_into().map_err(|_| U2fError::InvalidPublicKey)?;
    CoseKey::es256_from_coordinates(&x, &y).map_err(|_| U2fError::InvalidPublicKey)
}

/// A U2F_AUTHENTICATE response (Raw Message Formats §5.4), parsed strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// The user presence byte: 0x01 touched, 0x00 not (RFU bits must be clear).
    pub user_presence: u8,
    /// The counter, big-endian on the wire.
    pub counter: u32,
    /// The signature, a strict DER ECDSA-Sig-Value.
    pub signature: Vec<u8>,
}

impl Authentication {
    /// Parse the data of a 0x9000 response: user presence (1) || counter (4) || signature.
    pub fn parse(data: &[u8]) -> Result<Authentication, U2fError> {
        let mut pos = 0;
        let user_presence = take(data, &mut pos, 1, "user presence")?[0];
        if user_presence & !USER_PRESENT != 0 {
            return Err(U2fError::UserPresenceByte(user_presence));
        }
        let c = take(data, &mut pos, 4, "counter")?;
        let counter = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        let signature = data[pos..].to_vec();
        der_signature(&signature, "authentication")?;
        Ok(Authentication {
            user_presence,
            counter,
            signature,
        })
    }

    /// The 37 bytes of authenticatorData this signature covers with the client data hash:
    /// appParam (the rp id hash) || user presence (the flags) || counter.
    pub fn auth_data(&self, application: &[u8; 32]) -> Vec<u8> {
        authdata::build(application, self.user_presence, self.counter, None, None)
    }
}

/// Check a U2F_VERSION answer's data.
pub fn check_version(data: &[u8]) -> Result<(), U2fError> {
    if data == VERSION_U2F_V2 {
        Ok(())
    } else {
        Err(U2fError::Version(
            String::from_utf8_lossy(data).into_owned(),
        ))
    }
}

/// The `fido-u2f` attestation of a registration (WebAuthn §8.6; CTAP 2.1 §10.2.1): authData
/// = rpIdHash || UP|AT || counter 0 || AAGUID zero || key handle || COSE key; attStmt = {sig,
/// x5c: [certificate]}.
pub fn make_credential_response(
    application: &[u8; 32],
    registration: &Registration,
) -> Result<MakeCredentialResponse, CtapError> {
    let key = registration.cose_key()?;
    let attested = AttestedCredentialData {
        aaguid: [0; 16],
        credential_id: registration.key_handle.clone(),
        public_key_cose: key.to_cbor(),
    };
    let auth_data_raw = authdata::build(application, flag::UP, 0, Some(&attested), None);
    let auth_data = AuthenticatorData::parse(&auth_data_raw).map_err(CtapError::AuthData)?;
    let att_stmt = Value::Map(vec![
        (
            Value::text("sig"),
            Value::Bytes(registration.signature.clone()),
        ),
        (
            Value::text("x5c"),
            Value::Array(vec![Value::Bytes(registration.certificate.clone())]),
        ),
    ]);
    Ok(MakeCredentialResponse {
        fmt: FMT_FIDO_U2F.to_owned(),
        auth_data_raw,
        auth_data,
        att_stmt,
        ep_att: None,
        large_blob_key: None,
    })
}

/// The attestation format name of a U2F registration.
pub const FMT_FIDO_U2F: &str = "fido-u2f";

/// The first certificate of an attestation statement's `x5c`, if it has one.
pub fn attestation_certificate(resp: &MakeCredentialResponse) -> Option<Vec<u8>> {
    resp.att_stmt
        .get_text("x5c")?
        .as_array()?
        .first()?
        .as_bytes()
        .map(<[u8]>::to_vec)
}

/// The protocol name an enrollment records for a U2F key.
pub const PROTOCOL_U2F: &str = "u2f";

/// What a U2F_AUTHENTICATE assertion becomes: the response `verify_assertion` checks.
pub fn get_assertion_response(
    application: &[u8; 32],
    key_handle: &[u8],
    authentication: &Authentication,
) -> Result<GetAssertionResponse, CtapError> {
    let auth_data_raw = authentication.auth_data(application);
    let auth_data = AuthenticatorData::parse(&auth_data_raw).map_err(CtapError::AuthData)?;
    Ok(GetAssertionResponse {
        credential: Some(CredentialDescriptor {
            cred_type: PUBLIC_KEY.to_owned(),
            id: key_handle.to_vec(),
        }),
        auth_data_raw,
        auth_data,
        signature: authentication.signature.clone(),
        user: None,
        number_of_credentials: None,
        user_selected: None,
        large_blob_key: None,
    })
}

// ---------------------------------------------------------------------------------------------
// The backend

/// A U2F-only key behind a CTAPHID channel: the [`SecurityKey`] that speaks U2F_REGISTER and
/// U2F_AUTHENTICATE (see the module docs).
pub struct U2fKey {
    device: Device<Box<dyn Transport>>,
    description: String,
    is_virtual: bool,
}

impl std::fmt::Debug for U2fKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("U2fKey")
            .field("description", &self.description)
            .field("is_virtual", &self.is_virtual)
            .finish()
    }
}

/// The application parameter of a dummy registration that only waits for a touch (choosing a
/// key among several, or answering an excluded credential after a touch, CTAP 2.1 §10.2.1).
const TOUCH_ONLY_APPLICATION: [u8; 32] = [0x41; 32];
/// Its challenge parameter.
const TOUCH_ONLY_CHALLENGE: [u8; 32] = [0x42; 32];

/// What the key said to a request that needs a touch.
enum Polled {
    /// 0x9000 and its data.
    Done(Vec<u8>),
    /// Another status word.
    Refused(StatusWord),
}

impl U2fKey {
    /// A U2F key on an open channel: U2F_VERSION must answer `U2F_V2`.
    pub fn open(
        device: Device<Box<dyn Transport>>,
        description: String,
        is_virtual: bool,
    ) -> Result<U2fKey, CtapError> {
        let mut key = U2fKey {
            device,
            description,
            is_virtual,
        };
        let version = key.exchange(ins::VERSION, 0, &[], None)?;
        check_version(ok_data(&version)?)?;
        Ok(key)
    }

    /// One APDU in one CTAPHID_MSG: the whole response (data and status word).
    fn exchange(
        &mut self,
        ins: u8,
        p1: u8,
        data: &[u8],
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<u8>, CtapError> {
        let apdu = request_apdu(ins, p1, data)?;
        let response = self.device.msg(&apdu, cancel)?;
        split_status(&response)?;
        Ok(response)
    }

    /// Send a request that needs a touch until the key stops answering 0x6985: `on_up_needed`
    /// runs once, at the first 0x6985 (the key blinks from then on).
    fn until_touched(
        &mut self,
        ins: u8,
        p1: u8,
        data: &[u8],
        wait: &mut Waiting<'_>,
    ) -> Result<Polled, CtapError> {
        let deadline = self.device.options().deadline;
        let poll = self.device.options().poll_interval;
        let start = Instant::now();
        let mut told = false;
        loop {
            if wait.cancel.is_some_and(CancelToken::is_cancelled) {
                return Err(CtapError::Cancelled);
            }
            let response = self.exchange(ins, p1, data, wait.cancel)?;
            match split_status(&response)? {
                (body, StatusWord::NoError) => return Ok(Polled::Done(body.to_vec())),
                (_, StatusWord::ConditionsNotSatisfied) => {}
                (_, sw) => return Ok(Polled::Refused(sw)),
            }
            if !told {
                told = true;
                (wait.on_up_needed)();
            }
            let resume = Instant::now() + POLL_INTERVAL;
            if resume.duration_since(start) >= deadline {
                return Err(CtapError::Deadline(deadline));
            }
            // Wait in poll-interval slices so a cancel is seen at once.
            loop {
                if wait.cancel.is_some_and(CancelToken::is_cancelled) {
                    return Err(CtapError::Cancelled);
                }
                let now = Instant::now();
                if now >= resume {
                    break;
                }
                std::thread::sleep(poll.min(resume - now));
            }
        }
    }

    /// Whether the key made `key_handle` for `application` (U2F_AUTHENTICATE check-only:
    /// 0x6985 yes; 0x6a80 no, and 0x6700, which some keys answer for a handle of a length
    /// they never make). Handles U2F cannot carry are not the key's.
    fn holds(
        &mut self,
        application: &[u8; 32],
        key_handle: &[u8],
        cancel: Option<&CancelToken>,
    ) -> Result<bool, CtapError> {
        let challenge: [u8; 32] = rand::random();
        let Some(data) = authenticate_data(&challenge, application, key_handle) else {
            return Ok(false);
        };
        let response = self.exchange(ins::AUTHENTICATE, auth_control::CHECK_ONLY, &data, cancel)?;
        match split_status(&response)?.1 {
            StatusWord::ConditionsNotSatisfied => Ok(true),
            StatusWord::WrongData | StatusWord::WrongLength => Ok(false),
            sw => Err(U2fError::Status(sw).into()),
        }
    }

    /// Wait for a touch and approve nothing: a registration with fixed dummy parameters, whose
    /// answer is dropped (as libfido2 does for U2F keys).
    pub fn wait_for_touch(&mut self, mut wait: Waiting<'_>) -> Result<(), CtapError> {
        let data = register_data(&TOUCH_ONLY_CHALLENGE, &TOUCH_ONLY_APPLICATION);
        match self.until_touched(ins::REGISTER, 0, &data, &mut wait)? {
            Polled::Done(_) => Ok(()),
            Polled::Refused(sw) => Err(U2fError::Status(sw).into()),
        }
    }
}

fn rp_id_hash(rp_id: &str) -> [u8; 32] {
    Sha256::digest(rp_id.as_bytes()).into()
}

impl SecurityKey for U2fKey {
    fn description(&self) -> &str {
        &self.description
    }

    fn is_virtual(&self) -> bool {
        self.is_virtual
    }

    fn protocol(&self) -> &'static str {
        PROTOCOL_U2F
    }

    fn supported_algorithms(&mut self) -> Result<Option<Vec<i64>>, CtapError> {
        Ok(Some(vec![ALG_ES256]))
    }

    fn uv_info(&self) -> Option<UvInfo> {
        Some(UvInfo::default())
    }

    fn pin_token(
        &mut self,
        _pin: &[u8],
        _permissions: u64,
        _rp_id: &str,
    ) -> Result<PinUvAuthToken, PinError> {
        Err(PinError::Ctap(CtapError::Unsupported(
            "this is a U2F-only key: it has no PIN and cannot verify the user".into(),
        )))
    }

    fn make_credential(
        &mut self,
        args: &MakeCredentialArgs<'_>,
        mut wait: Waiting<'_>,
    ) -> Result<MakeCredentialResponse, CtapError> {
        if !args.algorithms.contains(&Algorithm::Es256) {
            return Err(CtapError::Status(StatusCode::UnsupportedAlgorithm));
        }
        let application = rp_id_hash(args.rp.id);
        let challenge = client_data_hash(args.client_data);
        for id in args.exclude_list {
            if self.holds(&application, id, wait.cancel)? {
                // CTAP 2.1 §10.2.1: the user touches, then the answer is "excluded".
                self.wait_for_touch(wait)?;
                return Err(CtapError::Status(StatusCode::CredentialExcluded));
            }
        }
        let data = register_data(&challenge, &application);
        let body = match self.until_touched(ins::REGISTER, 0, &data, &mut wait)? {
            Polled::Done(body) => body,
            Polled::Refused(sw) => return Err(U2fError::Status(sw).into()),
        };
        let registration = Registration::parse(&body)?;
        registration.verify(&application, &challenge)?;
        make_credential_response(&application, &registration)
    }

    fn get_assertion(
        &mut self,
        args: &GetAssertionArgs<'_>,
        mut wait: Waiting<'_>,
    ) -> Result<GetAssertionResponse, CtapError> {
        let application = rp_id_hash(args.rp_id);
        let challenge = client_data_hash(args.client_data);
        let usable: Vec<&[u8]> = args
            .allow_list
            .iter()
            .copied()
            .filter(|id| (1..=MAX_KEY_HANDLE_LEN).contains(&id.len()))
            .collect();
        // With several candidates, ask silently which one is the key's before the touch.
        let key_handle = match usable.as_slice() {
            [] => None,
            [only] => Some(*only),
            several => {
                let mut found = None;
                for id in several {
                    if self.holds(&application, id, wait.cancel)? {
                        found = Some(*id);
                        break;
                    }
                }
                found
            }
        }
        .ok_or(CtapError::Status(StatusCode::NoCredentials))?;
        let data = authenticate_data(&challenge, &application, key_handle)
            .ok_or(CtapError::Status(StatusCode::NoCredentials))?;
        let p1 = auth_control::ENFORCE_USER_PRESENCE_AND_SIGN;
        let body = match self.until_touched(ins::AUTHENTICATE, p1, &data, &mut wait)? {
            Polled::Done(body) => body,
            // Not the key's handle (0x6a80; 0x6700 from keys that check the length first).
            Polled::Refused(StatusWord::WrongData | StatusWord::WrongLength) => {
                return Err(CtapError::Status(StatusCode::NoCredentials))
            }
            Polled::Refused(sw) => return Err(U2fError::Status(sw).into()),
        };
        let authentication = Authentication::parse(&body)?;
        get_assertion_response(&application, key_handle, &authentication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apdus_use_extended_length_as_libfido2_sends_them() {
        assert_eq!(
            request_apdu(ins::VERSION, 0, &[]).unwrap(),
            [0, 3, 0, 0, 0, 0, 0, 0, 0]
        );
        let data = register_data(&[1; 32], &[2; 32]);
        let apdu = request_apdu(ins::REGISTER, 0, &data).unwrap();
        assert_eq!(&apdu[..7], &[0, 1, 0, 0, 0, 0, 64]);
        assert_eq!(&apdu[7..39], &[1; 32]);
        assert_eq!(&apdu[39..71], &[2; 32]);
        assert_eq!(&apdu[71..], &[0, 0]);
        let auth = authenticate_data(&[1; 32], &[2; 32], &[9; 300]);
        assert!(auth.is_none(), "a handle over 255 bytes cannot be sent");
        assert!(authenticate_data(&[1; 32], &[2; 32], &[]).is_none());
        let auth = authenticate_data(&[1; 32], &[2; 32], &[9; 255]).unwrap();
        let apdu = request_apdu(ins::AUTHENTICATE, auth_control::CHECK_ONLY, &auth).unwrap();
        assert_eq!(&apdu[..7], &[0, 2, 7, 0, 0, 0x01, 0x40]);
        assert_eq!(apdu[7 + 64], 255);
        assert_eq!(apdu.len(), 7 + 320 + 2);
        assert_eq!(
            request_apdu(1, 0, &vec![0; 70_000]),
            Err(U2fError::RequestTooLong(70_000))
        );
    }

    #[test]
    fn status_words_are_the_last_two_bytes() {
        assert_eq!(
            split_status(&[0x90, 0x00]).unwrap(),
            (&[][..], StatusWord::NoError)
        );
        assert_eq!(
            split_status(&[1, 2, 0x69, 0x85]).unwrap(),
            (&[1, 2][..], StatusWord::ConditionsNotSatisfied)
        );
        for (v, w) in [
            (0x6a80, StatusWord::WrongData),
            (0x6700, StatusWord::WrongLength),
            (0x6d00, StatusWord::InsNotSupported),
            (0x6e00, StatusWord::ClaNotSupported),
            (0x6f00, StatusWord::Other(0x6f00)),
        ] {
            assert_eq!(StatusWord::from_u16(v), w);
            assert_eq!(w.to_u16(), v);
            assert_eq!(ok_data(&v.to_be_bytes()), Err(U2fError::Status(w)));
        }
        assert_eq!(split_status(&[0x90]), Err(U2fError::NoStatusWord(1)));
        assert_eq!(split_status(&[]), Err(U2fError::NoStatusWord(0)));
        assert_eq!(ok_data(b"U2F_V2\x90\x00").unwrap(), b"U2F_V2");
        assert!(check_version(b"U2F_V2").is_ok());
        assert_eq!(
            check_version(b"U2F_V3"),
            Err(U2fError::Version("U2F_V3".into()))
        );
    }

    fn signing_key() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap()
    }

    fn point() -> [u8; 65] {
        let p = signing_key().verifying_key().to_encoded_point(false);
        p.as_bytes().try_into().unwrap()
    }

    fn sig(msg: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer;
        let s: p256::ecdsa::Signature = signing_key().sign(msg);
        s.to_der().as_bytes().to_vec()
    }

    const CERT: &[u8] = include_bytes!("virtual_key/u2f_attestation.der");

    fn registration_bytes(handle: &[u8], cert: &[u8], signature: &[u8]) -> Vec<u8> {
        let mut r = vec![0x05];
        r.extend_from_slice(&point());
        r.push(handle.len() as u8);
        r.extend_from_slice(handle);
        r.extend_from_slice(cert);
        r.extend_from_slice(signature);
        r
    }

    #[test]
    fn registration_parses_strictly() {
        let s = sig(b"x");
        let bytes = registration_bytes(&[0xaa; 64], CERT, &s);
        let r = Registration::parse(&bytes).unwrap();
        assert_eq!(r.public_key, point());
        assert_eq!(r.key_handle, vec![0xaa; 64]);
        assert_eq!(r.certificate, CERT);
        assert_eq!(r.signature, s);
        certificate_key(&r.certificate).expect("the virtual attestation key");

        let mut bad = bytes.clone();
        bad[0] = 0x04;
        assert_eq!(Registration::parse(&bad), Err(U2fError::ReservedByte(4)));
        let mut bad = bytes.clone();
        bad[1] = 0x02; // compressed prefix
        assert_eq!(Registration::parse(&bad), Err(U2fError::InvalidPublicKey));
        let mut bad = bytes.clone();
        bad[40] ^= 1; // off the curve
        assert_eq!(Registration::parse(&bad), Err(U2fError::InvalidPublicKey));
        assert_eq!(
            Registration::parse(&registration_bytes(&[], CERT, &s)),
            Err(U2fError::EmptyKeyHandle)
        );
        // Cut anywhere: a typed error, never a panic.
        for n in 0..bytes.len() {
            assert!(Registration::parse(&bytes[..n]).is_err(), "cut at {n}");
        }
        // A signature with a byte after it is not DER.
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            Registration::parse(&trailing),
            Err(U2fError::MalformedSignature("registration"))
        );
        // A certificate whose header claims more than 4 KiB.
        let mut big = vec![0x30, 0x82, 0x10, 0x01];
        big.extend_from_slice(&[0; 0x1001]);
        assert_eq!(
            Registration::parse(&registration_bytes(&[1], &big, &s)),
            Err(U2fError::CertificateTooLong(0x1005))
        );
        // Indefinite and non-minimal lengths.
        for header in [
            &[0x30, 0x80][..],
            &[0x30, 0x81, 0x10],
            &[0x30, 0x82, 0x00, 0x90],
        ] {
            let mut c = header.to_vec();
            c.extend_from_slice(&[0; 0x90]);
            assert!(matches!(
                Registration::parse(&registration_bytes(&[1], &c, &s)),
                Err(U2fError::CertificateDer(_))
            ));
        }
    }

    #[test]
    fn registration_signature_is_checked_with_the_certificate_key() {
        // The virtual key's fixed attestation key signs; the certificate holds its public key.
        let attestation = crate::ctap::virtual_key::u2f::attestation_key();
        let (app, chal) = ([3u8; 32], [4u8; 32]);
        let mut r = Registration {
            public_key: point(),
            key_handle: vec![5; 10],
            certificate: CERT.to_vec(),
            signature: Vec::new(),
        };
        let msg = r.signed_message(&app, &chal);
        assert_eq!(msg[0], 0);
        assert_eq!(msg.len(), 1 + 64 + 10 + 65);
        use p256::ecdsa::signature::Signer;
        let s: p256::ecdsa::Signature = attestation.sign(&msg);
        r.signature = s.to_der().as_bytes().to_vec();
        r.verify(&app, &chal).unwrap();
        assert_eq!(r.verify(&chal, &app), Err(U2fError::RegistrationSignature));
        // Signed by another key.
        r.signature = sig(&msg);
        assert_eq!(r.verify(&app, &chal), Err(U2fError::RegistrationSignature));
        // A certificate that is one SEQUENCE of nothing.
        r.certificate = vec![0x30, 0x00];
        assert!(matches!(
            r.verify(&app, &chal),
            Err(U2fError::CertificateDer(_))
        ));
    }

    #[test]
    fn authentication_parses_strictly_and_rebuilds_auth_data() {
        let s = sig(b"y");
        let mut bytes = vec![0x01, 0, 0, 1, 2];
        bytes.extend_from_slice(&s);
        let a = Authentication::parse(&bytes).unwrap();
        assert_eq!((a.user_presence, a.counter), (1, 258));
        let ad = a.auth_data(&[9; 32]);
        assert_eq!(ad.len(), 37);
        assert_eq!(&ad[..32], &[9; 32]);
        assert_eq!(&ad[32..], &[1, 0, 0, 1, 2]);
        let resp = get_assertion_response(&[9; 32], b"kh", &a).unwrap();
        assert_eq!(resp.auth_data_raw, ad);
        assert!(resp.auth_data.flags.user_present());
        assert_eq!(resp.auth_data.sign_count, 258);
        assert_eq!(resp.credential.unwrap().id, b"kh");

        let mut bad = bytes.clone();
        bad[0] = 0x41;
        assert_eq!(
            Authentication::parse(&bad),
            Err(U2fError::UserPresenceByte(0x41))
        );
        for n in 0..bytes.len() {
            assert!(Authentication::parse(&bytes[..n]).is_err(), "cut at {n}");
        }
    }

    #[test]
    fn the_fido_u2f_attestation_is_what_enrollment_reads() {
        let r = Registration {
            public_key: point(),
            key_handle: vec![5; 70],
            certificate: CERT.to_vec(),
            signature: sig(b"z"),
        };
        let resp = make_credential_response(&[8; 32], &r).unwrap();
        assert_eq!(resp.fmt, "fido-u2f");
        let ad = &resp.auth_data;
        assert_eq!(ad.rp_id_hash, [8; 32]);
        assert_eq!(ad.flags.bits(), flag::UP | flag::AT);
        assert_eq!(ad.sign_count, 0);
        let at = ad.attested_credential_data.as_ref().unwrap();
        assert_eq!(at.aaguid, [0; 16]);
        assert_eq!(at.credential_id, vec![5; 70]);
        assert_eq!(at.public_key().unwrap(), r.cose_key().unwrap());
        assert_eq!(attestation_certificate(&resp).unwrap(), CERT);
        assert_eq!(
            resp.att_stmt.get_text("sig").and_then(Value::as_bytes),
            Some(&r.signature[..])
        );
    }
}
