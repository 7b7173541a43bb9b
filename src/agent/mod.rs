//! The ssh-agent server (draft-miller-ssh-agent). Knows nothing of CTAP.
//!
//! - [`peer`]: who is on the other end of a connection (uid, pid, start time, executable,
//!   parent), read once when the connection is accepted.
//! - [`keys`]: identity keys in zeroizing memory, the unlock window, the sealed protocol lock.
//! - [`codec`]: agent messages as bytes (length cap, strict decode, SSHSIG), no I/O.
//! - [`ecdsa`]: ECDSA private scalars as OpenSSH writes them (mpints that drop leading zero
//!   bytes), put in the fixed-size form ssh-key reads, strictly.
//! - `connection`: frame I/O with timeouts, and the hang-up watch while the gate waits.
//! - [`handler`]: one method per request type; the gate before every signature.
//! - [`userauth`]: ssh login requests and `session-bind@openssh.com` bindings, parsed
//!   strictly, for the prompt and OpenSSH's binding rules.
//! - [`session`]: one connection: the uid check and the read-dispatch-write loop.
//! - [`log`]: one line per failed request and per abnormal connection end, escaped.
//! - [`server`]: the socket (0700 directory, 0600 socket, no stealing a live agent), the accept
//!   loop, connection cap and graceful shutdown.
//! - [`status`]: the `status@auths-presence` extension (`auths agent status`).
//! - [`rules`]: the `rules@auths-presence` and `reload@auths-presence` extensions (caller
//!   rules: `auths agent rules`, `auths agent reload`).
//! - [`refusals`]: why each recently refused process was refused, and the
//!   `refusal@auths-presence` extension that tells its parent (`auths git sign`).
//! - `registry`: the open connections and how long each has been idle; above the cap the
//!   longest-idle one is closed.
//!
//! Every signature goes through [`crate::presence::gate::Gate::approve`]; the signing function
//! in [`keys`] takes the resulting [`crate::presence::gate::Approval`] by value.

use std::path::PathBuf;

use thiserror::Error;

use crate::presence::gate::GateError;
use crate::secure_fs::SecureFsError;

pub mod add_file;
pub mod client;
pub mod codec;
mod connection;
pub mod ecdsa;
pub mod handler;
mod harden;
pub mod keys;
pub mod listener;
pub mod log;
pub mod peer;
pub mod refusals;
mod registry;
pub mod rules;
pub mod server;
pub mod session;
pub mod status;
pub mod userauth;
pub mod watch;

