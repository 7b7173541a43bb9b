//! Unix: the sim sockets are Unix sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::super::{Event, Handle, TouchError, VirtualKey};
use super::control::{ControlCommand, ControlReply, MAX_CONTROL_LINE};
use super::{control_path, SimError};
use crate::ctap::framing::{Report, REPORT_LEN};
use crate::ctap::transport::{Transport, TransportError};
use crate::secure_fs;

/// True: the sim sockets are Unix sockets.
pub const AVAILABLE: bool = true;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bind(path: &Path) -> Result<UnixListener, SimError> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            secure_fs::ensure_private_dir(parent)?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(SimError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(io(path))?;
        }
        Ok(_) => return Err(SimError::NotASocket(path.to_path_buf())),
        Err(_) => {}
    }
    let l = UnixListener::bind(path).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    Ok(l)
}

/// A running `auths sim serve`. Dropping it (or [`SimServer::shutdown`]) stops accepting and
/// removes the socket files; open connections end when the key stops or the client leaves.
#[derive(Debug)]
pub struct SimServer {
    path: PathBuf,
    ctl_path: PathBuf,
    stop: Arc<AtomicBool>,
    /// Our end of the wake-up pair: dropping it makes the accept loops' end readable (EOF).
    wake: Option<UnixStream>,
    threads: Vec<JoinHandle<()>>,
}

/// Serve `key` on the data socket `socket_path` and the control socket
/// [`control_path`]`(socket_path)`, each from its own thread.
pub fn serve_unix(socket_path: &Path, key: &VirtualKey) -> Result<SimServer, SimError> {
    let ctl_path = control_path(socket_path);
    let data = bind(socket_path)?;
    let ctl = match bind(&ctl_path) {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(socket_path);
            return Err(e);
        }
    };
    let cleanup = |e: std::io::Error| {
        let _ = std::fs::remove_file(socket_path);
        let _ = std::fs::remove_file(&ctl_path);
        io(socket_path)(e)
    };
    let (wake, woken) = UnixStream::pair().map_err(cleanup)?;
    let woken2 = woken.try_clone().map_err(cleanup)?;
    for l in [&data, &ctl] {
        l.set_nonblocking(true).map_err(cleanup)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let (h, s) = (key.handle.clone(), stop.clone());
    threads.push(std::thread::spawn(move || {
        accept_loop(&data, &woken, &s, |conn| serve_data(conn, &h))
    }));
    let (h, s) = (key.handle.clone(), stop.clone());
    threads.push(std::thread::spawn(move || {
        accept_loop(&ctl, &woken2, &s, |conn| {
            let key = h.clone();
            std::thread::spawn(move || control_session(conn, &key));
        })
    }));
    Ok(SimServer {
        path: socket_path.to_path_buf(),
        ctl_path,
        stop,
        wake: Some(wake),
        threads,
    })
}

impl SimServer {
    /// The data socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop accepting connections and remove the sockets.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the accept loops through the pair, not the paths: those may be gone.
        drop(self.wake.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(&self.ctl_path);
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Accept connections on a non-blocking `listener` until `stop` is set and `woken` becomes
/// readable (its peer was dropped). Accepted connections are blocking again.
fn accept_loop(
    listener: &UnixListener,
    woken: &UnixStream,
    stop: &AtomicBool,
    mut on_conn: impl FnMut(UnixStream),
) {
    use nix::errno::Errno;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(woken.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return;
        }
        // An error is WouldBlock (a spurious wake-up), Interrupted, or a connection aborted
        // before we took it: keep serving. BSDs hand out accepted sockets with the listener's
        // O_NONBLOCK, hence the reset.
        if let Ok((conn, _)) = listener.accept() {
            if conn.set_nonblocking(false).is_ok() {
                on_conn(conn);
            }
        }
    }
}

/// One data connection: a reader thread feeds the key, a writer thread sends its reports.
fn serve_data(conn: UnixStream, key: &Handle) {
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let transport = key.connect();
    let closed = Arc::new(AtomicBool::new(false));
    let (events, reports) = (transport.events, transport.reports);
    let c = closed.clone();
    std::thread::spawn(move || {
        let mut conn = conn;
        let mut buf = [0u8; REPORT_LEN];
        while conn.read_exact(&mut buf).is_ok() {
            if events.send(Event::Report(buf)).is_err() {
                break;
            }
        }
        c.store(true, Ordering::SeqCst);
        let _ = conn.shutdown(std::net::Shutdown::Both);
    });
    std::thread::spawn(move || {
        let mut conn = write_half;
        while !closed.load(Ordering::SeqCst) {
            match reports.recv_timeout(Duration::from_millis(200)) {
                Ok(r) => {
                    if conn.write_all(&r).is_err() {
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        // Key gone or client gone: close both directions.
        let _ = conn.shutdown(std::net::Shutdown::Both);
    });
}

fn control_session(conn: UnixStream, key: &Handle) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn.take(MAX_CONTROL_LINE as u64));
    let mut line = String::new();
    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
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
            // Unknown or over-long lines get the same answer as before the parser existed.
            Err(_) => ControlReply::UnknownCommand,
        };
        if writeln!(out, "{}", reply.to_line()).is_err() {
            return;
        }
        line.clear();
    }
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
    let mut conn = UnixStream::connect(&ctl).map_err(io(&ctl))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io(&ctl))?;
    writeln!(conn, "{}", command.as_line()).map_err(io(&ctl))?;
    let mut line = String::new();
    BufReader::new((&conn).take(256))
        .read_line(&mut line)
        .map_err(io(&ctl))?;
    match ControlReply::parse(&line) {
        Ok(ControlReply::Ok) => Ok(()),
        Ok(ControlReply::NothingWaiting) => Err(SimError::NothingWaiting),
        _ => Err(SimError::UnexpectedReply(ctl)),
    }
}

/// The host side of a sim data socket: a [`Transport`] over raw 64-byte reports.
#[derive(Debug)]
pub struct SimTransport {
    stream: UnixStream,
    buf: Report,
    filled: usize,
}

impl SimTransport {
    /// Connect to `auths sim serve` at `socket_path`.
    pub fn connect(socket_path: &Path) -> Result<SimTransport, TransportError> {
        let stream = UnixStream::connect(socket_path)?;
        Ok(SimTransport {
            stream,
            buf: [0u8; REPORT_LEN],
            filled: 0,
        })
    }
}

fn disconnected(e: std::io::Error) -> TransportError {
    use std::io::ErrorKind::*;
    match e.kind() {
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof | NotConnected => {
            TransportError::Disconnected
        }
        _ => TransportError::Io(e),
    }
}

impl Transport for SimTransport {
    fn write_report(&mut self, report: &Report) -> Result<(), TransportError> {
        self.stream.write_all(report).map_err(disconnected)
    }

    fn read_report(&mut self, timeout: Duration) -> Result<Option<Report>, TransportError> {
        let deadline = Instant::now() + timeout;
        while self.filled < REPORT_LEN {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut self.buf[self.filled..]) {
                Ok(0) => return Err(TransportError::Disconnected),
                Ok(n) => self.filled += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(disconnected(e)),
            }
        }
        self.filled = 0;
        Ok(Some(self.buf))
    }
}
