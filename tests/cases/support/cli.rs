//! The `auths` binary as a user runs it: `auths sim serve` in the background ([`Sim`]) and
//! `auths …` commands in a fresh `AUTHS_HOME` ([`User`]).
//!
//! Every wait is bounded: commands run on a thread whose result is taken with a timeout (the
//! process is killed past it), and the sim's socket is polled with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

pub const AUTHS: &str = env!("CARGO_BIN_EXE_auths");

/// Longest one command may take; a touch timeout in these tests is 1 s.
const COMMAND_BOUND: Duration = Duration::from_secs(30);

/// A running `auths sim serve`; stopped (SIGTERM, then SIGKILL) when dropped, panics included.
pub struct Sim {
    child: Option<Child>,
    pub socket: PathBuf,
}

impl Sim {
    pub fn start(dir: &Path, name: &str, extra: &[&str]) -> Sim {
        let socket = dir.join(format!("{name}.sock"));
        let state = dir.join(format!("{name}.state"));
        let child = auths_command()
            .args(["sim", "serve", "--socket"])
            .arg(&socket)
            .arg("--state")
            .arg(&state)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn auths sim serve");
        let mut sim = Sim {
            child: Some(child),
            socket,
        };
        // The data socket is bound first, the control socket (P.ctl) second.
        let ctl = PathBuf::from(format!("{}.ctl", sim.socket.display()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(sim.socket.exists() && ctl.exists()) {
            if let Some(status) = sim.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("auths sim serve exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "auths sim serve did not create {} in time",
                sim.socket.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        sim
    }

    pub fn device(&self) -> String {
        format!("sim:{}", self.socket.display())
    }

    /// Stop as Ctrl-C would; returns whether it exited cleanly in time.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A user's environment: a fresh `AUTHS_HOME` (auths creates it, 0700).
pub struct User {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub home: PathBuf,
}

impl User {
    pub fn new() -> User {
        // Short paths: Unix socket paths are limited to ~100 bytes.
        let tmp = tempfile::Builder::new()
            .prefix("auths-cli")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let home = dir.join("home");
        User {
            _tmp: tmp,
            dir,
            home,
        }
    }

    /// Run `auths ARGS`, bounded by [`COMMAND_BOUND`].
    pub fn auths(&self, args: &[&str]) -> Output {
        self.auths_with(args, &[])
    }

    /// Run `auths ARGS` with the environment variables `env` set as well.
    pub fn auths_with(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut cmd = auths_command();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .args(args)
            .env("AUTHS_HOME", &self.home)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn auths");
        let pid = Pid::from_raw(child.id() as i32);
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(COMMAND_BOUND) {
            Ok(out) => {
                waiter.join().unwrap();
                out.expect("wait for auths")
            }
            Err(_) => {
                let _ = kill(pid, Signal::SIGKILL);
                panic!(
                    "`auths {}` did not finish in {COMMAND_BOUND:?}",
                    args.join(" ")
                );
            }
        }
    }

    /// Start `auths ARGS` with stderr piped (the caller reads it and waits).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        auths_command()
            .args(args)
            .env("AUTHS_HOME", &self.home)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn auths")
    }

    /// Run and require success.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.auths(args);
        assert!(
            out.status.success(),
            "`auths {}` failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "`auths {}` printed no JSON ({e}): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `auths` binary with no stdin and no `AUTHS_DEVICE` from the caller's environment.
fn auths_command() -> Command {
    let mut c = Command::new(AUTHS);
    // No desktop notifications from test agents on the developer's own session bus (the
    // notification tests set their private bus's address).
    c.env_remove("AUTHS_DEVICE")
        .env_remove("AUTHS_ASKPASS")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null());
    c
}
