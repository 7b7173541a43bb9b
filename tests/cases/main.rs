//! Integration tests: one binary, one module per area.

#[cfg(unix)]
mod agent_gate;
#[cfg(unix)]
mod agent_socket;
mod ctaphid_host;
#[cfg(unix)]
mod demo;
#[cfg(unix)]
mod git_signing;
mod vector_records;
mod vectors_assertions;
mod vectors_authdata;
mod vectors_ctap2;
mod virtual_key;
