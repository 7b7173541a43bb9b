//! Agent messages as bytes: pure decode and encode, no I/O (rustls' `msgs/`, ssh-agent-lib's
//! `proto/`). `connection` moves the bytes; this module only says what they mean.
//!
//! - Framing (draft-miller-ssh-agent "Protocol Messages": `uint32 length || byte type ||
//!   contents`): ssh-agent-lib's codec accepts any length, so the cap is ours:
//!   [`frame_len`] refuses a length over [`MAX_MESSAGE_LEN`] (OpenSSH's `AGENT_MAX_LEN`).
//! - Requests: [`decode_request`] is strict: an unknown type, a malformed body or trailing
//!   bytes are refused. The private scalar of an ECDSA key is first put in the fixed-size form
//!   ssh-key reads ([`super::ecdsa`]): OpenSSH drops its leading zero bytes.
//! - Responses: [`encode_response`] frames one.
//! - SSHSIG (OpenSSH `PROTOCOL.sshsig`): [`sshsig_namespace`] reads the namespace of the
//!   signed-data blob `ssh-keygen -Y sign` sends, for the prompt and the grant scope.
//! - Logins: [`payload_kind`] takes data for an ssh login only when [`parse_userauth`] (in
//!   `userauth`, with the session bindings) parses all of it.

use ssh_agent_lib::proto::{ProtoError, Request, Response};
use ssh_encoding::{Decode, Encode, Reader};
use thiserror::Error;

use super::ecdsa::{normalise_add_request, ScalarError};
use super::userauth::{parse_userauth, SESSION_BIND_EXTENSION};
use crate::presence::request::PayloadKind;

/// Largest message body accepted (OpenSSH's `AGENT_MAX_LEN`, 256 KiB).
pub const MAX_MESSAGE_LEN: u32 = 256 * 1024;

/// Extension that wipes every key, plaintext and sealed (`auths agent lock`).
pub const WIPE_EXTENSION: &str = "wipe@auths-presence";

/// Message extensions this agent supports, answered to `query` (draft-miller-ssh-agent-14
/// §3.8.1).
pub const SUPPORTED_EXTENSIONS: &[&str] = &[
    "query",
    SESSION_BIND_EXTENSION,
    WIPE_EXTENSION,
    super::status::STATUS_EXTENSION,
    super::rules::RULES_EXTENSION,
    super::rules::RELOAD_EXTENSION,
    super::refusals::REFUSAL_EXTENSION,
    super::add_file::ADD_FILE_EXTENSION,
];

