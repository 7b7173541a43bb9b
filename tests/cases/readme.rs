//! README.md cannot drift from the code: its two set-up commands are read from README (not
//! copied here) and run. The demo command runs the built binary with the arguments README
//! gives after `cargo run … --`; the test command must be the one `.ci/run` calls.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The single command in the fenced block that follows `<!-- setup:NAME -->`.
fn setup_command(name: &str) -> String {
    let text = readme();
    let marker = format!("<!-- setup:{name} -->");
    let after = text
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README has no {marker}"))
        .1;
    let block = after
        .split_once("```")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .map(|(_, body)| body)
        .and_then(|body| body.split_once("```"))
        .map(|(cmd, _)| cmd.trim())
        .expect("a fenced block after the marker");
    assert_eq!(block.lines().count(), 1, "one command: {block:?}");
    block.to_owned()
}

#[test]
fn readme_test_command_is_what_ci_runs() {
    let cmd = setup_command("test");
    assert!(cmd.starts_with("cargo test"), "{cmd}");
    let ci =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == cmd),
        ".ci/run must run README's test command {cmd:?} as written"
    );
}

#[test]
fn readme_demo_command_runs_and_succeeds() {
    let cmd = setup_command("demo");
    let (cargo, args) = cmd.split_once(" -- ").expect("`cargo run … -- ARGS`");
    assert!(cargo.starts_with("cargo run"), "{cmd}");
    let args: Vec<&str> = args.split_whitespace().collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_auths"));
    child
        .args(&args)
        .env_remove("AUTHS_HOME")
        .env_remove("AUTHS_DEVICE")
        .env_remove("SSH_AUTH_SOCK")
        .stdin(std::process::Stdio::null());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the demo finishes")
        .expect("the demo runs");
    assert!(
        out.status.success(),
        "README's demo failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
