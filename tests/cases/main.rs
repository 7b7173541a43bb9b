//! Integration tests: one binary, one module per area.

mod cli_token;
mod client_virtual_key;
mod ctaphid_host;
mod vectors_ctaphid;
mod virtual_key;
