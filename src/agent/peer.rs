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
//!   must be ours (there is no uid: [`PeerInfo::uid`] is 0 on both sides).
//! - Other Unix: `getpeereid` only.
//!
//! The parsers and conversions are pure functions, tested on every platform.

use crate::presence::gate::Requester;

/// Identity of a connected peer, read once at accept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// Effective uid of the peer (from the kernel, not from the peer).
    pub uid: u32,
    /// Process id, when the platform tells it.
    pub pid: Option<u32>,
    /// Start time of the process in clock ticks since boot (Linux, `/proc/PID/stat` field 22).
    pub start_time: Option<u64>,
    /// Executable path (`/proc/PID/exe`).
    pub exe: Option<String>,
    /// Parent process id.
    pub parent_pid: Option<u32>,
    /// Parent start time.
    pub parent_start_time: Option<u64>,
    /// Parent executable path.
    pub parent_exe: Option<String>,
    /// Session id (`setsid`).
    pub session_id: Option<u32>,
}

impl From<PeerInfo> for Requester {
    fn from(p: PeerInfo) -> Self {
        Requester {
            uid: p.uid,
            pid: p.pid,
            start_time: p.start_time,
            exe: p.exe,
            parent_pid: p.parent_pid,
            parent_start_time: p.parent_start_time,
            parent_exe: p.parent_exe,
            session_id: p.session_id,
        }
    }
}

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

#[cfg(target_os = "linux")]
mod platform {
    use std::io;
    use std::os::fd::AsFd;

    use super::{parse_proc_stat, PeerInfo, ProcStat};

    /// uid and pid from `SO_PEERCRED`.
    pub(super) fn credentials(fd: impl AsFd) -> io::Result<(u32, Option<u32>)> {
        let cred = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::PeerCredentials)
            .map_err(io::Error::from)?;
        let pid = u32::try_from(cred.pid()).ok().filter(|p| *p != 0);
        Ok((cred.uid(), pid))
    }

    fn stat(pid: u32) -> Option<ProcStat> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_proc_stat(&s)
    }

    fn exe(pid: u32) -> Option<String> {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    pub(super) fn complete(info: &mut PeerInfo) {
        let Some(pid) = info.pid else { return };
        if let Some(st) = stat(pid) {
            info.start_time = Some(st.start_time);
            info.session_id = Some(st.session);
            if st.ppid != 0 {
                info.parent_pid = Some(st.ppid);
                info.parent_start_time = stat(st.ppid).map(|p| p.start_time);
                info.parent_exe = exe(st.ppid);
            }
        }
        info.exe = exe(pid);
    }
}

#[cfg(target_os = "macos")]
mod platform {
    use std::io;

    use super::{path_from_buf, timeval_to_micros, PeerInfo};

    /// uid (`getpeereid`) and pid (`LOCAL_PEERPID`) via tokio.
    pub(super) fn credentials_tokio(
        stream: &tokio::net::UnixStream,
    ) -> io::Result<(u32, Option<u32>)> {
        let cred = stream.peer_cred()?;
        let pid = cred
            .pid()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p != 0);
        Ok((cred.uid(), pid))
    }

    fn exe(pid: u32) -> Option<String> {
        let pid = libc::c_int::try_from(pid).ok()?;
        let mut buf = vec![0u8; libc::PROC_PIDPATHINFO_MAXSIZE as usize];
        // SAFETY: `buf` is writable for the length we pass.
        let n = unsafe { libc::proc_pidpath(pid, buf.as_mut_ptr().cast(), buf.len() as u32) };
        path_from_buf(&buf, n)
    }

    /// (parent pid, start time in microseconds since the epoch).
    fn bsd_info(pid: u32) -> Option<(u32, Option<u64>)> {
        let cpid = libc::c_int::try_from(pid).ok()?;
        // SAFETY: proc_bsdinfo is plain data; all zeroes is a valid value.
        let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
        // SAFETY: `info` is writable for `size` bytes, the size PROC_PIDTBSDINFO fills.
        let n = unsafe {
            libc::proc_pidinfo(
                cpid,
                libc::PROC_PIDTBSDINFO,
                0,
                (&mut info as *mut libc::proc_bsdinfo).cast(),
                size,
            )
        };
        if n != size || info.pbi_pid != pid {
            return None;
        }
        Some((
            info.pbi_ppid,
            timeval_to_micros(info.pbi_start_tvsec, info.pbi_start_tvusec),
        ))
    }

    fn session(pid: u32) -> Option<u32> {
        let pid = libc::pid_t::try_from(pid).ok()?;
        // SAFETY: getsid takes a pid and returns a number (or -1).
        let s = unsafe { libc::getsid(pid) };
        u32::try_from(s).ok()
    }

    pub(super) fn complete(info: &mut PeerInfo) {
        let Some(pid) = info.pid else { return };
        info.exe = exe(pid);
        info.session_id = session(pid);
        if let Some((ppid, start)) = bsd_info(pid) {
            info.start_time = start;
            if ppid != 0 {
                info.parent_pid = Some(ppid);
                info.parent_start_time = bsd_info(ppid).and_then(|(_, s)| s);
                info.parent_exe = exe(ppid);
            }
        }
    }
}

