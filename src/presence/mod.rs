//! The gate: enrollment, client data that binds a touch to a request, verification, policy,
//! audit. Knows nothing of sockets.

pub mod audit;
pub mod challenge;
pub mod enrollment;
pub mod gate;
pub mod home;
pub mod policy;
pub mod presence_gate;
pub mod prompt;
pub mod request;
pub mod touch;
pub mod verify;
