//! A running agent: the real [`run`] on a real Unix socket in a private temporary directory,
//! with an injected clock (time is moved, never waited for) and any [`Gate`].

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use auths_presence::agent::keys::{ManualClock, SealParams, UnlockPolicy};
use auths_presence::agent::server::{
    bind, run, AgentState, UnixAgentListener, DEFAULT_MAX_CONNECTIONS,
};
use auths_presence::agent::AgentError;
use auths_presence::presence::gate::Gate;
use auths_presence::presence::prompt::Prompter;

use super::openssh::{run_bounded, s, SSH_ADD};
use super::{short_tempdir, DEADLINE};

/// Argon2id parameters small enough for tests (the protocol lock derives a key per lock).
pub const FAST_SEAL: SealParams = SealParams {
    m_cost: 256,
    t_cost: 1,
    p_cost: 1,
};

/// How long the rig's agents give a client to finish a message it started: three times
/// [`DEADLINE`], the rig's own bound on every client it runs. OpenSSH writes a message's length
/// and its body in two `write`s; on a loaded machine `ssh-add` can be descheduled between them
/// for longer than the agent's 10 s default, and the agent then rightly drops it as a stalled
/// client: `ssh-add` dies of SIGPIPE writing the body and the test fails for no fault of the
/// code under test (reproduced by delaying ssh-add's second `write` by 11 s with strace's
/// `-e inject=write:delay_enter=11000000:when=2`). With this bound a client too slow for the
/// test fails in [`run_bounded`], saying so. The read timeout itself is tested with a short one
/// of its own (`slow_loris_is_dropped_while_others_are_served`).
pub const RIG_READ_TIMEOUT: Duration = Duration::from_secs(3 * DEADLINE.as_secs());

/// What [`Opts::backlog`] runs.
pub type Backlog = Box<dyn FnOnce(&Path)>;

pub struct Opts {
    pub policy: UnlockPolicy,
    pub read_timeout: Duration,
    /// Bind in a world-reachable directory with a 0777 socket, bypassing `bind`'s hardening,
    /// to test the per-connection uid check on its own.
    pub open_socket: bool,
    /// Run on the bound socket before the agent accepts anything: connections made here wait
    /// in the listen backlog, and the agent reads who made them only after this returns.
    pub backlog: Option<Backlog>,
    /// Connections kept open before the longest-idle one is closed.
    pub max_connections: usize,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            policy: UnlockPolicy::default(),
            read_timeout: RIG_READ_TIMEOUT,
            open_socket: false,
            backlog: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

pub struct Agent {
    pub rt: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub state: Arc<AgentState>,
    pub clock: Arc<ManualClock>,
    /// Where the agent tells watchers that its socket was replaced.
    pub prompter: Prompter,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), AgentError>>>,
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

impl Agent {
    pub fn start(gate: Arc<dyn Gate>, opts: Opts) -> Agent {
        let rt = runtime();
        let dir = short_tempdir();
        let sock_dir = dir.path().join("s");
        let path = sock_dir.join("agent.sock");
        let listener = {
            let _enter = rt.enter();
            if opts.open_socket {
                std::fs::create_dir(&sock_dir).unwrap();
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
                std::fs::set_permissions(&sock_dir, std::fs::Permissions::from_mode(0o777))
                    .unwrap();
                let l = tokio::net::UnixListener::bind(&path).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
                UnixAgentListener::from_tokio(l)
            } else {
                bind(&path).unwrap()
            }
        };
        if let Some(backlog) = opts.backlog {
            backlog(&path);
        }
        let clock = Arc::new(ManualClock::new());
        let prompter = Prompter::new(false);
        let state = Arc::new(
            AgentState::new(opts.policy, gate)
                .with_clock(clock.clone())
                .with_prompter(prompter.clone())
                .with_read_timeout(opts.read_timeout)
                .with_max_connections(opts.max_connections)
                .with_seal_params(FAST_SEAL),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(run(listener, Arc::clone(&state), async move {
            let _ = stopped.await;
        }));
        Agent {
            rt,
            dir,
            path,
            state,
            clock,
            prompter,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A raw connection whose reads and writes are bounded by [`DEADLINE`].
    pub fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.path).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.set_write_timeout(Some(DEADLINE)).unwrap();
        s
    }

    pub fn ssh_add(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(SSH_ADD);
        cmd.args(args);
        self.client_env(&mut cmd);
        run_bounded(cmd)
    }

    /// `ssh-add FILES`, which must succeed.
    pub fn add(&self, files: &[&Path]) {
        let args: Vec<&str> = files.iter().map(|f| s(f)).collect();
        let out = self.ssh_add(&args);
        assert!(out.status.success(), "ssh-add: {out:?}");
    }

    /// Point an OpenSSH client at this agent, with no way to prompt.
    pub fn client_env(&self, cmd: &mut Command) {
        cmd.env("SSH_AUTH_SOCK", &self.path)
            .env_remove("SSH_ASKPASS")
            .env_remove("SSH_ASKPASS_REQUIRE")
            .stdin(Stdio::null());
    }

    /// `ssh-add -l` lines (empty when the agent has no identities).
    pub fn listed(&self) -> Vec<String> {
        let out = self.ssh_add(&["-l"]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if stdout.contains("no identities") {
            return Vec::new();
        }
        assert!(out.status.success(), "ssh-add -l failed: {out:?}");
        stdout.lines().map(str::to_string).collect()
    }

    /// Write an askpass script answering `pass`.
    pub fn askpass(&self, name: &str, pass: &str) -> PathBuf {
        super::script(
            &self.dir.path().join(name),
            &format!("#!/bin/sh\necho '{pass}'\n"),
        )
    }

    pub fn ssh_add_askpass(&self, args: &[&str], askpass: &Path) -> Output {
        let mut cmd = Command::new(SSH_ADD);
        cmd.args(args);
        self.client_env(&mut cmd);
        cmd.env("SSH_ASKPASS", askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0");
        run_bounded(cmd)
    }

    pub fn stop(&mut self) -> Result<(), AgentError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => self
                .rt
                .block_on(async { tokio::time::timeout(DEADLINE, task).await })
                .expect("the agent stops within the deadline")
                .expect("the agent task does not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
