//! The one verification path: ask a security key for a touch over our client data, and verify
//! what it answered against the enrolled credentials (WebAuthn §7.2, through
//! [`verify_assertion`]).
//!
//! The gate, `auths token test` and `auths audit verify` all come through here: the first two
//! with a live key ([`touch`]), the audit verifier with the evidence a receipt kept
//! ([`verify_evidence`]). Only this module makes a [`VerifiedTouch`], and only from a
//! [`VerifiedAssertion`], which only [`verify_assertion`] makes.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

use super::enrollment::{Enrollment, EnrollmentError};
use super::verify::{
    verify_assertion, AllowedCredential, Expected, VerifiedAssertion, VerifyError,
};
use crate::ctap::authdata::AuthenticatorData;
use crate::ctap::backend::{client_data_hash, GetAssertionArgs, SecurityKey, UvInfo, Waiting};
use crate::ctap::client_pin::{PinError, PinUvAuthToken};
use crate::ctap::command::{CredentialDescriptor, GetAssertionResponse, PUBLIC_KEY};
use crate::ctap::hmac_secret::{Request as HmacRequest, Salt};
use crate::ctap::CtapError;

/// presence's one interface to a security key: an assertion with a touch, and the user
/// verification a key may demand (every [`SecurityKey`] is one).
pub trait PresenceKey: Send {
    /// authenticatorGetAssertion with `up: true` over the client data bytes (CTAP keys get its
    /// SHA-256, webauthn.dll hashes it itself).
    fn get_assertion(
        &mut self,
        args: &GetAssertionArgs<'_>,
        wait: Waiting<'_>,
    ) -> Result<GetAssertionResponse, CtapError>;

    /// True for the virtual key.
    fn is_virtual(&self) -> bool;

    /// For people: the product name, or the sim socket.
    fn description(&self) -> &str;

    /// What the key says about user verification (`None`: the backend asks itself).
    fn uv_info(&self) -> Option<UvInfo>;

    /// A pinUvAuthToken from `pin` with `permissions` for `rp_id`.
    fn pin_token(
        &mut self,
        pin: &[u8],
        permissions: u64,
        rp_id: &str,
    ) -> Result<PinUvAuthToken, PinError>;

    /// A pinUvAuthToken from the key's built-in user verification.
    fn uv_token(
        &mut self,
        permissions: u64,
        rp_id: &str,
        wait: Waiting<'_>,
    ) -> Result<PinUvAuthToken, PinError>;

    /// [`PresenceKey::get_assertion`] carrying an hmac-secret request for `salt`: the same
    /// touch approves and unseals. Keys without hmac-secret refuse. No default: a wrapper
    /// that forgot to forward it would refuse to unseal on a key that can.
    fn get_assertion_with_hmac_secret(
        &mut self,
        args: &GetAssertionArgs<'_>,
        salt: &Salt,
        wait: Waiting<'_>,
    ) -> Result<(GetAssertionResponse, HmacRequest), CtapError>;
}

impl<K: SecurityKey + ?Sized> PresenceKey for K {
    fn get_assertion(
        &mut self,
        args: &GetAssertionArgs<'_>,
        wait: Waiting<'_>,
    ) -> Result<GetAssertionResponse, CtapError> {
        SecurityKey::get_assertion(self, args, wait)
    }

    fn is_virtual(&self) -> bool {
        SecurityKey::is_virtual(self)
    }

    fn description(&self) -> &str {
        SecurityKey::description(self)
    }

    fn uv_info(&self) -> Option<UvInfo> {
        SecurityKey::uv_info(self)
    }

    fn pin_token(
        &mut self,
        pin: &[u8],
        permissions: u64,
        rp_id: &str,
    ) -> Result<PinUvAuthToken, PinError> {
        SecurityKey::pin_token(self, pin, permissions, rp_id)
    }

    fn uv_token(
        &mut self,
        permissions: u64,
        rp_id: &str,
        wait: Waiting<'_>,
    ) -> Result<PinUvAuthToken, PinError> {
        SecurityKey::uv_token(self, permissions, rp_id, wait)
    }

    fn get_assertion_with_hmac_secret(
        &mut self,
        args: &GetAssertionArgs<'_>,
        salt: &Salt,
        wait: Waiting<'_>,
    ) -> Result<(GetAssertionResponse, HmacRequest), CtapError> {
        SecurityKey::get_assertion_with_hmac_secret(self, args, salt, wait)
    }
}

/// The credentials one touch may come from: one rp id and its enrolled credentials, each with
/// the last sign counter we know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    rp_id: String,
    allowed: Vec<AllowedCredential>,
}

impl Credentials {
    /// `allowed`, all made for `rp_id`.
    pub fn new(rp_id: impl Into<String>, allowed: Vec<AllowedCredential>) -> Credentials {
        Credentials {
            rp_id: rp_id.into(),
            allowed,
        }
    }

