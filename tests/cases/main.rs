//! Integration tests, one binary: each module drives the library through its public API.

#[cfg(unix)]
mod agent_socket;
