//! Security keys on Windows through webauthn.dll (the Windows WebAuthn API, `webauthn.h`).
//!
//! Since Windows 10 1903 raw FIDO HID access needs Administrator, so Win32-OpenSSH and libfido2
//! go through webauthn.dll, and so do we: `WebAuthNAuthenticatorMakeCredential` and
//! `WebAuthNAuthenticatorGetAssertion` (WebAuthn Level 2 §5.1.3 / §5.1.4 as Windows implements
//! them), cancelled with `WebAuthNGetCancellationId` / `WebAuthNCancelCurrentOperation`.
//! Windows shows its own security-key dialog while it waits for the touch.
//!
//! webauthn.dll takes the client data bytes (`WEBAUTHN_CLIENT_DATA`, hash algorithm SHA-256)
//! and hashes them itself: we pass our client data as is, so the key signs
//! `authData || SHA-256(clientData)` exactly as over CTAPHID and receipts verify the same way
//! everywhere. Results are turned into our [`GetAssertionResponse`] /
//! [`MakeCredentialResponse`] (authData parsed by [`super::authdata`]) and verified by the same
//! code as on Linux and macOS.
//!
//! Layout: everything pure (the field values of the webauthn.h structures, client data,
//! HRESULT mapping, result conversion) is compiled on every platform and unit-tested on Linux;
//! the FFI in [`imp`] (Windows only) only copies those values into the C structures.

use std::time::Duration;

use super::authdata::AuthenticatorData;
use super::backend::MakeCredentialArgs;
use super::cbor;
use super::command::{
    AssertionUser, CredentialDescriptor, GetAssertionResponse, MakeCredentialResponse, PUBLIC_KEY,
};
use super::error::WebAuthnFailure;
use super::status::StatusCode;
use super::CtapError;

/// The values of webauthn.h we use. On Windows they are checked against windows-sys at compile
/// time (see [`imp`]), so the pure code and the tests here use the real numbers.
pub mod consts {
    /// `WEBAUTHN_CLIENT_DATA_CURRENT_VERSION`.
    pub const CLIENT_DATA_VERSION: u32 = 1;
    /// `WEBAUTHN_HASH_ALGORITHM_SHA_256`.
    pub const HASH_ALGORITHM_SHA_256: &str = "SHA-256";
    /// `WEBAUTHN_CREDENTIAL_TYPE_PUBLIC_KEY`.
    pub const CREDENTIAL_TYPE_PUBLIC_KEY: &str = "public-key";
    /// `WEBAUTHN_RP_ENTITY_INFORMATION_CURRENT_VERSION`.
    pub const RP_ENTITY_VERSION: u32 = 1;
    /// `WEBAUTHN_USER_ENTITY_INFORMATION_CURRENT_VERSION`.
    pub const USER_ENTITY_VERSION: u32 = 1;
    /// `WEBAUTHN_COSE_CREDENTIAL_PARAMETER_CURRENT_VERSION`.
    pub const COSE_PARAMETER_VERSION: u32 = 1;
    /// `WEBAUTHN_CREDENTIAL_CURRENT_VERSION`.
    pub const CREDENTIAL_VERSION: u32 = 1;
    /// `WEBAUTHN_AUTHENTICATOR_GET_ASSERTION_OPTIONS_VERSION_3`: the first with
    /// `pCancellationId`. We fill nothing newer, so older webauthn.dll builds accept it.
    pub const GET_ASSERTION_OPTIONS_VERSION: u32 = 3;
    /// `WEBAUTHN_AUTHENTICATOR_MAKE_CREDENTIAL_OPTIONS_VERSION_2`: the first with
    /// `pCancellationId`.
    pub const MAKE_CREDENTIAL_OPTIONS_VERSION: u32 = 2;
    /// `WEBAUTHN_AUTHENTICATOR_ATTACHMENT_CROSS_PLATFORM`: a roaming security key, not
    /// Windows Hello's own platform authenticator.
    pub const ATTACHMENT_CROSS_PLATFORM: u32 = 2;
    /// `WEBAUTHN_USER_VERIFICATION_REQUIREMENT_DISCOURAGED`: a touch, no PIN.
    pub const USER_VERIFICATION_DISCOURAGED: u32 = 3;
    /// `WEBAUTHN_USER_VERIFICATION_REQUIREMENT_REQUIRED`: Windows asks for the PIN (or
    /// fingerprint) in its own dialog (`auths agent start --uv required`, alwaysUv keys).
    pub const USER_VERIFICATION_REQUIRED: u32 = 1;
    /// `WEBAUTHN_ATTESTATION_CONVEYANCE_PREFERENCE_DIRECT`: keeps the key's AAGUID in authData
    /// (with `none` a client may zero it), which enrollment records.
    pub const ATTESTATION_DIRECT: u32 = 3;

