//! macOS peer identity: `getpeereid` / `LOCAL_PEERPID` (through tokio), `proc_pidpath`,
//! `proc_pidinfo(PROC_PIDTBSDINFO)`, `getsid`.

use std::io;

use super::{path_from_buf, timeval_to_micros, Requester};
use crate::presence::request::Identity;

/// uid (`getpeereid`) and pid (`LOCAL_PEERPID`) via tokio.
pub(super) fn credentials(stream: &tokio::net::UnixStream) -> io::Result<(u32, Option<u32>)> {
    let cred = stream.peer_cred()?;
    let pid = cred
        .pid()
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p != 0);
    Ok((cred.uid(), pid))
}

/// The start time the pid had before the reads (macOS has no pidfd for a socket peer).
pub(super) struct Witness(Option<u64>);

/// Take the witness before any other read.
pub(super) fn witness(_stream: &tokio::net::UnixStream, pid: Option<u32>) -> Witness {
    Witness(pid.and_then(bsd_info).and_then(|(_, start)| start))
}

/// After the reads: the start time must be unchanged, so they all saw one process.
pub(super) fn confirm(witness: &Witness, info: &Requester) -> Identity {
    let now = info.pid.and_then(bsd_info).and_then(|(_, start)| start);
    match witness.0 {
        Some(before)
            if info.start_time == Some(before) && now == Some(before) && info.exe.is_some() =>
        {
            Identity::Confirmed
        }
        _ => Identity::Exited,
    }
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

pub(super) fn complete(info: &mut Requester) {
    let Some(pid) = info.pid else { return };
    info.exe = exe(pid);
    // The path proc_pidpath reported; a file swapped in at that path since is a race macOS
    // gives no handle to close.
    info.exe_file = info.exe.as_deref().and_then(super::unix::file_id);
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
