//! The virtual key's authenticatorClientPIN (CTAP 2.1 §6.5.5), when it is started with PIN
//! support: getPINRetries, getKeyAgreement, setPIN, getPinToken and
//! getPinUvAuthTokenUsingPinWithPermissions, and the check of a pinUvAuthParam on
//! makeCredential and getAssertion (§6.1.2 step 11, §6.2.2 step 9).
//!
//! Its PIN logic follows §6.5.5: 8 retries, decremented before the PIN is compared; three wrong
//! PINs in a row block PIN use until a power cycle (the key agreement key and the token are
//! regenerated on every power cycle and after every wrong PIN); a retry counter at zero blocks
//! the PIN for good (only a reset clears it). The PIN itself is never kept: only
//! LEFT(SHA-256(PIN), 16), as the spec stores it.

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::ctap::cbor::Value;
use crate::ctap::client_pin::{permissions, ClientPinResponse, SubCommand};
use crate::ctap::pin::{self, KeyAgreementKey, PinProtocol, SharedSecret};
use crate::ctap::status::StatusCode;

type CtapResult<T> = Result<T, StatusCode>;

/// PIN retries of a fresh or just-verified PIN (§6.5.5: maximum 8).
pub const MAX_PIN_RETRIES: u8 = 8;
/// Wrong PINs in a row before PIN use is blocked until a power cycle.
const MAX_CONSECUTIVE_WRONG: u8 = 3;
/// Shortest PIN accepted (getInfo minPINLength, the spec's default).
pub const MIN_PIN_LENGTH: usize = 4;

/// How the virtual key behaves about PINs.
#[derive(Clone, PartialEq, Eq)]
pub struct PinConfig {
    /// PIN/UV auth protocols offered, in order of preference.
    pub protocols: Vec<PinProtocol>,
    /// A PIN set from the start (`auths sim serve --pin`), else none until setPIN.
    pub pin: Option<Zeroizing<Vec<u8>>>,
    /// alwaysUv (YubiKey Bio, FIPS keys, `ykman fido config toggle-always-uv`): every
    /// makeCredential and getAssertion needs a pinUvAuthParam (CTAP2_ERR_PUAT_REQUIRED).
    pub always_uv: bool,
    /// Behave as a CTAP 2.0 key (YubiKey 5 before firmware 5.4): versions FIDO_2_0 only, no
    /// pinUvAuthToken (getPinToken only, no permissions), no makeCredUvNotRqd: once a PIN is
    /// set, makeCredential needs it (CTAP2_ERR_PIN_REQUIRED).
    pub ctap_2_0: bool,
    /// Built-in user verification (a fingerprint, like a YubiKey Bio's): getInfo `uv: true`,
    /// getPinUvAuthTokenUsingUvWithPermissions and getUVRetries. The virtual finger is the
    /// touch: the token comes once the virtual user touched.
    pub builtin_uv: bool,
}

impl std::fmt::Debug for PinConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinConfig")
            .field("protocols", &self.protocols)
            .field("pin_set", &self.pin.is_some())
            .field("always_uv", &self.always_uv)
            .field("ctap_2_0", &self.ctap_2_0)
            .field("builtin_uv", &self.builtin_uv)
            .finish()
    }
}

impl Default for PinConfig {
    fn default() -> Self {
        PinConfig {
            protocols: vec![PinProtocol::Two, PinProtocol::One],
            pin: None,
            always_uv: false,
            ctap_2_0: false,
            builtin_uv: false,
        }
    }
}

/// The clientPIN state: the PIN hash and retries, and the per-power-cycle key agreement key
/// and token.
pub(super) struct PinState {
    config: PinConfig,
    pin_hash: Option<Zeroizing<[u8; 16]>>,
    retries: u8,
    consecutive_wrong: u8,
    key_agreement: p256::SecretKey,
    token: Zeroizing<[u8; 32]>,
    /// Whether a token was handed out since the last power cycle / regeneration.
    token_valid: bool,
    token_permissions: u64,
    token_rp_id: Option<String>,
}

