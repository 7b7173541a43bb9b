//! `auths key generate|import|list|remove|rewrap|test` as a user runs them: the real `auths`
//! binary against `auths sim serve` virtual keys (with hmac-secret, with and without a PIN),
//! real `ssh-keygen`, PINs and passphrases answered through `AUTHS_ASKPASS`. Where the CLI
//! has no way to show the private key, the test opens the sealed file itself through the
//! library (one verified touch on the virtual key, `touch_with_secret`) and checks that the
//! private key's bytes are nowhere in the file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use auths_presence::ctap::backend::Waiting;
use auths_presence::ctap::client_pin::permissions;
use auths_presence::ctap::device::DeviceOptions;
use auths_presence::ctap::select::{self, DeviceSelector};
use auths_presence::presence::enrollment::TokenStore;
use auths_presence::presence::seal_ops::{seal_client_data, SealAction};
use auths_presence::presence::sealed::{SealError, SealedKey, SealedStore};
use auths_presence::presence::touch::{touch_with_secret, Ask, Credentials};

use super::support::cli::{stderr, Sim, User};
use super::support::openssh::{run_bounded, s, SSH_KEYGEN};
use super::support::DEADLINE;

const PIN_A: &str = "1234";
const PIN_B: &str = "4321";
const PASSPHRASE: &str = "correct horse battery";

/// An askpass program: the PIN of sim `b` for prompts naming it, a passphrase for passphrase
/// prompts, otherwise the PIN of sim `a`. Every prompt is recorded in the returned log.
fn askpass(user: &User) -> (PathBuf, PathBuf) {
    let prog = user.dir.join("askpass");
    let log = user.dir.join("askpass.prompts");
    super::support::script(
        &prog,
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\ncase \"$1\" in\n  *Passphrase*) echo '{PASSPHRASE}';;\n  *b.sock*) echo '{PIN_B}';;\n  *) echo '{PIN_A}';;\nesac\n",
            log.display()
        ),
    );
    (prog, log)
}

struct Rig {
    user: User,
    askpass: PathBuf,
    prompts: PathBuf,
}

impl Rig {
    fn new() -> Rig {
        let user = User::new();
        let (askpass, prompts) = askpass(&user);
        Rig {
            user,
            askpass,
            prompts,
        }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.user
            .auths_with(args, &[("AUTHS_ASKPASS", self.askpass.as_path())])
    }

    fn ok(&self, args: &[&str]) -> std::process::Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`auths {}` failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        out
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "`auths {}` succeeded: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        stderr(&out)
    }

    fn enroll(&self, sim: &Sim, label: &str) {
        self.ok(&[
            "token",
            "enroll",
            "--device",
            &sim.device(),
            "--label",
            label,
        ]);
    }

    fn list(&self) -> Vec<Value> {
        let out = self.ok(&["key", "list", "--json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn sealed(&self, id: &str) -> SealedKey {
        SealedStore::new(&self.user.home).find(id).unwrap()
    }

    fn file(&self, id: &str) -> PathBuf {
        SealedStore::new(&self.user.home).path(id)
    }
}

/// Open the sealed key `id` through the library with one verified touch on `sim` (its PIN
/// when the file is sealed under the user-verified secret).
fn unseal(rig: &Rig, sim: &Sim, id: &str, pin: &str) -> Result<ssh_key::PrivateKey, SealError> {
    let tokens = TokenStore::open(&rig.user.home).unwrap().list().unwrap();
    let sealed = rig.sealed(id);
    let mut key = select::open_key(
        &DeviceSelector::Sim(sim.socket.clone()),
        DeviceOptions {
            deadline: DEADLINE,
            ..DeviceOptions::default()
        },
        &mut |_| {},
    )
    .unwrap();
    let creds = Credentials::enrolled(&tokens).unwrap();
    let token = sealed.uv.then(|| {
        key.pin_token(pin.as_bytes(), permissions::GET_ASSERTION, creds.rp_id())
            .unwrap()
    });
    let client_data = seal_client_data(SealAction::Check, id, "test", 0);
    let salt: [u8; 32] = sealed.salt.as_slice().try_into().unwrap();
    let (_, secret) = touch_with_secret(
        &mut key,
        &Ask {
            creds: &creds,
            client_data: &client_data,
            require_uv: sealed.uv,
            pin_token: token.as_ref(),
        },
        &salt,
        Waiting {
            on_up_needed: &mut || {},
            on_busy: None,
            cancel: None,
        },
    )
    .unwrap();
    assert_eq!(secret.user_verified(), sealed.uv);
    sealed.unseal(&secret.unsealer())
}

/// The private key's secret bytes (Ed25519 seed, ECDSA scalar).
fn secret_bytes(k: &ssh_key::PrivateKey) -> Vec<u8> {
    use ssh_key::private::{EcdsaKeypair, KeypairData};
    match k.key_data() {
        KeypairData::Ed25519(p) => p.private.to_bytes().to_vec(),
        KeypairData::Ecdsa(EcdsaKeypair::NistP256 { private, .. }) => private.as_slice().to_vec(),
        other => panic!("unexpected key {other:?}"),
    }
}

/// Neither the bytes, nor their hex or base64, appear in `file`.
fn assert_not_in(file: &[u8], secret: &[u8]) {
    use base64::Engine;
    assert_eq!(secret.len(), 32);
    let text = String::from_utf8_lossy(file).to_lowercase();
    assert!(
        !file.windows(secret.len()).any(|w| w == secret),
        "raw bytes"
    );
    assert!(!text.contains(&hex::encode(secret)), "hex");
    // Any 24-byte window of the secret in base64 (aligned three ways).
    for off in 0..3 {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&secret[off..off + 24]);
        assert!(
            !String::from_utf8_lossy(file).contains(&b64[4..28]),
            "base64"
        );
    }
}

