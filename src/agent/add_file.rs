//! The `add-file@auths-presence` extension: `auths agent add KEYFILE` sends the agent a path,
//! not a key. The agent reads the file itself; an encrypted OpenSSH key's passphrase is asked
//! through the agent's own askpass or pinentry program, so neither the private key nor its
//! passphrase ever crosses the socket (which a same-user process can proxy). A sealed key file
//! (`auths key`) is listed as a sealed entry, opened later by a touch.
//!
//! Request contents (draft-miller-ssh-agent "Extension mechanism", after the name):
//!
//! ```text
//! string  absolute path of the key file (UTF-8, at most 4096 bytes, no NUL)
//! uint32  lifetime in seconds (0: none), as `ssh-add -t`
//! ```
//!
//! The answer is an `SSH_AGENT_EXTENSION_RESPONSE` named like the request:
//!
//! ```text
//! byte    1 when the key was added (or listed, for a sealed file), 0 when it was not
//! byte    1 when the file was a sealed key
//! string  the key's fingerprint, `SHA256:…` (empty when not added)
//! string  what happened, for people (control characters escaped)
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh_agent_lib::proto::extension::MessageExtension;
use ssh_encoding::{CheckedSum, Decode, Encode, Reader, Writer};
use zeroize::Zeroizing;

/// Name of the extension.
pub const ADD_FILE_EXTENSION: &str = "add-file@auths-presence";

/// Longest path taken.
pub const MAX_PATH: usize = 4096;

/// Largest key file read (an RSA-8192 OpenSSH key is about 6.5 KiB; a sealed one about 8).
pub const MAX_KEY_FILE: u64 = 64 * 1024;

/// `auths agent add KEYFILE`'s request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddFile {
    /// Absolute path of the key file.
    pub path: String,
    /// `ssh-add -t` lifetime in seconds; 0 is none.
    pub lifetime: u32,
}

impl MessageExtension for AddFile {
    const NAME: &'static str = ADD_FILE_EXTENSION;
}

impl Encode for AddFile {
    fn encoded_len(&self) -> ssh_encoding::Result<usize> {
        [self.path.encoded_len()?, 4].checked_sum()
    }

    fn encode(&self, writer: &mut impl Writer) -> ssh_encoding::Result<()> {
        self.path.encode(writer)?;
        self.lifetime.encode(writer)
    }
}

impl Decode for AddFile {
    type Error = ssh_encoding::Error;

    fn decode(reader: &mut impl Reader) -> ssh_encoding::Result<Self> {
        // The message itself is bounded by the agent's message size limit.
        let path = String::decode(reader)?;
        if path.len() > MAX_PATH {
            return Err(ssh_encoding::Error::Length);
        }
        let lifetime = u32::decode(reader)?;
        if !reader.is_finished() {
            return Err(ssh_encoding::Error::TrailingData {
                remaining: reader.remaining_len(),
            });
        }
        Ok(AddFile { path, lifetime })
    }
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddFileAnswer {
    /// The key was added (or, for a sealed file, listed).
    pub added: bool,
    /// The file was a sealed key.
    pub sealed: bool,
    /// `SHA256:…`, when added.
    pub fingerprint: String,
    /// For people, escaped.
    pub message: String,
}

impl MessageExtension for AddFileAnswer {
    const NAME: &'static str = ADD_FILE_EXTENSION;
}

impl Encode for AddFileAnswer {
    fn encoded_len(&self) -> ssh_encoding::Result<usize> {
        [
            2,
            self.fingerprint.encoded_len()?,
            self.message.encoded_len()?,
        ]
        .checked_sum()
    }

    fn encode(&self, writer: &mut impl Writer) -> ssh_encoding::Result<()> {
        u8::from(self.added).encode(writer)?;
        u8::from(self.sealed).encode(writer)?;
        self.fingerprint.encode(writer)?;
        self.message.encode(writer)
    }
}

impl Decode for AddFileAnswer {
    type Error = ssh_encoding::Error;

    fn decode(reader: &mut impl Reader) -> ssh_encoding::Result<Self> {
        let flag = |b: u8| match b {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ssh_encoding::Error::CharacterEncoding),
        };
        let added = flag(u8::decode(reader)?)?;
        let sealed = flag(u8::decode(reader)?)?;
        let fingerprint = String::decode(reader)?;
        let message = String::decode(reader)?;
        Ok(AddFileAnswer {
            added,
            sealed,
            fingerprint,
            message: crate::presence::prompt::escape_control(&message),
        })
    }
}

/// What a key file held, read by the agent.
pub enum KeyFile {
    /// A sealed key (`auths key`): listed, opened by a touch.
    Sealed(crate::presence::sealed::SealedKey),
    /// An OpenSSH private key, decrypted.
    Plain(Box<ssh_key::PrivateKey>),
}

