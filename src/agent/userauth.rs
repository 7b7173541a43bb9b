//! ssh user authentication as the agent sees it, pure parsing and checks, no I/O:
//!
//! - [`parse_userauth`]: the data a client asks us to sign for a publickey login (RFC 4252 §7;
//!   draft-miller-ssh-agent "Private key operations"): `string session identifier`, `byte
//!   SSH_MSG_USERAUTH_REQUEST`, `string user name`, `string service name`, `string method`,
//!   `boolean TRUE`, `string public key algorithm name`, `string public key blob`, and for
//!   OpenSSH's `publickey-hostbound-v00@openssh.com` method (OpenSSH `PROTOCOL` §3.1) a
//!   trailing `string server host key`. The same checks as OpenSSH's `parse_userauth_request`
//!   (service `ssh-connection`, the algorithm names the key's type), with every length bounded
//!   and nothing after the end.
//! - [`parse_session_bind`]: the body of the `session-bind@openssh.com` extension (OpenSSH
//!   `PROTOCOL.agent` §1): `string hostkey`, `string session identifier`, `string signature`,
//!   `bool is_forwarding`.
//! - [`Bindings`]: what one connection was bound to, with OpenSSH's rules
//!   (`process_ext_session_bind`, and the checks `process_sign_request2` and
//!   `identity_permitted` make for destination-constrained keys, which we make for every
//!   login): at most [`MAX_BINDINGS`]; nothing binds after a binding for authentication; a
//!   session identifier is never bound to two host keys; a login is signed only for the session
//!   the connection was last bound to, never on a forwarding hop, and its host key (when it
//!   names one) must be that session's.
//!
//! What a login names is display text for the prompt ([`LoginDetails`]): the user name is
//! escaped, the host key is shown only when a verified binding vouches for it.

use ssh_encoding::{Decode, Reader};
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, Certificate, HashAlg, Signature};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::presence::prompt::escape_control;
use crate::presence::request::LoginDetails;

/// The extension that binds a connection to an ssh session (OpenSSH `PROTOCOL.agent` §1).
pub const SESSION_BIND_EXTENSION: &str = "session-bind@openssh.com";

/// Most bindings one connection records (OpenSSH's `AGENT_MAX_SESSION_IDS`).
pub const MAX_BINDINGS: usize = 16;

/// Longest session identifier accepted: an exchange hash, at most SHA-512's 64 bytes (RFC 4253
/// §7.2; OpenSSH's agent allows 128, no key exchange makes more than 64).
pub const MAX_SESSION_ID_LEN: usize = 64;

/// Longest user name accepted in a login (OpenSSH caps user names in key constraints at 256).
pub const MAX_USER_LEN: usize = 256;

/// Longest service, method or algorithm name (RFC 4251 §6: names are at most 64 characters).
const MAX_NAME_LEN: usize = 64;

/// Longest key blob or signature: a 16384-bit RSA key is about 2 KiB, a certificate with many
/// principals a few more.
const MAX_BLOB_LEN: usize = 16 * 1024;

/// `SSH_MSG_USERAUTH_REQUEST` (RFC 4250 §4.1.2).
const SSH_MSG_USERAUTH_REQUEST: u8 = 50;

/// The only service a login is for (RFC 4252 §7; OpenSSH's agent checks it too).
const SERVICE: &str = "ssh-connection";

/// OpenSSH's publickey method that also names the server's host key (`PROTOCOL` §3.1).
const HOSTBOUND_METHOD: &str = "publickey-hostbound-v00@openssh.com";

/// Which publickey method a login uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `publickey` (RFC 4252 §7).
    Publickey,
    /// `publickey-hostbound-v00@openssh.com`: the request ends with the server's host key.
    Hostbound,
}

/// A server host key as it travels: the exact blob (compared byte for byte) and the public key
/// it holds (a host certificate's key for a certified host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    blob: Vec<u8>,
    key: KeyData,
}

impl HostKey {
    /// Parse a host key blob: a plain public key or an OpenSSH host certificate, and nothing
    /// after it. A certificate's signature is not checked: its key is what signs the session.
    pub fn parse(blob: &[u8]) -> Result<HostKey, ssh_key::Error> {
        let mut reader = blob;
        let algorithm = peek_name(blob).ok_or(ssh_key::Error::FormatEncoding)?;
        let key = if algorithm.ends_with("-cert-v01@openssh.com") {
            Certificate::decode(&mut reader)?.public_key().clone()
        } else {
            KeyData::decode(&mut reader)?
        };
        if !reader.is_finished() {
            return Err(ssh_key::Error::TrailingData {
                remaining: reader.remaining_len(),
            });
        }
        Ok(HostKey {
            blob: blob.to_vec(),
            key,
        })
    }

