//! Peer identity of a named-pipe client: token user, image, parent, start time, session.

use super::Requester;
use crate::presence::request::Identity;

/// The identity of a named-pipe client (Windows): `pid` from `GetNamedPipeClientProcessId`.
/// Refuses a process whose token user is not `my_sid` (another user, or a process we may not
/// query: fail closed).
pub fn from_pipe_client(pid: u32, my_sid: &str) -> std::io::Result<Requester> {
    use crate::platform::windows as w;
    let sid = w::process_user_sid(pid)?;
    if sid != my_sid {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("pipe client pid {pid} runs as {sid}, not as us ({my_sid})"),
        ));
    }
    // The start time before and after the reads must agree, so they all saw one process.
    let start_time = w::process_start_time(pid);
    let parent_pid = w::parent_pid(pid);
    let info = Requester {
        uid: 0,
        pid: Some(pid),
        start_time,
        exe: w::process_image(pid),
        // Not read on Windows yet (it would be the volume serial and file index of the
        // image): grants there bind the executable's path only.
        exe_file: None,
        parent_pid,
        parent_start_time: parent_pid.and_then(w::process_start_time),
        parent_exe: parent_pid.and_then(w::process_image),
        session_id: w::session_id(pid),
        identity: Identity::Confirmed,
    };
    let same = start_time.is_some() && w::process_start_time(pid) == start_time;
    Ok(if same && info.exe.is_some() {
        info
    } else {
        info.exited()
    })
}
