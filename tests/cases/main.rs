//! Integration tests: one binary, one module per area; `support` holds the rig they share
//! (case files import from it, never from each other).

#[cfg(unix)]
mod agent_add_file;
#[cfg(unix)]
mod agent_certs;
#[cfg(unix)]
mod agent_connections;
#[cfg(unix)]
mod agent_gate;
#[cfg(unix)]
mod agent_socket;
#[cfg(unix)]
mod agent_userauth;
mod attestation;
#[cfg(unix)]
mod audit_chain;
#[cfg(unix)]
mod cli_agent;
#[cfg(unix)]
mod cli_token;
mod client_virtual_key;
mod ctaphid_host;
#[cfg(unix)]
mod demo;
#[cfg(unix)]
mod ecdsa_keys;
#[cfg(unix)]
mod fast_path;
#[cfg(unix)]
mod gate_receipts;
#[cfg(unix)]
mod git_proofs;
#[cfg(unix)]
mod git_refusal;
#[cfg(unix)]
mod git_signing;
#[cfg(unix)]
mod hmac_secret;
#[cfg(target_os = "linux")]
mod notify;
#[cfg(unix)]
mod python_fido2;
mod readme;
mod real_key;
#[cfg(unix)]
mod rules;
#[cfg(unix)]
mod sealed_agent;
#[cfg(unix)]
mod sealed_keys;
#[cfg(unix)]
mod support;
#[cfg(unix)]
mod u2f;
mod vector_records;
mod vectors_assertions;
mod vectors_authdata;
mod vectors_ctap2;
mod vectors_ctaphid;
mod virtual_key;
#[cfg(windows)]
mod windows_agent;
