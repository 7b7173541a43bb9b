//! The `auths` binary as a user runs it (README): `auths sim serve` in the background, then
//! `auths token enroll|list|test|remove --device sim:P`, and the failures a user meets: nobody
//! touches the key, a touch with nothing waiting.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::support::cli::{stderr, Sim, User};

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

#[test]
fn enroll_alg_offers_only_that_algorithm() {
    let user = User::new();
    // COSE ids: EdDSA -8, ES256 -7.
    for (alg, want, label) in [("eddsa", -8, "ed"), ("es256", -7, "p256")] {
        let sim = Sim::start(&user.dir, label, &[]);
        user.ok(&[
            "token",
            "enroll",
            "--device",
            &sim.device(),
            "--alg",
            alg,
            "--label",
            label,
        ]);
        let list = user.json(&["token", "list", "--json"]);
        let t = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["label"] == label)
            .unwrap_or_else(|| panic!("{label} enrolled: {list}"));
        assert_eq!(t["algorithm"], want, "{t}");
    }
}

/// An askpass program that prints `pin` and records each prompt it was given.
fn askpass(user: &User, name: &str, pin: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let prog = user.dir.join(name);
    let log = user.dir.join(format!("{name}.prompts"));
    super::support::script(
        &prog,
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\necho '{pin}'\n",
            log.display()
        ),
    );
    (prog, log)
}

#[test]
fn enrolling_a_key_that_needs_its_pin_asks_askpass_once_and_says_what_went_wrong() {
    let user = User::new();
    // A CTAP 2.0 key with a PIN (YubiKey 5 before 5.4): makeCredential needs the PIN.
    let sim = Sim::start(
        &user.dir,
        "k20",
        &["--pin", "2468", "--fido-version", "2.0"],
    );
    let device = sim.device();
    let enroll = ["token", "enroll", "--device", device.as_str()];

    // Nothing can ask: refused, saying how to set a PIN program up.
    let out = user.auths(&enroll);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("needs its PIN") && err.contains("AUTHS_ASKPASS"),
        "{err}"
    );

    // A wrong PIN: refused with the tries left, asked once (never retried on our own).
    let (wrong, wrong_log) = askpass(&user, "wrong", "1111");
    let out = user.auths_with(&enroll, &[("AUTHS_ASKPASS", &wrong)]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("wrong PIN") && err.contains("7 tries left"),
        "{err}"
    );
    let prompts = std::fs::read_to_string(&wrong_log).unwrap();
    assert_eq!(prompts.lines().count(), 1, "{prompts}");
    assert!(
        prompts.contains("PIN for virtual key at") && prompts.contains("to enroll it"),
        "{prompts}"
    );

    // The right PIN: enrolled, and the PIN appears in no output or file we wrote.
    let (right, _) = askpass(&user, "right", "2468");
    let out = user.auths_with(&enroll, &[("AUTHS_ASKPASS", &right)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!all.contains("2468"), "{all}");
    let tokens = std::fs::read_to_string(user.home.join("tokens.json")).unwrap();
    assert!(!tokens.contains("2468"));
    assert_eq!(
        user.json(&["token", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn enrolling_an_always_uv_key_uses_the_pin_up_front() {
    let user = User::new();
    let sim = Sim::start(&user.dir, "auv", &["--pin", "13579", "--always-uv"]);
    let (right, log) = askpass(&user, "right", "13579");
    let out = user.auths_with(
        &["token", "enroll", "--device", &sim.device()],
        &[("AUTHS_ASKPASS", &right)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
}

#[test]
fn token_test_waits_for_a_key_busy_with_another_program_and_says_so() {
    use std::io::{BufRead, BufReader};
    let user = User::new();
    let sim = Sim::start(&user.dir, "busy", &[]);
    let device = sim.device();
    user.ok(&["token", "enroll", "--device", &device]);
    let socket = sim.socket.to_str().unwrap();
    // A browser holds the key, for longer than this test may run.
    user.ok(&["sim", "busy", "--socket", socket, "--for-ms", "600000"]);
    let mut child = user.spawn(&["token", "test", "--device", &device]);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    // Bounded: the sim keeps the key busy, so the line comes or `token test` fails at its
    // deadline and stderr ends.
    loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no busy line");
        if line.contains("busy with another program") {
            break;
        }
    }
    // The browser is done: the test goes on and succeeds.
    user.ok(&["sim", "busy", "--socket", socket, "--for-ms", "0"]);
    let status = child.wait().unwrap();
    assert!(status.success());
}
