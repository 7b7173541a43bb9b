//! PINs from a pinentry program (pinentry-curses, -gnome3, -mac, -w32, as gpg-agent uses),
//! spoken to over the Assuan protocol: `--pinentry PROG` or `AUTHS_PINENTRY`.
//!
//! The exchange: the program greets with `OK`; we send `SETTITLE`, `SETDESC` (the prompt,
//! percent-escaped), `SETPROMPT`, then `GETPIN`; it answers `D <pin, percent-escaped>` then
//! `OK`, or `ERR <code> <text>` when the user cancelled; we end with `BYE`.
//!
//! Every line from the program is parsed strictly ([`parse_line`]): at most
//! [`MAX_LINE`] bytes (the Assuan limit), known line types only, valid percent escapes. The
//! PIN lives in zeroizing buffers from the first byte read. A program that does not answer
//! within the time limit is killed.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use thiserror::Error;
use zeroize::Zeroizing;

use super::pin_entry::{PinEntryError, PinRequest, PinSource, MAX_PASSPHRASE_LEN, MAX_PIN_LEN};

/// Longest Assuan line, newline included (the protocol's limit).
pub const MAX_LINE: usize = 1000;

/// How long the user has to answer the pinentry dialog.
pub const ANSWER_TIME: Duration = Duration::from_secs(120);

/// One line from the pinentry program.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// `OK [text]`.
    Ok,
    /// `ERR <code> [text]`.
    Err(u32),
    /// `D <data>`, decoded.
    Data(Zeroizing<Vec<u8>>),
    /// `S ...` status, `# ...` comment: ignored.
    Other,
    /// `INQUIRE ...`: the program wants something we never give.
    Inquire,
}

/// A line that is not Assuan.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AssuanError {
    /// Longer than [`MAX_LINE`].
    #[error("a pinentry line is longer than {MAX_LINE} bytes")]
    TooLong,
    /// Not a line type of the protocol.
    #[error("the pinentry program answered something that is not Assuan")]
    Unknown,
    /// A `%` not followed by two hex digits.
    #[error("the pinentry program sent a bad percent escape")]
    BadEscape,
    /// An `ERR` without a number.
    #[error("the pinentry program sent an ERR line without a code")]
    BadErr,
}

