//! Desktop notifications, end to end on Linux: a private `dbus-daemon` session bus, a small
//! recording notification server in the test (it owns `org.freedesktop.Notifications` on that
//! bus and hands every Notify and CloseNotification call to the test through a channel), and
//! the real agent (`auths agent start`) gating on the virtual key, asked by real `ssh-keygen`.

#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use zbus::zvariant::OwnedValue;

use super::support::cli::{stderr, Sim, User};
use super::support::{skipped, KillOnDrop, DEADLINE};

/// One call the agent made to the notification server.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Notify {
        app: String,
        replaces: u32,
        id: u32,
        summary: String,
        body: String,
        urgency: Option<u8>,
        expire: i32,
    },
    Close {
        id: u32,
    },
}

struct Recorder {
    next: u32,
    calls: mpsc::Sender<Call>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Recorder {
    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into(), "body-markup".into()]
    }

    #[allow(clippy::too_many_arguments)]
    fn notify(
        &mut self,
        app_name: String,
        replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        hints: HashMap<String, OwnedValue>,
        expire_timeout: i32,
    ) -> u32 {
        // As the specification says: a replaced notification keeps its id.
        let id = if replaces_id != 0 {
            replaces_id
        } else {
            self.next += 1;
            self.next
        };
        let urgency = hints.get("urgency").and_then(|v| u8::try_from(v).ok());
        let _ = self.calls.send(Call::Notify {
            app: app_name,
            replaces: replaces_id,
            id,
            summary,
            body,
            urgency,
            expire: expire_timeout,
        });
        id
    }

    fn close_notification(&mut self, id: u32) {
        let _ = self.calls.send(Call::Close { id });
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "recorder".into(),
            "auths tests".into(),
            "0".into(),
            "1.2".into(),
        )
    }
}

/// A private session bus: `dbus-daemon --session` on a socket in the test's directory.
struct Bus {
    _daemon: KillOnDrop,
    address: String,
}

impl Bus {
    /// `None` (and a line saying why) when dbus-daemon is not installed, unless
    /// `AUTHS_REQUIRE_DBUS=1`, which makes that a failure.
    fn start(dir: &Path, test: &str) -> Option<Bus> {
        let spawned = Command::new("dbus-daemon")
            .arg("--session")
            .arg("--nofork")
            .arg("--nopidfile")
            .arg("--print-address=1")
            .arg(format!("--address=unix:path={}/bus", dir.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) if std::env::var_os("AUTHS_REQUIRE_DBUS").is_some_and(|v| v == "1") => {
                panic!("AUTHS_REQUIRE_DBUS=1 but dbus-daemon cannot run: {e}")
            }
            Err(e) => {
                skipped(
                    test,
                    &format!("dbus-daemon cannot run ({e}); install dbus-daemon (CI does, with AUTHS_REQUIRE_DBUS=1)"),
                );
                return None;
            }
        };
        // The daemon prints its address once it listens: that line is its readiness.
        let stdout = child.stdout.take().unwrap();
        let daemon = KillOnDrop(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let address = rx
            .recv_timeout(DEADLINE)
            .expect("dbus-daemon printed its address")
            .trim()
            .to_owned();
        assert!(address.starts_with("unix:"), "{address}");
        Some(Bus {
            _daemon: daemon,
            address,
        })
    }

    /// Serve a recording notification server on this bus; its calls come out of the receiver.
    fn recorder(&self) -> (Server, mpsc::Receiver<Call>) {
        let (tx, rx) = mpsc::channel();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let conn = rt.block_on(async {
            zbus::connection::Builder::address(self.address.as_str())
                .unwrap()
                .serve_at(
                    "/org/freedesktop/Notifications",
                    Recorder { next: 0, calls: tx },
                )
                .unwrap()
                .name("org.freedesktop.Notifications")
                .unwrap()
                .build()
                .await
                .expect("the recorder owns org.freedesktop.Notifications")
        });
        (
            Server {
                _conn: conn,
                _rt: rt,
            },
            rx,
        )
    }
}

/// The recorder's connection and runtime, kept for the test.
struct Server {
    _conn: zbus::Connection,
    _rt: tokio::runtime::Runtime,
}

/// A user with an enrolled virtual key, an agent on `sock` and an ssh key added to it.
struct Rig {
    user: User,
    sim: Sim,
    sock: PathBuf,
    key: PathBuf,
}

impl Rig {
    fn new(sim_args: &[&str], env: &[(&str, &Path)]) -> Rig {
        let user = User::new();
        // Enrolled on the key touching at once; then the same key (its state file) is served
        // again with the touch behaviour the test wants.
        let pin: Vec<&str> = sim_args
            .windows(2)
            .find(|w| w[0] == "--pin")
            .map(|w| w.to_vec())
            .unwrap_or_default();
        let mut sim = Sim::start(&user.dir, "key", &pin);
        let enrolled = user.auths_with(&["token", "enroll", "--device", &sim.device()], env);
        assert!(enrolled.status.success(), "{}", stderr(&enrolled));
        assert!(sim.stop(), "the enrolling sim stopped");
        assert!(!sim.socket.exists(), "and removed its socket");
        drop(sim);
        let sim = Sim::start(&user.dir, "key", sim_args);
        let sock = user.home.join("a.sock");
        let key = user.dir.join("id");
        let gen = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(gen.success());
        Rig {
            user,
            sim,
            sock,
            key,
        }
    }

