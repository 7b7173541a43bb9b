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
    /// The executable's file identity (device and inode), read from the kernel's link to it,
    /// so another program at the same path, or a copy elsewhere, is another executable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_file: Option<FileId>,
    /// Parent process id.
    pub parent_pid: Option<u32>,
    /// Parent process start time.
    pub parent_start_time: Option<u64>,
    /// Parent executable path.
    pub parent_exe: Option<String>,
    /// Session id (setsid) of the peer, for the `session` scope.
    pub session_id: Option<u32>,
    /// Whether the fields above were confirmed to describe the process that connected.
    #[serde(default)]
    pub identity: Identity,
}

/// Whether the agent could confirm that what it read about a peer describes the process that
/// connected, and not another one that was given its pid. Only a confirmed requester uses or
/// opens a grant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identity {
    /// Read while the connecting process was still alive: on Linux through a pidfd of the
    /// peer (`SO_PEERPIDFD`), elsewhere (and on older kernels) by its start time, unchanged
    /// across the reads.
    Confirmed,
    /// The connecting process had exited (or its pid named another process) when its details
    /// were read: only the uid from the kernel is known.
    Exited,
    /// The platform gives no way to confirm it (no pid, or no process details).
    #[default]
    Unconfirmed,
}

impl Identity {
    /// The name used in receipts and watch events.
    pub fn name(self) -> &'static str {
        match self {
            Identity::Confirmed => "confirmed",
            Identity::Exited => "exited",
            Identity::Unconfirmed => "unconfirmed",
        }
    }
}

/// A file's identity: device and inode. A path can come to name another file; these cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

/// What kind of bytes the agent is asked to sign. A grant covers one kind only, and the prompt
/// says which it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadKind {
    /// An SSHSIG blob (`ssh-keygen -Y sign`: git commits and tags, files).
    Sshsig,
    /// An ssh user authentication request (RFC 4252 §7): an ssh login.
    Userauth,
    /// Anything else.
    #[default]
    Other,
}

impl PayloadKind {
    /// The name used in client data, receipts and prompts.
    pub fn name(self) -> &'static str {
        match self {
            PayloadKind::Sshsig => "SSHSIG signature",
            PayloadKind::Userauth => "ssh login",
            PayloadKind::Other => "unknown data",
        }
    }
}

/// What is to be signed, as the prompt shows it and the client data binds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// OpenSSH fingerprint of the identity key, `SHA256:…`.
    pub key_fingerprint: String,
    /// SHA-256 of the exact bytes the agent was asked to sign.
    pub data_digest: [u8; 32],
    /// The SSHSIG namespace (`git`, `file`, …) when the bytes are an SSHSIG blob.
    pub namespace: Option<String>,
    /// The requesting process.
    pub requester: Requester,
    /// What kind of bytes they are.
    pub kind: PayloadKind,
    /// This signature needs its own touch, whatever grant is open, and its touch opens none:
    /// the key was added with the confirm constraint (`ssh-add -c`), or the request came from
    /// another host through a forwarded agent.
    pub confirm_each: bool,
    /// For an ssh login: who logs in where, as the prompt shows it. Display only: the client
    /// data binds the bytes (whose digest covers all of this), not this text.
    pub login: Option<LoginDetails>,
    /// The request came through a forwarded agent: its connection was bound with
    /// `session-bind@openssh.com` for forwarding, so another host sent it. Display only.
    pub forwarded: bool,
    /// The identity key's comment, for caller rules that name a key by it. Not bound.
    pub key_comment: Option<String>,
    /// The caller rule that allowed this request (set by the gate when a rules file is in
    /// force): its policy and user verification apply, and a grant its touch opens serves
    /// only requests the same rule allowed.
    pub rule: Option<super::rules::AppliedRule>,
    /// The identity key is sealed and not open: the touch that approves must also unseal it
    /// (its getAssertion carries the hmac-secret request), so no grant may stand in for it.
    pub unseal: Option<UnsealAsk>,
}

/// What unsealing a sealed identity key asks of the approving touch (nothing here is secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsealAsk {
    /// The sealed key's id (16 hex digits).
    pub key_id: String,
    /// The key file's hmac-secret salt.
    pub salt: [u8; 32],
    /// Sealed under the secret the security key gives only with the user verified.
    pub uv: bool,
}

/// What the prompt says about an ssh login (the agent fills it in from the signed bytes and
/// the connection's `session-bind@openssh.com` bindings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoginDetails {
    /// The user name on the server, control characters escaped.
    pub user: String,
    /// `SHA256:…` of the server's host key, when a verified session binding names it.
    pub host_key: Option<String>,
}

impl Requester {
    /// A requester known by uid, pid and executable only (tests, and platforms that tell no
    /// more).
    pub fn process(uid: u32, pid: u32, exe: &str) -> Requester {
        Requester {
            uid,
            pid: Some(pid),
            exe: Some(exe.to_owned()),
            identity: Identity::Confirmed,
            ..Requester::default()
        }
    }

    /// True when the details were confirmed to be the connecting process's.
    pub fn is_confirmed(&self) -> bool {
        self.identity == Identity::Confirmed
    }

    /// The connecting process is gone (or its pid names another one): keep the uid the kernel
    /// gave and the pid the prompt names, forget every detail that may be another process's.
    pub fn exited(self) -> Requester {
        Requester {
            uid: self.uid,
            pid: self.pid,
            identity: Identity::Exited,
            ..Requester::default()
        }
    }

    /// This requester, with its executable's file identity.
    pub fn with_exe_file(self, exe_file: FileId) -> Requester {
        Requester {
            exe_file: Some(exe_file),
            ..self
        }
    }
}
