//! Sealed identity keys in the agent, end to end through the real binaries: a key made with
//! `auths key generate` for the enrolled virtual key is listed as soon as `auths agent start`
//! runs, and the touch that approves its first signature also unseals it (one getAssertion
//! carrying the hmac-secret request): `git commit -S` costs one touch and no `ssh-add`. When
//! the unlock window ends, the plaintext is wiped and the next signature unseals again with its
//! own touch.

use std::process::Command;

use super::support::git::{ok, stdout, Opts, Rig, EMAIL};
use super::support::openssh::run_bounded;
use super::support::wait_until;

fn status(rig: &Rig) -> serde_json::Value {
    let mut c = rig.auths();
    c.args(["agent", "status", "--json", "--socket"])
        .arg(&rig.agent_socket);
    let out = run_bounded(c);
    ok(&out, "auths agent status");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn commit(rig: &Rig, n: u32) {
    std::fs::write(rig.repo.join("file.txt"), format!("change {n}\n")).unwrap();
    ok(&rig.git_in_repo(&["add", "file.txt"]), "git add");
    ok(
        &rig.git_in_repo(&["commit", "-q", "-S", "-m", &format!("c{n}")]),
        "git commit -S",
    );
    ok(
        &rig.git_in_repo(&["verify-commit", "HEAD"]),
        "git verify-commit",
    );
}

#[test]
fn a_sealed_key_is_listed_at_start_and_one_touch_unseals_and_signs_a_commit() {
    let rig = Rig::new(Opts {
        sealed: true,
        // clientPIN without a PIN set, as a YubiKey comes: its key agreement carries
        // hmac-secret.
        sim_args: &["--pin-protocol", "2"],
        ..Opts::default()
    });
    // Listed before anything was unsealed or added.
    let mut list = Command::new("ssh-add");
    list.arg("-L").env("SSH_AUTH_SOCK", &rig.agent_socket);
    let listed = run_bounded(list);
    ok(&listed, "ssh-add -L");
    let files: Vec<_> = std::fs::read_dir(rig.home.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = std::fs::read(&files[0]).unwrap();
    let sealed = auths_presence::presence::sealed::SealedKey::parse(&file, &files[0]).unwrap();
    let public = sealed.public_key.split(' ').nth(1).unwrap().to_owned();
    assert!(stdout(&listed).contains(&public), "{}", stdout(&listed));
    let s = status(&rig);
    assert_eq!(
        (s["sealed_keys"].as_u64(), s["sealed_keys_open"].as_u64()),
        (Some(1), Some(0)),
        "{s}"
    );

    rig.setup();
    let before = rig.touches();
    commit(&rig, 1);
    assert_eq!(rig.touches(), before + 1, "one touch approved and unsealed");
    let s = status(&rig);
    assert_eq!(s["sealed_keys_open"].as_u64(), Some(1), "{s}");
    // Within the window the plaintext serves the next signature (its own touch, per-signature
    // policy, but nothing to unseal).
    commit(&rig, 2);
    assert_eq!(rig.touches(), before + 2);
    let log = rig.git_in_repo(&["log", "--show-signature", "-1"]);
    assert!(
        stdout(&log).contains(&format!("Good \"git\" signature for {EMAIL}")),
        "{}",
        stdout(&log)
    );
}

#[test]
fn after_the_idle_timeout_the_next_signature_unseals_again_with_one_touch() {
    let rig = Rig::new(Opts {
        sealed: true,
        // clientPIN without a PIN set, as a YubiKey comes: its key agreement carries
        // hmac-secret.
        sim_args: &["--pin-protocol", "2"],
        agent_args: &["--idle-timeout", "1s"],
        ..Opts::default()
    });
    rig.setup();
    let before = rig.touches();
    commit(&rig, 1);
    assert_eq!(rig.touches(), before + 1);
    // The window closes by itself; the agent says so when asked.
    wait_until("the idle timeout wipes the unsealed key", || {
        status(&rig)["sealed_keys_open"].as_u64() == Some(0)
    });
    // Still listed, and one touch opens it again: no ssh-add.
    assert_eq!(status(&rig)["sealed_keys"].as_u64(), Some(1));
    commit(&rig, 2);
    assert_eq!(
        rig.touches(),
        before + 2,
        "one touch unsealed again and signed"
    );
}

#[test]
fn a_key_sealed_under_uv_asks_the_pin_once_with_its_unsealing_touch() {
    let dir = super::support::short_tempdir();
    let asked = dir.path().join("asked");
    let askpass = super::support::script(
        &dir.path().join("askpass"),
        &format!("#!/bin/sh\necho x >> '{}'\necho 123456\n", asked.display()),
    );
    let rig = Rig::new(Opts {
        sealed: true,
        sim_args: &["--pin", "123456"],
        agent_env: vec![("AUTHS_ASKPASS", askpass)],
        ..Opts::default()
    });
    let asks = || {
        std::fs::read_to_string(&asked)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before_asks = asks();
    rig.setup();
    let before = rig.touches();
    commit(&rig, 1);
    assert_eq!(rig.touches(), before + 1, "one touch, with the PIN");
    assert_eq!(asks(), before_asks + 1, "the PIN was asked once");
    assert_eq!(status(&rig)["sealed_keys_open"].as_u64(), Some(1));
}

#[test]
fn no_grant_stands_in_for_the_touch_that_unseals() {
    let dir = super::support::short_tempdir();
    let rig = Rig::new(Opts {
        sealed: true,
        sim_args: &["--pin-protocol", "2"],
        policy: "batch:10:10m:user",
        ..Opts::default()
    });
    rig.setup();
    let before = rig.touches();
    commit(&rig, 1);
    commit(&rig, 2);
    assert_eq!(
        rig.touches(),
        before + 1,
        "the batch's touch unsealed, its grant signed the second"
    );
    // Forget the key (its grant stays open), then list the sealed file again: the next
    // signature must unseal, so it needs a touch of its own though the grant has uses left.
    let public = dir.path().join("k.pub");
    let mut c = Command::new("ssh-add");
    c.arg("-L").env("SSH_AUTH_SOCK", &rig.agent_socket);
    std::fs::write(&public, stdout(&run_bounded(c))).unwrap();
    let mut c = Command::new("ssh-add");
    c.arg("-d")
        .arg(&public)
        .env("SSH_AUTH_SOCK", &rig.agent_socket);
    ok(&run_bounded(c), "ssh-add -d");
    let file = std::fs::read_dir(rig.home.join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut c = rig.auths();
    c.args(["agent", "add"])
        .arg(&file)
        .arg("--socket")
        .arg(&rig.agent_socket);
    ok(&run_bounded(c), "auths agent add SEALED");
    commit(&rig, 3);
    assert_eq!(rig.touches(), before + 2, "unsealing took its own touch");
}
