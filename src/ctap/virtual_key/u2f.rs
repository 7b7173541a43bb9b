//! The virtual key's U2F (CTAP1) side, for `auths sim serve --u2f-only`: the request APDUs a
//! U2F-only key takes in CTAPHID_MSG (FIDO U2F Raw Message Formats v1.2 §4 to §6). Pure: the
//! touch is asked for through a callback that [`super::hid`] answers from its touch mode.
//!
//! - U2F_VERSION answers `U2F_V2`.
//! - U2F_REGISTER (needs a touch, else SW_CONDITIONS_NOT_SATISFIED): a new P-256 key, wrapped
//!   into a key handle exactly as the CTAP2 side wraps credential ids
//!   ([`Authenticator::wrap`], the application parameter in the rp id hash's place), so a
//!   U2F key handle and a CTAP2 credential id of the same rp id are the same thing.
//! - U2F_AUTHENTICATE: 0x07 check-only answers 0x6985 for our handles and 0x6a80 for others;
//!   0x03 needs a touch and signs with the counter the CTAP2 side uses (one persisted counter);
//!   0x08 signs without a touch (user presence byte 0).
//!
//! # Attestation
//!
//! There is no X.509 builder in the tree, so the virtual key sends one fixed certificate,
//! [`ATTESTATION_CERTIFICATE`]: self-signed, subject `O=auths-presence, OU=VIRTUAL KEY - NOT
//! HARDWARE, CN=auths virtual key U2F attestation`, made once with openssl for the fixed key
//! [`attestation_key`], whose private half is in this file. It is public on purpose: this
//! attestation proves nothing and can never pass for a vendor's.

use super::authenticator::{Authenticator, CredentialKey};
use crate::ctap::command::Algorithm;
use crate::ctap::u2f::{
    auth_control, ins, sw, PUBLIC_KEY_LEN, REGISTER_DATA_LEN, REGISTRATION_RESERVED,
    REGISTRATION_SIGNED_PREFIX, USER_PRESENT, VERSION_U2F_V2,
};

/// The virtual key's fixed attestation certificate (DER; see the module docs).
pub const ATTESTATION_CERTIFICATE: &[u8] = include_bytes!("u2f_attestation.der");

/// The private scalar of the key in [`ATTESTATION_CERTIFICATE`]: public, as the certificate
/// says (VIRTUAL KEY - NOT HARDWARE).
const ATTESTATION_SCALAR: [u8; 32] = [
    0xa4, 0x7d, 0xd7, 0xef, 0x8c, 0xa0, 0x62, 0x90, 0xf0, 0x3a, 0x12, 0x55, 0xf3, 0xb3, 0xdb, 0xb1,
    0x54, 0x8e, 0x71, 0xc9, 0xbf, 0xa2, 0x5d, 0x57, 0x5d, 0xf6, 0xc6, 0xdb, 0xbd, 0xd8, 0x73, 0x4e,
];

/// The virtual key's attestation signing key (its public half is in the certificate).
pub fn attestation_key() -> p256::ecdsa::SigningKey {
    // A fixed scalar in [1, n): this cannot fail; the fallback keeps the function total.
    p256::ecdsa::SigningKey::from_bytes(&ATTESTATION_SCALAR.into())
        .unwrap_or_else(|_| p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng))
}

/// A request APDU: CLA 00 and its INS, P1 and data (short or extended length encoding).
#[derive(Debug, PartialEq, Eq)]
struct Apdu<'a> {
    ins: u8,
    p1: u8,
    data: &'a [u8],
}

/// Parse a request APDU (ISO 7816-4 §5.1): header, then nothing, or extended `00 Lc1 Lc2
/// data [Le1 Le2]` (Lc may be 0, as libfido2 sends VERSION), or short `Lc data [Le]`.
fn parse_apdu(apdu: &[u8]) -> Result<Apdu<'_>, u16> {
    let (header, body) = apdu.split_at_checked(4).ok_or(sw::WRONG_LENGTH)?;
    if header[0] != 0 {
        return Err(sw::CLA_NOT_SUPPORTED);
    }
    let data = match body {
        [] | [_] => &[][..],
        [0, hi, lo, rest @ ..] => {
            let lc = usize::from(u16::from_be_bytes([*hi, *lo]));
            match rest.len().checked_sub(lc) {
                Some(0) | Some(2) => &rest[..lc],
                _ => return Err(sw::WRONG_LENGTH),
            }
        }
        [lc, rest @ ..] => {
            let lc = usize::from(*lc);
            match rest.len().checked_sub(lc) {
                Some(0) | Some(1) => &rest[..lc],
                _ => return Err(sw::WRONG_LENGTH),
            }
        }
    };
    Ok(Apdu {
        ins: header[1],
        p1: header[2],
        data,
    })
}

fn status(sw: u16) -> Vec<u8> {
    sw.to_be_bytes().to_vec()
}

