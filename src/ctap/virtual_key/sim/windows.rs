//! Windows: the sim "sockets" are named pipes. `--socket \\.\pipe\NAME` serves the data pipe
//! `\\.\pipe\NAME` (raw 64-byte CTAPHID reports, one pipe instance per open handle on the key)
//! and the control pipe `\\.\pipe\NAME.ctl` (the same line protocol as on Unix).
//!
//! Both pipes admit the current user only (the agent pipe's security descriptor) and refuse
//! remote clients. A name some other process already serves is [`SimError::InUse`] (the first
//! instance is created with `FILE_FLAG_FIRST_PIPE_INSTANCE`; Wine ignores that flag).
//!
//! The pipes are driven by tokio (overlapped I/O): a synchronous pipe handle serialises reads
//! and writes, and a key must be able to send KEEPALIVE while the host writes. The server runs
//! its own runtime on one thread; each [`SimTransport`] carries a small current-thread runtime
//! of its own, because [`Transport`] is a blocking interface.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::windows::named_pipe::{ClientOptions, NamedPipeServer, ServerOptions};

use super::super::{Event, Handle, TouchError, VirtualKey};
use super::control::{ControlCommand, ControlReply, MAX_CONTROL_LINE};
use super::{control_path, SimError};
use crate::ctap::framing::{Report, REPORT_LEN};
use crate::ctap::transport::{Transport, TransportError};
use crate::platform::windows::SecurityDescriptor;

/// True: the sim pipes are named pipes.
pub const AVAILABLE: bool = true;

const PIPE_PREFIX: &str = r"\\.\pipe\";
/// ERROR_ACCESS_DENIED, ERROR_PIPE_BUSY.
const ACCESS_DENIED: i32 = 5;
const PIPE_BUSY: i32 = 231;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `\\.\pipe\NAME` with a non-empty NAME and no further backslash.
fn pipe_name(path: &Path) -> Result<String, SimError> {
    let bad = || SimError::NotAPipeName(path.to_path_buf());
    let s = path.to_str().ok_or_else(bad)?;
    let ok = s
        .get(..PIPE_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PIPE_PREFIX))
        && s.len() > PIPE_PREFIX.len()
        && s.len() <= 256
        && !s[PIPE_PREFIX.len()..].contains('\\');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(bad())
    }
}

fn user_only() -> std::io::Result<SecurityDescriptor> {
    let sid = crate::platform::windows::current_user_sid()?;
    let sddl = crate::platform::sddl::pipe_sddl(&sid)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    SecurityDescriptor::from_sddl(&sddl)
}