#[test]
fn generate_prints_a_public_key_line_and_seals_the_key_for_the_enrolled_key_only() {
    let rig = Rig::new();
    let a = Sim::start(&rig.user.dir, "a", &["--pin", PIN_A]);
    rig.enroll(&a, "main");

    for (kind, want) in [
        ("ed25519", "ssh-ed25519"),
        ("ecdsa-p256", "ecdsa-sha2-nistp256"),
    ] {
        let label = format!("work-{kind}");
        let out = rig.ok(&[
            "key",
            "generate",
            "--type",
            kind,
            "--label",
            &label,
            "--device",
            &a.device(),
        ]);
        // stdout is the public key line and nothing else: `auths key generate > key.pub`.
        let line = String::from_utf8(out.stdout.clone()).unwrap();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.starts_with(&format!("{want} ")), "{line}");
        assert!(line.trim_end().ends_with(&format!(" {label}")), "{line}");
        assert!(stderr(&out).contains("user-verified"), "{}", stderr(&out));
        let pubfile = rig.user.dir.join(format!("{kind}.pub"));
        std::fs::write(&pubfile, &line).unwrap();
        let mut cmd = Command::new(SSH_KEYGEN);
        cmd.args(["-l", "-f", s(&pubfile)]).stdin(Stdio::null());
        let fp = run_bounded(cmd);
        assert!(fp.status.success(), "ssh-keygen -l: {fp:?}");
        let fp = String::from_utf8(fp.stdout).unwrap();

        let listed = rig.list();
        let k = listed
            .iter()
            .find(|k| k["label"] == label.as_str())
            .unwrap_or_else(|| panic!("{label} in {listed:?}"));
        let id = k["id"].as_str().unwrap().to_owned();
        assert_eq!(k["type"], want, "{k}");
        assert_eq!(k["uv"], Value::Bool(true), "{k}");
        assert_eq!(k["public_key"].as_str().unwrap(), line.trim_end());
        let fingerprint = k["fingerprint"].as_str().unwrap();
        assert!(fingerprint.starts_with("SHA256:"), "{k}");
        assert!(fp.contains(fingerprint), "ssh-keygen says {fp}, list {k}");
        assert_eq!(k["sealed_for"].as_array().unwrap().len(), 1, "{k}");
        assert_eq!(k["sealed_for"][0]["label"], "main", "{k}");
        assert_eq!(k["not_sealed_for"], Value::Array(vec![]), "{k}");

        // The file: 0600, parses, and holds no byte of the private key.
        let path = rig.file(&id);
        let md = std::fs::metadata(&path).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
        let raw = std::fs::read(&path).unwrap();
        let parsed = SealedKey::parse(&raw, &path).unwrap();
        assert_eq!(parsed.id, id);
        let private = unseal(&rig, &a, &id, PIN_A).unwrap();
        assert_eq!(
            private.public_key().key_data(),
            ssh_key::PublicKey::from_openssh(&line).unwrap().key_data()
        );
        assert_not_in(&raw, &secret_bytes(&private));

        // `auths key test` opens it with one touch, after the PIN.
        let test = rig.ok(&["key", "test", &label, "--device", &a.device(), "--json"]);
        let v: Value = serde_json::from_slice(&test.stdout).unwrap();
        assert_eq!(v["ok"], Value::Bool(true), "{v}");
        assert_eq!(v["fingerprint"], fingerprint, "{v}");
    }
    let prompts = std::fs::read_to_string(&rig.prompts).unwrap();
    assert!(
        prompts.contains("to seal the identity key"),
        "the PIN prompt says what it is for: {prompts}"
    );
}

