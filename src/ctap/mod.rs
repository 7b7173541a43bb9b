//! Our FIDO2 client (CTAP 2.1). Knows nothing of agents or policies.

pub mod cbor;
pub mod framing;