fn fresh_token() -> Zeroizing<[u8; 32]> {
    let mut t = Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut t[..]);
    t
}

/// The permissions (0x09) and rp id (0x0A) of a token request with permissions: mc and ga are
/// the only permissions this key has (others are unauthorized), and both need an rp id
/// (§6.5.5.7.2 step 5).
fn permissions_and_rp_id(field: &dyn Fn(u64) -> Option<Value>) -> CtapResult<(u64, String)> {
    let perms = field(9).ok_or(StatusCode::MissingParameter)?;
    let perms = perms.as_u64().ok_or(StatusCode::CborUnexpectedType)?;
    if perms == 0 {
        return Err(StatusCode::InvalidParameter);
    }
    if perms & !(permissions::MAKE_CREDENTIAL | permissions::GET_ASSERTION) != 0 {
        return Err(StatusCode::UnauthorizedPermission);
    }
    let rp_id = field(0x0a)
        .ok_or(StatusCode::MissingParameter)?
        .as_text()
        .ok_or(StatusCode::CborUnexpectedType)?
        .to_owned();
    Ok((perms, rp_id))
}

/// Built-in UV retries (the virtual finger never fails).
const MAX_UV_RETRIES: u8 = 8;

/// A getPinUvAuthTokenUsingUvWithPermissions waiting for the finger.
pub(super) struct UvTokenRequest {
    protocol: PinProtocol,
    secret: SharedSecret,
    permissions: u64,
    rp_id: String,
}

/// What a request's pinUvAuthParam proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verified {
    /// No pinUvAuthParam was sent.
    Nothing,
    /// A valid token MAC: the UV flag is set.
    UserVerified,
}

impl PinState {
    pub(super) fn new(config: PinConfig) -> PinState {
        let pin_hash = config.pin.as_ref().map(|p| pin::pin_hash(p));
        PinState {
            config,
            pin_hash,
            retries: MAX_PIN_RETRIES,
            consecutive_wrong: 0,
            key_agreement: p256::SecretKey::random(&mut rand::rngs::OsRng),
            token: fresh_token(),
            token_valid: false,
            token_permissions: 0,
            token_rp_id: None,
        }
    }

    /// Whether a PIN is set (getInfo `clientPin`).
    pub(super) fn is_set(&self) -> bool {
        self.pin_hash.is_some()
    }

    /// How the key was configured.
    pub(super) fn config(&self) -> &PinConfig {
        &self.config
    }

    /// Whether a request without pinUvAuthParam is refused with CTAP2_ERR_PUAT_REQUIRED
    /// (CTAP2_ERR_PIN_REQUIRED in CTAP 2.0, the same byte): always under alwaysUv, and for
    /// makeCredential on a CTAP 2.0 key with a PIN set (§6.1.2 step 6 and CTAP 2.0 §5.1).
    pub(super) fn needs_pin_uv_auth(&self, permission: u64) -> bool {
        self.config.always_uv
            || (permission == permissions::MAKE_CREDENTIAL && self.config.ctap_2_0 && self.is_set())
    }

    /// The protocols' numbers for getInfo.
    pub(super) fn protocol_numbers(&self) -> Vec<Value> {
        self.config
            .protocols
            .iter()
            .map(|p| Value::Unsigned(p.number()))
            .collect()
    }

    /// A power cycle (re-plug): new key agreement key and token, PIN use unblocked.
    pub(super) fn power_cycle(&mut self) {
        self.key_agreement = p256::SecretKey::random(&mut rand::rngs::OsRng);
        self.token = fresh_token();
        self.token_valid = false;
        self.consecutive_wrong = 0;
    }

    /// authenticatorReset: no PIN.
    pub(super) fn reset(&mut self) {
        self.pin_hash = None;
        self.retries = MAX_PIN_RETRIES;
        self.power_cycle();
    }

