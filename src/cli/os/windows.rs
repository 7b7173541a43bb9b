//! Windows: process groups without a console, console control events, TerminateProcess.

use std::path::Path;
use std::time::{Duration, Instant};

use auths_presence::agent::client;

use super::super::agent::{pid_path, read_pid};
use super::super::CliResult;

/// Let the background agent outlive this terminal: its own process group on Unix; a new
/// process group and no console on Windows.
///
/// Windows hands every inheritable handle to a child, and our own standard handles are
/// inheritable (we inherited them): the agent would keep the caller's stdout/stderr pipes open
/// for its whole life, and `auths agent start | …` would never see the end of our output. The
/// child's standard handles are the ones `cmd` sets, so ours are made non-inheritable first.
pub fn detach(cmd: &mut std::process::Command) {
    use std::os::windows::process::CommandExt;
    use windows_sys::Win32::Foundation::{SetHandleInformation, HANDLE_FLAG_INHERIT};
    use windows_sys::Win32::System::Console::{
        GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
    };
    for which in [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE] {
        // SAFETY: GetStdHandle takes a constant and returns a handle of this process (or
        // null/INVALID_HANDLE_VALUE, for which SetHandleInformation just fails); clearing the
        // inherit flag changes nothing else about the handle.
        unsafe {
            let h = GetStdHandle(which);
            if !h.is_null() {
                SetHandleInformation(h, HANDLE_FLAG_INHERIT, 0);
            }
        }
    }
    cmd.creation_flags(auths_presence::platform::windows::DETACHED_FLAGS);
}

/// Windows: Ctrl-C, Ctrl-Break or the console closing (a detached agent has no console and is
/// stopped by `auths agent stop`).
pub async fn wait_for_stop_signal() {
    let mut brk = tokio::signal::windows::ctrl_break().ok();
    let mut close = tokio::signal::windows::ctrl_close().ok();
    super::ctrl_c_or(
        brk.as_mut().map(|s| s.recv()),
        close.as_mut().map(|s| s.recv()),
    )
    .await;
}

/// Windows has no SIGHUP: caller rules are reloaded with `auths agent reload` only.
pub fn on_reload_signal(reload: impl Fn() + Send + 'static) {
    let _ = reload;
}

/// Windows: a detached process has no console to receive Ctrl-Break, so the keys are wiped
/// through the agent protocol first (the same request as `auths agent lock`), then the process
/// is ended with TerminateProcess, after checking that the pid is still an `auths` process
/// (a stale pid file must not kill whatever reused the pid). The pipe vanishes with it.
pub fn stop(socket: &Path) -> CliResult {
    use auths_presence::platform::windows as w;
    let pid = read_pid(socket)?;
    let wiped = client::wipe(socket).is_ok();
    let ours = std::env::current_exe()
        .ok()
        .and_then(|e| e.file_name().map(|n| n.to_string_lossy().to_lowercase()));
    let theirs = w::process_image(pid).and_then(|p| {
        Path::new(&p)
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
    });
    if theirs.is_none() || theirs != ours {
        let _ = std::fs::remove_file(pid_path(socket));
        return Err(format!(
            "pid {pid} from {} is not a running auths agent (stale pid file removed){}",
            pid_path(socket).display(),
            if wiped {
                "; the agent on the pipe wiped its keys"
            } else {
                ""
            }
        )
        .into());
    }
    w::terminate_process(pid).map_err(|e| format!("cannot stop agent pid {pid}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while client::is_listening(socket) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(pid_path(socket));
    if client::is_listening(socket) {
        return Err(format!("agent pid {pid} did not stop within 10 s").into());
    }
    eprintln!("agent pid {pid} stopped; its keys are wiped");
    Ok(())
}

/// Read a passphrase from the console without echo.
pub fn read_passphrase(
    prompt: &str,
) -> Result<zeroize::Zeroizing<String>, Box<dyn std::error::Error>> {
    auths_presence::platform::windows::read_console_hidden(prompt).map_err(|e| {
        format!("the key is encrypted and there is no console to ask for its passphrase ({e})")
            .into()
    })
}

/// The stop events of `auths sim serve` on Windows: Ctrl-C, Ctrl-Break, the console closing
/// (as [`wait_for_stop_signal`]); a detached or killed process just ends (its pipes vanish).
pub struct StopSignals(());

impl StopSignals {
    /// Nothing to block on Windows: console control events go to a handler thread.
    pub fn block() -> Result<StopSignals, Box<dyn std::error::Error>> {
        Ok(StopSignals(()))
    }

    /// Wait for one of them.
    pub fn wait(&self) -> Result<(), Box<dyn std::error::Error>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(wait_for_stop_signal());
        Ok(())
    }
}

/// `auths git setup` does not ask the agent for its key here yet (pass --key).
pub const ASKS_AGENT_FOR_KEY: bool = false;

/// No uid on Windows (only launchd plans use it).
pub fn uid() -> u32 {
    0
}
