//! ECDSA P-256 keys whose private scalar starts with zero bytes (one `ssh-keygen` key in 256):
//! OpenSSH writes the scalar as an mpint without them, in key files and in `ssh-add`'s
//! messages. `auths agent add KEYFILE` adds such a file to the agent over its socket, and an
//! encrypted one (as `ssh-keygen -p` writes it, with each cipher) opens with its passphrase.
//! Real `ssh-add` of such keys is in `agent_socket`, signing in `agent_gate`.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use auths_presence::presence::gate::{ApproveFuture, Gate, GateError};
use auths_presence::presence::request::ApprovalRequest;
use auths_presence::text::{decrypt_private_key, private_key_from_openssh};
use p256::ecdsa::signature::{Signer, Verifier};

use super::support::agent::{Agent, Opts};
use super::support::cli::AUTHS;
use super::support::openssh::{
    ecdsa_key_with_short_scalar, p256_short_scalar, public_key, run_bounded, s, SSH_KEYGEN,
};

/// No signature is asked for here.
struct Refuses;

impl Gate for Refuses {
    fn approve(&self, _request: ApprovalRequest) -> ApproveFuture<'_> {
        Box::pin(async { Err(GateError::TouchTimeout(Duration::from_secs(1))) })
    }
}

#[test]
fn auths_agent_add_reads_a_key_file_whose_scalar_starts_with_zero() {
    let agent = Agent::start(Arc::new(Refuses), Opts::default());
    let key = ecdsa_key_with_short_scalar(agent.dir.path(), "id_short", 1);
    let mut cmd = Command::new(AUTHS);
    cmd.args(["agent", "add", s(&key), "--socket", s(&agent.path)])
        .env("AUTHS_HOME", agent.dir.path().join("home"));
    let out = run_bounded(cmd);
    assert!(out.status.success(), "{out:?}");
    let fp = public_key(&key)
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string();
    let listed = agent.listed();
    assert!(
        listed.len() == 1 && listed[0].contains(&fp),
        "{fp}: {listed:?}"
    );
}

#[test]
fn encrypted_key_files_whose_scalar_starts_with_zero_open() {
    let dir = tempfile::tempdir().unwrap();
    let (d, q) = p256_short_scalar(1);
    for cipher in [
        "aes256-ctr",
        "aes256-gcm@openssh.com",
        "chacha20-poly1305@openssh.com",
    ] {
        let key = ecdsa_key_with_short_scalar(dir.path(), "id_short", 1);
        // OpenSSH re-encrypts it, writing the scalar as its mpint again (31 bytes).
        let mut cmd = Command::new(SSH_KEYGEN);
        cmd.args([
            "-q", "-p", "-P", "", "-N", "pass", "-a", "1", "-Z", cipher, "-f",
        ])
        .arg(&key);
        let out = run_bounded(cmd);
        assert!(out.status.success(), "{cipher}: {out:?}");
        let text = std::fs::read_to_string(&key).unwrap();
        let encrypted = private_key_from_openssh(&text).unwrap();
        assert!(encrypted.is_encrypted(), "{cipher}");
        assert!(
            encrypted.decrypt(b"pass").is_err(),
            "{cipher}: ssh-key alone refuses it"
        );
        let opened = decrypt_private_key(&text, b"pass").unwrap();
        let ecdsa = opened.key_data().ecdsa().unwrap();
        assert_eq!(ecdsa.private_key_bytes(), d, "{cipher}");
        assert_eq!(ecdsa.public_key_bytes(), q, "{cipher}");
        let sig: ssh_key::Signature = opened.try_sign(b"m").unwrap();
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&q)
            .unwrap()
            .verify(b"m", &p256::ecdsa::Signature::try_from(&sig).unwrap())
            .unwrap();
        assert!(
            decrypt_private_key(&text, b"wrong").is_err(),
            "{cipher}: a wrong passphrase opens nothing"
        );
    }
}
