//! Authenticator data (WebAuthn §6.1; CTAP 2.1 §6.1.2 / §6.2.2).
//!
//! - `authenticatorData`: rpIdHash (32) || flags (1) || signCount (4, big-endian) || attested
//!   credential data (when AT) || extensions (when ED).
//! - Attested credential data (WebAuthn §6.5.1): aaguid (16) || credentialIdLength (2,
//!   big-endian) || credentialId || credentialPublicKey (one CBOR item, a COSE_Key, parsed by
//!   [`cose`](super::cose)).
//! - The flags byte ([`flag`]) and the extensions map (WebAuthn §9).
//!
//! Parsing is strict: the AT and ED flags must match what is present, lengths are checked,
//! embedded CBOR must be CTAP2 canonical, and no byte may be left over. Nothing here panics on
//! any input.

use thiserror::Error;

use super::cbor::{self, CborError, Value};
use super::cose::{check_cose_key_shape, CoseKey, CoseKeyError};

/// Flag bits of the authenticatorData flags byte (WebAuthn §6.1).
pub mod flag {
    /// UP: user present (the key was touched).
    pub const UP: u8 = 0x01;
    /// UV: user verified (PIN or biometrics).
    pub const UV: u8 = 0x04;
    /// BE: backup eligible (a multi-device credential).
    pub const BE: u8 = 0x08;
    /// BS: backed up.
    pub const BS: u8 = 0x10;
    /// AT: attested credential data is included.
    pub const AT: u8 = 0x40;
    /// ED: an extensions map is included.
    pub const ED: u8 = 0x80;
}

/// Length of rpIdHash || flags || signCount.
pub const HEADER_LEN: usize = 37;

/// The flags byte of authenticatorData.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// The raw byte.
    pub fn bits(self) -> u8 {
        self.0
    }
    /// UP: the user touched the key.
    pub fn user_present(self) -> bool {
        self.0 & flag::UP != 0
    }
    /// UV: the user was verified (PIN, fingerprint).
    pub fn user_verified(self) -> bool {
        self.0 & flag::UV != 0
    }
    /// BE: the credential may be backed up (synced passkey).
    pub fn backup_eligible(self) -> bool {
        self.0 & flag::BE != 0
    }
    /// BS: the credential is backed up.
    pub fn backed_up(self) -> bool {
        self.0 & flag::BS != 0
    }
    /// AT: attested credential data follows the header.
    pub fn attested_credential_data(self) -> bool {
        self.0 & flag::AT != 0
    }
    /// ED: an extensions map follows.
    pub fn extension_data(self) -> bool {
        self.0 & flag::ED != 0
    }
}

/// Why authenticatorData did not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthDataError {
    /// Fewer bytes than a field needs.
    #[error("authenticatorData is truncated in {field}: needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// Bytes left after everything the flags announce.
    #[error("{0} unexpected bytes at the end of authenticatorData (flags announce no more data)")]
    TrailingBytes(usize),
    /// The embedded COSE key or extensions are not canonical CBOR.
    #[error("authenticatorData {field} is not CTAP2 canonical CBOR: {source}")]
    Cbor {
        /// `credentialPublicKey` or `extensions`.
        field: &'static str,
        /// What the decoder found.
        source: CborError,
    },
    /// The credential public key is not a COSE_Key map with integer kty and alg.
    #[error("authenticatorData credential public key is not a COSE_Key: {0}")]
    InvalidCoseKey(CoseKeyError),
    /// The extensions item is not a map with text keys.
    #[error("authenticatorData extensions are not a map with text keys")]
    InvalidExtensions,
}

/// Attested credential data (WebAuthn §6.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedCredentialData {
    /// The authenticator model's AAGUID.
    pub aaguid: [u8; 16],
    /// The credential id (at most 1023 bytes by WebAuthn; we take what the 2-byte length says).
    pub credential_id: Vec<u8>,
    /// The credential public key as decoded (a COSE_Key map). Use [`Self::public_key`] for a
    /// verified ES256 / EdDSA key.
    pub public_key_cose: Value,
}

impl AttestedCredentialData {
    /// The credential public key as an ES256 / EdDSA key, or why it is not one.
    pub fn public_key(&self) -> Result<CoseKey, CoseKeyError> {
        CoseKey::from_cbor(&self.public_key_cose)
    }
}

/// Parsed authenticatorData (WebAuthn §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatorData {
    /// SHA-256 of the rp id the key scoped the credential to.
    pub rp_id_hash: [u8; 32],
    /// The flags byte.
    pub flags: Flags,
    /// The signature counter (0 when the key does not keep one).
    pub sign_count: u32,
    /// Present exactly when AT is set (MakeCredential responses).
    pub attested_credential_data: Option<AttestedCredentialData>,
    /// The extensions map, present exactly when ED is set.
    pub extensions: Option<Value>,
}

