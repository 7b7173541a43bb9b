//! Refusals that explain themselves: `auths git setup` points git's `gpg.ssh.program` at
//! `auths git sign` (through `$AUTHS_HOME/bin/auths-git-sign`), which runs ssh-keygen as git
//! would and, when the agent refused, prints the agent's reason on stderr, which git shows.
//! Real git, real ssh-keygen, the real agent and the virtual key (`auths sim serve`), as in
//! `git_signing.rs` (whose rig this repeats: case files never import from each other).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::support::cli::AUTHS;
use super::support::openssh::run_bounded;
use super::support::{short_tempdir, KillOnDrop as Guard, DEADLINE};

const EMAIL: &str = "ada@example.com";

/// Wait (bounded) until something listens on `socket`; fail early if `child` died.
fn wait_listening(socket: &Path, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + DEADLINE;
    while UnixStream::connect(socket).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{} exited ({status}) before listening: {}",
                socket.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Rig {
    dir: tempfile::TempDir,
    home: PathBuf,
    sim: PathBuf,
    agent_socket: PathBuf,
    repo: PathBuf,
    // Dropped in reverse order of start: agent, then key.
    _agent: Option<Guard>,
    _sim: Option<Guard>,
}

struct Opts {
    /// The virtual key's behaviour once enrolled: auto or never.
    touch: &'static str,
    policy: &'static str,
    touch_timeout: &'static str,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            touch: "auto",
            policy: "per-signature",
            touch_timeout: "10s",
        }
    }
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Rig {
    fn new(opts: Opts) -> Rig {
        use std::os::unix::fs::DirBuilderExt;
        let dir = short_tempdir();
        let home = dir.path().join("h");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&home)
            .unwrap();
        let mut rig = Rig {
            sim: dir.path().join("k"),
            // The agent insists on a private (0700) directory for its socket.
            agent_socket: home.join("a"),
            repo: dir.path().join("repo"),
            home,
            dir,
            _agent: None,
            _sim: None,
        };
        // Enroll with a key that touches, then restart it on the same state in the mode
        // the test wants (its credentials live in the state file).
        rig._sim = Some(rig.start_sim("auto"));
        let mut enroll = rig.auths();
        enroll
            .args(["token", "enroll", "--device"])
            .arg(format!("sim:{}", rig.sim.display()));
        ok(&run_bounded(enroll), "auths token enroll");
        if opts.touch != "auto" {
            rig._sim = None;
            rig._sim = Some(rig.start_sim(opts.touch));
        }
        rig._agent = Some(rig.start_agent(&opts));

        // An identity key in the agent, and no private key file left to fall back on.
        let id = rig.dir.path().join("id");
        let mut keygen = Command::new("ssh-keygen");
        keygen
            .args(["-q", "-t", "ed25519", "-N", "", "-C", EMAIL, "-f"])
            .arg(&id)
            .stdin(Stdio::null());
        ok(&run_bounded(keygen), "ssh-keygen");
        let mut add = rig.auths();
        add.args(["agent", "add"])
            .arg(&id)
            .arg("--socket")
            .arg(&rig.agent_socket);
        ok(&run_bounded(add), "auths agent add");
        std::fs::remove_file(&id).unwrap();

        // A fresh repository and a private global config.
        let mut cfg = rig.git();
        cfg.args(["config", "--global", "user.email", EMAIL]);
        ok(&run_bounded(cfg), "git config user.email");
        let mut cfg = rig.git();
        cfg.args(["config", "--global", "user.name", "Ada"]);
        ok(&run_bounded(cfg), "git config user.name");
        let mut init = rig.git();
        init.args(["init", "-q", "-b", "main"]).arg(&rig.repo);
        ok(&run_bounded(init), "git init");
        rig
    }

    fn auths(&self) -> Command {
        let mut c = Command::new(AUTHS);
        c.env("AUTHS_HOME", &self.home)
            .env_remove("AUTHS_DEVICE")
            .env_remove("AUTHS_AGENT_SOCK")
            .stdin(Stdio::null());
        c
    }

    fn start_sim(&self, touch: &str) -> Guard {
        let log = self.dir.path().join("sim.log");
        let mut c = self.auths();
        c.args(["sim", "serve", "--touch", touch, "--socket"])
            .arg(&self.sim)
            .arg("--state")
            .arg(self.dir.path().join("k.json"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = c.spawn().unwrap();
        wait_listening(&self.sim, &mut child, &log);
        Guard(child)
    }

    fn start_agent(&self, opts: &Opts) -> Guard {
        let log = self.dir.path().join("agent.log");
        let mut c = self.auths();
        c.args(["agent", "start", "--foreground", "--socket"])
            .arg(&self.agent_socket)
            .arg("--device")
            .arg(format!("sim:{}", self.sim.display()))
            .args([
                "--policy",
                opts.policy,
                "--touch-timeout",
                opts.touch_timeout,
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = c.spawn().unwrap();
        wait_listening(&self.agent_socket, &mut child, &log);
        Guard(child)
    }

    /// git, isolated from the user's configuration, signing through our agent.
    fn git(&self) -> Command {
        let mut c = Command::new("git");
        c.env("HOME", self.dir.path())
            .env("GIT_CONFIG_GLOBAL", self.dir.path().join("gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("SSH_AUTH_SOCK", &self.agent_socket)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_EDITOR", "true")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .stdin(Stdio::null());
        c
    }

    /// git in the repository with SSH_AUTH_SOCK set to `sock`.
    fn git_in_repo_with_sock(&self, sock: &Path, args: &[&str]) -> Output {
        let mut c = self.git();
        c.env("SSH_AUTH_SOCK", sock)
            .arg("-C")
            .arg(&self.repo)
            .args(args);
        run_bounded(c)
    }

    fn git_in_repo(&self, args: &[&str]) -> Output {
        let mut c = self.git();
        c.arg("-C").arg(&self.repo).args(args);
        run_bounded(c)
    }

    /// `auths git setup --repo`, with the agent found through SSH_AUTH_SOCK as a user has it.
    fn setup(&self) -> String {
        let mut c = self.auths();
        c.args(["git", "setup", "--repo"])
            .arg(&self.repo)
            .env("HOME", self.dir.path())
            .env("GIT_CONFIG_GLOBAL", self.dir.path().join("gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("SSH_AUTH_SOCK", &self.agent_socket);
        let out = run_bounded(c);
        ok(&out, "auths git setup");
        stdout(&out)
    }

    /// The virtual key's touch count, from `auths sim serve`'s control socket.
    fn touches(&self) -> u64 {
        let mut ctl = self.sim.as_os_str().to_owned();
        ctl.push(".ctl");
        let mut s = UnixStream::connect(PathBuf::from(ctl)).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(b"count\n").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line.trim().parse().expect("a decimal touch count")
    }
}

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
