//! The demo on Unix (the agent on a Unix socket under /tmp) and on Windows (the agent on a
//! named pipe, its directory under %TEMP%). The few platform lines are marked `cfg`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use std::time::Instant;

use ssh_agent_lib::proto::{PublicCredential, Request, Response, SignRequest};
use ssh_key::{HashAlg, LineEnding, PrivateKey, SshSig};

use auths_presence::agent::client;
use auths_presence::agent::server::{self, AgentConfig};
use auths_presence::ctap::command::Algorithm;
use auths_presence::ctap::device::DeviceOptions;
use auths_presence::ctap::select::OpenedKey;
use auths_presence::ctap::virtual_key::{TouchMode, VirtualKey, VirtualKeyConfig};
use auths_presence::ctap::CtapError;
use auths_presence::presence::audit::{verify_chain, AuditLog, Outcome};
use auths_presence::presence::enrollment::{enroll_key, TokenStore};
use auths_presence::presence::policy::{Policy, PolicyError};
use auths_presence::presence::presence_gate::{GateConfig, PresenceGate};
use auths_presence::presence::prompt::{PromptEvent, Prompter};
use auths_presence::presence::touch::PresenceKey;

use std::path::Path;

use super::super::CliResult;

/// The SSHSIG namespace the demo signs in.
const NAMESPACE: &str = "file";

/// `auths demo-sign --socket S --key PUB --message M`: ask the agent at S for an SSHSIG over M
/// with the key in PUB and print the armored signature on stdout.
pub fn sign_helper(socket: &Path, key: &Path, message: &str) -> CliResult {
    let public = ssh_key::PublicKey::read_openssh_file(key)
        .map_err(|e| format!("cannot read the public key {}: {e}", key.display()))?;
    let sig = sign(socket, public.key_data(), message.as_bytes())?;
    print!("{sig}");
    Ok(())
}

/// `auths demo`.
pub fn run() -> CliResult {
    let dir = TempDir::new()?;
    clean_up_on_interrupt(dir.path())?;
    let result = Demo::new(dir.path()).and_then(|mut d| d.run());
    // The agent, the key and the directory are gone before we say how it went.
    drop(dir);
    match result {
        Ok(()) => {
            println!("\nAll six steps did what they claim. Nothing was left behind.");
            println!("Next: `auths token enroll` with your own key, then `auths agent start`.");
            Ok(())
        }
        Err(e) => Err(format!("the demo failed: {e}").into()),
    }
}

type Fallible<T> = Result<T, String>;

/// One step of the demo.
type Step = fn(&mut Demo) -> Fallible<()>;

/// Every wait in the demo is bounded by this.
const WAIT: Duration = Duration::from_secs(20);

/// A private (0700) directory under /tmp, removed on drop. /tmp keeps socket paths short.
/// On Windows: under %TEMP%, with a user-only ACL.
pub struct TempDir(PathBuf);

impl TempDir {
    #[cfg(windows)]
    pub fn new() -> Result<TempDir, Box<dyn std::error::Error>> {
        let path = std::env::temp_dir().join(format!(
            "auths-demo-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        auths_presence::secure_fs::ensure_private_dir(&path).map_err(|e| {
            format!(
                "cannot create the demo's directory {}: {e}; is %TEMP% writable?",
                path.display()
            )
        })?;
        Ok(TempDir(path))
    }

