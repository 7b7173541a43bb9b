//! `auths doctor [--json]`: each part of a working set-up checked, with a verdict and the fix.
//!
//! Checks: `AUTHS_HOME` is private; keys are enrolled; a security key answers (its PIN and
//! alwaysUv state) and holds an enrolled credential (asked silently, no touch); the agent
//! answers on its socket, the socket is still its own, and `SSH_AUTH_SOCK` points at it; in a
//! git repository, git signs through it; the service file, when one is installed. Exit 0 only
//! when no check failed (a warning is not a failure).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use auths_presence::agent::client;
use auths_presence::presence::enrollment::TokenStore;
use auths_presence::presence::prompt::escape_control;

use super::{CliResult, DeviceArgs};

/// `auths doctor` options.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Machine-readable output: one JSON object with every check.
    #[arg(long)]
    json: bool,
    /// Agent socket [default: $AUTHS_HOME/agent.sock, or $AUTHS_AGENT_SOCK].
    #[arg(long, value_name = "P")]
    socket: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    Ok,
    Warn,
    Fail,
    /// Does not apply here (no repository, no service installed).
    Skip,
}

/// One check's result.
#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    verdict: Verdict,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn check(check: &'static str, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        check,
        verdict,
        detail: detail.into(),
        fix: None,
    }
}

