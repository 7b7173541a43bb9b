//! `auths agent start|stop|status|env|lock|add|watch`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;

use auths_presence::agent::server::AgentConfig;
use auths_presence::agent::AgentError;
use auths_presence::agent::{client, server, watch};
use auths_presence::ctap::select::DeviceSelector;
use auths_presence::presence::enrollment::TokenStore;
use auths_presence::presence::notify::{self, Notifier};
use auths_presence::presence::pin_entry::{Askpass, NoPinSource};
use auths_presence::presence::pinentry::Pinentry;
use auths_presence::presence::policy::{parse_duration, Policy};
use auths_presence::presence::presence_gate::{
    GateConfig, PresenceGate, SelectorOpener, UserVerification,
};
use auths_presence::presence::prompt::{escape_control, Prompter};
use auths_presence::presence::rules::{RulesHolder, RULES_FILE};
use auths_presence::presence::sealed::SealedStore;
use auths_presence::text::{env_line, pid_line};

use super::{home, os, CliResult, DeviceArgs};

#[derive(Subcommand, Debug)]
pub enum AgentCmd {
    /// Start the agent (in the background unless --foreground) and print the SSH_AUTH_SOCK line.
    Start(StartArgs),
    /// Stop the running agent (its keys are wiped).
    Stop {
        /// Agent socket.
        #[arg(long, value_name = "P")]
        socket: Option<PathBuf>,
    },
    /// Is the agent running, how many keys does it hold, which keys are enrolled.
    Status {
        /// Agent socket.
        #[arg(long, value_name = "P")]
        socket: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the shell line that points ssh/git at the agent: eval "$(auths agent env)".
    Env {
        /// Agent socket.
        #[arg(long, value_name = "P")]
        socket: Option<PathBuf>,
    },
    /// Wipe every key from the agent now.
    Lock {
        /// Agent socket.
        #[arg(long, value_name = "P")]
        socket: Option<PathBuf>,
    },
    /// Have the agent read and add a key file: an OpenSSH private key, or a sealed key. The
    /// agent is sent the path, not the key; it asks an encrypted key's passphrase through
    /// its own askpass (AUTHS_ASKPASS) or pinentry.
    Add {
        /// The key file.
        keyfile: PathBuf,
        /// Agent socket.
        #[arg(long, value_name = "P")]
        socket: Option<PathBuf>,
        /// Drop the key after this long (e.g. 1h).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        lifetime: Option<Duration>,
    },
    /// Stream pending approvals and outcomes (a touch detector for status bars).
    Watch {
        /// Agent socket.
        #[arg(long, value_name = "P")]
        socket: Option<PathBuf>,
        /// Print raw JSON events, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Start the agent at login: a systemd user unit (Linux) or a launchd agent (macOS).
    InstallService {
        /// Only print the service file and the commands that would enable it.
        #[arg(long)]
        print: bool,
        /// Print the file for this service manager instead of this platform's (with --print).
        #[arg(long, value_enum, value_name = "M")]
        manager: Option<super::service::ServiceManager>,
        /// The service agent's policy (see `auths agent start --policy`).
        #[arg(long, value_name = "POLICY")]
        policy: Option<String>,
        /// The service agent's key (see `auths agent start --device`) [env: AUTHS_DEVICE].
        #[arg(long, value_name = "D")]
        device: Option<String>,
        /// The service agent's user verification (see `auths agent start --uv`).
        #[arg(long, value_enum)]
        uv: Option<UvArg>,
        /// The service agent's desktop notifications (see `auths agent start --notify`).
        #[arg(long, value_enum)]
        notify: Option<NotifyArg>,
        /// The service agent's caller rules file (see `auths agent start --rules`), checked now.
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// The service agent refuses to start unless every enrolled key is attested.
        #[arg(long)]
        require_attested: bool,
    },
    /// Stop the agent service and remove its file.
    UninstallService,
    /// Read the caller rules file again (SIGHUP does the same); a file that does not parse,
    /// or that others may write, keeps the rules in force.
    Reload {
        /// Agent socket.
        #[arg(long, value_name = "P")]
        socket: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List the caller rules in force; `rules test` says which rule a request would match.
    Rules(super::rules::RulesArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct StartArgs {
    /// Stay in the foreground; prompts go to this terminal.
    #[arg(long)]
    foreground: bool,
    /// Agent socket [default: $AUTHS_HOME/agent.sock].
    #[arg(long, value_name = "P")]
    socket: Option<PathBuf>,
    /// per-signature | batch:N:T[:scope] | per-peer:T[:scope]; scopes: process, parent, session, user.
    #[arg(long, default_value = "per-signature")]
    policy: Policy,
    /// Wipe keys after this long without a signature.
    #[arg(long, value_name = "D", default_value = "30m", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Wipe keys this long after they were added, whatever happens.
    #[arg(long, value_name = "D", default_value = "4h", value_parser = parse_duration)]
    max_unlock: Duration,
    /// Wipe keys after this many signatures.
    #[arg(long, value_name = "N")]
    max_signatures: Option<u64>,
    /// required: every touch also verifies you (the key's PIN, from AUTHS_ASKPASS, or its
    /// fingerprint); discouraged: only when the key demands it (alwaysUv).
    #[arg(long, value_enum, default_value_t = UvArg::Discouraged)]
    uv: UvArg,
    /// A pinentry program (pinentry-gnome3, -curses, -mac, -w32) to ask for the key's PIN,
    /// when AUTHS_ASKPASS is not set.
    #[arg(long, value_name = "PROG", env = "AUTHS_PINENTRY")]
    pinentry: Option<PathBuf>,
    /// Refuse to start unless every enrolled key is attested: its attestation statement,
    /// checked again now, chains to a bundled vendor root.
    #[arg(long)]
    require_attested: bool,
    /// Caller rules: which programs may ask at all, under which policy [default:
    /// $AUTHS_HOME/rules.toml when it exists; without one every program may ask].
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Show a desktop notification while the key waits for a touch or its PIN, withdrawn when
    /// the request is decided [default: on when a desktop session is found].
    #[arg(long, value_enum)]
    notify: Option<NotifyArg>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// `--uv`: when the key verifies the user besides the touch.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum UvArg {
    /// Only when the key demands it (alwaysUv).
    Discouraged,
    /// On every touch.
    Required,
}

/// `--notify`: desktop notifications of touch and PIN waits.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyArg {
    /// Notify.
    On,
    /// Do not.
    Off,
}

impl NotifyArg {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            NotifyArg::On => "on",
            NotifyArg::Off => "off",
        }
    }
}

impl UvArg {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            UvArg::Discouraged => "discouraged",
            UvArg::Required => "required",
        }
    }
}

