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

/// A security key, reached through whichever backend the platform has.
pub trait SecurityKey: Send {
    /// For people: product name and path, the sim socket, or "Windows security key dialog".
    fn description(&self) -> &str;

    /// True for the virtual key.
    fn is_virtual(&self) -> bool;

    /// COSE algorithms the key supports, when it says (CTAP getInfo); `None` when the backend
    /// cannot tell before a credential exists (webauthn.dll picks from our list itself).
    fn supported_algorithms(&mut self) -> Result<Option<Vec<i64>>, CtapError>;

    /// authenticatorMakeCredential with a touch; `on_up_needed` runs when the key waits for it.
    fn make_credential(
        &mut self,
        args: &MakeCredentialArgs<'_>,
        on_up_needed: &mut dyn FnMut(),
        cancel: Option<&CancelToken>,
    ) -> Result<MakeCredentialResponse, CtapError>;

    /// authenticatorGetAssertion with `up: true` and no user verification.
    fn get_assertion(
        &mut self,
        rp_id: &str,
        client_data: &[u8],
        allow_list: &[&[u8]],
        on_up_needed: &mut dyn FnMut(),
        cancel: Option<&CancelToken>,
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
        let info = self.device.get_info()?;
        Ok(if info.algorithms.is_empty() {
            None
        } else {
            Some(info.algorithms)
        })
    }

    fn make_credential(
        &mut self,
        args: &MakeCredentialArgs<'_>,
        on_up_needed: &mut dyn FnMut(),
        cancel: Option<&CancelToken>,
    ) -> Result<MakeCredentialResponse, CtapError> {
        let request = MakeCredentialRequest {
            client_data_hash: client_data_hash(args.client_data),
            rp: args.rp,
            user: args.user,
            algorithms: args.algorithms,
            exclude_list: args.exclude_list,
        };
        let mut on_keepalive = |s| {
            if s == KeepaliveStatus::UpNeeded {
                on_up_needed();
            }
        };
        self.device
            .make_credential(&request, &mut on_keepalive, cancel)
    }

    fn get_assertion(
        &mut self,
        rp_id: &str,
        client_data: &[u8],
        allow_list: &[&[u8]],
        on_up_needed: &mut dyn FnMut(),
        cancel: Option<&CancelToken>,
    ) -> Result<GetAssertionResponse, CtapError> {
        let request = GetAssertionRequest {
            rp_id,
            client_data_hash: client_data_hash(client_data),
            allow_list,
            user_verification: false,
        };
        let mut on_keepalive = |s| {
            if s == KeepaliveStatus::UpNeeded {
                on_up_needed();
            }
        };
        self.device
            .get_assertion(&request, &mut on_keepalive, cancel)
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
        on_up_needed: &mut dyn FnMut(),
        cancel: Option<&CancelToken>,
    ) -> Result<MakeCredentialResponse, CtapError> {
        self.as_mut().make_credential(args, on_up_needed, cancel)
    }

    fn get_assertion(
        &mut self,
        rp_id: &str,
        client_data: &[u8],
        allow_list: &[&[u8]],
        on_up_needed: &mut dyn FnMut(),
        cancel: Option<&CancelToken>,
    ) -> Result<GetAssertionResponse, CtapError> {
        self.as_mut()
            .get_assertion(rp_id, client_data, allow_list, on_up_needed, cancel)
    }
}