    #[cfg(unix)]
    pub fn new() -> Result<TempDir, Box<dyn std::error::Error>> {
        use std::os::unix::fs::DirBuilderExt;
        let path = PathBuf::from(format!(
            "/tmp/auths-demo-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| {
                format!(
                    "cannot create the demo's directory {}: {e}; is /tmp writable?",
                    path.display()
                )
            })?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Windows: Ctrl-C or Ctrl-Break removes the demo's directory before the process ends.
#[cfg(windows)]
pub fn clean_up_on_interrupt(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let dir = dir.to_path_buf();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("auths-demo-signals".into())
        .spawn(move || {
            rt.block_on(super::super::os::wait_for_stop_signal());
            let _ = std::fs::remove_dir_all(&dir);
            eprintln!("\nauths demo: stopped; its temporary directory is removed");
            std::process::exit(130);
        })?;
    Ok(())
}

/// Ctrl-C (or SIGTERM/SIGHUP) removes the demo's directory before the process ends: the
/// stop signals are blocked before any other thread starts (threads inherit the mask) and
/// one thread takes them with sigwait.
#[cfg(unix)]
pub fn clean_up_on_interrupt(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.thread_block()?;
    let dir = dir.to_path_buf();
    std::thread::Builder::new()
        .name("auths-demo-signals".into())
        .spawn(move || {
            if let Ok(signal) = set.wait() {
                let _ = std::fs::remove_dir_all(&dir);
                eprintln!("\nauths demo: stopped by {signal}; its temporary directory is removed");
                std::process::exit(130);
            }
        })?;
    Ok(())
}

/// The agent, serving in a tokio runtime on its own thread.
struct RunningAgent {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Fallible<()>>>,
    prompter: Prompter,
}

impl RunningAgent {
    fn stop(&mut self) -> Fallible<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("the agent's thread panicked".into()),
            None => Ok(()),
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

pub struct Demo {
    home: PathBuf,
    socket: PathBuf,
    pubkey_file: PathBuf,
    key: Arc<VirtualKey>,
    identity: PrivateKey,
    tty: bool,
    exe: PathBuf,
    enroll_touches: u64,
    agent: Option<RunningAgent>,
}

fn heading(n: u32, text: &str) {
    println!("\n== Step {n}: {text}");
}

fn say(text: &str) {
    println!("   {text}");
}

fn check(ok: bool, what: impl Into<String>) -> Fallible<()> {
    if ok {
        Ok(())
    } else {
        Err(what.into())
    }
}

impl Demo {
    pub fn new(dir: &Path) -> Result<Demo, Box<dyn std::error::Error>> {
        let key = VirtualKey::start(VirtualKeyConfig {
            touch_mode: TouchMode::Auto {
                delay: Duration::ZERO,
            },
            ..VirtualKeyConfig::default()
        })?;
        let identity = PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)?;
        Ok(Demo {
            home: dir.join("home"),
            #[cfg(unix)]
            socket: dir.join("agent.sock"),
            #[cfg(windows)]
            socket: PathBuf::from(format!(
                r"\\.\pipe\auths-demo-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            )),
            pubkey_file: dir.join("id_demo.pub"),
            key: Arc::new(key),
            identity,
            tty: std::io::stdin().is_terminal(),
            exe: std::env::current_exe()?,
            enroll_touches: 0,
            agent: None,
        })
    }

    pub fn run(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let steps: [(u32, &str, Step); 6] = [
            (
                1,
                "a virtual security key appears and is enrolled",
                Demo::enroll,
            ),
            (
                2,
                "the agent starts and an identity key is added",
                Demo::start,
            ),
            (
                3,
                "a signature is requested; one touch approves it",
                Demo::sign_with_touch,
            ),
            (
                4,
                "another process asks for a signature; no one touches",
                Demo::refused,
            ),
            (
                5,
                "a batch: several signatures from one parent, one touch",
                Demo::batch,
            ),
            (
                6,
                "the audit log proves every signature had a touch behind it",
                Demo::audit,
            ),
        ];
        println!("auths demo: an ssh-agent that signs only after a touch on a security key.");
        println!("Everything lives in a temporary directory and is removed at the end.");
        for (n, title, step) in steps {
            heading(n, title);
            if let Err(e) = step(self) {
                println!("   FAILED: {e}");
                if let Some(mut a) = self.agent.take() {
                    let _ = a.stop();
                }
                return Err(format!("step {n} ({title}) failed: {e}").into());
            }
        }
        if let Some(mut a) = self.agent.take() {
            a.stop()?;
        }
        Ok(())
    }

    fn opened(key: &VirtualKey, deadline: Duration) -> Result<OpenedKey, CtapError> {
        OpenedKey::from_transport(
            Box::new(key.connect()),
            "virtual key (auths demo)".into(),
            DeviceOptions {
                deadline,
                ..DeviceOptions::default()
            },
            true,
        )
    }

    /// How long the agent waits for a touch: a person at a terminal gets a minute.
    fn touch_timeout(&self) -> Duration {
        if self.tty {
            Duration::from_secs(60)
        } else {
            WAIT
        }
    }

    fn touches(&self) -> u64 {
        self.key.touch_count() - self.enroll_touches
    }

    // Step 1.
    fn enroll(&mut self) -> Fallible<()> {
        say("A virtual security key (software, NOT hardware) is plugged in.");
        let store = TokenStore::open(&self.home).map_err(|e| e.to_string())?;
        let mut opened = Self::opened(&self.key, WAIT).map_err(|e| e.to_string())?;
        say("Enrolling it: the key makes a credential (the demo touches it for you).");
        let e = enroll_key(
            &mut opened,
            &store,
            Some("demo"),
            super::super::token::DEFAULT_RP_ID,
            &[Algorithm::Es256],
            &mut || {},
            &mut auths_presence::presence::pin_entry::NoPinSource,
        )
        .map_err(|e| format!("enrollment failed: {e}"))?;
        self.enroll_touches = self.key.touch_count();
        check(
            e.virtual_key,
            "the enrollment does not say the key is virtual",
        )?;
        check(
            store.list().map_err(|e| e.to_string())?.len() == 1,
            "the key is not in the token store",
        )?;
        say(&format!(
            "Enrolled {} ({}, {}) [virtual key].",
            e.id,
            e.label,
            e.algorithm_name()
        ));
        Ok(())
    }

    fn start_agent(&mut self, policy: Policy, touch_timeout: Duration) -> Fallible<()> {
        if let Some(mut old) = self.agent.take() {
            old.stop()?;
        }
        let prompter = Prompter::new(true);
        let key = self.key.clone();
        let opener = move || -> Result<Box<dyn PresenceKey>, CtapError> {
            // The device's deadline is the touch timeout (as `auths agent start` sets it).
            Ok(Box::new(Self::opened(&key, touch_timeout)?))
        };
        let gate = PresenceGate::new(GateConfig {
            home: self.home.clone(),
            opener: Box::new(opener),
            policy,
            touch_timeout,
            prompter: prompter.clone(),
            clock: None,
            uv: auths_presence::presence::presence_gate::UserVerification::Discouraged,
            pins: Box::new(auths_presence::presence::pin_entry::NoPinSource),
        })
        .map_err(|e| e.to_string())?;
        let config = AgentConfig::new(self.socket.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("auths-demo-agent".into())
            .spawn(move || -> Fallible<()> {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(server::serve(config, Arc::new(gate), async {
                    let _ = rx.await;
                }))
                .map_err(|e| e.to_string())
            })
            .map_err(|e| e.to_string())?;
        let mut agent = RunningAgent {
            stop: Some(tx),
            thread: Some(thread),
            prompter,
        };
        let deadline = Instant::now() + WAIT;
        while !client::is_listening(&self.socket) {
            if agent.thread.as_ref().is_some_and(|t| t.is_finished()) || Instant::now() > deadline {
                return Err(match agent.stop() {
                    Err(e) => format!("the agent did not start: {e}"),
                    Ok(()) => "the agent did not start listening".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.agent = Some(agent);
        // A fresh agent holds no keys: add the identity.
        let credential = ssh_agent_lib::proto::PrivateCredential::Key {
            privkey: self.identity.key_data().clone(),
            comment: "auths-demo".into(),
        };
        let add = Request::AddIdentity(ssh_agent_lib::proto::AddIdentity { credential });
        match client::request(&self.socket, &add, WAIT).map_err(|e| e.to_string())? {
            Response::Success => Ok(()),
            other => Err(format!(
                "the agent did not take the identity key: {other:?}"
            )),
        }
    }

    fn prompter(&self) -> Fallible<Prompter> {
        self.agent
            .as_ref()
            .map(|a| a.prompter.clone())
            .ok_or_else(|| "the agent is not running".into())
    }

    // Step 2.
    fn start(&mut self) -> Fallible<()> {
        self.start_agent(Policy::PerSignature, self.touch_timeout())?;
        say(&format!(
            "The agent listens on {} (policy: a touch for every signature).",
            self.socket.display()
        ));
        let ids = match client::request(&self.socket, &Request::RequestIdentities, WAIT)
            .map_err(|e| e.to_string())?
        {
            Response::IdentitiesAnswer(ids) => ids,
            other => return Err(format!("unexpected answer to list keys: {other:?}")),
        };
        check(
            ids.len() == 1,
            format!("the agent holds {} keys, not 1", ids.len()),
        )?;
        let public = self.identity.public_key();
        let line = public.to_openssh().map_err(|e| e.to_string())?;
        std::fs::write(&self.pubkey_file, format!("{line}\n")).map_err(|e| e.to_string())?;
        say(&format!(
            "Added an Ed25519 identity key, made in memory: {}",
            public.fingerprint(HashAlg::Sha256)
        ));
        say("The agent holds it unlocked, but will not sign without a touch.");
        Ok(())
    }

    /// Wait (bounded) until the key blinks, then touch it: the person presses Enter in a
    /// terminal; without one, the demo touches.
    fn touch_when_asked(
        &self,
        rx: &mut tokio::sync::broadcast::Receiver<PromptEvent>,
        done: &dyn Fn() -> bool,
    ) -> Fallible<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            match rx.try_recv() {
                Ok(PromptEvent::Pending { .. }) => break,
                Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::TryRecvError::Empty) => {
                    if done() {
                        return Err("the request ended before the key asked for a touch".into());
                    }
                    if Instant::now() > deadline {
                        return Err("the key never asked for a touch".into());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(format!("lost the prompt channel: {e}")),
            }
        }
        #[cfg(windows)]
        if self.tty {
            // No poll on a console handle: a thread reads the line, we wait for it bounded.
            let (tx, lines) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let stdin = std::io::stdin();
                loop {
                    let mut line = String::new();
                    let n = stdin.lock().read_line(&mut line).unwrap_or(0);
                    if tx.send(n).is_err() || n == 0 {
                        return;
                    }
                }
            });
            eprint!("   >> Press Enter to touch the virtual key: ");
            let _ = std::io::stderr().flush();
            loop {
                if done() {
                    eprintln!();
                    return Err("nobody pressed Enter before the touch timeout".into());
                }
                match lines.recv_timeout(Duration::from_millis(100)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    Ok(0) | Err(_) => {
                        eprintln!();
                        say("(the terminal closed its input, so the demo touches the key itself)");
                        return self
                            .key
                            .touch()
                            .map_err(|e| format!("touching the key failed: {e}"));
                    }
                    Ok(_) => match self.key.touch() {
                        Ok(()) => return Ok(()),
                        Err(e) => {
                            eprintln!("   ({e})");
                            eprint!("   >> Press Enter to touch the virtual key: ");
                            let _ = std::io::stderr().flush();
                        }
                    },
                }
            }
        }
        #[cfg(unix)]
        if self.tty {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            let stdin = std::io::stdin();
            let ask = || {
                eprint!("   >> Press Enter to touch the virtual key: ");
                let _ = std::io::stderr().flush();
            };
            ask();
            loop {
                // Bounded: the request ends at the gate's touch timeout.
                if done() {
                    eprintln!();
                    return Err("nobody pressed Enter before the touch timeout".into());
                }
                let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
                if poll(&mut fds, PollTimeout::from(100u8)).map_err(|e| e.to_string())? == 0 {
                    continue;
                }
                let mut line = String::new();
                let n = stdin
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    eprintln!();
                    say("(the terminal closed its input, so the demo touches the key itself)");
                    return self
                        .key
                        .touch()
                        .map_err(|e| format!("touching the key failed: {e}"));
                }
                match self.key.touch() {
                    Ok(()) => break,
                    Err(e) => {
                        eprintln!("   ({e})");
                        ask();
                    }
                }
            }
        }
        if !self.tty {
            say("(no terminal here, so the demo touches the key itself)");
            self.key
                .touch()
                .map_err(|e| format!("touching the key failed: {e}"))?;
        }
        Ok(())
    }

    // Step 3.
    fn sign_with_touch(&mut self) -> Fallible<()> {
        self.key.set_touch_mode(TouchMode::Manual);
        let mut rx = self.prompter()?.subscribe();
        let before = self.touches();
        let message = "hello from auths demo\n";
        say(&format!("This process asks the agent to sign {message:?}."));
        let socket = self.socket.clone();
        let public = self.identity.public_key().key_data().clone();
        let signer = std::thread::spawn(move || {
            sign(&socket, &public, message.as_bytes()).map_err(|e| e.to_string())
        });
        let touched = self.touch_when_asked(&mut rx, &|| signer.is_finished());
        let signed = signer
            .join()
            .map_err(|_| "the signing thread panicked".to_string())?;
        touched?;
        let pem = signed.map_err(|e| format!("no signature: {e}"))?;
        self.verify(&pem, message)?;
        check(
            self.touches() == before + 1,
            "the key was not touched exactly once",
        )?;
        say("The signature verifies against the identity key (SSHSIG, namespace \"file\").");
        Ok(())
    }

    fn verify(&self, pem: &str, message: &str) -> Fallible<()> {
        let sig = SshSig::from_pem(pem).map_err(|e| format!("not an SSH signature: {e}"))?;
        self.identity
            .public_key()
            .verify(NAMESPACE, message.as_bytes(), &sig)
            .map_err(|e| format!("the signature does not verify: {e}"))
    }

    fn helper(&self, message: &str) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("demo-sign")
            .arg("--socket")
            .arg(&self.socket)
            .arg("--key")
            .arg(&self.pubkey_file)
            .arg("--message")
            .arg(message)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    // Step 4.
    fn refused(&mut self) -> Fallible<()> {
        let timeout = Duration::from_millis(1500);
        self.start_agent(Policy::PerSignature, timeout)?;
        self.key.set_touch_mode(TouchMode::Never);
        let denied_before = self.count(Outcome::Denied)?;
        say("Another process of the same user (a child of this demo) asks for a signature.");
        say(&format!(
            "Nobody touches the key; the agent gives up after {} s.",
            timeout.as_secs_f32()
        ));
        let out = output(self.helper("sneaky request\n"))?;
        check(
            !out.status.success(),
            "the other process got a signature without a touch",
        )?;
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            say(&format!("   the other process says: {line}"));
        }
        check(
            self.count(Outcome::Denied)? == denied_before + 1,
            "the refusal is not in the audit log",
        )?;
        say("Refused, and the refusal is in the audit log.");
        Ok(())
    }

    fn count(&self, outcome: Outcome) -> Fallible<usize> {
        let lines = AuditLog::new(&self.home)
            .read()
            .map_err(|e| e.to_string())?;
        Ok(lines
            .iter()
            .filter(|(_, r)| r.as_ref().is_ok_and(|r| r.outcome() == outcome))
            .count())
    }

    // Step 5.
    fn batch(&mut self) -> Fallible<()> {
        const N: usize = 3;
        let policy: Policy = format!("batch:{N}:60s:parent")
            .parse()
            .map_err(|e: PolicyError| e.to_string())?;
        self.start_agent(policy, self.touch_timeout())?;
        self.key.set_touch_mode(TouchMode::Manual);
        say(&format!(
            "Policy {policy}: one touch approves up to {N} signatures within 60 s,"
        ));
        say("for processes with the same parent (like git running ssh-keygen per commit).");
        let before = self.touches();
        let mut rx = self.prompter()?.subscribe();
        for i in 1..=N {
            let message = format!("batch signature {i}\n");
            let child = self
                .helper(&message)
                .spawn()
                .map_err(|e| format!("cannot start a child process: {e}"))?;
            let out = if i == 1 {
                let waiter = std::thread::spawn(move || child.wait_with_output());
                let touched = self.touch_when_asked(&mut rx, &|| waiter.is_finished());
                let out = waiter
                    .join()
                    .map_err(|_| "the waiting thread panicked".to_string())?
                    .map_err(|e| e.to_string())?;
                touched?;
                out
            } else {
                wait_bounded(child)?
            };
            check(
                out.status.success(),
                format!(
                    "child {i} was refused: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            )?;
            self.verify(&String::from_utf8_lossy(&out.stdout), &message)?;
            say(&format!(
                "child {i}: signed and verified; touches so far in this step: {}",
                self.touches() - before
            ));
        }
        check(
            self.touches() == before + 1,
            format!(
                "{N} signatures took {} touches, not 1",
                self.touches() - before
            ),
        )?;
        say(&format!("{N} signatures, 1 touch."));
        Ok(())
    }

    // Step 6.
    fn audit(&mut self) -> Fallible<()> {
        if let Some(mut a) = self.agent.take() {
            a.stop()?;
        }
        let tokens = TokenStore::open(&self.home)
            .and_then(|s| s.list())
            .map_err(|e| e.to_string())?;
        let log = AuditLog::new(&self.home);
        let lines = log.read_chain().map_err(|e| e.to_string())?;
        let report = verify_chain(&lines, &tokens);
        say(&format!(
            "auths audit verify: {} signature(s) approved by a verified touch, {} under a verified batch grant, {} denial(s); the hash chain is intact through line {}, which the last touch signed",
            report.approved, report.granted, report.denied, report.chain.anchored_through
        ));
        for p in &report.problems {
            say(&format!(
                "line {}: DOES NOT VERIFY: {}",
                p.line,
                p.problem.as_deref().unwrap_or("")
            ));
        }
        check(report.ok(), "some receipts do not verify")?;
        check(
            report.approved == 2 && report.granted == 2 && report.denied == 1,
            "expected 2 touch approvals, 2 batch grants and 1 denial",
        )?;
        check(
            self.touches() == report.approved as u64,
            format!(
                "the key counted {} touches but the log shows {} approvals",
                self.touches(),
                report.approved
            ),
        )?;
        say(&format!(
            "The virtual key counted {} touches (plus 1 for enrollment): one per approval.",
            self.touches()
        ));
        Ok(())
    }
}

/// Run `cmd` to completion within [`WAIT`].
fn output(mut cmd: Command) -> Fallible<Output> {
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start a child process: {e}"))?;
    wait_bounded(child)
}

fn wait_bounded(child: std::process::Child) -> Fallible<Output> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => {
            #[cfg(unix)]
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            #[cfg(windows)]
            let _ = auths_presence::platform::windows::terminate_process(pid);
            Err(format!(
                "a child process did not finish within {} s",
                WAIT.as_secs()
            ))
        }
    }
}

/// Ask the agent at `socket` for an SSHSIG over `message` with `key`; the armored signature.
pub fn sign(
    socket: &Path,
    key: &ssh_key::public::KeyData,
    message: &[u8],
) -> Result<String, Box<dyn std::error::Error>> {
    let data = SshSig::signed_data(NAMESPACE, HashAlg::Sha512, message)?;
    let req = Request::SignRequest(SignRequest {
        credential: PublicCredential::Key(key.clone()),
        data,
        flags: 0,
    });
    // The agent waits for a touch: allow for it.
    match client::request(socket, &req, Duration::from_secs(120))? {
        Response::SignResponse(sig) => {
            let sig = SshSig::new(key.clone(), NAMESPACE, HashAlg::Sha512, sig)?;
            Ok(sig.to_pem(LineEnding::LF)?)
        }
        _ => Err(
            "the agent refused to sign: no touch approved the request (the key was not touched in time)"
                .into(),
        ),
    }
}
