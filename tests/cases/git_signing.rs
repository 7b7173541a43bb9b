//! git commit signing end to end, through the real binaries: `auths sim serve` (the virtual
//! key), `auths token enroll`, `auths agent start --foreground`, `auths agent add`,
//! `auths git setup --repo`, then git itself, which runs `ssh-keygen -Y sign` once per commit.
//!
//! The user's git configuration is never read or written: HOME, GIT_CONFIG_GLOBAL and
//! GIT_CONFIG_NOSYSTEM point every git run at the test's own directory. ssh-keygen can only sign
//! through the agent: the private key file is deleted after `auths agent add`.

use super::support::git::{ok, stdout, Opts, Rig, EMAIL};
use super::support::openssh::run_bounded;

#[test]
fn git_setup_then_signed_commit_verifies_with_one_touch() {
    let rig = Rig::new(Opts::default());
    let said = rig.setup();
    for line in [
        "gpg.format = ssh",
        "commit.gpgsign = true",
        "tag.gpgsign = true",
        "To undo:",
        "--unset gpg.format",
    ] {
        assert!(said.contains(line), "setup output lacks {line:?}:\n{said}");
    }
    let get = |name: &str| {
        let out = rig.git_in_repo(&["config", "--get", name]);
        stdout(&out).trim().to_owned()
    };
    assert_eq!(get("gpg.format"), "ssh");
    let signers = rig.home.join("allowed_signers");
    assert_eq!(
        get("gpg.ssh.allowedSignersFile"),
        signers.display().to_string()
    );
    let signing_key = std::fs::read_to_string(get("user.signingkey")).unwrap();
    assert!(signing_key.starts_with("ssh-ed25519 "), "{signing_key}");
    let allowed = std::fs::read_to_string(&signers).unwrap();
    assert!(
        allowed.starts_with(&format!("{EMAIL} namespaces=\"git\" ssh-ed25519 ")),
        "{allowed}"
    );

    let before = rig.touches();
    std::fs::write(rig.repo.join("file.txt"), "hello\n").unwrap();
    ok(&rig.git_in_repo(&["add", "file.txt"]), "git add");
    ok(
        &rig.git_in_repo(&["commit", "-q", "-S", "-m", "signed"]),
        "git commit -S",
    );
    assert_eq!(rig.touches(), before + 1, "one commit, one touch");
    ok(
        &rig.git_in_repo(&["verify-commit", "HEAD"]),
        "git verify-commit",
    );
    let log = rig.git_in_repo(&["log", "--show-signature", "-1"]);
    ok(&log, "git log --show-signature");
    assert!(
        stdout(&log).contains(&format!("Good \"git\" signature for {EMAIL}")),
        "{}",
        stdout(&log)
    );

    // Setting up again changes nothing.
    let again = rig.setup();
    assert!(again.contains("(unchanged)"), "{again}");
    assert_eq!(std::fs::read_to_string(&signers).unwrap(), allowed);
}

#[test]
fn without_a_touch_the_commit_fails_and_head_stays() {
    let rig = Rig::new(Opts {
        touch: "never",
        touch_timeout: "2s",
        ..Opts::default()
    });
    rig.setup();
    rig.unsigned_commit(0);
    let head = rig.head();
    let before = rig.touches();
    std::fs::write(rig.repo.join("file.txt"), "not signed\n").unwrap();
    ok(&rig.git_in_repo(&["add", "file.txt"]), "git add");
    let out = rig.git_in_repo(&["commit", "-q", "-S", "-m", "needs a touch"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "committed without a touch: {err}");
    // git's words, then ssh-keygen's: the agent refused, so nothing was signed.
    assert!(err.contains("failed to write commit object"), "{err}");
    assert!(err.contains("agent refused operation"), "{err}");
    assert_eq!(rig.head(), head, "no new commit");
    assert_eq!(rig.touches(), before);
    let audit = {
        let mut c = rig.auths();
        c.args(["audit", "list"]);
        stdout(&run_bounded(c))
    };
    assert!(audit.contains("DENIED"), "{audit}");
}

#[test]
fn rebase_signing_ten_commits_takes_one_touch_under_a_parent_batch() {
    let rig = Rig::new(Opts {
        policy: "batch:11:60s:parent",
        ..Opts::default()
    });
    rig.setup();
    for n in 0..=10 {
        rig.unsigned_commit(n);
    }
    let before = rig.touches();
    ok(
        &rig.git_in_repo(&["rebase", "-q", "-f", "-S", "HEAD~10"]),
        "git rebase -f -S HEAD~10",
    );
    assert_eq!(
        rig.touches(),
        before + 1,
        "ten signatures by ten ssh-keygen children of one git: one touch"
    );
    let marks = rig.git_in_repo(&["log", "--format=%G?", "-11"]);
    ok(&marks, "git log --format=%G?");
    let marks: Vec<String> = stdout(&marks).lines().map(str::to_owned).collect();
    assert_eq!(marks.len(), 11);
    assert!(
        marks[..10].iter().all(|m| m == "G"),
        "the ten rebased commits carry good signatures: {marks:?}"
    );
    assert_eq!(marks[10], "N", "the base commit was not rewritten");
    let verify = {
        let mut c = rig.auths();
        c.args(["audit", "verify"]);
        run_bounded(c)
    };
    ok(&verify, "auths audit verify");
    assert!(
        stdout(&verify)
            .contains("1 signature(s) approved by a verified touch, 9 under a verified grant"),
        "{}",
        stdout(&verify)
    );
}
