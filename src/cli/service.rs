//! `auths agent install-service|uninstall-service`: start the agent at login.
//!
//! Linux: a systemd user unit (systemd.service(5), systemd.exec(5) `StandardOutput=append:`).
//! macOS: a launchd agent (launchd.plist(5)), loaded with `launchctl bootstrap gui/UID`.
//! The file texts are pure functions, compiled and tested everywhere; only installing them is
//! platform code. The agent runs in the foreground under the service manager and logs to
//! `$AUTHS_HOME/agent.log`.

use std::path::{Path, PathBuf};
use std::process::Command;

use auths_presence::text::{
    shell_line, systemd_env_assignment, systemd_exec_word, xml_escape, TextError,
};

use super::CliResult;

/// systemd unit name.
pub const UNIT_NAME: &str = "auths-agent.service";
/// launchd label (and plist file stem).
pub const LAUNCHD_LABEL: &str = "dev.auths.agent";

/// What the service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// This executable.
    pub exe: PathBuf,
    /// `AUTHS_HOME` of the agent (holds agent.sock, agent.log, tokens, audit log).
    pub home: PathBuf,
    /// More `auths agent start` options (`--policy`, `--device`), passed as they are.
    pub extra_args: Vec<String>,
}

impl ServiceSpec {
    fn log(&self) -> PathBuf {
        unix_join(&self.home, "agent.log")
    }

    fn socket(&self) -> PathBuf {
        unix_join(&self.home, "agent.sock")
    }
}

/// `dir/name` with a `/`, whatever this platform's separator: the unit and plist are for
/// systemd and launchd, even when printed on Windows (`--print --manager`).
fn unix_join(dir: &Path, name: &str) -> PathBuf {
    let mut p = dir.as_os_str().to_owned();
    if p.as_encoded_bytes().last() != Some(&b'/') {
        p.push("/");
    }
    p.push(name);
    PathBuf::from(p)
}

/// The systemd user unit.
pub fn systemd_unit(spec: &ServiceSpec) -> String {
    let exe = systemd_exec_word(&spec.exe.display().to_string());
    let socket = systemd_exec_word(&spec.socket().display().to_string());
    let home = systemd_env_assignment(&format!("AUTHS_HOME={}", spec.home.display()));
    // `append:` takes the path literally (no quoting); a space in it would break it, which
    // `install` refuses before writing the unit.
    let log = spec.log().display().to_string();
    let extra: String = spec
        .extra_args
        .iter()
        .flat_map(|a| [" ".to_owned(), systemd_exec_word(a)])
        .collect();
    format!(
        "# Written by `auths agent install-service`; remove with `auths agent uninstall-service`.
[Unit]
Description=auths presence-gated ssh-agent (signs only after a touch on your security key)
Documentation=man:auths(1)

[Service]
Type=simple
Environment={home}
ExecStart={exe} agent start --foreground --socket {socket}{extra}
Restart=on-failure
RestartSec=2
StandardOutput=append:{log}
StandardError=append:{log}

[Install]
WantedBy=default.target
"
    )
}

/// The launchd agent plist; refused when a path or argument holds a character XML cannot.
pub fn launchd_plist(spec: &ServiceSpec) -> Result<String, TextError> {
    let x = |p: &Path| xml_escape(&p.display().to_string());
    let mut extra = String::new();
    for a in &spec.extra_args {
        extra.push_str("\n    <string>");
        extra.push_str(&xml_escape(a)?);
        extra.push_str("</string>");
    }
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by `auths agent install-service`; remove with `auths agent uninstall-service`. -->
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>{LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
    <string>{exe}</string>
    <string>agent</string>
    <string>start</string>
    <string>--foreground</string>
    <string>--socket</string>
    <string>{socket}</string>{extra}
  </array>
  <key>EnvironmentVariables</key>
  <dict>
    <key>AUTHS_HOME</key>
    <string>{home}</string>
  </dict>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>StandardOutPath</key>
  <string>{log}</string>
  <key>StandardErrorPath</key>
  <string>{log}</string>
</dict>
</plist>
"#,
        exe = x(&spec.exe)?,
        socket = x(&spec.socket())?,
        home = x(&spec.home)?,
        log = x(&spec.log())?,
    ))
}

fn user_home() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
    // Windows sets no HOME; its profile folder stands in (for `--print --manager`).
    #[cfg(windows)]
    let home = home.or_else(|| std::env::var_os("USERPROFILE").filter(|h| !h.is_empty()));
    home.map(PathBuf::from)
        .ok_or_else(|| "HOME is not set, so there is no place for a user service file".into())
}

