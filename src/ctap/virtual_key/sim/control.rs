//! The control socket's line protocol, pure (no sockets, every platform), so it can be
//! tested and fuzzed on its own: one text line per request, one per answer.
//!
//! Requests (surrounding whitespace ignored): `touch`, `count`, `busy MS` (another program
//! holds the key for MS milliseconds, at most [`MAX_BUSY_MS`]). Answers: `ok`,
//! `error nothing is waiting for a touch`, a decimal touch count, `error unknown command`.

use thiserror::Error;

/// Longest request line accepted, newline included (the server stops reading past it).
pub const MAX_CONTROL_LINE: usize = 4096;

/// Longest `busy` a control line may ask for: ten minutes.
pub const MAX_BUSY_MS: u64 = 600_000;

/// One request on the control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlCommand {
    /// `touch`: press the button.
    Touch,
    /// `count`: how many touches approved a request so far.
    Count,
    /// `busy MS`: another program holds the key for MS milliseconds.
    Busy(u64),
}

/// A request line that is not a control command.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ControlError {
    /// A line that names no command.
    #[error("unknown control command")]
    UnknownCommand,
    /// A line longer than [`MAX_CONTROL_LINE`].
    #[error("control line of {0} bytes exceeds {MAX_CONTROL_LINE}")]
    TooLong(usize),
    /// An answer line the client does not understand.
    #[error("unexpected control answer")]
    UnexpectedReply,
}

impl ControlCommand {
    /// Parse one request line (with or without its newline).
    pub fn parse(line: &str) -> Result<ControlCommand, ControlError> {
        if line.len() > MAX_CONTROL_LINE {
            return Err(ControlError::TooLong(line.len()));
        }
        match line.trim() {
            "touch" => Ok(ControlCommand::Touch),
            "count" => Ok(ControlCommand::Count),
            other => match other.strip_prefix("busy ") {
                Some(ms)
                    if !ms.is_empty()
                        && ms.len() <= 6
                        && ms.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    match ms.parse() {
                        Ok(ms) if ms <= MAX_BUSY_MS => Ok(ControlCommand::Busy(ms)),
                        _ => Err(ControlError::UnknownCommand),
                    }
                }
                _ => Err(ControlError::UnknownCommand),
            },
        }
    }

    /// The request line, without its newline.
    pub fn as_line(self) -> String {
        match self {
            ControlCommand::Touch => "touch".to_owned(),
            ControlCommand::Count => "count".to_owned(),
            ControlCommand::Busy(ms) => format!("busy {ms}"),
        }
    }
}

/// One answer on the control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlReply {
    /// The touch approved the waiting request.
    Ok,
    /// A touch with nothing waiting.
    NothingWaiting,
    /// The touch count.
    Count(u64),
    /// The request was not a command.
    UnknownCommand,
}

const NOTHING_WAITING: &str = "error nothing is waiting for a touch";
const UNKNOWN_COMMAND: &str = "error unknown command";

impl ControlReply {
    /// The answer line, without its newline.
    pub fn to_line(self) -> String {
        match self {
            ControlReply::Ok => "ok".to_owned(),
            ControlReply::NothingWaiting => NOTHING_WAITING.to_owned(),
            ControlReply::Count(n) => n.to_string(),
            ControlReply::UnknownCommand => UNKNOWN_COMMAND.to_owned(),
        }
    }

    /// Parse one answer line (with or without its newline). A count is plain decimal digits.
    pub fn parse(line: &str) -> Result<ControlReply, ControlError> {
        if line.len() > MAX_CONTROL_LINE {
            return Err(ControlError::TooLong(line.len()));
        }
        match line.trim() {
            "ok" => Ok(ControlReply::Ok),
            NOTHING_WAITING => Ok(ControlReply::NothingWaiting),
            UNKNOWN_COMMAND => Ok(ControlReply::UnknownCommand),
            n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n
                .parse()
                .map(ControlReply::Count)
                .map_err(|_| ControlError::UnexpectedReply),
            _ => Err(ControlError::UnexpectedReply),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_surrounding_whitespace() {
        assert_eq!(ControlCommand::parse("touch\n"), Ok(ControlCommand::Touch));
        assert_eq!(
            ControlCommand::parse("  count \r\n"),
            Ok(ControlCommand::Count)
        );
        for bad in ["", "\n", "Touch", "touch now", "tou\0ch", "count 1"] {
            assert_eq!(
                ControlCommand::parse(bad),
                Err(ControlError::UnknownCommand),
                "{bad:?}"
            );
        }
        let long = "x".repeat(MAX_CONTROL_LINE + 1);
        assert_eq!(
            ControlCommand::parse(&long),
            Err(ControlError::TooLong(MAX_CONTROL_LINE + 1))
        );
        for c in [
            ControlCommand::Touch,
            ControlCommand::Count,
            ControlCommand::Busy(0),
            ControlCommand::Busy(MAX_BUSY_MS),
        ] {
            assert_eq!(ControlCommand::parse(&c.as_line()), Ok(c));
        }
        for bad in [
            "busy",
            "busy ",
            "busy -1",
            "busy 600001",
            "busy 1.5",
            "busy 0x10",
            "busy 1 2",
        ] {
            assert_eq!(
                ControlCommand::parse(bad),
                Err(ControlError::UnknownCommand),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn replies_round_trip_and_junk_is_refused() {
        for r in [
            ControlReply::Ok,
            ControlReply::NothingWaiting,
            ControlReply::Count(0),
            ControlReply::Count(u64::MAX),
            ControlReply::UnknownCommand,
        ] {
            assert_eq!(ControlReply::parse(&format!("{}\n", r.to_line())), Ok(r));
        }
        for bad in [
            "",
            "-1",
            "+1",
            "1e3",
            "18446744073709551616",
            "okay",
            "error",
        ] {
            assert_eq!(
                ControlReply::parse(bad),
                Err(ControlError::UnexpectedReply),
                "{bad:?}"
            );
        }
    }
}
