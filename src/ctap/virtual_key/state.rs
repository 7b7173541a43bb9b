//! The virtual key's persistent state: a 32-byte master secret (from which credential ids are
//! wrapped, see [`super::authenticator`]) and the global sign counter.
//!
//! Stored as JSON (`{"version":1,"master_secret":"<hex>","counter":N}`) in a file of mode
//! 0600, replaced atomically ([`crate::secure_fs::atomic_write`]) after every counter
//! increment. The file is created on first use; an existing file that cannot be read or
//! parsed is a [`StateError`], never silently replaced (that would forget every credential
//! and reset the counter). Tests use [`KeyState::in_memory`].

use std::fmt;
use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use crate::secure_fs::{self, SecureFsError};

const STATE_VERSION: u32 = 1;

/// The state file cannot be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StateError {
    /// The file exists but is not a valid state file.
    #[error("virtual key state {path} is corrupt ({reason}); move it away to start a new virtual key (its credentials will be lost)")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong (never contains secret material).
        reason: String,
    },
    /// The file or its directory is not private, or an I/O error happened.
    #[error("virtual key state: {0}")]
    Fs(#[from] SecureFsError),
    /// The sign counter reached its maximum.
    #[error("the virtual key's sign counter is exhausted")]
    CounterExhausted,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    master_secret: String,
    counter: u32,
}

/// Master secret and sign counter, optionally backed by a file.
pub struct KeyState {
    master: Zeroizing<[u8; 32]>,
    counter: u32,
    path: Option<PathBuf>,
}

impl fmt::Debug for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyState")
            .field("counter", &self.counter)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn random_master() -> Zeroizing<[u8; 32]> {
    let mut m = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(m.as_mut());
    m
}

impl KeyState {
    /// A fresh state that lives in memory only (tests, throwaway demos).
    pub fn in_memory() -> KeyState {
        KeyState {
            master: random_master(),
            counter: 0,
            path: None,
        }
    }

    /// Load the state file at `path`, or create it (mode 0600) with a new random master
    /// secret when it does not exist. A missing parent directory is created with mode 0700.
    pub fn open(path: &Path) -> Result<KeyState, StateError> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    if !parent.as_os_str().is_empty() && !parent.exists() {
                        secure_fs::ensure_private_dir(parent)?;
                    }
                }
                let s = KeyState {
                    master: random_master(),
                    counter: 0,
                    path: Some(path.to_path_buf()),
                };
                s.save()?;
                Ok(s)
            }
            Err(e) => Err(SecureFsError::Io {
                path: path.to_path_buf(),
                source: e,
            }
            .into()),
            Ok(_) => {
                secure_fs::check_private(path, false)?;
                let bytes =
                    Zeroizing::new(std::fs::read(path).map_err(|source| SecureFsError::Io {
                        path: path.to_path_buf(),
                        source,
                    })?);
                Self::parse(path, &bytes)
            }
        }
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<KeyState, StateError> {
        let corrupt = |reason: &str| StateError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.to_owned(),
        };
        // serde_json's messages quote no input values for these types, but keep ours short.
        let mut file: StateFile =
            serde_json::from_slice(bytes).map_err(|_| corrupt("not the expected JSON"))?;
        let result = (|| {
            if file.version != STATE_VERSION {
                return Err(corrupt("unknown version"));
            }
            let mut master = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(&file.master_secret, master.as_mut())
                .map_err(|_| corrupt("master_secret is not 32 bytes of hex"))?;
            Ok(KeyState {
                master,
                counter: file.counter,
                path: Some(path.to_path_buf()),
            })
        })();
        file.master_secret.zeroize();
        result
    }

    fn save(&self) -> Result<(), StateError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut file = StateFile {
            version: STATE_VERSION,
            master_secret: hex::encode(self.master.as_ref()),
            counter: self.counter,
        };
        let json = serde_json::to_vec_pretty(&file).map(Zeroizing::new);
        file.master_secret.zeroize();
        let json = json.map_err(|_| StateError::Corrupt {
            path: path.clone(),
            reason: "cannot serialize".into(),
        })?;
        secure_fs::atomic_write(path, &json)?;
        Ok(())
    }

    /// The current sign counter (the last value handed out).
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// The state file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Increment the counter and persist it; returns the new value. On a save error the
    /// in-memory counter keeps the new value too, so it is never handed out twice.
    pub fn next_counter(&mut self) -> Result<u32, StateError> {
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or(StateError::CounterExhausted)?;
        self.save()?;
        Ok(self.counter)
    }

    /// authenticatorReset: a new master secret (every credential is forgotten), counter 0.
    pub fn reset(&mut self) -> Result<(), StateError> {
        self.master = random_master();
        self.counter = 0;
        self.save()
    }

    pub(crate) fn master_secret(&self) -> &[u8] {
        self.master.as_ref()
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_reload_and_corrupt() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sub/key.json");
        let mut s = KeyState::open(&p).unwrap();
        assert_eq!(s.next_counter().unwrap(), 1);
        assert_eq!(s.next_counter().unwrap(), 2);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = KeyState::open(&p).unwrap();
        assert_eq!(again.counter(), 2);
        assert_eq!(again.master_secret(), s.master_secret());
        assert!(!format!("{again:?}").contains(&hex::encode(s.master_secret())));

        std::fs::write(&p, b"{\"version\":1,").unwrap();
        assert!(matches!(
            KeyState::open(&p),
            Err(StateError::Corrupt { .. })
        ));
        std::fs::write(
            &p,
            b"{\"version\":1,\"master_secret\":\"00\",\"counter\":1}",
        )
        .unwrap();
        let e = KeyState::open(&p).unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"{\"version\":1,\"master_secret\":\"00\",\"counter\":1}",
            "never replaced"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(KeyState::open(&p), Err(StateError::Fs(_))));
    }
}