    /// `SHA256:…`, of the key (for a certificate, of its key, as OpenSSH shows it).
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }
}

/// A publickey login request, as parsed from the data of a sign request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Userauth {
    /// The session identifier (exchange hash) the login is for.
    pub session_id: Vec<u8>,
    /// The user name on the server, escaped for display.
    pub user: String,
    /// Always `ssh-connection`.
    pub service: String,
    /// Which publickey method.
    pub method: Method,
    /// The identity key the login offers.
    pub key: KeyData,
    /// The server's host key, when the method names it (claimed by the client: only a
    /// binding verifies it).
    pub host_key: Option<HostKey>,
}

impl Userauth {
    /// True when the login offers `key`: OpenSSH signs a login only with the key it names.
    pub fn offers(&self, key: &KeyData) -> bool {
        &self.key == key
    }
}

/// Why bytes are not a publickey login request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UserauthError {
    /// The data ends inside a field.
    #[error("the login request ends inside its {0}")]
    Truncated(&'static str),
    /// A field is longer than we accept.
    #[error("the login request's {field} is {len} bytes, more than {max}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The most accepted.
        max: usize,
    },
    /// An empty session identifier.
    #[error("the login request has an empty session identifier")]
    EmptySessionId,
    /// Another message than `SSH_MSG_USERAUTH_REQUEST`.
    #[error("message {0} is not SSH_MSG_USERAUTH_REQUEST")]
    NotUserauthRequest(u8),
    /// A name that is not UTF-8.
    #[error("the login request's {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// A service other than `ssh-connection`.
    #[error("the login is for another service than ssh-connection")]
    Service,
    /// A method other than the two publickey ones.
    #[error("the login method is not publickey")]
    Method,
    /// The boolean is not TRUE: the request carries no signature.
    #[error("the login request does not ask for a signature")]
    NoSignature,
    /// The key blob or the host key blob does not parse.
    #[error("the login request's {field} does not parse: {source}")]
    Key {
        /// Which key.
        field: &'static str,
        /// Why.
        #[source]
        source: ssh_key::Error,
    },
    /// The algorithm name is not the offered key's.
    #[error("the login request's algorithm is not its key's")]
    AlgorithmMismatch,
    /// Bytes after the end of the request.
    #[error("{0} bytes after the end of the login request")]
    TrailingBytes(usize),
}

/// Parse `data` as a publickey login request (see the module docs).
pub fn parse_userauth(data: &[u8]) -> Result<Userauth, UserauthError> {
    let mut rest = data;
    let session_id = field(&mut rest, "session identifier", MAX_SESSION_ID_LEN)?;
    if session_id.is_empty() {
        return Err(UserauthError::EmptySessionId);
    }
    let (&msg, tail) = rest
        .split_first()
        .ok_or(UserauthError::Truncated("message number"))?;
    rest = tail;
    if msg != SSH_MSG_USERAUTH_REQUEST {
        return Err(UserauthError::NotUserauthRequest(msg));
    }
    let user = utf8(&mut rest, "user name", MAX_USER_LEN)?;
    if utf8(&mut rest, "service name", MAX_NAME_LEN)? != SERVICE {
        return Err(UserauthError::Service);
    }
    let method = match utf8(&mut rest, "method name", MAX_NAME_LEN)? {
        "publickey" => Method::Publickey,
        HOSTBOUND_METHOD => Method::Hostbound,
        _ => return Err(UserauthError::Method),
    };
    let (&signs, tail) = rest
        .split_first()
        .ok_or(UserauthError::Truncated("signature flag"))?;
    rest = tail;
    if signs != 1 {
        return Err(UserauthError::NoSignature);
    }
    let algorithm = utf8(&mut rest, "algorithm name", MAX_NAME_LEN)?;
    let key_blob = field(&mut rest, "public key", MAX_BLOB_LEN)?;
    // A certificate login (`…-cert-v01@openssh.com`) offers the key it certifies.
    let (algorithm, key) = match algorithm.strip_suffix(CERT_SUFFIX) {
        Some(plain) => (
            plain,
            decode_whole_certificate(key_blob).map_err(|source| UserauthError::Key {
                field: "public key",
                source,
            })?,
        ),
        None => (
            algorithm,
            decode_whole(key_blob).map_err(|source| UserauthError::Key {
                field: "public key",
                source,
            })?,
        ),
    };
    if !names_key(algorithm, &key) {
        return Err(UserauthError::AlgorithmMismatch);
    }
    let host_key = match method {
        Method::Publickey => None,
        Method::Hostbound => {
            let blob = field(&mut rest, "host key", MAX_BLOB_LEN)?;
            Some(HostKey::parse(blob).map_err(|source| UserauthError::Key {
                field: "host key",
                source,
            })?)
        }
    };
    if !rest.is_empty() {
        return Err(UserauthError::TrailingBytes(rest.len()));
    }
    Ok(Userauth {
        session_id: session_id.to_vec(),
        user: escape_control(user),
        service: SERVICE.to_owned(),
        method,
        key,
        host_key,
    })
}

