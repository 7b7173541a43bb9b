//! Integration tests: one binary, one module per area.

mod ctaphid_host;
mod virtual_key;
