//! The hmac-secret extension (CTAP 2.1 §12.5), the platform's side: a credential made with
//! `{"hmac-secret": true}` holds a secret (CredRandom) that never leaves the key; a getAssertion
//! carrying one or two 32-byte salts, encrypted under the clientPIN key agreement's shared
//! secret, gets back HMAC-SHA-256(CredRandom, salt) for each, encrypted the same way, inside
//! the signed authenticatorData. The same touch that approves a signature can so unseal a key
//! ([`crate::presence`]'s sealed keys): one getAssertion, one touch.
//!
//! The outputs are secrets: they live in [`Zeroizing`] buffers and are never logged.

use zeroize::Zeroizing;

use super::authdata::AuthenticatorData;
use super::cbor::Value;
use super::command::{GetAssertionRequest, GetInfoResponse, MakeCredentialRequest};
use super::device::{CancelToken, Device};
use super::pin::{KeyAgreementKey, PinProtocol, SharedSecret};
use super::transaction::KeepaliveStatus;
use super::transport::Transport;
use super::CtapError;

/// The extension's identifier.
pub const EXTENSION: &str = "hmac-secret";

/// One salt (the spec allows one or two, 32 bytes each).
pub type Salt = [u8; 32];

/// Whether the key says it supports hmac-secret (getInfo `extensions`).
pub fn supported(info: &GetInfoResponse) -> bool {
    info.extensions.iter().any(|e| e == EXTENSION)
}

/// makeCredential's extensions input: `{"hmac-secret": true}`.
pub fn create_input() -> Value {
    Value::Map(vec![(Value::text(EXTENSION), Value::Bool(true))])
}

/// Whether a new credential's authenticatorData says it was made with hmac-secret.
pub fn created(auth_data: &AuthenticatorData) -> bool {
    extension_output(auth_data) == Some(&Value::Bool(true))
}

fn extension_output(auth_data: &AuthenticatorData) -> Option<&Value> {
    auth_data
        .extensions
        .as_ref()?
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(EXTENSION))
        .map(|(_, v)| v)
}

/// A getAssertion's hmac-secret input, and what decrypts its output.
pub struct Request {
    protocol: PinProtocol,
    shared: SharedSecret,
    salts: usize,
    input: Value,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("protocol", &self.protocol)
            .field("salts", &self.salts)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// The input for `salts` (one or two), against the key's key agreement key
    /// `authenticator_key` (clientPIN getKeyAgreement) under `protocol`.
    pub fn new(
        protocol: PinProtocol,
        authenticator_key: &KeyAgreementKey,
        salts: &[Salt],
    ) -> Result<Request, CtapError> {
        if salts.is_empty() || salts.len() > 2 {
            return Err(CtapError::InvalidResponse(
                "hmac-secret takes one or two salts".into(),
            ));
        }
        let (platform_key, shared) = protocol.encapsulate(authenticator_key);
        Request::with_secret(protocol, platform_key, shared, salts)
    }

    /// [`Request::new`] with the key agreement already done.
    pub fn with_secret(
        protocol: PinProtocol,
        platform_key: KeyAgreementKey,
        shared: SharedSecret,
        salts: &[Salt],
    ) -> Result<Request, CtapError> {
        let mut plain = Zeroizing::new(Vec::with_capacity(64));
        for s in salts {
            plain.extend_from_slice(s);
        }
        let salt_enc = protocol
            .encrypt(&shared, &plain)
            .map_err(|e| CtapError::InvalidResponse(e.to_string()))?;
        let salt_auth = protocol.authenticate(shared.as_bytes(), &salt_enc);
        let mut map = vec![
            (Value::int(1), platform_key.to_cbor()),
            (Value::int(2), Value::Bytes(salt_enc)),
            (Value::int(3), Value::Bytes(salt_auth)),
        ];
        // Protocol one is the default; a CTAP 2.0 key knows no member 4.
        if protocol != PinProtocol::One {
            map.push((Value::int(4), Value::Unsigned(protocol.number())));
        }
        Ok(Request {
            protocol,
            shared,
            salts: salts.len(),
            input: Value::Map(map),
        })
    }