/// `$AUTHS_HOME/agent.sock`; on Windows the named pipe `\\.\pipe\auths-agent-<user>`.
pub fn default_socket() -> PathBuf {
    if auths_presence::platform::WINDOWS {
        let user = std::env::var("USERNAME").unwrap_or_default();
        PathBuf::from(server::default_pipe_name(&user))
    } else {
        home().join("agent.sock")
    }
}

pub(super) fn socket_or_default(s: Option<PathBuf>) -> PathBuf {
    s.or_else(|| std::env::var_os("AUTHS_AGENT_SOCK").map(PathBuf::from))
        .unwrap_or_else(default_socket)
}

/// `<socket>.pid`; for a Windows pipe `$AUTHS_HOME/<pipe name>.pid` (a pipe name is no
/// directory to put a file in).
pub(super) fn pid_path(socket: &Path) -> PathBuf {
    let s = socket.to_string_lossy();
    if server::is_pipe_name(&s) {
        let name = &s[server::PIPE_PREFIX.len()..];
        return home().join(format!("{name}.pid"));
    }
    let mut p = socket.as_os_str().to_owned();
    p.push(".pid");
    PathBuf::from(p)
}

pub fn run(cmd: AgentCmd) -> CliResult {
    match cmd {
        AgentCmd::Start(args) => start(args),
        AgentCmd::Stop { socket } => os::stop(&socket_or_default(socket)),
        AgentCmd::Status { socket, json } => status(&socket_or_default(socket), json),
        AgentCmd::Env { socket } => {
            print_env(&socket_or_default(socket));
            Ok(())
        }
        AgentCmd::Lock { socket } => {
            let socket = socket_or_default(socket);
            client::wipe(&socket)?;
            eprintln!("agent at {} locked: every key wiped", socket.display());
            Ok(())
        }
        AgentCmd::Add {
            keyfile,
            socket,
            lifetime,
        } => add(&keyfile, &socket_or_default(socket), lifetime),
        AgentCmd::Watch { socket, json } => watch_cmd(&socket_or_default(socket), json),
        AgentCmd::InstallService {
            print,
            manager,
            policy,
            device,
            uv,
            notify,
            rules,
            require_attested,
        } => super::service::install(
            print,
            manager,
            super::service::ServiceFlags {
                policy,
                device,
                uv,
                notify,
                rules: rules.map(absolute),
                require_attested,
            },
        ),
        AgentCmd::UninstallService => super::service::uninstall(),
        AgentCmd::Reload { socket, json } => super::rules::reload(&socket_or_default(socket), json),
        AgentCmd::Rules(args) => super::rules::run(args),
    }
}