    /// The enrolled credentials that share the first enrollment's rp id (all of them in
    /// practice: the rp id is fixed at enrollment). [`TouchError::NotEnrolled`] when none.
    pub fn enrolled(enrollments: &[Enrollment]) -> Result<Credentials, TouchError> {
        let first = enrollments.first().ok_or(TouchError::NotEnrolled)?;
        let allowed = enrollments
            .iter()
            .filter(|e| e.rp_id == first.rp_id)
            .map(Enrollment::allowed)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Credentials::new(first.rp_id.clone(), allowed))
    }

    /// Raise each credential's known counter to `floor(id)` when that is higher (a counter the
    /// caller verified earlier, which the enrollment file may no longer show).
    pub fn raise_counters(&mut self, floor: impl Fn(&[u8]) -> Option<u32>) {
        for c in &mut self.allowed {
            if let Some(f) = floor(&c.id) {
                c.sign_count = c.sign_count.max(f);
            }
        }
    }

    /// The rp id.
    pub fn rp_id(&self) -> &str {
        &self.rp_id
    }

    /// The credentials.
    pub fn allowed(&self) -> &[AllowedCredential] {
        &self.allowed
    }
}

/// What a key answered to one touch request, as a receipt keeps it: enough to verify the touch
/// again, offline, against the enrolled public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TouchEvidence {
    /// The exact client data bytes whose SHA-256 the key signed.
    pub client_data: String,
    /// authenticatorData as signed.
    #[serde(with = "hex")]
    pub auth_data: Vec<u8>,
    /// The assertion signature over authData || SHA-256(client data).
    #[serde(with = "hex")]
    pub signature: Vec<u8>,
    /// The credential that signed.
    #[serde(with = "hex")]
    pub credential_id: Vec<u8>,
}

/// A touch whose assertion passed every check. Not `Clone`: one touch approves once.
#[derive(Debug, PartialEq, Eq)]
pub struct VerifiedTouch {
    assertion: VerifiedAssertion,
    evidence: TouchEvidence,
    virtual_key: bool,
}

impl VerifiedTouch {
    /// The verified assertion.
    pub fn assertion(&self) -> &VerifiedAssertion {
        &self.assertion
    }

    /// What the key answered, for the receipt.
    pub fn evidence(&self) -> &TouchEvidence {
        &self.evidence
    }

    /// The client data the touch signed.
    pub fn client_data(&self) -> &str {
        &self.evidence.client_data
    }

    /// True when the virtual key answered.
    pub fn virtual_key(&self) -> bool {
        self.virtual_key
    }
}

/// Why a touch did not verify.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TouchError {
    /// Nothing is enrolled, so no touch can be verified.
    #[error("no security key is enrolled")]
    NotEnrolled,
    /// The enrollment store could not be read.
    #[error(transparent)]
    Enrollment(#[from] EnrollmentError),
    /// The key could not be reached, or refused.
    #[error(transparent)]
    Device(#[from] CtapError),
    /// The key answered, and the answer did not verify.
    #[error("the security key's answer did not verify")]
    Verification(#[from] VerifyError),
}

/// What one touch is asked for: over which client data, from which credentials, and whether
/// the user must be verified too.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The credentials the touch may come from.
    pub creds: &'a Credentials,
    /// The client data the key signs (its SHA-256).
    pub client_data: &'a str,
    /// The answer must carry the UV flag.
    pub require_uv: bool,
    /// A pinUvAuthToken: the request carries its pinUvAuthParam (and UV is required).
    pub pin_token: Option<&'a PinUvAuthToken>,
}

/// Ask `key` for the touch `ask` describes, and verify the answer. `wait` says when the key
/// blinks (`on_up_needed`), when it is busy with another program (`on_busy`: the request is
/// sent again until the deadline), and cancels. With a pinUvAuthToken the request carries its
/// pinUvAuthParam and the answer must have the UV flag; `require_uv` asks for the flag
/// without a token (a backend that verifies the user itself).
pub fn touch(
    key: &mut dyn PresenceKey,
    ask: &Ask<'_>,
    wait: Waiting<'_>,
) -> Result<VerifiedTouch, TouchError> {
    ask_and_verify(key, ask, |key, args| {
        key.get_assertion(args, wait).map(|r| (r, ()))
    })
    .map(|(verified, ())| verified)
}

/// [`touch`], with the getAssertion also asking for the hmac-secret output for `salt`: one
/// touch approves and yields the secret. The secret is read only from an answer that passed
/// every check (its encrypted output sits inside the signed authenticatorData), and is
/// returned with the credential that made it. With a pinUvAuthToken (or `require_uv`) the key
/// answers with its user-verified secret, which differs from the one it gives on a touch
/// alone.
pub fn touch_with_secret(
    key: &mut dyn PresenceKey,
    ask: &Ask<'_>,
    salt: &Salt,
    wait: Waiting<'_>,
) -> Result<(VerifiedTouch, HmacSecret), TouchError> {
    let (verified, (request, auth_data)) = ask_and_verify(key, ask, |key, args| {
        let (response, request) = key.get_assertion_with_hmac_secret(args, salt, wait)?;
        let auth_data = response.auth_data.clone();
        Ok((response, (request, auth_data)))
    })?;
    let output = request.output(&auth_data)?;
    let secret = output.get(0).copied().ok_or_else(|| {
        TouchError::Device(CtapError::InvalidResponse(
            "the hmac-secret output is shorter than one salt's".into(),
        ))
    })?;
    let secret = HmacSecret {
        credential_id: verified.assertion.credential_id().to_vec(),
        output: Zeroizing::new(secret),
        user_verified: verified.assertion.flags().user_verified(),
    };
    Ok((verified, secret))
}

/// The one way a live touch is asked for and verified: `send` puts the getAssertion built
/// from `ask` to the key; its answer is verified against `ask`'s credentials before anything
/// else `send` returned is used.
fn ask_and_verify<T>(
    key: &mut dyn PresenceKey,
    ask: &Ask<'_>,
    send: impl FnOnce(
        &mut dyn PresenceKey,
        &GetAssertionArgs<'_>,
    ) -> Result<(GetAssertionResponse, T), CtapError>,
) -> Result<(VerifiedTouch, T), TouchError> {
    let Ask {
        creds,
        client_data,
        require_uv,
        pin_token,
    } = *ask;
    let ids: Vec<&[u8]> = creds.allowed.iter().map(|c| c.id.as_slice()).collect();
    let require_uv = require_uv || pin_token.is_some();
    let args = GetAssertionArgs {
        rp_id: &creds.rp_id,
        client_data: client_data.as_bytes(),
        allow_list: &ids,
        pin_token,
        user_verification: require_uv,
    };
    let (response, extra) = send(key, &args)?;
    let mut verified = verify_response(creds, client_data, &response, require_uv)?;
    verified.virtual_key = key.is_virtual();
    Ok((verified, extra))
}

/// One credential's hmac-secret output for one salt, from a verified touch.
pub struct HmacSecret {
    credential_id: Vec<u8>,
    output: Zeroizing<[u8; 32]>,
    user_verified: bool,
}

impl std::fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacSecret")
            .field("credential_id", &hex::encode(&self.credential_id))
            .field("user_verified", &self.user_verified)
            .finish_non_exhaustive()
    }
}

