//! `auths demo`: the whole idea in one command, with no hardware and nothing left behind.
//!
//! A virtual security key, a temporary `AUTHS_HOME`, an in-process agent and its socket, all
//! under one private directory in /tmp that is removed at the end (also when a step fails).
//! Every step checks that it did what it claims; the demo exits 0 only when all of them did.
//!
//! `auths demo-sign` (hidden) is the "other process" of steps 4 and 5: a child that asks the
//! agent for an SSHSIG over a message through the ssh-agent protocol and prints it.

//!
//! The platform half (see `auths_presence::platform` for the scheme): `unix` is the demo, on
//! Unix and (with a named pipe for the socket) on Windows; `other` says it is not available.

#[cfg(not(any(unix, windows)))]
mod other;
#[cfg(not(any(unix, windows)))]
use other as imp;
#[cfg(any(unix, windows))]
mod unix;
#[cfg(any(unix, windows))]
use unix as imp;

pub use imp::{run, sign_helper};