    fn protocol(&self, v: Option<&Value>) -> CtapResult<PinProtocol> {
        let n = v.ok_or(StatusCode::MissingParameter)?;
        let n = n.as_u64().ok_or(StatusCode::CborUnexpectedType)?;
        PinProtocol::from_number(n)
            .filter(|p| self.config.protocols.contains(p))
            .ok_or(StatusCode::InvalidParameter)
    }

    /// The shared secret of an hmac-secret request: the platform's key agreement key against
    /// this power cycle's, for a protocol this key offers.
    pub(super) fn hmac_secret_shared(
        &self,
        protocol: PinProtocol,
        platform_key: Option<&Value>,
    ) -> CtapResult<SharedSecret> {
        if !self.config.protocols.contains(&protocol) {
            return Err(StatusCode::InvalidParameter);
        }
        self.shared_secret(protocol, platform_key)
    }

    fn shared_secret(&self, protocol: PinProtocol, v: Option<&Value>) -> CtapResult<SharedSecret> {
        let peer = v.ok_or(StatusCode::MissingParameter)?;
        let peer = KeyAgreementKey::from_cbor(peer).map_err(|_| StatusCode::InvalidParameter)?;
        Ok(protocol.decapsulate(&self.key_agreement, &peer))
    }

    /// One clientPIN request: `field(k)` is parameter `k` of the request map.
    pub(super) fn command(
        &mut self,
        field: &dyn Fn(u64) -> Option<Value>,
    ) -> CtapResult<ClientPinResponse> {
        let sub = field(2).ok_or(StatusCode::MissingParameter)?;
        let sub = sub.as_u64().ok_or(StatusCode::CborUnexpectedType)?;
        let sub = SubCommand::from_number(sub).ok_or(StatusCode::InvalidSubcommand)?;
        match sub {
            SubCommand::GetPinRetries => Ok(ClientPinResponse {
                pin_retries: Some(u64::from(self.retries)),
                // powerCycleState is CTAP 2.1.
                power_cycle_state: (!self.config.ctap_2_0)
                    .then_some(self.consecutive_wrong >= MAX_CONSECUTIVE_WRONG),
                ..ClientPinResponse::default()
            }),
            SubCommand::GetKeyAgreement => {
                self.protocol(field(1).as_ref())?;
                Ok(ClientPinResponse {
                    key_agreement: Some(KeyAgreementKey::of(&self.key_agreement)),
                    ..ClientPinResponse::default()
                })
            }
            SubCommand::SetPin => self.set_pin(field),
            SubCommand::GetPinToken => {
                if field(9).is_some() || field(0x0a).is_some() {
                    return Err(StatusCode::InvalidParameter);
                }
                self.token_from_pin(
                    field,
                    permissions::MAKE_CREDENTIAL | permissions::GET_ASSERTION,
                    None,
                )
            }
            SubCommand::GetPinUvAuthTokenUsingPin if self.config.ctap_2_0 => {
                Err(StatusCode::InvalidSubcommand)
            }
            SubCommand::GetPinUvAuthTokenUsingPin => {
                let (perms, rp_id) = permissions_and_rp_id(field)?;
                self.token_from_pin(field, perms, Some(rp_id))
            }
            SubCommand::GetUvRetries if self.config.builtin_uv => Ok(ClientPinResponse {
                uv_retries: Some(u64::from(MAX_UV_RETRIES)),
                ..ClientPinResponse::default()
            }),
            // GetPinUvAuthTokenUsingUv waits for the finger: `Authenticator::client_pin` takes
            // it through `uv_token_request` and `uv_token`.
            SubCommand::ChangePin
            | SubCommand::GetPinUvAuthTokenUsingUv
            | SubCommand::GetUvRetries => Err(StatusCode::InvalidSubcommand),
        }
    }

