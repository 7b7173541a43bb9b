//! Without Unix sockets there is no demo yet.

use std::path::Path;

use super::super::CliResult;

/// `auths demo`.
pub fn run() -> CliResult {
    Err("auths demo needs Unix sockets; it is not available on this platform yet".into())
}

/// `auths demo-sign`.
pub fn sign_helper(_: &Path, _: &Path, _: &str) -> CliResult {
    Err("auths demo-sign needs Unix sockets; it is not available on this platform yet".into())
}