    /// getAssertion's extensions map carrying this input.
    pub fn extensions(&self) -> Value {
        Value::Map(vec![(Value::text(EXTENSION), self.input.clone())])
    }

    /// The outputs in an assertion's (verified) authenticatorData, decrypted: 32 bytes per salt.
    pub fn output(&self, auth_data: &AuthenticatorData) -> Result<Output, CtapError> {
        let bad = |m: &str| CtapError::InvalidResponse(format!("hmac-secret output: {m}"));
        let enc = match extension_output(auth_data) {
            Some(Value::Bytes(b)) => b,
            Some(_) => return Err(bad("not a byte string")),
            None => return Err(bad("missing: the credential was made without hmac-secret")),
        };
        let plain = self
            .protocol
            .decrypt(&self.shared, enc)
            .map_err(|e| bad(&e.to_string()))?;
        if plain.len() != 32 * self.salts {
            return Err(bad("not 32 bytes per salt"));
        }
        Ok(Output(plain))
    }
}

/// The decrypted outputs, 32 bytes per salt, wiped when dropped.
pub struct Output(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Output(…)")
    }
}

impl Output {
    /// The output for salt `i` (0 or 1).
    pub fn get(&self, i: usize) -> Option<&[u8; 32]> {
        self.0.get(i * 32..i * 32 + 32)?.try_into().ok()
    }
}

impl<T: Transport> Device<T> {
    /// makeCredential asking for hmac-secret.
    pub fn make_credential_with_hmac_secret(
        &mut self,
        request: &MakeCredentialRequest<'_>,
        on_keepalive: &mut dyn FnMut(KeepaliveStatus),
        cancel: Option<&CancelToken>,
    ) -> Result<super::command::MakeCredentialResponse, CtapError> {
        let resp = self.cbor(
            &request.to_payload_with_extensions(&create_input()),
            on_keepalive,
            cancel,
        )?;
        super::command::MakeCredentialResponse::decode(super::command::split_status(&resp)?)
    }

    /// getAssertion carrying `hmac`'s input; the caller verifies the assertion, then reads the
    /// output with [`Request::output`].
    pub fn get_assertion_with_hmac_secret(
        &mut self,
        request: &GetAssertionRequest<'_>,
        hmac: &Request,
        on_keepalive: &mut dyn FnMut(KeepaliveStatus),
        cancel: Option<&CancelToken>,
    ) -> Result<super::command::GetAssertionResponse, CtapError> {
        let resp = self.cbor(
            &request.to_payload_with_extensions(&hmac.extensions()),
            on_keepalive,
            cancel,
        )?;
        super::command::GetAssertionResponse::decode(super::command::split_status(&resp)?)
    }

    /// A request for `salts` against this key's key agreement key (clientPIN
    /// getKeyAgreement), under the protocol its getInfo prefers.
    pub fn hmac_secret_request(
        &mut self,
        info: &GetInfoResponse,
        salts: &[Salt],
    ) -> Result<Request, CtapError> {
        if !supported(info) {
            return Err(CtapError::Unsupported(
                "this security key has no hmac-secret extension (U2F-only and some older keys lack it)"
                    .into(),
            ));
        }
        let protocol = super::client_pin::protocol_for(info).map_err(|e| match e {
            super::client_pin::PinError::Ctap(c) => c,
            other => CtapError::Unsupported(other.to_string()),
        })?;
        let (platform_key, shared) = self.key_agreement(protocol).map_err(|e| match e {
            super::client_pin::PinError::Ctap(c) => c,
            other => CtapError::InvalidResponse(other.to_string()),
        })?;
        Request::with_secret(protocol, platform_key, shared, salts)
    }
}