/// Where the service file goes, its text, and the commands that enable / disable it.
struct Plan {
    path: PathBuf,
    text: String,
    enable: Vec<Vec<String>>,
    disable: Vec<Vec<String>>,
}

fn words(s: &[&str]) -> Vec<String> {
    s.iter().map(|w| (*w).to_owned()).collect()
}

/// The service managers we can install into; this platform's is [`super::os::SERVICE_MANAGER`].
/// `install-service --print --manager M` prints another platform's file (e.g. a launchd plist
/// written on Linux for a Mac).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceManager {
    /// Linux: a systemd user unit.
    Systemd,
    /// macOS: a launchd agent.
    Launchd,
}

fn plan(
    spec: &ServiceSpec,
    manager: Option<ServiceManager>,
) -> Result<Plan, Box<dyn std::error::Error>> {
    match manager {
        Some(ServiceManager::Systemd) => systemd_plan(spec),
        Some(ServiceManager::Launchd) => launchd_plan(spec, super::os::uid()),
        None => Err("installing the agent as a service is supported on Linux (systemd) and macOS (launchd) only, not on this platform yet; run `auths agent start` at login instead".into()),
    }
}

fn systemd_plan(spec: &ServiceSpec) -> Result<Plan, Box<dyn std::error::Error>> {
    let dir = match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => user_home()?.join(".config"),
    };
    Ok(Plan {
        path: dir.join("systemd/user").join(UNIT_NAME),
        text: systemd_unit(spec),
        enable: vec![
            words(&["systemctl", "--user", "daemon-reload"]),
            words(&["systemctl", "--user", "enable", "--now", UNIT_NAME]),
        ],
        disable: vec![
            words(&["systemctl", "--user", "disable", "--now", UNIT_NAME]),
            words(&["systemctl", "--user", "daemon-reload"]),
        ],
    })
}

fn launchd_plan(spec: &ServiceSpec, uid: u32) -> Result<Plan, Box<dyn std::error::Error>> {
    let path = user_home()?
        .join("Library/LaunchAgents")
        .join(format!("{LAUNCHD_LABEL}.plist"));
    let domain = format!("gui/{uid}");
    Ok(Plan {
        text: launchd_plist(spec)?,
        enable: vec![vec![
            "launchctl".into(),
            "bootstrap".into(),
            domain.clone(),
            path.display().to_string(),
        ]],
        disable: vec![vec![
            "launchctl".into(),
            "bootout".into(),
            format!("{domain}/{LAUNCHD_LABEL}"),
        ]],
        path,
    })
}

