//! The rig the case files share, and `benches/agent_sign.rs` through `#[path]`: temporary
//! directories, bounded waits, an agent on a real socket ([`agent`]), real OpenSSH clients
//! ([`openssh`]), raw agent frames ([`wire`]), the virtual key enrolled behind the real presence
//! gate ([`gate`]) and the `auths` binary as a user runs it ([`cli`]). Case files import from
//! here, never from each other.

// Each user (the test binary, the bench) takes a part.
#![allow(dead_code)]

pub mod agent;
pub mod cli;
pub mod gate;
pub mod git;
pub mod openssh;
pub mod wire;

use std::process::Child;
use std::time::{Duration, Instant};

/// Every wait in the tests is bounded by this.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A private temporary directory under /tmp: socket paths must stay under ~100 bytes, which
/// `$TMPDIR` does not promise.
pub fn short_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ap-")
        .tempdir_in("/tmp")
        .unwrap()
}

/// Write the shell script `body` to `path`, executable by its owner only (askpass programs).
pub fn script(path: &std::path::Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path.to_path_buf()
}

/// Poll `ready` until it holds, failing the test (naming `what`) after [`DEADLINE`]. For
/// conditions nobody can notify us of, such as another process starting to listen.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A child process killed (and reaped) when the test ends, pass or fail.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Say, where `--nocapture` shows it, that a test checked nothing and how to make it run.
pub fn skipped(test: &str, how_to_run: &str) {
    eprintln!("{test}: skipped: {how_to_run}");
}

/// Whether python3 can import python-fido2; when it cannot, the test `test` skips and says so,
/// unless `AUTHS_REQUIRE_PYTHON_FIDO2` is set (`.ci/run` sets it), which fails it.
pub fn python_fido2(test: &str) -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import fido2.ctap2.pin"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("AUTHS_REQUIRE_PYTHON_FIDO2").is_none(),
            "AUTHS_REQUIRE_PYTHON_FIDO2 is set but python3 cannot import fido2 (pip install fido2==2.2.1)"
        );
        skipped(
            test,
            "needs python3 with python-fido2 (pip install fido2==2.2.1)",
        );
    }
    found
}
