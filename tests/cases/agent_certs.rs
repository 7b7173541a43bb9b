//! OpenSSH certificates (`PROTOCOL.certkeys`) added with their key: `ssh-add id` also adds
//! `id-cert.pub`, made here by `ssh-keygen -s CA`. The agent lists the certificate as a second
//! identity, signs requests that name it with the certified key behind the same touch, removes it
//! with its key, and refuses a certificate whose key is not the one added with it. A real ssh
//! login to `sshd -i` that trusts only the CA (no authorized key) proves the certificate works.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use auths_presence::ctap::device::DeviceOptions;
use auths_presence::ctap::virtual_key::{HidTimings, VirtualKey};
use auths_presence::ctap::CtapError;
use auths_presence::presence::policy::Policy;
use auths_presence::presence::prompt::Prompter;
use auths_presence::presence::touch::PresenceKey;
use p256::ecdsa::signature::Verifier;
use ssh_agent_lib::proto::{
    AddIdentity, PrivateCredential, PrivateKeyData, PublicCredential, Request, Response,
    SignRequest,
};
use ssh_key::{Certificate, PrivateKey};

use super::support::agent::{Agent, Opts};
use super::support::gate::{self, AUTO};
use super::support::openssh::{keygen_one, run_bounded, s, SSH_KEYGEN};
use super::support::wire::{key_blob, request};
use super::support::{short_tempdir, skipped, DEADLINE};

const SSHD: &str = "/usr/sbin/sshd";
const SSH: &str = "/usr/bin/ssh";

struct Rig {
    dir: tempfile::TempDir,
    key: Arc<VirtualKey>,
    agent: Agent,
    enrolled: u64,
}

impl Rig {
    /// An agent over the presence gate (one touch per signature) and a virtual key that
    /// touches by itself.
    fn new() -> Rig {
        let dir = short_tempdir();
        let home = dir.path().join("home");
        let options = DeviceOptions {
            deadline: DEADLINE,
            ..DeviceOptions::default()
        };
        let key = gate::start_key(
            &dir.path().join("key.json"),
            AUTO,
            HidTimings {
                touch_timeout: DEADLINE,
                ..HidTimings::default()
            },
        );
        let enrolled = gate::enroll(&key, &home, options);
        let opener = {
            let key = Arc::clone(&key);
            move || -> Result<Box<dyn PresenceKey>, CtapError> {
                Ok(Box::new(gate::open(&key, options)?))
            }
        };
        let gate = gate::presence_gate(
            &home,
            opener,
            Policy::PerSignature,
            DEADLINE,
            Prompter::new(false),
            None,
        );
        let agent = Agent::start(Arc::new(gate), Opts::default());
        Rig {
            dir,
            key,
            agent,
            enrolled,
        }
    }

