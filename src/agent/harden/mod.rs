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

/// Raise the soft open-file limit to the hard one (Unix), so that many idle connections do not
/// run the agent out of descriptors; the server does this at start ([`OpenFiles`] says what
/// came of it).
#[cfg(not(unix))]
pub(crate) use other::raise_open_files_limit;
#[cfg(unix)]
pub(crate) use unix::raise_open_files_limit;

/// The open-file limit after [`raise_open_files_limit`].
#[derive(Debug)]
pub(crate) struct OpenFiles {
    /// The soft limit in force now; `None` where there is none (Windows).
    pub(crate) limit: Option<u64>,
    /// Why raising it failed, with the limits tried: the agent keeps the old limit.
    pub(crate) error: Option<(u64, u64, std::io::Error)>,
}