fn take<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    n: usize,
    field: &'static str,
) -> Result<&'a [u8], AuthDataError> {
    let available = buf.len().saturating_sub(*pos);
    if n > available {
        return Err(AuthDataError::Truncated {
            field,
            needed: n,
            available,
        });
    }
    let out = &buf[*pos..*pos + n];
    *pos += n;
    Ok(out)
}

fn take_array<const N: usize>(
    buf: &[u8],
    pos: &mut usize,
    field: &'static str,
) -> Result<[u8; N], AuthDataError> {
    let mut out = [0u8; N];
    out.copy_from_slice(take(buf, pos, N, field)?);
    Ok(out)
}

fn take_cbor(buf: &[u8], pos: &mut usize, field: &'static str) -> Result<Value, AuthDataError> {
    let rest = buf.get(*pos..).unwrap_or(&[]);
    if rest.is_empty() {
        return Err(AuthDataError::Truncated {
            field,
            needed: 1,
            available: 0,
        });
    }
    let (v, used) =
        cbor::decode_prefix(rest).map_err(|source| AuthDataError::Cbor { field, source })?;
    *pos += used;
    Ok(v)
}

impl AuthenticatorData {
    /// Parse authenticatorData strictly.
    pub fn parse(bytes: &[u8]) -> Result<AuthenticatorData, AuthDataError> {
        let mut pos = 0;
        let rp_id_hash = take_array::<32>(bytes, &mut pos, "rpIdHash")?;
        let [flags] = take_array::<1>(bytes, &mut pos, "flags")?;
        let flags = Flags(flags);
        let sign_count = u32::from_be_bytes(take_array::<4>(bytes, &mut pos, "signCount")?);

        let attested_credential_data = if flags.attested_credential_data() {
            let aaguid = take_array::<16>(bytes, &mut pos, "aaguid")?;
            let len = u16::from_be_bytes(take_array::<2>(bytes, &mut pos, "credentialIdLength")?);
            let credential_id = take(bytes, &mut pos, usize::from(len), "credentialId")?.to_vec();
            let public_key_cose = take_cbor(bytes, &mut pos, "credentialPublicKey")?;
            check_cose_key_shape(&public_key_cose).map_err(AuthDataError::InvalidCoseKey)?;
            Some(AttestedCredentialData {
                aaguid,
                credential_id,
                public_key_cose,
            })
        } else {
            None
        };

        let extensions = if flags.extension_data() {
            let ext = take_cbor(bytes, &mut pos, "extensions")?;
            let ok = ext
                .as_map()
                .is_some_and(|m| m.iter().all(|(k, _)| k.as_text().is_some()));
            if !ok {
                return Err(AuthDataError::InvalidExtensions);
            }
            Some(ext)
        } else {
            None
        };

        if pos != bytes.len() {
            return Err(AuthDataError::TrailingBytes(bytes.len() - pos));
        }
        Ok(AuthenticatorData {
            rp_id_hash,
            flags,
            sign_count,
            attested_credential_data,
            extensions,
        })
    }

    /// Serialise back to bytes. AT and ED in the output follow what is present, whatever
    /// `self.flags` says; for parsed data the result equals the input.
    pub fn to_bytes(&self) -> Vec<u8> {
        build(
            &self.rp_id_hash,
            self.flags.bits(),
            self.sign_count,
            self.attested_credential_data.as_ref(),
            self.extensions.as_ref(),
        )
    }
}