    fn touches(&self) -> u64 {
        self.key.touch_count() - self.enrolled
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A CA key `name` and the certificate it signs for `key` (`key-cert.pub`), for principal
    /// `principal`, valid for `validity` (ssh-keygen's -V syntax).
    fn certify(&self, ca: &Path, key: &Path, principal: &str, validity: &str) -> Certificate {
        let mut c = Command::new(SSH_KEYGEN);
        c.args([
            "-q",
            "-s",
            s(ca),
            "-I",
            "ada-laptop",
            "-n",
            principal,
            "-V",
            validity,
        ])
        .arg(key.with_extension("pub"))
        .stdin(Stdio::null());
        let out = run_bounded(c);
        assert!(out.status.success(), "ssh-keygen -s: {out:?}");
        let cert = PathBuf::from(format!("{}-cert.pub", key.display()));
        Certificate::from_openssh(&std::fs::read_to_string(cert).unwrap()).unwrap()
    }

    fn identities(&self) -> Vec<PublicCredential> {
        let Response::IdentitiesAnswer(ids) =
            request(&mut self.agent.connect(), &Request::RequestIdentities)
        else {
            panic!("no identities answer")
        };
        ids.into_iter().map(|i| i.credential).collect()
    }

    /// The wire blob of the certificate listed at `index`.
    fn cert_blob(&self, index: usize) -> Vec<u8> {
        match &self.identities()[index] {
            PublicCredential::Cert(c) => key_blob(c.as_ref()),
            other => panic!("identity {index} is not a certificate: {other:?}"),
        }
    }
}

fn sign_by(cert: &Certificate, data: &[u8]) -> Request {
    Request::SignRequest(SignRequest {
        credential: PublicCredential::Cert(Box::new(cert.clone())),
        data: data.to_vec(),
        flags: 0,
    })
}

#[test]
fn ssh_add_adds_the_certificate_with_its_key_lists_and_signs_with_it_and_removes_both() {
    let rig = Rig::new();
    let ca = keygen_one(rig.dir.path(), "ca", &["-t", "ed25519"]);
    for (name, args) in [
        ("id_ed", &["-t", "ed25519"][..]),
        ("id_ec", &["-t", "ecdsa"][..]),
    ] {
        let id = keygen_one(rig.dir.path(), name, args);
        let cert = rig.certify(&ca, &id, "ada", "-5m:+1h");
        // ssh-add finds id-cert.pub next to id and adds it after the key.
        let out = rig.agent.ssh_add(&[s(&id)]);
        assert!(out.status.success(), "ssh-add: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Certificate added"),
            "{out:?}"
        );
        let listed = rig.agent.listed();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(listed[1].ends_with("-CERT)"), "{listed:?}");
        assert_eq!(rig.cert_blob(1), key_blob(&cert), "listed as it was added");

        // A signature asked for by the certificate: one touch, made by the certified key.
        let before = rig.touches();
        let data = b"signed by the certificate's key";
        let Response::SignResponse(sig) = request(&mut rig.agent.connect(), &sign_by(&cert, data))
        else {
            panic!("no signature")
        };
        assert_eq!(rig.touches(), before + 1);
        cert.public_key().verify(data, &sig).unwrap();

        // Removing the key (ssh-add -d removes the key and its certificate) leaves nothing.
        let out = rig.agent.ssh_add(&["-d", s(&id)]);
        assert!(out.status.success(), "ssh-add -d: {out:?}");
        assert!(rig.agent.listed().is_empty());
        // The certificate without its key signs nothing, and no touch is asked for.
        let before = rig.touches();
        assert_eq!(
            request(&mut rig.agent.connect(), &sign_by(&cert, data)),
            Response::Failure
        );
        assert_eq!(rig.touches(), before);
    }
}

#[test]
fn lock_clears_the_certificate_with_its_key_and_unlock_restores_both() {
    let rig = Rig::new();
    let ca = keygen_one(rig.dir.path(), "ca", &["-t", "ed25519"]);
    let id = keygen_one(rig.dir.path(), "id", &["-t", "ed25519"]);
    // An expired certificate is still added and listed: the server decides.
    let cert = rig.certify(&ca, &id, "ada", "20200101:20200102");
    rig.agent.add(&[&id]);
    assert_eq!(rig.agent.listed().len(), 2);
    let pass = rig.agent.askpass("pass", "lock-pass");
    let out = rig.agent.ssh_add_askpass(&["-x"], &pass);
    assert!(out.status.success(), "ssh-add -x: {out:?}");
    assert!(rig.identities().is_empty());
    assert_eq!(
        request(&mut rig.agent.connect(), &sign_by(&cert, b"x")),
        Response::Failure
    );
    let out = rig.agent.ssh_add_askpass(&["-X"], &pass);
    assert!(out.status.success(), "ssh-add -X: {out:?}");
    assert_eq!(rig.cert_blob(1), key_blob(&cert));
}

