//! The `auths` binary as a user runs it (README): `auths sim serve` in the background, then
//! `auths token enroll|list|test|remove --device sim:P`, and the failures a user meets: nobody
//! touches the key, a touch with nothing waiting.
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

pub(crate) const AUTHS: &str = env!("CARGO_BIN_EXE_auths");

/// Longest one command may take; a touch timeout in these tests is 1 s.
const COMMAND_BOUND: Duration = Duration::from_secs(30);

/// A running `auths sim serve`; stopped (SIGTERM, then SIGKILL) when dropped, panics included.
pub(crate) struct Sim {
    child: Option<Child>,
    socket: PathBuf,
}

impl Sim {
    pub(crate) fn start(dir: &Path, name: &str, extra: &[&str]) -> Sim {
        let socket = dir.join(format!("{name}.sock"));
        let state = dir.join(format!("{name}.state"));
        let child = Command::new(AUTHS)
            .args(["sim", "serve", "--socket"])
            .arg(&socket)
            .arg("--state")
            .arg(&state)
            .args(extra)
            .env_remove("AUTHS_DEVICE")
            .stdin(Stdio::null())
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

    pub(crate) fn device(&self) -> String {
        format!("sim:{}", self.socket.display())
    }

    /// Stop as Ctrl-C would; returns whether it exited cleanly in time.
    fn stop(&mut self) -> bool {
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
pub(crate) struct User {
    _tmp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    pub(crate) home: PathBuf,
}

impl User {
    pub(crate) fn new() -> User {
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
    pub(crate) fn auths(&self, args: &[&str]) -> Output {
        let child = Command::new(AUTHS)
            .args(args)
            .env("AUTHS_HOME", &self.home)
            .env_remove("AUTHS_DEVICE")
            .stdin(Stdio::null())
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

    /// Run and require success.
    fn ok(&self, args: &[&str]) -> Output {
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

    fn json(&self, args: &[&str]) -> Value {
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

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn enroll_list_test_remove_against_auths_sim_serve() {
    use std::os::unix::fs::PermissionsExt;

    let user = User::new();
    let mut sim = Sim::start(&user.dir, "k", &[]);
    let device = sim.device();

    let out = user.ok(&["token", "enroll", "--device", &device]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("enrolled"), "{stdout}");
    assert!(stdout.contains("[virtual key]"), "{stdout}");
    assert!(
        stderr(&out).contains("VIRTUAL key"),
        "no loud virtual-key warning: {}",
        stderr(&out)
    );
    let md = std::fs::metadata(&user.home).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o700, "AUTHS_HOME mode");

    let list = user.json(&["token", "list", "--json"]);
    let tokens = list.as_array().expect("a JSON array");
    assert_eq!(tokens.len(), 1, "{list}");
    let t = &tokens[0];
    assert_eq!(t["virtual_key"], Value::Bool(true), "{t}");
    assert_eq!(t["label"], "main", "{t}");
    assert_eq!(t["rp_id"], "auths:presence", "{t}");
    let label = t["label"].as_str().unwrap().to_owned();
    let enrolled_count = t["sign_count"].as_u64().expect("sign_count");

    let test = user.json(&["token", "test", "--device", &device, "--json"]);
    assert_eq!(test["ok"], Value::Bool(true), "{test}");
    assert_eq!(test["virtual_key"], Value::Bool(true), "{test}");
    assert_eq!(test["user_present"], Value::Bool(true), "{test}");
    assert_eq!(test["label"], label.as_str(), "{test}");
    let first = test["sign_count"].as_u64().expect("sign_count");
    assert_eq!(test["previous_sign_count"].as_u64(), Some(enrolled_count));
    assert!(first > enrolled_count, "{test}");

    // The new counter was stored: the next test starts from it and goes past it.
    let again = user.json(&["token", "test", "--device", &device, "--json"]);
    assert_eq!(
        again["previous_sign_count"].as_u64(),
        Some(first),
        "{again}"
    );
    assert!(again["sign_count"].as_u64().unwrap() > first, "{again}");

    // Nothing waits for a touch: `auths sim touch` says so and fails.
    let out = user.auths(&["sim", "touch", "--socket", sim.socket.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "touch with nothing waiting succeeded"
    );
    assert!(
        stderr(&out).contains("not waiting for a touch"),
        "{}",
        stderr(&out)
    );

    user.ok(&["token", "remove", &label]);
    let list = user.json(&["token", "list", "--json"]);
    assert_eq!(list, Value::Array(vec![]), "{list}");

    // Removing it again is an error, not a silent success.
    assert!(!user.auths(&["token", "remove", &label]).status.success());

    assert!(
        sim.stop(),
        "auths sim serve did not stop cleanly on SIGTERM"
    );
    assert!(!sim.socket.exists(), "sim socket left behind");
}

#[test]
fn enroll_with_nobody_touching_fails_clearly_within_the_touch_timeout() {
    let user = User::new();
    let sim = Sim::start(&user.dir, "n", &["--touch", "never"]);
    let started = Instant::now();
    let out = user.auths(&[
        "token",
        "enroll",
        "--device",
        &sim.device(),
        "--touch-timeout",
        "1s",
    ]);
    assert!(!out.status.success(), "enroll without a touch succeeded");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("nobody touched the key in time"), "{err}");
    assert!(err.contains("run the command again"), "no next step: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "not bounded by --touch-timeout"
    );
    // Nothing was enrolled.
    let list = user.json(&["token", "list", "--json"]);
    assert_eq!(list, Value::Array(vec![]), "{list}");
}

#[test]
fn sim_touch_without_a_server_fails() {
    let user = User::new();
    let missing = user.dir.join("none.sock");
    let out = user.auths(&["sim", "touch", "--socket", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).starts_with("error:"), "{}", stderr(&out));
}