/// Why a message body is not a request we accept.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body is not a well-formed request of a known type.
    #[error("malformed or unknown request")]
    Malformed(#[source] ProtoError),
    /// An ECDSA key whose private scalar is not a valid mpint of its curve (negative,
    /// over-long, zero, not below the order).
    #[error("the ECDSA private key is refused")]
    EcdsaScalar(#[source] ScalarError),
    /// A well-formed request followed by bytes that belong to nothing.
    #[error("{0} bytes after the end of the request")]
    TrailingBytes(usize),
}

/// A frame header announced a body longer than [`MAX_MESSAGE_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a {0}-byte message was announced; at most {MAX_MESSAGE_LEN} bytes are accepted")]
pub struct TooLarge(pub u32);

/// The body length a frame header announces, if it is within [`MAX_MESSAGE_LEN`].
pub fn frame_len(header: [u8; 4]) -> Result<usize, TooLarge> {
    let len = u32::from_be_bytes(header);
    if len > MAX_MESSAGE_LEN {
        return Err(TooLarge(len));
    }
    usize::try_from(len).map_err(|_| TooLarge(len))
}

/// Decode one message body: malformed, unknown, or with trailing bytes is an error.
pub fn decode_request(body: &[u8]) -> Result<Request, DecodeError> {
    // OpenSSH writes an ECDSA private scalar as a minimal mpint, which ssh-key 0.6 refuses
    // when its leading byte is zero: put it in the fixed-size form first (strictly).
    let fixed = normalise_add_request(body).map_err(DecodeError::EcdsaScalar)?;
    let mut reader = fixed.as_deref().map_or(body, Vec::as_slice);
    let request = Request::decode(&mut reader).map_err(DecodeError::Malformed)?;
    if !reader.is_finished() {
        return Err(DecodeError::TrailingBytes(reader.remaining_len()));
    }
    Ok(request)
}

/// Frame a response: `uint32 length || body`.
pub fn encode_response(response: &Response) -> Result<Vec<u8>, ssh_encoding::Error> {
    let len = response.encoded_len()?;
    let mut out = Vec::with_capacity(4 + len);
    u32::try_from(len)
        .map_err(|_| ssh_encoding::Error::Length)?
        .encode(&mut out)?;
    response.encode(&mut out)?;
    Ok(out)
}

/// The namespace of an SSHSIG signed-data blob (OpenSSH `PROTOCOL.sshsig`): the magic
/// `"SSHSIG"` (no length prefix) then `string namespace`. `None` for other data.
pub fn sshsig_namespace(data: &[u8]) -> Option<String> {
    let rest = data.strip_prefix(b"SSHSIG")?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    let ns = rest.get(..len)?;
    String::from_utf8(ns.to_vec()).ok()
}

/// What kind of bytes a sign request carries: an SSHSIG blob, an ssh user authentication
/// request (strictly parsed by [`parse_userauth`]: RFC 4252 §7, and OpenSSH's hostbound
/// method), or anything else.
pub fn payload_kind(data: &[u8]) -> PayloadKind {
    if sshsig_namespace(data).is_some() {
        return PayloadKind::Sshsig;
    }
    if parse_userauth(data).is_ok() {
        return PayloadKind::Userauth;
    }
    PayloadKind::Other
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    fn ssh_string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&u32::try_from(s.len()).unwrap().to_be_bytes());
        out.extend_from_slice(s);
    }

    /// A login request with a real Ed25519 key (the parser's own cases are in `userauth`).
    fn userauth(session_len: usize, msg: u8, method: &[u8]) -> Vec<u8> {
        let key = ssh_key::private::Ed25519Keypair::from_seed(&[9; 32]).public;
        let mut blob = Vec::new();
        ssh_key::public::KeyData::from(key)
            .encode(&mut blob)
            .unwrap();
        let mut d = Vec::new();
        ssh_string(&mut d, &vec![7; session_len]);
        d.push(msg);
        ssh_string(&mut d, b"git");
        ssh_string(&mut d, b"ssh-connection");
        ssh_string(&mut d, method);
        d.push(1);
        ssh_string(&mut d, b"ssh-ed25519");
        ssh_string(&mut d, &blob);
        d
    }

    #[test]
    fn payload_kinds() {
        let mut sshsig = b"SSHSIG".to_vec();
        ssh_string(&mut sshsig, b"git");
        let mut trailing = userauth(32, 50, b"publickey");
        trailing.push(0);
        let cases: [(&[u8], PayloadKind); 10] = [
            (&sshsig, PayloadKind::Sshsig),
            (&userauth(32, 50, b"publickey"), PayloadKind::Userauth),
            (&userauth(64, 50, b"publickey"), PayloadKind::Userauth),
            // A session id longer than any exchange hash, or none.
            (&userauth(65, 50, b"publickey"), PayloadKind::Other),
            (&userauth(0, 50, b"publickey"), PayloadKind::Other),
            // Another message, another method, a byte too many.
            (&userauth(32, 51, b"publickey"), PayloadKind::Other),
            (&userauth(32, 50, b"password"), PayloadKind::Other),
            (&trailing, PayloadKind::Other),
            (b"a git object, forged", PayloadKind::Other),
            (&[0xff; 3], PayloadKind::Other),
        ];
        for (data, want) in cases {
            assert_eq!(payload_kind(data), want, "{data:?}");
        }
    }

    #[test]
    fn sshsig_namespace_parses() {
        let mut blob = b"SSHSIG".to_vec();
        blob.extend_from_slice(&3u32.to_be_bytes());
        blob.extend_from_slice(b"git");
        blob.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(sshsig_namespace(&blob).as_deref(), Some("git"));
        assert_eq!(sshsig_namespace(b"SSHSIG\0\0\0\x09git"), None);
        assert_eq!(sshsig_namespace(b"SSHSI"), None);
        assert_eq!(sshsig_namespace(b"\0\0\0\x20session-id..."), None);
        assert_eq!(sshsig_namespace(b"SSHSIG\0\0\0\x01\xff"), None);
    }

    #[test]
    fn decode_refuses_garbage_and_trailing_bytes() {
        assert!(matches!(
            decode_request(&[11]),
            Ok(Request::RequestIdentities)
        ));
        assert!(matches!(
            decode_request(&[11, 0]),
            Err(DecodeError::TrailingBytes(1))
        ));
        assert!(matches!(
            decode_request(&[]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_request(&[200]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(decode_request(&[13, 0, 0, 0, 50, 1]).is_err());
    }

    /// A P-256 scalar whose first byte is zero (one ssh-keygen key in 256), and its point.
    fn short_scalar(zeros: usize) -> ([u8; 32], Vec<u8>) {
        let mut d = [0u8; 32];
        for (i, b) in d.iter_mut().enumerate().skip(zeros) {
            *b = 0x40 + i as u8;
        }
        let q = p256::SecretKey::from_slice(&d)
            .unwrap()
            .public_key()
            .to_encoded_point(false);
        (d, q.as_bytes().to_vec())
    }

    /// `SSH_AGENTC_ADD_IDENTITY` of a P-256 key as ssh-add writes it (draft-miller-ssh-agent
    /// §3.2): `string alg, string curve, string Q, mpint d, string comment`.
    fn ecdsa_add(q: &[u8], mpint: &[u8]) -> Vec<u8> {
        let mut m = vec![17];
        ssh_string(&mut m, b"ecdsa-sha2-nistp256");
        ssh_string(&mut m, b"nistp256");
        ssh_string(&mut m, q);
        ssh_string(&mut m, mpint);
        ssh_string(&mut m, b"short");
        m
    }

    fn added_scalar(body: &[u8]) -> Result<Vec<u8>, DecodeError> {
        match decode_request(body)? {
            Request::AddIdentity(ssh_agent_lib::proto::AddIdentity {
                credential: ssh_agent_lib::proto::PrivateCredential::Key { privkey, comment },
            }) => {
                assert_eq!(comment, "short");
                Ok(privkey.ecdsa().unwrap().private_key_bytes().to_vec())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ecdsa_scalars_without_their_leading_zeros_decode() {
        for zeros in [1, 2] {
            let (d, q) = short_scalar(zeros);
            // OpenSSH's mpint drops the leading zero bytes: 31 and 30 bytes.
            assert_eq!(added_scalar(&ecdsa_add(&q, &d[zeros..])).unwrap(), d);
            // The fixed-size form ssh-key writes.
            assert_eq!(added_scalar(&ecdsa_add(&q, &d)).unwrap(), d);
        }
    }

    #[test]
    fn ecdsa_scalar_forms_are_strict() {
        // Top bit set: OpenSSH adds a sign byte (33 bytes); without it the mpint is negative.
        let mut d = [0x99u8; 32];
        d[31] = 1;
        let q = p256::SecretKey::from_slice(&d)
            .unwrap()
            .public_key()
            .to_encoded_point(false);
        let mut signed = vec![0];
        signed.extend_from_slice(&d);
        assert_eq!(added_scalar(&ecdsa_add(q.as_bytes(), &signed)).unwrap(), d);
        let refused = |mpint: &[u8]| match decode_request(&ecdsa_add(q.as_bytes(), mpint)) {
            Err(DecodeError::EcdsaScalar(e)) => e,
            other => panic!("{mpint:?}: {other:?}"),
        };
        assert_eq!(refused(&d), ScalarError::Negative);
        let mut over = vec![0, 0];
        over.extend_from_slice(&d);
        assert_eq!(refused(&over), ScalarError::TooLong { len: 34, size: 32 });
        assert_eq!(refused(&[]), ScalarError::Zero);
        assert_eq!(refused(&[0]), ScalarError::Zero);
        let mut n = vec![0];
        n.extend(
            hex::decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
                .unwrap(),
        );
        assert_eq!(refused(&n), ScalarError::NotBelowOrder);
        // A body that ends inside the scalar is still the decoder's to refuse.
        let whole = ecdsa_add(q.as_bytes(), &signed);
        assert!(matches!(
            decode_request(&whole[..whole.len() - 12]),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn constrained_ecdsa_add_with_a_short_scalar_decodes() {
        let (d, q) = short_scalar(1);
        let mut body = ecdsa_add(&q, &d[1..]);
        body[0] = 25;
        body.push(1); // SSH_AGENT_CONSTRAIN_LIFETIME
        body.extend_from_slice(&60u32.to_be_bytes());
        match decode_request(&body).unwrap() {
            Request::AddIdConstrained(a) => {
                let ssh_agent_lib::proto::PrivateCredential::Key { privkey, .. } =
                    a.identity.credential
                else {
                    panic!("not a key")
                };
                assert_eq!(privkey.ecdsa().unwrap().private_key_bytes(), d);
                assert_eq!(a.constraints.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    /// The fuzz seeds of short-scalar adds (fuzz/seeds.py) decode to a key whose point is its
    /// scalar's.
    #[test]
    fn short_scalar_fuzz_seeds_decode() {
        for seed in [
            &include_bytes!("../../fuzz/seeds/agent_message/add-ecdsa-short-scalar-4fd53ef9")[..],
            include_bytes!(
                "../../fuzz/seeds/agent_message/add-constrained-ecdsa-short-scalar-e362a1d4"
            ),
        ] {
            let (Request::AddIdentity(ssh_agent_lib::proto::AddIdentity { credential })
            | Request::AddIdConstrained(ssh_agent_lib::proto::AddIdentityConstrained {
                identity: ssh_agent_lib::proto::AddIdentity { credential },
                ..
            })) = decode_request(seed).unwrap()
            else {
                panic!("not an add")
            };
            let ssh_agent_lib::proto::PrivateCredential::Key { privkey, .. } = credential else {
                panic!("not a key")
            };
            let k = privkey.ecdsa().unwrap();
            assert_eq!(k.private_key_bytes()[0], 0);
            let q = p256::SecretKey::from_slice(k.private_key_bytes())
                .unwrap()
                .public_key()
                .to_encoded_point(false);
            assert_eq!(q.as_bytes(), k.public_key_bytes());
        }
    }

    #[test]
    fn frame_header_is_capped_at_openssh_limit() {
        assert_eq!(frame_len([0, 0, 0, 1]), Ok(1));
        assert_eq!(
            frame_len(MAX_MESSAGE_LEN.to_be_bytes()),
            Ok(MAX_MESSAGE_LEN as usize)
        );
        assert_eq!(
            frame_len((MAX_MESSAGE_LEN + 1).to_be_bytes()),
            Err(TooLarge(MAX_MESSAGE_LEN + 1))
        );
        assert_eq!(frame_len([0xff; 4]), Err(TooLarge(u32::MAX)));
    }

    #[test]
    fn failure_frame() {
        assert_eq!(
            encode_response(&Response::Failure).unwrap(),
            vec![0, 0, 0, 1, 5]
        );
    }

    #[test]
    fn encoded_response_decodes_back() {
        let bytes = encode_response(&Response::Success).unwrap();
        let len = frame_len(bytes[..4].try_into().unwrap()).unwrap();
        let mut body = &bytes[4..];
        assert_eq!(body.len(), len);
        assert!(matches!(
            Response::decode(&mut body).unwrap(),
            Response::Success
        ));
    }
}