#[test]
fn no_uv_seals_under_the_touch_only_secret_and_says_what_that_means() {
    let rig = Rig::new();
    let a = Sim::start(&rig.user.dir, "a", &["--pin", PIN_A]);
    rig.enroll(&a, "main");
    let out = rig.ok(&["key", "generate", "--no-uv", "--device", &a.device()]);
    assert!(
        stderr(&out).contains("any program running as you"),
        "{}",
        stderr(&out)
    );
    let k = &rig.list()[0];
    assert_eq!(k["uv"], Value::Bool(false), "{k}");
    let id = k["id"].as_str().unwrap();
    // Opened without the PIN: nothing asks for one (no askpass at all).
    let out = rig
        .user
        .auths(&["key", "test", id, "--device", &a.device()]);
    assert!(out.status.success(), "{}", stderr(&out));
    unseal(&rig, &a, id, "unused").unwrap();

    // A key with hmac-secret but no PIN seals without UV, warning to set one.
    let rig = Rig::new();
    let p = Sim::start(&rig.user.dir, "p", &["--pin-protocol", "2"]);
    rig.enroll(&p, "nopin");
    let out = rig.ok(&["key", "generate", "--device", &p.device()]);
    assert!(
        stderr(&out).contains("Set a PIN on the security key"),
        "{}",
        stderr(&out)
    );
    assert_eq!(rig.list()[0]["uv"], Value::Bool(false));

    // Mixed (one with a PIN, one without): refused, not silently downgraded.
    let a = Sim::start(&rig.user.dir, "a", &["--pin", PIN_A]);
    rig.enroll(&a, "main");
    let err = rig.fails(&[
        "key",
        "generate",
        "--device",
        &a.device(),
        "--device",
        &p.device(),
    ]);
    assert!(err.contains("no PIN") && err.contains("--no-uv"), "{err}");
}

#[test]
fn list_and_remove() {
    let rig = Rig::new();
    assert_eq!(rig.list(), Vec::<Value>::new());
    let a = Sim::start(&rig.user.dir, "a", &["--pin", PIN_A]);
    rig.enroll(&a, "main");
    rig.ok(&["key", "generate", "--label", "one", "--device", &a.device()]);
    let out = rig.ok(&[
        "key",
        "generate",
        "--label",
        "two",
        "--json",
        "--device",
        &a.device(),
    ]);
    let two: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(two["label"], "two", "{two}");
    assert_eq!(two["uv"], Value::Bool(true), "{two}");
    assert!(two["fingerprint"].as_str().unwrap().starts_with("SHA256:"));
    let listed = rig.list();
    assert_eq!(listed.len(), 2);
    let table = rig.ok(&["key", "list"]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("one") && table.contains("two"), "{table}");

    let id_one = listed.iter().find(|k| k["label"] == "one").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = rig.ok(&["key", "remove", "one"]);
    assert!(stderr(&out).contains("gone for good"), "{}", stderr(&out));
    assert!(!rig.file(&id_one).exists());
    let listed = rig.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["label"], "two");
    let err = rig.fails(&["key", "remove", "one"]);
    assert!(err.contains("no sealed key matches"), "{err}");
    // A label with control characters is refused before any touch.
    let err = rig.fails(&[
        "key",
        "generate",
        "--label",
        "a\nb",
        "--device",
        &a.device(),
    ]);
    assert!(err.contains("control characters"), "{err}");
}

fn ssh_keygen_key(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = Command::new(SSH_KEYGEN);
    cmd.args(["-q", "-C", name, "-f", s(&path)])
        .args(args)
        .stdin(Stdio::null());
    let out = run_bounded(cmd);
    assert!(out.status.success(), "ssh-keygen: {out:?}");
    path
}