/// The algorithm name is one the key signs with: its own, or for RSA any of `ssh-rsa`,
/// `rsa-sha2-256` and `rsa-sha2-512` (OpenSSH's `sshkey_type_from_name` check).
fn names_key(algorithm: &str, key: &KeyData) -> bool {
    match (Algorithm::new(algorithm), key.algorithm()) {
        (Ok(Algorithm::Rsa { .. }), Algorithm::Rsa { .. }) => true,
        (Ok(named), own) => named == own,
        (Err(_), _) => false,
    }
}

/// A `session-bind@openssh.com` request, parsed but not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionBind {
    /// The server's host key.
    pub host_key: HostKey,
    /// The session identifier (exchange hash).
    pub session_id: Vec<u8>,
    /// The host key's signature over the session identifier, from the key exchange.
    pub signature: Signature,
    /// The client binds this connection to forward the agent, not to log in.
    pub forwarding: bool,
}

/// Why a `session-bind@openssh.com` request is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BindError {
    /// The body ends inside a field.
    #[error("the session bind ends inside its {0}")]
    Truncated(&'static str),
    /// A field is longer than we accept.
    #[error("the session bind's {field} is {len} bytes, more than {max}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The most accepted.
        max: usize,
    },
    /// An empty session identifier.
    #[error("the session bind has an empty session identifier")]
    EmptySessionId,
    /// The host key or the signature does not parse.
    #[error("the session bind's {field} does not parse: {source}")]
    Blob {
        /// Which field.
        field: &'static str,
        /// Why.
        #[source]
        source: ssh_key::Error,
    },
    /// A boolean other than 0 or 1 (RFC 4251 §5: only those may be sent).
    #[error("the session bind's forwarding flag is {0}, not 0 or 1")]
    Flag(u8),
    /// Bytes after the end of the request.
    #[error("{0} bytes after the end of the session bind")]
    TrailingBytes(usize),
    /// The signature is not the host key's over the session identifier.
    #[error("the host key's signature over the session identifier does not verify")]
    BadSignature,
    /// The connection is already bound for authentication: nothing binds after that.
    #[error("the connection is already bound for a login; it cannot be bound again")]
    AfterAuthentication,
    /// The session identifier is already bound to another host key.
    #[error("the session identifier is already bound to another host key")]
    SessionOfAnotherHost,
    /// [`MAX_BINDINGS`] bindings are recorded already.
    #[error("the connection already has {MAX_BINDINGS} session bindings")]
    TooMany,
}

/// Parse the body of a `session-bind@openssh.com` extension (after its name).
pub fn parse_session_bind(details: &[u8]) -> Result<SessionBind, BindError> {
    let mut rest = details;
    let host_key = bind_field(&mut rest, "host key", MAX_BLOB_LEN)?;
    let host_key = HostKey::parse(host_key).map_err(|source| BindError::Blob {
        field: "host key",
        source,
    })?;
    let session_id = bind_field(&mut rest, "session identifier", MAX_SESSION_ID_LEN)?;
    if session_id.is_empty() {
        return Err(BindError::EmptySessionId);
    }
    let signature = bind_field(&mut rest, "signature", MAX_BLOB_LEN)?;
    let signature = decode_signature(signature).map_err(|source| BindError::Blob {
        field: "signature",
        source,
    })?;
    let (&flag, tail) = rest
        .split_first()
        .ok_or(BindError::Truncated("forwarding flag"))?;
    let forwarding = match flag {
        0 => false,
        1 => true,
        other => return Err(BindError::Flag(other)),
    };
    if !tail.is_empty() {
        return Err(BindError::TrailingBytes(tail.len()));
    }
    Ok(SessionBind {
        host_key,
        session_id: session_id.to_vec(),
        signature,
        forwarding,
    })
}

impl SessionBind {
    /// Check the host key's signature over the session identifier (Ed25519, ECDSA P-256/384/521
    /// and RSA with SHA-2, as ssh-key verifies them).
    pub fn verify(&self) -> Result<(), BindError> {
        use p256::ecdsa::signature::Verifier;
        self.host_key
            .key
            .verify(&self.session_id, &self.signature)
            .map_err(|_| BindError::BadSignature)
    }
}

