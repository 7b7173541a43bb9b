//! Our FIDO2 client (CTAP 2.1). Knows nothing of agents or policies.

pub mod authdata;
pub mod backend;
pub mod cbor;
pub mod client;
pub mod client_pin;
pub mod command;
pub mod cose;
pub mod device;
pub mod error;
pub mod framing;
pub mod hid;
pub mod hidraw;
pub mod hmac_secret;
pub mod pin;
pub mod select;
pub mod status;
#[cfg(test)]
mod test_support;
pub mod transaction;
pub mod transport;
pub mod u2f;
pub mod virtual_key;
pub mod winhello;

pub use error::{CtapError, HidErrorCode};
pub use status::StatusCode;
pub use transport::{Transport, TransportError};