    /// `auths agent start --socket … --device … ARGS` with `env`, then `auths agent add`.
    fn start_agent(&self, args: &[&str], env: &[(&str, &Path)]) -> String {
        let sock = self.sock.to_str().unwrap();
        let dev = self.sim.device();
        let mut all = vec!["agent", "start", "--socket", sock, "--device", &dev];
        all.extend_from_slice(args);
        let out = self.user.auths_with(&all, env);
        assert!(out.status.success(), "{}", stderr(&out));
        let add = self
            .user
            .auths(&["agent", "add", self.key.to_str().unwrap(), "--socket", sock]);
        assert!(add.status.success(), "{}", stderr(&add));
        stderr(&out)
    }

    /// `ssh-keygen -Y sign -n NAMESPACE` of a small file, through the agent, started.
    fn sign(&self, namespace: &str) -> Child {
        let msg = self.user.dir.join("msg");
        std::fs::write(&msg, "hello\n").unwrap();
        Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", namespace, "-f"])
            .arg(self.key.with_extension("pub"))
            .arg(&msg)
            .env("SSH_AUTH_SOCK", &self.sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn touch(&self) {
        let out = self.user.auths(&[
            "sim",
            "touch",
            "--socket",
            self.sim.socket.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.user.home.join("agent.log")).unwrap_or_default()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self
            .user
            .auths(&["agent", "stop", "--socket", self.sock.to_str().unwrap()]);
    }
}

/// Wait for a signing child, bounded.
fn finished(child: Child) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("ssh-keygen -Y sign did not finish within {DEADLINE:?}")
        }
    }
}

fn next(calls: &mpsc::Receiver<Call>) -> Call {
    calls
        .recv_timeout(DEADLINE)
        .expect("a call reached the notification server")
}

fn bus_env(bus: &Bus) -> (&'static str, &Path) {
    ("DBUS_SESSION_BUS_ADDRESS", Path::new(bus.address.as_str()))
}

#[test]
fn a_touch_wait_is_notified_naming_who_and_what_and_withdrawn_when_touched() {
    let rig = Rig::new(&["--touch", "manual"], &[]);
    let Some(bus) = Bus::start(&rig.user.dir, "notify: touch wait") else {
        return;
    };
    let (_server, calls) = bus.recorder();
    rig.start_agent(&["--notify", "on"], &[bus_env(&bus)]);
    let signer = rig.sign("git");
    let signer_pid = signer.id();

    // The key blinks: the notification is up before anyone touched.
    let Call::Notify {
        app,
        replaces,
        id,
        summary,
        body,
        urgency,
        expire,
    } = next(&calls)
    else {
        panic!("the first call shows a notification")
    };
    assert_eq!(app, "auths");
    assert_eq!(replaces, 0);
    assert_eq!(summary, "Touch your security key");
    assert!(
        body.starts_with("Approve a git commit or tag signature (namespace git) for ")
            && body.contains(&format!("ssh-keygen (pid {signer_pid}) \u{2190} ")),
        "names what and who: {body}"
    );
    assert!(body.contains("key SHA256:"), "{body}");
    assert_eq!(urgency, Some(2), "a touch wait is critical");
    assert!(
        expire > 0,
        "it expires by itself should the agent die: {expire}"
    );

    // The touch is verified: the same notification is withdrawn, and the signature made.
    rig.touch();
    assert_eq!(next(&calls), Call::Close { id });
    let out = finished(signer);
    assert!(out.status.success(), "{}", stderr(&out));
    // Nothing else was shown.
    assert!(calls.try_recv().is_err());
}

#[test]
fn a_timed_out_touch_withdraws_its_notification() {
    let rig = Rig::new(&["--touch", "never"], &[]);
    let Some(bus) = Bus::start(&rig.user.dir, "notify: timeout") else {
        return;
    };
    let (_server, calls) = bus.recorder();
    rig.start_agent(&["--touch-timeout", "1s"], &[bus_env(&bus)]);
    let signer = rig.sign("git");
    let Call::Notify { id, summary, .. } = next(&calls) else {
        panic!("a touch wait shows a notification")
    };
    assert_eq!(summary, "Touch your security key");
    // Nobody touches: the touch timeout refuses the request and takes the notification away.
    assert_eq!(next(&calls), Call::Close { id });
    let out = finished(signer);
    assert!(!out.status.success(), "no touch, no signature");
}

#[test]
fn a_pin_wait_is_notified_then_replaced_by_the_touch_prompt() {
    let pin_dir = super::support::short_tempdir();
    // Enrolling asks for the PIN at once; the agent's PIN program waits until the test hands
    // it the PIN through a FIFO, so the notification is seen while the PIN is being asked.
    let enroll_askpass = pin_dir.path().join("askpass-now");
    std::fs::write(&enroll_askpass, "#!/bin/sh\nprintf '%s\\n' 2468\n").unwrap();
    let fifo = pin_dir.path().join("pin");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let agent_askpass = pin_dir.path().join("askpass-fifo");
    std::fs::write(
        &agent_askpass,
        format!("#!/bin/sh\nexec cat '{}'\n", fifo.display()),
    )
    .unwrap();
    for prog in [&enroll_askpass, &agent_askpass] {
        std::fs::set_permissions(prog, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let rig = Rig::new(
        &["--pin", "2468", "--touch", "manual"],
        &[("AUTHS_ASKPASS", &enroll_askpass)],
    );
    let Some(bus) = Bus::start(&rig.user.dir, "notify: PIN wait") else {
        return;
    };
    let (_server, calls) = bus.recorder();
    rig.start_agent(
        &["--uv", "required"],
        &[bus_env(&bus), ("AUTHS_ASKPASS", &agent_askpass)],
    );
    let signer = rig.sign("file");
    let Call::Notify {
        id,
        summary,
        body,
        replaces,
        ..
    } = next(&calls)
    else {
        panic!("the PIN wait shows a notification")
    };
    assert_eq!(replaces, 0);
    assert_eq!(summary, "Enter your security key's PIN");
    assert!(
        body.starts_with("Enter the PIN of ")
            && body
                .contains("to approve an SSHSIG signature (namespace file) for ssh-keygen (pid "),
        "{body}"
    );
    // Now the PIN program gets its answer (opening the FIFO waits for it to read).
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::write(&fifo, "2468\n"));
    });
    rx.recv_timeout(DEADLINE)
        .expect("the PIN program read the PIN")
        .unwrap();
    // Then the key blinks: the touch prompt takes the PIN one's place, and goes with the touch.
    let Call::Notify {
        id: touch_id,
        summary,
        replaces,
        ..
    } = next(&calls)
    else {
        panic!("the touch wait shows a notification")
    };
    assert_eq!(
        (replaces, touch_id),
        (id, id),
        "replaces the PIN notification"
    );
    assert_eq!(summary, "Touch your security key");
    rig.touch();
    assert_eq!(next(&calls), Call::Close { id });
    let out = finished(signer);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_requesters_control_characters_and_markup_arrive_escaped() {
    let rig = Rig::new(&["--touch", "manual"], &[]);
    let Some(bus) = Bus::start(&rig.user.dir, "notify: escaping") else {
        return;
    };
    let (_server, calls) = bus.recorder();
    rig.start_agent(&[], &[bus_env(&bus)]);
    // The SSHSIG namespace is the requester's to choose.
    let signer = rig.sign("x\x1b[2J<a href=\"http://e\">&#10;</a>\u{202e}");
    let Call::Notify { id, body, .. } = next(&calls) else {
        panic!("a touch wait shows a notification")
    };
    assert!(
        body.contains(
            "(namespace x\\u{1b}[2J&lt;a href=\"http://e\"&gt;&amp;#10;&lt;/a&gt;\\u{202e})"
        ),
        "{body}"
    );
    assert!(
        !body
            .chars()
            .any(|c| c.is_control() || c == '<' || c == '\u{202e}'),
        "{body:?}"
    );
    rig.touch();
    assert_eq!(next(&calls), Call::Close { id });
    let out = finished(signer);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn notify_off_never_reaches_the_bus_and_on_reaches_it_before_the_agent_serves() {
    // A bus socket that takes connections into its backlog and never answers: a connection
    // the agent made is there to accept, whatever it sent.
    let rig = Rig::new(&[], &[]);
    let bus_path = rig.user.dir.join("silent-bus");
    let listener = std::os::unix::net::UnixListener::bind(&bus_path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = format!("unix:path={}", bus_path.display());
    let env = [("DBUS_SESSION_BUS_ADDRESS", Path::new(address.as_str()))];

    rig.start_agent(&["--notify", "off"], &env);
    let out = finished(rig.sign("git"));
    assert!(out.status.success(), "{}", stderr(&out));
    // An agent that notifies connects before it serves anyone, so by the time this signature
    // (which a notifying agent would have announced) was made, its connection would wait here.
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the agent with --notify off connected to the session bus"
    );
    assert!(
        rig.log().contains("touch notifications: off"),
        "{}",
        rig.log()
    );
    let stop = rig
        .user
        .auths(&["agent", "stop", "--socket", rig.sock.to_str().unwrap()]);
    assert!(stop.status.success(), "{}", stderr(&stop));

    // The same with notifications on: the connection is there once the agent serves, and a
    // bus that never answers delays no signature (its calls give up on their own).
    rig.start_agent(&["--notify", "on"], &env);
    let (conn, _) = listener.accept().expect("the notifying agent connected");
    let out = finished(rig.sign("git"));
    assert!(out.status.success(), "{}", stderr(&out));
    drop(conn);
}

#[test]
fn with_no_notification_server_on_the_bus_signing_goes_on_and_says_so_once() {
    // The key is touched 0.4 s after it starts blinking, so each request waits for a touch
    // (and would be notified).
    let rig = Rig::new(&["--touch-delay-ms", "400"], &[]);
    let Some(bus) = Bus::start(&rig.user.dir, "notify: no server") else {
        return;
    };
    rig.start_agent(&["--notify", "on"], &[bus_env(&bus)]);
    for _ in 0..2 {
        let out = finished(rig.sign("git"));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Told once; on the bus nobody owns org.freedesktop.Notifications.
    super::support::wait_until("the agent logs that no server answered", || {
        rig.log().contains("desktop notifications:")
    });
    let log = rig.log();
    assert_eq!(log.matches("desktop notifications:").count(), 1, "{log}");
    assert!(log.contains("signing goes on"), "{log}");
}

#[test]
fn a_requester_that_goes_away_withdraws_its_notification() {
    let rig = Rig::new(&["--touch", "manual"], &[]);
    let Some(bus) = Bus::start(&rig.user.dir, "notify: requester gone") else {
        return;
    };
    let (_server, calls) = bus.recorder();
    rig.start_agent(&[], &[bus_env(&bus)]);
    let mut signer = rig.sign("git");
    let Call::Notify { id, .. } = next(&calls) else {
        panic!("a touch wait shows a notification")
    };
    // ssh-keygen is killed while the key blinks: the agent cancels the touch, and the
    // notification goes with it.
    signer.kill().unwrap();
    signer.wait().unwrap();
    assert_eq!(next(&calls), Call::Close { id });
}

#[test]
fn install_service_writes_the_notify_choice_into_the_unit() {
    let user = User::new();
    for choice in ["on", "off"] {
        let out = user.auths(&[
            "agent",
            "install-service",
            "--print",
            "--manager",
            "systemd",
            "--notify",
            choice,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let unit = String::from_utf8_lossy(&out.stdout);
        let exec = unit
            .lines()
            .find(|l| l.starts_with("ExecStart="))
            .unwrap_or_else(|| panic!("{unit}"));
        assert!(exec.ends_with(&format!(" --notify {choice}")), "{exec}");
    }
    let bad = user.auths(&["agent", "install-service", "--print", "--notify", "maybe"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("possible values: on, off"),
        "{}",
        stderr(&bad)
    );
}
