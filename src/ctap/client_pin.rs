//! authenticatorClientPIN (CTAP 2.1 §6.5): PIN retries, key agreement, pinUvAuthTokens from a
//! PIN or from built-in user verification, and setting a PIN.
//!
//! - [`ClientPinRequest`] / [`ClientPinResponse`]: the wire form (command 0x06, parameters and
//!   response keys as §6.5.5 numbers them). Responses decode strictly, like every response in
//!   [`super::command`].
//! - The [`Device`] methods run the flows on an open channel: `getPinToken` (subcommand 0x05)
//!   for CTAP 2.0 keys, `getPinUvAuthTokenUsingPinWithPermissions` (0x09) and
//!   `...UsingUvWithPermissions` (0x06) for keys whose getInfo lists `pinUvAuthToken`, each
//!   token bound to our rp id and to the permissions asked (mc, ga).
//! - Every refusal has its own [`PinError`]: a wrong PIN says how many tries are left.
//!
//! The PIN is only ever hashed and encrypted here; it is never kept, logged or put in an
//! error. The token is zeroized on drop and only its MACs leave this module.

use thiserror::Error;
use zeroize::Zeroizing;

use super::cbor::{self, Value};
use super::command::{payload, split_status, Fields, GetInfoResponse};
use super::device::{CancelToken, Device};
use super::pin::{self, KeyAgreementKey, PinProtocol, PinProtocolError, SharedSecret};
use super::status::StatusCode;
use super::transaction::KeepaliveStatus;
use super::transport::Transport;
use super::CtapError;

/// authenticatorClientPIN.
pub const CMD_CLIENT_PIN: u8 = 0x06;

/// clientPIN subcommands (§6.5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubCommand {
    /// 0x01 getPINRetries.
    GetPinRetries,
    /// 0x02 getKeyAgreement.
    GetKeyAgreement,
    /// 0x03 setPIN.
    SetPin,
    /// 0x04 changePIN.
    ChangePin,
    /// 0x05 getPinToken (CTAP 2.0; no permissions).
    GetPinToken,
    /// 0x06 getPinUvAuthTokenUsingUvWithPermissions.
    GetPinUvAuthTokenUsingUv,
    /// 0x07 getUVRetries.
    GetUvRetries,
    /// 0x09 getPinUvAuthTokenUsingPinWithPermissions.
    GetPinUvAuthTokenUsingPin,
}

impl SubCommand {
    /// The subcommand's number.
    pub fn number(self) -> u64 {
        match self {
            SubCommand::GetPinRetries => 0x01,
            SubCommand::GetKeyAgreement => 0x02,
            SubCommand::SetPin => 0x03,
            SubCommand::ChangePin => 0x04,
            SubCommand::GetPinToken => 0x05,
            SubCommand::GetPinUvAuthTokenUsingUv => 0x06,
            SubCommand::GetUvRetries => 0x07,
            SubCommand::GetPinUvAuthTokenUsingPin => 0x09,
        }
    }

    /// The subcommand numbered `n`.
    pub fn from_number(n: u64) -> Option<SubCommand> {
        Some(match n {
            0x01 => SubCommand::GetPinRetries,
            0x02 => SubCommand::GetKeyAgreement,
            0x03 => SubCommand::SetPin,
            0x04 => SubCommand::ChangePin,
            0x05 => SubCommand::GetPinToken,
            0x06 => SubCommand::GetPinUvAuthTokenUsingUv,
            0x07 => SubCommand::GetUvRetries,
            0x09 => SubCommand::GetPinUvAuthTokenUsingPin,
            _ => return None,
        })
    }
}

/// pinUvAuthToken permissions (§6.5.5.7).
pub mod permissions {
    /// makeCredential.
    pub const MAKE_CREDENTIAL: u64 = 0x01;
    /// getAssertion.
    pub const GET_ASSERTION: u64 = 0x02;
}