impl HmacSecret {
    /// A stand-in for unit tests of what consumes the secret; never in a build that ships.
    #[cfg(test)]
    pub(crate) fn for_tests(credential_id: &[u8], output: [u8; 32], user_verified: bool) -> Self {
        HmacSecret {
            credential_id: credential_id.to_vec(),
            output: Zeroizing::new(output),
            user_verified,
        }
    }

    /// The credential that answered.
    pub fn credential_id(&self) -> &[u8] {
        &self.credential_id
    }

    /// Whether the answer carried the UV flag (the key gave its user-verified secret).
    pub fn user_verified(&self) -> bool {
        self.user_verified
    }

    /// What a sealed key file opens with.
    pub fn unsealer(&self) -> super::sealed::Unsealer<'_> {
        super::sealed::Unsealer {
            credential_id: &self.credential_id,
            output: &self.output,
        }
    }
}

/// Verify evidence read back from a receipt against `creds`, whose sign counters are the ones
/// before this touch.
pub fn verify_evidence(
    creds: &Credentials,
    evidence: &TouchEvidence,
    require_uv: bool,
) -> Result<VerifiedTouch, VerifyError> {
    let auth_data =
        AuthenticatorData::parse(&evidence.auth_data).map_err(VerifyError::AuthenticatorData)?;
    let response = GetAssertionResponse {
        credential: Some(CredentialDescriptor {
            cred_type: PUBLIC_KEY.to_owned(),
            id: evidence.credential_id.clone(),
        }),
        auth_data_raw: evidence.auth_data.clone(),
        auth_data,
        signature: evidence.signature.clone(),
        user: None,
        number_of_credentials: None,
        user_selected: None,
        large_blob_key: None,
    };
    verify_response(creds, &evidence.client_data, &response, require_uv)
}

fn verify_response(
    creds: &Credentials,
    client_data: &str,
    response: &GetAssertionResponse,
    require_uv: bool,
) -> Result<VerifiedTouch, VerifyError> {
    let assertion = verify_assertion(
        &Expected {
            rp_id: &creds.rp_id,
            client_data_hash: client_data_hash(client_data.as_bytes()),
            allowed: &creds.allowed,
            require_uv,
        },
        response,
    )?;
    let evidence = TouchEvidence {
        client_data: client_data.to_owned(),
        auth_data: response.auth_data_raw.clone(),
        signature: response.signature.clone(),
        credential_id: assertion.credential_id().to_vec(),
    };
    Ok(VerifiedTouch {
        assertion,
        evidence,
        virtual_key: false,
    })
}
