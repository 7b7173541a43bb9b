//! One interface to a security key, whatever reaches it: a CTAPHID channel
//! ([`super::select::OpenedKey`], Linux and macOS through hidapi, or the virtual key) or Windows'
//! webauthn.dll ([`super::winhello`]). Enrollment and the gate use this trait, so the rest of
//! the crate does not care which backend is behind it.
//!
//! Both operations take the client data *bytes*, not their hash: webauthn.dll hashes the
//! client data itself (WebAuthn §5.8.1 `CollectedClientData`), CTAP keys get SHA-256 of it
//! (CTAP 2.1 §6.1 `clientDataHash`). Either way the key signs `authData || SHA-256(clientData)`,
//! so receipts verify the same way on every platform.

use super::client_pin::{PinError, PinUvAuthToken};
use super::command::{
    Algorithm, GetAssertionRequest, GetAssertionResponse, GetInfoResponse, MakeCredentialRequest,
    MakeCredentialResponse, PinUvAuth, RelyingParty, UserEntity,
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
    /// A pinUvAuthToken with the mc permission, when the key needs the user verified
    /// (ignored by webauthn.dll, which asks for the PIN itself).
    pub pin_token: Option<&'a PinUvAuthToken>,
}

/// What authenticatorGetAssertion needs, with the client data as bytes (`up: true`; user
/// verification only through `pin_token`).
#[derive(Debug, Clone, Copy)]
pub struct GetAssertionArgs<'a> {
    /// The relying party id the credentials were made for.
    pub rp_id: &'a str,
    /// The client data; CTAP keys get its SHA-256, webauthn.dll hashes it itself.
    pub client_data: &'a [u8],
    /// The credentials the key may answer with.
    pub allow_list: &'a [&'a [u8]],
    /// A pinUvAuthToken with the ga permission, when the user is to be verified (ignored by
    /// webauthn.dll, which asks for the PIN itself).
    pub pin_token: Option<&'a PinUvAuthToken>,
    /// The user must be verified: webauthn.dll asks for the PIN in its own dialog (CTAP keys
    /// verify through `pin_token`).
    pub user_verification: bool,
}

/// What a key's getInfo says about user verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UvInfo {
    /// A PIN is set (`clientPin: true`).
    pub pin_set: bool,
    /// The key implements clientPIN at all (`clientPin` listed).
    pub pin_supported: bool,
    /// alwaysUv: every request needs the user verified.
    pub always_uv: bool,
    /// makeCredUvNotRqd: a credential like ours can be made without UV.
    pub make_cred_uv_not_rqd: bool,
    /// Built-in user verification (a fingerprint) is set up (`uv: true`).
    pub builtin_uv: bool,
}

impl UvInfo {
    /// Read from getInfo.
    pub fn of(info: &GetInfoResponse) -> UvInfo {
        UvInfo {
            pin_set: info.option("clientPin") == Some(true),
            pin_supported: info.option("clientPin").is_some(),
            always_uv: info.option("alwaysUv") == Some(true),
            make_cred_uv_not_rqd: info.option("makeCredUvNotRqd") == Some(true),
            builtin_uv: info.option("uv") == Some(true),
        }
    }

    /// Whether enrollment needs the user verified up front: alwaysUv, or a PIN set on a key
    /// without makeCredUvNotRqd (CTAP 2.0 keys).
    pub fn needed_to_enroll(&self) -> bool {
        self.always_uv || (self.pin_set && !self.make_cred_uv_not_rqd)
    }

    /// Whether every assertion needs the user verified (alwaysUv).
    pub fn needed_to_sign(&self) -> bool {
        self.always_uv
    }
}