fn ok(mut data: Vec<u8>) -> Vec<u8> {
    data.extend_from_slice(&sw::NO_ERROR.to_be_bytes());
    data
}

/// Answer one request APDU. `touched` is asked only when the request needs a touch and is
/// otherwise valid: `true` consumes one touch, `false` answers SW_CONDITIONS_NOT_SATISFIED
/// (and the key blinks).
pub fn handle(
    authenticator: &mut Authenticator,
    apdu: &[u8],
    touched: &mut dyn FnMut() -> bool,
) -> Vec<u8> {
    let request = match parse_apdu(apdu) {
        Ok(r) => r,
        Err(sw) => return status(sw),
    };
    let answer = match request.ins {
        ins::VERSION if request.data.is_empty() => Ok(ok(VERSION_U2F_V2.to_vec())),
        ins::VERSION => Err(sw::WRONG_LENGTH),
        ins::REGISTER => register(authenticator, request.data, touched),
        ins::AUTHENTICATE => authenticate(authenticator, request.p1, request.data, touched),
        _ => Err(sw::INS_NOT_SUPPORTED),
    };
    answer.unwrap_or_else(status)
}

fn split_params(data: &[u8]) -> ([u8; 32], [u8; 32]) {
    let mut challenge = [0u8; 32];
    let mut application = [0u8; 32];
    challenge.copy_from_slice(&data[..32]);
    application.copy_from_slice(&data[32..64]);
    (challenge, application)
}

fn register(
    authenticator: &mut Authenticator,
    data: &[u8],
    touched: &mut dyn FnMut() -> bool,
) -> Result<Vec<u8>, u16> {
    if data.len() != REGISTER_DATA_LEN {
        return Err(sw::WRONG_LENGTH);
    }
    if !touched() {
        return Err(sw::CONDITIONS_NOT_SATISFIED);
    }
    let (challenge, application) = split_params(data);
    let key = CredentialKey::generate(Algorithm::Es256);
    let handle = authenticator
        .wrap(&application, &key)
        .map_err(|_| OTHER_ERROR)?;
    let point = uncompressed_point(&key).ok_or(OTHER_ERROR)?;
    let handle_len = u8::try_from(handle.len()).map_err(|_| OTHER_ERROR)?;
    let mut signed = vec![REGISTRATION_SIGNED_PREFIX];
    signed.extend_from_slice(&application);
    signed.extend_from_slice(&challenge);
    signed.extend_from_slice(&handle);
    signed.extend_from_slice(&point);
    let signature: p256::ecdsa::Signature =
        p256::ecdsa::signature::Signer::sign(&attestation_key(), &signed);
    let mut out = vec![REGISTRATION_RESERVED];
    out.extend_from_slice(&point);
    out.push(handle_len);
    out.extend_from_slice(&handle);
    out.extend_from_slice(ATTESTATION_CERTIFICATE);
    out.extend_from_slice(signature.to_der().as_bytes());
    Ok(ok(out))
}

/// The status word of a failure inside the key (ISO 7816 "no precise diagnosis").
const OTHER_ERROR: u16 = 0x6f00;

fn uncompressed_point(key: &CredentialKey) -> Option<[u8; PUBLIC_KEY_LEN]> {
    let crate::ctap::cose::CoseKey::Es256(vk) = key.public_key()? else {
        return None;
    };
    vk.to_encoded_point(false).as_bytes().try_into().ok()
}

fn authenticate(
    authenticator: &mut Authenticator,
    control: u8,
    data: &[u8],
    touched: &mut dyn FnMut() -> bool,
) -> Result<Vec<u8>, u16> {
    let (params, rest) = data.split_at_checked(64).ok_or(sw::WRONG_LENGTH)?;
    let (&len, handle) = rest.split_first().ok_or(sw::WRONG_LENGTH)?;
    if handle.len() != usize::from(len) {
        return Err(sw::WRONG_LENGTH);
    }
    let (challenge, application) = split_params(params);
    let key = authenticator
        .unwrap_id(&application, handle)
        .filter(|k| k.alg == Algorithm::Es256)
        .ok_or(sw::WRONG_DATA)?;
    let user_presence = match control {
        auth_control::CHECK_ONLY => return Err(sw::CONDITIONS_NOT_SATISFIED),
        auth_control::ENFORCE_USER_PRESENCE_AND_SIGN if !touched() => {
            return Err(sw::CONDITIONS_NOT_SATISFIED)
        }
        auth_control::ENFORCE_USER_PRESENCE_AND_SIGN => USER_PRESENT,
        DONT_ENFORCE_USER_PRESENCE_AND_SIGN => 0,
        _ => return Err(sw::WRONG_DATA),
    };
    let counter = authenticator.next_counter().map_err(|_| OTHER_ERROR)?;
    let mut signed = application.to_vec();
    signed.push(user_presence);
    signed.extend_from_slice(&counter.to_be_bytes());
    signed.extend_from_slice(&challenge);
    let signature = key.sign(&signed).ok_or(OTHER_ERROR)?;
    let mut out = vec![user_presence];
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(&signature);
    Ok(ok(out))
}

