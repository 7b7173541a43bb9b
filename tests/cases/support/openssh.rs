//! Real OpenSSH clients: `ssh-keygen` makes identity keys, `ssh-add` and `ssh-keygen -Y` talk
//! to the agent. Every run is bounded by [`DEADLINE`].

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
    let gen = |name: &str, args: &[&str]| {
        let path = dir.join(name);
        let mut cmd = Command::new(SSH_KEYGEN);
        cmd.args(["-q", "-N", "", "-C", name, "-f"])
            .arg(&path)
            .args(args)
            .stdin(Stdio::null());
        let out = run_bounded(cmd);
        assert!(out.status.success(), "ssh-keygen: {out:?}");
        path
    };
    KeyFiles {
        ed25519: gen("id_ed25519", &["-t", "ed25519"]),
        ecdsa: gen("id_ecdsa", &["-t", "ecdsa", "-b", "256"]),
    }
}

/// The public half (`PATH.pub`) of the key file at `path`.
pub fn public_key(path: &Path) -> ssh_key::PublicKey {
    ssh_key::PublicKey::read_openssh_file(&path.with_extension("pub")).unwrap()
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