/// An authenticatorClientPIN request (§6.5.5). Absent fields are not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPinRequest {
    /// 0x01 pinUvAuthProtocol (absent only for getUVRetries... which sends it too; kept
    /// optional for what a peer may send the virtual key).
    pub protocol: Option<u64>,
    /// 0x02 subCommand.
    pub sub_command: u64,
    /// 0x03 keyAgreement: the platform's public key.
    pub key_agreement: Option<KeyAgreementKey>,
    /// 0x04 pinUvAuthParam.
    pub pin_uv_auth_param: Option<Vec<u8>>,
    /// 0x05 newPinEnc.
    pub new_pin_enc: Option<Vec<u8>>,
    /// 0x06 pinHashEnc.
    pub pin_hash_enc: Option<Vec<u8>>,
    /// 0x09 permissions.
    pub permissions: Option<u64>,
    /// 0x0A rpId.
    pub rp_id: Option<String>,
}

impl ClientPinRequest {
    /// A request for `sub` under `protocol`, with no other field.
    pub fn new(protocol: PinProtocol, sub: SubCommand) -> ClientPinRequest {
        ClientPinRequest {
            protocol: Some(protocol.number()),
            sub_command: sub.number(),
            key_agreement: None,
            pin_uv_auth_param: None,
            new_pin_enc: None,
            pin_hash_enc: None,
            permissions: None,
            rp_id: None,
        }
    }

    /// The CTAPHID_CBOR payload: 0x06 || canonical CBOR parameters.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut map = Vec::new();
        if let Some(p) = self.protocol {
            map.push((Value::int(1), Value::Unsigned(p)));
        }
        map.push((Value::int(2), Value::Unsigned(self.sub_command)));
        if let Some(k) = &self.key_agreement {
            map.push((Value::int(3), k.to_cbor()));
        }
        let bytes =
            |k: i64, v: &Option<Vec<u8>>| v.as_ref().map(|b| (Value::int(k), Value::bytes(b)));
        map.extend(bytes(4, &self.pin_uv_auth_param));
        map.extend(bytes(5, &self.new_pin_enc));
        map.extend(bytes(6, &self.pin_hash_enc));
        if let Some(p) = self.permissions {
            map.push((Value::int(9), Value::Unsigned(p)));
        }
        if let Some(r) = &self.rp_id {
            map.push((Value::int(0x0a), Value::text(r)));
        }
        payload(CMD_CLIENT_PIN, Value::Map(map))
    }
}

/// An authenticatorClientPIN response (§6.5.5). Fields are absent when the subcommand does
/// not return them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientPinResponse {
    /// 0x01 keyAgreement: the authenticator's public key.
    pub key_agreement: Option<KeyAgreementKey>,
    /// 0x02 pinUvAuthToken, encrypted under the shared secret.
    pub pin_uv_auth_token: Option<Vec<u8>>,
    /// 0x03 pinRetries.
    pub pin_retries: Option<u64>,
    /// 0x04 powerCycleState: the key must be re-plugged before the PIN can be tried again.
    pub power_cycle_state: Option<bool>,
    /// 0x05 uvRetries.
    pub uv_retries: Option<u64>,
}

impl ClientPinResponse {
    /// Decode the CBOR after the status byte (an empty body is an empty response: setPIN
    /// returns nothing).
    pub fn decode(body: &[u8]) -> Result<ClientPinResponse, CtapError> {
        if body.is_empty() {
            return Ok(ClientPinResponse::default());
        }
        let v = cbor::decode(body)?;
        let f = Fields::new(&v, "clientPIN")?;
        let key_agreement = f
            .opt_map(1, "keyAgreement")?
            .map(KeyAgreementKey::from_cbor)
            .transpose()
            .map_err(|e| CtapError::InvalidResponse(e.to_string()))?;
        Ok(ClientPinResponse {
            key_agreement,
            pin_uv_auth_token: f.opt_bytes(2, "pinUvAuthToken")?,
            pin_retries: f.opt_uint(3, "pinRetries")?,
            power_cycle_state: f.opt_bool(4, "powerCycleState")?,
            uv_retries: f.opt_uint(5, "uvRetries")?,
        })
    }