/// One recorded binding.
#[derive(Debug, Clone)]
struct Binding {
    host_key: HostKey,
    session_id: Vec<u8>,
    forwarding: bool,
}

/// What a successful bind did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// A new binding was recorded.
    Recorded,
    /// The same session and host key were bound already; nothing changed.
    AlreadyBound,
}

/// Why a login is not signed on this connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The login offers another key than the one asked to sign it.
    #[error("the login request offers another key than the one asked to sign it")]
    OtherKey,
    /// The login's session is not the one the connection was last bound to.
    #[error("the login is for another ssh session than the one this connection is bound to")]
    SessionMismatch,
    /// The connection was last bound for forwarding: a login there would be signed on a hop.
    #[error("the connection is bound for agent forwarding, not for a login")]
    ForwardingHop,
    /// A forwarded login that does not name its server's host key.
    #[error("a forwarded login must name the server's host key (publickey-hostbound)")]
    NoHostKey,
    /// The login names another host key than the one its session was bound with.
    #[error("the login names another host key than its session was bound to")]
    HostKeyMismatch,
}

/// The bindings of one connection, in the order they were made.
#[derive(Debug, Default)]
pub struct Bindings {
    bound: Vec<Binding>,
}

impl Bindings {
    /// No binding.
    pub fn new() -> Bindings {
        Bindings::default()
    }

    /// How many bindings are recorded.
    pub fn len(&self) -> usize {
        self.bound.len()
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.bound.is_empty()
    }

    /// Verify `bind` and record it, with OpenSSH's `process_ext_session_bind` rules.
    pub fn bind(&mut self, bind: SessionBind) -> Result<Bound, BindError> {
        bind.verify()?;
        for b in &self.bound {
            if !b.forwarding {
                return Err(BindError::AfterAuthentication);
            }
            if same(&b.session_id, &bind.session_id) {
                if b.host_key.blob == bind.host_key.blob {
                    return Ok(Bound::AlreadyBound);
                }
                return Err(BindError::SessionOfAnotherHost);
            }
            // A new session with a host key seen before is another connection to that host.
        }
        if self.bound.len() >= MAX_BINDINGS {
            return Err(BindError::TooMany);
        }
        self.bound.push(Binding {
            host_key: bind.host_key,
            session_id: bind.session_id,
            forwarding: bind.forwarding,
        });
        Ok(Bound::Recorded)
    }

    /// What the prompt shows for `login`, or why it must not be signed here. Unbound, the
    /// login's host key is only the client's claim and is not shown. Bound, the login must be
    /// for the last bound session, which must be bound for authentication; when earlier
    /// bindings are forwarding hops the login must name its host key, and any host key it
    /// names must be the one its session was bound with.
    pub fn login(&self, login: &Userauth) -> Result<LoginDetails, LoginError> {
        let Some(last) = self.bound.last() else {
            return Ok(LoginDetails {
                user: login.user.clone(),
                host_key: None,
            });
        };
        if !same(&last.session_id, &login.session_id) {
            return Err(LoginError::SessionMismatch);
        }
        if last.forwarding {
            return Err(LoginError::ForwardingHop);
        }
        let forwarded = self.bound.len() > 1;
        match &login.host_key {
            None if forwarded => return Err(LoginError::NoHostKey),
            Some(h) if h.blob != last.host_key.blob => return Err(LoginError::HostKeyMismatch),
            _ => {}
        }
        Ok(LoginDetails {
            user: login.user.clone(),
            host_key: Some(last.host_key.fingerprint()),
        })
    }

    /// True when a binding is for forwarding: what comes over this connection was sent by
    /// another host (for a login, every binding before the last is one).
    pub fn forwarding(&self) -> bool {
        self.bound.iter().any(|b| b.forwarding)
    }
}

/// Session identifiers compared in constant time (as OpenSSH's `buf_equal`).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// One `string` (RFC 4251 §5) of at most `max` bytes from the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], max: usize) -> Result<&'a [u8], Option<usize>> {
    let (len, tail) = rest.split_first_chunk::<4>().ok_or(None)?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| None)?;
    if len > max {
        return Err(Some(len));
    }
    let s = tail.get(..len).ok_or(None)?;
    *rest = &tail[len..];
    Ok(s)
}

