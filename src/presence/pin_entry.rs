//! Where a security key's PIN comes from when the key needs the user verified: a prompt on
//! the terminal (the CLI's), or a program named by `AUTHS_ASKPASS` that gets the prompt as
//! its first argument and prints the PIN on stdout (OpenSSH's `SSH_ASKPASS` convention).
//!
//! The PIN lives in a zeroizing buffer from the moment it is read, is handed to the clientPIN
//! exchange (which only hashes and encrypts it) and is never logged, put in an error, a
//! receipt or a watch event. A wrong PIN is never retried on the user's behalf: every try
//! counts against the key's retry counter, so the refusal says how many are left instead.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use thiserror::Error;
use zeroize::Zeroizing;

use super::prompt::escape_control;

/// Longest PIN a source may give: CTAP PINs are at most 63 bytes; more is not a PIN.
pub const MAX_PIN_LEN: usize = 63;

/// What a PIN is asked for, as the prompt says it.
#[derive(Debug, Clone, Copy)]
pub struct PinRequest<'a> {
    /// The key, as the backend describes it (a USB product name: escaped before display).
    pub key: &'a str,
    /// What the PIN approves: "enroll it", "approve signing for ssh-keygen ← git".
    pub purpose: &'a str,
    /// PIN tries left, when the key told.
    pub retries: Option<u64>,
}

impl PinRequest<'_> {
    /// The prompt line, with every string a device or peer controls escaped.
    pub fn prompt(&self) -> String {
        let mut s = format!(
            "PIN for {}, to {}",
            escape_control(self.key),
            escape_control(self.purpose)
        );
        if let Some(n) = self.retries {
            s.push_str(&format!(" ({n} tries left)"));
        }
        s.push_str(": ");
        s
    }
}