/// How an operation that waits for a touch reports and stops: `on_up_needed` runs when the
/// key starts to wait (blinks), `cancel` aborts the operation from another thread.
pub struct Waiting<'a> {
    /// Called when the key waits for a touch.
    pub on_up_needed: &'a mut dyn FnMut(),
    /// Called each time the key answers that it is busy with another program (the request
    /// is sent again until the deadline).
    pub on_busy: Option<&'a mut dyn FnMut()>,
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

    /// The protocol the key speaks, as enrollments record it: `"ctap2"` (CTAP 2.x, and
    /// webauthn.dll) or `"u2f"` (a U2F-only key, [`super::u2f::U2fKey`]).
    fn protocol(&self) -> &'static str {
        PROTOCOL_CTAP2
    }

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

    /// authenticatorGetAssertion with a touch, carrying an hmac-secret request for `salt`
    /// (CTAP 2.1 §12.5): the same touch approves and unseals. Returns the answer and the
    /// request, whose [`super::hmac_secret::Request::output`] decrypts the secret once the
    /// caller has verified the assertion. Keys without hmac-secret refuse.
    fn get_assertion_with_hmac_secret(
        &mut self,
        _args: &GetAssertionArgs<'_>,
        _salt: &super::hmac_secret::Salt,
        _wait: Waiting<'_>,
    ) -> Result<(GetAssertionResponse, super::hmac_secret::Request), CtapError> {
        Err(CtapError::Unsupported(
            "this security key has no hmac-secret extension, so it cannot unseal keys".into(),
        ))
    }

    /// What the key says about user verification; `None` where the backend verifies the user
    /// itself (webauthn.dll asks for the PIN in its own dialog).
    fn uv_info(&self) -> Option<UvInfo> {
        None
    }

    /// A pinUvAuthToken from `pin`, with `permissions` for `rp_id` (clientPIN, §6.5).
    fn pin_token(
        &mut self,
        _pin: &[u8],
        _permissions: u64,
        _rp_id: &str,
    ) -> Result<PinUvAuthToken, PinError> {
        Err(PinError::Ctap(CtapError::Unsupported(
            "this backend asks for the PIN itself".into(),
        )))
    }

    /// A pinUvAuthToken from the key's built-in user verification (a fingerprint), with
    /// `permissions` for `rp_id`; the key waits for the finger as for a touch.
    fn uv_token(
        &mut self,
        _permissions: u64,
        _rp_id: &str,
        _wait: Waiting<'_>,
    ) -> Result<PinUvAuthToken, PinError> {
        Err(PinError::Ctap(CtapError::Unsupported(
            "this backend verifies the user itself".into(),
        )))
    }
}

/// The protocol name of CTAP2 keys (and webauthn.dll), the default of [`SecurityKey::protocol`].
pub const PROTOCOL_CTAP2: &str = "ctap2";

/// SHA-256 of the client data: the `clientDataHash` a CTAP key signs over.
pub fn client_data_hash(client_data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(client_data).into()
}

impl SecurityKey for OpenedKey {
    fn description(&self) -> &str {
        &self.description
    }

    fn uv_info(&self) -> Option<UvInfo> {
        Some(UvInfo::of(&self.info))
    }

    fn pin_token(
        &mut self,
        pin: &[u8],
        permissions: u64,
        rp_id: &str,
    ) -> Result<PinUvAuthToken, PinError> {
        self.device.pin_token(&self.info, pin, permissions, rp_id)
    }

    fn uv_token(
        &mut self,
        permissions: u64,
        rp_id: &str,
        wait: Waiting<'_>,
    ) -> Result<PinUvAuthToken, PinError> {
        let cancel = wait.cancel;
        self.device
            .uv_token(&self.info, permissions, rp_id, &mut up_needed(wait), cancel)
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
        let client_data_hash = client_data_hash(args.client_data);
        let request = MakeCredentialRequest {
            client_data_hash,
            rp: args.rp,
            user: args.user,
            algorithms: args.algorithms,
            exclude_list: args.exclude_list,
            pin_uv_auth: args.pin_token.map(|t| pin_uv_auth(t, &client_data_hash)),
        };
        let cancel = wait.cancel;
        // Every credential made on a key with hmac-secret gets its secret, so identity keys
        // can be sealed under it later (`auths key`); the key tells in its answer.
        if super::hmac_secret::supported(&self.info) {
            return self.device.make_credential_with_hmac_secret(
                &request,
                &mut up_needed(wait),
                cancel,
            );
        }
        self.device
            .make_credential(&request, &mut up_needed(wait), cancel)
    }

