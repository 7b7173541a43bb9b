//! Real OpenSSH clients: `ssh-keygen` makes identity keys, `ssh-add` and `ssh-keygen -Y` talk
//! to the agent. Every run is bounded by [`DEADLINE`].

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

use super::DEADLINE;

pub const SSH_ADD: &str = "/usr/bin/ssh-add";
pub const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";

/// Run a command to completion, failing the test if it takes longer than the deadline.
pub fn run_bounded(mut cmd: Command) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(cmd.output());
    });
    rx.recv_timeout(DEADLINE)
        .expect("command finished within the deadline")
        .expect("command could be run")
}

/// An Ed25519 and an ECDSA P-256 identity key (`NAME` and `NAME.pub`), no passphrase.
pub struct KeyFiles {
    pub ed25519: PathBuf,
    pub ecdsa: PathBuf,
}

/// Make both identity keys in `dir` with `ssh-keygen`.
pub fn keygen(dir: &Path) -> KeyFiles {
    let gen = |name: &str, args: &[&str]| keygen_one(dir, name, args);
    KeyFiles {
        ed25519: gen("id_ed25519", &["-t", "ed25519"]),
        ecdsa: gen("id_ecdsa", &["-t", "ecdsa", "-b", "256"]),
    }
}

/// A new unencrypted key `dir/NAME` made by `ssh-keygen -t TYPE [-b BITS]` (`args`).
pub fn keygen_one(dir: &Path, name: &str, args: &[&str]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut cmd = Command::new(SSH_KEYGEN);
    cmd.args(["-q", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .args(args)
        .stdin(Stdio::null());
    let out = run_bounded(cmd);
    assert!(out.status.success(), "ssh-keygen: {out:?}");
    path
}

/// The public half (`PATH.pub`) of the key file at `path`.
pub fn public_key(path: &Path) -> ssh_key::PublicKey {
    ssh_key::PublicKey::read_openssh_file(&path.with_extension("pub")).unwrap()
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `string` (RFC 4251 §5) of `b`.
fn ssh_string(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&u32::try_from(b.len()).unwrap().to_be_bytes());
    out.extend_from_slice(b);
}

/// A P-256 scalar whose first `zeros` bytes are zero (`ssh-keygen` makes one such key in 256
/// for `zeros` = 1), and its point `Q = d·G`, uncompressed.
pub fn p256_short_scalar(zeros: usize) -> ([u8; 32], Vec<u8>) {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let mut d = [0u8; 32];
    for (i, b) in d.iter_mut().enumerate().skip(zeros) {
        *b = 0x31 + i as u8;
    }
    let q = p256::SecretKey::from_slice(&d)
        .unwrap()
        .public_key()
        .to_encoded_point(false);
    (d, q.as_bytes().to_vec())
}

/// Write the unencrypted OpenSSH key file `dir/name` (and `name.pub`) of the P-256 key of
/// [`p256_short_scalar`]`(zeros)`, byte for byte as `ssh-keygen` writes it (PROTOCOL.key):
/// the scalar is an mpint, so its leading zero bytes are dropped.
pub fn ecdsa_key_with_short_scalar(dir: &Path, name: &str, zeros: usize) -> PathBuf {
    use base64::Engine as _;
    let (d, q) = p256_short_scalar(zeros);
    let mut public = Vec::new();
    ssh_string(&mut public, b"ecdsa-sha2-nistp256");
    ssh_string(&mut public, b"nistp256");
    ssh_string(&mut public, &q);
    let mut private = vec![0x5e, 0xed, 0x5e, 0xed, 0x5e, 0xed, 0x5e, 0xed];
    private.extend_from_slice(&public);
    ssh_string(&mut private, &d[zeros..]);
    ssh_string(&mut private, name.as_bytes());
    let mut pad = 1u8;
    while private.len() % 8 != 0 {
        private.push(pad);
        pad += 1;
    }
    let mut file = b"openssh-key-v1\0".to_vec();
    ssh_string(&mut file, b"none");
    ssh_string(&mut file, b"none");
    ssh_string(&mut file, b"");
    file.extend_from_slice(&1u32.to_be_bytes());
    ssh_string(&mut file, &public);
    ssh_string(&mut file, &private);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&file);
    let mut pem = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(70) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let line = format!(
        "ecdsa-sha2-nistp256 {} {name}\n",
        base64::engine::general_purpose::STANDARD.encode(&public)
    );
    std::fs::write(path.with_extension("pub"), line).unwrap();
    path
}
