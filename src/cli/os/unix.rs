//! Unix: process groups, signals, the terminal.

use std::path::Path;
use std::time::{Duration, Instant};

use super::super::agent::read_pid;
use super::super::CliResult;

/// Let the background agent outlive this terminal: its own process group on Unix; a new
/// process group and no console on Windows.
pub fn detach(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
}

/// SIGINT or SIGTERM. (SIGHUP reloads the caller rules: [`on_reload_signal`].)
pub async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    super::ctrl_c_or(
        term.as_mut().map(|s| s.recv()),
        None::<std::future::Pending<()>>,
    )
    .await;
}

/// Run `reload` on every SIGHUP, as sshd does (inside a tokio runtime).
pub fn on_reload_signal(reload: impl Fn() + Send + 'static) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        eprintln!("auths agent: cannot watch SIGHUP; use `auths agent reload` to reload rules");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            reload();
        }
    });
}

/// Unix: SIGTERM; the agent wipes its keys, removes its socket and exits.
pub fn stop(socket: &Path) -> CliResult {
    let pid = read_pid(socket)?;
    let raw = i32::try_from(pid).map_err(|_| format!("bad agent pid {pid}"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(raw),
        nix::sys::signal::Signal::SIGTERM,
    )
    .map_err(|e| format!("cannot stop agent pid {pid}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if socket.exists() {
        return Err(format!("agent pid {pid} did not stop within 10 s").into());
    }
    eprintln!("agent pid {pid} stopped; its keys are wiped");
    Ok(())
}

/// Read a passphrase from the terminal without echo.
pub fn read_passphrase(
    prompt: &str,
) -> Result<zeroize::Zeroizing<String>, Box<dyn std::error::Error>> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::{BufRead, Write};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| "the key is encrypted and there is no terminal to ask for its passphrase")?;
    let mut out = tty.try_clone()?;
    write!(out, "{prompt}")?;
    out.flush()?;
    let saved = tcgetattr(&tty)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&tty, SetArg::TCSANOW, &quiet)?;
    let mut line = zeroize::Zeroizing::new(String::new());
    let r = std::io::BufReader::new(&tty).read_line(&mut line);
    tcsetattr(&tty, SetArg::TCSANOW, &saved)?;
    writeln!(out)?;
    r?;
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(line)
}

/// The stop signals (SIGINT, SIGTERM, SIGHUP), blocked in the calling thread, so every thread
/// started afterwards inherits the mask and [`StopSignals::wait`] takes the signal.
pub struct StopSignals(nix::sys::signal::SigSet);

impl StopSignals {
    /// Block them.
    pub fn block() -> Result<StopSignals, Box<dyn std::error::Error>> {
        use nix::sys::signal::{SigSet, Signal};
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGHUP);
        set.thread_block()?;
        Ok(StopSignals(set))
    }

    /// Wait for one of them.
    pub fn wait(&self) -> Result<(), Box<dyn std::error::Error>> {
        self.0.wait()?;
        Ok(())
    }
}

/// `auths git setup` asks the agent for its key.
pub const ASKS_AGENT_FOR_KEY: bool = true;

/// Our real uid (the launchd domain `gui/UID`).
pub fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}