    /// `NTE_EXISTS`: a credential in the exclude list is on the key.
    pub const NTE_EXISTS: u32 = 0x8009_000F;
    /// `NTE_NOT_FOUND`: none of the allowed credentials is on the key.
    pub const NTE_NOT_FOUND: u32 = 0x8009_0011;
    /// `NTE_INVALID_PARAMETER`.
    pub const NTE_INVALID_PARAMETER: u32 = 0x8009_0027;
    /// `NTE_NOT_SUPPORTED`.
    pub const NTE_NOT_SUPPORTED: u32 = 0x8009_0029;
    /// `NTE_USER_CANCELLED`: the dialog was cancelled (by the person, by us, or its timeout).
    pub const NTE_USER_CANCELLED: u32 = 0x8009_0036;
    /// `HRESULT_FROM_WIN32(ERROR_TIMEOUT)`.
    pub const HRESULT_TIMEOUT: u32 = 0x8007_05B4;
    /// `HRESULT_FROM_WIN32(ERROR_CANCELLED)`.
    pub const HRESULT_CANCELLED: u32 = 0x8007_04C7;
    /// `E_INVALIDARG`.
    pub const E_INVALIDARG: u32 = 0x8007_0057;
}

/// `WEBAUTHN_CLIENT_DATA` as values: the client data goes in unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientDataFields {
    /// `dwVersion`.
    pub version: u32,
    /// `pbClientDataJSON` / `cbClientDataJSON`: our client data, byte for byte.
    pub json: Vec<u8>,
    /// `pwszHashAlgId`.
    pub hash_alg: &'static str,
}

/// The client data structure for `client_data`. webauthn.dll hashes `json` with SHA-256, so the
/// key signs over the same `clientDataHash` a CTAP key would get from
/// [`super::backend::client_data_hash`].
pub fn client_data_fields(client_data: &[u8]) -> Result<ClientDataFields, CtapError> {
    u32::try_from(client_data.len())
        .map_err(|_| CtapError::Unsupported("client data longer than 4 GiB".into()))?;
    Ok(ClientDataFields {
        version: consts::CLIENT_DATA_VERSION,
        json: client_data.to_vec(),
        hash_alg: consts::HASH_ALGORITHM_SHA_256,
    })
}

/// NUL-terminated UTF-16 for a `PCWSTR`. An interior NUL would silently cut the string, so it
/// is refused.
pub fn to_wide(s: &str) -> Result<Vec<u16>, CtapError> {
    if s.contains('\0') {
        return Err(CtapError::Unsupported(format!(
            "{s:?} contains a NUL character and cannot be passed to webauthn.dll"
        )));
    }
    Ok(s.encode_utf16().chain(std::iter::once(0)).collect())
}

/// `dwTimeoutMilliseconds`: the touch timeout, at least 1 ms, at most `u32::MAX`.
pub fn timeout_ms(timeout: Duration) -> u32 {
    u32::try_from(timeout.as_millis())
        .unwrap_or(u32::MAX)
        .max(1)
}

fn credential_list(ids: &[&[u8]]) -> Result<Vec<Vec<u8>>, CtapError> {
    ids.iter()
        .map(|id| {
            u32::try_from(id.len())
                .map(|_| id.to_vec())
                .map_err(|_| CtapError::Unsupported("credential id too long".into()))
        })
        .collect()
}

