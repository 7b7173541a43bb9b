//! Idle connections (issue 9, "The agent keeps answering"): 1000 connections that never send a
//! byte are held open against our agent and against OpenSSH's `ssh-agent`, started in the same
//! run; then, with those still open:
//! - the latency of a real `ssh-add -l` (spawned, so process start-up is included), p50/p99;
//! - the latency of one raw `SSH_AGENTC_REQUEST_IDENTITIES` round trip on a fresh connection
//!   through `auths_presence::agent::client` (what `auths agent status` does), p50/p99;
//! - each agent's resident memory (`VmRSS` from `/proc/PID/status`) before the idle
//!   connections, with them open, and after the runs.
//!
//! The idle connections are held by a child process (this bench re-run with `--hold`), so
//! that spawning `ssh-add` here does not pay for a thousand inherited descriptors. The same
//! latencies without idle connections, and the cost of spawning `/bin/true`, are printed
//! beside them: on a loaded machine spawning `ssh-add` is most of its latency.
//!
//! Our agent runs as a real `auths agent start --foreground` process (gating on the virtual key
//! of an `auths sim serve`), not inside this process, so its RSS is the product's and compares
//! with `ssh-agent`'s. Both agents inherit this process's open-file limit, which is raised to
//! its hard limit here first (our agent raises its own at start; `ssh-agent` never does).
//!
//! Then the same under a 1024 open-file limit (soft and hard, set with the shell's `ulimit -n`
//! before each agent starts, a common default) with 1100 idle connections: what each agent does
//! when idle connections outnumber its descriptors. `ssh-add -l` is given 5 s.
//!
//! Targets: `ssh-add -l` p99 <= 5 ms and our RSS <= 40 MiB with 1000 idle connections.
//!
//! Run: `cargo bench --bench idle_connections` (Linux: reads /proc; needs ssh-agent, ssh-add).

#[cfg(target_os = "linux")]
#[path = "../tests/cases/support/mod.rs"]
mod support;

#[cfg(target_os = "linux")]
mod linux {
    use std::os::unix::net::UnixStream;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use auths_presence::agent::client;
    use ssh_agent_lib::proto::{AddIdentity, PrivateCredential, Request, Response};

    use super::support::cli::{Sim, User, AUTHS};
    use super::support::openssh::SSH_ADD;
    use super::support::{wait_until, KillOnDrop};

    const IDLE: usize = 1000;
    const SSH_ADD_RUNS: usize = 200;
    const RAW_RUNS: usize = 2000;
    /// Idle connections in the 1024-descriptor run: more than fit.
    const IDLE_LIMITED: usize = 1100;
    const LIMIT: u32 = 1024;

    /// One agent under test: its socket and its process.
    struct Subject {
        name: &'static str,
        socket: PathBuf,
        process: KillOnDrop,
    }

    impl Subject {
        fn rss_kib(&self) -> u64 {
            let status =
                std::fs::read_to_string(format!("/proc/{}/status", self.process.0.id())).unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .expect("VmRSS in /proc/PID/status")
        }
    }

    /// `program ARGS` under the shell's `ulimit -n LIMIT` when `limit` is given.
    fn command(program: &str, args: &[&str], limit: Option<u32>) -> Command {
        match limit {
            None => {
                let mut c = Command::new(program);
                c.args(args);
                c
            }
            Some(n) => {
                let mut c = Command::new("/bin/sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(program)
                    .args(args);
                c
            }
        }
    }

    fn start_ours(user: &User, dev: &str, socket: &Path, limit: Option<u32>) -> Subject {
        let sock = socket.to_str().unwrap();
        let log = std::fs::File::create(socket.with_extension("log")).unwrap();
        let child = command(
            AUTHS,
            &[
                "agent",
                "start",
                "--foreground",
                "--socket",
                sock,
                "--device",
                dev,
            ],
            limit,
        )
        .env("AUTHS_HOME", &user.home)
        .env_remove("AUTHS_DEVICE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn auths agent start");
        let subject = Subject {
            name: "auths agent",
            socket: socket.to_path_buf(),
            process: KillOnDrop(child),
        };
        wait_until("auths agent listens", || client::is_listening(socket));
        subject
    }

    fn start_openssh(socket: &Path, limit: Option<u32>) -> Option<Subject> {
        let child = command("ssh-agent", &["-D", "-a", socket.to_str().unwrap()], limit)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(child) => {
                let subject = Subject {
                    name: "OpenSSH ssh-agent",
                    socket: socket.to_path_buf(),
                    process: KillOnDrop(child),
                };
                wait_until("ssh-agent listens", || UnixStream::connect(socket).is_ok());
                Some(subject)
            }
            Err(e) => {
                println!("OpenSSH ssh-agent not available ({e}); skipped");
                None
            }
        }
    }

