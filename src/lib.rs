//! auths-presence: an ssh-agent that signs only after a verified touch on an enrolled FIDO2
//! security key.
//!
//! Layers, arrows pointing down only: `cli -> agent -> presence -> ctap`.
//! - [`ctap`]: our FIDO2 client (CTAPHID framing, CTAP2 commands, authenticator data), the
//!   hidapi transport and the virtual key.
//! - [`presence`]: enrollment, the binding client data, verification, policy, the gate, audit.
//! - [`agent`]: the ssh-agent server; it talks to the gate through [`presence::gate::Gate`].
//! - [`text`]: what the CLI writes for shells, systemd, launchd and git, and the OpenSSH key
//!   files it reads (pure, so tests and fuzz targets reach it).
//! - [`platform`] and [`secure_fs`]: operating-system specifics (Windows ACLs and process
//!   identity, private files), behind small interfaces.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod agent;
pub mod ctap;
pub mod platform;
pub mod presence;
pub mod secure_fs;
pub mod text;
