//! One interface to a security key, whatever reaches it: a CTAPHID channel
//! ([`super::select::OpenedKey`], Linux and macOS through hidapi, or the virtual key) or Windows'
//! webauthn.dll ([`super::winhello`]). Enrollment and the gate use this trait, so the rest of
//! the crate does not care which backend is behind it.
//!
//! Both operations take the client data *bytes*, not their hash: webauthn.dll hashes the
//! client data itself (WebAuthn §5.8.1 `CollectedClientData`), CTAP keys get SHA-256 of it
//! (CTAP 2.1 §6.1 `clientDataHash`). Either way the key signs `authData || SHA-256(clientData)`,
//! so receipts verify the same way on every platform.

use super::command::{
    Algorithm, GetAssertionRequest, GetAssertionResponse, MakeCredentialRequest,
    MakeCredentialResponse, RelyingParty, UserEntity,
};
use super::device::CancelToken;
use super::select::OpenedKey;
use super::status::StatusCode;
use super::transaction::KeepaliveStatus;
use super::CtapError;

/// What authenticatorMakeCredential needs, with the client data as bytes.
#[derive(Debug, Clone, Copy)]
pub struct MakeCredentialArgs<'a> {
    /// The client data; CTAP keys get its SHA-256, webauthn.dll hashes it itself.
    pub client_data: &'a [u8],
    /// The relying party.
    pub rp: RelyingParty<'a>,
    /// The user entity.
    pub user: UserEntity<'a>,
    /// Algorithms in order of preference.
    pub algorithms: &'a [Algorithm],
    /// Credentials the key must not hold already.
    pub exclude_list: &'a [&'a [u8]],
}

/// What authenticatorGetAssertion needs, with the client data as bytes (`up: true`, no user
/// verification).
#[derive(Debug, Clone, Copy)]
pub struct GetAssertionArgs<'a> {
    /// The relying party id the credentials were made for.
    pub rp_id: &'a str,
    /// The client data; CTAP keys get its SHA-256, webauthn.dll hashes it itself.
    pub client_data: &'a [u8],
    /// The credentials the key may answer with.
    pub allow_list: &'a [&'a [u8]],
}

/// How an operation that waits for a touch reports and stops: `on_up_needed` runs when the
/// key starts to wait (blinks), `cancel` aborts the operation from another thread.
pub struct Waiting<'a> {
    /// Called when the key waits for a touch.
    pub on_up_needed: &'a mut dyn FnMut(),
    /// Cancels the operation (CTAPHID_CANCEL, or webauthn.dll's cancellation id).
    pub cancel: Option<&'a CancelToken>,
}

impl std::fmt::Debug for Waiting<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("cancellable", &self.cancel.is_some())
            .finish_non_exhaustive()
    }
}

/// A security key, reached through whichever backend the platform has.
pub trait SecurityKey: Send {
    /// For people: product name and path, the sim socket, or "Windows security key dialog".
    fn description(&self) -> &str;

    /// True for the virtual key.
    fn is_virtual(&self) -> bool;

    /// COSE algorithms the key supports, when it says (CTAP getInfo); `None` when the backend
    /// cannot tell before a credential exists (webauthn.dll picks from our list itself).
    fn supported_algorithms(&mut self) -> Result<Option<Vec<i64>>, CtapError>;

    /// authenticatorMakeCredential with a touch.
    fn make_credential(
        &mut self,
        args: &MakeCredentialArgs<'_>,
        wait: Waiting<'_>,
    ) -> Result<MakeCredentialResponse, CtapError>;

    /// authenticatorGetAssertion with a touch.
    fn get_assertion(
        &mut self,
        args: &GetAssertionArgs<'_>,
        wait: Waiting<'_>,
    ) -> Result<GetAssertionResponse, CtapError>;
}

/// SHA-256 of the client data: the `clientDataHash` a CTAP key signs over.
pub fn client_data_hash(client_data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(client_data).into()
}

impl SecurityKey for OpenedKey {
    fn description(&self) -> &str {
        &self.description
    }

    fn is_virtual(&self) -> bool {
        self.is_virtual
    }

    fn supported_algorithms(&mut self) -> Result<Option<Vec<i64>>, CtapError> {
        let algorithms = &self.info.algorithms;
        Ok((!algorithms.is_empty()).then(|| algorithms.clone()))
    }

    fn make_credential(
        &mut self,
        args: &MakeCredentialArgs<'_>,
        wait: Waiting<'_>,
    ) -> Result<MakeCredentialResponse, CtapError> {
        let request = MakeCredentialRequest {
            client_data_hash: client_data_hash(args.client_data),
            rp: args.rp,
            user: args.user,
            algorithms: args.algorithms,
            exclude_list: args.exclude_list,
            pin_uv_auth: None,
        };
        let cancel = wait.cancel;
        self.device
            .make_credential(&request, &mut up_needed(wait), cancel)
    }

    fn get_assertion(
        &mut self,
        args: &GetAssertionArgs<'_>,
        wait: Waiting<'_>,
    ) -> Result<GetAssertionResponse, CtapError> {
        // A list longer than the key takes is probed in parts, silently; the touch is then
        // asked for with the one credential the key holds.
        let max = self
            .info
            .max_credential_count_in_list
            .and_then(|m| usize::try_from(m).ok())
            .filter(|m| *m > 0);
        let found;
        let allow_list = match max {
            Some(max) if args.allow_list.len() > max => {
                let id = self
                    .device
                    .find_credential(args.rp_id, args.allow_list, max, wait.cancel)?
                    .ok_or(CtapError::Status(StatusCode::NoCredentials))?;
                found = [id];
                &found[..]
            }
            _ => args.allow_list,
        };
        let request = GetAssertionRequest {
            rp_id: args.rp_id,
            client_data_hash: client_data_hash(args.client_data),
            allow_list,
            user_verification: false,
            pin_uv_auth: None,
        };
        let cancel = wait.cancel;
        self.device
            .get_assertion(&request, &mut up_needed(wait), cancel)
    }
}

/// A KEEPALIVE callback that tells `wait` when the key starts to wait for a touch.
fn up_needed(wait: Waiting<'_>) -> impl FnMut(KeepaliveStatus) + '_ {
    move |s| {
        if s == KeepaliveStatus::UpNeeded {
            (wait.on_up_needed)();
        }
    }
}

/// A boxed backend, as `select::open_key` returns it.
impl SecurityKey for Box<dyn SecurityKey> {
    fn description(&self) -> &str {
        self.as_ref().description()
    }

    fn is_virtual(&self) -> bool {
        self.as_ref().is_virtual()
    }

    fn supported_algorithms(&mut self) -> Result<Option<Vec<i64>>, CtapError> {
        self.as_mut().supported_algorithms()
    }

    fn make_credential(
        &mut self,
        args: &MakeCredentialArgs<'_>,
        wait: Waiting<'_>,
    ) -> Result<MakeCredentialResponse, CtapError> {
        self.as_mut().make_credential(args, wait)
    }

    fn get_assertion(
        &mut self,
        args: &GetAssertionArgs<'_>,
        wait: Waiting<'_>,
    ) -> Result<GetAssertionResponse, CtapError> {
        self.as_mut().get_assertion(args, wait)
    }
}
