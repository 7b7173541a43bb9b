//! Linux peer identity: `SO_PEERCRED` for the uid and pid, `SO_PEERPIDFD` (kernel 6.5 and
//! later) for a handle on the very process that connected, then `/proc/PID/stat` and
//! `/proc/PID/exe`.
//!
//! A pid is only a number: the process that connected may have exited, and the number may
//! name another process by the time `/proc` is read. The pidfd cannot be swapped: after the
//! reads, the pidfd must still show the process alive (not readable), and then every read
//! was of that process, since a live process keeps its pid. Without `SO_PEERPIDFD`, the start
//! time is read before and after the other reads and must not change; that proves the reads
//! saw one process, though not that it is the one that connected (README says so).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt};

use super::{parse_proc_stat, ProcStat, Requester};
use crate::presence::request::Identity;

/// uid and pid from `SO_PEERCRED`.
pub(super) fn credentials(fd: impl AsFd) -> io::Result<(u32, Option<u32>)> {
    let cred = getsockopt(&fd, sockopt::PeerCredentials).map_err(io::Error::from)?;
    let pid = u32::try_from(cred.pid()).ok().filter(|p| *p != 0);
    Ok((cred.uid(), pid))
}

/// What the reads are checked against afterwards.
pub(super) enum Witness {
    /// A pidfd of the process that connected (`SO_PEERPIDFD`).
    Pidfd(OwnedFd),
    /// The kernel has no `SO_PEERPIDFD`: the start time the pid had before the reads.
    StartTime(u64),
    /// The connecting process is already gone (or the kernel told no pid).
    Gone,
}

/// Take the witness before any `/proc` read.
pub(super) fn witness(fd: impl AsFd, pid: Option<u32>) -> Witness {
    let Some(pid) = pid else {
        return Witness::Gone;
    };
    match getsockopt(&fd, sockopt::PeerPidfd) {
        Ok(pidfd) => Witness::Pidfd(pidfd),
        // Kernels before 6.5 do not know the option.
        Err(Errno::ENOPROTOOPT) => match stat(pid) {
            Some(st) => Witness::StartTime(st.start_time),
            None => Witness::Gone,
        },
        // ESRCH / EINVAL: the peer was reaped before we asked.
        Err(_) => Witness::Gone,
    }
}

/// After the reads: did they describe the process that connected?
pub(super) fn confirm(witness: &Witness, info: &Requester) -> Identity {
    let read = info.start_time.is_some() && info.exe.is_some();
    let same = match witness {
        Witness::Pidfd(pidfd) => alive(pidfd),
        Witness::StartTime(before) => {
            info.start_time == Some(*before)
                && info.pid.and_then(stat).map(|st| st.start_time) == Some(*before)
        }
        Witness::Gone => false,
    };
    if read && same {
        Identity::Confirmed
    } else {
        Identity::Exited
    }
}

/// A pidfd becomes readable when its process exits.
fn alive(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) => true,
        Ok(_) => false,
        Err(_) => false,
    }
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
    use super::*;

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

    fn filled(pid: u32) -> Requester {
        let mut info = Requester {
            pid: Some(pid),
            ..Requester::default()
        };
        complete(&mut info);
        info
    }

    #[test]
    fn start_time_witness_confirms_a_live_process_and_refuses_a_changed_one() {
        let me = std::process::id();
        let info = filled(me);
        let start = info.start_time.unwrap();
        assert_eq!(
            confirm(&Witness::StartTime(start), &info),
            Identity::Confirmed
        );
        // Another start time: the pid named another process before the reads.
        assert_eq!(
            confirm(&Witness::StartTime(start + 1), &info),
            Identity::Exited
        );
        assert_eq!(confirm(&Witness::Gone, &info), Identity::Exited);
    }

    #[test]
    fn pidfd_witness_follows_the_process_not_the_pid() {
        use std::io::Read;
        use std::os::unix::net::UnixListener;
        // A real peer: `ssh-add -l` connects, sends its request and waits for an answer.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = UnixListener::bind(&path).unwrap();
        let mut child = std::process::Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", &path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ssh-add (openssh-client) is installed");
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        assert_eq!(
            poll(&mut fds, PollTimeout::from(30_000u16)).unwrap(),
            1,
            "ssh-add connected"
        );
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 5];
        stream.read_exact(&mut request).unwrap();
        let (_, pid) = credentials(&stream).unwrap();
        assert_eq!(pid, Some(child.id()));
        let witness = witness(&stream, pid);
        assert!(
            matches!(witness, Witness::Pidfd(_)),
            "kernel 6.5+ gives a pidfd"
        );
        let info = filled(child.id());
        assert_eq!(confirm(&witness, &info), Identity::Confirmed);
        child.kill().unwrap();
        child.wait().unwrap();
        // The same reads, checked once the peer is gone: not confirmed.
        assert_eq!(confirm(&witness, &info), Identity::Exited);
        assert_eq!(
            confirm(&super::witness(&stream, pid), &info),
            Identity::Exited
        );
    }
}
