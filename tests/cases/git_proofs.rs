//! Presence proofs that travel with commits, through the real binaries and git: `auths git
//! setup --proofs` installs the hooks (chaining one already there), `git commit -S` leaves a
//! note under refs/notes/auths, and `auths git verify` checks a range in a fresh clone with no
//! AUTHS_HOME; a note with a signed field changed, a note moved to another commit and a commit
//! with no note each fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::support::cli::AUTHS;
use super::support::git::{ok, stdout, Opts, Rig};
use super::support::openssh::run_bounded;

/// git in the rig's repository, with the hooks' `auths` finding the rig's AUTHS_HOME.
fn git(rig: &Rig, args: &[&str]) -> Output {
    let mut c = rig.git();
    c.env("AUTHS_HOME", &rig.home)
        .arg("-C")
        .arg(&rig.repo)
        .args(args);
    run_bounded(c)
}

fn setup_with_proofs(rig: &Rig) -> String {
    let mut c = rig.auths();
    c.args(["git", "setup", "--proofs", "--repo"])
        .arg(&rig.repo)
        .env("HOME", rig.dir.path())
        .env("GIT_CONFIG_GLOBAL", rig.dir.path().join("gitconfig"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("SSH_AUTH_SOCK", &rig.agent_socket);
    let out = run_bounded(c);
    ok(&out, "auths git setup --proofs");
    stdout(&out)
}

fn signed_commit(rig: &Rig, n: u32) {
    std::fs::write(rig.repo.join("file.txt"), format!("signed {n}\n")).unwrap();
    ok(&git(rig, &["add", "file.txt"]), "git add");
    let out = git(rig, &["commit", "-q", "-S", "-m", &format!("s{n}")]);
    ok(&out, "git commit -S");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("no presence proof"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `auths git verify ARGS` in `repo`, with no AUTHS_HOME anywhere: HOME is an empty directory.
fn verify_in(repo: &Path, rig: &Rig, args: &[&str]) -> Output {
    let empty = rig.dir.path().join("nobody");
    std::fs::create_dir_all(&empty).unwrap();
    let mut c = Command::new(AUTHS);
    c.current_dir(repo)
        .args(["git", "verify"])
        .args(args)
        .env_remove("AUTHS_HOME")
        .env("HOME", &empty)
        .env("GIT_CONFIG_GLOBAL", rig.dir.path().join("gitconfig"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("SSH_AUTH_SOCK");
    run_bounded(c)
}

fn note(repo: &Path, rig: &Rig, rev: &str) -> serde_json::Value {
    let mut c = rig.git();
    c.arg("-C")
        .arg(repo)
        .args(["notes", "--ref=auths", "show", rev]);
    let out = run_bounded(c);
    ok(&out, "git notes show");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn set_note(repo: &Path, rig: &Rig, rev: &str, note: &serde_json::Value) {
    let mut c = rig.git();
    c.arg("-C").arg(repo).args([
        "notes",
        "--ref=auths",
        "add",
        "-f",
        "-m",
        &note.to_string(),
        rev,
    ]);
    ok(&run_bounded(c), "git notes add");
}

/// A clone that fetched the notes, set up to check signatures against the allowed signers
/// file it was given (a reviewer's copy), and nothing else of the signer's.
fn fresh_clone(rig: &Rig) -> PathBuf {
    let clone = rig.dir.path().join("clone");
    let mut c = rig.git();
    c.args(["clone", "-q"]).arg(&rig.repo).arg(&clone);
    ok(&run_bounded(c), "git clone");
    let mut c = rig.git();
    c.arg("-C")
        .arg(&clone)
        .args(["fetch", "-q", "origin", "refs/notes/auths:refs/notes/auths"]);
    ok(&run_bounded(c), "git fetch the notes");
    let signers = rig.dir.path().join("reviewer_allowed_signers");
    std::fs::copy(rig.home.join("allowed_signers"), &signers).unwrap();
    let mut c = rig.git();
    c.arg("-C")
        .arg(&clone)
        .args(["config", "gpg.ssh.allowedSignersFile"])
        .arg(&signers);
    ok(&run_bounded(c), "git config allowedSignersFile");
    clone
}

#[test]
fn proofs_travel_with_commits_and_verify_in_a_fresh_clone_without_auths_home() {
    let rig = Rig::new(Opts::default());
    // A hook of the user's own, which must keep running.
    let hooks = rig.repo.join(".git/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let ran = rig.dir.path().join("own-hook-ran");
    let own = format!("#!/bin/sh\necho ran >> '{}'\n", ran.display());
    std::fs::write(hooks.join("post-commit"), own).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            hooks.join("post-commit"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let said = setup_with_proofs(&rig);
    assert!(said.contains("post-commit.auths-chained"), "{said}");
    assert!(said.contains("git push origin refs/notes/auths"), "{said}");

    rig.unsigned_commit(0);
    signed_commit(&rig, 1);
    signed_commit(&rig, 2);
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap().lines().count(),
        3,
        "the user's own hook ran for every commit"
    );
    let n = note(&rig.repo, &rig, "HEAD");
    assert_eq!(n["type"], "auths.presence.proof.v1");
    assert!(n["touch"]["signature"].as_str().unwrap().len() > 64);

    // In the signer's repository and in a fresh clone with no AUTHS_HOME.
    let out = verify_in(&rig.repo, &rig, &["HEAD~2..HEAD"]);
    ok(&out, "auths git verify");
    let clone = fresh_clone(&rig);
    let out = verify_in(&clone, &rig, &["HEAD~2..HEAD", "--json"]);
    ok(&out, "auths git verify in a fresh clone");
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["proof"]["touched"], true, "{r}");
        assert_eq!(r["proof"]["attestation"], "virtual", "{r}");
    }
    // The unsigned first commit has no proof, and says why.
    let out = verify_in(&clone, &rig, &["HEAD~2"]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("NOT VERIFIED: the commit is not SSH-signed"),
        "{}",
        stdout(&out)
    );
    // The virtual key is not a genuine security key.
    let out = verify_in(&clone, &rig, &["HEAD", "--require-attested"]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("not attested"), "{}", stdout(&out));

    // A signed field changed: the assertion signature no longer verifies.
    let original = note(&clone, &rig, "HEAD");
    let mut changed = original.clone();
    let cd = changed["touch"]["client_data"].as_str().unwrap().to_owned();
    changed["touch"]["client_data"] = cd.replacen("\"nonce\":\"", "\"nonce\":\"0", 1).into();
    set_note(&clone, &rig, "HEAD", &changed);
    let out = verify_in(&clone, &rig, &["HEAD"]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("the touch does not verify"),
        "{}",
        stdout(&out)
    );
    let mut changed = original.clone();
    changed["time"] = 1.into();
    changed["digest"] = "00".repeat(32).into();
    set_note(&clone, &rig, "HEAD", &changed);
    assert!(!verify_in(&clone, &rig, &["HEAD"]).status.success());
    set_note(&clone, &rig, "HEAD", &original);
    ok(
        &verify_in(&clone, &rig, &["HEAD"]),
        "the original note again",
    );

    // HEAD's note moved onto HEAD~1.
    set_note(&clone, &rig, "HEAD~1", &original);
    let out = verify_in(&clone, &rig, &["HEAD~1"]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("other signed bytes"),
        "{}",
        stdout(&out)
    );

    // A commit with no note.
    let mut c = rig.git();
    c.arg("-C")
        .arg(&clone)
        .args(["notes", "--ref=auths", "remove", "HEAD~1"]);
    ok(&run_bounded(c), "git notes remove");
    let out = verify_in(&clone, &rig, &["HEAD~2..HEAD"]);
    assert!(
        !out.status.success(),
        "one commit of the range has no proof"
    );
    let text = stdout(&out);
    assert!(text.contains("has no presence proof"), "{text}");
    assert!(text.contains(": verified: approved by a touch"), "{text}");
}

#[test]
fn an_amended_commit_gets_its_own_proof_and_a_batch_grant_shows_its_terms() {
    let rig = Rig::new(Opts {
        policy: "batch:3:60s:user",
        ..Opts::default()
    });
    setup_with_proofs(&rig);
    signed_commit(&rig, 1);
    signed_commit(&rig, 2);
    let before = rig.head();
    let out = git(&rig, &["commit", "-q", "-S", "--amend", "-m", "amended"]);
    ok(&out, "git commit --amend -S");
    assert_ne!(rig.head(), before);
    let out = verify_in(&rig.repo, &rig, &["HEAD~1..HEAD", "--json"]);
    ok(&out, "auths git verify");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let proof = &r[0]["proof"];
    assert_eq!(proof["touched"], false, "{r}");
    assert_eq!(proof["grant"]["max_signatures"], 3, "{r}");
    let out = verify_in(&rig.repo, &rig, &["HEAD"]);
    assert!(
        stdout(&out).contains("covered by a batch grant (3 signature(s) within 60 s"),
        "{}",
        stdout(&out)
    );
}
