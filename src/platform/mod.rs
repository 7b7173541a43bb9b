//! Operating-system specifics that several layers share, each behind one small interface.
//!
//! - [`sddl`]: Windows security descriptors and ACL rules as pure functions (SDDL strings for
//!   the agent's pipe and `AUTHS_HOME`, the "admits only the current user" verdict), compiled
//!   and tested everywhere.
//! - `windows` (Windows only): the Win32 calls behind them: the current user's SID, security
//!   descriptors from SDDL, a file's owner and DACL, and what a process id tells (executable,
//!   parent, start time, token user).

pub mod sddl;

#[cfg(windows)]
pub mod windows;

/// True when built for Windows: for defaults that differ there (device `windows`, the agent
/// on a named pipe, `set` instead of `export`), so callers need no `cfg!`.
pub const WINDOWS: bool = cfg!(windows);