    /// The first half of getPinUvAuthTokenUsingUvWithPermissions: check the request and agree
    /// on the secret; the token is issued by [`PinState::uv_token`] after the finger.
    pub(super) fn uv_token_request(
        &self,
        field: &dyn Fn(u64) -> Option<Value>,
    ) -> CtapResult<UvTokenRequest> {
        if !self.config.builtin_uv || self.config.ctap_2_0 {
            return Err(StatusCode::InvalidSubcommand);
        }
        let protocol = self.protocol(field(1).as_ref())?;
        let (perms, rp_id) = permissions_and_rp_id(field)?;
        let secret = self.shared_secret(protocol, field(3).as_ref())?;
        Ok(UvTokenRequest {
            protocol,
            secret,
            permissions: perms,
            rp_id,
        })
    }

    /// The finger was recognised: a new token with the request's permissions, encrypted.
    pub(super) fn uv_token(&mut self, req: UvTokenRequest) -> CtapResult<ClientPinResponse> {
        self.token = fresh_token();
        self.token_valid = true;
        self.token_permissions = req.permissions;
        self.token_rp_id = Some(req.rp_id);
        let enc = req
            .protocol
            .encrypt(&req.secret, &self.token[..])
            .map_err(|_| StatusCode::Other)?;
        Ok(ClientPinResponse {
            pin_uv_auth_token: Some(enc),
            ..ClientPinResponse::default()
        })
    }

    fn set_pin(&mut self, field: &dyn Fn(u64) -> Option<Value>) -> CtapResult<ClientPinResponse> {
        let protocol = self.protocol(field(1).as_ref())?;
        let new_pin_enc = field(5).ok_or(StatusCode::MissingParameter)?;
        let new_pin_enc = new_pin_enc
            .as_bytes()
            .ok_or(StatusCode::CborUnexpectedType)?;
        let param = field(4).ok_or(StatusCode::MissingParameter)?;
        let param = param.as_bytes().ok_or(StatusCode::CborUnexpectedType)?;
        let secret = self.shared_secret(protocol, field(3).as_ref())?;
        if self.pin_hash.is_some() {
            return Err(StatusCode::PinAuthInvalid);
        }
        if !protocol.verify(secret.as_bytes(), new_pin_enc, param) {
            return Err(StatusCode::PinAuthInvalid);
        }
        let padded = protocol
            .decrypt(&secret, new_pin_enc)
            .map_err(|_| StatusCode::PinPolicyViolation)?;
        if padded.len() != 64 {
            return Err(StatusCode::PinPolicyViolation);
        }
        let len = padded.iter().position(|b| *b == 0).unwrap_or(64);
        if len < MIN_PIN_LENGTH || len == 64 {
            return Err(StatusCode::PinPolicyViolation);
        }
        self.pin_hash = Some(pin::pin_hash(&padded[..len]));
        self.retries = MAX_PIN_RETRIES;
        Ok(ClientPinResponse::default())
    }

    fn token_from_pin(
        &mut self,
        field: &dyn Fn(u64) -> Option<Value>,
        perms: u64,
        rp_id: Option<String>,
    ) -> CtapResult<ClientPinResponse> {
        let protocol = self.protocol(field(1).as_ref())?;
        let pin_hash_enc = field(6).ok_or(StatusCode::MissingParameter)?;
        let pin_hash_enc = pin_hash_enc
            .as_bytes()
            .ok_or(StatusCode::CborUnexpectedType)?
            .to_vec();
        let secret = self.shared_secret(protocol, field(3).as_ref())?;
        let Some(stored) = self.pin_hash.clone() else {
            return Err(StatusCode::PinNotSet);
        };
        if self.retries == 0 {
            return Err(StatusCode::PinBlocked);
        }
        if self.consecutive_wrong >= MAX_CONSECUTIVE_WRONG {
            return Err(StatusCode::PinAuthBlocked);
        }
        self.retries -= 1;
        let sent = protocol
            .decrypt(&secret, &pin_hash_enc)
            .map_err(|_| StatusCode::InvalidParameter)?;
        if sent.len() != 16 || !bool::from(sent[..].ct_eq(&stored[..])) {
            // A new key agreement key after every wrong PIN (§6.5.5.7.1 step 8).
            self.key_agreement = p256::SecretKey::random(&mut rand::rngs::OsRng);
            self.consecutive_wrong += 1;
            return Err(if self.retries == 0 {
                StatusCode::PinBlocked
            } else if self.consecutive_wrong >= MAX_CONSECUTIVE_WRONG {
                StatusCode::PinAuthBlocked
            } else {
                StatusCode::PinInvalid
            });
        }
        self.retries = MAX_PIN_RETRIES;
        self.consecutive_wrong = 0;
        self.token = fresh_token();
        self.token_valid = true;
        self.token_permissions = perms;
        self.token_rp_id = rp_id;
        let enc = protocol
            .encrypt(&secret, &self.token[..])
            .map_err(|_| StatusCode::Other)?;
        Ok(ClientPinResponse {
            pin_uv_auth_token: Some(enc),
            ..ClientPinResponse::default()
        })
    }

