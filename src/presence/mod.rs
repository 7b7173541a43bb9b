//! The gate: enrollment, client data that binds a touch to a request, verification, policy,
//! audit. Knows nothing of sockets.

pub mod gate;
pub mod verify;
