//! `auths agent` as a user runs it: start in the background against a virtual key, `status
//! --json`, `add KEYFILE`, `watch --json` seeing the approval of a real `ssh-keygen -Y sign`,
//! `lock`, `stop`; and the refusal to start with nothing enrolled.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::support::cli::{Sim, User, AUTHS};

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[test]
fn agent_refuses_to_start_without_an_enrolled_key() {
    let user = User::new();
    let out = user.auths(&["agent", "start", "--device", "sim:/nonexistent"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("auths token enroll"),
        "says how to enroll: {err}"
    );
}

#[test]
fn agent_start_add_watch_sign_lock_stop() {
    let user = User::new();
    let sim = Sim::start(&user.dir, "key", &[]);
    let dev = sim.device();
    assert!(user
        .auths(&["token", "enroll", "--device", &dev])
        .status
        .success());
    let sock = user.home.join("a.sock");
    let sock_s = sock.to_str().unwrap();
    let out = user.auths(&["agent", "start", "--socket", sock_s, "--device", &dev]);
    assert!(out.status.success(), "{out:?}");
    let env = String::from_utf8_lossy(&out.stdout);
    assert!(
        env.contains(&format!("SSH_AUTH_SOCK={sock_s}; export SSH_AUTH_SOCK;")),
        "{env}"
    );
    struct Stop<'a>(&'a User, &'a str);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = self.0.auths(&["agent", "stop", "--socket", self.1]);
        }
    }
    let _stop = Stop(&user, sock_s);

    // A second agent on the same socket is refused; the user is told what to do.
    let again = user.auths(&["agent", "start", "--socket", sock_s, "--device", &dev]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already listening"), "{err}");
    assert!(
        err.contains("hint: stop it first (`auths agent stop`)"),
        "{err}"
    );

    // A socket in a directory others can read is refused, and the reason reaches the user.
    std::fs::set_permissions(
        &user.dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let loose = user.dir.join("loose.sock");
    let out = user.auths(&[
        "agent",
        "start",
        "--socket",
        loose.to_str().unwrap(),
        "--device",
        &dev,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 700"), "{err}");

    let status = json(&user.auths(&["agent", "status", "--json", "--socket", sock_s]));
    assert_eq!(status["running"], true);
    assert_eq!(status["identities"], 0);

    let key = user.dir.join("id");
    let gen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(gen.success());
    assert!(user
        .auths(&["agent", "add", key.to_str().unwrap(), "--socket", sock_s])
        .status
        .success());
    std::fs::remove_file(&key).unwrap(); // only the agent can sign now
    let status = json(&user.auths(&["agent", "status", "--json", "--socket", sock_s]));
    assert_eq!(status["identities"], 1);

    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut watch = Reap(
        Command::new(AUTHS)
            .args(["agent", "watch", "--json", "--socket", sock_s])
            .env("AUTHS_HOME", &user.home)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // `watch` announces itself on stderr once connected.
    let mut err = BufReader::new(watch.0.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("watching"), "{line}");

    let msg = user.dir.join("msg");
    std::fs::write(&msg, "hello\n").unwrap();
    let sign = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "git", "-f"])
        .arg(key.with_extension("pub"))
        .arg(&msg)
        .env("SSH_AUTH_SOCK", &sock)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(sign.status.success(), "{sign:?}");

    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watch.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    let next = || -> Value {
        serde_json::from_str(&rx.recv_timeout(Duration::from_secs(20)).unwrap()).unwrap()
    };
    // Announced on arrival, then approved, under one id.
    let requested = next();
    assert_eq!(requested["event"], "requested", "{requested}");
    assert_eq!(requested["namespace"], "git", "{requested}");
    let event = next();
    assert_eq!(event["event"], "approved", "{event}");
    assert_eq!(event["id"], requested["id"]);
    drop(watch);

    let list = json(&user.auths(&["audit", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["outcome"], "approved");
    assert!(user.auths(&["audit", "verify"]).status.success());

    assert!(user
        .auths(&["agent", "lock", "--socket", sock_s])
        .status
        .success());
    let status = json(&user.auths(&["agent", "status", "--json", "--socket", sock_s]));
    assert_eq!(status["identities"], 0, "lock wiped the keys");

    assert!(user
        .auths(&["agent", "stop", "--socket", sock_s])
        .status
        .success());
    assert!(!sock.exists(), "the socket is gone after stop");
}

#[test]
fn completions_and_man_page_come_from_the_clap_definitions() {
    let user = User::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = user.auths(&["completions", shell]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("enroll") && text.contains("install-service"),
            "{shell}"
        );
    }
    let out = user.auths(&["man"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(".TH auths 1"));
    let out = user.auths(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn install_service_prints_the_file_for_either_service_manager() {
    let user = User::new();
    for (manager, file, enable) in [
        ("launchd", "<plist", "launchctl bootstrap"),
        ("systemd", "[Service]", "systemctl --user"),
    ] {
        let args = ["agent", "install-service", "--print", "--manager", manager];
        let out = user.auths(&args);
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(file) && text.contains(enable),
            "{manager}: {text}"
        );
    }
    // Installing another platform's file here makes no sense: refused, nothing written.
    let other = if cfg!(target_os = "macos") {
        "systemd"
    } else {
        "launchd"
    };
    let refused = user.auths(&["agent", "install-service", "--manager", other]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--print"));
}

#[test]
fn audit_list_never_prints_a_peers_control_characters() {
    let user = User::new();
    std::fs::create_dir_all(&user.home).unwrap();
    std::fs::set_permissions(
        &user.home,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    // A receipt a same-user process wrote (the log is the user's file), with escapes that
    // would erase the screen and fake a line, and a line that is not JSON at all.
    let line = serde_json::json!({
        "id": "x", "time": 1, "key": "SHA256:\u{1b}[2Jk", "digest": "00",
        "namespace": "git\u{1b}[1A\rTouch your security key", "kind": "sshsig",
        "peer": {"uid": 1, "pid": 2, "exe": "/tmp/\u{1b}[31mevil"},
        "outcome": "denied", "signed": false, "reason": "\u{7}bell"
    });
    let log = user.home.join("audit.jsonl");
    std::fs::write(&log, format!("{line}\n\u{1b}]0;title\u{7}\n")).unwrap();
    std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = user.auths(&["audit", "list"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("DENIED"), "{text}");
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
}

/// The JSON on stdout, whatever the exit status.
fn parsed(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[test]
fn doctor_passes_on_a_working_set_up_and_names_the_agent_when_it_stops() {
    let user = User::new();
    let sim = Sim::start(&user.dir, "key", &[]);
    let dev = sim.device();
    user.ok(&["token", "enroll", "--device", &dev]);
    let sock = user.home.join("a.sock");
    let sock_s = sock.to_str().unwrap();
    user.ok(&["agent", "start", "--socket", sock_s, "--device", &dev]);
    struct Stop<'a>(&'a User, &'a str);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = self.0.auths(&["agent", "stop", "--socket", self.1]);
        }
    }
    let _stop = Stop(&user, sock_s);
    let doctor = [
        "doctor",
        "--json",
        "--socket",
        sock_s,
        "--device",
        dev.as_str(),
    ];
    let out = user.auths_with(&doctor, &[("SSH_AUTH_SOCK", &sock)]);
    let report = json(&out);
    let verdict = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("{name} in {report}"))["verdict"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(report["ok"], true, "{report}");
    assert!(out.status.success());
    for c in [
        "auths_home",
        "security_key",
        "enrolled_key_plugged_in",
        "agent",
        "ssh_auth_sock",
    ] {
        assert_eq!(verdict(c), "ok", "{c}: {report}");
    }
    assert_eq!(
        verdict("enrolled_keys"),
        "warn",
        "only a virtual key: {report}"
    );

    // SSH_AUTH_SOCK at another agent: it fails and says so.
    let other = user.dir.join("other.sock");
    let out = user.auths_with(&doctor, &[("SSH_AUTH_SOCK", &other)]);
    assert!(!out.status.success());
    assert_eq!(parsed(&out)["ok"], false);

    // The agent stopped: the report names it, with the fix.
    user.ok(&["agent", "stop", "--socket", sock_s]);
    let out = user.auths_with(&doctor, &[("SSH_AUTH_SOCK", &sock)]);
    assert!(!out.status.success());
    let report = parsed(&out);
    let agent = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "agent")
        .unwrap()
        .clone();
    assert_eq!(agent["verdict"], "fail", "{report}");
    assert!(
        agent["fix"].as_str().unwrap().contains("auths agent start"),
        "{agent}"
    );
}
