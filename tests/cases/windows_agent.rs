//! Windows: the real `auths.exe` end to end over named pipes. `auths sim serve` puts the
//! virtual key behind `\\.\pipe\…` (raw CTAPHID reports, real CTAP2), `auths agent start`
//! serves the agent on its own named pipe, and the test process is the ssh-agent client (the
//! project's client, [`auths_presence::agent::client`]; OpenSSH for Windows is not there under
//! Wine). Every test here is named `windows_agent_…`.
//!
//! Some Windows behaviour cannot be seen under Wine (it does not enforce pipe or file ACLs,
//! ignores `FILE_FLAG_FIRST_PIPE_INSTANCE`, has no webauthn.dll): those tests run on a real
//! Windows machine and, under Wine, print why they skip and return.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use auths_presence::agent::client;
use serde_json::Value;
use ssh_agent_lib::proto::{PublicCredential, Request, Response, SignRequest};
use ssh_key::{HashAlg, LineEnding, PrivateKey, SshSig};

const AUTHS: &str = env!("CARGO_BIN_EXE_auths");

/// Longest one command may take (the process is ended past it).
const COMMAND_BOUND: Duration = Duration::from_secs(60);

/// True under Wine: ntdll.dll exports `wine_get_version` there, never on Windows.
fn under_wine() -> bool {
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
    let ntdll: Vec<u16> = "ntdll.dll\0".encode_utf16().collect();
    // SAFETY: `ntdll` is NUL-terminated UTF-16; ntdll.dll is mapped into every process, and
    // GetModuleHandleW takes no reference we would have to release.
    let module = unsafe { GetModuleHandleW(ntdll.as_ptr()) };
    if module.is_null() {
        return false;
    }
    // SAFETY: `module` is a loaded module; the name is a NUL-terminated ANSI string.
    unsafe { GetProcAddress(module, c"wine_get_version".as_ptr().cast()) }.is_some()
}

/// Under Wine, say why this test cannot show anything and return true (the caller returns).
fn skip_under_wine(what: &str) -> bool {
    if under_wine() {
        eprintln!("skipped under Wine: {what}; this test runs on a real Windows machine");
        return true;
    }
    false
}

/// A pipe name nobody else uses (the test binary runs tests in parallel, and the Wine prefix
/// may be shared with other runs).
fn pipe(what: &str) -> String {
    format!(
        r"\\.\pipe\auths-test-{}-{what}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )
}

/// A fresh user environment: `AUTHS_HOME` inside a temporary directory.
struct User {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    home: PathBuf,
}

impl User {
    fn new() -> User {
        let tmp = tempfile::Builder::new()
            .prefix("auths-win")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        User {
            home: dir.join("home"),
            dir,
            _tmp: tmp,
        }
    }

    /// Run `auths ARGS` with this `AUTHS_HOME`, bounded by [`COMMAND_BOUND`]. Its output goes
    /// to files, not pipes: a background agent started by `auths agent start` inherits the
    /// standard handles (Windows passes inheritable handles to every child), and a pipe would
    /// stay open until that agent ends.
    fn auths(&self, args: &[&str]) -> Output {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let out_path = self.dir.join(format!("out-{n}"));
        let err_path = self.dir.join(format!("err-{n}"));
        let mut child = Command::new(AUTHS)
            .args(args)
            .env("AUTHS_HOME", &self.home)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .expect("spawn auths.exe");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(COMMAND_BOUND) {
            Ok(status) => Output {
                status: status.expect("wait for auths.exe"),
                stdout: std::fs::read(&out_path).unwrap(),
                stderr: std::fs::read(&err_path).unwrap(),
            },
            Err(_) => {
                let _ = auths_presence::platform::windows::terminate_process(pid);
                panic!(
                    "`auths {}` did not finish in {COMMAND_BOUND:?}",
                    args.join(" ")
                );
            }
        }
    }

    /// `auths ARGS --json`, which must succeed, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.auths(args);
        assert!(out.status.success(), "auths {args:?}: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
    }
}

/// A running `auths sim serve` on a named pipe; ended when dropped.
struct Sim {
    child: Child,
    pipe: String,
}

impl Sim {
    /// Start it with state file `state` and `extra` options; returns once it listens (it says
    /// so on stderr after both pipes exist).
    fn start(state: &Path, pipe: &str, extra: &[&str]) -> Sim {
        let mut child = Command::new(AUTHS)
            .args(["sim", "serve", "--socket", pipe, "--state"])
            .arg(state)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn auths sim serve");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut sim = Sim {
            child,
            pipe: pipe.to_owned(),
        };
        loop {
            match rx.recv_timeout(COMMAND_BOUND) {
                Ok(line) if line.contains("listening on") => break,
                Ok(_) => {}
                Err(_) => {
                    let status = sim.child.try_wait();
                    panic!("auths sim serve did not start listening ({status:?})");
                }
            }
        }
        sim
    }

    fn device(&self) -> String {
        format!("sim:{}", self.pipe)
    }

    /// Touches that approved something, through the control pipe (`count`).
    fn touches(&self) -> u64 {
        let mut ctl = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("{}.ctl", self.pipe))
            .expect("open the control pipe");
        ctl.write_all(b"count\n").unwrap();
        let mut line = String::new();
        BufReader::new((&mut ctl).take(64))
            .read_line(&mut line)
            .unwrap();
        line.trim().parse().unwrap_or_else(|_| panic!("{line:?}"))
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An agent started with `auths agent start --socket PIPE`, stopped when dropped.
struct Agent<'a> {
    user: &'a User,
    pipe: String,
}