/// Why no PIN was had. Never holds the PIN.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PinEntryError {
    /// Nothing can ask: no terminal and no `AUTHS_ASKPASS`.
    #[error(
        "the security key needs its PIN and nothing can ask for it (no terminal, no AUTHS_ASKPASS)"
    )]
    NoSource,
    /// The user dismissed the prompt (empty answer, or the program failed).
    #[error("no PIN was given")]
    Cancelled,
    /// The askpass program could not be run.
    #[error("cannot run the PIN program {program}: {source}")]
    Program {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The answer is longer than any PIN (or passphrase, when one was asked for).
    #[error("the answer given is too long (a PIN has at most {MAX_PIN_LEN} bytes, a passphrase {MAX_PASSPHRASE_LEN})")]
    TooLong,
    /// Reading from the terminal failed.
    #[error("cannot read the PIN from the terminal: {0}")]
    Terminal(#[source] std::io::Error),
}

/// A source of PINs.
pub trait PinSource {
    /// Ask for the PIN.
    fn pin(&mut self, request: &PinRequest<'_>) -> Result<Zeroizing<String>, PinEntryError>;

    /// Ask for a key file's passphrase with `prompt` (already escaped), at most
    /// [`MAX_PASSPHRASE_LEN`] bytes. Sources that only know PINs cannot.
    fn passphrase(&mut self, prompt: &str) -> Result<Zeroizing<String>, PinEntryError> {
        let _ = prompt;
        Err(PinEntryError::NoSource)
    }
}

/// The longest key file passphrase taken (OpenSSH's own askpass reads at most 1 KiB).
pub const MAX_PASSPHRASE_LEN: usize = 1024;

/// No way to ask: every request fails with [`PinEntryError::NoSource`].
#[derive(Debug, Default)]
pub struct NoPinSource;

impl PinSource for NoPinSource {
    fn pin(&mut self, _request: &PinRequest<'_>) -> Result<Zeroizing<String>, PinEntryError> {
        Err(PinEntryError::NoSource)
    }
}

/// A program that gets the prompt as its only argument and prints the PIN on stdout.
#[derive(Debug, Clone)]
pub struct Askpass {
    program: PathBuf,
    answer_time: std::time::Duration,
}

impl Askpass {
    /// The program at `program`.
    pub fn new(program: impl Into<PathBuf>) -> Askpass {
        Askpass {
            program: program.into(),
            answer_time: super::pinentry::ANSWER_TIME,
        }
    }

    /// The user has `time` to answer (default two minutes); then the program is killed.
    pub fn with_answer_time(self, time: std::time::Duration) -> Askpass {
        Askpass {
            answer_time: time,
            ..self
        }
    }

    /// The program named by `AUTHS_ASKPASS`, if set and not empty.
    pub fn from_env() -> Option<Askpass> {
        std::env::var_os("AUTHS_ASKPASS")
            .filter(|p| !p.is_empty())
            .map(Askpass::new)
    }
}

/// The PIN in a program's output: one line, the newline (LF or CRLF) taken off; empty is a
/// dismissed prompt; more than [`MAX_PIN_LEN`] bytes is not a PIN.
pub fn pin_from_output(out: &[u8]) -> Result<Zeroizing<String>, PinEntryError> {
    line_from_output(out, MAX_PIN_LEN)
}

/// [`pin_from_output`] for answers of at most `max` bytes.
fn line_from_output(out: &[u8], max: usize) -> Result<Zeroizing<String>, PinEntryError> {
    let line = out.strip_suffix(b"\n").unwrap_or(out);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(PinEntryError::Cancelled);
    }
    if line.len() > max || line.contains(&b'\n') {
        return Err(PinEntryError::TooLong);
    }
    let s = std::str::from_utf8(line).map_err(|_| PinEntryError::Cancelled)?;
    Ok(Zeroizing::new(s.to_owned()))
}

impl PinSource for Askpass {
    fn pin(&mut self, request: &PinRequest<'_>) -> Result<Zeroizing<String>, PinEntryError> {
        self.ask(&request.prompt(), MAX_PIN_LEN)
    }

    fn passphrase(&mut self, prompt: &str) -> Result<Zeroizing<String>, PinEntryError> {
        self.ask(prompt, MAX_PASSPHRASE_LEN)
    }
}

impl Askpass {
    /// Run the program with `prompt`; its one line of output, at most `max` bytes.
    fn ask(&self, prompt: &str, max: usize) -> Result<Zeroizing<String>, PinEntryError> {
        let program_error = |source| PinEntryError::Program {
            program: self.program.clone(),
            source,
        };
        let mut child = Command::new(&self.program)
            .arg(prompt)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(program_error)?;
        let stdout = child.stdout.take();
        // Read on a thread, so a program that never answers is waited for only so long.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Zeroizing::new(Vec::with_capacity(max + 3));
            // At most a few bytes more than the longest answer we accept (PIN, CR, LF): a
            // longer one is refused without reading it all.
            let read = match stdout {
                Some(s) => s.take((max + 3) as u64).read_to_end(&mut out).map(|_| ()),
                None => Ok(()),
            };
            let _ = tx.send(read.map(|()| out));
        });
        let out = match rx.recv_timeout(self.answer_time) {
            Ok(r) => r,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(program_error(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no PIN within {:?}", self.answer_time),
                )));
            }
        };
        let status = child.wait().map_err(program_error)?;
        let out = out.map_err(program_error)?;
        if !status.success() {
            return Err(PinEntryError::Cancelled);
        }
        line_from_output(&out, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_one_line_of_at_most_63_bytes() {
        assert_eq!(&*pin_from_output(b"123456\n").unwrap(), "123456");
        assert_eq!(&*pin_from_output(b"123456\r\n").unwrap(), "123456");
        assert_eq!(&*pin_from_output(b"123456").unwrap(), "123456");
        assert!(matches!(
            pin_from_output(b"\n"),
            Err(PinEntryError::Cancelled)
        ));
        assert!(matches!(
            pin_from_output(b""),
            Err(PinEntryError::Cancelled)
        ));
        assert!(matches!(
            pin_from_output(b"12\n34\n"),
            Err(PinEntryError::TooLong)
        ));
        assert!(pin_from_output(&[b'1'; 63]).is_ok());
        assert!(matches!(
            pin_from_output(&[b'1'; 64]),
            Err(PinEntryError::TooLong)
        ));
    }

    #[test]
    fn the_prompt_escapes_what_a_device_names() {
        let p = PinRequest {
            key: "Evil\x1b[2J Key",
            purpose: "enroll it",
            retries: Some(3),
        };
        let s = p.prompt();
        assert!(!s.contains('\x1b'), "{s:?}");
        assert!(s.ends_with("to enroll it (3 tries left): "), "{s}");
    }

    #[cfg(unix)]
    #[test]
    fn askpass_gets_the_prompt_and_its_stdout_is_the_pin() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("askpass");
        let seen = dir.path().join("seen");
        std::fs::write(
            &prog,
            format!(
                "#!/bin/sh\nprintf '%s' \"$1\" > '{}'\necho 4321\n",
                seen.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o700)).unwrap();
        let req = PinRequest {
            key: "YubiKey",
            purpose: "enroll it",
            retries: None,
        };
        let pin = Askpass::new(&prog).pin(&req).unwrap();
        assert_eq!(&*pin, "4321");
        assert_eq!(std::fs::read_to_string(&seen).unwrap(), req.prompt());
        // A program that fails is a dismissed prompt; one that does not exist says so.
        std::fs::write(&prog, "#!/bin/sh\nexit 1\n").unwrap();
        assert!(matches!(
            Askpass::new(&prog).pin(&req),
            Err(PinEntryError::Cancelled)
        ));
        assert!(matches!(
            Askpass::new(dir.path().join("missing")).pin(&req),
            Err(PinEntryError::Program { .. })
        ));
        // One that never answers is given up on, and killed.
        std::fs::write(&prog, "#!/bin/sh\nexec sleep 1000\n").unwrap();
        let r = Askpass::new(&prog)
            .with_answer_time(std::time::Duration::from_millis(200))
            .pin(&req);
        assert!(matches!(r, Err(PinEntryError::Program { .. })), "{r:?}");
    }
}
