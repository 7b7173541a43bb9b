//! Raw agent frames over the socket ("Protocol Messages": `uint32 length || body`), for the
//! tests that need what no OpenSSH client sends: hang-ups, pipelining, malformed bodies.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use ssh_agent_lib::proto::{PublicCredential, Request, Response, SignRequest};
use ssh_encoding::{Decode, Encode};

/// `SSH_AGENT_FAILURE`.
pub const FAILURE: &[u8] = &[5];
/// `SSH_AGENTC_REQUEST_IDENTITIES`.
pub const LIST: &[u8] = &[11];
/// The answer to [`LIST`] from an agent that holds no keys.
pub const NO_IDENTITIES: &[u8] = &[12, 0, 0, 0, 0];

/// Send one message body, length-prefixed.
pub fn send(stream: &mut UnixStream, body: &[u8]) {
    let mut msg = (body.len() as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(body);
    stream.write_all(&msg).unwrap();
}

/// One response body, or `None` when the agent closed the connection.
pub fn recv(stream: &mut UnixStream) -> Option<Vec<u8>> {
    let mut header = [0u8; 4];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(e)
            if e.kind() == std::io::ErrorKind::UnexpectedEof
                || e.kind() == std::io::ErrorKind::ConnectionReset =>
        {
            return None
        }
        Err(e) => panic!("reading from the agent: {e}"),
    }
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body).unwrap();
    Some(body)
}

/// True when the agent closed the connection (EOF or reset), within the read timeout.
pub fn closed(stream: &mut UnixStream) -> bool {
    let mut b = [0u8; 1];
    match stream.read(&mut b) {
        Ok(0) => true,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
        Ok(_) => false,
        Err(e) => panic!("waiting for the agent to close: {e}"),
    }
}

/// The body of `req`.
pub fn encode(req: &Request) -> Vec<u8> {
    let mut body = Vec::new();
    req.encode(&mut body).unwrap();
    body
}

/// Send `req` and decode the answer.
pub fn request(stream: &mut UnixStream, req: &Request) -> Response {
    send(stream, &encode(req));
    let answer = recv(stream).expect("an answer");
    Response::decode(&mut &answer[..]).unwrap()
}

/// A sign request for `data` with `key`, no flags.
pub fn sign_request(key: &ssh_key::PublicKey, data: &[u8]) -> Request {
    Request::SignRequest(SignRequest {
        credential: PublicCredential::Key(key.key_data().clone()),
        data: data.to_vec(),
        flags: 0,
    })
}

/// One SSH `string` (RFC 4251 §5).
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// A public key (or signature) in its wire encoding.
pub fn key_blob(key: &impl Encode) -> Vec<u8> {
    let mut b = Vec::new();
    key.encode(&mut b).unwrap();
    b
}

/// The data OpenSSH's client asks its agent to sign for a publickey login (RFC 4252 §7, as
/// `sshconnect2.c` assembles it): with `host`, the `publickey-hostbound-v00@openssh.com`
/// method naming the server's host key.
pub fn login_data(
    session_id: &[u8],
    user: &str,
    key: &ssh_key::PublicKey,
    host: Option<&ssh_key::PublicKey>,
) -> Vec<u8> {
    let mut d = Vec::new();
    put_string(&mut d, session_id);
    d.push(50); // SSH_MSG_USERAUTH_REQUEST
    put_string(&mut d, user.as_bytes());
    put_string(&mut d, b"ssh-connection");
    let method: &[u8] = match host {
        Some(_) => b"publickey-hostbound-v00@openssh.com",
        None => b"publickey",
    };
    put_string(&mut d, method);
    d.push(1);
    put_string(&mut d, key.algorithm().as_str().as_bytes());
    put_string(&mut d, &key_blob(key.key_data()));
    if let Some(h) = host {
        put_string(&mut d, &key_blob(h.key_data()));
    }
    d
}

/// `session-bind@openssh.com` (OpenSSH `PROTOCOL.agent` §1) as `ssh_agent_bind_hostkey`
/// sends it: the host key, the session id, `signature` (the host key's over the session id,
/// from the key exchange) and the forwarding flag.
pub fn session_bind(
    host: &ssh_key::PublicKey,
    session_id: &[u8],
    signature: &ssh_key::Signature,
    forwarding: bool,
) -> Request {
    let mut details = Vec::new();
    put_string(&mut details, &key_blob(host.key_data()));
    put_string(&mut details, session_id);
    put_string(&mut details, &key_blob(signature));
    details.push(u8::from(forwarding));
    Request::Extension(ssh_agent_lib::proto::Extension {
        name: "session-bind@openssh.com".into(),
        details: details.into(),
    })
}
