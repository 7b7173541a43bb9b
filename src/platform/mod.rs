//! Operating-system specifics.
//!
//! # Where platform code lives
//!
//! Every platform-dependent interface is a module directory next to the code that uses it. Its
//! `mod.rs` holds the interface (docs, the pure shared parts, the types every platform has)
//! and picks this platform's implementation with `cfg` on `mod` and `use`/`pub use` lines only
//! (usually `#[cfg(..)] mod unix; #[cfg(..)] use unix as imp;` then an unconditional
//! `pub use imp::{..}`). The implementations sit beside it, one file per platform, named after
//! it (`unix.rs`, `linux.rs`, `macos.rs`, `windows.rs`; `other.rs` / `unsupported.rs` where a
//! platform gets the same names with an "unsupported" answer), and contain no `cfg` but
//! `#[cfg(test)]`. Nothing else in the crate uses `#[cfg(..)]` or `cfg!` on a platform
//! (tests aside); code that needs a platform-dependent default asks [`WINDOWS`].
//!
//! | interface | module | implementations |
//! |---|---|---|
//! | peer identity | `agent::peer` | `linux`, `macos`, `bsd` (other Unix), `unix` (socket credentials), `windows` (pipe client) |
//! | listener (agent endpoint, client side) | `agent::listener` | `unix` (socket), `windows` (named pipe), `other` |
//! | process hardening | `agent::harden` | `linux` (also Android), `unix`, `other` |
//! | file protection | `secure_fs` | `unix` (modes, `flock`), `windows` (ACLs), `other`, `plain` (shared by the non-Unix two) |
//! | device backend: raw HID | `ctap::hid` | `hidapi_backend` (Linux, macOS), `unsupported` |
//! | device backend: webauthn.dll | `ctap::winhello` | `imp` (Windows), `unsupported` |
//! | device backend: the sim sockets | `ctap::virtual_key::sim` | `unix`, `unsupported` |
//! | CLI process control, passphrase, service manager | `cli::os` (binary) | `unix`, `windows`, `linux` / `macos` / `no_service` |
//! | CLI demo | `cli::demo` (binary) | `unix`, `other` |
//!
//! This module holds what several of them share:
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

/// True when built for Linux: for advice that only applies there (the udev rule for hidraw).
pub const LINUX: bool = cfg!(target_os = "linux");