/// Parse one line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<Line, AssuanError> {
    if line.len() >= MAX_LINE {
        return Err(AssuanError::TooLong);
    }
    let (word, rest) = match line.iter().position(|b| *b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    match word {
        b"OK" => Ok(Line::Ok),
        b"ERR" => {
            let code = rest.split(|b| *b == b' ').next().unwrap_or(&[]);
            let code = std::str::from_utf8(code)
                .ok()
                .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|c| c.parse().ok())
                .ok_or(AssuanError::BadErr)?;
            Ok(Line::Err(code))
        }
        b"D" => Ok(Line::Data(unescape(rest)?)),
        b"S" | b"#" => Ok(Line::Other),
        _ if word.first() == Some(&b'#') => Ok(Line::Other),
        b"INQUIRE" => Ok(Line::Inquire),
        _ => Err(AssuanError::Unknown),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Undo the percent escapes of a `D` line.
fn unescape(data: &[u8]) -> Result<Zeroizing<Vec<u8>>, AssuanError> {
    let mut out = Zeroizing::new(Vec::with_capacity(data.len()));
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'%' {
            let hi = data.get(i + 1).copied().and_then(hex);
            let lo = data.get(i + 2).copied().and_then(hex);
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(AssuanError::BadEscape),
            }
            i += 3;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Percent-escape text for a command argument: `%`, CR, LF and every other control character.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '%' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Assuan's "operation cancelled" (GPG_ERR_CANCELED in the pinentry source): the user
/// dismissed the dialog.
const CANCELLED: u32 = 83_886_179;

/// The pinentry program at a path.
#[derive(Debug, Clone)]
pub struct Pinentry {
    program: PathBuf,
    answer_time: Duration,
}

impl Pinentry {
    /// The program at `program`.
    pub fn new(program: impl Into<PathBuf>) -> Pinentry {
        Pinentry {
            program: program.into(),
            answer_time: ANSWER_TIME,
        }
    }

    /// The program named by `AUTHS_PINENTRY`, if set and not empty.
    pub fn from_env() -> Option<Pinentry> {
        std::env::var_os("AUTHS_PINENTRY")
            .filter(|p| !p.is_empty())
            .map(Pinentry::new)
    }

    /// The user has `time` to answer (default [`ANSWER_TIME`]).
    pub fn with_answer_time(self, time: Duration) -> Pinentry {
        Pinentry {
            answer_time: time,
            ..self
        }
    }
}

/// Kills the child on every way out.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl PinSource for Pinentry {
    fn pin(&mut self, request: &PinRequest<'_>) -> Result<Zeroizing<String>, PinEntryError> {
        self.ask(&request.prompt(), "PIN:", MAX_PIN_LEN)
    }

    fn passphrase(&mut self, prompt: &str) -> Result<Zeroizing<String>, PinEntryError> {
        self.ask(prompt, "Passphrase:", MAX_PASSPHRASE_LEN)
    }
}

impl Pinentry {
    /// One GETPIN dialog showing `description`, with `label` beside the entry; the answer is at
    /// most `max` bytes.
    fn ask(
        &self,
        description: &str,
        label: &str,
        max: usize,
    ) -> Result<Zeroizing<String>, PinEntryError> {
        let program_error = |source| PinEntryError::Program {
            program: self.program.clone(),
            source,
        };
        let protocol_error = |e: AssuanError| PinEntryError::Program {
            program: self.program.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        };
        let mut child = Running(
            Command::new(&self.program)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(program_error)?,
        );
        let mut to = child.0.stdin.take().ok_or_else(|| {
            program_error(std::io::Error::other("no stdin to the pinentry program"))
        })?;
        let from = child.0.stdout.take().ok_or_else(|| {
            program_error(std::io::Error::other("no stdout from the pinentry program"))
        })?;
        // Lines are read on their own thread, so a program that never answers is waited for
        // only so long (then killed, with the child).
        let (tx, rx) = mpsc::channel::<Result<Line, AssuanError>>();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from.take(64 * 1024));
            loop {
                let mut line = Zeroizing::new(Vec::with_capacity(MAX_LINE));
                match (&mut reader)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut line)
                {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line.last() != Some(&b'\n') {
                    let _ = tx.send(Err(AssuanError::TooLong));
                    return;
                }
                line.pop();
                if tx.send(parse_line(&line)).is_err() {
                    return;
                }
            }
        });
        let limit = self.answer_time;
        let next = |what: &str| -> Result<Line, PinEntryError> {
            match rx.recv_timeout(limit) {
                Ok(Ok(line)) => Ok(line),
                Ok(Err(e)) => Err(protocol_error(e)),
                Err(_) => Err(program_error(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer to {what} within {limit:?}"),
                ))),
            }
        };
        // The answer to one command: OK, or the PIN and OK for GETPIN.
        let answer = |what: &str| -> Result<Option<Zeroizing<Vec<u8>>>, PinEntryError> {
            let mut data = None;
            loop {
                match next(what)? {
                    Line::Ok => return Ok(data),
                    Line::Data(d) => data = Some(d),
                    Line::Other => {}
                    Line::Err(CANCELLED) => return Err(PinEntryError::Cancelled),
                    Line::Err(code) => {
                        return Err(program_error(std::io::Error::other(format!(
                            "{what} failed with Assuan error {code}"
                        ))))
                    }
                    Line::Inquire => {
                        return Err(protocol_error(AssuanError::Unknown));
                    }
                }
            }
        };
        answer("the greeting")?;
        let commands = [
            "SETTITLE auths".to_owned(),
            format!("SETDESC {}", escape(description)),
            format!("SETPROMPT {label}"),
        ];
        for c in &commands {
            writeln!(to, "{c}").map_err(program_error)?;
            answer(c.split(' ').next().unwrap_or("a command"))?;
        }
        writeln!(to, "GETPIN").map_err(program_error)?;
        let pin = answer("GETPIN")?.ok_or(PinEntryError::Cancelled)?;
        let _ = writeln!(to, "BYE");
        if pin.is_empty() {
            return Err(PinEntryError::Cancelled);
        }
        if pin.len() > max {
            return Err(PinEntryError::TooLong);
        }
        let pin = String::from_utf8(pin.to_vec()).map_err(|_| PinEntryError::Cancelled)?;
        Ok(Zeroizing::new(pin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_strictly() {
        assert_eq!(parse_line(b"OK Pleased to meet you"), Ok(Line::Ok));
        assert_eq!(parse_line(b"OK"), Ok(Line::Ok));
        assert_eq!(
            parse_line(b"ERR 83886179 Operation cancelled <Pinentry>"),
            Ok(Line::Err(CANCELLED))
        );
        assert_eq!(parse_line(b"ERR"), Err(AssuanError::BadErr));
        assert_eq!(parse_line(b"ERR x"), Err(AssuanError::BadErr));
        assert_eq!(parse_line(b"S PASSWORD_FROM_CACHE"), Ok(Line::Other));
        assert_eq!(parse_line(b"# comment"), Ok(Line::Other));
        assert_eq!(parse_line(b"INQUIRE QUALITY"), Ok(Line::Inquire));
        assert_eq!(parse_line(b"HELLO"), Err(AssuanError::Unknown));
        assert_eq!(parse_line(b""), Err(AssuanError::Unknown));
        let Ok(Line::Data(d)) = parse_line(b"D 12%2534%0A") else {
            panic!()
        };
        assert_eq!(&d[..], b"12%34\n");
        assert_eq!(parse_line(b"D 1%2"), Err(AssuanError::BadEscape));
        assert_eq!(parse_line(b"D %zz"), Err(AssuanError::BadEscape));
        assert_eq!(parse_line(&[b'O'; MAX_LINE]), Err(AssuanError::TooLong));
    }

    #[test]
    fn arguments_are_escaped() {
        assert_eq!(escape("PIN for a\nkey 100%"), "PIN for a%0Akey 100%25");
        assert_eq!(escape("\u{1b}[2J"), "%1B[2J");
        assert_eq!(escape("ssh-keygen ← git"), "ssh-keygen ← git");
    }

    #[cfg(unix)]
    fn script(body: &str) -> (tempfile::TempDir, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pinentry");
        std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        (dir, p)
    }

    #[cfg(unix)]
    const REQUEST: PinRequest<'static> = PinRequest {
        key: "YubiKey",
        purpose: "enroll it",
        retries: None,
    };

    /// An Assuan responder that answers OK to everything and `D <pin>` to GETPIN, writing
    /// what it was told to `log`.
    #[cfg(unix)]
    fn responder(pin_line: &str, log: &std::path::Path) -> String {
        format!(
            "echo 'OK Pleased to meet you'\n\
             while read -r cmd rest; do\n\
               printf '%s %s\\n' \"$cmd\" \"$rest\" >> '{}'\n\
               case \"$cmd\" in\n\
                 GETPIN) {pin_line};;\n\
                 BYE) echo OK; exit 0;;\n\
                 *) echo OK;;\n\
               esac\n\
             done\n",
            log.display()
        )
    }

    #[cfg(unix)]
    #[test]
    fn a_pinentry_gives_the_pin_and_sees_the_escaped_prompt() {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("log");
        let (_d, p) = script(&responder("echo 'D 24%2568'; echo OK", &log));
        let pin = Pinentry::new(&p).pin(&REQUEST).unwrap();
        assert_eq!(&*pin, "24%68");
        let told = std::fs::read_to_string(&log).unwrap();
        // (The shell's `read` drops the prompt's trailing space.)
        assert!(
            told.contains("SETDESC PIN for YubiKey, to enroll it:"),
            "{told}"
        );
        assert!(told.contains("GETPIN"), "{told}");
    }

    #[cfg(unix)]
    #[test]
    fn a_cancelled_dialog_a_silent_program_and_junk_are_refused() {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("log");
        let (_d, p) = script(&responder(
            "echo 'ERR 83886179 Operation cancelled <Pinentry>'",
            &log,
        ));
        assert!(matches!(
            Pinentry::new(&p).pin(&REQUEST),
            Err(PinEntryError::Cancelled)
        ));
        let (_d, p) = script("exec sleep 1000\n");
        let r = Pinentry::new(&p)
            .with_answer_time(Duration::from_millis(200))
            .pin(&REQUEST);
        assert!(matches!(r, Err(PinEntryError::Program { .. })), "{r:?}");
        let (_d, p) = script("echo 'HELLO there'\n");
        assert!(matches!(
            Pinentry::new(&p).pin(&REQUEST),
            Err(PinEntryError::Program { .. })
        ));
    }

    /// A real pinentry (Debian's pinentry-curses) speaks our Assuan up to GETPIN, which it
    /// refuses without a terminal: a typed error, not a hang.
    #[cfg(unix)]
    #[test]
    fn a_real_pinentry_without_a_terminal_is_a_clear_refusal() {
        let real = std::path::Path::new("/usr/bin/pinentry-curses");
        if !real.exists() {
            eprintln!("a_real_pinentry_without_a_terminal_is_a_clear_refusal: skipped: needs pinentry-curses (apt install pinentry-curses)");
            return;
        }
        let r = Pinentry::new(real).pin(&REQUEST);
        let Err(PinEntryError::Program { source, .. }) = r else {
            panic!("{r:?}")
        };
        assert!(source.to_string().contains("GETPIN failed"), "{source}");
    }
}
