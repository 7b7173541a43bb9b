//! Windows: the agent listens on a named pipe that admits the current user only; peers are
//! identified by pipe client process ([`crate::agent::peer::from_pipe_client`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{is_pipe_name, Listener};
use crate::agent::AgentError;
use crate::presence::request::Requester;

/// 0 on Windows, where peers are matched by token user SID at accept.
pub(crate) fn current_uid() -> u32 {
    0
}

/// The listener [`bind`] returns on this platform.
pub type AgentListener = PipeAgentListener;

/// A Windows named-pipe listener: one pipe instance waits for a client; when one connects, the
/// next instance is created before the connected one is handed out.
pub struct PipeAgentListener {
    name: String,
    next: tokio::net::windows::named_pipe::NamedPipeServer,
    descriptor: crate::platform::windows::SecurityDescriptor,
    my_sid: String,
}

impl std::fmt::Debug for PipeAgentListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeAgentListener")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PipeAgentListener {
    /// Create the first instance of pipe `name`. Must be called inside a tokio runtime.
    pub fn bind(name: &str) -> Result<PipeAgentListener, AgentError> {
        let path = || PathBuf::from(name);
        if !is_pipe_name(name) {
            return Err(AgentError::BadSocketPath(path()));
        }
        let bind_err = |source| AgentError::Bind {
            path: path(),
            source,
        };
        let my_sid = crate::platform::windows::current_user_sid().map_err(bind_err)?;
        let sddl = crate::platform::sddl::pipe_sddl(&my_sid)
            .map_err(|e| bind_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        let descriptor =
            crate::platform::windows::SecurityDescriptor::from_sddl(&sddl).map_err(bind_err)?;
        let next = match Self::create(name, &descriptor, true) {
            Ok(p) => p,
            // ERROR_ACCESS_DENIED: with FILE_FLAG_FIRST_PIPE_INSTANCE, the pipe exists already
            // (a running agent, or someone squatting the name). ERROR_PIPE_BUSY: same.
            Err(e) if matches!(e.raw_os_error(), Some(5) | Some(231)) => {
                return Err(AgentError::AlreadyRunning(path()))
            }
            Err(e) => return Err(bind_err(e)),
        };
        Ok(PipeAgentListener {
            name: name.to_owned(),
            next,
            descriptor,
            my_sid,
        })
    }

    fn create(
        name: &str,
        descriptor: &crate::platform::windows::SecurityDescriptor,
        first: bool,
    ) -> std::io::Result<tokio::net::windows::named_pipe::NamedPipeServer> {
        let mut attributes = descriptor.attributes();
        let mut opts = tokio::net::windows::named_pipe::ServerOptions::new();
        opts.first_pipe_instance(first)
            .reject_remote_clients(true)
            .access_inbound(true)
            .access_outbound(true);
        // SAFETY: `attributes` is a valid SECURITY_ATTRIBUTES whose descriptor (`descriptor`)
        // outlives the call; CreateNamedPipeW copies what it needs.
        unsafe {
            opts.create_with_security_attributes_raw(
                name,
                (&mut attributes as *mut windows_sys::Win32::Security::SECURITY_ATTRIBUTES).cast(),
            )
        }
    }
}

impl Listener for PipeAgentListener {
    type Stream = tokio::net::windows::named_pipe::NamedPipeServer;

    async fn accept(&mut self) -> std::io::Result<(Self::Stream, Requester)> {
        use std::os::windows::io::AsRawHandle;
        loop {
            if let Err(e) = self.next.connect().await {
                // A client that came and went before we connected (ERROR_NO_DATA) leaves this
                // instance unusable: replace it, or the agent would stop accepting.
                self.next = Self::create(&self.name, &self.descriptor, false)?;
                if e.raw_os_error() == Some(232) {
                    continue;
                }
                return Err(e);
            }
            let fresh = Self::create(&self.name, &self.descriptor, false)?;
            let connected = std::mem::replace(&mut self.next, fresh);
            let mut pid = 0u32;
            // SAFETY: the handle belongs to `connected`, a live pipe instance; `pid` is a valid
            // out pointer.
            let ok = unsafe {
                windows_sys::Win32::System::Pipes::GetNamedPipeClientProcessId(
                    connected.as_raw_handle(),
                    &mut pid,
                )
            };
            if ok == 0 || pid == 0 {
                continue;
            }
            match crate::agent::peer::from_pipe_client(pid, &self.my_sid) {
                Ok(peer) => return Ok((connected, peer)),
                // Another user, or a process we cannot query: close it (fail closed).
                Err(_) => continue,
            }
        }
    }
}

/// Windows: create the named pipe `path` (a `\\.\pipe\NAME`) for the current user only.
pub fn bind(path: &Path) -> Result<PipeAgentListener, AgentError> {
    PipeAgentListener::bind(&path.to_string_lossy())
}

/// A pipe vanishes with its last handle: nothing to remove at exit.
pub(crate) struct BoundEndpoint;

impl BoundEndpoint {
    pub(crate) fn of(_path: &Path) -> Self {
        BoundEndpoint
    }

    pub(crate) fn remove_if_ours(&self, _path: &Path) {}
}

/// Open the agent pipe (the client side, for [`crate::agent::client`]).
pub(crate) fn connect(socket: &Path, timeout: Option<Duration>) -> std::io::Result<std::fs::File> {
    // ERROR_PIPE_BUSY (231): every instance is taken for a moment; retry for a while.
    let deadline = std::time::Instant::now() + timeout.unwrap_or(Duration::from_secs(5));
    loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(socket)
        {
            Err(e) if e.raw_os_error() == Some(231) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}