#[cfg(all(unix, not(any(target_os = "linux", target_os = "macos"))))]
mod platform {
    use std::io;

    use super::PeerInfo;

    pub(super) fn complete(_info: &mut PeerInfo) {}

    /// uid (`getpeereid`) and pid (`LOCAL_PEERPID` where available) via tokio.
    pub(super) fn credentials_tokio(
        stream: &tokio::net::UnixStream,
    ) -> io::Result<(u32, Option<u32>)> {
        let cred = stream.peer_cred()?;
        let pid = cred.pid().and_then(|p| u32::try_from(p).ok());
        Ok((cred.uid(), pid))
    }
}

/// Read the peer's identity from a connected Unix socket.
#[cfg(unix)]
pub fn from_unix_stream(stream: &tokio::net::UnixStream) -> std::io::Result<PeerInfo> {
    #[cfg(target_os = "linux")]
    let (uid, pid) = platform::credentials(stream)?;
    #[cfg(not(target_os = "linux"))]
    let (uid, pid) = platform::credentials_tokio(stream)?;
    let mut info = PeerInfo {
        uid,
        pid,
        ..PeerInfo::default()
    };
    platform::complete(&mut info);
    Ok(info)
}

/// The identity of a named-pipe client (Windows): `pid` from `GetNamedPipeClientProcessId`.
/// Refuses a process whose token user is not `my_sid` (another user, or a process we may not
/// query: fail closed).
#[cfg(windows)]
pub fn from_pipe_client(pid: u32, my_sid: &str) -> std::io::Result<PeerInfo> {
    use crate::platform::windows as w;
    let sid = w::process_user_sid(pid)?;
    if sid != my_sid {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("pipe client pid {pid} runs as {sid}, not as us ({my_sid})"),
        ));
    }
    let parent_pid = w::parent_pid(pid);
    Ok(PeerInfo {
        uid: 0,
        pid: Some(pid),
        start_time: w::process_start_time(pid),
        exe: w::process_image(pid),
        parent_pid,
        parent_start_time: parent_pid.and_then(w::process_start_time),
        parent_exe: parent_pid.and_then(w::process_image),
        session_id: w::session_id(pid),
    })
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

    #[cfg(target_os = "linux")]
    #[test]
    fn own_stat_parses() {
        let s = std::fs::read_to_string("/proc/self/stat").unwrap();
        let st = parse_proc_stat(&s).unwrap();
        assert_eq!(st.ppid, std::os::unix::process::parent_id());
    }

    #[test]
    fn converts_to_requester() {
        let p = PeerInfo {
            uid: 1000,
            pid: Some(5),
            start_time: Some(9),
            exe: Some("/usr/bin/ssh-keygen".into()),
            parent_pid: Some(4),
            parent_start_time: Some(8),
            parent_exe: Some("/usr/bin/git".into()),
            session_id: Some(3),
        };
        let r = Requester::from(p);
        assert_eq!(r.uid, 1000);
        assert_eq!(r.parent_exe.as_deref(), Some("/usr/bin/git"));
        assert_eq!(r.session_id, Some(3));
    }
}