/// Run each command; the first failure, described.
fn run_all(cmds: &[Vec<String>]) -> Result<(), String> {
    for c in cmds {
        let out = Command::new(&c[0])
            .args(&c[1..])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", c[0]))?;
        if !out.status.success() {
            return Err(format!(
                "`{}` failed: {}",
                shell_line(c),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// What the service agent is started with (`auths agent install-service` flags).
#[derive(Debug, Default)]
pub struct ServiceFlags {
    /// `--policy`.
    pub policy: Option<String>,
    /// `--device`.
    pub device: Option<String>,
    /// `--uv`.
    pub uv: Option<super::agent::UvArg>,
    /// `--notify`.
    pub notify: Option<super::agent::NotifyArg>,
    /// `--rules`, absolute.
    pub rules: Option<PathBuf>,
    /// `--require-attested`.
    pub require_attested: bool,
}

fn spec(flags: ServiceFlags) -> Result<ServiceSpec, Box<dyn std::error::Error>> {
    let ServiceFlags {
        policy,
        device,
        uv,
        notify,
        rules,
        require_attested,
    } = flags;
    let exe = std::env::current_exe()?;
    let home = super::home();
    let home = if home.is_absolute() {
        home
    } else {
        std::env::current_dir()?.join(home)
    };
    if home.display().to_string().contains(char::is_whitespace) {
        return Err(format!(
            "AUTHS_HOME {} contains a space, which a service's log path cannot hold; choose another AUTHS_HOME",
            home.display()
        )
        .into());
    }
    let mut extra_args = Vec::new();
    if let Some(p) = policy {
        // Refuse a bad policy now, not in a restart loop under the service manager.
        p.parse::<auths_presence::presence::policy::Policy>()?;
        extra_args.extend(["--policy".to_owned(), p]);
    }
    if let Some(d) = device.or_else(|| std::env::var("AUTHS_DEVICE").ok()) {
        d.parse::<auths_presence::ctap::select::DeviceSelector>()?;
        extra_args.extend(["--device".to_owned(), d]);
    }
    if let Some(uv) = uv {
        extra_args.extend(["--uv".to_owned(), uv.name().to_owned()]);
    }
    if let Some(n) = notify {
        extra_args.extend(["--notify".to_owned(), n.name().to_owned()]);
    }
    if let Some(r) = rules {
        // A file the agent would refuse is refused now, not in a restart loop.
        auths_presence::presence::rules::Rules::load(&r)
            .map_err(|e| format!("the caller rules file {}: {e}", r.display()))?;
        let r = r.display().to_string();
        if r.contains(char::is_whitespace) {
            return Err(format!("the rules file path {r} contains a space, which a service's command line cannot hold; move it").into());
        }
        extra_args.extend(["--rules".to_owned(), r]);
    }
    if require_attested {
        extra_args.push("--require-attested".to_owned());
    }
    Ok(ServiceSpec {
        exe,
        home,
        extra_args,
    })
}

/// `auths agent install-service [--print] [--policy P] [--device D] [--uv U] [--notify N]
/// [--rules FILE] [--require-attested]`.
pub fn install(
    print_only: bool,
    manager: Option<ServiceManager>,
    flags: ServiceFlags,
) -> CliResult {
    if manager.is_some_and(|m| Some(m) != super::os::SERVICE_MANAGER) && !print_only {
        return Err("--manager names another platform's service manager: it goes with --print (the file is for another machine)".into());
    }
    let spec = spec(flags)?;
    let plan = plan(&spec, manager.or(super::os::SERVICE_MANAGER))?;
    if print_only {
        println!("# {}", plan.path.display());
        print!("{}", plan.text);
        println!("\n# then run:");
        for c in &plan.enable {
            println!("{}", shell_line(c));
        }
        return Ok(());
    }
    auths_presence::secure_fs::ensure_private_dir(&spec.home)?;
    // The agent refuses to start without an enrolled key; under a service manager that
    // would be a restart loop, so say it here.
    let store = auths_presence::presence::enrollment::TokenStore::open(&spec.home)?;
    if store.list()?.is_empty() {
        return Err(format!(
            "no security key is enrolled in {}, so the service's agent could not start; enroll one first with `auths token enroll`, then run `auths agent install-service` again",
            spec.home.display()
        )
        .into());
    }
    if plan.path.exists() {
        // Re-installing: stop the old one first (launchctl will not bootstrap a loaded agent;
        // systemd would keep running the old command line).
        let _ = run_all(&plan.disable[..1]);
    }
    if let Some(dir) = plan.path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&plan.path, &plan.text)
        .map_err(|e| format!("cannot write {}: {e}", plan.path.display()))?;
    println!("wrote {}", plan.path.display());
    match run_all(&plan.enable) {
        Ok(()) => {
            println!(
                "the agent starts at login and runs now; it logs to {}",
                spec.log().display()
            );
            println!("point ssh and git at it: eval \"$(auths agent env)\"");
            Ok(())
        }
        Err(e) => {
            eprintln!("could not enable the service myself: {e}");
            eprintln!("The file is written:\n");
            eprint!("{}", plan.text);
            eprintln!("\nEnable it yourself with:");
            for c in &plan.enable {
                eprintln!("  {}", shell_line(c));
            }
            Err("the service is written but not enabled (see above)".into())
        }
    }
}

/// `auths agent uninstall-service`.
pub fn uninstall() -> CliResult {
    let spec = spec(ServiceFlags::default())?;
    let plan = plan(&spec, super::os::SERVICE_MANAGER)?;
    if !plan.path.exists() {
        println!("no service installed at {}", plan.path.display());
        return Ok(());
    }
    // Stop it first; a failure here (not loaded, no systemd session) must not keep the file.
    let stopped = run_all(&plan.disable[..1]);
    std::fs::remove_file(&plan.path)
        .map_err(|e| format!("cannot remove {}: {e}", plan.path.display()))?;
    println!("removed {}", plan.path.display());
    let _ = run_all(&plan.disable[1..]);
    if let Err(e) = stopped {
        eprintln!("note: could not stop the service: {e}");
        eprintln!("if an agent still runs, stop it with `auths agent stop`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            exe: PathBuf::from("/usr/local/bin/auths"),
            home: PathBuf::from("/home/ada/.auths"),
            extra_args: Vec::new(),
        }
    }

    #[test]
    fn policy_and_device_reach_the_agent_command_line() {
        let spec = ServiceSpec {
            extra_args: vec![
                "--policy".into(),
                "batch:20:60s:parent".into(),
                "--device".into(),
                "usb".into(),
            ],
            ..spec()
        };
        assert!(systemd_unit(&spec)
            .contains("/home/ada/.auths/agent.sock --policy batch:20:60s:parent --device usb\n"));
        assert!(launchd_plist(&spec).unwrap().contains(
            "<string>--policy</string>\n    <string>batch:20:60s:parent</string>\n    <string>--device</string>\n    <string>usb</string>\n  </array>"
        ));
    }

    #[test]
    fn systemd_unit_runs_the_agent_in_the_foreground_and_logs_to_auths_home() {
        let unit = systemd_unit(&spec());
        assert!(unit.contains(
            "\nExecStart=/usr/local/bin/auths agent start --foreground --socket /home/ada/.auths/agent.sock\n"
        ));
        assert!(unit.contains("\nEnvironment=AUTHS_HOME=/home/ada/.auths\n"));
        assert!(unit.contains("\nStandardOutput=append:/home/ada/.auths/agent.log\n"));
        assert!(unit.contains("\nStandardError=append:/home/ada/.auths/agent.log\n"));
        assert!(unit.contains("\n[Install]\nWantedBy=default.target\n"));
        assert!(unit.contains("\nType=simple\n"));
    }

    #[test]
    fn systemd_unit_quotes_an_exe_with_a_space() {
        let unit = systemd_unit(&ServiceSpec {
            exe: PathBuf::from("/opt/my tools/auths"),
            ..spec()
        });
        assert!(unit.contains("\nExecStart=\"/opt/my tools/auths\" agent start"));
    }

    #[test]
    fn launchd_plist_names_the_label_program_and_log() {
        let plist = launchd_plist(&spec()).unwrap();
        assert!(plist.contains("<key>Label</key>\n  <string>dev.auths.agent</string>"));
        assert!(plist.contains(
            "<string>/usr/local/bin/auths</string>\n    <string>agent</string>\n    <string>start</string>\n    <string>--foreground</string>\n    <string>--socket</string>\n    <string>/home/ada/.auths/agent.sock</string>"
        ));
        assert!(plist.contains("<key>AUTHS_HOME</key>\n    <string>/home/ada/.auths</string>"));
        assert!(plist.contains(
            "<key>StandardErrorPath</key>\n  <string>/home/ada/.auths/agent.log</string>"
        ));
        assert!(plist.contains("<key>RunAtLoad</key>\n  <true/>"));
        // Every element is closed.
        assert_eq!(
            plist.matches("<dict>").count(),
            plist.matches("</dict>").count()
        );
        assert_eq!(
            plist.matches("<array>").count(),
            plist.matches("</array>").count()
        );
    }

    #[test]
    fn launchd_plist_escapes_xml() {
        let plist = launchd_plist(&ServiceSpec {
            exe: PathBuf::from("/Users/a&b/<auths>"),
            ..spec()
        })
        .unwrap();
        assert!(plist.contains("<string>/Users/a&amp;b/&lt;auths&gt;</string>"));
    }

    #[test]
    fn linux_plan_is_a_user_unit_enabled_with_systemctl() {
        let p = plan(&spec(), Some(ServiceManager::Systemd)).unwrap();
        assert!(p.path.ends_with("systemd/user/auths-agent.service"));
        assert_eq!(
            shell_line(&p.enable[1]),
            "systemctl --user enable --now auths-agent.service"
        );
        assert_eq!(p.text, systemd_unit(&spec()));
    }

    #[test]
    fn macos_plan_is_a_launch_agent_bootstrapped_in_the_gui_domain() {
        let p = plan(&spec(), Some(ServiceManager::Launchd)).unwrap();
        assert!(p
            .path
            .ends_with("Library/LaunchAgents/dev.auths.agent.plist"));
        let path = p.path.display().to_string();
        assert_eq!(
            p.enable,
            vec![words(&[
                "launchctl",
                "bootstrap",
                &format!("gui/{}", super::super::os::uid()),
                &path
            ])]
        );
        assert_eq!(
            shell_line(&p.disable[0]),
            format!(
                "launchctl bootout gui/{}/dev.auths.agent",
                super::super::os::uid()
            )
        );
        assert_eq!(p.text, launchd_plist(&spec()).unwrap());
    }

    #[test]
    fn no_service_manager_is_refused() {
        let e = plan(&spec(), None).err().unwrap().to_string();
        assert!(
            e.contains("Linux (systemd) and macOS (launchd) only"),
            "{e}"
        );
    }
}
