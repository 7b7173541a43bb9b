//! The command line's platform half (see `auths_presence::platform` for the scheme): starting
//! and stopping the background agent, stop signals, reading a passphrase, the service
//! manager. `unix` and `windows` expose the same names; the command line builds on those two
//! only (as before this module existed).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::SERVICE_MANAGER;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub use macos::SERVICE_MANAGER;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod no_service;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub use no_service::SERVICE_MANAGER;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

pub use imp::{
    detach, on_reload_signal, read_passphrase, stop, uid, wait_for_stop_signal, StopSignals,
    ASKS_AGENT_FOR_KEY,
};

/// Wait for Ctrl-C or the next event of either of this platform's two stop signal streams. A
/// stream that could not be set up (`None`) never ends the wait.
async fn ctrl_c_or<A: std::future::Future, B: std::future::Future>(a: Option<A>, b: Option<B>) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = signal_or_never(a) => {}
        _ = signal_or_never(b) => {}
    }
}

async fn signal_or_never<F: std::future::Future>(next: Option<F>) {
    match next {
        Some(f) => {
            f.await;
        }
        None => std::future::pending().await,
    }
}
