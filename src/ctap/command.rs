//! CTAP2 requests and responses (CTAP 2.1 §6 "Authenticator API").
//!
//! - authenticatorMakeCredential 0x01 (§6.1), authenticatorGetAssertion 0x02 (§6.2),
//!   authenticatorGetInfo 0x04 (§6.4), authenticatorReset 0x07 (§6.6, only the virtual key
//!   answers it), authenticatorSelection 0x0B (§6.9). The command bytes are defined here once,
//!   for the client and the virtual key alike.
//! - Requests are the full CTAPHID_CBOR payload: the command byte, then the parameters map in
//!   CTAP2 canonical CBOR (§8 "Message Encoding").
//! - Responses: [`split_status`] takes the status byte (§8.2); the decoders take the CBOR after
//!   it, refuse non-canonical CBOR ([`CtapError::Cbor`]) and wrong types or missing fields
//!   ([`CtapError::InvalidResponse`]), and ignore unknown keys (§6: "unknown keys ... MUST be
//!   ignored" for forward compatibility).
//!
//! Pure functions: no I/O.

use super::authdata::AuthenticatorData;
use super::cbor::{self, Value};
use super::cose::{ALG_EDDSA, ALG_ES256};
use super::error::CtapError;
use super::status::StatusCode;

/// authenticatorMakeCredential.
pub const CMD_MAKE_CREDENTIAL: u8 = 0x01;
/// authenticatorGetAssertion.
pub const CMD_GET_ASSERTION: u8 = 0x02;
/// authenticatorGetInfo.
pub const CMD_GET_INFO: u8 = 0x04;
/// authenticatorReset (§6.6).
pub const CMD_RESET: u8 = 0x07;
/// authenticatorSelection.
pub const CMD_SELECTION: u8 = 0x0b;

/// The only credential type WebAuthn defines.
pub const PUBLIC_KEY: &str = "public-key";

/// A credential algorithm this client can offer and verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256, COSE -7.
    Es256,
    /// Ed25519, COSE -8.
    EdDsa,
}

impl Algorithm {
    /// The COSE algorithm id.
    pub fn cose_id(self) -> i64 {
        match self {
            Algorithm::Es256 => ALG_ES256,
            Algorithm::EdDsa => ALG_EDDSA,
        }
    }

    /// The algorithm of a COSE id, if it is one of ours.
    pub fn from_cose_id(alg: i64) -> Option<Algorithm> {
        match alg {
            ALG_ES256 => Some(Algorithm::Es256),
            ALG_EDDSA => Some(Algorithm::EdDsa),
            _ => None,
        }
    }
}

/// PublicKeyCredentialRpEntity (WebAuthn §5.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelyingParty<'a> {
    /// The rp id, e.g. `auths:presence`.
    pub id: &'a str,
    /// A display name; omitted when `None`.
    pub name: Option<&'a str>,
}

/// PublicKeyCredentialUserEntity (WebAuthn §5.4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserEntity<'a> {
    /// The user handle (at most 64 bytes).
    pub id: &'a [u8],
    /// Account name; omitted when `None`.
    pub name: Option<&'a str>,
    /// Display name; omitted when `None`.
    pub display_name: Option<&'a str>,
}

/// authenticatorMakeCredential parameters (CTAP 2.1 §6.1). Non-discoverable (`rk: false`);
/// `up` is implied and therefore not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MakeCredentialRequest<'a> {
    /// SHA-256 of the client data.
    pub client_data_hash: [u8; 32],
    /// The relying party.
    pub rp: RelyingParty<'a>,
    /// The user.
    pub user: UserEntity<'a>,
    /// Algorithms to offer, most preferred first. Duplicates are sent once; an empty list
    /// offers ES256 then EdDSA.
    pub algorithms: &'a [Algorithm],
    /// Credential ids the key must not create a second credential beside.
    pub exclude_list: &'a [&'a [u8]],
    /// pinUvAuthParam and pinUvAuthProtocol (keys 0x08, 0x09), when a PIN or built-in UV
    /// verified the user.
    pub pin_uv_auth: Option<PinUvAuth>,
}

/// A request's pinUvAuthParam (the MAC of the client data hash under a pinUvAuthToken,
/// [`crate::ctap::client_pin::PinUvAuthToken::param`]) and the protocol it was made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinUvAuth {
    /// pinUvAuthProtocol.
    pub protocol: u64,
    /// pinUvAuthParam.
    pub param: Vec<u8>,
}

impl PinUvAuth {
    /// The two map entries, at `param_key` and the key after it.
    fn entries(&self, param_key: i64) -> [(Value, Value); 2] {
        [
            (Value::int(param_key), Value::bytes(&self.param)),
            (Value::int(param_key + 1), Value::Unsigned(self.protocol)),
        ]
    }
}

