//! Who is on the other end of an agent connection.
//!
//! draft-miller-ssh-agent "Security Considerations" leaves access control to the socket's
//! file permissions; we also read the peer's credentials from the kernel when the connection is
//! accepted (ssh-agent-lib's `Agent::new_session` habit) and reject other uids. The pid is
//! completed with the process start time (so a recycled pid is a different peer), the
//! executable and the parent, which the gate shows in its prompt and uses for batch scopes.
//!
//! Platforms, one small module each behind `from_unix_stream` / `from_pipe_client`:
//! - Linux: `SO_PEERCRED`, then `/proc/PID/stat` and `/proc/PID/exe`.
//! - macOS: `getpeereid` and `LOCAL_PEERPID` (through tokio's `peer_cred`), the executable
//!   from `proc_pidpath`, parent pid and start time from `proc_pidinfo(PROC_PIDTBSDINFO)`
//!   (the same `p_starttime` / `e_ppid` that `sysctl` `KERN_PROC_PID` reports, without
//!   declaring `kinfo_proc` by hand), the session from `getsid`.
//! - Windows: `GetNamedPipeClientProcessId`, then `QueryFullProcessImageNameW`,
//!   `GetProcessTimes` and a Toolhelp snapshot for the parent; the client's token user SID
//!   must be ours (there is no uid: [`Requester::uid`] is 0 on both sides).
//! - Other Unix: `getpeereid` only.
//!
//! The parsers and conversions are pure functions, tested on every platform.

use crate::presence::request::Requester;

// The platform half (see `crate::platform` for the scheme). Unix: `unix` reads the socket
// credentials and completes them with this system's `os` module; Windows: `windows` names a
// pipe client.
#[cfg(all(unix, not(any(target_os = "linux", target_os = "macos"))))]
mod bsd;
#[cfg(all(unix, not(any(target_os = "linux", target_os = "macos"))))]
use bsd as os;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as os;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::from_unix_stream;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::from_pipe_client;

/// The fields we use from `/proc/PID/stat` (proc(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 4, `ppid`.
    pub ppid: u32,
    /// Field 6, `session`.
    pub session: u32,
    /// Field 22, `starttime`, clock ticks since boot.
    pub start_time: u64,
}

/// Parse `/proc/PID/stat`. The command name (field 2) is in parentheses and may itself contain
/// spaces and `)`, so fields are counted from the last `)`.
pub fn parse_proc_stat(stat: &str) -> Option<ProcStat> {
    let close = stat.rfind(')')?;
    // Fields 3.. follow the last ')'.
    let rest = stat.get(close + 1..)?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // fields[0] is field 3 (state): field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3).copied();
    Some(ProcStat {
        ppid: field(4)?.parse().ok()?,
        session: field(6)?.parse().ok()?,
        start_time: field(22)?.parse().ok()?,
    })
}

/// Process start time on macOS (`pbi_start_tvsec` / `pbi_start_tvusec`) as microseconds since
/// the epoch; `None` on overflow or a bogus microsecond field.
pub fn timeval_to_micros(sec: u64, usec: u64) -> Option<u64> {
    if usec >= 1_000_000 {
        return None;
    }
    sec.checked_mul(1_000_000)?.checked_add(usec)
}

/// The path `proc_pidpath` wrote: `n` bytes of `buf` (`n <= 0` is failure), UTF-8 or lossy.
pub fn path_from_buf(buf: &[u8], n: i32) -> Option<String> {
    let n = usize::try_from(n)
        .ok()
        .filter(|n| *n > 0 && *n <= buf.len())?;
    let bytes = &buf[..n];
    let bytes = bytes.split(|b| *b == 0).next().unwrap_or(bytes);
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// A Windows FILETIME (two 32-bit halves, 100 ns since 1601) as one number.
pub fn filetime_to_u64(low: u32, high: u32) -> u64 {
    (u64::from(high) << 32) | u64::from(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macos_start_time_and_path_conversions() {
        assert_eq!(
            timeval_to_micros(1_700_000_000, 250),
            Some(1_700_000_000_000_250)
        );
        assert_eq!(timeval_to_micros(1, 1_000_000), None);
        assert_eq!(timeval_to_micros(u64::MAX, 0), None);
        let mut buf = [0u8; 32];
        buf[..12].copy_from_slice(b"/usr/bin/ssh");
        assert_eq!(path_from_buf(&buf, 12).as_deref(), Some("/usr/bin/ssh"));
        assert_eq!(path_from_buf(&buf, 0), None);
        assert_eq!(path_from_buf(&buf, -1), None);
        assert_eq!(path_from_buf(&buf, 33), None);
        assert_eq!(
            path_from_buf(&buf, 20).as_deref(),
            Some("/usr/bin/ssh"),
            "stops at NUL"
        );
    }

    #[test]
    fn windows_filetime_joins_halves() {
        assert_eq!(filetime_to_u64(1, 0), 1);
        assert_eq!(filetime_to_u64(0, 1), 1 << 32);
        assert_eq!(filetime_to_u64(u32::MAX, u32::MAX), u64::MAX);
    }

    #[test]
    fn parses_plain_stat() {
        let s = "4242 (ssh-keygen) S 4240 4242 4100 34816 4242 4194304 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615";
        assert_eq!(
            parse_proc_stat(s),
            Some(ProcStat {
                ppid: 4240,
                session: 4100,
                start_time: 987654
            })
        );
    }

    #[test]
    fn parses_comm_with_spaces_and_parens() {
        let s = "7 (evil) 1 2 (x) y) R 6 7 8 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 555 0 0";
        assert_eq!(
            parse_proc_stat(s),
            Some(ProcStat {
                ppid: 6,
                session: 8,
                start_time: 555
            })
        );
    }

    #[test]
    fn refuses_truncated_or_garbage() {
        assert_eq!(parse_proc_stat(""), None);
        assert_eq!(parse_proc_stat("1 (a) S 0 1 1"), None);
        assert_eq!(parse_proc_stat("no parens at all 1 2 3"), None);
        assert_eq!(
            parse_proc_stat("1 (a) S x 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5"),
            None
        );
    }
}