/// The field values of one `WebAuthNAuthenticatorGetAssertion` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionFields {
    /// `pwszRpId`.
    pub rp_id: Vec<u16>,
    /// `pWebAuthNClientData`.
    pub client_data: ClientDataFields,
    /// Options `dwVersion`.
    pub options_version: u32,
    /// Options `dwTimeoutMilliseconds`.
    pub timeout_ms: u32,
    /// Options `dwAuthenticatorAttachment`.
    pub attachment: u32,
    /// Options `dwUserVerificationRequirement`.
    pub user_verification: u32,
    /// Options `CredentialList`: the allow list (type `public-key`).
    pub allow_list: Vec<Vec<u8>>,
}

/// Field values for an assertion over `client_data` with one of `allow_list`.
pub fn assertion_fields(
    rp_id: &str,
    client_data: &[u8],
    allow_list: &[&[u8]],
    timeout: Duration,
    user_verification: bool,
) -> Result<AssertionFields, CtapError> {
    Ok(AssertionFields {
        rp_id: to_wide(rp_id)?,
        client_data: client_data_fields(client_data)?,
        options_version: consts::GET_ASSERTION_OPTIONS_VERSION,
        timeout_ms: timeout_ms(timeout),
        attachment: consts::ATTACHMENT_CROSS_PLATFORM,
        user_verification: if user_verification {
            consts::USER_VERIFICATION_REQUIRED
        } else {
            consts::USER_VERIFICATION_DISCOURAGED
        },
        allow_list: credential_list(allow_list)?,
    })
}

/// The field values of one `WebAuthNAuthenticatorMakeCredential` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MakeCredentialFields {
    /// `WEBAUTHN_RP_ENTITY_INFORMATION.pwszId`.
    pub rp_id: Vec<u16>,
    /// `pwszName` (webauthn.dll requires one; the rp id when none is given).
    pub rp_name: Vec<u16>,
    /// `WEBAUTHN_USER_ENTITY_INFORMATION.pbId`.
    pub user_id: Vec<u8>,
    /// `pwszName`.
    pub user_name: Vec<u16>,
    /// `pwszDisplayName`.
    pub user_display_name: Vec<u16>,
    /// `WEBAUTHN_COSE_CREDENTIAL_PARAMETER.lAlg`, in order of preference.
    pub algorithms: Vec<i32>,
    /// `pWebAuthNClientData`.
    pub client_data: ClientDataFields,
    /// Options `dwVersion`.
    pub options_version: u32,
    /// Options `dwTimeoutMilliseconds`.
    pub timeout_ms: u32,
    /// Options `CredentialList`: the exclude list.
    pub exclude_list: Vec<Vec<u8>>,
    /// Options `dwAuthenticatorAttachment`.
    pub attachment: u32,
    /// Options `bRequireResidentKey`: no, the credential id is stored in the enrollment.
    pub require_resident_key: bool,
    /// Options `dwUserVerificationRequirement`.
    pub user_verification: u32,
    /// Options `dwAttestationConveyancePreference`.
    pub attestation: u32,
}

