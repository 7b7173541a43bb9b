//! Linux peer identity: `SO_PEERCRED`, then `/proc/PID/stat` and `/proc/PID/exe`.

use std::io;
use std::os::fd::AsFd;

use super::{parse_proc_stat, ProcStat, Requester};

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

pub(super) fn complete(info: &mut Requester) {
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
    info.exe_file = super::unix::file_id(&format!("/proc/{pid}/exe"));
}

#[cfg(test)]
mod tests {
    use super::super::parse_proc_stat;

    #[test]
    fn own_executable_has_a_file_identity() {
        use std::os::unix::fs::MetadataExt;
        let me = std::process::id();
        let id = super::super::unix::file_id(&format!("/proc/{me}/exe")).unwrap();
        let exe = std::fs::metadata(std::env::current_exe().unwrap()).unwrap();
        assert_eq!((id.dev, id.ino), (exe.dev(), exe.ino()));
    }

    #[test]
    fn own_stat_parses() {
        let s = std::fs::read_to_string("/proc/self/stat").unwrap();
        let st = parse_proc_stat(&s).unwrap();
        assert_eq!(st.ppid, std::os::unix::process::parent_id());
    }
}