#[test]
fn import_decrypts_with_the_passphrase_and_keeps_or_deletes_the_plaintext() {
    let rig = Rig::new();
    let a = Sim::start(&rig.user.dir, "a", &["--pin", PIN_A]);
    rig.enroll(&a, "main");
    let kept = ssh_keygen_key(&rig.user.dir, "kept", &["-t", "ed25519", "-N", PASSPHRASE]);
    let original = ssh_key::PrivateKey::read_openssh_file(&kept)
        .unwrap()
        .decrypt(PASSPHRASE)
        .unwrap();

    let out = rig.ok(&["key", "import", s(&kept), "--device", &a.device()]);
    let line = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        ssh_key::PublicKey::from_openssh(&line).unwrap().key_data(),
        original.public_key().key_data()
    );
    assert!(
        stderr(&out).contains("kept the plaintext key"),
        "{}",
        stderr(&out)
    );
    assert!(
        kept.exists(),
        "no terminal and no flag: the plaintext stays"
    );
    let prompts = std::fs::read_to_string(&rig.prompts).unwrap();
    assert!(prompts.contains("Passphrase for"), "{prompts}");
    let k = &rig.list()[0];
    assert_eq!(k["label"], "kept", "the key's comment: {k}");
    let id = k["id"].as_str().unwrap();
    let opened = unseal(&rig, &a, id, PIN_A).unwrap();
    assert_eq!(secret_bytes(&opened), secret_bytes(&original));
    assert_not_in(
        &std::fs::read(rig.file(id)).unwrap(),
        &secret_bytes(&original),
    );

    // The same key again: refused, nothing replaced.
    let err = rig.fails(&["key", "import", s(&kept), "--device", &a.device()]);
    assert!(err.contains("sealed already"), "{err}");

    // --delete-plaintext, an ECDSA key, another label.
    let gone = ssh_keygen_key(
        &rig.user.dir,
        "gone",
        &["-t", "ecdsa", "-b", "256", "-N", PASSPHRASE],
    );
    let out = rig.ok(&[
        "key",
        "import",
        s(&gone),
        "--label",
        "laptop",
        "--delete-plaintext",
        "--device",
        &a.device(),
    ]);
    assert!(!gone.exists(), "{}", stderr(&out));
    assert!(stderr(&out).contains("deleted"), "{}", stderr(&out));
    assert!(rig.list().iter().any(|k| k["label"] == "laptop"));

    // --delete-plaintext on a symbolic link: refused (it would leave the key behind).
    let target = ssh_keygen_key(&rig.user.dir, "target", &["-t", "ed25519", "-N", ""]);
    let link = rig.user.dir.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = rig.fails(&[
        "key",
        "import",
        s(&link),
        "--delete-plaintext",
        "--device",
        &a.device(),
    ]);
    assert!(err.contains("symbolic link"), "{err}");
    assert!(target.exists() && link.exists());

    // A wrong passphrase: refused, the file kept, nothing sealed.
    let wrong = ssh_keygen_key(&rig.user.dir, "wrong", &["-t", "ed25519", "-N", "other"]);
    let err = rig.fails(&[
        "key",
        "import",
        s(&wrong),
        "--delete-plaintext",
        "--device",
        &a.device(),
    ]);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(wrong.exists());

    // A key the agent cannot sign with (RSA below 2048 bits): refused.
    let small = ssh_keygen_key(
        &rig.user.dir,
        "small",
        &["-t", "rsa", "-b", "1024", "-N", ""],
    );
    let err = rig.fails(&["key", "import", s(&small), "--device", &a.device()]);
    assert!(err.contains("agent cannot sign with this key"), "{err}");

    // Not a key, and too large.
    let junk = rig.user.dir.join("junk");
    std::fs::write(&junk, "hello").unwrap();
    let err = rig.fails(&["key", "import", s(&junk), "--device", &a.device()]);
    assert!(err.contains("not an OpenSSH private key"), "{err}");
    std::fs::write(&junk, vec![b'a'; 70 * 1024]).unwrap();
    let err = rig.fails(&["key", "import", s(&junk), "--device", &a.device()]);
    assert!(err.contains("larger than"), "{err}");
    assert_eq!(rig.list().len(), 2);
}