/// A PublicKeyCredentialDescriptor (WebAuthn §5.8.3) for the credential `id`.
pub(crate) fn descriptor(id: &[u8]) -> Value {
    Value::Map(vec![
        (Value::text("id"), Value::bytes(id)),
        (Value::text("type"), Value::text(PUBLIC_KEY)),
    ])
}

/// A PublicKeyCredentialParameters entry (WebAuthn §5.3) for the COSE algorithm `alg`.
pub(crate) fn credential_parameters(alg: i64) -> Value {
    Value::Map(vec![
        (Value::text("alg"), Value::int(alg)),
        (Value::text("type"), Value::text(PUBLIC_KEY)),
    ])
}

/// A CTAPHID_CBOR payload: the command byte, then the canonical CBOR parameters.
pub(crate) fn payload(cmd: u8, params: Value) -> Vec<u8> {
    let mut out = vec![cmd];
    out.extend_from_slice(&cbor::encode(&params));
    out
}

impl MakeCredentialRequest<'_> {
    /// The CTAPHID_CBOR payload: 0x01 || canonical CBOR parameters.
    pub fn to_payload(&self) -> Vec<u8> {
        self.encode(None)
    }

    /// [`Self::to_payload`] with the extensions map `extensions` (key 0x06), e.g.
    /// `{"hmac-secret": true}`.
    pub fn to_payload_with_extensions(&self, extensions: &Value) -> Vec<u8> {
        self.encode(Some(extensions))
    }

    fn encode(&self, extensions: Option<&Value>) -> Vec<u8> {
        let mut rp = vec![(Value::text("id"), Value::text(self.rp.id))];
        if let Some(n) = self.rp.name {
            rp.push((Value::text("name"), Value::text(n)));
        }
        let mut user = vec![(Value::text("id"), Value::bytes(self.user.id))];
        if let Some(n) = self.user.name {
            user.push((Value::text("name"), Value::text(n)));
        }
        if let Some(n) = self.user.display_name {
            user.push((Value::text("displayName"), Value::text(n)));
        }
        let mut algs: Vec<Algorithm> = Vec::new();
        let offered = if self.algorithms.is_empty() {
            &[Algorithm::Es256, Algorithm::EdDsa][..]
        } else {
            self.algorithms
        };
        for a in offered {
            if !algs.contains(a) {
                algs.push(*a);
            }
        }
        let params = algs
            .iter()
            .map(|a| credential_parameters(a.cose_id()))
            .collect();
        let mut map = vec![
            (Value::int(1), Value::bytes(&self.client_data_hash)),
            (Value::int(2), Value::Map(rp)),
            (Value::int(3), Value::Map(user)),
            (Value::int(4), Value::Array(params)),
        ];
        if !self.exclude_list.is_empty() {
            map.push((
                Value::int(5),
                Value::Array(self.exclude_list.iter().map(|id| descriptor(id)).collect()),
            ));
        }
        if let Some(e) = extensions {
            map.push((Value::int(6), e.clone()));
        }
        map.push((
            Value::int(7),
            Value::Map(vec![(Value::text("rk"), Value::Bool(false))]),
        ));
        if let Some(p) = &self.pin_uv_auth {
            map.extend(p.entries(8));
        }
        payload(CMD_MAKE_CREDENTIAL, Value::Map(map))
    }
}

/// authenticatorGetAssertion parameters (CTAP 2.1 §6.2), always with `up: true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetAssertionRequest<'a> {
    /// The rp id the credentials were made for.
    pub rp_id: &'a str,
    /// SHA-256 of the client data.
    pub client_data_hash: [u8; 32],
    /// Credential ids to try (the enrolled ones).
    pub allow_list: &'a [&'a [u8]],
    /// Ask for user verification (`uv: true`); when false, `uv` is not sent.
    pub user_verification: bool,
    /// pinUvAuthParam and pinUvAuthProtocol (keys 0x06, 0x07).
    pub pin_uv_auth: Option<PinUvAuth>,
}

impl GetAssertionRequest<'_> {
    /// The CTAPHID_CBOR payload: 0x02 || canonical CBOR parameters.
    pub fn to_payload(&self) -> Vec<u8> {
        self.encode(true, None)
    }

    /// [`Self::to_payload`] with the extensions map `extensions` (key 0x04), e.g. an
    /// hmac-secret request.
    pub fn to_payload_with_extensions(&self, extensions: &Value) -> Vec<u8> {
        self.encode(true, Some(extensions))
    }

    /// A silent probe (`up: false`, no pinUvAuthParam, no `uv`): which credential of the
    /// allowList the key holds, without a touch (libfido2's pre-flight for long lists). The
    /// key's answer is not an approval of anything: its UP flag is clear.
    pub fn to_probe_payload(&self) -> Vec<u8> {
        GetAssertionRequest {
            user_verification: false,
            pin_uv_auth: None,
            ..self.clone()
        }
        .encode(false, None)
    }

    fn encode(&self, up: bool, extensions: Option<&Value>) -> Vec<u8> {
        let mut map = vec![
            (Value::int(1), Value::text(self.rp_id)),
            (Value::int(2), Value::bytes(&self.client_data_hash)),
        ];
        if !self.allow_list.is_empty() {
            map.push((
                Value::int(3),
                Value::Array(self.allow_list.iter().map(|id| descriptor(id)).collect()),
            ));
        }
        if let Some(e) = extensions {
            map.push((Value::int(4), e.clone()));
        }
        let mut options = vec![(Value::text("up"), Value::Bool(up))];
        if self.user_verification {
            options.push((Value::text("uv"), Value::Bool(true)));
        }
        map.push((Value::int(5), Value::Map(options)));
        if let Some(p) = &self.pin_uv_auth {
            map.extend(p.entries(6));
        }
        payload(CMD_GET_ASSERTION, Value::Map(map))
    }
}