impl Check {
    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

fn home_check(home: &Path) -> Check {
    match auths_presence::secure_fs::check_private(home, true) {
        Ok(()) => check(
            "auths_home",
            Verdict::Ok,
            format!("{} is private", home.display()),
        ),
        Err(e) => check("auths_home", Verdict::Fail, escape_control(&e.to_string()))
            .fix(format!("chmod 700 {} (and make it yours)", home.display())),
    }
}

fn enrolled_check(home: &Path) -> (Check, Vec<auths_presence::presence::enrollment::Enrollment>) {
    match TokenStore::open(home).and_then(|s| s.list()) {
        Ok(list) if list.is_empty() => (
            check(
                "enrolled_keys",
                Verdict::Fail,
                "no security key is enrolled",
            )
            .fix("auths token enroll"),
            list,
        ),
        Ok(list) => {
            let virtual_only = list.iter().all(|t| t.virtual_key);
            let labels: Vec<String> = list.iter().map(|t| escape_control(&t.label)).collect();
            let c = check(
                "enrolled_keys",
                if virtual_only {
                    Verdict::Warn
                } else {
                    Verdict::Ok
                },
                format!("{} enrolled: {}", list.len(), labels.join(", ")),
            );
            let c = if virtual_only {
                c.fix("only virtual keys are enrolled: enroll a hardware key with `auths token enroll`")
            } else {
                c
            };
            (c, list)
        }
        Err(e) => (
            check(
                "enrolled_keys",
                Verdict::Fail,
                escape_control(&e.to_string()),
            )
            .fix("restore tokens.json from a backup, or move it away and enroll again"),
            Vec::new(),
        ),
    }
}

/// The key: it answers getInfo (PIN and alwaysUv state), and holds an enrolled credential,
/// which it is asked silently (`up: false`, no touch).
fn key_checks(
    device: &DeviceArgs,
    enrolled: &[auths_presence::presence::enrollment::Enrollment],
) -> Vec<Check> {
    use auths_presence::ctap::select::{self, DeviceSelector};
    let selector = match device.selector() {
        Ok(s) => s,
        Err(e) => {
            return vec![check(
                "security_key",
                Verdict::Fail,
                escape_control(&e.to_string()),
            )
            .fix("pass --device usb, usb:PATH or sim:SOCKET")]
        }
    };
    if selector == DeviceSelector::Windows {
        return vec![check(
            "security_key",
            Verdict::Skip,
            "webauthn.dll shows the key in its own dialog; `auths token test` tries it",
        )];
    }
    let opts = auths_presence::ctap::device::DeviceOptions {
        deadline: Duration::from_secs(5),
        ..device.options()
    };
    let mut key = match select::open(&selector, opts, &mut |_| {}) {
        Ok(k) => k,
        Err(e) => {
            let c = check(
                "security_key",
                Verdict::Fail,
                escape_control(&e.to_string()),
            );
            return vec![match super::error::hint(&e) {
                Some(h) => c.fix(h),
                None => c,
            }];
        }
    };
    let info = &key.info;
    let mut state = Vec::new();
    match info.option("clientPin") {
        Some(true) => state.push("PIN set"),
        Some(false) => state.push("no PIN"),
        None => {}
    }
    if info.option("alwaysUv") == Some(true) {
        state.push("alwaysUv (the agent asks for the PIN once per unlock window)");
    }
    let mut checks = vec![check(
        "security_key",
        Verdict::Ok,
        format!(
            "{} answers ({}){}",
            escape_control(&key.description),
            info.versions.join(", "),
            if state.is_empty() {
                String::new()
            } else {
                format!("; {}", state.join(", "))
            }
        ),
    )];
    let Some(rp_id) = enrolled.first().map(|e| e.rp_id.clone()) else {
        return checks;
    };
    let ids: Vec<&[u8]> = enrolled
        .iter()
        .filter(|e| e.rp_id == rp_id)
        .map(|e| e.credential_id.as_slice())
        .collect();
    let max = info
        .max_credential_count_in_list
        .and_then(|m| usize::try_from(m).ok())
        .filter(|m| *m > 0)
        .unwrap_or(ids.len().max(1));
    checks.push(match key.device.find_credential(&rp_id, &ids, max, None) {
        Ok(Some(id)) => {
            let label = enrolled
                .iter()
                .find(|e| e.credential_id == id)
                .map(|e| escape_control(&e.label))
                .unwrap_or_default();
            check(
                "enrolled_key_plugged_in",
                Verdict::Ok,
                format!("the key holds the enrolled credential {label:?}"),
            )
        }
        Ok(None) => check(
            "enrolled_key_plugged_in",
            Verdict::Fail,
            "the plugged-in key holds none of the enrolled credentials",
        )
        .fix("plug in an enrolled key, or enroll this one with `auths token enroll`"),
        Err(e) => check(
            "enrolled_key_plugged_in",
            Verdict::Warn,
            format!(
                "could not ask the key silently ({}); `auths token test` asks with a touch",
                escape_control(&e.to_string())
            ),
        ),
    });
    checks
}

fn agent_checks(socket: &Path) -> Vec<Check> {
    let mut checks = Vec::new();
    let status = client::status(socket);
    match &status {
        Ok(s) => {
            checks.push(check(
                "agent",
                Verdict::Ok,
                format!("the agent answers on {}", socket.display()),
            ));
            if let Some(path) = &s.socket_replaced {
                checks.push(
                    check(
                        "agent_socket",
                        Verdict::Fail,
                        format!("the agent's socket {path} was moved aside or replaced; it wiped its keys"),
                    )
                    .fix("stop the agent (`auths agent stop`), find who moved the socket, start it again"),
                );
            }
        }
        Err(e) => checks.push(
            check(
                "agent",
                Verdict::Fail,
                format!(
                    "no agent answers on {} ({})",
                    socket.display(),
                    escape_control(&e.to_string())
                ),
            )
            .fix("start it with `eval \"$(auths agent start)\"`, or `auths agent install-service`"),
        ),
    }
    let auth_sock = std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from);
    checks.push(match auth_sock {
        None => check("ssh_auth_sock", Verdict::Fail, "SSH_AUTH_SOCK is not set")
            .fix("eval \"$(auths agent env)\""),
        Some(p) if same_path(&p, socket) => check(
            "ssh_auth_sock",
            Verdict::Ok,
            "SSH_AUTH_SOCK points at this agent",
        ),
        Some(p) => check(
            "ssh_auth_sock",
            Verdict::Fail,
            format!(
                "SSH_AUTH_SOCK is {}, another agent: git and ssh would sign without a touch",
                escape_control(&p.display().to_string())
            ),
        )
        .fix("eval \"$(auths agent env)\" (in your shell's rc file too)"),
    });
    checks
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// git's signing configuration, when run inside a repository (or with a global one).
fn git_check() -> Check {
    let get = |key: &str| -> Option<String> {
        let out = std::process::Command::new("git")
            .args(["config", "--get", key])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let format = get("gpg.format");
    let key = get("user.signingkey");
    let sign = get("commit.gpgsign");
    if format.is_none() && key.is_none() && sign.is_none() {
        return check("git", Verdict::Skip, "git is not set up to sign here")
            .fix("auths git setup --global (or --repo PATH)");
    }
    let mut missing = Vec::new();
    if format.as_deref() != Some("ssh") {
        missing.push("gpg.format is not ssh");
    }
    if key.is_none() {
        missing.push("user.signingkey is not set");
    }
    if sign.as_deref() != Some("true") {
        missing.push("commit.gpgsign is not true");
    }
    match get("gpg.ssh.allowedSignersFile") {
        Some(f) if Path::new(&f).exists() => {}
        _ => missing.push("gpg.ssh.allowedSignersFile names no file (git cannot verify)"),
    }
    if missing.is_empty() {
        check(
            "git",
            Verdict::Ok,
            "git signs commits with an ssh key through the agent",
        )
    } else {
        check("git", Verdict::Warn, missing.join("; "))
            .fix("auths git setup --global (or --repo PATH)")
    }
}

fn service_check() -> Check {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let candidates: Vec<PathBuf> = home
        .iter()
        .flat_map(|h| {
            [
                h.join(".config/systemd/user")
                    .join(super::service::UNIT_NAME),
                h.join("Library/LaunchAgents")
                    .join(format!("{}.plist", super::service::LAUNCHD_LABEL)),
            ]
        })
        .collect();
    match candidates.iter().find(|p| p.exists()) {
        Some(p) => check(
            "service",
            Verdict::Ok,
            format!("the agent service is installed: {}", p.display()),
        ),
        None => check("service", Verdict::Skip, "no agent service is installed")
            .fix("auths agent install-service (starts the agent at login)"),
    }
}

/// `auths doctor`.
pub fn run(args: DoctorArgs) -> CliResult {
    let home = super::home();
    let socket = super::agent::socket_or_default(args.socket.clone());
    let mut checks = vec![home_check(&home)];
    let (enrolled, tokens) = enrolled_check(&home);
    checks.push(enrolled);
    checks.extend(key_checks(&args.device, &tokens));
    checks.extend(agent_checks(&socket));
    checks.push(git_check());
    checks.push(service_check());
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "ok": failed == 0, "checks": checks })
        );
    } else {
        for c in &checks {
            let mark = match c.verdict {
                Verdict::Ok => "ok  ",
                Verdict::Warn => "warn",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "--  ",
            };
            println!("{mark} {:<24} {}", c.check, c.detail);
            if let (Some(fix), Verdict::Fail | Verdict::Warn) = (&c.fix, c.verdict) {
                println!("     {:<24} fix: {fix}", "");
            }
        }
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} check(s) failed").into())
    }
}