fn field<'a>(
    rest: &mut &'a [u8],
    name: &'static str,
    max: usize,
) -> Result<&'a [u8], UserauthError> {
    take(rest, max).map_err(|e| match e {
        Some(len) => UserauthError::TooLong {
            field: name,
            len,
            max,
        },
        None => UserauthError::Truncated(name),
    })
}

fn utf8<'a>(rest: &mut &'a [u8], name: &'static str, max: usize) -> Result<&'a str, UserauthError> {
    std::str::from_utf8(field(rest, name, max)?).map_err(|_| UserauthError::NotUtf8(name))
}

fn bind_field<'a>(
    rest: &mut &'a [u8],
    name: &'static str,
    max: usize,
) -> Result<&'a [u8], BindError> {
    take(rest, max).map_err(|e| match e {
        Some(len) => BindError::TooLong {
            field: name,
            len,
            max,
        },
        None => BindError::Truncated(name),
    })
}

/// The algorithm name a key or certificate blob starts with.
fn peek_name(blob: &[u8]) -> Option<&str> {
    let mut rest = blob;
    std::str::from_utf8(take(&mut rest, MAX_NAME_LEN).ok()?).ok()
}

/// A public key blob and nothing after it.
/// The suffix of OpenSSH certificate algorithm names (`PROTOCOL.certkeys`).
const CERT_SUFFIX: &str = "-cert-v01@openssh.com";

/// A certificate blob and nothing after it: the key it certifies.
fn decode_whole_certificate(blob: &[u8]) -> Result<KeyData, ssh_key::Error> {
    let mut reader = blob;
    let cert = Certificate::decode(&mut reader)?;
    if !reader.is_finished() {
        return Err(ssh_key::Error::TrailingData {
            remaining: reader.remaining_len(),
        });
    }
    Ok(cert.public_key().clone())
}

fn decode_whole(blob: &[u8]) -> Result<KeyData, ssh_key::Error> {
    let mut reader = blob;
    let key = KeyData::decode(&mut reader)?;
    if !reader.is_finished() {
        return Err(ssh_key::Error::TrailingData {
            remaining: reader.remaining_len(),
        });
    }
    Ok(key)
}

