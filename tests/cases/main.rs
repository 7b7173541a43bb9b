//! Integration tests: one binary, one module per area.

mod ctaphid_host;
mod vector_records;
mod vectors_assertions;
mod vectors_authdata;
mod vectors_ctap2;
mod virtual_key;