/// What went wrong in the agent layer. Messages say what happened; what to do next is the
/// CLI's business.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The socket directory or socket file is unsafe (loose mode, foreign owner, symlink).
    #[error("unsafe agent socket location: {0}")]
    SecureFs(#[from] SecureFsError),
    /// Another agent answers on the socket path: we do not steal it.
    #[error("an agent is already listening on {0}")]
    AlreadyRunning(PathBuf),
    /// Something that is not a socket sits at the socket path.
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    /// The socket path has no usable parent directory.
    #[error("socket path {0} has no parent directory")]
    BadSocketPath(PathBuf),
    /// Binding or preparing the socket failed.
    #[error("cannot listen on {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the peer's credentials from a connection failed.
    #[error("cannot read the credentials of a connecting process: {0}")]
    PeerCredentials(#[source] std::io::Error),
    /// A key type the agent does not hold.
    #[error("unsupported key type {0}: the agent holds only ssh-ed25519 and ecdsa-sha2-nistp256 identity keys")]
    UnsupportedKey(String),
    /// A key whose halves do not belong together, or whose private scalar is out of range.
    #[error("the key is refused: {0}")]
    InvalidKey(KeyCheck),
    /// An RSA signature asked for with SHA-1 (`ssh-rsa`, no SHA-2 flag): refused before any
    /// touch is asked for.
    #[error(
        "an ssh-rsa signature (SHA-1) was asked for; only rsa-sha2-256 and rsa-sha2-512 are made"
    )]
    Sha1Refused,
    /// An unknown constraint, too many certificates for one key, or an unsupported request.
    #[error("unsupported request: {0}")]
    Unsupported(&'static str),
    /// A message body that is not a request the agent accepts.
    #[error("the message is not a request the agent accepts")]
    Undecodable(#[from] codec::DecodeError),
    /// An answer could not be encoded.
    #[error("the answer could not be encoded")]
    Encode(#[source] ssh_agent_lib::proto::ProtoError),
    /// The agent holds no such identity.
    #[error("the agent does not hold this key")]
    NoSuchKey,
    /// The agent is locked with `ssh-add -x`.
    #[error("the agent is locked")]
    Locked,
    /// The agent is not locked (an unlock without a lock).
    #[error("the agent is not locked")]
    NotLocked,
    /// `ssh-add -X` with the wrong passphrase.
    #[error("wrong passphrase; the agent stays locked")]
    BadPassphrase,
    /// The gate did not approve the signature; nothing was signed.
    #[error("the signature was not approved")]
    NotApproved(#[source] GateError),
    /// The signature was made but its receipt could not be written, so it was not handed out.
    #[error("the receipt could not be written; the signature was withheld")]
    Receipt(#[source] GateError),
    /// An ssh login that this connection may not sign (its bindings, or another key).
    #[error("the ssh login was refused")]
    Login(#[source] userauth::LoginError),
    /// A `session-bind@openssh.com` request was refused; the connection's bindings are unchanged.
    #[error("the session bind was refused")]
    SessionBind(#[source] userauth::BindError),
    /// The approval handed to the signer is for another key or other bytes.
    #[error("the approval does not cover this key and data; nothing was signed")]
    ApprovalMismatch,
    /// An identity key could not be built, serialised or restored.
    #[error("the identity key could not be used")]
    Key(#[source] ssh_key::Error),
    /// The identity key could not sign.
    #[error("the identity key could not sign")]
    Sign(#[source] p256::ecdsa::signature::Error),
    /// Sealing or opening the keys of the protocol lock failed.
    #[error("the locked keys could not be sealed or opened")]
    Seal(#[from] SealError),
    /// `auths agent add KEYFILE`: the agent could not add the file.
    #[error(transparent)]
    AddFile(#[from] add_file::AddFileError),
    /// A sealed identity key did not open with the approving touch's secret.
    #[error("the sealed identity key did not open")]
    Unseal(#[source] crate::presence::sealed::SealError),
    /// A blocking key operation (Argon2id for lock/unlock) stopped without an answer.
    #[error("the key worker stopped unexpectedly")]
    KeyWorker(#[source] tokio::task::JoinError),
    /// Making the process non-dumpable or disabling core dumps failed.
    #[error("cannot harden the agent process ({call} failed); refusing to hold keys in a dumpable process")]
    Hardening {
        /// The call that failed, e.g. `prctl(PR_SET_DUMPABLE, 0)`.
        call: &'static str,
        /// The error it returned.
        #[source]
        source: HardeningSource,
    },
    /// A CLI request to a running agent failed.
    #[error(transparent)]
    Client(#[from] client::ClientError),
    /// Any other I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The error behind [`AgentError::Hardening`]: errno from `nix` on Unix.
#[cfg(unix)]
pub type HardeningSource = nix::Error;
/// The error behind [`AgentError::Hardening`] (never built on this platform).
#[cfg(not(unix))]
pub type HardeningSource = std::io::Error;

/// Why a key offered to the agent is refused although it decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyCheck {
    /// The public key is not the one the private key derives (an ECDSA point other than
    /// `d·G`, or not in uncompressed form; an Ed25519 public key not of its seed).
    #[error("its public key does not belong to its private key")]
    Mismatch,
    /// The ECDSA private scalar is zero or not below the curve order.
    #[error("its ECDSA private scalar is zero or not below the curve order")]
    Scalar,
    /// An RSA key whose parts do not make one key (n is not p·q, d does not invert e).
    #[error("its RSA parts do not make one key")]
    RsaParts,
    /// An RSA modulus outside 2048 to 8192 bits.
    #[error("its RSA modulus has {0} bits: 2048 to 8192 are accepted")]
    RsaSize(usize),
    /// A certificate whose public key is not the key added with it (or not the held key of
    /// that fingerprint).
    #[error("the certificate certifies another key than the one added with it")]
    CertificateKey,
    /// A certificate whose CA signature does not verify (corrupt or forged).
    #[error("the certificate's CA signature does not verify")]
    CertificateSignature,
}

/// Why the protocol lock's seal could not be made or opened (the passphrase was right).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SealError {
    /// A serialised key does not fit the seal's length prefix.
    #[error("a key is too large to seal")]
    KeyTooLarge,
    /// ChaCha20-Poly1305 refused to encrypt (its error is opaque and carries nothing).
    #[error("encrypting the keys failed")]
    Encrypt,
    /// The opened seal does not hold the keys it was made from.
    #[error("the sealed keys are corrupt")]
    Corrupt,
    /// Argon2id refused its parameters or input (argon2 is built without `std`, so this
    /// error carries no source chain, only its message).
    #[error("argon2id key derivation failed: {0}")]
    Argon2(argon2::Error),
}