fn print_env(socket: &Path) {
    println!(
        "{}",
        env_line(
            &socket.display().to_string(),
            auths_presence::platform::WINDOWS,
        )
    );
    if auths_presence::platform::WINDOWS {
        eprintln!("(cmd.exe: set SSH_AUTH_SOCK={})", socket.display());
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

fn start(args: StartArgs) -> CliResult {
    let home = home();
    let socket = absolute(socket_or_default(args.socket.clone()));
    // Refuse early, in the caller's terminal, when nothing is enrolled.
    let store = TokenStore::open(&home)?;
    let tokens = store.list()?;
    if tokens.is_empty() {
        return Err("no security key is enrolled, so nothing could approve a signature; enroll one first:\n  auths token enroll            (a real key)\n  auths token enroll --device sim:SOCKET   (the virtual key, for trying it out)".into());
    }
    if args.require_attested {
        require_attested(&tokens)?;
    }
    if args.foreground {
        return run_foreground(args, socket, home);
    }
    start_background(&args, &socket, &home)
}

/// `--require-attested`: every enrolled key (the gate accepts any of them) must earn the
/// verdict `attested` again now, from the statement its enrollment stored (tokens.json is
/// the user's file: its verdict is not taken on trust).
fn require_attested(tokens: &[auths_presence::presence::enrollment::Enrollment]) -> CliResult {
    use auths_presence::presence::attestation::{reverify, Trust, Verdict};
    use auths_presence::presence::prompt::escape_control;
    let trust = Trust::bundled();
    let mut refused = Vec::new();
    for t in tokens {
        let earned = reverify(
            &t.attestation,
            &t.credential_id,
            &t.public_key_cose,
            t.virtual_key,
            &trust,
        );
        if earned != Verdict::Attested {
            let stored = t.attestation.verdict;
            let note = if stored == Verdict::Attested {
                format!("recorded as attested, but its stored statement no longer verifies to a bundled root: {earned}")
            } else {
                earned.to_string()
            };
            refused.push(format!(
                "  {} ({}): {note}",
                escape_control(&t.id),
                escape_control(&t.label)
            ));
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(format!(
        "--require-attested: refusing to gate on keys that are not attested:\n{}\nremove them (`auths token remove ID`) and enroll a key whose attestation chains to a bundled vendor root, or start without --require-attested",
        refused.join("\n")
    )
    .into())
}

fn start_background(args: &StartArgs, socket: &Path, home: &Path) -> CliResult {
    // An agent already answering there would make the wait below succeed at once, for a child
    // that then fails: refuse here, with the reason.
    if client::is_listening(socket) {
        return Err(AgentError::AlreadyRunning(socket.to_path_buf()).into());
    }
    let exe = std::env::current_exe()?;
    let log_path = home.join("agent.log");
    let log = auths_presence::secure_fs::open_private_append(&log_path)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("agent")
        .arg("start")
        .arg("--foreground")
        .arg("--socket")
        .arg(socket)
        .arg("--policy")
        .arg(args.policy.to_string())
        .arg("--idle-timeout")
        .arg(format!("{}s", args.idle_timeout.as_secs()))
        .arg("--max-unlock")
        .arg(format!("{}s", args.max_unlock.as_secs()))
        .arg("--touch-timeout")
        .arg(format!("{}s", args.device.touch_timeout.as_secs().max(1)))
        .arg("--uv")
        .arg(args.uv.name());
    if let Some(p) = &args.pinentry {
        cmd.arg("--pinentry").arg(p);
    }
    if args.require_attested {
        cmd.arg("--require-attested");
    }
    if let Some(r) = &args.rules {
        cmd.arg("--rules").arg(absolute(r.clone()));
    }
    if let Some(n) = args.notify {
        cmd.arg("--notify").arg(n.name());
    }
    if let Some(n) = args.max_signatures {
        cmd.arg("--max-signatures").arg(n.to_string());
    }
    if let Some(d) = &args.device.device {
        cmd.arg("--device").arg(d);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    os::detach(&mut cmd);
    let mut child = cmd.spawn()?;
    // Wait (bounded) until the agent answers, or report why it did not.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if client::is_listening(socket) {
            break;
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = log.lines().rev().take(3).collect::<Vec<_>>();
            let last: Vec<&str> = last.into_iter().rev().collect();
            return Err(format!(
                "the agent exited at start ({status}):\n  {}\n(full log: {})",
                last.join("\n  "),
                log_path.display()
            )
            .into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the agent did not start listening within 10 s; see {}",
                log_path.display()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    print_env(socket);
    println!(
        "{}",
        pid_line(child.id(), auths_presence::platform::WINDOWS)
    );
    Ok(())
}

fn run_foreground(args: StartArgs, socket: PathBuf, home: PathBuf) -> CliResult {
    server::harden_process()?;
    let selector = args.device.selector()?;
    let virtual_warning = matches!(selector, DeviceSelector::Sim(_));
    let prompter = Prompter::new(true);
    let gate = PresenceGate::new(GateConfig {
        home: home.clone(),
        // The key's channel stays open between approvals (reopened when it is gone).
        opener: Box::new(auths_presence::presence::key_channel::CachedOpener::new(
            SelectorOpener {
                selector: selector.clone(),
                options: args.device.options(),
            },
        )),
        policy: args.policy,
        touch_timeout: args.device.touch_timeout,
        prompter: prompter.clone(),
        clock: None,
        uv: match args.uv {
            UvArg::Discouraged => UserVerification::Discouraged,
            UvArg::Required => UserVerification::Required,
        },
        // The agent has no terminal: PINs come from AUTHS_ASKPASS or not at all.
        pins: match (Askpass::from_env(), &args.pinentry) {
            (Some(a), _) => Box::new(a),
            (None, Some(p)) => Box::new(Pinentry::new(p)),
            (None, None) => Box::new(NoPinSource),
        },
    })?;
    // Caller rules: read now, so a file that does not parse stops the start with its reason.
    let rules = Arc::new(RulesHolder::new(
        args.rules
            .clone()
            .map_or_else(|| home.join(RULES_FILE), absolute),
        args.rules.is_some(),
    ));
    let loaded = rules
        .reload()
        .map_err(|e| format!("the caller rules were not loaded: {e}"))?;
    eprintln!("auths agent: {loaded}");
    let gate = gate.with_rules(Arc::clone(&rules));
    let enrolled = TokenStore::open(&home)?.list()?;
    if virtual_warning || enrolled.iter().any(|t| t.virtual_key) {
        eprintln!("WARNING: the agent gates on a VIRTUAL security key: anyone who can run `auths sim touch` approves. Use it for demos and tests only.");
    }
    // Sealed identity keys are listed at once; none is opened before its first signature.
    let (sealed_keys, unreadable) = SealedStore::new(&home).load_all();
    for e in &unreadable {
        eprintln!(
            "auths agent: a sealed key was left out: {}",
            escape_control(&auths_presence::presence::error_chain(e))
        );
    }
    if !sealed_keys.is_empty() {
        eprintln!(
            "auths agent: {} sealed key(s) listed; each opens with the touch that approves its first signature",
            sealed_keys.len()
        );
    }
    let config = AgentConfig {
        sealed_keys,
        sealed_dir: Some(home.join(auths_presence::presence::sealed::KEYS_DIR)),
        max_signatures: args.max_signatures,
        idle_timeout: args.idle_timeout,
        max_unlock: args.max_unlock,
        ..AgentConfig::new(socket.clone())
    };
    let notify = args
        .notify
        .map_or_else(notify::desktop_session_found, |n| n == NotifyArg::On);
    eprintln!(
        "touch notifications: {}",
        if notify {
            "on"
        } else {
            "off (--notify on to show them)"
        }
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let pid_file = pid_path(&socket);
    let result = rt.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tokio::spawn(async move {
            os::wait_for_stop_signal().await;
            let _ = stop_tx.send(true);
        });
        os::on_reload_signal(move || match rules.reload() {
            Ok(loaded) => eprintln!("auths agent: SIGHUP: {loaded}"),
            Err(e) => eprintln!(
                "auths agent: SIGHUP: the caller rules were not reloaded, the rules in force \
                 stay: {}",
                escape_control(&auths_presence::presence::error_chain(&e))
            ),
        });
        // Subscribed (and, on Linux, connected to the session bus) before anyone is served.
        if notify {
            Notifier::spawn(
                &prompter,
                notify::Platform::connect_now(),
                notify::Options {
                    wait_expiry: args.device.touch_timeout + Duration::from_secs(30),
                },
            );
        }
        let watch_sock = watch::watch_path(&socket);
        let w = tokio::spawn({
            let rx = stop_rx.clone();
            let prompter = prompter.clone();
            async move { watch::serve(&watch_sock, prompter, stopped(rx)).await }
        });
        eprintln!(
            "auths agent listening on {} (policy {}, device {selector}, touch timeout {}s)",
            socket.display(),
            args.policy,
            args.device.touch_timeout.as_secs()
        );
        let _ = auths_presence::secure_fs::atomic_write(
            &pid_file,
            std::process::id().to_string().as_bytes(),
        );
        let r =
            server::serve_with_prompter(config, Arc::new(gate), Some(prompter), stopped(stop_rx))
                .await;
        let _ = w.await;
        let _ = std::fs::remove_file(&pid_file);
        r
    });
    result?;
    eprintln!("auths agent stopped; keys wiped");
    Ok(())
}

pub(super) fn read_pid(socket: &Path) -> Result<u32, Box<dyn std::error::Error>> {
    let pid_file = pid_path(socket);
    std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            format!(
                "no agent pid file at {}; is an agent running on {}?",
                pid_file.display(),
                socket.display()
            )
            .into()
        })
}

fn status(socket: &Path, json: bool) -> CliResult {
    use ssh_agent_lib::proto::{Request, Response};
    let identities =
        match client::request(socket, &Request::RequestIdentities, Duration::from_secs(5)) {
            Ok(Response::IdentitiesAnswer(ids)) => Some(ids.len()),
            _ => None,
        };
    // `None` when no agent answers, or one from before the status extension.
    let status = identities.and_then(|_| client::status(socket).ok());
    let replaced = status.as_ref().map(|s| s.socket_replaced.clone());
    let pid = std::fs::read_to_string(pid_path(socket))
        .ok()
        .map(|s| s.trim().to_owned());
    let tokens = TokenStore::open(&home())?.list()?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "running": identities.is_some(),
                "socket": socket.display().to_string(),
                "pid": pid,
                "identities": identities,
                "sealed_keys": status.as_ref().map(|s| s.sealed),
                "sealed_keys_open": status.as_ref().map(|s| s.sealed_open),
                "enrolled_keys": tokens.len(),
                "virtual_keys_enrolled": tokens.iter().filter(|t| t.virtual_key).count(),
                "socket_replaced": replaced.as_ref().map(Option::is_some),
                "replaced_socket": replaced.as_ref().and_then(|r| r.as_deref()),
            })
        );
        return Ok(());
    }
    match identities {
        Some(n) => println!(
            "agent running on {} (pid {}), holding {n} key(s)",
            socket.display(),
            pid.as_deref().unwrap_or("unknown")
        ),
        None => println!("no agent answers on {}", socket.display()),
    }
    if let Some(s) = status.as_ref().filter(|s| s.sealed > 0) {
        println!(
            "{} of them sealed, {} open now (a sealed key opens with the touch that approves its first signature, and closes when the unlock window ends)",
            s.sealed, s.sealed_open
        );
    }
    println!("{} security key(s) enrolled", tokens.len());
    if identities.is_none() {
        return Err("the agent is not running; start it with `auths agent start`".into());
    }
    if let Some(Some(path)) = replaced {
        // The agent escaped the path; escaped again, as this is a terminal.
        return Err(socket_replaced_message(&escape_control(&path)).into());
    }
    Ok(())
}

