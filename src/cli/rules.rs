//! `auths agent rules [--json]`, `auths agent rules test …`, `auths agent reload`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use auths_presence::agent::rules::{fetch_rules, request_reload};
use auths_presence::presence::prompt::escape_control;
use auths_presence::presence::request::{Identity, PayloadKind, Requester};
use auths_presence::presence::rules::{
    describe_action, is_fingerprint, is_namespace, kind_name, parse_kind, Action, Query, Rules,
};

use super::CliResult;

/// `auths agent rules`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RulesArgs {
    #[command(subcommand)]
    cmd: Option<RulesCmd>,
    /// Agent socket.
    #[arg(long, value_name = "P")]
    socket: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum RulesCmd {
    /// Say which rule a request would match and what it would do, without asking the key.
    Test(TestArgs),
}

#[derive(Args, Debug)]
struct TestArgs {
    /// The requesting executable (absolute path).
    #[arg(long, value_name = "PATH")]
    exe: PathBuf,
    /// Its parent's executable.
    #[arg(long, value_name = "PATH")]
    parent: Option<PathBuf>,
    /// SSHSIG namespace (implies --kind sshsig).
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// sshsig, userauth or other [default: sshsig with --namespace, userauth with --host-key,
    /// else other].
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// The identity key: its SHA256: fingerprint, or its comment.
    #[arg(long, value_name = "FP")]
    key: Option<String>,
    /// The server's host key fingerprint (ssh logins).
    #[arg(long, value_name = "FP")]
    host_key: Option<String>,
    /// Test against this file instead of the running agent's rules.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Agent socket.
    #[arg(long, value_name = "P")]
    socket: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// `auths agent rules [test …]`.
pub fn run(args: RulesArgs) -> CliResult {
    match args.cmd {
        Some(RulesCmd::Test(t)) => test(t),
        None => list(&super::agent::socket_or_default(args.socket), args.json),
    }
}

/// The agent's rules: `Ok(None)` when it runs without any.
fn agent_rules(
    socket: &Path,
) -> Result<(Option<Rules>, Option<String>), Box<dyn std::error::Error>> {
    let answer = fetch_rules(socket).map_err(|e| {
        format!(
            "cannot ask the agent at {} for its rules ({e}); is it running (`auths agent status`), \
             and is it recent enough to have caller rules?",
            socket.display()
        )
    })?;
    let rules = match answer.source {
        // The agent parsed this text already; parse it again, as strictly.
        Some(text) => Some(Rules::parse(&text)?),
        None => None,
    };
    Ok((rules, answer.path))
}

fn list(socket: &Path, json: bool) -> CliResult {
    let (rules, path) = agent_rules(socket)?;
    let path = path.map(|p| escape_control(&p));
    if json {
        let v = serde_json::json!({
            "path": path,
            "active": rules.is_some(),
            "rules": rules.as_ref().map(|r| r.rules().iter().map(|r| r.to_json()).collect::<Vec<_>>()),
        });
        println!("{v}");
        return Ok(());
    }
    match (rules, path) {
        (Some(rules), path) => {
            println!(
                "{} caller rule(s) from {}; the first match decides, and a request no rule allows is refused without a touch:",
                rules.rules().len(),
                path.as_deref().unwrap_or("?")
            );
            for r in rules.rules() {
                println!("  {}", r.describe());
            }
        }
        (None, Some(path)) => println!(
            "no caller rules (no file at {path}): every program may ask, under the agent's policy"
        ),
        (None, None) => println!("this agent applies no caller rules"),
    }
    Ok(())
}

fn test(t: TestArgs) -> CliResult {
    let (rules, origin) = match &t.rules {
        Some(f) => (
            Some(Rules::load(f).map_err(|e| format!("{}: {e}", f.display()))?),
            Some(f.display().to_string()),
        ),
        None => agent_rules(&super::agent::socket_or_default(t.socket.clone()))?,
    };
    let exe = t.exe.to_string_lossy().into_owned();
    if !(exe.starts_with('/') || t.exe.is_absolute()) {
        return Err(format!("--exe {} must be an absolute path", escape_control(&exe)).into());
    }
    let parent = t.parent.as_ref().map(|p| p.to_string_lossy().into_owned());
    if let Some(ns) = &t.namespace {
        if !is_namespace(ns) {
            return Err(format!(
                "--namespace {:?} must be 1 to 64 letters, digits or .-_@+",
                escape_control(ns)
            )
            .into());
        }
    }
    if t.host_key.as_deref().is_some_and(|fp| !is_fingerprint(fp)) {
        return Err(
            "--host-key must be a SHA256: fingerprint (as `ssh-keygen -lf` prints it)".into(),
        );
    }
    let kind = match (&t.kind, &t.namespace, &t.host_key) {
        (Some(k), _, _) => parse_kind(k)?,
        (None, Some(_), _) => PayloadKind::Sshsig,
        (None, None, Some(_)) => PayloadKind::Userauth,
        (None, None, None) => PayloadKind::Other,
    };
    let requester = Requester {
        exe: Some(exe),
        parent_exe: parent,
        identity: Identity::Confirmed,
        ..Requester::default()
    };
    let (fingerprint, comment) = match &t.key {
        Some(k) if k.starts_with("SHA256:") => (k.clone(), None),
        Some(k) => (String::new(), Some(k.as_str())),
        None => (String::new(), None),
    };
    let q = Query {
        key_fingerprint: &fingerprint,
        key_comment: comment,
        requester: &requester,
        kind,
        namespace: t.namespace.as_deref(),
        host_key: t.host_key.as_deref(),
    };
    let Some(rules) = rules else {
        if t.json {
            println!(
                "{}",
                serde_json::json!({"rules": false, "allowed": true, "rule": null, "action": "allow"})
            );
        } else {
            println!("no caller rules are in force: any program may ask, under the agent's policy");
        }
        return Ok(());
    };
    let matched = rules.first_match(&q);
    let allowed = matched.is_some_and(|r| matches!(r.action, Action::Allow { .. }));
    if t.json {
        let v = serde_json::json!({
            "rules": true,
            "origin": origin.map(|o| escape_control(&o)),
            "kind": kind_name(kind),
            "allowed": allowed,
            "rule": matched.map(|r| r.to_json()),
        });
        println!("{v}");
        return Ok(());
    }
    match matched {
        Some(r) => {
            println!("{}", r.describe());
            println!(
                "\u{2192} {}",
                match &r.action {
                    Action::Deny => "refused at once, without a touch".to_owned(),
                    a => format!("may ask for a touch: {}", describe_action(a)),
                }
            );
        }
        None => println!(
            "no rule matches \u{2192} refused at once, without a touch (a rules file refuses what no rule allows)"
        ),
    }
    Ok(())
}

/// `auths agent reload`.
pub fn reload(socket: &Path, json: bool) -> CliResult {
    let answer = request_reload(socket).map_err(|e| {
        format!(
            "cannot ask the agent at {} to reload ({e}); is it running?",
            socket.display()
        )
    })?;
    let message = escape_control(&answer.message);
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": answer.ok, "message": message})
        );
    } else if answer.ok {
        println!("{message}");
    }
    if answer.ok {
        Ok(())
    } else {
        Err(format!("the agent kept its rules: {message}").into())
    }
}
