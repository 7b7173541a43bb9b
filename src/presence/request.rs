//! What the gate is asked to approve: who asks ([`Requester`]) and what is to be signed
//! ([`ApprovalRequest`]). `presence` knows nothing of sockets: the agent fills these in from
//! the kernel's view of the socket peer.

use serde::{Deserialize, Serialize};

/// Who asks for a signature, as the agent learned it from the socket peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    /// Effective uid of the peer (from the kernel, not from the peer).
    pub uid: u32,
    /// Process id, when the platform tells it.
    pub pid: Option<u32>,
    /// Process start time (clock ticks since boot on Linux), so a reused pid is another peer.
    pub start_time: Option<u64>,
    /// Executable path of the peer.
    pub exe: Option<String>,
    /// Parent process id.
    pub parent_pid: Option<u32>,
    /// Parent process start time.
    pub parent_start_time: Option<u64>,
    /// Parent executable path.
    pub parent_exe: Option<String>,
    /// Session id (setsid) of the peer, for the `session` scope.
    pub session_id: Option<u32>,
}

/// What is to be signed, as the prompt shows it and the client data binds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// OpenSSH fingerprint of the identity key, `SHA256:…`.
    pub key_fingerprint: String,
    /// SHA-256 of the exact bytes the agent was asked to sign.
    pub data_digest: [u8; 32],
    /// The SSHSIG namespace (`git`, `file`, …) when the bytes are an SSHSIG blob.
    pub namespace: Option<String>,
    /// The requesting process.
    pub requester: Requester,
}

impl Requester {
    /// A requester known by uid, pid and executable only (tests, and platforms that tell no
    /// more).
    pub fn process(uid: u32, pid: u32, exe: &str) -> Requester {
        Requester {
            uid,
            pid: Some(pid),
            exe: Some(exe.to_owned()),
            ..Requester::default()
        }
    }
}