/// The authenticatorGetInfo payload (no parameters).
pub fn get_info_request() -> Vec<u8> {
    vec![CMD_GET_INFO]
}

/// The authenticatorSelection payload (no parameters): the key blinks, a touch answers OK.
pub fn selection_request() -> Vec<u8> {
    vec![CMD_SELECTION]
}

/// Split a CTAP2 response into status and body: `Ok(body)` for CTAP2_OK (0x00), the typed
/// status otherwise, [`CtapError::EmptyResponse`] when there is not even a status byte.
pub fn split_status(response: &[u8]) -> Result<&[u8], CtapError> {
    let (&status, body) = response.split_first().ok_or(CtapError::EmptyResponse)?;
    match StatusCode::from_byte(status) {
        None => Ok(body),
        Some(code) => Err(CtapError::Status(code)),
    }
}

// ---------------------------------------------------------------------------------------------
// Typed field access for response maps.

fn invalid(msg: impl Into<String>) -> CtapError {
    CtapError::InvalidResponse(msg.into())
}

/// The top-level response map, with integer keys only.
fn response_map<'a>(v: &'a Value, what: &str) -> Result<&'a [(Value, Value)], CtapError> {
    let map = v
        .as_map()
        .ok_or_else(|| invalid(format!("{what} response is not a CBOR map")))?;
    if let Some((k, _)) = map.iter().find(|(k, _)| k.as_u64().is_none()) {
        return Err(invalid(format!(
            "{what} response has a non-integer key {k:?}"
        )));
    }
    Ok(map)
}

/// The fields of one response map, with errors that name the response (`what`) and the field.
pub(crate) struct Fields<'a> {
    what: &'static str,
    map: &'a Value,
    /// The map's entries, all with integer keys.
    entries: &'a [(Value, Value)],
}