#[test]
fn a_backup_enrolled_after_sealing_opens_the_key_only_after_rewrap() {
    let rig = Rig::new();
    let a = Sim::start(&rig.user.dir, "a", &["--pin", PIN_A]);
    let b = Sim::start(&rig.user.dir, "b", &["--pin", PIN_B]);
    rig.enroll(&a, "main");
    rig.ok(&[
        "key",
        "generate",
        "--label",
        "work",
        "--device",
        &a.device(),
    ]);
    rig.enroll(&b, "backup");

    let k = &rig.list()[0];
    let id = k["id"].as_str().unwrap().to_owned();
    assert_eq!(k["not_sealed_for"][0]["label"], "backup", "{k}");

    // The backup's own secret does not open the file: the library says why and what to do.
    match unseal(&rig, &b, &id, PIN_B) {
        Err(e @ SealError::NotWrappedFor { .. }) => {
            assert!(e.to_string().contains("auths key rewrap"), "{e}")
        }
        other => panic!("backup before rewrap: {:?}", other.map(|_| ())),
    }
    let err = rig.fails(&["key", "test", "work", "--device", &b.device()]);
    assert!(
        err.contains("backup") && err.contains("auths key rewrap"),
        "{err}"
    );
    // Rewrap with only the backup plugged in: nothing can open it.
    let err = rig.fails(&["key", "rewrap", "--device", &b.device()]);
    assert!(err.contains("auths key rewrap"), "{err}");

    // The backup named first: tried for opening (it holds none of the wrapped credentials),
    // then sealed for, with its PIN asked once.
    std::fs::remove_file(&rig.prompts).unwrap();
    let out = rig.ok(&[
        "key",
        "rewrap",
        "--device",
        &b.device(),
        "--device",
        &a.device(),
    ]);
    assert!(stderr(&out).contains("now sealed for"), "{}", stderr(&out));
    let prompts = std::fs::read_to_string(&rig.prompts).unwrap();
    assert_eq!(
        prompts.lines().filter(|l| l.contains("b.sock")).count(),
        1,
        "{prompts}"
    );
    assert_eq!(
        prompts.lines().filter(|l| l.contains("a.sock")).count(),
        1,
        "{prompts}"
    );
    let k = &rig.list()[0];
    assert_eq!(k["sealed_for"].as_array().unwrap().len(), 2, "{k}");
    assert_eq!(k["not_sealed_for"], Value::Array(vec![]), "{k}");
    rig.ok(&["key", "test", "work", "--device", &b.device()]);
    let from_b = unseal(&rig, &b, &id, PIN_B).unwrap();
    let from_a = unseal(&rig, &a, &id, PIN_A).unwrap();
    assert_eq!(secret_bytes(&from_a), secret_bytes(&from_b));
    let md = std::fs::metadata(rig.file(&id)).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600);

    // Nothing left to add.
    let out = rig.ok(&["key", "rewrap"]);
    assert!(
        stderr(&out).contains("sealed for every enrolled security key"),
        "{}",
        stderr(&out)
    );
}