    /// The CBOR body (the virtual key's side).
    pub fn encode(&self) -> Vec<u8> {
        let mut map = Vec::new();
        if let Some(k) = &self.key_agreement {
            map.push((Value::int(1), k.to_cbor()));
        }
        if let Some(t) = &self.pin_uv_auth_token {
            map.push((Value::int(2), Value::bytes(t)));
        }
        if let Some(n) = self.pin_retries {
            map.push((Value::int(3), Value::Unsigned(n)));
        }
        if let Some(b) = self.power_cycle_state {
            map.push((Value::int(4), Value::Bool(b)));
        }
        if let Some(n) = self.uv_retries {
            map.push((Value::int(5), Value::Unsigned(n)));
        }
        if map.is_empty() {
            return Vec::new();
        }
        cbor::encode(&Value::Map(map))
    }
}

/// Why a PIN or built-in user verification did not give a token. Never holds the PIN.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PinError {
    /// CTAP2_ERR_PIN_INVALID.
    #[error("wrong PIN for the security key ({} left before the key blocks its PIN)", tries(*.retries))]
    WrongPin {
        /// Tries left, when the key told.
        retries: Option<u64>,
    },
    /// CTAP2_ERR_PIN_AUTH_BLOCKED: three wrong PINs in a row.
    #[error("the security key refuses PINs until it is unplugged and plugged in again (three wrong PINs in a row)")]
    AuthBlocked,
    /// CTAP2_ERR_PIN_BLOCKED: the retry counter reached zero.
    #[error("the security key's PIN is blocked after too many wrong PINs; only a reset of the key (which deletes its credentials) clears it")]
    PinBlocked,
    /// CTAP2_ERR_PIN_NOT_SET.
    #[error("the security key has no PIN set")]
    PinNotSet,
    /// CTAP2_ERR_PIN_POLICY_VIOLATION.
    #[error("the PIN does not meet the security key's policy (at least {} characters)", .min_length.unwrap_or(4))]
    PolicyViolation {
        /// getInfo minPINLength, when the key told.
        min_length: Option<u64>,
    },
    /// A PIN longer than 63 bytes (setPIN pads to 64 with at least one zero).
    #[error("the PIN is longer than 63 bytes")]
    TooLong,
    /// CTAP2_ERR_UV_BLOCKED.
    #[error("the security key's built-in user verification is blocked after too many failed tries; use its PIN")]
    UvBlocked,
    /// CTAP2_ERR_UV_INVALID.
    #[error("the security key did not recognise you ({} left)", tries(*.retries))]
    UvInvalid {
        /// Tries left, when the key told.
        retries: Option<u64>,
    },
    /// getInfo lists no PIN/UV auth protocol we implement.
    #[error("the security key offers no PIN/UV auth protocol this client implements (it lists {0:?}; we have 1 and 2)")]
    NoProtocol(Vec<u64>),
    /// The key answered without a field the subcommand must return.
    #[error("the security key's clientPIN answer has no {0}")]
    Missing(&'static str),
    /// Key agreement, encryption or the token's length failed.
    #[error(transparent)]
    Protocol(#[from] PinProtocolError),
    /// The key or the channel failed otherwise.
    #[error(transparent)]
    Ctap(#[from] CtapError),
}

fn tries(n: Option<u64>) -> String {
    match n {
        Some(1) => "1 try".to_owned(),
        Some(n) => format!("{n} tries"),
        None => "an unknown number of tries".to_owned(),
    }
}

/// A pinUvAuthToken, zeroized on drop. Only its MACs leave it.
pub struct PinUvAuthToken {
    protocol: PinProtocol,
    token: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for PinUvAuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinUvAuthToken")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl PinUvAuthToken {
    /// The protocol the token was made under (`pinUvAuthProtocol` of the request it signs).
    pub fn protocol(&self) -> PinProtocol {
        self.protocol
    }

    /// The `pinUvAuthParam` of a makeCredential or getAssertion: the MAC of the client data
    /// hash under the token.
    pub fn param(&self, client_data_hash: &[u8; 32]) -> Vec<u8> {
        self.protocol.authenticate(&self.token, client_data_hash)
    }

    /// The token in a clientPIN answer, decrypted with the shared secret.
    fn from_answer(
        protocol: PinProtocol,
        secret: &SharedSecret,
        answer: ClientPinResponse,
    ) -> Result<PinUvAuthToken, PinError> {
        let encrypted = answer
            .pin_uv_auth_token
            .ok_or(PinError::Missing("pinUvAuthToken"))?;
        PinUvAuthToken::decrypt(protocol, secret, &encrypted)
    }

    fn decrypt(
        protocol: PinProtocol,
        secret: &SharedSecret,
        encrypted: &[u8],
    ) -> Result<PinUvAuthToken, PinError> {
        let token = protocol.decrypt(secret, encrypted)?;
        // One: 16 or 32 bytes (CTAP 2.0 keys vary); Two: 32 bytes (§6.5.7).
        let ok = match protocol {
            PinProtocol::One => matches!(token.len(), 16 | 32),
            PinProtocol::Two => token.len() == 32,
        };
        if !ok {
            return Err(PinProtocolError::KeyLength {
                protocol: protocol.number(),
                len: token.len(),
            }
            .into());
        }
        Ok(PinUvAuthToken { protocol, token })
    }
}

/// The typed refusal for a clientPIN status; anything else stays a [`CtapError`].
fn pin_error(e: CtapError, min_length: Option<u64>) -> PinError {
    match e {
        CtapError::Status(StatusCode::PinInvalid) => PinError::WrongPin { retries: None },
        CtapError::Status(StatusCode::PinAuthBlocked) => PinError::AuthBlocked,
        CtapError::Status(StatusCode::PinBlocked) => PinError::PinBlocked,
        CtapError::Status(StatusCode::PinNotSet) => PinError::PinNotSet,
        CtapError::Status(StatusCode::PinPolicyViolation) => {
            PinError::PolicyViolation { min_length }
        }
        CtapError::Status(StatusCode::UvBlocked) => PinError::UvBlocked,
        CtapError::Status(StatusCode::UvInvalid) => PinError::UvInvalid { retries: None },
        other => PinError::Ctap(other),
    }
}

/// The protocol to use with the key described by `info`.
pub fn protocol_for(info: &GetInfoResponse) -> Result<PinProtocol, PinError> {
    PinProtocol::choose(&info.pin_uv_auth_protocols)
        .ok_or_else(|| PinError::NoProtocol(info.pin_uv_auth_protocols.clone()))
}

impl<T: Transport> Device<T> {
    /// One clientPIN exchange.
    pub fn client_pin(
        &mut self,
        request: &ClientPinRequest,
        on_keepalive: &mut dyn FnMut(KeepaliveStatus),
        cancel: Option<&CancelToken>,
    ) -> Result<ClientPinResponse, CtapError> {
        let resp = self.cbor(&request.to_payload(), on_keepalive, cancel)?;
        ClientPinResponse::decode(split_status(&resp)?)
    }

    fn client_pin_quiet(
        &mut self,
        request: &ClientPinRequest,
    ) -> Result<ClientPinResponse, CtapError> {
        self.client_pin(request, &mut |_| {}, None)
    }

    /// getPINRetries: tries left, and whether the key must be re-plugged first.
    pub fn pin_retries(&mut self, protocol: PinProtocol) -> Result<(u64, bool), PinError> {
        let r =
            self.client_pin_quiet(&ClientPinRequest::new(protocol, SubCommand::GetPinRetries))?;
        let n = r.pin_retries.ok_or(PinError::Missing("pinRetries"))?;
        Ok((n, r.power_cycle_state.unwrap_or(false)))
    }

    /// getUVRetries: built-in user verification tries left.
    pub fn uv_retries(&mut self, protocol: PinProtocol) -> Result<u64, PinError> {
        let r =
            self.client_pin_quiet(&ClientPinRequest::new(protocol, SubCommand::GetUvRetries))?;
        r.uv_retries.ok_or(PinError::Missing("uvRetries"))
    }

    /// getKeyAgreement, then our half: our public key and the shared secret.
    pub fn key_agreement(
        &mut self,
        protocol: PinProtocol,
    ) -> Result<(KeyAgreementKey, SharedSecret), PinError> {
        let r = self.client_pin_quiet(&ClientPinRequest::new(
            protocol,
            SubCommand::GetKeyAgreement,
        ))?;
        let theirs = r.key_agreement.ok_or(PinError::Missing("keyAgreement"))?;
        Ok(protocol.encapsulate(&theirs))
    }

    /// A pinUvAuthToken from `pin`: with `permissions` bound to `rp_id` on keys that list
    /// `pinUvAuthToken` in getInfo, through getPinToken on the others (CTAP 2.0 keys). A wrong
    /// PIN reports the tries left.
    pub fn pin_token(
        &mut self,
        info: &GetInfoResponse,
        pin: &[u8],
        permissions: u64,
        rp_id: &str,
    ) -> Result<PinUvAuthToken, PinError> {
        let protocol = protocol_for(info)?;
        let (ours, secret) = self.key_agreement(protocol)?;
        let hash = pin::pin_hash(pin);
        let mut request = if info.option("pinUvAuthToken") == Some(true) {
            ClientPinRequest {
                permissions: Some(permissions),
                rp_id: Some(rp_id.to_owned()),
                ..ClientPinRequest::new(protocol, SubCommand::GetPinUvAuthTokenUsingPin)
            }
        } else {
            ClientPinRequest::new(protocol, SubCommand::GetPinToken)
        };
        request.key_agreement = Some(ours);
        request.pin_hash_enc = Some(protocol.encrypt(&secret, &hash[..])?);
        match self.client_pin_quiet(&request) {
            Ok(r) => PinUvAuthToken::from_answer(protocol, &secret, r),
            Err(e) => Err(match pin_error(e, info.min_pin_length) {
                PinError::WrongPin { .. } => PinError::WrongPin {
                    retries: self.pin_retries(protocol).ok().map(|(n, _)| n),
                },
                other => other,
            }),
        }
    }

    /// A pinUvAuthToken from the key's built-in user verification (a fingerprint), bound to
    /// `rp_id`. The key waits for the finger as it waits for a touch.
    pub fn uv_token(
        &mut self,
        info: &GetInfoResponse,
        permissions: u64,
        rp_id: &str,
        on_keepalive: &mut dyn FnMut(KeepaliveStatus),
        cancel: Option<&CancelToken>,
    ) -> Result<PinUvAuthToken, PinError> {
        let protocol = protocol_for(info)?;
        let (ours, secret) = self.key_agreement(protocol)?;
        let request = ClientPinRequest {
            key_agreement: Some(ours),
            permissions: Some(permissions),
            rp_id: Some(rp_id.to_owned()),
            ..ClientPinRequest::new(protocol, SubCommand::GetPinUvAuthTokenUsingUv)
        };
        match self.client_pin(&request, on_keepalive, cancel) {
            Ok(r) => PinUvAuthToken::from_answer(protocol, &secret, r),
            Err(e) => Err(match pin_error(e, info.min_pin_length) {
                PinError::UvInvalid { .. } => PinError::UvInvalid {
                    retries: self.uv_retries(protocol).ok(),
                },
                other => other,
            }),
        }
    }

    /// setPIN on a key that has none.
    pub fn set_pin(&mut self, info: &GetInfoResponse, new_pin: &[u8]) -> Result<(), PinError> {
        let protocol = protocol_for(info)?;
        let padded = pin::padded_pin(new_pin).ok_or(PinError::TooLong)?;
        let (ours, secret) = self.key_agreement(protocol)?;
        let new_pin_enc = protocol.encrypt(&secret, &padded[..])?;
        let request = ClientPinRequest {
            key_agreement: Some(ours),
            pin_uv_auth_param: Some(protocol.authenticate(secret.as_bytes(), &new_pin_enc)),
            new_pin_enc: Some(new_pin_enc),
            ..ClientPinRequest::new(protocol, SubCommand::SetPin)
        };
        self.client_pin_quiet(&request)
            .map(|_| ())
            .map_err(|e| pin_error(e, info.min_pin_length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_encode_canonically_with_only_the_fields_given() {
        let r = ClientPinRequest::new(PinProtocol::Two, SubCommand::GetPinRetries);
        assert_eq!(r.to_payload(), [0x06, 0xa2, 0x01, 0x02, 0x02, 0x01]);
        let r = ClientPinRequest {
            permissions: Some(permissions::GET_ASSERTION),
            rp_id: Some("auths:presence".into()),
            pin_hash_enc: Some(vec![0; 16]),
            ..ClientPinRequest::new(PinProtocol::One, SubCommand::GetPinUvAuthTokenUsingPin)
        };
        let p = r.to_payload();
        let v = cbor::decode(&p[1..]).unwrap();
        assert_eq!(v.get_int(2).and_then(Value::as_u64), Some(9));
        assert_eq!(v.get_int(9).and_then(Value::as_u64), Some(2));
        assert_eq!(
            v.get_int(0x0a).and_then(Value::as_text),
            Some("auths:presence")
        );
        assert_eq!(v.as_map().unwrap().len(), 5);
    }

    #[test]
    fn responses_decode_strictly() {
        // libfido2's getRetries wire data: {3: 8}.
        let r = ClientPinResponse::decode(&[0xa1, 0x03, 0x08]).unwrap();
        assert_eq!(r.pin_retries, Some(8));
        assert_eq!(
            ClientPinResponse::decode(&[]).unwrap(),
            ClientPinResponse::default()
        );
        assert!(
            ClientPinResponse::decode(&[0xa1, 0x03, 0x20]).is_err(),
            "negative retries"
        );
        assert!(
            ClientPinResponse::decode(&[0xa1, 0x01, 0x01]).is_err(),
            "key agreement not a map"
        );
        let full = ClientPinResponse {
            key_agreement: Some(KeyAgreementKey::of(&p256::SecretKey::random(
                &mut rand::rngs::OsRng,
            ))),
            pin_uv_auth_token: Some(vec![1; 48]),
            pin_retries: Some(3),
            power_cycle_state: Some(true),
            uv_retries: Some(2),
        };
        assert_eq!(ClientPinResponse::decode(&full.encode()).unwrap(), full);
    }

    #[test]
    fn refusals_are_typed_and_never_name_the_pin() {
        let e = pin_error(CtapError::Status(StatusCode::PinBlocked), None);
        assert!(matches!(e, PinError::PinBlocked));
        let e = PinError::WrongPin { retries: Some(1) };
        assert_eq!(
            e.to_string(),
            "wrong PIN for the security key (1 try left before the key blocks its PIN)"
        );
        assert!(matches!(
            pin_error(CtapError::Status(StatusCode::PinPolicyViolation), Some(6)),
            PinError::PolicyViolation {
                min_length: Some(6)
            }
        ));
        assert!(matches!(
            pin_error(CtapError::Status(StatusCode::NoCredentials), None),
            PinError::Ctap(_)
        ));
    }
}