/// What happened to a moved socket, and what to do.
fn socket_replaced_message(path: &str) -> String {
    format!(
        "the agent's socket {path} was moved aside or replaced while it ran, so the agent wiped \
         every key it held. A process running as you may sit at that path relaying to the agent \
         and capturing keys added through it.\n\
         Stop the agent (`auths agent stop`), find out which process moved the socket (`lsof` or \
         `fuser` on the path), then start the agent again."
    )
}

fn add(keyfile: &Path, socket: &Path, lifetime: Option<Duration>) -> CliResult {
    // The agent reads the file itself and asks an encrypted key's passphrase through its own
    // askpass or pinentry: neither crosses the socket, which a process running as you could
    // proxy. (`ssh-add` still sends the key, for those who want it.)
    let path = std::fs::canonicalize(keyfile)
        .map_err(|e| format!("cannot find {}: {e}", keyfile.display()))?;
    let lifetime = lifetime.map_or(0, |l| u32::try_from(l.as_secs()).unwrap_or(u32::MAX));
    let answer = client::add_file(socket, &path, lifetime).map_err(|e| {
        format!(
            "the agent at {} did not take {}: {e} (is it running? `auths agent status`)",
            socket.display(),
            keyfile.display()
        )
    })?;
    if answer.added {
        eprintln!("{}", answer.message);
        Ok(())
    } else {
        Err(format!(
            "the agent did not add {}: {}",
            keyfile.display(),
            answer.message
        )
        .into())
    }
}