/// A signature blob (`string algorithm`, `string signature`) and nothing after it.
fn decode_signature(blob: &[u8]) -> Result<Signature, ssh_key::Error> {
    let mut reader = blob;
    let signature = Signature::decode(&mut reader)?;
    if !reader.is_finished() {
        return Err(ssh_key::Error::TrailingData {
            remaining: reader.remaining_len(),
        });
    }
    Ok(signature)
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::signature::Signer;
    use ssh_encoding::Encode;
    use ssh_key::private::{EcdsaKeypair, Ed25519Keypair, KeypairData};
    use ssh_key::EcdsaCurve;

    use super::*;

    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&u32::try_from(s.len()).unwrap().to_be_bytes());
        out.extend_from_slice(s);
    }

    fn blob(key: &KeyData) -> Vec<u8> {
        let mut b = Vec::new();
        key.encode(&mut b).unwrap();
        b
    }

    fn ed25519(seed: u8) -> KeypairData {
        KeypairData::Ed25519(Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn public(k: &KeypairData) -> KeyData {
        KeyData::try_from(k).unwrap()
    }

    /// Login data as OpenSSH's `sshconnect2.c` assembles it.
    fn login(sid: &[u8], user: &str, alg: &str, key: &KeyData, host: Option<&KeyData>) -> Vec<u8> {
        let mut d = Vec::new();
        string(&mut d, sid);
        d.push(50);
        string(&mut d, user.as_bytes());
        string(&mut d, b"ssh-connection");
        string(
            &mut d,
            if host.is_some() {
                HOSTBOUND_METHOD.as_bytes()
            } else {
                b"publickey"
            },
        );
        d.push(1);
        string(&mut d, alg.as_bytes());
        string(&mut d, &blob(key));
        if let Some(h) = host {
            string(&mut d, &blob(h));
        }
        d
    }

    /// A session-bind body as OpenSSH's `ssh_agent_bind_hostkey` sends it, signed by `host`.
    fn bind_body(host: &KeypairData, sid: &[u8], forwarding: bool) -> Vec<u8> {
        let signature: Signature = host.try_sign(sid).unwrap();
        bind_body_with(&blob(&public(host)), sid, &signature, forwarding)
    }

    fn bind_body_with(host: &[u8], sid: &[u8], signature: &Signature, fwd: bool) -> Vec<u8> {
        let mut sig = Vec::new();
        signature.encode(&mut sig).unwrap();
        let mut d = Vec::new();
        string(&mut d, host);
        string(&mut d, sid);
        string(&mut d, &sig);
        d.push(u8::from(fwd));
        d
    }

    fn bind(
        b: &mut Bindings,
        host: &KeypairData,
        sid: &[u8],
        fwd: bool,
    ) -> Result<Bound, BindError> {
        b.bind(parse_session_bind(&bind_body(host, sid, fwd))?)
    }

    #[test]
    fn logins_parse_with_their_user_key_and_host_key() {
        let id = public(&ed25519(1));
        let host = public(&ed25519(2));
        let plain = parse_userauth(&login(&[7; 32], "git", "ssh-ed25519", &id, None)).unwrap();
        assert_eq!(plain.session_id, vec![7; 32]);
        assert_eq!(plain.user, "git");
        assert_eq!(plain.service, "ssh-connection");
        assert_eq!(plain.method, Method::Publickey);
        assert!(plain.offers(&id) && !plain.offers(&host));
        assert_eq!(plain.host_key, None);
        let bound = parse_userauth(&login(
            &[7; 64],
            "a\x1b[2Jb",
            "ssh-ed25519",
            &id,
            Some(&host),
        ))
        .unwrap();
        assert_eq!(bound.method, Method::Hostbound);
        assert_eq!(bound.user, "a\\u{1b}[2Jb", "the user name arrives escaped");
        let h = bound.host_key.unwrap();
        assert_eq!(
            h.fingerprint(),
            host.fingerprint(HashAlg::Sha256).to_string()
        );
        // An RSA key may be offered under any of its three algorithm names; an ECDSA key under
        // its curve's only.
        let ecdsa = public(&KeypairData::Ecdsa(
            EcdsaKeypair::random(&mut rand::rngs::OsRng, EcdsaCurve::NistP256).unwrap(),
        ));
        assert!(parse_userauth(&login(&[1], "u", "ecdsa-sha2-nistp256", &ecdsa, None)).is_ok());
        assert_eq!(
            parse_userauth(&login(&[1], "u", "ecdsa-sha2-nistp384", &ecdsa, None)),
            Err(UserauthError::AlgorithmMismatch)
        );
    }

    #[test]
    fn malformed_logins_are_refused_with_the_reason() {
        let id = public(&ed25519(1));
        let good = login(&[7; 32], "git", "ssh-ed25519", &id, None);
        let edit = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut d = good.clone();
            f(&mut d);
            d
        };
        // Offsets in `good`: sid 0..36, msg 36, user 37..44, service 44..62, method 62..75,
        // flag 75, algorithm 76..91, key 91..
        let long_user = login(&[7; 32], &"u".repeat(257), "ssh-ed25519", &id, None);
        let cases: Vec<(Vec<u8>, UserauthError)> = vec![
            (
                login(&[], "git", "ssh-ed25519", &id, None),
                UserauthError::EmptySessionId,
            ),
            (
                login(&[7; 65], "git", "ssh-ed25519", &id, None),
                UserauthError::TooLong {
                    field: "session identifier",
                    len: 65,
                    max: 64,
                },
            ),
            (edit(&|d| d[36] = 51), UserauthError::NotUserauthRequest(51)),
            (
                long_user,
                UserauthError::TooLong {
                    field: "user name",
                    len: 257,
                    max: MAX_USER_LEN,
                },
            ),
            (edit(&|d| d[41] = 0xff), UserauthError::NotUtf8("user name")),
            (edit(&|d| d[48] = b'X'), UserauthError::Service),
            (edit(&|d| d[66] = b'X'), UserauthError::Method),
            (edit(&|d| d[75] = 0), UserauthError::NoSignature),
            (edit(&|d| d[75] = 2), UserauthError::NoSignature),
            (
                login(&[7; 32], "git", "ssh-rsa", &id, None),
                UserauthError::AlgorithmMismatch,
            ),
            (edit(&|d| d.push(0)), UserauthError::TrailingBytes(1)),
            (
                edit(&|d| d.truncate(d.len() - 1)),
                UserauthError::Truncated("public key"),
            ),
            (
                good[..36].to_vec(),
                UserauthError::Truncated("message number"),
            ),
            (
                good[..75].to_vec(),
                UserauthError::Truncated("signature flag"),
            ),
        ];
        for (data, want) in cases {
            assert_eq!(parse_userauth(&data), Err(want));
        }
        // A hostbound login without its host key, or with a key blob that has bytes after it.
        let host = public(&ed25519(2));
        let hostbound = login(&[7; 32], "git", "ssh-ed25519", &id, Some(&host));
        let no_host = &hostbound[..hostbound.len() - blob(&host).len() - 4];
        assert_eq!(
            parse_userauth(no_host),
            Err(UserauthError::Truncated("host key"))
        );
        let mut padded = blob(&id);
        padded.push(0);
        let mut d = good[..76].to_vec();
        string(&mut d, b"ssh-ed25519");
        string(&mut d, &padded);
        assert!(matches!(
            parse_userauth(&d),
            Err(UserauthError::Key {
                field: "public key",
                ..
            })
        ));
    }

    #[test]
    fn session_binds_parse_strictly() {
        let host = ed25519(2);
        let sid = [5u8; 32];
        let good = bind_body(&host, &sid, true);
        let b = parse_session_bind(&good).unwrap();
        assert!(b.forwarding);
        assert_eq!(b.session_id, sid);
        b.verify().unwrap();
        let mut flag = good.clone();
        *flag.last_mut().unwrap() = 2;
        assert_eq!(parse_session_bind(&flag), Err(BindError::Flag(2)));
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            parse_session_bind(&trailing),
            Err(BindError::TrailingBytes(1))
        );
        assert_eq!(
            parse_session_bind(&good[..good.len() - 1]),
            Err(BindError::Truncated("forwarding flag"))
        );
        assert_eq!(
            parse_session_bind(&bind_body(&host, &[], false)),
            Err(BindError::EmptySessionId)
        );
        assert!(matches!(
            parse_session_bind(&bind_body(&host, &[5; 65], false)),
            Err(BindError::TooLong { len: 65, .. })
        ));
        // A host key blob with a byte after the key.
        let mut padded = blob(&public(&host));
        padded.push(0);
        let signature: Signature = host.try_sign(&sid).unwrap();
        assert!(matches!(
            parse_session_bind(&bind_body_with(&padded, &sid, &signature, false)),
            Err(BindError::Blob {
                field: "host key",
                ..
            })
        ));
        // A signature made by another key does not verify.
        let other: Signature = ed25519(3).try_sign(&sid).unwrap();
        let forged = bind_body_with(&blob(&public(&host)), &sid, &other, false);
        assert_eq!(
            parse_session_bind(&forged).unwrap().verify(),
            Err(BindError::BadSignature)
        );
        // Nor a signature over another session identifier.
        let other: Signature = host.try_sign(&[6; 32]).unwrap();
        let forged = bind_body_with(&blob(&public(&host)), &sid, &other, false);
        assert_eq!(
            Bindings::new().bind(parse_session_bind(&forged).unwrap()),
            Err(BindError::BadSignature)
        );
    }

    #[test]
    fn ecdsa_host_keys_and_host_certificates_bind() {
        for curve in [
            EcdsaCurve::NistP256,
            EcdsaCurve::NistP384,
            EcdsaCurve::NistP521,
        ] {
            let host =
                KeypairData::Ecdsa(EcdsaKeypair::random(&mut rand::rngs::OsRng, curve).unwrap());
            let mut b = Bindings::new();
            assert_eq!(
                bind(&mut b, &host, &[1; 48], false),
                Ok(Bound::Recorded),
                "{curve:?}"
            );
        }
        // A certified host: the bind carries the certificate; its key signs the session, and
        // the prompt names that key, as OpenSSH fingerprints a certificate.
        let host = ed25519(2);
        let ca = ssh_key::PrivateKey::from(Ed25519Keypair::from_seed(&[4; 32]));
        let mut builder = ssh_key::certificate::Builder::new_with_random_nonce(
            &mut rand::rngs::OsRng,
            public(&host),
            1,
            u64::from(u32::MAX),
        )
        .unwrap();
        builder
            .cert_type(ssh_key::certificate::CertType::Host)
            .unwrap()
            .all_principals_valid()
            .unwrap();
        let cert = builder.sign(&ca).unwrap();
        let mut cert_blob = Vec::new();
        cert.encode(&mut cert_blob).unwrap();
        let sid = [3; 32];
        let signature: Signature = host.try_sign(&sid).unwrap();
        let mut b = Bindings::new();
        let bind =
            parse_session_bind(&bind_body_with(&cert_blob, &sid, &signature, false)).unwrap();
        assert_eq!(b.bind(bind), Ok(Bound::Recorded));
        let mut d = Vec::new();
        string(&mut d, &sid);
        d.push(50);
        string(&mut d, b"git");
        string(&mut d, b"ssh-connection");
        string(&mut d, HOSTBOUND_METHOD.as_bytes());
        d.push(1);
        string(&mut d, b"ssh-ed25519");
        string(&mut d, &blob(&public(&ed25519(1))));
        string(&mut d, &cert_blob);
        let details = b.login(&parse_userauth(&d).unwrap()).unwrap();
        assert_eq!(
            details.host_key.as_deref(),
            Some(
                public(&host)
                    .fingerprint(HashAlg::Sha256)
                    .to_string()
                    .as_str()
            )
        );
    }

    #[test]
    fn bindings_follow_openssh_rules() {
        let (h1, h2) = (ed25519(2), ed25519(3));
        // The same session and host key again changes nothing; the same session with another
        // host key is refused.
        let mut b = Bindings::new();
        assert_eq!(bind(&mut b, &h1, &[1; 32], true), Ok(Bound::Recorded));
        assert_eq!(bind(&mut b, &h1, &[1; 32], true), Ok(Bound::AlreadyBound));
        assert_eq!(
            bind(&mut b, &h2, &[1; 32], true),
            Err(BindError::SessionOfAnotherHost)
        );
        // A new session with a known host key is another connection to that host.
        assert_eq!(bind(&mut b, &h1, &[2; 32], true), Ok(Bound::Recorded));
        assert_eq!(b.len(), 2);
        // After a bind for authentication nothing binds, not even the same one again.
        assert_eq!(bind(&mut b, &h2, &[3; 32], false), Ok(Bound::Recorded));
        assert_eq!(
            bind(&mut b, &h2, &[3; 32], false),
            Err(BindError::AfterAuthentication)
        );
        assert_eq!(
            bind(&mut b, &h2, &[4; 32], true),
            Err(BindError::AfterAuthentication)
        );
        // Sixteen bindings at most.
        let mut b = Bindings::new();
        for i in 0..MAX_BINDINGS {
            assert_eq!(bind(&mut b, &h1, &[i as u8; 32], true), Ok(Bound::Recorded));
        }
        assert_eq!(bind(&mut b, &h1, &[99; 32], true), Err(BindError::TooMany));
        assert_eq!(b.len(), MAX_BINDINGS);
    }

    #[test]
    fn a_login_is_signed_only_for_the_last_session_bound_for_authentication() {
        let id = public(&ed25519(1));
        let (hop, host) = (ed25519(2), ed25519(3));
        let (hop_fp, host_fp) = (
            public(&hop).fingerprint(HashAlg::Sha256).to_string(),
            public(&host).fingerprint(HashAlg::Sha256).to_string(),
        );
        let plain =
            |sid: &[u8]| parse_userauth(&login(sid, "git", "ssh-ed25519", &id, None)).unwrap();
        let bound = |sid: &[u8], h: &KeypairData| {
            parse_userauth(&login(sid, "git", "ssh-ed25519", &id, Some(&public(h)))).unwrap()
        };
        // Unbound: the user, no host key (a claimed one is not shown).
        let b = Bindings::new();
        let d = b.login(&bound(&[1; 32], &host)).unwrap();
        assert_eq!(
            (d.user.as_str(), d.host_key, b.forwarding()),
            ("git", None, false)
        );
        // Bound directly: the bound host key, not forwarded.
        let mut b = Bindings::new();
        bind(&mut b, &host, &[1; 32], false).unwrap();
        let d = b.login(&plain(&[1; 32])).unwrap();
        assert_eq!(
            (d.host_key.as_deref(), b.forwarding()),
            (Some(host_fp.as_str()), false)
        );
        assert_eq!(b.login(&bound(&[1; 32], &host)).unwrap(), d);
        assert_eq!(b.login(&plain(&[2; 32])), Err(LoginError::SessionMismatch));
        assert_eq!(
            b.login(&bound(&[1; 32], &hop)),
            Err(LoginError::HostKeyMismatch)
        );
        // Through a forwarding hop: the last session, named by its host key, forwarded.
        let mut b = Bindings::new();
        bind(&mut b, &hop, &[1; 32], true).unwrap();
        assert_eq!(b.login(&plain(&[1; 32])), Err(LoginError::ForwardingHop));
        assert_eq!(b.login(&plain(&[2; 32])), Err(LoginError::SessionMismatch));
        bind(&mut b, &host, &[2; 32], false).unwrap();
        let d = b.login(&bound(&[2; 32], &host)).unwrap();
        assert_eq!(
            (d.host_key.as_deref(), b.forwarding()),
            (Some(host_fp.as_str()), true)
        );
        assert_ne!(d.host_key.as_deref(), Some(hop_fp.as_str()));
        assert_eq!(b.login(&plain(&[2; 32])), Err(LoginError::NoHostKey));
        assert_eq!(
            b.login(&bound(&[1; 32], &hop)),
            Err(LoginError::SessionMismatch),
            "not for the hop's own session"
        );
    }
}