#[test]
fn a_certificate_of_another_key_is_refused() {
    let rig = Rig::new();
    let ca = keygen_one(rig.dir.path(), "ca", &["-t", "ed25519"]);
    let id = keygen_one(rig.dir.path(), "id", &["-t", "ed25519"]);
    let other = keygen_one(rig.dir.path(), "other", &["-t", "ed25519"]);
    let cert = rig.certify(&ca, &id, "ada", "-5m:+1h");
    let other_key = PrivateKey::read_openssh_file(&other).unwrap();
    let ssh_key::private::KeypairData::Ed25519(pair) = other_key.key_data().clone() else {
        unreachable!()
    };
    // The certificate of `id` with the private half of `other`.
    let add = Request::AddIdentity(AddIdentity {
        credential: PrivateCredential::Cert {
            algorithm: cert.algorithm(),
            certificate: Box::new(cert.clone()),
            privkey: PrivateKeyData::Ed25519(pair),
            comment: "mismatched".into(),
        },
    });
    assert_eq!(request(&mut rig.agent.connect(), &add), Response::Failure);
    assert!(rig.identities().is_empty(), "nothing was added");
    // With `id` held, the same mismatched add is refused too, and `id` keeps no certificate.
    std::fs::remove_file(PathBuf::from(format!("{}-cert.pub", id.display()))).unwrap();
    rig.agent.add(&[&id]);
    let ids_before = rig.identities();
    assert_eq!(request(&mut rig.agent.connect(), &add), Response::Failure);
    assert_eq!(rig.identities(), ids_before);
}

/// sshd can run here: it is installed, and as root its privilege separation directory exists.
fn sshd_or_skipped(test: &str) -> bool {
    if !Path::new(SSHD).exists() {
        skipped(
            test,
            "install OpenSSH's server (Debian: openssh-server) to run it",
        );
        return false;
    }
    if nix::unistd::geteuid().is_root() && !Path::new("/run/sshd").is_dir() {
        skipped(
            test,
            "as root, sshd needs /run/sshd (mkdir -m 0755 /run/sshd)",
        );
        return false;
    }
    true
}

#[test]
fn a_real_ssh_login_with_the_certificate_to_a_server_that_trusts_only_the_ca() {
    const TEST: &str = "a_real_ssh_login_with_the_certificate_to_a_server_that_trusts_only_the_ca";
    if !sshd_or_skipped(TEST) {
        return;
    }
    let rig = Rig::new();
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name;
    let ca = keygen_one(rig.dir.path(), "ca", &["-t", "ed25519"]);
    let id = keygen_one(rig.dir.path(), "id", &["-t", "ed25519"]);
    rig.certify(&ca, &id, &user, "-5m:+1h");
    rig.agent.add(&[&id]);
    std::fs::remove_file(&id).unwrap();
    let host = keygen_one(rig.dir.path(), "host", &["-t", "ed25519"]);
    let host_pub = std::fs::read_to_string(host.with_extension("pub")).unwrap();
    std::fs::write(
        rig.path("known_hosts"),
        format!("auths-test-host {host_pub}"),
    )
    .unwrap();
    // No authorized key at all: only a certificate by the CA logs in.
    std::fs::write(
        rig.path("sshd_config"),
        format!(
            "HostKey {}\nAuthorizedKeysFile none\nTrustedUserCAKeys {}\nStrictModes no\n\
             UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             LogLevel ERROR\n",
            s(&host),
            s(&ca.with_extension("pub"))
        ),
    )
    .unwrap();
    let d = |name: &str| rig.path(name).display().to_string();
    let login = |cert: bool| {
        let mut cmd = Command::new(SSH);
        cmd.args([
            "-F",
            "none",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", d("known_hosts")))
        .args([
            "-o",
            "HostKeyAlias=auths-test-host",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-o")
        .arg(format!(
            "IdentityFile={}",
            id.with_extension("pub").display()
        ))
        .arg("-o")
        .arg(format!(
            "CertificateFile={}",
            if cert {
                format!("{}-cert.pub", id.display())
            } else {
                "/dev/null".into()
            }
        ))
        .arg("-o")
        .arg(format!("ProxyCommand={SSHD} -i -e -f {}", d("sshd_config")))
        .arg(format!("{user}@auths-test-host"))
        .arg("echo logged in by certificate");
        rig.agent.client_env(&mut cmd);
        run_bounded(cmd)
    };
    let before = rig.touches();
    let out = login(true);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with("logged in by certificate\n"),
        "{out:?}"
    );
    assert_eq!(rig.touches(), before + 1, "one login, one touch");
    // Without the certificate the same key is not let in: the certificate did it.
    let out = login(false);
    assert!(!out.status.success(), "{out:?}");
}