/// Why a key file was not added; the message names the file and what to do, never its bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddFileError {
    /// The path is not absolute, or not a path at all.
    #[error("the agent takes an absolute path; {0:?} is not one")]
    NotAbsolute(String),
    /// The file cannot be read safely.
    #[error(transparent)]
    Fs(#[from] crate::secure_fs::SecureFsError),
    /// No file there.
    #[error("{0} does not exist")]
    Missing(PathBuf),
    /// Larger than any key file.
    #[error("{0} is larger than {MAX_KEY_FILE} bytes: not a key file")]
    TooLarge(PathBuf),
    /// Not a key file we read.
    #[error("{path} is not an OpenSSH private key or a sealed key: {reason}")]
    NotAKey {
        /// The file.
        path: PathBuf,
        /// What is wrong (from the parser; never the file's bytes).
        reason: String,
    },
    /// A sealed key file that does not parse.
    #[error(transparent)]
    Sealed(#[from] crate::presence::sealed::SealError),
    /// Encrypted, and the agent has nothing to ask the passphrase with.
    #[error("{0} is encrypted and the agent has no askpass or pinentry program to ask its passphrase with: start the agent with AUTHS_ASKPASS set or --pinentry, or add it with ssh-add")]
    NoPassphraseSource(PathBuf),
    /// The passphrase was not given.
    #[error("no passphrase was given for {0}")]
    NoPassphrase(PathBuf, #[source] crate::presence::pin_entry::PinEntryError),
    /// Wrong passphrase.
    #[error("wrong passphrase for {0}")]
    BadPassphrase(PathBuf),
}

/// The request's path, checked: absolute and free of NUL.
pub fn checked_path(path: &str) -> Result<PathBuf, AddFileError> {
    let p = Path::new(path);
    if path.contains('\0') || !p.is_absolute() {
        return Err(AddFileError::NotAbsolute(
            crate::presence::prompt::escape_control(path),
        ));
    }
    Ok(p.to_path_buf())
}

/// Read the key file at `path` as its owner's private file (not a FIFO, not group- or
/// world-accessible, at most [`MAX_KEY_FILE`] bytes), and parse it; `passphrase` is asked only
/// for an encrypted OpenSSH key, with the prompt it is given.
pub fn read_key_file(
    path: &Path,
    passphrase: impl FnOnce(
        &str,
    ) -> Result<Zeroizing<String>, crate::presence::pin_entry::PinEntryError>,
) -> Result<KeyFile, AddFileError> {
    let file = crate::secure_fs::open_private_read(path)?
        .ok_or_else(|| AddFileError::Missing(path.to_path_buf()))?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| AddFileError::NotAKey {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(AddFileError::TooLarge(path.to_path_buf()));
    }
    parse_key_file(path, &bytes, passphrase)
}

/// [`read_key_file`] on bytes already read (the fuzz target's entry).
pub fn parse_key_file(
    path: &Path,
    bytes: &[u8],
    passphrase: impl FnOnce(
        &str,
    ) -> Result<Zeroizing<String>, crate::presence::pin_entry::PinEntryError>,
) -> Result<KeyFile, AddFileError> {
    let not_a_key = |reason: String| AddFileError::NotAKey {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Ok(KeyFile::Sealed(crate::presence::sealed::SealedKey::parse(
            bytes, path,
        )?));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| not_a_key("it is not text".into()))?;
    let key = crate::text::private_key_from_openssh(text).map_err(|e| not_a_key(e.to_string()))?;
    if !key.is_encrypted() {
        return Ok(KeyFile::Plain(Box::new(key)));
    }
    let prompt = format!(
        "auths agent: passphrase for {}",
        crate::presence::prompt::escape_control(&path.display().to_string())
    );
    let pass = passphrase(&prompt).map_err(|e| match e {
        crate::presence::pin_entry::PinEntryError::NoSource => {
            AddFileError::NoPassphraseSource(path.to_path_buf())
        }
        other => AddFileError::NoPassphrase(path.to_path_buf(), other),
    })?;
    let key = crate::text::decrypt_private_key(text, pass.as_bytes())
        .map_err(|_| AddFileError::BadPassphrase(path.to_path_buf()))?;
    Ok(KeyFile::Plain(Box::new(key)))
}

/// The `ssh-add -t` lifetime of a request.
pub fn lifetime(request: &AddFile) -> Option<Duration> {
    (request.lifetime > 0).then(|| Duration::from_secs(u64::from(request.lifetime)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_agent_lib::proto::Extension;

    #[test]
    fn request_and_answer_round_trip_and_bad_ones_are_refused() {
        let req = AddFile {
            path: "/home/ada/.ssh/id_ed25519".into(),
            lifetime: 60,
        };
        let ext = Extension::new_message(req.clone()).unwrap();
        assert_eq!(ext.parse_message::<AddFile>().unwrap(), Some(req));
        let answer = AddFileAnswer {
            added: true,
            sealed: false,
            fingerprint: "SHA256:x".into(),
            message: "added".into(),
        };
        let ext = Extension::new_message(answer.clone()).unwrap();
        assert_eq!(ext.parse_message::<AddFileAnswer>().unwrap(), Some(answer));
        // A path longer than MAX_PATH, and trailing bytes, are refused.
        let long = AddFile {
            path: "/".repeat(MAX_PATH + 1),
            lifetime: 0,
        };
        let ext = Extension::new_message(long).unwrap();
        assert!(ext.parse_message::<AddFile>().is_err());
        let mut bytes = Vec::new();
        "/a".encode(&mut bytes).unwrap();
        0u32.encode(&mut bytes).unwrap();
        bytes.push(0);
        assert!(AddFile::decode(&mut bytes.as_slice()).is_err());
    }

    #[test]
    fn paths_must_be_absolute_and_files_keys() {
        assert!(matches!(
            checked_path("id_ed25519"),
            Err(AddFileError::NotAbsolute(_))
        ));
        assert!(matches!(
            checked_path("/a\0b"),
            Err(AddFileError::NotAbsolute(_))
        ));
        let never = |_: &str| -> Result<Zeroizing<String>, _> { panic!("no passphrase needed") };
        let r = parse_key_file(Path::new("/k"), b"hello", never);
        assert!(matches!(r, Err(AddFileError::NotAKey { .. })));
        let r = parse_key_file(Path::new("/k"), b" {\"type\":1}", never);
        assert!(matches!(r, Err(AddFileError::Sealed(_))));
    }
}
