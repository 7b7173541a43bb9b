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