impl<'a> Fields<'a> {
    /// The fields of `v`, the decoded `what` response: a map with integer keys.
    pub(crate) fn new(v: &'a Value, what: &'static str) -> Result<Fields<'a>, CtapError> {
        Ok(Fields {
            what,
            map: v,
            entries: response_map(v, what)?,
        })
    }

    pub(crate) fn opt(&self, key: i64) -> Option<&'a Value> {
        self.map.get_int(key)
    }

    fn req(&self, key: i64, name: &str) -> Result<&'a Value, CtapError> {
        self.opt(key).ok_or_else(|| {
            invalid(format!(
                "{} response has no {name} (key 0x{key:02x})",
                self.what
            ))
        })
    }

    fn wrong(&self, name: &str, want: &str) -> CtapError {
        invalid(format!("{} response {name} is not {want}", self.what))
    }

    fn text(&self, v: &'a Value, name: &str) -> Result<&'a str, CtapError> {
        v.as_text().ok_or_else(|| self.wrong(name, "a text string"))
    }

    fn bytes(&self, v: &'a Value, name: &str) -> Result<&'a [u8], CtapError> {
        v.as_bytes()
            .ok_or_else(|| self.wrong(name, "a byte string"))
    }

    fn uint(&self, v: &Value, name: &str) -> Result<u64, CtapError> {
        v.as_u64()
            .ok_or_else(|| self.wrong(name, "an unsigned integer"))
    }

    fn boolean(&self, v: &Value, name: &str) -> Result<bool, CtapError> {
        v.as_bool().ok_or_else(|| self.wrong(name, "a boolean"))
    }

    fn array(&self, v: &'a Value, name: &str) -> Result<&'a [Value], CtapError> {
        v.as_array().ok_or_else(|| self.wrong(name, "an array"))
    }

    fn req_bytes(&self, key: i64, name: &str) -> Result<&'a [u8], CtapError> {
        self.bytes(self.req(key, name)?, name)
    }

    /// The required member `key` of `m`, the map in the field `name`.
    fn member(&self, m: &'a Value, name: &str, key: &str) -> Result<&'a Value, CtapError> {
        m.get_text(key)
            .ok_or_else(|| invalid(format!("{} {name} has no {key}", self.what)))
    }

    /// The map at `key`, if present.
    pub(crate) fn opt_map(&self, key: i64, name: &str) -> Result<Option<&'a Value>, CtapError> {
        match self.opt(key) {
            Some(v) if v.as_map().is_none() => Err(self.wrong(name, "a map")),
            v => Ok(v),
        }
    }

    pub(crate) fn opt_uint(&self, key: i64, name: &str) -> Result<Option<u64>, CtapError> {
        self.opt(key).map(|v| self.uint(v, name)).transpose()
    }

    pub(crate) fn opt_bool(&self, key: i64, name: &str) -> Result<Option<bool>, CtapError> {
        self.opt(key).map(|v| self.boolean(v, name)).transpose()
    }

    pub(crate) fn opt_bytes(&self, key: i64, name: &str) -> Result<Option<Vec<u8>>, CtapError> {
        self.opt(key)
            .map(|v| self.bytes(v, name).map(<[u8]>::to_vec))
            .transpose()
    }

    /// The array at `key`, each element decoded by `item`; empty when the key is absent.
    fn list<T>(
        &self,
        key: i64,
        name: &str,
        item: impl Fn(&'a Value) -> Result<T, CtapError>,
    ) -> Result<Vec<T>, CtapError> {
        match self.opt(key) {
            None => Ok(Vec::new()),
            Some(v) => self.array(v, name)?.iter().map(item).collect(),
        }
    }

    fn text_list(&self, key: i64, name: &str) -> Result<Vec<String>, CtapError> {
        self.list(key, name, |s| self.text(s, name).map(str::to_owned))
    }

    fn uint_list(&self, key: i64, name: &str) -> Result<Vec<u64>, CtapError> {
        self.list(key, name, |s| self.uint(s, name))
    }

    /// The map from text to values at `key`, each value decoded by `value` (which gets the
    /// name to use in its error), in the key's order; empty when the key is absent.
    fn text_map<T>(
        &self,
        key: i64,
        name: &str,
        value: impl Fn(&'a Value, &str) -> Result<T, CtapError>,
    ) -> Result<Vec<(String, T)>, CtapError> {
        let Some(m) = self.opt(key) else {
            return Ok(Vec::new());
        };
        let (key_name, value_name) = (format!("{name} key"), format!("{name} value"));
        m.as_map()
            .ok_or_else(|| self.wrong(name, "a map"))?
            .iter()
            .map(|(k, v)| Ok((self.text(k, &key_name)?.to_owned(), value(v, &value_name)?)))
            .collect()
    }
}

fn parse_auth_data(bytes: &[u8]) -> Result<AuthenticatorData, CtapError> {
    AuthenticatorData::parse(bytes).map_err(CtapError::AuthData)
}

// ---------------------------------------------------------------------------------------------
// authenticatorGetInfo

/// authenticatorGetInfo response (CTAP 2.1 §6.4). Lists are empty when the key omits them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetInfoResponse {
    /// 0x01 versions, e.g. `FIDO_2_0`, `FIDO_2_1`.
    pub versions: Vec<String>,
    /// 0x02 extensions.
    pub extensions: Vec<String>,
    /// 0x03 aaguid.
    pub aaguid: [u8; 16],
    /// 0x04 options, in the order the key sent them (canonical order).
    pub options: Vec<(String, bool)>,
    /// 0x05 maxMsgSize.
    pub max_msg_size: Option<u64>,
    /// 0x06 pinUvAuthProtocols.
    pub pin_uv_auth_protocols: Vec<u64>,
    /// 0x07 maxCredentialCountInList.
    pub max_credential_count_in_list: Option<u64>,
    /// 0x08 maxCredentialIdLength.
    pub max_credential_id_length: Option<u64>,
    /// 0x09 transports.
    pub transports: Vec<String>,
    /// 0x0A algorithms (COSE ids of the PublicKeyCredentialParameters).
    pub algorithms: Vec<i64>,
    /// 0x0B maxSerializedLargeBlobArray.
    pub max_serialized_large_blob_array: Option<u64>,
    /// 0x0C forcePINChange.
    pub force_pin_change: Option<bool>,
    /// 0x0D minPINLength.
    pub min_pin_length: Option<u64>,
    /// 0x0E firmwareVersion.
    pub firmware_version: Option<u64>,
    /// 0x0F maxCredBlobLength.
    pub max_cred_blob_length: Option<u64>,
    /// 0x10 maxRPIDsForSetMinPINLength.
    pub max_rpids_for_set_min_pin_length: Option<u64>,
    /// 0x11 preferredPlatformUvAttempts.
    pub preferred_platform_uv_attempts: Option<u64>,
    /// 0x12 uvModality.
    pub uv_modality: Option<u64>,
    /// 0x13 certifications (name -> level).
    pub certifications: Vec<(String, u64)>,
    /// 0x14 remainingDiscoverableCredentials.
    pub remaining_discoverable_credentials: Option<u64>,
    /// 0x15 vendorPrototypeConfigCommands.
    pub vendor_prototype_config_commands: Vec<u64>,
    /// Keys above 0x15 that this client does not interpret (newer CTAP versions), in order.
    pub unknown_keys: Vec<u64>,
}

const GET_INFO_LAST_KNOWN_KEY: u64 = 0x15;

impl GetInfoResponse {
    /// Decode the CBOR after the status byte.
    pub fn decode(body: &[u8]) -> Result<GetInfoResponse, CtapError> {
        let v = cbor::decode(body)?;
        let f = Fields::new(&v, "getInfo")?;
        let aaguid_bytes = f.req_bytes(3, "aaguid")?;
        let aaguid = <[u8; 16]>::try_from(aaguid_bytes)
            .map_err(|_| invalid(format!("getInfo aaguid is {} bytes", aaguid_bytes.len())))?;
        let versions = f.text_list(1, "versions")?;
        if f.opt(1).is_none() {
            return Err(invalid("getInfo response has no versions (key 0x01)"));
        }
        let options = f.text_map(4, "options", |v, name| f.boolean(v, name))?;
        let algorithms = f.list(0x0a, "algorithms", |p| {
            let alg = p
                .get_text("alg")
                .and_then(Value::as_i64)
                .ok_or_else(|| f.wrong("algorithms entry alg", "an integer"))?;
            p.get_text("type")
                .and_then(Value::as_text)
                .ok_or_else(|| f.wrong("algorithms entry type", "a text string"))?;
            Ok(alg)
        })?;
        let certifications = f.text_map(0x13, "certifications", |v, name| f.uint(v, name))?;
        Ok(GetInfoResponse {
            versions,
            extensions: f.text_list(2, "extensions")?,
            aaguid,
            options,
            max_msg_size: f.opt_uint(5, "maxMsgSize")?,
            pin_uv_auth_protocols: f.uint_list(6, "pinUvAuthProtocols")?,
            max_credential_count_in_list: f.opt_uint(7, "maxCredentialCountInList")?,
            max_credential_id_length: f.opt_uint(8, "maxCredentialIdLength")?,
            transports: f.text_list(9, "transports")?,
            algorithms,
            max_serialized_large_blob_array: f.opt_uint(0x0b, "maxSerializedLargeBlobArray")?,
            force_pin_change: f.opt_bool(0x0c, "forcePINChange")?,
            min_pin_length: f.opt_uint(0x0d, "minPINLength")?,
            firmware_version: f.opt_uint(0x0e, "firmwareVersion")?,
            max_cred_blob_length: f.opt_uint(0x0f, "maxCredBlobLength")?,
            max_rpids_for_set_min_pin_length: f.opt_uint(0x10, "maxRPIDsForSetMinPINLength")?,
            preferred_platform_uv_attempts: f.opt_uint(0x11, "preferredPlatformUvAttempts")?,
            uv_modality: f.opt_uint(0x12, "uvModality")?,
            certifications,
            remaining_discoverable_credentials: f
                .opt_uint(0x14, "remainingDiscoverableCredentials")?,
            vendor_prototype_config_commands: f.uint_list(0x15, "vendorPrototypeConfigCommands")?,
            unknown_keys: f
                .entries
                .iter()
                .filter_map(|(k, _)| k.as_u64())
                .filter(|k| *k > GET_INFO_LAST_KNOWN_KEY || *k == 0)
                .collect(),
        })
    }

    /// The value of an option, `None` when the key does not list it.
    pub fn option(&self, name: &str) -> Option<bool> {
        self.options
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// Whether the key supports a COSE algorithm. Keys that omit `algorithms` (CTAP 2.0)
    /// support ES256 only (CTAP 2.1 §6.4).
    pub fn supports_algorithm(&self, alg: i64) -> bool {
        if self.algorithms.is_empty() {
            alg == ALG_ES256
        } else {
            self.algorithms.contains(&alg)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// authenticatorMakeCredential

/// authenticatorMakeCredential response (CTAP 2.1 §6.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MakeCredentialResponse {
    /// 0x01 attestation statement format, e.g. `packed`, `none`.
    pub fmt: String,
    /// 0x02 authenticatorData bytes as the key sent them.
    pub auth_data_raw: Vec<u8>,
    /// 0x02 parsed; attested credential data is always present (checked).
    pub auth_data: AuthenticatorData,
    /// 0x03 attestation statement, kept as CBOR (a map).
    pub att_stmt: Value,
    /// 0x04 epAtt (enterprise attestation returned).
    pub ep_att: Option<bool>,
    /// 0x05 largeBlobKey.
    pub large_blob_key: Option<Vec<u8>>,
}

impl MakeCredentialResponse {
    /// Decode the CBOR after the status byte.
    pub fn decode(body: &[u8]) -> Result<MakeCredentialResponse, CtapError> {
        let v = cbor::decode(body)?;
        let f = Fields::new(&v, "makeCredential")?;
        let fmt = f.text(f.req(1, "fmt")?, "fmt")?.to_owned();
        let auth_data_raw = f.req_bytes(2, "authData")?.to_vec();
        let auth_data = parse_auth_data(&auth_data_raw)?;
        if auth_data.attested_credential_data.is_none() {
            return Err(invalid(
                "makeCredential authData has no attested credential data (AT flag clear)",
            ));
        }
        let att_stmt = f.req(3, "attStmt")?;
        if att_stmt.as_map().is_none() {
            return Err(f.wrong("attStmt", "a map"));
        }
        Ok(MakeCredentialResponse {
            fmt,
            auth_data_raw,
            auth_data,
            att_stmt: att_stmt.clone(),
            ep_att: f.opt_bool(4, "epAtt")?,
            large_blob_key: f.opt_bytes(5, "largeBlobKey")?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// authenticatorGetAssertion

/// PublicKeyCredentialDescriptor as returned by the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialDescriptor {
    /// `public-key`.
    pub cred_type: String,
    /// The credential id.
    pub id: Vec<u8>,
}

/// The user entity in a GetAssertion response (discoverable credentials only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionUser {
    /// The user handle.
    pub id: Vec<u8>,
    /// Account name, when the key returns it.
    pub name: Option<String>,
    /// Display name, when the key returns it.
    pub display_name: Option<String>,
}

/// authenticatorGetAssertion response (CTAP 2.1 §6.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetAssertionResponse {
    /// 0x01 the credential used. The key MAY omit it when the allowList had exactly one entry.
    pub credential: Option<CredentialDescriptor>,
    /// 0x02 authenticatorData bytes exactly as signed.
    pub auth_data_raw: Vec<u8>,
    /// 0x02 parsed.
    pub auth_data: AuthenticatorData,
    /// 0x03 signature over authData || clientDataHash.
    pub signature: Vec<u8>,
    /// 0x04 user (discoverable credentials).
    pub user: Option<AssertionUser>,
    /// 0x05 numberOfCredentials.
    pub number_of_credentials: Option<u64>,
    /// 0x06 userSelected.
    pub user_selected: Option<bool>,
    /// 0x07 largeBlobKey.
    pub large_blob_key: Option<Vec<u8>>,
}

impl GetAssertionResponse {
    /// Decode the CBOR after the status byte.
    pub fn decode(body: &[u8]) -> Result<GetAssertionResponse, CtapError> {
        let v = cbor::decode(body)?;
        let f = Fields::new(&v, "getAssertion")?;
        let credential = match f.opt_map(1, "credential")? {
            None => None,
            Some(c) => {
                let id = f.member(c, "credential", "id")?;
                let t = f.member(c, "credential", "type")?;
                Some(CredentialDescriptor {
                    cred_type: f.text(t, "credential type")?.to_owned(),
                    id: f.bytes(id, "credential id")?.to_vec(),
                })
            }
        };
        let auth_data_raw = f.req_bytes(2, "authData")?.to_vec();
        let auth_data = parse_auth_data(&auth_data_raw)?;
        let signature = f.req_bytes(3, "signature")?.to_vec();
        let user = match f.opt_map(4, "user")? {
            None => None,
            Some(u) => {
                let id = f.member(u, "user", "id")?;
                let text = |k: &str| {
                    u.get_text(k)
                        .map(|t| f.text(t, k).map(str::to_owned))
                        .transpose()
                };
                Some(AssertionUser {
                    id: f.bytes(id, "user id")?.to_vec(),
                    name: text("name")?,
                    display_name: text("displayName")?,
                })
            }
        };
        Ok(GetAssertionResponse {
            credential,
            auth_data_raw,
            auth_data,
            signature,
            user,
            number_of_credentials: f.opt_uint(5, "numberOfCredentials")?,
            user_selected: f.opt_bool(6, "userSelected")?,
            large_blob_key: f.opt_bytes(7, "largeBlobKey")?,
        })
    }

    /// The signed message: authData || clientDataHash.
    pub fn signed_message(&self, client_data_hash: &[u8; 32]) -> Vec<u8> {
        let mut m = Vec::with_capacity(self.auth_data_raw.len() + 32);
        m.extend_from_slice(&self.auth_data_raw);
        m.extend_from_slice(client_data_hash);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctap::authdata::{build, flag};
    use crate::ctap::cbor::CborError;
    use crate::ctap::test_support::h;

    #[test]
    fn fixed_requests() {
        assert_eq!(get_info_request(), vec![0x04]);
        assert_eq!(selection_request(), vec![0x0b]);
    }

    #[test]
    fn make_credential_request_is_canonical_and_complete() {
        let excl: &[u8] = &[9, 9];
        let req = MakeCredentialRequest {
            client_data_hash: [0x11; 32],
            rp: RelyingParty {
                id: "auths:presence",
                name: Some("auths"),
            },
            user: UserEntity {
                id: &[1, 2],
                name: Some("me"),
                display_name: Some("Me"),
            },
            algorithms: &[Algorithm::EdDsa, Algorithm::Es256, Algorithm::EdDsa],
            exclude_list: &[excl],
            pin_uv_auth: None,
        };
        let p = req.to_payload();
        assert_eq!(p[0], CMD_MAKE_CREDENTIAL);
        let v = cbor::decode(&p[1..]).unwrap();
        // Strict decode succeeded, so the encoding is canonical; check the content.
        assert_eq!(v.get_int(1).unwrap().as_bytes(), Some(&[0x11; 32][..]));
        let rp = v.get_int(2).unwrap();
        assert_eq!(rp.get_text("id").unwrap().as_text(), Some("auths:presence"));
        assert_eq!(rp.get_text("name").unwrap().as_text(), Some("auths"));
        let user = v.get_int(3).unwrap();
        assert_eq!(user.get_text("displayName").unwrap().as_text(), Some("Me"));
        let algs: Vec<i64> = v
            .get_int(4)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                assert_eq!(p.get_text("type").unwrap().as_text(), Some("public-key"));
                p.get_text("alg").unwrap().as_i64().unwrap()
            })
            .collect();
        assert_eq!(algs, vec![-8, -7]);
        let ex = v.get_int(5).unwrap().as_array().unwrap();
        assert_eq!(ex.len(), 1);
        assert_eq!(ex[0].get_text("id").unwrap().as_bytes(), Some(excl));
        let opts = v.get_int(7).unwrap();
        assert_eq!(opts.as_map().unwrap().len(), 1);
        assert_eq!(opts.get_text("rk").unwrap().as_bool(), Some(false));
    }

    #[test]
    fn make_credential_defaults_to_es256_then_eddsa_and_omits_empty_lists() {
        let req = MakeCredentialRequest {
            client_data_hash: [0; 32],
            rp: RelyingParty {
                id: "x",
                name: None,
            },
            user: UserEntity {
                id: &[1],
                name: None,
                display_name: None,
            },
            algorithms: &[],
            exclude_list: &[],
            pin_uv_auth: None,
        };
        let v = cbor::decode(&req.to_payload()[1..]).unwrap();
        let algs: Vec<i64> = v
            .get_int(4)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.get_text("alg").unwrap().as_i64().unwrap())
            .collect();
        assert_eq!(algs, vec![-7, -8]);
        assert!(v.get_int(5).is_none());
        assert!(v.get_int(2).unwrap().get_text("name").is_none());
    }

    #[test]
    fn get_assertion_request() {
        let id: &[u8] = &[7; 16];
        let mut req = GetAssertionRequest {
            rp_id: "auths:presence",
            client_data_hash: [0x22; 32],
            allow_list: &[id],
            user_verification: false,
            pin_uv_auth: None,
        };
        let p = req.to_payload();
        assert_eq!(p[0], CMD_GET_ASSERTION);
        let v = cbor::decode(&p[1..]).unwrap();
        assert_eq!(v.get_int(1).unwrap().as_text(), Some("auths:presence"));
        let allow = v.get_int(3).unwrap().as_array().unwrap();
        assert_eq!(allow[0].get_text("id").unwrap().as_bytes(), Some(id));
        assert_eq!(
            allow[0].get_text("type").unwrap().as_text(),
            Some("public-key")
        );
        let opts = v.get_int(5).unwrap();
        assert_eq!(opts.get_text("up").unwrap().as_bool(), Some(true));
        assert!(opts.get_text("uv").is_none());
        req.user_verification = true;
        let v = cbor::decode(&req.to_payload()[1..]).unwrap();
        assert_eq!(
            v.get_int(5).unwrap().get_text("uv").unwrap().as_bool(),
            Some(true)
        );
    }

    #[test]
    fn status_split() {
        assert_eq!(split_status(&[0x00, 0xa0]).unwrap(), &[0xa0]);
        assert_eq!(split_status(&[0x00]).unwrap(), &[] as &[u8]);
        assert!(matches!(split_status(&[]), Err(CtapError::EmptyResponse)));
        assert!(matches!(
            split_status(&[0x2e]),
            Err(CtapError::Status(StatusCode::NoCredentials))
        ));
        assert!(matches!(
            split_status(&[0xf2, 1, 2]),
            Err(CtapError::Status(StatusCode::Unknown(0xf2)))
        ));
    }

    fn assertion_body(with_cred: bool, ad: &[u8]) -> Vec<u8> {
        let mut m = vec![
            (Value::int(2), Value::bytes(ad)),
            (Value::int(3), Value::bytes(&[0x30, 0x00])),
        ];
        if with_cred {
            m.push((Value::int(1), descriptor(&[5; 8])));
        }
        cbor::encode(&Value::Map(m))
    }

    #[test]
    fn get_assertion_response_decodes_with_and_without_credential() {
        let ad = build(&[1; 32], flag::UP, 7, None, None);
        let r = GetAssertionResponse::decode(&assertion_body(true, &ad)).unwrap();
        assert_eq!(r.credential.as_ref().unwrap().id, vec![5; 8]);
        assert_eq!(r.credential.as_ref().unwrap().cred_type, "public-key");
        assert_eq!(r.auth_data.sign_count, 7);
        assert_eq!(r.auth_data_raw, ad);
        let r = GetAssertionResponse::decode(&assertion_body(false, &ad)).unwrap();
        assert!(r.credential.is_none());
        let mut msg = ad.clone();
        msg.extend_from_slice(&[3; 32]);
        assert_eq!(r.signed_message(&[3; 32]), msg);
    }

    #[test]
    fn get_assertion_response_rejects_bad_shapes() {
        let ad = build(&[1; 32], flag::UP, 7, None, None);
        let bad =
            |m: Vec<(Value, Value)>| GetAssertionResponse::decode(&cbor::encode(&Value::Map(m)));
        // Missing signature.
        assert!(matches!(
            bad(vec![(Value::int(2), Value::bytes(&ad))]),
            Err(CtapError::InvalidResponse(_))
        ));
        // authData as text.
        assert!(matches!(
            bad(vec![
                (Value::int(2), Value::text("x")),
                (Value::int(3), Value::bytes(&[1]))
            ]),
            Err(CtapError::InvalidResponse(_))
        ));
        // authData that does not parse.
        assert!(matches!(
            bad(vec![
                (Value::int(2), Value::bytes(&ad[..36])),
                (Value::int(3), Value::bytes(&[1]))
            ]),
            Err(CtapError::AuthData(_))
        ));
        // Text key at the top level.
        assert!(matches!(
            bad(vec![
                (Value::int(2), Value::bytes(&ad)),
                (Value::int(3), Value::bytes(&[1])),
                (Value::text("x"), Value::int(1)),
            ]),
            Err(CtapError::InvalidResponse(_))
        ));
        // Not a map.
        assert!(matches!(
            GetAssertionResponse::decode(&cbor::encode(&Value::Array(vec![]))),
            Err(CtapError::InvalidResponse(_))
        ));
        // Non-canonical CBOR: unsorted keys.
        let mut body = assertion_body(false, &ad);
        assert_eq!(body[0], 0xa2);
        body.push(0); // trailing
        assert!(matches!(
            GetAssertionResponse::decode(&body),
            Err(CtapError::Cbor(CborError::TrailingBytes(1)))
        ));
        assert!(matches!(
            GetAssertionResponse::decode(&h("a203400201")),
            Err(CtapError::Cbor(CborError::UnsortedKeys(_)))
        ));
        assert!(matches!(
            GetAssertionResponse::decode(&[]),
            Err(CtapError::Cbor(_))
        ));
    }

    #[test]
    fn get_info_minimal_and_typed() {
        // {1: ["FIDO_2_0"], 3: aaguid}
        let mut m = vec![
            (Value::int(1), Value::Array(vec![Value::text("FIDO_2_0")])),
            (Value::int(3), Value::bytes(&[0xaa; 16])),
        ];
        let info = GetInfoResponse::decode(&cbor::encode(&Value::Map(m.clone()))).unwrap();
        assert_eq!(info.versions, vec!["FIDO_2_0"]);
        assert!(info.supports_algorithm(-7));
        assert!(!info.supports_algorithm(-8));
        assert_eq!(info.option("rk"), None);
        // Unknown key ignored but reported.
        m.push((Value::int(0x30), Value::text("future")));
        let info = GetInfoResponse::decode(&cbor::encode(&Value::Map(m.clone()))).unwrap();
        assert_eq!(info.unknown_keys, vec![0x30]);
        // A typed field of the wrong type is an error.
        m.push((Value::int(5), Value::text("1200")));
        assert!(matches!(
            GetInfoResponse::decode(&cbor::encode(&Value::Map(m))),
            Err(CtapError::InvalidResponse(_))
        ));
        // aaguid of the wrong length.
        let m = vec![
            (Value::int(1), Value::Array(vec![])),
            (Value::int(3), Value::bytes(&[0xaa; 15])),
        ];
        assert!(matches!(
            GetInfoResponse::decode(&cbor::encode(&Value::Map(m))),
            Err(CtapError::InvalidResponse(_))
        ));
        // No versions.
        let m = vec![(Value::int(3), Value::bytes(&[0xaa; 16]))];
        assert!(matches!(
            GetInfoResponse::decode(&cbor::encode(&Value::Map(m))),
            Err(CtapError::InvalidResponse(_))
        ));
    }

    #[test]
    fn make_credential_requires_attested_data() {
        let ad = build(&[1; 32], flag::UP, 0, None, None);
        let m = vec![
            (Value::int(1), Value::text("none")),
            (Value::int(2), Value::bytes(&ad)),
            (Value::int(3), Value::Map(vec![])),
        ];
        assert!(matches!(
            MakeCredentialResponse::decode(&cbor::encode(&Value::Map(m))),
            Err(CtapError::InvalidResponse(_))
        ));
    }
}