/// Field values for a new credential as `args` describes it.
pub fn make_credential_fields(
    args: &MakeCredentialArgs<'_>,
    timeout: Duration,
) -> Result<MakeCredentialFields, CtapError> {
    let algorithms = args
        .algorithms
        .iter()
        .map(|a| {
            i32::try_from(a.cose_id())
                .map_err(|_| CtapError::Unsupported("COSE algorithm out of range".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let user_name = args.user.name.unwrap_or("auths");
    Ok(MakeCredentialFields {
        rp_id: to_wide(args.rp.id)?,
        rp_name: to_wide(args.rp.name.unwrap_or(args.rp.id))?,
        user_id: args.user.id.to_vec(),
        user_name: to_wide(user_name)?,
        user_display_name: to_wide(args.user.display_name.unwrap_or(user_name))?,
        algorithms,
        client_data: client_data_fields(args.client_data)?,
        options_version: consts::MAKE_CREDENTIAL_OPTIONS_VERSION,
        timeout_ms: timeout_ms(timeout),
        exclude_list: credential_list(args.exclude_list)?,
        attachment: consts::ATTACHMENT_CROSS_PLATFORM,
        require_resident_key: false,
        user_verification: consts::USER_VERIFICATION_DISCOURAGED,
        attestation: consts::ATTESTATION_DIRECT,
    })
}

/// Map a failed webauthn.dll call to our error. `name` is what `WebAuthNGetErrorName` says;
/// `cancelled_by_us` is true when our cancel token fired (webauthn.dll reports that as
/// `NTE_USER_CANCELLED` too).
pub fn error_from_hresult(hresult: i32, name: Option<&str>, cancelled_by_us: bool) -> CtapError {
    let code = hresult as u32;
    if cancelled_by_us {
        return CtapError::Cancelled;
    }
    let name = name.unwrap_or("").trim().to_owned();
    let kind = match code {
        consts::NTE_EXISTS => return CtapError::Status(StatusCode::CredentialExcluded),
        consts::NTE_NOT_FOUND => return CtapError::Status(StatusCode::NoCredentials),
        consts::HRESULT_TIMEOUT => return CtapError::Status(StatusCode::UserActionTimeout),
        consts::NTE_USER_CANCELLED | consts::HRESULT_CANCELLED => WebAuthnFailure::Cancelled,
        consts::NTE_NOT_SUPPORTED => WebAuthnFailure::NotSupported,
        consts::NTE_INVALID_PARAMETER | consts::E_INVALIDARG => WebAuthnFailure::BadRequest,
        _ => WebAuthnFailure::Other,
    };
    CtapError::WebAuthn {
        hresult: code,
        name: if name.is_empty() {
            "unknown error".into()
        } else {
            name
        },
        kind,
    }
}

fn parse_auth_data(raw: &[u8]) -> Result<AuthenticatorData, CtapError> {
    AuthenticatorData::parse(raw).map_err(CtapError::AuthData)
}

/// Our assertion response from what `WEBAUTHN_ASSERTION` holds. The credential id is always
/// present (webauthn.dll reports the credential used); an empty user id means none.
pub fn assertion_from_parts(
    auth_data: &[u8],
    signature: &[u8],
    credential_id: &[u8],
    user_id: &[u8],
) -> Result<GetAssertionResponse, CtapError> {
    if signature.is_empty() {
        return Err(CtapError::InvalidResponse(
            "webauthn.dll returned an assertion without a signature".into(),
        ));
    }
    Ok(GetAssertionResponse {
        credential: (!credential_id.is_empty()).then(|| CredentialDescriptor {
            cred_type: PUBLIC_KEY.to_owned(),
            id: credential_id.to_vec(),
        }),
        auth_data_raw: auth_data.to_vec(),
        auth_data: parse_auth_data(auth_data)?,
        signature: signature.to_vec(),
        user: (!user_id.is_empty()).then(|| AssertionUser {
            id: user_id.to_vec(),
            name: None,
            display_name: None,
        }),
        number_of_credentials: None,
        user_selected: None,
        large_blob_key: None,
    })
}

/// Our makeCredential response from what `WEBAUTHN_CREDENTIAL_ATTESTATION` holds: the format,
/// authData and the attestation statement (`pbAttestation`, CBOR; empty for `none`).
pub fn credential_from_parts(
    fmt: &str,
    auth_data: &[u8],
    att_stmt_cbor: &[u8],
) -> Result<MakeCredentialResponse, CtapError> {
    let parsed = parse_auth_data(auth_data)?;
    if parsed.attested_credential_data.is_none() {
        return Err(CtapError::InvalidResponse(
            "webauthn.dll returned authData without attested credential data".into(),
        ));
    }
    let att_stmt = if att_stmt_cbor.is_empty() {
        cbor::Value::Map(Vec::new())
    } else {
        let v = cbor::decode(att_stmt_cbor)?;
        if v.as_map().is_none() {
            return Err(CtapError::InvalidResponse(
                "webauthn.dll returned an attestation statement that is not a CBOR map".into(),
            ));
        }
        v
    };
    Ok(MakeCredentialResponse {
        fmt: fmt.to_owned(),
        auth_data_raw: auth_data.to_vec(),
        auth_data: parsed,
        att_stmt,
        ep_att: None,
        large_blob_key: None,
    })
}

// The platform half (see `crate::platform` for the scheme): `imp` calls webauthn.dll on
// Windows; `unsupported` elsewhere.
#[cfg(windows)]
mod imp;
#[cfg(windows)]
pub use imp::{open, WinHelloKey};
#[cfg(not(windows))]
mod unsupported;
#[cfg(not(windows))]
pub use unsupported::open;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctap::authdata::{build, AttestedCredentialData};
    use crate::ctap::command::{Algorithm, RelyingParty, UserEntity};
    use crate::ctap::cose::CoseKey;

    #[test]
    fn client_data_is_passed_unchanged_with_sha256() {
        let cd = br#"{"type":"auths.presence.v1","nonce":"00"}"#;
        let f = client_data_fields(cd).unwrap();
        assert_eq!(f.json, cd.to_vec());
        assert_eq!(f.hash_alg, "SHA-256");
        assert_eq!(f.version, 1);
    }

    #[test]
    fn wide_strings_are_nul_terminated_and_refuse_interior_nul() {
        assert_eq!(to_wide("ab").unwrap(), vec![0x61, 0x62, 0]);
        assert_eq!(to_wide("é").unwrap(), vec![0xe9, 0]);
        assert!(to_wide("a\0b").is_err());
    }

    #[test]
    fn assertion_fields_ask_for_a_touch_on_a_roaming_key() {
        let f = assertion_fields(
            "auths:presence",
            b"cd",
            &[b"one", b"two"],
            Duration::from_secs(30),
            false,
        )
        .unwrap();
        assert_eq!(String::from_utf16_lossy(&f.rp_id), "auths:presence\0");
        assert_eq!(f.client_data.json, b"cd");
        assert_eq!(f.timeout_ms, 30_000);
        assert_eq!(f.options_version, 3, "version 3 has pCancellationId");
        assert_eq!(f.attachment, consts::ATTACHMENT_CROSS_PLATFORM);
        assert_eq!(f.user_verification, consts::USER_VERIFICATION_DISCOURAGED);
        assert_eq!(f.allow_list, vec![b"one".to_vec(), b"two".to_vec()]);
        let uv = assertion_fields(
            "auths:presence",
            b"cd",
            &[b"one"],
            Duration::from_secs(1),
            true,
        )
        .unwrap();
        assert_eq!(uv.user_verification, consts::USER_VERIFICATION_REQUIRED);
    }

    #[test]
    fn timeouts_are_clamped() {
        assert_eq!(timeout_ms(Duration::ZERO), 1);
        assert_eq!(timeout_ms(Duration::from_secs(u64::MAX)), u32::MAX);
    }

    #[test]
    fn make_credential_fields_follow_the_request() {
        let args = MakeCredentialArgs {
            client_data: b"challenge",
            rp: RelyingParty {
                id: "auths:presence",
                name: None,
            },
            user: UserEntity {
                id: b"uid",
                name: Some("auths"),
                display_name: None,
            },
            algorithms: &[Algorithm::EdDsa, Algorithm::Es256],
            exclude_list: &[b"old"],
            pin_token: None,
        };
        let f = make_credential_fields(&args, Duration::from_millis(1500)).unwrap();
        assert_eq!(f.algorithms, vec![-8, -7]);
        assert_eq!(String::from_utf16_lossy(&f.rp_name), "auths:presence\0");
        assert_eq!(String::from_utf16_lossy(&f.user_display_name), "auths\0");
        assert_eq!(f.user_id, b"uid");
        assert_eq!(f.exclude_list, vec![b"old".to_vec()]);
        assert_eq!(f.client_data.json, b"challenge");
        assert_eq!(f.options_version, 2, "version 2 has pCancellationId");
        assert!(!f.require_resident_key);
        assert_eq!(f.timeout_ms, 1500);
        assert_eq!(f.attestation, consts::ATTESTATION_DIRECT);
    }

    #[test]
    fn hresults_map_to_typed_errors() {
        assert!(matches!(
            error_from_hresult(consts::NTE_EXISTS as i32, None, false),
            CtapError::Status(StatusCode::CredentialExcluded)
        ));
        assert!(matches!(
            error_from_hresult(consts::NTE_NOT_FOUND as i32, None, false),
            CtapError::Status(StatusCode::NoCredentials)
        ));
        assert!(matches!(
            error_from_hresult(consts::HRESULT_TIMEOUT as i32, None, false),
            CtapError::Status(StatusCode::UserActionTimeout)
        ));
        assert!(matches!(
            error_from_hresult(
                consts::NTE_USER_CANCELLED as i32,
                Some("NotAllowedError"),
                true
            ),
            CtapError::Cancelled
        ));
        let e = error_from_hresult(
            consts::NTE_USER_CANCELLED as i32,
            Some("NotAllowedError"),
            false,
        );
        let msg = e.to_string();
        assert!(msg.contains("NotAllowedError"), "{msg}");
        assert!(msg.contains("0x80090036"), "{msg}");
        assert!(matches!(
            e,
            CtapError::WebAuthn {
                kind: WebAuthnFailure::Cancelled,
                ..
            }
        ));
        for (code, kind) in [
            (consts::NTE_NOT_SUPPORTED, WebAuthnFailure::NotSupported),
            (consts::E_INVALIDARG, WebAuthnFailure::BadRequest),
            (consts::NTE_INVALID_PARAMETER, WebAuthnFailure::BadRequest),
        ] {
            let e = error_from_hresult(code as i32, None, false);
            assert!(
                matches!(e, CtapError::WebAuthn { kind: k, .. } if k == kind),
                "{e}"
            );
        }
        let e = error_from_hresult(0x8000_4005u32 as i32, None, false);
        assert!(e.to_string().contains("unknown error"));
        assert!(matches!(
            e,
            CtapError::WebAuthn {
                kind: WebAuthnFailure::Other,
                ..
            }
        ));
    }

    fn sample_auth_data(with_credential: bool) -> (Vec<u8>, CoseKey) {
        let sk = p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
        let point = sk.verifying_key().to_encoded_point(false);
        let x: [u8; 32] = point.x().unwrap().as_slice().try_into().unwrap();
        let y: [u8; 32] = point.y().unwrap().as_slice().try_into().unwrap();
        let key = CoseKey::es256_from_coordinates(&x, &y).unwrap();
        let attested = AttestedCredentialData {
            aaguid: [1; 16],
            credential_id: b"cred".to_vec(),
            public_key_cose: key.to_cbor(),
        };
        let rp_hash = crate::ctap::backend::client_data_hash(b"auths:presence");
        (
            build(
                &rp_hash,
                0x01,
                5,
                with_credential.then_some(&attested),
                None,
            ),
            key,
        )
    }

    #[test]
    fn assertion_parts_become_our_response() {
        let (ad, _) = sample_auth_data(false);
        let r = assertion_from_parts(&ad, b"sig", b"cred", b"").unwrap();
        assert_eq!(r.auth_data_raw, ad);
        assert_eq!(r.auth_data.sign_count, 5);
        assert!(r.auth_data.flags.user_present());
        assert_eq!(r.credential.unwrap().id, b"cred");
        assert!(r.user.is_none());
        assert!(assertion_from_parts(&ad, b"", b"cred", b"").is_err());
        assert!(matches!(
            assertion_from_parts(&ad[..20], b"sig", b"cred", b""),
            Err(CtapError::AuthData(_))
        ));
    }

    #[test]
    fn credential_parts_become_our_response() {
        let (ad, key) = sample_auth_data(true);
        let stmt = cbor::encode(&cbor::Value::Map(Vec::new()));
        let r = credential_from_parts("packed", &ad, &stmt).unwrap();
        assert_eq!(r.fmt, "packed");
        let att = r.auth_data.attested_credential_data.unwrap();
        assert_eq!(att.credential_id, b"cred");
        assert_eq!(att.public_key().unwrap(), key);
        assert!(credential_from_parts("none", &ad, b"").is_ok());
        let (no_cred, _) = sample_auth_data(false);
        assert!(credential_from_parts("none", &no_cred, b"").is_err());
        assert!(
            credential_from_parts("packed", &ad, &cbor::encode(&cbor::Value::Bytes(vec![])))
                .is_err()
        );
    }
}
