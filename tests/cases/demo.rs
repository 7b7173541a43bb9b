//! `auths demo` with no terminal (as in CI): every step passes, exit 0, nothing left behind.

use std::process::{Command, Stdio};

#[test]
fn demo_runs_every_step_without_a_terminal_and_leaves_nothing_behind() {
    let home = super::support::short_tempdir();
    let out = Command::new(env!("CARGO_BIN_EXE_auths"))
        .arg("demo")
        // The demo must not touch the user's AUTHS_HOME.
        .env("AUTHS_HOME", home.path().join("untouched"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for n in 1..=6 {
        assert!(stdout.contains(&format!("== Step {n}: ")), "{stdout}");
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.contains("3 signatures, 1 touch."), "{stdout}");
    assert!(
        stdout.contains("2 signature(s) approved by a verified touch, 2 under a verified batch grant, 1 denial(s)"),
        "{stdout}"
    );
    assert!(stderr.contains("Touch your security key"), "{stderr}");
    assert!(stderr.contains("Refused: no touch within"), "{stderr}");
    // Its temporary directory (named after its pid) is gone.
    let dir = stdout
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("/tmp/auths-demo-"))
        })
        .expect("the demo names its agent socket");
    let dir = std::path::Path::new(dir).parent().unwrap();
    assert!(!dir.exists(), "{} was left behind", dir.display());
    assert!(!home.path().join("untouched").exists());
}