/// Serialise authenticatorData. The AT and ED bits of `flags` are set or cleared to match
/// whether `attested` and `extensions` are given, so the output always parses.
///
/// A credential id longer than 65535 bytes cannot be represented; it is cut to that length
/// (WebAuthn caps ids at 1023 bytes, so no real caller comes near).
pub fn build(
    rp_id_hash: &[u8; 32],
    flags: u8,
    sign_count: u32,
    attested: Option<&AttestedCredentialData>,
    extensions: Option<&Value>,
) -> Vec<u8> {
    let mut flags = flags & !(flag::AT | flag::ED);
    if attested.is_some() {
        flags |= flag::AT;
    }
    if extensions.is_some() {
        flags |= flag::ED;
    }
    let mut out = Vec::with_capacity(HEADER_LEN + 256);
    out.extend_from_slice(rp_id_hash);
    out.push(flags);
    out.extend_from_slice(&sign_count.to_be_bytes());
    if let Some(a) = attested {
        let id = &a.credential_id[..a.credential_id.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&a.aaguid);
        // The slice above is at most u16::MAX long.
        out.extend_from_slice(&(id.len() as u16).to_be_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(&cbor::encode(&a.public_key_cose));
    }
    if let Some(e) = extensions {
        out.extend_from_slice(&cbor::encode(e));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctap::cose::ALG_ES256;
    use crate::ctap::test_support::es256_key;

    fn sample(with_at: bool, with_ed: bool) -> AuthenticatorData {
        let (_, pk) = es256_key();
        AuthenticatorData {
            rp_id_hash: [0xab; 32],
            flags: Flags(
                flag::UP | if with_at { flag::AT } else { 0 } | if with_ed { flag::ED } else { 0 },
            ),
            sign_count: 0x0102_0304,
            attested_credential_data: with_at.then(|| AttestedCredentialData {
                aaguid: [0x11; 16],
                credential_id: vec![1, 2, 3, 4, 5],
                public_key_cose: pk.to_cbor(),
            }),
            extensions: with_ed
                .then(|| Value::Map(vec![(Value::text("credProtect"), Value::int(2))])),
        }
    }

    #[test]
    fn round_trips_all_shapes() {
        for (at, ed) in [(false, false), (true, false), (false, true), (true, true)] {
            let ad = sample(at, ed);
            let bytes = ad.to_bytes();
            let back = AuthenticatorData::parse(&bytes).unwrap();
            assert_eq!(back, ad);
            assert_eq!(back.to_bytes(), bytes);
            if at {
                let key = back.attested_credential_data.unwrap().public_key().unwrap();
                assert_eq!(key.algorithm(), ALG_ES256);
            }
        }
    }

    #[test]
    fn header_only() {
        let bytes = sample(false, false).to_bytes();
        assert_eq!(bytes.len(), HEADER_LEN);
        let ad = AuthenticatorData::parse(&bytes).unwrap();
        assert_eq!(ad.sign_count, 0x0102_0304);
        assert!(ad.flags.user_present());
        assert!(!ad.flags.user_verified());
    }

    #[test]
    fn every_truncation_fails_without_panic() {
        for (at, ed) in [(false, false), (true, false), (false, true), (true, true)] {
            let bytes = sample(at, ed).to_bytes();
            for n in 0..bytes.len() {
                assert!(
                    AuthenticatorData::parse(&bytes[..n]).is_err(),
                    "{at} {ed} {n}"
                );
            }
        }
    }

    #[test]
    fn flags_must_match_content() {
        // AT set, nothing follows.
        let mut b = sample(false, false).to_bytes();
        b[32] |= flag::AT;
        assert!(matches!(
            AuthenticatorData::parse(&b),
            Err(AuthDataError::Truncated {
                field: "aaguid",
                ..
            })
        ));
        // AT data present, AT clear.
        let mut b = sample(true, false).to_bytes();
        b[32] &= !flag::AT;
        assert!(matches!(
            AuthenticatorData::parse(&b),
            Err(AuthDataError::TrailingBytes(_))
        ));
        // ED set, nothing follows.
        let mut b = sample(false, false).to_bytes();
        b[32] |= flag::ED;
        assert!(matches!(
            AuthenticatorData::parse(&b),
            Err(AuthDataError::Truncated {
                field: "extensions",
                ..
            })
        ));
        // Extensions present, ED clear.
        let mut b = sample(false, true).to_bytes();
        b[32] &= !flag::ED;
        assert!(matches!(
            AuthenticatorData::parse(&b),
            Err(AuthDataError::TrailingBytes(_))
        ));
        // Trailing byte.
        let mut b = sample(true, true).to_bytes();
        b.push(0);
        assert_eq!(
            AuthenticatorData::parse(&b),
            Err(AuthDataError::TrailingBytes(1))
        );
    }

    #[test]
    fn credential_id_length_is_checked() {
        let mut b = sample(true, false).to_bytes();
        // credentialIdLength at 37 + 16: claim more than is there.
        b[53] = 0xff;
        b[54] = 0xff;
        assert!(matches!(
            AuthenticatorData::parse(&b),
            Err(AuthDataError::Truncated {
                field: "credentialId",
                ..
            })
        ));
    }

    #[test]
    fn extensions_must_be_a_text_keyed_map() {
        let mut ad = sample(false, true);
        ad.extensions = Some(Value::Array(vec![]));
        assert_eq!(
            AuthenticatorData::parse(&ad.to_bytes()),
            Err(AuthDataError::InvalidExtensions)
        );
        ad.extensions = Some(Value::Map(vec![(Value::int(1), Value::int(1))]));
        assert_eq!(
            AuthenticatorData::parse(&ad.to_bytes()),
            Err(AuthDataError::InvalidExtensions)
        );
    }

    #[test]
    fn non_canonical_cose_key_is_refused() {
        let b = sample(true, false).to_bytes();
        // The COSE map starts at 37 + 16 + 2 + 5 = 60: a5 01 02 03 26 ...; swap to 03 26 01 02.
        let mut bad = b.clone();
        bad[61..65].copy_from_slice(&[0x03, 0x26, 0x01, 0x02]);
        assert!(matches!(
            AuthenticatorData::parse(&bad),
            Err(AuthDataError::Cbor {
                field: "credentialPublicKey",
                source: CborError::UnsortedKeys(_)
            })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic generator: no dependency, no flakiness.
        let mut state = 0x1234_5678_9abc_def0u64;
        let base = sample(true, true).to_bytes();
        for _ in 0..5000 {
            let mut b = base.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state as usize) % b.len();
                b[i] = (state >> 32) as u8;
            }
            let _ = AuthenticatorData::parse(&b);
        }
    }
}
