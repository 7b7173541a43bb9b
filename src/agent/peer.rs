//! Who is on the other end of an agent connection.
//!
//! draft-miller-ssh-agent "Security Considerations" leaves access control to the socket's
//! file permissions; we also read the peer's credentials from the kernel when the connection is
//! accepted (ssh-agent-lib's `Agent::new_session` habit) and reject other uids. The pid is
//! completed with the process start time (so a recycled pid is a different peer), the
//! executable and the parent, which the gate shows in its prompt and uses for batch scopes.
//!
//! Platforms: Linux reads `SO_PEERCRED` and `/proc`; other Unix systems use `getpeereid`
//! (and `LOCAL_PEERPID` where it exists) through tokio's `peer_cred`, without start time or
//! executable for now. The `/proc` parsers are pure functions.

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

#[cfg(all(unix, not(target_os = "linux")))]
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

#[cfg(test)]
mod tests {
    use super::*;

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
