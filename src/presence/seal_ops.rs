//! Sealing identity keys with live security keys (`auths key`): which enrolled credentials can
//! seal, the client data a sealing touch signs, and one verified touch that yields a
//! credential's hmac-secret output for a file's salt, with the user verified when the file is
//! sealed under the user-verified secret.
//!
//! Every secret comes from [`touch_with_secret`], so it is read only from an answer that passed
//! the one verification path. The file format is [`super::sealed`]'s.

use thiserror::Error;
use zeroize::Zeroizing;

use super::enrollment::{Enrollment, EnrollmentError};
use super::pin_entry::{PinEntryError, PinRequest, PinSource};
use super::touch::{touch_with_secret, Ask, Credentials, HmacSecret, PresenceKey, TouchError};
use crate::ctap::backend::Waiting;
use crate::ctap::client_pin::{permissions, PinError, PinUvAuthToken};
use crate::ctap::device::CancelToken;
use crate::ctap::hmac_secret::Salt;
use crate::ctap::{CtapError, StatusCode};

/// The `type` of the client data a sealing touch signs: never [`super::challenge::CLIENT_DATA_TYPE`],
/// so a sealing touch never parses as a signing approval.
pub const SEAL_CLIENT_DATA_TYPE: &str = "auths.presence.seal.v1";

/// Longest label of a sealed key, in characters.
pub const MAX_LABEL: usize = 64;

/// What a sealing touch is for (the `action` of its client data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealAction {
    /// Seal a new key for this security key.
    Seal,
    /// Open a sealed key to add other security keys to it.
    Rewrap,
    /// Open a sealed key to check that this security key opens it.
    Check,
}

impl SealAction {
    /// The word in the client data.
    pub fn as_str(self) -> &'static str {
        match self {
            SealAction::Seal => "seal",
            SealAction::Rewrap => "rewrap",
            SealAction::Check => "check",
        }
    }

    /// What the touch prompt says it is for.
    pub fn purpose(self) -> &'static str {
        match self {
            SealAction::Seal => "seal the identity key",
            SealAction::Rewrap => "open the identity key to add a security key to it",
            SealAction::Check => "check that it opens the identity key",
        }
    }
}

/// The client data of one sealing touch: its type, the action, the identity key's id and
/// label, a fresh nonce and the time. It names no bytes to sign, so it approves no signature.
pub fn seal_client_data(action: SealAction, key_id: &str, label: &str, now_unix: u64) -> String {
    serde_json::json!({
        "type": SEAL_CLIENT_DATA_TYPE,
        "action": action.as_str(),
        "key": key_id,
        "label": label,
        "nonce": hex::encode(rand::random::<[u8; 32]>()),
        "created": now_unix,
    })
    .to_string()
}

/// A label people give a sealed key: 1 to [`MAX_LABEL`] characters, no control characters
/// (it becomes the public key line's comment and is shown on terminals).
pub fn check_label(label: &str) -> Result<(), SealOpError> {
    let n = label.chars().count();
    if n == 0 || n > MAX_LABEL || label.chars().any(char::is_control) {
        return Err(SealOpError::BadLabel);
    }
    Ok(())
}

/// Why an enrolled credential cannot seal, or `None` when it can.
pub fn cannot_seal_reason(e: &Enrollment) -> Option<&'static str> {
    if e.protocol == crate::ctap::u2f::PROTOCOL_U2F {
        Some("a U2F-only key has no hmac-secret")
    } else if !e.hmac_secret {
        Some("enrolled without hmac-secret")
    } else {
        None
    }
}

/// The enrolled credentials that can seal, and those that cannot.
pub fn split_sealers(tokens: &[Enrollment]) -> (Vec<&Enrollment>, Vec<&Enrollment>) {
    tokens.iter().partition(|e| cannot_seal_reason(e).is_none())
}

/// The credentials a sealing touch may come from: `which`, all made for one rp id (the first
/// one's). [`SealOpError::NoSealer`] when there is none.
pub fn credentials(which: &[&Enrollment]) -> Result<Credentials, SealOpError> {
    let first = which.first().ok_or(SealOpError::NoSealer)?;
    let allowed = which
        .iter()
        .filter(|e| e.rp_id == first.rp_id)
        .map(|e| e.allowed())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Credentials::new(first.rp_id.clone(), allowed))
}