    /// Check the pinUvAuthParam (`param`) and pinUvAuthProtocol (`protocol`) of a
    /// makeCredential (`permission` mc) or getAssertion (ga) for `rp_id` over
    /// `client_data_hash`.
    pub(super) fn check_request(
        &mut self,
        param: Option<&Value>,
        protocol: Option<&Value>,
        permission: u64,
        rp_id: &str,
        client_data_hash: &[u8],
    ) -> CtapResult<Verified> {
        let Some(param) = param else {
            if let Some(p) = protocol {
                p.as_u64().ok_or(StatusCode::CborUnexpectedType)?;
            }
            if self.needs_pin_uv_auth(permission) {
                return Err(StatusCode::PuatRequired);
            }
            return Ok(Verified::Nothing);
        };
        let param = param.as_bytes().ok_or(StatusCode::CborUnexpectedType)?;
        let protocol = self.protocol(protocol)?;
        if self.pin_hash.is_none() && !self.config.builtin_uv {
            return Err(StatusCode::PinNotSet);
        }
        if !self.token_valid || !protocol.verify(&self.token[..], client_data_hash, param) {
            return Err(StatusCode::PinAuthInvalid);
        }
        if self.token_permissions & permission == 0 {
            return Err(StatusCode::PinAuthInvalid);
        }
        match &self.token_rp_id {
            Some(bound) if bound != rp_id => return Err(StatusCode::PinAuthInvalid),
            Some(_) => {}
            // A token without an rp id (getPinToken) is bound to the first one it is used for.
            None => self.token_rp_id = Some(rp_id.to_owned()),
        }
        Ok(Verified::UserVerified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctap::client_pin::ClientPinRequest;
    use crate::ctap::virtual_key::{Authenticator, KeyState, Step};

    /// Send `req` to `a`; the status byte and the decoded answer.
    fn send(a: &mut Authenticator, req: &ClientPinRequest) -> (u8, ClientPinResponse) {
        let Step::Done(resp) = a.begin(&req.to_payload()) else {
            panic!("clientPIN never waits for a touch")
        };
        let r = ClientPinResponse::decode(&resp[1..]).unwrap_or_default();
        (resp[0], r)
    }

    fn shared(a: &mut Authenticator, p: PinProtocol) -> (KeyAgreementKey, SharedSecret) {
        let (_, r) = send(a, &ClientPinRequest::new(p, SubCommand::GetKeyAgreement));
        p.encapsulate(&r.key_agreement.unwrap())
    }

    fn set_pin(a: &mut Authenticator, p: PinProtocol, pin: &[u8]) -> u8 {
        let (ours, secret) = shared(a, p);
        let enc = p
            .encrypt(&secret, &pin::padded_pin(pin).unwrap()[..])
            .unwrap();
        let req = ClientPinRequest {
            key_agreement: Some(ours),
            pin_uv_auth_param: Some(p.authenticate(secret.as_bytes(), &enc)),
            new_pin_enc: Some(enc),
            ..ClientPinRequest::new(p, SubCommand::SetPin)
        };
        send(a, &req).0
    }

    fn try_pin(a: &mut Authenticator, p: PinProtocol, pin: &[u8]) -> u8 {
        let (ours, secret) = shared(a, p);
        let req = ClientPinRequest {
            key_agreement: Some(ours),
            pin_hash_enc: Some(p.encrypt(&secret, &pin::pin_hash(pin)[..]).unwrap()),
            ..ClientPinRequest::new(p, SubCommand::GetPinToken)
        };
        send(a, &req).0
    }

    fn retries(a: &mut Authenticator) -> u64 {
        let req = ClientPinRequest::new(PinProtocol::One, SubCommand::GetPinRetries);
        send(a, &req).1.pin_retries.unwrap()
    }

    #[test]
    fn eight_wrong_pins_block_it_for_good_and_a_replug_only_unblocks_auth() {
        let p = PinProtocol::One;
        let mut a = Authenticator::new(KeyState::in_memory()).with_pin_support(PinConfig {
            protocols: vec![p],
            ..PinConfig::default()
        });
        assert_eq!(set_pin(&mut a, p, b"2468"), 0);
        let invalid = StatusCode::PinInvalid.byte();
        let auth_blocked = StatusCode::PinAuthBlocked.byte();
        let blocked = StatusCode::PinBlocked.byte();
        let mut seen = Vec::new();
        for _ in 0..3 {
            for _ in 0..3 {
                seen.push(try_pin(&mut a, p, b"0000"));
            }
            a.power_cycle();
        }
        // 2 invalid then auth-blocked, twice; then invalid, invalid and the eighth wrong PIN
        // blocks it: retries 8 -> 0 after eight wrong PINs, the ninth try is refused outright.
        assert_eq!(
            seen,
            [
                invalid,
                invalid,
                auth_blocked,
                invalid,
                invalid,
                auth_blocked,
                invalid,
                blocked,
                blocked
            ]
        );
        assert_eq!(retries(&mut a), 0);
        assert_eq!(try_pin(&mut a, p, b"2468"), blocked, "even the right PIN");
    }

    #[test]
    fn a_right_pin_restores_the_retries_and_malformed_requests_are_refused() {
        let p = PinProtocol::Two;
        let mut a =
            Authenticator::new(KeyState::in_memory()).with_pin_support(PinConfig::default());
        assert_eq!(set_pin(&mut a, p, b"2468"), 0);
        assert_eq!(try_pin(&mut a, p, b"1111"), StatusCode::PinInvalid.byte());
        assert_eq!(retries(&mut a), 7);
        assert_eq!(try_pin(&mut a, p, b"2468"), 0);
        assert_eq!(retries(&mut a), 8);
        // Unknown subcommand, protocol 3, a missing key agreement, non-canonical CBOR.
        let mut bad = ClientPinRequest::new(p, SubCommand::GetPinToken);
        bad.sub_command = 0x42;
        assert_eq!(send(&mut a, &bad).0, StatusCode::InvalidSubcommand.byte());
        let mut bad = ClientPinRequest::new(p, SubCommand::GetKeyAgreement);
        bad.protocol = Some(3);
        assert_eq!(send(&mut a, &bad).0, StatusCode::InvalidParameter.byte());
        let bad = ClientPinRequest::new(p, SubCommand::GetPinToken);
        assert_eq!(send(&mut a, &bad).0, StatusCode::MissingParameter.byte());
        let Step::Done(r) = a.begin(&[0x06, 0xa1, 0x02, 0x18, 0x01]) else {
            unreachable!()
        };
        assert_eq!(r, [StatusCode::InvalidCbor.byte()]);
        // A key without PIN support knows no clientPIN command.
        let mut plain = Authenticator::new(KeyState::in_memory());
        let Step::Done(r) =
            plain.begin(&ClientPinRequest::new(p, SubCommand::GetPinRetries).to_payload())
        else {
            unreachable!()
        };
        assert_eq!(r, [StatusCode::InvalidCommand.byte()]);
    }
}
