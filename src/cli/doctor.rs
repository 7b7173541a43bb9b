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

/// The sealed identity keys: each opens with an enrolled key, every enrolled key that can seal
/// opens it (a backup that cannot is found now, not when the main key is lost), and it is
/// sealed under the user-verified secret.
fn sealed_checks(
    home: &Path,
    tokens: &[auths_presence::presence::enrollment::Enrollment],
) -> Vec<Check> {
    use auths_presence::presence::sealed::SealedStore;
    let (keys, unreadable) = SealedStore::new(home).load_all();
    let mut checks: Vec<Check> = unreadable
        .iter()
        .map(|e| {
            check(
                "sealed_keys",
                Verdict::Fail,
                escape_control(&auths_presence::presence::error_chain(e)),
            )
            .fix("restore the file from a copy, or move it out of $AUTHS_HOME/keys")
        })
        .collect();
    if keys.is_empty() && checks.is_empty() {
        checks.push(check(
            "sealed_keys",
            Verdict::Skip,
            "no sealed identity key (`auths key generate` or `auths key import FILE` makes one)",
        ));
    }
    let name = |t: &auths_presence::presence::enrollment::Enrollment| {
        format!("{} ({})", t.id, escape_control(&t.label))
    };
    for k in &keys {
        let who = format!("sealed key {} ({})", k.id, escape_control(&k.label));
        let opens: Vec<_> = tokens
            .iter()
            .filter(|t| k.sealed_for().any(|c| c == t.credential_id))
            .collect();
        let missing: Vec<String> = tokens
            .iter()
            .filter(|t| t.hmac_secret && !k.sealed_for().any(|c| c == t.credential_id))
            .map(name)
            .collect();
        let c = if opens.is_empty() {
            check(
                "sealed_keys",
                Verdict::Fail,
                format!("{who}: no enrolled security key opens it"),
            )
            .fix("enroll again the security key it was sealed for, or restore tokens.json")
        } else if !missing.is_empty() {
            check(
                "sealed_keys",
                Verdict::Warn,
                format!(
                    "{who}: opens with {}, not with {}",
                    opens.iter().map(|t| name(t)).collect::<Vec<_>>().join(", "),
                    missing.join(", ")
                ),
            )
            .fix(format!(
                "plug in a key that opens it and the others, and run `auths key rewrap {}`",
                k.id
            ))
        } else if !k.uv {
            check(
                "sealed_keys",
                Verdict::Warn,
                format!("{who}: sealed under the touch-only secret, which a process running as you can derive while the key is plugged in"),
            )
            .fix("set a PIN on the security key, then seal the key again (`auths key import`)")
        } else {
            check(
                "sealed_keys",
                Verdict::Ok,
                format!(
                    "{who}: opens with every enrolled key that can seal, under the user-verified secret"
                ),
            )
        };
        checks.push(c);
    }
    checks
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
            #[allow(unused_mut)]
            let mut checks = vec![match super::error::hint(&e) {
                Some(h) => c.fix(h),
                None => c,
            }];
            // No key seen over USB: whether hidraw permissions or the udev rule are why.
            #[cfg(target_os = "linux")]
            if matches!(selector, DeviceSelector::Usb | DeviceSelector::UsbPath(_)) {
                let groups = nix::unistd::getgroups().unwrap_or_default();
                let mut gids: Vec<u32> = groups.iter().map(|g| g.as_raw()).collect();
                gids.push(nix::unistd::getegid().as_raw());
                let d = auths_presence::ctap::hidraw::diagnose(
                    Path::new("/"),
                    nix::unistd::geteuid().as_raw(),
                    &gids,
                );
                checks.push(hidraw_check(&d));
            }
            return checks;
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

/// The `hidraw` check: which hidraw devices are FIDO keys, whether this user can open them,
/// and which udev rule would let them in (Linux only; the tests run it everywhere).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn hidraw_check(d: &auths_presence::ctap::hidraw::Diagnosis) -> Check {
    use auths_presence::ctap::hidraw::{mode_string, Access, OUR_RULE};
    const INSTALL: &str = "sudo install -m 0644 udev/70-auths-fido.rules /etc/udev/rules.d/ && \
         sudo udevadm control --reload-rules && sudo udevadm trigger, then re-plug the key";
    if d.hidraw_devices == 0 {
        return check("hidraw", Verdict::Fail, "no /dev/hidraw* device at all")
            .fix("plug in the key (in a VM or container, pass the USB device through)");
    }
    if d.fido.is_empty() {
        return check(
            "hidraw",
            Verdict::Fail,
            format!(
                "none of the {} hidraw devices is a FIDO key (usage page 0xF1D0)",
                d.hidraw_devices
            ),
        )
        .fix("plug in the security key");
    }
    let name = |p: &Path| escape_control(&p.display().to_string());
    let describe = |f: &auths_presence::ctap::hidraw::FidoDevice| {
        let perms = f
            .mode
            .map(|(m, u, g)| format!("{} uid {u} gid {g}", mode_string(m)))
            .unwrap_or_else(|| "no device node".into());
        let why = match &f.access {
            Access::Yes => "you can open it".to_owned(),
            Access::Denied if f.owner_or_group => {
                "permission denied (though its mode lets you in)".to_owned()
            }
            Access::Denied => {
                "permission denied: you are neither its owner nor in its group, and no ACL \
                 (uaccess) lets you in"
                    .to_owned()
            }
            Access::Error(e) => format!("cannot open it: {}", escape_control(e)),
        };
        format!("{} is a FIDO key ({perms}): {why}", name(&f.path))
    };
    let detail = d.fido.iter().map(describe).collect::<Vec<_>>().join("; ");
    let rules = if d.rules.is_empty() {
        "no udev rule for FIDO keys is installed".to_owned()
    } else {
        format!(
            "udev rules: {}",
            d.rules
                .iter()
                .map(|p| name(p))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let detail = format!("{detail}; {rules}");
    if d.fido.iter().any(|f| f.access == Access::Yes) {
        return check("hidraw", Verdict::Warn, detail).fix(
            "the key can be opened, so another program may hold it: close browsers or \
             other FIDO tools, or pass --device usb:PATH",
        );
    }
    let ours = d
        .rules
        .iter()
        .any(|p| p.file_name().is_some_and(|n| n == OUR_RULE));
    let fix = if ours {
        "the rule lets the seat's user (uaccess) and the plugdev group in: re-plug the key; \
         over SSH or in WSL run `sudo usermod -aG plugdev $USER` and log in again"
            .to_owned()
    } else if d.rules.is_empty() {
        INSTALL.to_owned()
    } else {
        format!(
            "systemd's rule gives the key to the logged-in seat's user only; for SSH sessions and \
             WSL install ours: {INSTALL}, and `sudo usermod -aG plugdev $USER`"
        )
    };
    check("hidraw", Verdict::Fail, detail).fix(fix)
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
    checks.extend(sealed_checks(&home, &tokens));
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

#[cfg(test)]
mod tests {
    use super::*;
    use auths_presence::ctap::hidraw::{Access, Diagnosis, FidoDevice};

    fn fido(access: Access, owner_or_group: bool) -> FidoDevice {
        FidoDevice {
            path: PathBuf::from("/dev/hidraw3"),
            access,
            mode: Some((0o600, 0, 0)),
            owner_or_group,
        }
    }

    #[test]
    fn hidraw_diagnosis_names_the_cause_and_the_fix() {
        let none = hidraw_check(&Diagnosis::default());
        assert_eq!(none.verdict, Verdict::Fail);
        let keyboard = hidraw_check(&Diagnosis {
            hidraw_devices: 2,
            ..Diagnosis::default()
        });
        assert!(keyboard.detail.contains("none of the 2 hidraw devices"));
        // Denied, no rule: install ours.
        let denied = hidraw_check(&Diagnosis {
            hidraw_devices: 1,
            fido: vec![fido(Access::Denied, false)],
            rules: vec![],
        });
        assert_eq!(denied.verdict, Verdict::Fail);
        assert!(
            denied.detail.starts_with(
                "/dev/hidraw3 is a FIDO key (crw------- uid 0 gid 0): permission denied"
            ) && denied
                .detail
                .ends_with("no udev rule for FIDO keys is installed"),
            "{}",
            denied.detail
        );
        assert!(denied
            .fix
            .as_deref()
            .unwrap()
            .starts_with("sudo install -m 0644 udev/70-auths-fido.rules /etc/udev/rules.d/"));
        // Denied with our rule: the group, or re-plug.
        let ours = hidraw_check(&Diagnosis {
            hidraw_devices: 1,
            fido: vec![fido(Access::Denied, false)],
            rules: vec![PathBuf::from("/etc/udev/rules.d/70-auths-fido.rules")],
        });
        assert!(ours.fix.as_deref().unwrap().contains("usermod -aG plugdev"));
        // Only systemd's: ours for sessions without a seat.
        let systemd = hidraw_check(&Diagnosis {
            hidraw_devices: 1,
            fido: vec![fido(Access::Denied, false)],
            rules: vec![PathBuf::from("/usr/lib/udev/rules.d/60-fido-id.rules")],
        });
        assert!(systemd
            .fix
            .as_deref()
            .unwrap()
            .starts_with("systemd's rule"));
        // Openable: not a permission problem.
        let open = hidraw_check(&Diagnosis {
            hidraw_devices: 1,
            fido: vec![fido(Access::Yes, true)],
            rules: vec![],
        });
        assert_eq!(open.verdict, Verdict::Warn);
        // A hostile path is escaped.
        let mut evil = fido(Access::Denied, false);
        evil.path = PathBuf::from("/dev/hidraw\x1b[2J");
        let c = hidraw_check(&Diagnosis {
            hidraw_devices: 1,
            fido: vec![evil],
            rules: vec![],
        });
        assert!(!c.detail.contains('\x1b'));
    }
}
