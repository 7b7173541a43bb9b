//! Process hardening (see `crate::platform` for the scheme).

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux;
#[cfg(any(target_os = "linux", target_os = "android"))]
use linux as imp;
#[cfg(not(unix))]
mod other;
#[cfg(not(unix))]
use other as imp;
// Every Unix disables core dumps the same way; Linux adds PR_SET_DUMPABLE on top.
#[cfg(unix)]
mod unix;
#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
use unix as imp;

/// Harden the agent process before it holds keys: no core dumps (`RLIMIT_CORE` 0) and, on
/// Linux, not dumpable (`PR_SET_DUMPABLE` 0: no core file, no same-user ptrace, `/proc/PID/mem`
/// and friends owned by root). The CLI calls this at agent start.
pub use imp::harden_process;