/// One instance of pipe `name` (inside a tokio runtime).
fn create(
    name: &str,
    descriptor: &SecurityDescriptor,
    first: bool,
) -> std::io::Result<NamedPipeServer> {
    let mut attributes = descriptor.attributes();
    let mut opts = ServerOptions::new();
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

/// A running `auths sim serve` on named pipes. Dropping it (or [`SimServer::shutdown`]) stops
/// the runtime: no more connections, and the open ones close.
#[derive(Debug)]
pub struct SimServer {
    path: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Serve `key` on the data pipe `socket_path` (`\\.\pipe\NAME`) and the control pipe
/// [`control_path`]`(socket_path)`. (The name says Unix for the API's sake; here it serves
/// named pipes.)
pub fn serve_unix(socket_path: &Path, key: &VirtualKey) -> Result<SimServer, SimError> {
    let data_name = pipe_name(socket_path)?;
    let ctl_path = control_path(socket_path);
    let ctl_name = pipe_name(&ctl_path)?;
    let descriptor = user_only().map_err(io(socket_path))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io(socket_path))?;
    // Both first instances exist before we return, so a client may connect at once.
    let first = |name: &str, path: &Path| {
        let _guard = rt.enter();
        match create(name, &descriptor, true) {
            Ok(p) => Ok(p),
            Err(e) if matches!(e.raw_os_error(), Some(ACCESS_DENIED) | Some(PIPE_BUSY)) => {
                Err(SimError::InUse(path.to_path_buf()))
            }
            Err(e) => Err(io(path)(e)),
        }
    };
    let data = first(&data_name, socket_path)?;
    let ctl = first(&ctl_name, &ctl_path)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = key.handle.clone();
    let thread = std::thread::spawn(move || {
        rt.block_on(async move {
            let descriptor = Arc::new(descriptor);
            let h = handle.clone();
            let d = descriptor.clone();
            let data_loop = accept_loop(data_name, data, d, move |conn| {
                serve_data(conn, &h);
            });
            let ctl_loop = accept_loop(ctl_name, ctl, descriptor, move |conn| {
                let key = handle.clone();
                tokio::spawn(async move { control_session(conn, &key).await });
            });
            tokio::select! {
                _ = stopped => {}
                _ = data_loop => {}
                _ = ctl_loop => {}
            }
        });
        // Dropping the runtime cancels every connection task: their pipes close.
        drop(rt);
    });
    Ok(SimServer {
        path: socket_path.to_path_buf(),
        stop: Some(stop),
        thread: Some(thread),
    })
}

impl SimServer {
    /// The data pipe.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop serving.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Hand out connected instances of pipe `name`, a fresh instance waiting before each is handed
/// out. Returns when no new instance can be created.
async fn accept_loop(
    name: String,
    mut next: NamedPipeServer,
    descriptor: Arc<SecurityDescriptor>,
    mut on_conn: impl FnMut(NamedPipeServer),
) {
    loop {
        let connected = next.connect().await;
        let Ok(fresh) = create(&name, &descriptor, false) else {
            return;
        };
        let conn = std::mem::replace(&mut next, fresh);
        // An error is a client that came and went (ERROR_NO_DATA): drop that instance.
        if connected.is_ok() {
            on_conn(conn);
        }
    }
}

/// One data connection: a task feeds the key the client's reports; a thread waits on the key's
/// (blocking) report channel and hands them to a task that writes them out.
fn serve_data(conn: NamedPipeServer, key: &Handle) {
    let transport = key.connect();
    let (events, reports) = (transport.events, transport.reports);
    let (mut rd, mut wr) = tokio::io::split(conn);
    let closed = Arc::new(AtomicBool::new(false));
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Report>();
    let c = closed.clone();
    std::thread::spawn(move || {
        while !c.load(Ordering::SeqCst) {
            match reports.recv_timeout(Duration::from_millis(200)) {
                Ok(r) => {
                    if out_tx.send(r).is_err() {
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    let c = closed.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; REPORT_LEN];
        while rd.read_exact(&mut buf).await.is_ok() {
            if events.send(Event::Report(buf)).is_err() {
                break;
            }
        }
        c.store(true, Ordering::SeqCst);
    });
    tokio::spawn(async move {
        // Ends when the key is gone (the forwarding thread drops its sender) or the client.
        while let Some(r) = out_rx.recv().await {
            if wr.write_all(&r).await.is_err() {
                break;
            }
        }
        closed.store(true, Ordering::SeqCst);
        let _ = wr.shutdown().await;
    });
}

async fn control_session(conn: NamedPipeServer, key: &Handle) {
    let (rd, mut out) = tokio::io::split(conn);
    let mut reader = tokio::io::BufReader::new(rd.take(MAX_CONTROL_LINE as u64));
    let mut line = String::new();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
        if !matches!(n, Ok(Ok(n)) if n > 0) {
            return;
        }
        let reply = match ControlCommand::parse(&line) {
            Ok(ControlCommand::Touch) => match key.touch() {
                Ok(()) => ControlReply::Ok,
                Err(TouchError::NothingWaiting) => ControlReply::NothingWaiting,
            },
            Ok(ControlCommand::Count) => ControlReply::Count(key.touches.load(Ordering::SeqCst)),
            Ok(ControlCommand::Busy(ms)) => {
                key.hold_for(Duration::from_millis(ms));
                ControlReply::Ok
            }
            Err(_) => ControlReply::UnknownCommand,
        };
        let text = format!("{}\n", reply.to_line());
        if out.write_all(text.as_bytes()).await.is_err() || out.flush().await.is_err() {
            return;
        }
        line.clear();
    }
}

/// Open a client end of pipe `name`, retrying while every instance is taken for a moment.
fn open_client(name: &str) -> std::io::Result<tokio::net::windows::named_pipe::NamedPipeClient> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ClientOptions::new().open(name) {
            Err(e) if e.raw_os_error() == Some(PIPE_BUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn small_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// `auths sim touch`: press the button of the key served at `socket_path`.
pub fn sim_touch(socket_path: &Path) -> Result<(), SimError> {
    control(socket_path, ControlCommand::Touch)
}

/// `auths sim busy`: another program holds the key served at `socket_path` for `duration`.
pub fn sim_busy(socket_path: &Path, duration: Duration) -> Result<(), SimError> {
    let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    control(socket_path, ControlCommand::Busy(ms))
}

fn control(socket_path: &Path, command: ControlCommand) -> Result<(), SimError> {
    let ctl = control_path(socket_path);
    let name = pipe_name(&ctl)?;
    let rt = small_runtime().map_err(io(&ctl))?;
    let line = rt.block_on(async {
        let conn = open_client(&name)?;
        let (rd, mut wr) = tokio::io::split(conn);
        wr.write_all(format!("{}\n", command.as_line()).as_bytes())
            .await?;
        wr.flush().await?;
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(rd.take(256));
        match tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line)).await {
            Ok(r) => r.map(|_| line),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer in 10 s",
            )),
        }
    });
    let line = line.map_err(io(&ctl))?;
    match ControlReply::parse(&line) {
        Ok(ControlReply::Ok) => Ok(()),
        Ok(ControlReply::NothingWaiting) => Err(SimError::NothingWaiting),
        _ => Err(SimError::UnexpectedReply(ctl)),
    }
}

/// The host side of a sim data pipe: a [`Transport`] over raw 64-byte reports.
pub struct SimTransport {
    rt: tokio::runtime::Runtime,
    pipe: tokio::net::windows::named_pipe::NamedPipeClient,
    buf: Report,
    filled: usize,
}

impl std::fmt::Debug for SimTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTransport").finish_non_exhaustive()
    }
}