    fn get_assertion(
        &mut self,
        args: &GetAssertionArgs<'_>,
        wait: Waiting<'_>,
    ) -> Result<GetAssertionResponse, CtapError> {
        self.assertion(args, None, wait)
    }

    fn get_assertion_with_hmac_secret(
        &mut self,
        args: &GetAssertionArgs<'_>,
        salt: &super::hmac_secret::Salt,
        wait: Waiting<'_>,
    ) -> Result<(GetAssertionResponse, super::hmac_secret::Request), CtapError> {
        let info = self.info.clone();
        let hmac = self.device.hmac_secret_request(&info, &[*salt])?;
        let resp = self.assertion(args, Some(&hmac), wait)?;
        Ok((resp, hmac))
    }
}

impl OpenedKey {
    fn assertion(
        &mut self,
        args: &GetAssertionArgs<'_>,
        hmac: Option<&super::hmac_secret::Request>,
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
        let client_data_hash = client_data_hash(args.client_data);
        let request = GetAssertionRequest {
            rp_id: args.rp_id,
            client_data_hash,
            allow_list,
            user_verification: false,
            pin_uv_auth: args.pin_token.map(|t| pin_uv_auth(t, &client_data_hash)),
        };
        let cancel = wait.cancel;
        match hmac {
            Some(h) => self.device.get_assertion_with_hmac_secret(
                &request,
                h,
                &mut up_needed(wait),
                cancel,
            ),
            None => self
                .device
                .get_assertion(&request, &mut up_needed(wait), cancel),
        }
    }
}

/// The pinUvAuthParam of a request over `client_data_hash`.
fn pin_uv_auth(token: &PinUvAuthToken, client_data_hash: &[u8; 32]) -> PinUvAuth {
    PinUvAuth {
        protocol: token.protocol().number(),
        param: token.param(client_data_hash),
    }
}

/// A KEEPALIVE callback that tells `wait` when the key starts to wait for a touch.
fn up_needed(wait: Waiting<'_>) -> impl FnMut(KeepaliveStatus) + '_ {
    let Waiting {
        on_up_needed,
        mut on_busy,
        ..
    } = wait;
    move |s| match s {
        KeepaliveStatus::UpNeeded => on_up_needed(),
        KeepaliveStatus::Busy => {
            if let Some(f) = on_busy.as_mut() {
                f()
            }
        }
        _ => {}
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

    fn protocol(&self) -> &'static str {
        self.as_ref().protocol()
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

    // Every method is forwarded, defaults included: a default here would hide the boxed
    // key's own answer.
    fn get_assertion_with_hmac_secret(
        &mut self,
        args: &GetAssertionArgs<'_>,
        salt: &super::hmac_secret::Salt,
        wait: Waiting<'_>,
    ) -> Result<(GetAssertionResponse, super::hmac_secret::Request), CtapError> {
        self.as_mut()
            .get_assertion_with_hmac_secret(args, salt, wait)
    }

    fn uv_info(&self) -> Option<UvInfo> {
        self.as_ref().uv_info()
    }

    fn pin_token(
        &mut self,
        pin: &[u8],
        permissions: u64,
        rp_id: &str,
    ) -> Result<PinUvAuthToken, PinError> {
        self.as_mut().pin_token(pin, permissions, rp_id)
    }

    fn uv_token(
        &mut self,
        permissions: u64,
        rp_id: &str,
        wait: Waiting<'_>,
    ) -> Result<PinUvAuthToken, PinError> {
        self.as_mut().uv_token(permissions, rp_id, wait)
    }
}