fn watch_cmd(socket: &Path, json: bool) -> CliResult {
    use std::io::BufRead;
    let path = watch::watch_path(socket);
    let stream = client::connect_watch(socket).map_err(|e| {
        format!(
            "no agent to watch at {} ({e}); start one with `auths agent start`",
            path.display()
        )
    })?;
    let mut lines = std::io::BufReader::new(stream).lines();
    // The agent's first line says whether it took this watcher; from then on no event is
    // missed, so only then is "watching" announced.
    let first = match lines.next() {
        Some(line) => line?,
        None => return Err(format!("the agent at {} closed the watch", path.display()).into()),
    };
    let greeting: serde_json::Value = serde_json::from_str(&first)?;
    let pending_first = match greeting["event"].as_str() {
        Some("watching") => None,
        Some("refused") => {
            return Err(format!(
                "the agent refused this watcher: {}",
                escape_control(greeting["reason"].as_str().unwrap_or("?"))
            )
            .into())
        }
        // An agent from before the greeting: the first line is an event.
        _ => Some(Ok(first)),
    };
    eprintln!("watching {} (Ctrl-C to stop)", socket.display());
    for line in pending_first.into_iter().chain(lines) {
        let line = line?;
        if json {
            println!("{line}");
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)?;
        // Escaped again here: the text names peers, and this is a terminal.
        let text = |key: &str| escape_control(v[key].as_str().unwrap_or("?"));
        let id = text("id");
        match v["event"].as_str() {
            Some("requested") => println!("[{id}] {}", text("message")),
            Some("pending") => println!("[{id}] {}", text("message")),
            Some("approved") => println!("[{id}] approved by touch"),
            Some("granted") => println!(
                "[{id}] approved under grant {} ({} left)",
                text("grant_of"),
                v["remaining"]
            ),
            Some("denied") => println!("[{id}] refused: {}", text("reason")),
            Some("rule_denied") => println!("[{id}] {} (no touch asked)", text("reason")),
            Some("key_busy") => println!("[{id}] {}", text("message")),
            Some("pin_needed") => println!("[{id}] {}", text("message")),
            Some("socket_replaced") => {
                println!("{}", socket_replaced_message(&text("path")))
            }
            Some("contention") => println!(
                "two programs asked for a touch at once: {} and {}; both refused",
                text("first"),
                text("second")
            ),
            _ => println!("{}", escape_control(&line)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_of_a_pipe_lives_in_auths_home() {
        assert_eq!(
            pid_path(Path::new("/run/a/agent.sock")),
            PathBuf::from("/run/a/agent.sock.pid")
        );
        assert_eq!(
            pid_path(Path::new(r"\\.\pipe\auths-agent-alice")),
            home().join("auths-agent-alice.pid")
        );
    }
}