/// Rewrite the sealed file `id` with `change` applied to its JSON.
fn tamper(rig: &Rig, id: &str, change: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = rig.file(id);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    change(v.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn flip_hex(v: &mut Value) {
    let s = v.as_str().unwrap();
    let mut bytes = hex::decode(s).unwrap();
    bytes[5] ^= 1;
    *v = Value::String(hex::encode(bytes));
}

#[test]
fn a_changed_file_fails_cleanly() {
    let rig = Rig::new();
    let a = Sim::start(&rig.user.dir, "a", &["--pin", PIN_A]);
    rig.enroll(&a, "main");
    rig.ok(&[
        "key",
        "generate",
        "--label",
        "work",
        "--device",
        &a.device(),
    ]);
    let id = rig.list()[0]["id"].as_str().unwrap().to_owned();
    let good = std::fs::read(rig.file(&id)).unwrap();
    let test = ["key", "test", id.as_str(), "--device", &a.device()];

    // One ciphertext byte.
    tamper(&rig, &id, |m| flip_hex(m.get_mut("ciphertext").unwrap()));
    let err = rig.fails(&test);
    assert!(err.contains("was changed"), "{err}");

    // Another public key, with its own id: the wraps were made for this one.
    std::fs::write(rig.file(&id), &good).unwrap();
    let other =
        ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let other_id = auths_presence::presence::sealed::key_id(other.public_key()).unwrap();
    let other_file = rig.file(&other_id);
    let mut v: Value = serde_json::from_slice(&good).unwrap();
    v["public_key"] = Value::String(other.public_key().to_openssh().unwrap());
    v["id"] = Value::String(other_id.clone());
    std::fs::write(&other_file, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    std::fs::set_permissions(&other_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = rig.fails(&["key", "test", &other_id, "--device", &a.device()]);
    assert!(
        err.contains("does not open") || err.contains("was changed"),
        "{err}"
    );
    std::fs::remove_file(&other_file).unwrap();

    // The id alone: refused when read, naming the file.
    tamper(&rig, &id, |m| {
        m.insert("id".into(), Value::String("0000000000000000".into()));
    });
    let err = rig.fails(&test);
    assert!(
        err.contains("not a sealed key auths can read") && err.contains(&id),
        "{err}"
    );
    // `auths key list` names the bad file and fails, after listing the others.
    rig.ok(&[
        "key",
        "generate",
        "--label",
        "other",
        "--device",
        &a.device(),
    ]);
    let out = rig.run(&["key", "list", "--json"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("its id does not belong") && err.contains(&id),
        "{err}"
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["label"], "other", "{listed}");

    // A wrap changed: the security key's secret does not open it.
    std::fs::write(rig.file(&id), &good).unwrap();
    tamper(&rig, &id, |m| {
        flip_hex(m.get_mut("wraps").unwrap()[0].get_mut("wrapped").unwrap())
    });
    let err = rig.fails(&test);
    assert!(err.contains("does not open this key file"), "{err}");

    // Restored, it opens again.
    std::fs::write(rig.file(&id), &good).unwrap();
    rig.ok(&test);
}

#[test]
fn keys_without_hmac_secret_are_refused_naming_the_keys_that_can() {
    let rig = Rig::new();
    let u2f = Sim::start(&rig.user.dir, "u", &["--u2f-only"]);
    rig.enroll(&u2f, "old");
    let err = rig.fails(&["key", "generate", "--device", &u2f.device()]);
    assert!(
        err.contains("no enrolled security key can seal") && err.contains("U2F-only"),
        "{err}"
    );
    // The plain virtual key has no clientPIN, so no hmac-secret: enrolled without it.
    let plain = Sim::start(&rig.user.dir, "n", &[]);
    rig.enroll(&plain, "plain");
    let err = rig.fails(&["key", "generate", "--device", &plain.device()]);
    assert!(err.contains("enrolled without hmac-secret"), "{err}");

    // With a key that can enrolled, the one that cannot is refused naming it.
    let a = Sim::start(&rig.user.dir, "a", &["--pin", PIN_A]);
    rig.enroll(&a, "main");
    let err = rig.fails(&["key", "generate", "--device", &plain.device()]);
    assert!(
        err.contains("no hmac-secret") && err.contains("(main)"),
        "{err}"
    );
    let out = rig.ok(&["key", "generate", "--device", &a.device()]);
    assert!(stderr(&out).contains("cannot seal"), "{}", stderr(&out));
    let k = &rig.list()[0];
    let cannot: Vec<&str> = k["cannot_seal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap())
        .collect();
    assert_eq!(cannot, ["old", "plain"], "{k}");
}

#[test]
fn the_plaintext_search_finds_a_planted_secret() {
    // The search the tests above rely on does find a secret written raw, as hex or as base64.
    use base64::Engine;
    let secret: [u8; 32] = rand::random();
    let hexed = format!("{{\"x\": \"{}\"}}", hex::encode(secret)).into_bytes();
    let b64 = base64::engine::general_purpose::STANDARD
        .encode(secret)
        .into_bytes();
    let mut raw = b"prefix".to_vec();
    raw.extend_from_slice(&secret);
    for planted in [hexed, b64, raw] {
        let found = std::panic::catch_unwind(|| assert_not_in(&planted, &secret));
        assert!(found.is_err(), "{}", String::from_utf8_lossy(&planted));
    }
    assert_not_in(b"nothing here", &secret);
}

#[test]
fn a_key_with_a_fingerprint_seals_under_the_user_verified_secret_without_a_pin() {
    let rig = Rig::new();
    let bio = Sim::start(&rig.user.dir, "bio", &["--builtin-uv"]);
    rig.enroll(&bio, "bio");
    let out = rig.ok(&["key", "generate", "--device", &bio.device()]);
    assert!(stderr(&out).contains("user-verified"), "{}", stderr(&out));
    let k = &rig.list()[0];
    assert_eq!(k["uv"], Value::Bool(true), "{k}");
    let id = k["id"].as_str().unwrap();
    rig.ok(&["key", "test", id, "--device", &bio.device()]);
    // The finger verified the user: no PIN was asked for.
    assert!(!rig.prompts.exists(), "a PIN was asked for");
}

#[test]
fn generate_seals_for_every_enrolled_key_named_and_skips_one_not_enrolled() {
    let rig = Rig::new();
    let a = Sim::start(&rig.user.dir, "a", &["--pin", PIN_A]);
    let b = Sim::start(&rig.user.dir, "b", &["--pin", PIN_B]);
    let stranger = Sim::start(&rig.user.dir, "c", &["--pin", PIN_A]);
    rig.enroll(&a, "main");
    rig.enroll(&b, "backup");
    let out = rig.ok(&[
        "key",
        "generate",
        "--device",
        &a.device(),
        "--device",
        &stranger.device(),
        "--device",
        &b.device(),
    ]);
    assert!(
        stderr(&out).contains("holds no enrolled credential that can seal: skipped"),
        "{}",
        stderr(&out)
    );
    let k = &rig.list()[0];
    let mut labels: Vec<&str> = k["sealed_for"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap())
        .collect();
    labels.sort();
    assert_eq!(labels, ["backup", "main"], "{k}");
    let id = k["id"].as_str().unwrap();
    let from_a = unseal(&rig, &a, id, PIN_A).unwrap();
    let from_b = unseal(&rig, &b, id, PIN_B).unwrap();
    assert_eq!(secret_bytes(&from_a), secret_bytes(&from_b));
    // Each PIN prompt named its key and the seal.
    let prompts = std::fs::read_to_string(&rig.prompts).unwrap();
    assert!(
        prompts.contains("b.sock") && prompts.contains("a.sock"),
        "{prompts}"
    );

    // A security key it is not sealed for: refused, naming those it is sealed for.
    let err = rig.fails(&["key", "test", id, "--device", &stranger.device()]);
    assert!(
        err.contains("no security key used opens") && err.contains("(main)"),
        "{err}"
    );
    // A security key removed from the enrollments: listed as no longer enrolled, and it no
    // longer opens the key through auths (its touch is not verified against anything).
    rig.ok(&["token", "remove", "backup"]);
    let k = &rig.list()[0];
    let gone = k["sealed_for"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["enrolled"] == Value::Bool(false))
        .unwrap_or_else(|| panic!("{k}"));
    assert!(gone["label"].is_null(), "{k}");
    let err = rig.fails(&["key", "test", id, "--device", &b.device()]);
    assert!(err.contains("no security key used opens"), "{err}");
    rig.ok(&["key", "test", id, "--device", &a.device()]);
}

/// `auths agent start --foreground`, stopped (SIGTERM, then SIGKILL) when dropped.
struct AgentProcess(std::process::Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        let _ = kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            Signal::SIGTERM,
        );
        let deadline = std::time::Instant::now() + DEADLINE;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `auths agent start --foreground` on `key`, answering PINs through the rig's askpass.
fn start_agent(rig: &Rig, key: &Sim) -> (AgentProcess, PathBuf, PathBuf) {
    let socket = rig.user.home.join("agent.sock");
    let log = rig.user.dir.join("agent.log");
    let child = Command::new(super::support::cli::AUTHS)
        .args(["agent", "start", "--foreground", "--socket"])
        .arg(&socket)
        .args(["--device", &key.device(), "--touch-timeout", "10s"])
        .env("AUTHS_HOME", &rig.user.home)
        .env("AUTHS_ASKPASS", &rig.askpass)
        .env_remove("AUTHS_DEVICE")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut agent = AgentProcess(child);
    super::support::git::wait_listening(&socket, &mut agent.0, &log);
    (agent, socket, log)
}

/// `ssh-keygen -Y sign -n file` of `msg` (written here) with the key `pubfile` names, through
/// the agent at `socket`.
fn sign(socket: &Path, pubfile: &Path, msg: &Path) -> std::process::Output {
    std::fs::write(msg, b"hello\n").unwrap();
    let _ = std::fs::remove_file(msg.with_extension("sig"));
    let mut sign = Command::new(SSH_KEYGEN);
    sign.args(["-Y", "sign", "-n", "file", "-f", s(pubfile), s(msg)])
        .env("SSH_AUTH_SOCK", socket)
        .stdin(Stdio::null());
    run_bounded(sign)
}

#[test]
fn the_running_agent_opens_a_key_with_a_backup_once_it_is_rewrapped() {
    let rig = Rig::new();
    let a = Sim::start(&rig.user.dir, "a", &["--pin", PIN_A]);
    let b = Sim::start(&rig.user.dir, "b", &["--pin", PIN_B]);
    rig.enroll(&a, "main");
    let out = rig.ok(&[
        "key",
        "generate",
        "--label",
        "work",
        "--device",
        &a.device(),
    ]);
    let pubfile = rig.user.dir.join("work.pub");
    std::fs::write(&pubfile, &out.stdout).unwrap();
    rig.enroll(&b, "backup");
    // The agent gates on the backup; the key was sealed before it was enrolled.
    let (_agent, socket, log) = start_agent(&rig, &b);
    let msg = rig.user.dir.join("msg");
    let refused = sign(&socket, &pubfile, &msg);
    assert!(!refused.status.success());
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("auths key rewrap"), "{said}");
    // Rewrapped while the agent runs: it reads the file again and the backup opens it.
    rig.ok(&[
        "key",
        "rewrap",
        "--device",
        &a.device(),
        "--device",
        &b.device(),
    ]);
    let signed = sign(&socket, &pubfile, &msg);
    assert!(
        signed.status.success(),
        "ssh-keygen -Y sign after rewrap: {}\nagent: {}",
        String::from_utf8_lossy(&signed.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[test]
fn a_generated_key_signs_through_the_agent_after_one_touch_and_the_pin() {
    const EMAIL: &str = "ada@example.com";
    let rig = Rig::new();
    let a = Sim::start(&rig.user.dir, "a", &["--pin", PIN_A]);
    rig.enroll(&a, "main");
    let out = rig.ok(&["key", "generate", "--label", EMAIL, "--device", &a.device()]);
    let pubfile = rig.user.dir.join("work.pub");
    std::fs::write(&pubfile, &out.stdout).unwrap();

    let (_agent, socket, log) = start_agent(&rig, &a);

    // A real ssh-keygen signs with the public key file `auths key generate` printed, through
    // the agent; the sealed key opens with the touch that approves the signature.
    let msg = rig.user.dir.join("msg");
    let signed = sign(&socket, &pubfile, &msg);
    assert!(
        signed.status.success(),
        "ssh-keygen -Y sign: {}\nagent: {}",
        String::from_utf8_lossy(&signed.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let allowed = rig.user.dir.join("allowed_signers");
    let key: Vec<&str> = line.split_whitespace().take(2).collect();
    std::fs::write(&allowed, format!("{EMAIL} {}\n", key.join(" "))).unwrap();
    let mut verify = Command::new(SSH_KEYGEN);
    verify
        .args([
            "-Y",
            "verify",
            "-n",
            "file",
            "-I",
            EMAIL,
            "-f",
            s(&allowed),
            "-s",
        ])
        .arg(msg.with_extension("sig"))
        .stdin(std::fs::File::open(&msg).unwrap());
    let verified = run_bounded(verify);
    assert!(
        verified.status.success(),
        "ssh-keygen -Y verify: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let prompts = std::fs::read_to_string(&rig.prompts).unwrap();
    assert!(
        prompts.lines().count() >= 2,
        "sealing and signing each asked the PIN: {prompts}"
    );
}

/// `auths doctor --json`'s sealed-key checks.
fn doctor_sealed(rig: &Rig, device: &str) -> Vec<Value> {
    let out = rig.run(&["doctor", "--json", "--device", device]);
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"] == "sealed_keys")
        .cloned()
        .collect()
}

#[test]
fn doctor_finds_a_backup_that_does_not_open_a_sealed_key_before_it_is_needed() {
    let rig = Rig::new();
    let a = Sim::start(&rig.user.dir, "a", &["--pin", PIN_A]);
    let b = Sim::start(&rig.user.dir, "b", &["--pin", PIN_B]);
    rig.enroll(&a, "main");
    assert_eq!(doctor_sealed(&rig, &a.device())[0]["verdict"], "skip");
    rig.ok(&[
        "key",
        "generate",
        "--label",
        "work",
        "--device",
        &a.device(),
    ]);
    let c = doctor_sealed(&rig, &a.device());
    assert_eq!(c[0]["verdict"], "ok", "{c:?}");
    rig.enroll(&b, "backup");
    let c = doctor_sealed(&rig, &a.device());
    assert_eq!(c[0]["verdict"], "warn", "{c:?}");
    assert!(
        c[0]["detail"].as_str().unwrap().contains("not with"),
        "{c:?}"
    );
    assert!(
        c[0]["fix"].as_str().unwrap().contains("auths key rewrap"),
        "{c:?}"
    );
    rig.ok(&[
        "key",
        "rewrap",
        "--device",
        &a.device(),
        "--device",
        &b.device(),
    ]);
    assert_eq!(doctor_sealed(&rig, &a.device())[0]["verdict"], "ok");
    // A file that does not read fails, naming it.
    std::fs::write(
        rig.user.home.join("keys").join("0000000000000000.sealed"),
        b"{}",
    )
    .unwrap();
    let c = doctor_sealed(&rig, &a.device());
    assert!(c.iter().any(|c| c["verdict"] == "fail"), "{c:?}");
}
