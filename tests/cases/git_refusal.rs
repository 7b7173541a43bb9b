//! Refusals that explain themselves: `auths git setup` points git's `gpg.ssh.program` at
//! `auths git sign` (through `$AUTHS_HOME/bin/auths-git-sign`), which runs ssh-keygen as git
//! would and, when the agent refused, prints the agent's reason on stderr, which git shows.
//! Real git, real ssh-keygen, the real agent and the virtual key (`auths sim serve`), through
//! the rig `git_signing.rs` uses (`support::git`).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::support::git::{ok, stdout, wait_listening, Opts, Rig, EMAIL};
use super::support::openssh::run_bounded;
use super::support::KillOnDrop as Guard;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Stage a change, ready for `git commit -S`.
fn stage(rig: &Rig, text: &str) {
    std::fs::write(rig.repo.join("file.txt"), text).unwrap();
    ok(&rig.git_in_repo(&["add", "file.txt"]), "git add");
}

#[test]
fn setup_points_gpg_ssh_program_at_auths_git_sign_and_checks_ssh_auth_sock() {
    use std::os::unix::fs::PermissionsExt;
    let rig = Rig::new(Opts::default());
    let said = rig.setup();
    let wrapper = rig.home.join("bin").join("auths-git-sign");
    let program = rig.git_in_repo(&["config", "--get", "gpg.ssh.program"]);
    assert_eq!(stdout(&program).trim(), wrapper.display().to_string());
    assert!(
        said.contains(&format!("gpg.ssh.program = {}", wrapper.display()))
            && said.contains("--unset gpg.ssh.program"),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "SSH_AUTH_SOCK ({}) is the auths agent",
            rig.agent_socket.display()
        )),
        "{said}"
    );
    let md = std::fs::metadata(&wrapper).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o700);
    let script = std::fs::read_to_string(&wrapper).unwrap();
    assert!(script.starts_with("#!/bin/sh\n"), "{script}");
    assert!(
        script.contains(" git sign \"$@\"") && script.contains("auths"),
        "{script}"
    );

    // With SSH_AUTH_SOCK at nothing, setup says so.
    let mut c = rig.auths();
    c.args(["git", "setup", "--repo"])
        .arg(&rig.repo)
        .env("HOME", rig.dir.path())
        .env("GIT_CONFIG_GLOBAL", rig.dir.path().join("gitconfig"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("SSH_AUTH_SOCK", rig.dir.path().join("nothing"))
        .args(["--key"])
        .arg(rig.home.join("git_signing_key.pub"));
    let out = run_bounded(c);
    ok(&out, "auths git setup with SSH_AUTH_SOCK at nothing");
    assert!(
        stdout(&out).contains("Warning: no agent answers at SSH_AUTH_SOCK"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_refused_commit_carries_the_reason_on_gits_stderr_and_only_for_its_requester() {
    let rig = Rig::new(Opts {
        touch: "never",
        touch_timeout: "2s",
        ..Opts::default()
    });
    rig.setup();
    stage(&rig, "not signed\n");
    let out = rig.git_in_repo(&["commit", "-q", "-S", "-m", "needs a touch"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "committed without a touch: {err}");
    assert!(err.contains("agent refused operation"), "{err}");
    // The reason, the requester (ssh-keygen, still git's child: auths git sign became it)
    // and what was asked, then what to do.
    let line = err
        .lines()
        .find(|l| l.contains("auths: not signed: "))
        .unwrap_or_else(|| panic!("no reason on git's stderr:\n{err}"));
    assert!(
        line.contains("no touch within 2 s; the key blinked for ssh-keygen (pid ")
            && line.contains("\u{2190} git (pid ")
            && line.contains("a git commit or tag signature (namespace git), key SHA256:"),
        "{line}"
    );
    assert!(
        err.contains("auths: run the git command again and touch your security key"),
        "{err}"
    );

    // Another process (this test, git's parent, not the refused ssh-keygen's parent or child)
    // learns nothing, though the agent still holds the refusal (it forgets after 5 minutes;
    // the helper read it a moment ago).
    let theirs = auths_presence::agent::client::refusals(&rig.agent_socket).unwrap();
    assert!(theirs.is_empty(), "{theirs:?}");
    eprintln!("{err}");
}

#[test]
fn signing_and_verifying_go_through_auths_git_sign() {
    let rig = Rig::new(Opts::default());
    rig.setup();
    stage(&rig, "hello\n");
    let before = rig.touches();
    let out = rig.git_in_repo(&["commit", "-q", "-S", "-m", "signed"]);
    ok(&out, "git commit -S");
    assert!(!stderr(&out).contains("auths:"), "{}", stderr(&out));
    assert_eq!(rig.touches(), before + 1);
    // Verification runs the same program (-Y find-principals, -Y verify).
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
    // The program really is ours: it explains a signature with no agent behind it.
    stage(&rig, "no agent\n");
    let nothing = rig.dir.path().join("nothing");
    let out = rig.git_in_repo_with_sock(&nothing, &["commit", "-q", "-S", "-m", "x"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "auths: not signed: no agent answers at SSH_AUTH_SOCK ({})",
            nothing.display()
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn another_agent_at_ssh_auth_sock_is_named() {
    let rig = Rig::new(Opts::default());
    rig.setup();
    // OpenSSH's own agent, holding nothing: ssh-keygen fails, and auths git sign says why.
    let sock = rig.dir.path().join("o");
    let mut agent = Command::new("ssh-agent");
    agent
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = agent.spawn().unwrap();
    wait_listening(&sock, &mut child, Path::new("/dev/null"));
    let _ssh_agent = Guard(child);
    stage(&rig, "other agent\n");
    let out = rig.git_in_repo_with_sock(&sock, &["commit", "-q", "-S", "-m", "x"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "auths: not signed: SSH_AUTH_SOCK ({}) is another agent than auths",
            sock.display()
        )),
        "{}",
        stderr(&out)
    );
}
