//! clap definitions and dispatch.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use auths_presence::ctap::device::DeviceOptions;
use auths_presence::ctap::select::DeviceSelector;
use auths_presence::presence::policy::parse_duration;

mod agent;
mod audit;
mod demo;
mod doctor;
mod error;
mod git;
mod git_proof;
mod git_sign;
mod key;
mod os;
mod pin;
mod rules;
mod service;
mod sim;
mod token;

/// Result type of the command functions: any error, printed with its causes.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;

/// Exit code for success.
pub const EXIT_OK: i32 = 0;
/// Exit code for a failed command.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code for bad usage (clap uses 2 as well).
pub const EXIT_USAGE: i32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "auths",
    version,
    about = "An ssh-agent that signs only after a touch on your FIDO2 security key",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Enroll, list, remove and test security keys.
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Identity keys sealed by your security keys: generate, import, list, remove, rewrap, test.
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// Run a virtual security key (for demos, CI and tests; never mistaken for hardware).
    #[command(subcommand)]
    Sim(sim::SimCmd),
    /// The presence-gated ssh-agent.
    #[command(subcommand)]
    Agent(agent::AgentCmd),
    /// Receipts of every signature and denial.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// The whole idea in one command: a virtual key, the agent, touches and refusals.
    Demo,
    /// Check every part of the set-up (key, enrollment, agent, SSH_AUTH_SOCK, git, service)
    /// and say how to fix what is wrong.
    Doctor(doctor::DoctorArgs),
    /// Sign git commits and tags through the agent.
    #[command(subcommand)]
    Git(git::GitCmd),
    /// Print shell completions: auths completions bash > /etc/bash_completion.d/auths
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): auths man > auths.1 && man ./auths.1
    Man,
    /// The demo's "other process": ask the agent for an SSHSIG and print it (internal).
    #[command(name = "demo-sign", hide = true)]
    DemoSign {
        /// Agent socket.
        #[arg(long, value_name = "P")]
        socket: PathBuf,
        /// Public key file of the identity to sign with.
        #[arg(long, value_name = "PUB")]
        key: PathBuf,
        /// The message to sign.
        #[arg(long)]
        message: String,
    },
}

/// `--device` and `--touch-timeout`, shared by commands that use a key.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Which key: usb, usb:PATH, sim:SOCKET or windows [env: AUTHS_DEVICE; default usb].
    #[arg(long, value_name = "D")]
    pub device: Option<String>,
    /// How long to wait for a touch.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub touch_timeout: Duration,
}

impl DeviceArgs {
    /// The selector from `--device`, `AUTHS_DEVICE` or the default.
    pub fn selector(&self) -> Result<DeviceSelector, Box<dyn std::error::Error>> {
        Ok(match &self.device {
            Some(d) => d.parse()?,
            None => DeviceSelector::from_env()?,
        })
    }

    /// Device timeouts: the touch timeout is the transaction deadline.
    pub fn options(&self) -> DeviceOptions {
        DeviceOptions {
            deadline: self.touch_timeout,
            ..DeviceOptions::default()
        }
    }
}

/// `AUTHS_HOME`.
pub fn home() -> PathBuf {
    auths_presence::presence::home::auths_home()
}

/// Run the CLI; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    let result = match cli.command {
        Command::Token(c) => token::run(c),
        Command::Key(c) => key::run(c),
        Command::Sim(c) => sim::run(c),
        Command::Agent(c) => agent::run(c),
        Command::Audit(c) => audit::run(c),
        Command::Demo => demo::run(),
        Command::Doctor(a) => doctor::run(a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "auths", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            use clap::CommandFactory;
            let man = clap_mangen::Man::new(Cli::command());
            man.render(&mut std::io::stdout())
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
        }
        // ssh-keygen's exit code, unchanged (git reads it).
        Command::Git(git::GitCmd::Sign { args }) => return git_sign::run(args),
        Command::Git(c) => git::run(c),
        Command::DemoSign {
            socket,
            key,
            message,
        } => demo::sign_helper(&socket, &key, &message),
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            for line in error::report(e.as_ref()) {
                eprintln!("{line}");
            }
            EXIT_FAILURE
        }
    }
}
