//! `AUTHS_HOME`: where enrollments, the audit log, the agent socket and the config live.
//! Default `~/.auths`, mode 0700.

use std::path::PathBuf;

/// `$AUTHS_HOME`, or `~/.auths`.
pub fn auths_home() -> PathBuf {
    if let Some(h) = std::env::var_os("AUTHS_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let base = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    base.join(".auths")
}
