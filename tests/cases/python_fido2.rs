//! An independent implementation against ours: python-fido2 (Yubico's CTAP client, pip
//! `fido2`) drives `auths sim serve` with its own CTAPHID stack, Ctap2 and ClientPin, over the
//! sim's report socket (`tests/python/fido2_client_pin.py`). It sets a PIN, gets a token,
//! and makes a user-verified credential and assertion under each PIN/UV auth protocol.
//!
//! Needs `python3` with `fido2` importable; skipped (and saying so) otherwise, except where
//! `AUTHS_REQUIRE_PYTHON_FIDO2=1` (`.ci/run` installs it and sets that), where a missing
//! python-fido2 fails the test.

use std::path::Path;
use std::process::Command;

use super::support::cli::Sim;
use super::support::openssh::run_bounded;
use super::support::{python_fido2, short_tempdir};

fn check(protocol: &str) {
    let dir = short_tempdir();
    let sim = Sim::start(dir.path(), "pin", &["--pin-protocol", protocol]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/fido2_client_pin.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(&sim.socket).arg(protocol);
    let out = run_bounded(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python-fido2 against the virtual key, protocol {protocol}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
        7,
        "{stdout}"
    );
}

#[test]
fn python_fido2_client_pin_protocol_two_against_the_virtual_key() {
    if python_fido2("python_fido2_client_pin_protocol_two_against_the_virtual_key") {
        check("2");
    }
}

#[test]
fn python_fido2_client_pin_protocol_one_against_the_virtual_key() {
    if python_fido2("python_fido2_client_pin_protocol_one_against_the_virtual_key") {
        check("1");
    }
}