/// How a security key verifies its user for a user-verified seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Built-in user verification (a fingerprint): a UV token.
    BuiltIn,
    /// A PIN is set: a PIN token.
    Pin,
    /// The backend asks for the user itself (webauthn.dll).
    Backend,
    /// Neither a PIN nor built-in UV: only the secret of a touch alone.
    None,
}

/// How `key` verifies its user.
pub fn verification(key: &dyn PresenceKey) -> Verification {
    match key.uv_info() {
        None => Verification::Backend,
        Some(u) if u.builtin_uv => Verification::BuiltIn,
        Some(u) if u.pin_set => Verification::Pin,
        Some(_) => Verification::None,
    }
}

/// What one sealing touch asks for.
#[derive(Debug, Clone, Copy)]
pub struct SecretAsk<'a> {
    /// The credentials the touch may come from.
    pub creds: &'a Credentials,
    /// The client data ([`seal_client_data`]).
    pub client_data: &'a str,
    /// The file's salt.
    pub salt: &'a Salt,
    /// The user-verified secret (the file's `uv`).
    pub uv: bool,
    /// What the PIN prompt says it is for.
    pub purpose: &'a str,
}

/// Why a sealing touch gave no secret.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SealOpError {
    /// No enrolled credential can seal.
    #[error(
        "no enrolled security key can seal identity keys (they need the hmac-secret extension)"
    )]
    NoSealer,
    /// The user-verified secret was asked of a key that cannot verify its user.
    #[error("{device} has no PIN and no built-in user verification, so it cannot give the user-verified secret this key is sealed under")]
    NoUserVerification {
        /// The key, as its backend describes it (escape before display).
        device: String,
    },
    /// A key that verifies the user on every request cannot give the touch-only secret.
    #[error("{device} verifies the user on every request (alwaysUv), so it cannot give the touch-only secret of a key sealed without user verification")]
    AlwaysUv {
        /// The key (escape before display).
        device: String,
    },
    /// The answer's UV flag is not what the file is sealed under.
    #[error("the security key answered {}, but this key is sealed {}", if *.answered { "with the user verified" } else { "without the user verified" }, if *.wanted { "under the user-verified secret" } else { "under the touch-only secret" })]
    UvMismatch {
        /// The answer's UV flag.
        answered: bool,
        /// The file's `uv`.
        wanted: bool,
    },
    /// The label is unusable.
    #[error("a label is 1 to {MAX_LABEL} characters, without control characters")]
    BadLabel,
    /// The touch did not verify, or the key refused.
    #[error(transparent)]
    Touch(#[from] TouchError),
    /// The PIN exchange failed.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// No PIN was had.
    #[error(transparent)]
    PinEntry(#[from] PinEntryError),
    /// An enrolled credential is unusable.
    #[error(transparent)]
    Enrollment(#[from] EnrollmentError),
}

impl SealOpError {
    /// The key holds none of the credentials asked for.
    pub fn is_no_credentials(&self) -> bool {
        matches!(
            self,
            SealOpError::Touch(TouchError::Device(CtapError::Status(
                StatusCode::NoCredentials
            )))
        )
    }
}

/// One verified touch on `key` that yields its credential's hmac-secret output for
/// `ask.salt`. With `ask.uv` the user is verified first (built-in UV, or a PIN from `pins`
/// turned into a pinUvAuthToken with the getAssertion permission), the request carries the
/// token and the answer must carry the UV flag; without, the answer must not carry it (the
/// user-verified secret is another secret). `on_up_needed` runs when the key blinks.
///
/// `unused` keeps a token the key did not spend: when the key holds none of the credentials
/// asked for, it refuses before using the token, which is kept there for the next touch on
/// the same key (so trying a key first for one set of credentials and then for another asks
/// its PIN once). A token the key then refuses is dropped and the PIN asked again, once.
pub fn sealing_touch(
    key: &mut dyn PresenceKey,
    ask: &SecretAsk<'_>,
    pins: &mut dyn PinSource,
    unused: &mut Option<PinUvAuthToken>,
    on_up_needed: &mut dyn FnMut(),
    cancel: Option<&CancelToken>,
) -> Result<(super::touch::VerifiedTouch, HmacSecret), SealOpError> {
    if !ask.uv {
        return attempt(key, ask, None, on_up_needed, cancel);
    }
    let cached = unused.take();
    let from_cache = cached.is_some();
    let token = match cached {
        Some(t) => Some(t),
        None => user_verification(key, ask, pins, on_up_needed, cancel)?,
    };
    match attempt(key, ask, token.as_ref(), on_up_needed, cancel) {
        Err(e) if e.is_no_credentials() => {
            *unused = token;
            Err(e)
        }
        Err(SealOpError::Touch(TouchError::Device(CtapError::Status(
            StatusCode::PinAuthInvalid,
        )))) if from_cache => {
            drop(token);
            let fresh = user_verification(key, ask, pins, on_up_needed, cancel)?;
            attempt(key, ask, fresh.as_ref(), on_up_needed, cancel)
        }
        other => other,
    }
}

/// A token that verifies the user of `key` (`None` where the backend asks itself).
fn user_verification(
    key: &mut dyn PresenceKey,
    ask: &SecretAsk<'_>,
    pins: &mut dyn PinSource,
    on_up_needed: &mut dyn FnMut(),
    cancel: Option<&CancelToken>,
) -> Result<Option<PinUvAuthToken>, SealOpError> {
    let rp_id = ask.creds.rp_id().to_owned();
    Ok(match verification(key) {
        Verification::BuiltIn => Some(key.uv_token(
            permissions::GET_ASSERTION,
            &rp_id,
            Waiting {
                on_up_needed,
                on_busy: None,
                cancel,
            },
        )?),
        Verification::Pin => {
            let description = key.description().to_owned();
            let pin: Zeroizing<String> = pins.pin(&PinRequest {
                key: &description,
                purpose: ask.purpose,
                retries: None,
            })?;
            Some(key.pin_token(pin.as_bytes(), permissions::GET_ASSERTION, &rp_id)?)
        }
        Verification::Backend => None,
        Verification::None => {
            return Err(SealOpError::NoUserVerification {
                device: key.description().to_owned(),
            })
        }
    })
}

/// The touch itself, with `token` when the user is verified (`ask.uv`).
fn attempt(
    key: &mut dyn PresenceKey,
    ask: &SecretAsk<'_>,
    token: Option<&PinUvAuthToken>,
    on_up_needed: &mut dyn FnMut(),
    cancel: Option<&CancelToken>,
) -> Result<(super::touch::VerifiedTouch, HmacSecret), SealOpError> {
    let touch = Ask {
        creds: ask.creds,
        client_data: ask.client_data,
        require_uv: ask.uv,
        pin_token: token,
    };
    let wait = Waiting {
        on_up_needed,
        on_busy: None,
        cancel,
    };
    let (verified, secret) = match touch_with_secret(key, &touch, ask.salt, wait) {
        Err(TouchError::Device(CtapError::Status(StatusCode::PuatRequired))) if !ask.uv => {
            return Err(SealOpError::AlwaysUv {
                device: key.description().to_owned(),
            })
        }
        other => other?,
    };
    if secret.user_verified() != ask.uv {
        return Err(SealOpError::UvMismatch {
            answered: secret.user_verified(),
            wanted: ask.uv,
        });
    }
    Ok((verified, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_client_data_names_the_key_and_is_fresh_and_escaped() {
        let a = seal_client_data(SealAction::Seal, "0011223344556677", "work\"\n", 5);
        let b = seal_client_data(SealAction::Seal, "0011223344556677", "work\"\n", 5);
        assert_ne!(a, b, "a fresh nonce each time");
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["type"], SEAL_CLIENT_DATA_TYPE);
        assert_eq!(v["action"], "seal");
        assert_eq!(v["key"], "0011223344556677");
        assert_eq!(v["label"], "work\"\n");
        assert!(!a.contains('\n'), "control characters are JSON-escaped");
        // Never a signing approval.
        assert!(super::super::challenge::ClientData::parse(&a).is_err());
    }

    #[test]
    fn labels_are_bounded_and_printable() {
        assert!(check_label("work laptop").is_ok());
        assert!(check_label("").is_err());
        assert!(check_label("a\nb").is_err());
        assert!(check_label("\u{1b}[31m").is_err());
        assert!(check_label(&"x".repeat(MAX_LABEL)).is_ok());
        assert!(check_label(&"x".repeat(MAX_LABEL + 1)).is_err());
    }
}