impl SimTransport {
    /// Connect to `auths sim serve` at `socket_path` (`\\.\pipe\NAME`).
    pub fn connect(socket_path: &Path) -> Result<SimTransport, TransportError> {
        let name = pipe_name(socket_path).map_err(|e| {
            TransportError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                e.to_string(),
            ))
        })?;
        let rt = small_runtime()?;
        let pipe = {
            let _guard = rt.enter();
            open_client(&name)?
        };
        Ok(SimTransport {
            rt,
            pipe,
            buf: [0u8; REPORT_LEN],
            filled: 0,
        })
    }
}

fn disconnected(e: std::io::Error) -> TransportError {
    use std::io::ErrorKind::*;
    // ERROR_BROKEN_PIPE (109), ERROR_NO_DATA (232), ERROR_PIPE_NOT_CONNECTED (233).
    if matches!(e.raw_os_error(), Some(109) | Some(232) | Some(233)) {
        return TransportError::Disconnected;
    }
    match e.kind() {
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof | NotConnected => {
            TransportError::Disconnected
        }
        _ => TransportError::Io(e),
    }
}

impl Transport for SimTransport {
    fn write_report(&mut self, report: &Report) -> Result<(), TransportError> {
        let pipe = &mut self.pipe;
        self.rt
            .block_on(async { pipe.write_all(report).await })
            .map_err(disconnected)
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Option<Report>, TransportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (pipe, buf, filled) = (&mut self.pipe, &mut self.buf, &mut self.filled);
        // A read cut short by the deadline keeps what it got: the named pipe's read is
        // cancel-safe and `filled` carries the partial report to the next call.
        let got = self.rt.block_on(async {
            while *filled < REPORT_LEN {
                match tokio::time::timeout_at(deadline, pipe.read(&mut buf[*filled..])).await {
                    Err(_) => return Ok(false),
                    Ok(Ok(0)) => return Err(TransportError::Disconnected),
                    Ok(Ok(n)) => *filled += n,
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Ok(Err(e)) => return Err(disconnected(e)),
                }
            }
            Ok(true)
        })?;
        if !got {
            return Ok(None);
        }
        self.filled = 0;
        Ok(Some(self.buf))
    }
}