impl<'a> Agent<'a> {
    fn start(user: &'a User, device: &str, extra: &[&str]) -> Agent<'a> {
        let pipe = pipe("agent");
        let mut args = vec!["agent", "start", "--socket", &pipe, "--device", device];
        args.extend_from_slice(extra);
        let out = user.auths(&args);
        assert!(out.status.success(), "{out:?}");
        let env = String::from_utf8_lossy(&out.stdout);
        assert!(env.contains(&pipe), "names its pipe: {env}");
        Agent { user, pipe }
    }

    fn path(&self) -> &Path {
        Path::new(&self.pipe)
    }

    fn status(&self) -> Value {
        self.user
            .json(&["agent", "status", "--json", "--socket", &self.pipe])
    }

    fn stop(&self) -> Output {
        self.user.auths(&["agent", "stop", "--socket", &self.pipe])
    }
}

impl Drop for Agent<'_> {
    fn drop(&mut self) {
        if client::is_listening(self.path()) {
            let _ = self.stop();
        }
    }
}

/// An Ed25519 identity key written (unencrypted, OpenSSH format) to `dir/id`, and added to
/// the agent with `auths agent add`.
fn add_key(user: &User, agent: &Agent) -> ssh_key::PublicKey {
    let key = PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let file = user.dir.join("id");
    std::fs::write(&file, key.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap();
    let out = user.auths(&[
        "agent",
        "add",
        file.to_str().unwrap(),
        "--socket",
        &agent.pipe,
    ]);
    assert!(out.status.success(), "{out:?}");
    std::fs::remove_file(&file).unwrap(); // only the agent can sign now
    key.public_key().clone()
}

/// Ask the agent for an SSHSIG signature over `msg` in namespace `git` (what `ssh-keygen -Y
/// sign` sends), and check it if one comes back.
fn sign(agent: &Agent, key: &ssh_key::PublicKey, msg: &[u8]) -> Result<(), String> {
    let data = SshSig::signed_data("git", HashAlg::Sha512, msg).unwrap();
    let req = Request::SignRequest(SignRequest {
        credential: PublicCredential::Key(key.key_data().clone()),
        data,
        flags: 0,
    });
    match client::request(agent.path(), &req, COMMAND_BOUND) {
        Ok(Response::SignResponse(signature)) => {
            let sshsig =
                SshSig::new(key.key_data().clone(), "git", HashAlg::Sha512, signature).unwrap();
            key.verify("git", msg, &sshsig)
                .map_err(|e| format!("the agent's signature does not verify: {e}"))?;
            Ok(())
        }
        Ok(Response::Failure) => Err("the agent refused the request".into()),
        Ok(other) => panic!("unexpected answer {other:?}"),
        Err(e) => Err(e.to_string()),
    }
}

fn outcomes(user: &User) -> Vec<String> {
    let list = user.json(&["audit", "list", "--json"]);
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn enroll(user: &User, sim: &Sim) {
    let out = user.auths(&["token", "enroll", "--device", &sim.device()]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn windows_agent_start_status_add_sign_audit_stop_over_named_pipes() {
    let user = User::new();
    let sim = Sim::start(&user.dir.join("key.state"), &pipe("sim"), &[]);
    enroll(&user, &sim);
    let list = user.json(&["token", "list", "--json"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    let agent = Agent::start(&user, &sim.device(), &[]);
    let status = agent.status();
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["identities"], 0, "{status}");

    // A second agent on the same pipe is refused, and says what to do.
    let again = user.auths(&[
        "agent",
        "start",
        "--socket",
        &agent.pipe,
        "--device",
        &sim.device(),
    ]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already listening"), "{err}");

    let key = add_key(&user, &agent);
    assert_eq!(agent.status()["identities"], 1);

    let before = sim.touches();
    sign(&agent, &key, b"a commit\n").expect("signed after a touch");
    assert_eq!(sim.touches(), before + 1, "one touch for one signature");
    assert_eq!(outcomes(&user), ["approved"]);

    let verify = user.json(&["audit", "verify", "--json"]);
    assert_eq!(verify["approved"], 1, "{verify}");
    assert_eq!(verify["problems"], serde_json::json!([]), "{verify}");
    assert_eq!(verify["chain"]["chained"], true, "{verify}");
    assert!(user.auths(&["audit", "verify"]).status.success());

    assert!(user
        .auths(&["agent", "lock", "--socket", &agent.pipe])
        .status
        .success());
    assert_eq!(agent.status()["identities"], 0, "lock wiped the keys");

    let out = agent.stop();
    assert!(out.status.success(), "{out:?}");
    assert!(!client::is_listening(agent.path()), "the pipe is gone");
}

#[test]
fn windows_agent_refuses_to_sign_without_a_touch() {
    let user = User::new();
    let state = user.dir.join("key.state");
    // Enroll with a key that touches, then serve the same key (same state) with a user who
    // never touches it.
    let sim = Sim::start(&state, &pipe("sim"), &[]);
    enroll(&user, &sim);
    drop(sim);
    let sim = Sim::start(&state, &pipe("sim"), &["--touch", "never"]);

    let agent = Agent::start(&user, &sim.device(), &["--touch-timeout", "1s"]);
    let key = add_key(&user, &agent);
    let err = sign(&agent, &key, b"a commit\n").expect_err("no touch, no signature");
    assert!(err.contains("refused"), "{err}");
    assert_eq!(sim.touches(), 0);
    assert_eq!(outcomes(&user), ["denied"]);
    // The agent keeps serving after a refusal.
    assert_eq!(agent.status()["identities"], 1);
    assert!(user.auths(&["audit", "verify"]).status.success());
}

#[test]
fn windows_agent_batch_one_touch_for_three_signatures() {
    let user = User::new();
    let sim = Sim::start(&user.dir.join("key.state"), &pipe("sim"), &[]);
    enroll(&user, &sim);
    // Scope `process`: the test process sends all four. (Under Wine the test's parent is no
    // Windows process, so the default scope `parent` has nothing to bind and every request
    // needs its own touch, as it should.)
    let agent = Agent::start(&user, &sim.device(), &["--policy", "batch:3:300:process"]);
    let key = add_key(&user, &agent);
    let before = sim.touches();
    for i in 0..3 {
        sign(&agent, &key, format!("commit {i}\n").as_bytes()).expect("in the batch");
    }
    assert_eq!(
        sim.touches(),
        before + 1,
        "one touch approved the batch of three"
    );
    sign(&agent, &key, b"commit 4\n").expect("a new touch");
    assert_eq!(sim.touches(), before + 2, "the fourth needed its own touch");
    assert_eq!(
        outcomes(&user),
        ["approved", "granted", "granted", "approved"]
    );
    assert!(user.auths(&["audit", "verify"]).status.success());
}

/// `auths agent start | …`: the background agent must not hold the caller's pipes open
/// (Windows passes inheritable handles to children), or the reader never sees the end.
#[test]
fn windows_agent_start_returns_while_its_output_is_a_pipe() {
    let user = User::new();
    let sim = Sim::start(&user.dir.join("key.state"), &pipe("sim"), &[]);
    enroll(&user, &sim);
    let agent = Agent {
        user: &user,
        pipe: pipe("agent"),
    };
    let child = Command::new(AUTHS)
        .args([
            "agent",
            "start",
            "--socket",
            &agent.pipe,
            "--device",
            &sim.device(),
        ])
        .env("AUTHS_HOME", &user.home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(COMMAND_BOUND) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = auths_presence::platform::windows::terminate_process(pid);
            panic!("the output pipes of `auths agent start` stayed open after it exited");
        }
    };
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&agent.pipe));
    assert_eq!(agent.status()["running"], true);
}

#[test]
fn windows_agent_sim_touch_and_busy_through_the_control_pipe() {
    let user = User::new();
    let sim = Sim::start(
        &user.dir.join("key.state"),
        &pipe("sim"),
        &["--touch", "manual"],
    );
    // Nothing waits for a touch: `auths sim touch` says so and fails.
    let out = user.auths(&["sim", "touch", "--socket", &sim.pipe]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not waiting for a touch"), "{err}");
    let out = user.auths(&["sim", "busy", "--socket", &sim.pipe, "--for-ms", "1"]);
    assert!(out.status.success(), "{out:?}");
    // Not a pipe name: a clear error.
    let out = user.auths(&["sim", "touch", "--socket", r"C:\not-a-pipe"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a named pipe name"), "{err}");
}

#[test]
fn windows_agent_pipe_admits_the_current_user_only() {
    if skip_under_wine("Wine does not keep or enforce named pipe security descriptors") {
        return;
    }
    use auths_presence::platform::sddl::{ACCESS_ALLOWED_ACE_TYPE, ADMINISTRATORS_SID};
    let user = User::new();
    let sim = Sim::start(&user.dir.join("key.state"), &pipe("sim"), &[]);
    enroll(&user, &sim);
    let agent = Agent::start(&user, &sim.device(), &[]);
    let me = auths_presence::platform::windows::current_user_sid().unwrap();
    let (owner, dacl) = auths_presence::platform::windows::owner_and_dacl(agent.path())
        .expect("read the pipe's security descriptor");
    assert_eq!(owner, me);
    let dacl = dacl.expect("a DACL");
    assert_eq!(dacl.len(), 1, "{dacl:?}");
    assert_eq!(dacl[0].ace_type, ACCESS_ALLOWED_ACE_TYPE);
    assert_eq!(dacl[0].sid, me);
    assert_ne!(dacl[0].sid, ADMINISTRATORS_SID);
}

#[test]
fn windows_agent_second_foreground_agent_on_the_pipe_is_refused_at_create() {
    if skip_under_wine("Wine ignores FILE_FLAG_FIRST_PIPE_INSTANCE") {
        return;
    }
    let user = User::new();
    let sim = Sim::start(&user.dir.join("key.state"), &pipe("sim"), &[]);
    enroll(&user, &sim);
    let agent = Agent::start(&user, &sim.device(), &[]);
    // --foreground skips the "is anyone listening" probe: the pipe's first-instance flag is
    // what refuses it.
    let out = user.auths(&[
        "agent",
        "start",
        "--foreground",
        "--socket",
        &agent.pipe,
        "--device",
        &sim.device(),
    ]);
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already listening"), "{err}");
}

#[test]
fn windows_agent_auths_home_acl_is_user_only() {
    if skip_under_wine("Wine derives file ACLs from Unix mode bits and does not enforce them") {
        return;
    }
    let user = User::new();
    let sim = Sim::start(&user.dir.join("key.state"), &pipe("sim"), &[]);
    enroll(&user, &sim);
    let me = auths_presence::platform::windows::current_user_sid().unwrap();
    let (owner, dacl) = auths_presence::platform::windows::owner_and_dacl(&user.home).unwrap();
    auths_presence::platform::sddl::check_acl(&owner, &me, dacl.as_deref())
        .unwrap_or_else(|e| panic!("AUTHS_HOME's ACL: {e:?}"));
}

/// webauthn.dll is loaded at run time: where it is too old (Wine's stand-in says API version 0)
/// `auths` starts and says what is needed instead of failing to load.
#[test]
fn windows_agent_webauthn_too_old_says_what_windows_needs() {
    if !under_wine() {
        eprintln!(
            "skipped on Windows: a real webauthn.dll opens its dialog and waits for a person"
        );
        return;
    }
    let user = User::new();
    let out = user.auths(&["token", "enroll", "--device", "windows"]);
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Windows 10 1903"), "{err}");
}