    fn add(socket: &Path, key: &ssh_key::PrivateKey) {
        let req = Request::AddIdentity(AddIdentity {
            credential: PrivateCredential::Key {
                privkey: key.key_data().clone(),
                comment: "bench".into(),
            },
        });
        let r = client::request(socket, &req, Duration::from_secs(10)).unwrap();
        assert_eq!(r, Response::Success);
    }

    /// `n` connections that never send a byte, held by a child process until it is dropped.
    fn idle(socket: &Path, n: usize) -> KillOnDrop {
        use std::io::BufRead;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--hold")
            .arg(socket)
            .arg(n.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready", "the holder connected");
        KillOnDrop(child)
    }

    /// The child side of [`idle`]: connect, say so, hold until stdin closes.
    fn hold(socket: &Path, n: usize) {
        use std::io::Read;
        let (_, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)
            .unwrap();
        let _held: Vec<UnixStream> = (0..n)
            .map(|_| UnixStream::connect(socket).expect("connect an idle connection"))
            .collect();
        println!("ready");
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    }

    /// One `ssh-add -l` through `socket`: how long it took, or `None` when it had no answer
    /// within `bound` (it is killed then).
    fn ssh_add_list(socket: &Path, bound: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut child = Command::new(SSH_ADD)
            .arg("-l")
            .env("SSH_AUTH_SOCK", socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let id = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(bound) {
            Ok(status) => {
                let took = started.elapsed();
                assert!(status.unwrap().success(), "ssh-add -l failed");
                Some(took)
            }
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(id as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = rx.recv();
                None
            }
        }
    }

    fn raw_list(socket: &Path) -> Duration {
        let started = Instant::now();
        let r =
            client::request(socket, &Request::RequestIdentities, Duration::from_secs(10)).unwrap();
        let took = started.elapsed();
        assert!(matches!(r, Response::IdentitiesAnswer(ids) if ids.len() == 1));
        took
    }

    fn percentiles(mut t: Vec<Duration>) -> String {
        t.sort();
        let pct = |p: f64| t[((t.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
        format!(
            "n={:<5} p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms",
            t.len(),
            pct(0.5),
            pct(0.99),
            t[t.len() - 1].as_secs_f64() * 1e3
        )
    }

    fn mib(kib: u64) -> String {
        format!("{:.1} MiB", kib as f64 / 1024.0)
    }

    /// `ssh-add -l` and raw round trips: p50/p99 lines.
    fn latencies(socket: &Path) -> (String, String) {
        for _ in 0..5 {
            raw_list(socket);
        }
        let ssh_add: Vec<Duration> = (0..SSH_ADD_RUNS)
            .map(|_| ssh_add_list(socket, Duration::from_secs(10)).unwrap())
            .collect();
        let raw: Vec<Duration> = (0..RAW_RUNS).map(|_| raw_list(socket)).collect();
        (percentiles(ssh_add), percentiles(raw))
    }

    /// What spawning a process that does nothing costs here.
    fn spawn_baseline() -> String {
        let t: Vec<Duration> = (0..SSH_ADD_RUNS)
            .map(|_| {
                let started = Instant::now();
                let status = Command::new("/bin/true").status().unwrap();
                assert!(status.success());
                started.elapsed()
            })
            .collect();
        percentiles(t)
    }

    /// The main run: latencies without idle connections, then with 1000 open, and the RSS.
    fn measure(subject: &Subject, key: &ssh_key::PrivateKey) {
        add(&subject.socket, key);
        let before = subject.rss_kib();
        let (ssh_add_0, raw_0) = latencies(&subject.socket);
        let held = idle(&subject.socket, IDLE);
        // Connections are accepted in order: once this is answered, all the idle ones were.
        ssh_add_list(&subject.socket, Duration::from_secs(10))
            .expect("ssh-add -l answered with the idle connections open");
        let with_idle = subject.rss_kib();
        let (ssh_add, raw) = latencies(&subject.socket);
        let after = subject.rss_kib();
        println!("{}:", subject.name);
        println!("  ssh-add -l, no idle       {ssh_add_0}");
        println!("  ssh-add -l, {IDLE} idle    {ssh_add}");
        println!("  raw list, no idle         {raw_0}");
        println!("  raw list, {IDLE} idle      {raw}");
        println!(
            "  VmRSS                   {} before, {} with the idle connections, {} after the runs",
            mib(before),
            mib(with_idle),
            mib(after)
        );
        drop(held);
    }

    /// The 1024-descriptor run: more idle connections than descriptors, then one `ssh-add -l`.
    fn limited(subject: &Subject, key: &ssh_key::PrivateKey) {
        add(&subject.socket, key);
        let held = idle(&subject.socket, IDLE_LIMITED);
        // The first answer waits for the agent to accept the whole backlog ahead of it.
        let answer = ssh_add_list(&subject.socket, Duration::from_secs(5));
        let rss = subject.rss_kib();
        match answer {
            Some(t) => {
                println!(
                    "  {:<18} answered ssh-add -l in {:.3} ms with {IDLE_LIMITED} idle connections (VmRSS {})",
                    subject.name,
                    t.as_secs_f64() * 1e3,
                    mib(rss)
                );
                let then: Vec<Duration> = (0..SSH_ADD_RUNS)
                    .map(|_| ssh_add_list(&subject.socket, Duration::from_secs(5)).unwrap())
                    .collect();
                println!("  {:<18} then ssh-add -l {}", "", percentiles(then));
            }
            None => println!(
                "  {:<18} did NOT answer ssh-add -l within 5 s with {IDLE_LIMITED} idle connections (VmRSS {})",
                subject.name,
                mib(rss)
            ),
        }
        drop(held);
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().collect();
        if args.iter().any(|a| a == "--list") {
            println!("idle_connections: bench");
            return;
        }
        if let [_, flag, socket, n] = &args[..] {
            if flag == "--hold" {
                return hold(Path::new(socket), n.parse().unwrap());
            }
        }
        // Agents started without a limit inherit this one.
        let (_, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)
            .unwrap();
        println!("open-file limit of this process and of agents started without a limit: {hard}");

        let user = User::new();
        let sim = Sim::start(&user.dir, "key", &[]);
        let dev = sim.device();
        user.ok(&["token", "enroll", "--device", &dev]);
        let key = ssh_key::PrivateKey::random(&mut rand::thread_rng(), ssh_key::Algorithm::Ed25519)
            .unwrap();
        let dir = user.dir.join("s");
        auths_presence::secure_fs::ensure_private_dir(&dir).unwrap();
        println!("spawning /bin/true          {}", spawn_baseline());

        {
            let ours = start_ours(&user, &dev, &dir.join("auths.sock"), None);
            let openssh = start_openssh(&dir.join("openssh.sock"), None);
            if let Some(o) = &openssh {
                measure(o, &key);
            }
            measure(&ours, &key);
        }
        println!("under `ulimit -n {LIMIT}` (soft and hard), {IDLE_LIMITED} idle connections:");
        let ours = start_ours(&user, &dev, &dir.join("auths-limited.sock"), Some(LIMIT));
        let openssh = start_openssh(&dir.join("openssh-limited.sock"), Some(LIMIT));
        if let Some(o) = &openssh {
            limited(o, &key);
        }
        limited(&ours, &key);
    }
}

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    println!("idle_connections reads /proc: Linux only");
}