/// P1 of an authentication without a touch (Raw Message Formats §5.1).
const DONT_ENFORCE_USER_PRESENCE_AND_SIGN: u8 = 0x08;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctap::u2f::{
        authenticate_data, register_data, request_apdu, split_status, Authentication, Registration,
        StatusWord,
    };
    use crate::ctap::virtual_key::state::KeyState;

    /// SHA-256 of an rp id: the application parameter.
    fn application(rp_id: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(rp_id.as_bytes()).into()
    }

    fn run(a: &mut Authenticator, apdu: &[u8], touch: bool) -> (Vec<u8>, StatusWord) {
        let r = handle(a, apdu, &mut || touch);
        let (data, sw) = split_status(&r).unwrap();
        (data.to_vec(), sw)
    }

    #[test]
    fn register_then_check_and_sign() {
        let mut a = Authenticator::new(KeyState::in_memory());
        let (app, chal) = (application("auths:presence"), [7u8; 32]);
        let reg = request_apdu(ins::REGISTER, 0, &register_data(&chal, &app)).unwrap();
        assert_eq!(
            run(&mut a, &reg, false).1,
            StatusWord::ConditionsNotSatisfied
        );
        let (data, sw) = run(&mut a, &reg, true);
        assert_eq!(sw, StatusWord::NoError);
        let r = Registration::parse(&data).unwrap();
        r.verify(&app, &chal).unwrap();
        assert_eq!(r.certificate, ATTESTATION_CERTIFICATE);

        let auth = |p1, handle: &[u8], app: &[u8; 32]| {
            request_apdu(
                ins::AUTHENTICATE,
                p1,
                &authenticate_data(&chal, app, handle).unwrap(),
            )
            .unwrap()
        };
        let check = auth(auth_control::CHECK_ONLY, &r.key_handle, &app);
        assert_eq!(
            run(&mut a, &check, true).1,
            StatusWord::ConditionsNotSatisfied
        );
        let other_app = auth(auth_control::CHECK_ONLY, &r.key_handle, &[0; 32]);
        assert_eq!(run(&mut a, &other_app, true).1, StatusWord::WrongData);
        let mut flipped = r.key_handle.clone();
        flipped[20] ^= 1;
        let foreign = auth(auth_control::CHECK_ONLY, &flipped, &app);
        assert_eq!(run(&mut a, &foreign, true).1, StatusWord::WrongData);

        let sign = auth(
            auth_control::ENFORCE_USER_PRESENCE_AND_SIGN,
            &r.key_handle,
            &app,
        );
        assert_eq!(
            run(&mut a, &sign, false).1,
            StatusWord::ConditionsNotSatisfied
        );
        let before = a.counter();
        let (data, sw) = run(&mut a, &sign, true);
        assert_eq!(sw, StatusWord::NoError);
        let s = Authentication::parse(&data).unwrap();
        assert_eq!((s.user_presence, s.counter), (1, before + 1));
        let mut msg = s.auth_data(&app);
        msg.extend_from_slice(&chal);
        r.cose_key().unwrap().verify(&msg, &s.signature).unwrap();
    }

    #[test]
    fn malformed_requests_get_their_status_words() {
        let mut a = Authenticator::new(KeyState::in_memory());
        let version = request_apdu(ins::VERSION, 0, &[]).unwrap();
        assert_eq!(
            run(&mut a, &version, false),
            (b"U2F_V2".to_vec(), StatusWord::NoError)
        );
        // Short encoding and no body at all work too.
        assert_eq!(run(&mut a, &[0, 3, 0, 0], false).1, StatusWord::NoError);
        assert_eq!(run(&mut a, &[0, 3, 0, 0, 0], false).1, StatusWord::NoError);
        assert_eq!(run(&mut a, &[0, 3], false).1, StatusWord::WrongLength);
        assert_eq!(
            run(&mut a, &[0x80, 3, 0, 0], false).1,
            StatusWord::ClaNotSupported
        );
        assert_eq!(
            run(&mut a, &request_apdu(0x40, 0, &[]).unwrap(), false).1,
            StatusWord::InsNotSupported
        );
        let short_reg = request_apdu(ins::REGISTER, 0, &[0; 63]).unwrap();
        assert_eq!(run(&mut a, &short_reg, true).1, StatusWord::WrongLength);
        // Lc that claims more than is there.
        assert_eq!(
            run(&mut a, &[0, 1, 0, 0, 0, 0, 64, 1, 2], true).1,
            StatusWord::WrongLength
        );
        let bad_len = request_apdu(ins::AUTHENTICATE, 3, &[0; 66]).unwrap();
        assert_eq!(run(&mut a, &bad_len, true).1, StatusWord::WrongLength);
    }
}
