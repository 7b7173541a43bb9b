//! The git signing rig: `auths sim serve` (the virtual key), `auths token enroll`, `auths agent
//! start --foreground`, `auths agent add`, a fresh repository, and git isolated from the user's
//! configuration (HOME, GIT_CONFIG_GLOBAL and GIT_CONFIG_NOSYSTEM point at the test's own
//! directory). ssh-keygen can only sign through the agent: the private key file is deleted
//! after `auths agent add`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::cli::AUTHS;
use super::openssh::run_bounded;
use super::{short_tempdir, KillOnDrop as Guard, DEADLINE};

pub const EMAIL: &str = "ada@example.com";

/// Wait (bounded) until something listens on `socket`; fail early if `child` died.
pub fn wait_listening(socket: &Path, child: &mut Child, log: &Path) {
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

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub sim: PathBuf,
    pub agent_socket: PathBuf,
    pub repo: PathBuf,
    // Dropped in reverse order of start: agent, then key.
    _agent: Option<Guard>,
    _sim: Option<Guard>,
}

pub struct Opts {
    /// The virtual key's behaviour once enrolled: auto or never.
    pub touch: &'static str,
    pub policy: &'static str,
    pub touch_timeout: &'static str,
    /// The identity key is sealed in `AUTHS_HOME/keys` before the agent starts, instead of
    /// added with `auths agent add`: the agent lists it and unseals it with a touch.
    pub sealed: bool,
    /// More `auths agent start` arguments.
    pub agent_args: &'static [&'static str],
    /// More `auths sim serve` arguments.
    pub sim_args: &'static [&'static str],
    /// More environment for `auths agent start` (e.g. `AUTHS_ASKPASS`).
    pub agent_env: Vec<(&'static str, PathBuf)>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            touch: "auto",
            policy: "per-signature",
            touch_timeout: "10s",
            sealed: false,
            agent_args: &[],
            sim_args: &[],
            agent_env: Vec::new(),
        }
    }
}

pub fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Rig {
    pub fn new(opts: Opts) -> Rig {
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
        rig._sim = Some(rig.start_sim("auto", opts.sim_args));
        let mut enroll = rig.auths();
        enroll
            .args(["token", "enroll", "--device"])
            .arg(format!("sim:{}", rig.sim.display()))
            .envs(opts.agent_env.iter().map(|(k, v)| (k, v)));
        ok(&run_bounded(enroll), "auths token enroll");
        if opts.sealed {
            // What a user runs: `auths key generate` seals a new key for the enrolled key
            // (after its PIN, through AUTHS_ASKPASS, when it has one).
            let mut generate = rig.auths();
            generate
                .args(["key", "generate", "--label", EMAIL, "--device"])
                .arg(format!("sim:{}", rig.sim.display()))
                .envs(opts.agent_env.iter().map(|(k, v)| (k, v)));
            let out = run_bounded(generate);
            ok(&out, "auths key generate");
            assert!(stdout(&out).starts_with("ssh-ed25519 "), "{}", stdout(&out));
        }
        if opts.touch != "auto" {
            rig._sim = None;
            rig._sim = Some(rig.start_sim(opts.touch, opts.sim_args));
        }
        rig._agent = Some(rig.start_agent(&opts));
        if !opts.sealed {
            rig.add_identity();
        }
        rig.init_repo();
        rig
    }

    /// An identity key in the agent, and no private key file left to fall back on.
    fn add_identity(&self) {
        let rig = self;
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
    }

    /// A fresh repository and a private global config.
    fn init_repo(&self) {
        let rig = self;
        let mut cfg = rig.git();
        cfg.args(["config", "--global", "user.email", EMAIL]);
        ok(&run_bounded(cfg), "git config user.email");
        let mut cfg = rig.git();
        cfg.args(["config", "--global", "user.name", "Ada"]);
        ok(&run_bounded(cfg), "git config user.name");
        let mut init = rig.git();
        init.args(["init", "-q", "-b", "main"]).arg(&rig.repo);
        ok(&run_bounded(init), "git init");
    }

    pub fn auths(&self) -> Command {
        let mut c = Command::new(AUTHS);
        c.env("AUTHS_HOME", &self.home)
            .env_remove("AUTHS_DEVICE")
            .env_remove("AUTHS_AGENT_SOCK")
            .stdin(Stdio::null());
        c
    }

    fn start_sim(&self, touch: &str, extra: &[&str]) -> Guard {
        let log = self.dir.path().join("sim.log");
        let mut c = self.auths();
        c.args(["sim", "serve", "--touch", touch, "--socket"])
            .arg(&self.sim)
            .arg("--state")
            .arg(self.dir.path().join("k.json"))
            .args(extra)
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
            .args(opts.agent_args)
            .envs(opts.agent_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = c.spawn().unwrap();
        wait_listening(&self.agent_socket, &mut child, &log);
        Guard(child)
    }

    /// git, isolated from the user's configuration, signing through our agent.
    pub fn git(&self) -> Command {
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
    pub fn git_in_repo_with_sock(&self, sock: &Path, args: &[&str]) -> Output {
        let mut c = self.git();
        c.env("SSH_AUTH_SOCK", sock)
            .arg("-C")
            .arg(&self.repo)
            .args(args);
        run_bounded(c)
    }

    pub fn git_in_repo(&self, args: &[&str]) -> Output {
        let mut c = self.git();
        c.arg("-C").arg(&self.repo).args(args);
        run_bounded(c)
    }

    /// `auths git setup --repo`, with the agent found through SSH_AUTH_SOCK as a user has it.
    pub fn setup(&self) -> String {
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
    pub fn touches(&self) -> u64 {
        let mut ctl = self.sim.as_os_str().to_owned();
        ctl.push(".ctl");
        let mut s = UnixStream::connect(PathBuf::from(ctl)).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(b"count\n").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line.trim().parse().expect("a decimal touch count")
    }

    pub fn head(&self) -> String {
        let out = self.git_in_repo(&["rev-parse", "HEAD"]);
        ok(&out, "git rev-parse HEAD");
        stdout(&out).trim().to_owned()
    }

    /// An unsigned commit that changes a file.
    pub fn unsigned_commit(&self, n: u32) {
        std::fs::write(self.repo.join("file.txt"), format!("change {n}\n")).unwrap();
        ok(&self.git_in_repo(&["add", "file.txt"]), "git add");
        ok(
            &self.git_in_repo(&["commit", "-q", "--no-gpg-sign", "-m", &format!("c{n}")]),
            "unsigned git commit",
        );
    }
}
