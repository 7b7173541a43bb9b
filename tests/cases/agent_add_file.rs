//! `auths agent add KEYFILE` sends the agent a path, not a key: the agent reads the file and
//! asks an encrypted key's passphrase through its own askpass program. A proxy between the
//! client and the agent (what a same-user process can put on `SSH_AUTH_SOCK`) records every
//! byte the client sends: neither the private key nor the passphrase is among them, while
//! `ssh-add` through the same proxy gives its key away (so the recording can catch it).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use super::support::git::{ok, stdout, Opts, Rig};
use super::support::openssh::run_bounded;

const PASSPHRASE: &str = "correct horse battery staple";

/// A proxy on `path` to `agent`: every byte clients send goes to `recorded`.
struct Proxy {
    path: PathBuf,
    recorded: Arc<Mutex<Vec<u8>>>,
}

impl Proxy {
    fn start(path: PathBuf, agent: PathBuf) -> Proxy {
        let listener = UnixListener::bind(&path).unwrap();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let rec = Arc::clone(&recorded);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Ok(mut upstream) = UnixStream::connect(&agent) else {
                    return;
                };
                let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                // Agent to client, as it comes.
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut u2, &mut c2);
                });
                let rec = Arc::clone(&rec);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        match client.read(&mut buf) {
                            Ok(0) | Err(_) => {
                                let _ = upstream.shutdown(std::net::Shutdown::Write);
                                return;
                            }
                            Ok(n) => {
                                rec.lock().unwrap().extend_from_slice(&buf[..n]);
                                if upstream.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Proxy { path, recorded }
    }

    fn recorded(&self) -> Vec<u8> {
        self.recorded.lock().unwrap().clone()
    }
}

fn keygen(path: &Path, passphrase: &str) -> ssh_key::PrivateKey {
    let mut c = Command::new("ssh-keygen");
    c.args([
        "-q", "-t", "ed25519", "-N", passphrase, "-C", "file key", "-f",
    ])
    .arg(path)
    .stdin(Stdio::null());
    ok(&run_bounded(c), "ssh-keygen");
    let key = ssh_key::PrivateKey::read_openssh_file(path).unwrap();
    if key.is_encrypted() {
        key.decrypt(passphrase).unwrap()
    } else {
        key
    }
}

fn seed(key: &ssh_key::PrivateKey) -> [u8; 32] {
    match key.key_data() {
        ssh_key::private::KeypairData::Ed25519(p) => p.private.to_bytes(),
        _ => panic!("an Ed25519 key"),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn rig_with_askpass() -> (Rig, tempfile::TempDir) {
    let dir = super::support::short_tempdir();
    let askpass = super::support::script(
        &dir.path().join("askpass"),
        &format!("#!/bin/sh\necho '{PASSPHRASE}'\n"),
    );
    let rig = Rig::new(Opts {
        sealed: true,
        sim_args: &["--pin-protocol", "2"],
        agent_env: vec![("AUTHS_ASKPASS", askpass)],
        ..Opts::default()
    });
    (rig, dir)
}

fn add(rig: &Rig, socket: &Path, file: &Path) -> std::process::Output {
    let mut c = rig.auths();
    c.args(["agent", "add"])
        .arg(file)
        .arg("--socket")
        .arg(socket);
    run_bounded(c)
}

fn listed(rig: &Rig) -> String {
    let mut c = Command::new("ssh-add");
    c.arg("-l").env("SSH_AUTH_SOCK", &rig.agent_socket);
    stdout(&run_bounded(c))
}

#[test]
fn auths_agent_add_puts_no_key_byte_on_the_socket_and_ssh_add_does() {
    let (rig, dir) = rig_with_askpass();
    let proxy = Proxy::start(rig.home.join("proxy"), rig.agent_socket.clone());

    let file = dir.path().join("id_enc");
    let key = keygen(&file, PASSPHRASE);
    let out = add(&rig, &proxy.path, &file);
    ok(&out, "auths agent add");
    let fp = key
        .public_key()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string();
    assert!(listed(&rig).contains(&fp), "{}", listed(&rig));
    let sent = proxy.recorded();
    let file_body = std::fs::read_to_string(&file).unwrap();
    let body_line = file_body.lines().nth(1).unwrap();
    assert!(
        !contains(&sent, &seed(&key)),
        "the private key crossed the socket"
    );
    assert!(
        !contains(&sent, PASSPHRASE.as_bytes()),
        "the passphrase crossed the socket"
    );
    assert!(
        !contains(&sent, body_line.as_bytes()),
        "the key file crossed the socket"
    );
    assert!(
        contains(&sent, file.to_str().unwrap().as_bytes()),
        "the path was sent"
    );

    // The same proxy sees ssh-add's key: the recording does catch a key that crosses.
    let plain = dir.path().join("id_plain");
    let plain_key = keygen(&plain, "");
    let mut c = Command::new("ssh-add");
    c.arg(&plain)
        .env("SSH_AUTH_SOCK", &proxy.path)
        .stdin(Stdio::null());
    ok(&run_bounded(c), "ssh-add through the proxy");
    assert!(
        contains(&proxy.recorded(), &seed(&plain_key)),
        "ssh-add sends the key"
    );
}

#[test]
fn a_wrong_passphrase_a_loose_file_and_a_missing_one_are_refused_with_reasons() {
    let (rig, dir) = rig_with_askpass();
    let file = dir.path().join("id_other");
    keygen(&file, "another passphrase");
    let out = add(&rig, &rig.agent_socket, &file);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong passphrase for"), "{err}");

    let loose = dir.path().join("id_loose");
    keygen(&loose, "");
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = add(&rig, &rig.agent_socket, &loose);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("id_loose"), "{err}");
    assert_eq!(
        listed(&rig).lines().count(),
        1,
        "only the sealed key is listed"
    );

    let out = add(&rig, &rig.agent_socket, &dir.path().join("nothing"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot find"));
}

#[test]
fn a_sealed_file_added_by_path_is_listed_again_after_ssh_add_d() {
    let (rig, _dir) = rig_with_askpass();
    let before = listed(&rig);
    assert_eq!(before.lines().count(), 1, "{before}");
    let mut c = Command::new("ssh-add");
    c.arg("-D").env("SSH_AUTH_SOCK", &rig.agent_socket);
    ok(&run_bounded(c), "ssh-add -D");
    assert!(!listed(&rig).contains("SHA256:"));
    let file = std::fs::read_dir(rig.home.join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = add(&rig, &rig.agent_socket, &file);
    ok(&out, "auths agent add SEALED");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("opens with the touch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(listed(&rig), before);
}
