//! One integration test binary for the `tests/cases/*` suites (one link, shared helpers).

mod vector_records;
mod vectors_assertions;
mod vectors_authdata;
mod vectors_ctap2;
