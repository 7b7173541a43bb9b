//! `auths git setup`: SSH commit and tag signing through the agent.
//!
//! git (2.34+) signs with `gpg.format=ssh` by running `ssh-keygen -Y sign -n git -f KEY`, which
//! asks the agent at `SSH_AUTH_SOCK` when `KEY` is a public key; `git verify-commit` and
//! `git log --show-signature` check signatures against `gpg.ssh.allowedSignersFile`
//! (ssh-keygen(1), "ALLOWED SIGNERS").

use std::path::{Path, PathBuf};
use std::process::Command;

use auths_presence::text::{allowed_signers_line, key_without_comment, shell_quote};
use clap::Subcommand;

use super::{home, CliResult};

#[derive(Subcommand, Debug)]
pub enum GitCmd {
    /// Configure git to sign commits and tags with the agent's key (SSH signatures).
    Setup {
        /// Configure this repository only [default: the repository in the current directory].
        #[arg(long, value_name = "PATH", conflicts_with = "global")]
        repo: Option<PathBuf>,
        /// Configure every repository of this user (~/.gitconfig).
        #[arg(long)]
        global: bool,
        /// Sign with this public key file instead of the agent's first key.
        #[arg(long, value_name = "PUBKEY_FILE")]
        key: Option<PathBuf>,
        /// Agent socket to take the key from [default: $SSH_AUTH_SOCK, else $AUTHS_HOME/agent.sock].
        #[arg(long, value_name = "P")]
        socket: Option<PathBuf>,
        /// Also install post-commit and post-rewrite hooks that attach a presence proof to each
        /// signed commit (git notes under refs/notes/auths); one repository at a time.
        #[arg(long, conflicts_with = "global")]
        proofs: bool,
    },
    /// Check that each commit's signature had a touch behind it: its SSH signature, its
    /// presence proof (refs/notes/auths) and the key's attestation. Needs no AUTHS_HOME.
    Verify {
        /// A commit or a range (A..B) [default: HEAD].
        #[arg(value_name = "REV|RANGE")]
        rev: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Fail for proofs by keys that are not attested as genuine security keys.
        #[arg(long)]
        require_attested: bool,
    },
    /// What the proof hooks run.
    #[command(subcommand, hide = true)]
    Proof(super::git_proof::ProofCmd),
    /// git's gpg.ssh.program (set by `auths git setup`): runs ssh-keygen with these arguments
    /// unchanged and, when a signature is refused, prints the agent's reason on stderr.
    #[command(disable_help_flag = true)]
    Sign {
        /// The arguments for ssh-keygen (`-Y sign -n git -f KEY FILE`, `-Y verify …`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<std::ffi::OsString>,
    },
}

pub fn run(cmd: GitCmd) -> CliResult {
    match cmd {
        GitCmd::Setup {
            repo,
            global,
            key,
            socket,
            proofs,
        } => {
            let dir = match &repo {
                Some(r) => absolute(r),
                None => std::env::current_dir()?,
            };
            setup(repo, global, key, socket)?;
            if proofs {
                super::git_proof::install_hooks(&dir)?;
            }
            Ok(())
        }
        GitCmd::Verify {
            rev,
            json,
            require_attested,
        } => super::git_proof::verify(rev, json, require_attested),
        GitCmd::Proof(cmd) => super::git_proof::proof(cmd),
        // main() runs it, for its exit code.
        GitCmd::Sign { args } => match super::git_sign::run(args) {
            0 => Ok(()),
            code => Err(format!("ssh-keygen exited with {code}").into()),
        },
    }
}

/// Where `git config` reads and writes.
#[derive(Debug, Clone)]
enum Scope {
    Global,
    Repo(PathBuf),
}

impl Scope {
    /// `git [-C repo] config --local|--global`.
    fn args(&self) -> Vec<String> {
        match self {
            Scope::Global => vec!["config".into(), "--global".into()],
            Scope::Repo(p) => vec![
                "-C".into(),
                p.display().to_string(),
                "config".into(),
                "--local".into(),
            ],
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new("git");
        c.args(self.args());
        c
    }

    /// The shell form, for the undo lines.
    fn shell(&self) -> String {
        let mut s = String::from("git");
        for a in self.args() {
            s.push(' ');
            s.push_str(&shell_quote(&a));
        }
        s
    }
}

fn git_missing(e: std::io::Error) -> Box<dyn std::error::Error> {
    if e.kind() == std::io::ErrorKind::NotFound {
        "git is not installed (or not on PATH); install git 2.34 or newer and run `auths git setup` again".into()
    } else {
        format!("cannot run git: {e}").into()
    }
}

/// `git config --get NAME` in `scope`: None when unset.
fn get(scope: &Scope, name: &str) -> Result<Option<String>, Box<dyn std::error::Error>> {
    let out = scope
        .command()
        .args(["--get", name])
        .output()
        .map_err(git_missing)?;
    match out.status.code() {
        Some(0) => Ok(Some(
            String::from_utf8_lossy(&out.stdout).trim_end().to_owned(),
        )),
        Some(1) => Ok(None),
        _ => Err(format!(
            "`{} --get {name}` failed: {}",
            scope.shell(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into()),
    }
}

fn set(scope: &Scope, name: &str, value: &str) -> CliResult {
    let out = scope
        .command()
        .args([name, value])
        .output()
        .map_err(git_missing)?;
    if !out.status.success() {
        return Err(format!(
            "`{} {name} {}` failed: {}",
            scope.shell(),
            shell_quote(value),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

/// The effective `user.email` (any scope) for `scope`'s repository.
fn user_email(scope: &Scope) -> Result<Option<String>, Box<dyn std::error::Error>> {
    let mut c = Command::new("git");
    if let Scope::Repo(p) = scope {
        c.arg("-C").arg(p);
    }
    let out = c
        .args(["config", "--get", "user.email"])
        .output()
        .map_err(git_missing)?;
    let email = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok((out.status.success() && !email.is_empty()).then_some(email))
}

/// The first identity the agent at `socket` holds, as an OpenSSH public key line.
fn agent_key(socket: &Path) -> Result<String, Box<dyn std::error::Error>> {
    if !super::os::ASKS_AGENT_FOR_KEY {
        return Err(format!(
            "cannot ask the agent at {} for its key on this platform yet; pass --key PUBKEY_FILE",
            socket.display()
        )
        .into());
    }
    use auths_presence::agent::client;
    use ssh_agent_lib::proto::{Request, Response};
    let ids = match client::request(
        socket,
        &Request::RequestIdentities,
        std::time::Duration::from_secs(10),
    ) {
        Ok(Response::IdentitiesAnswer(ids)) => ids,
        Ok(_) => return Err(format!("the agent at {} refused to list its keys", socket.display()).into()),
        Err(e) => {
            return Err(format!(
                "{e}; once it runs, add your key with `auths agent add KEYFILE`, or pass --key PUBKEY_FILE"
            )
            .into())
        }
    };
    let id = ids.first().ok_or_else(|| {
        format!(
            "the agent at {} holds no key; add one with `auths agent add KEYFILE` (or pass --key PUBKEY_FILE)",
            socket.display()
        )
    })?;
    let key = ssh_key::PublicKey::new(id.credential.key_data().clone(), "");
    Ok(key.to_openssh()?)
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

fn setup(
    repo: Option<PathBuf>,
    global: bool,
    key_file: Option<PathBuf>,
    socket: Option<PathBuf>,
) -> CliResult {
    let scope = if global {
        Scope::Global
    } else {
        let repo = match repo {
            Some(r) => absolute(&r),
            None => std::env::current_dir()?,
        };
        let out = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["rev-parse", "--git-dir"])
            .output()
            .map_err(git_missing)?;
        if !out.status.success() {
            return Err(format!(
                "{} is not a git repository; pass --repo PATH, or --global for every repository",
                repo.display()
            )
            .into());
        }
        Scope::Repo(repo)
    };
    let home = home();
    auths_presence::secure_fs::ensure_private_dir(&home)?;

    // The signing key: a public key file git hands to `ssh-keygen -Y sign -f`, which then
    // signs through the agent (there is no private key next to it).
    let (key_line, key_path) = match key_file {
        Some(f) => {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
            let line = key_without_comment(&text)
                .map_err(|e| format!("{}: {e}; pass the .pub file", f.display()))?;
            (line, absolute(&f))
        }
        None => {
            let socket = socket
                .or_else(|| std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from))
                .unwrap_or_else(|| home.join("agent.sock"));
            let line = agent_key(&socket)?;
            println!(
                "Signing key: the first key of the agent at {}",
                socket.display()
            );
            let path = home.join("git_signing_key.pub");
            auths_presence::secure_fs::atomic_write(&path, format!("{line}\n").as_bytes())?;
            (line, path)
        }
    };

    let email = user_email(&scope)?.ok_or(
        "git has no user.email, which names you in the allowed-signers file; set it first:\n  git config --global user.email you@example.com",
    )?;
    let signers = home.join("allowed_signers");
    let entry = allowed_signers_line(&email, &key_line)?;
    let existing = std::fs::read_to_string(&signers).unwrap_or_default();
    let added_signer = !existing.lines().any(|l| l.trim() == entry);
    if added_signer {
        let mut text = existing.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&entry);
        text.push('\n');
        auths_presence::secure_fs::atomic_write(&signers, text.as_bytes())?;
    }

    let program = install_sign_wrapper(&home)?;
    let settings = [
        ("gpg.format", "ssh".to_owned()),
        ("gpg.ssh.program", program.display().to_string()),
        ("user.signingkey", key_path.display().to_string()),
        ("commit.gpgsign", "true".to_owned()),
        ("tag.gpgsign", "true".to_owned()),
        ("gpg.ssh.allowedSignersFile", signers.display().to_string()),
    ];
    let mut undo = Vec::new();
    let where_ = match &scope {
        Scope::Global => "your global git config".to_owned(),
        Scope::Repo(p) => format!("the repository {}", p.display()),
    };
    println!("Configured SSH signing in {where_}:");
    for (name, value) in &settings {
        let old = get(&scope, name)?;
        set(&scope, name, value)?;
        match &old {
            Some(o) if o == value => println!("  {name} = {value} (unchanged)"),
            Some(o) => {
                println!("  {name} = {value} (was {o})");
                undo.push(format!("{} {name} {}", scope.shell(), shell_quote(o)));
            }
            None => {
                println!("  {name} = {value}");
                undo.push(format!("{} --unset {name}", scope.shell()));
            }
        }
    }
    if added_signer {
        println!("Added to {}: {entry}", signers.display());
    } else {
        println!("{} already trusts this key for {email}", signers.display());
    }
    println!();
    println!(
        "git now signs every commit and tag; each signature needs a touch on your security key."
    );
    println!("Check with: git commit --allow-empty -m test && git verify-commit HEAD");
    println!(
        "{} runs ssh-keygen as git would, and says why when the agent refuses a signature.",
        program.display()
    );
    println!(
        "{}",
        auth_sock_line(std::env::var_os("SSH_AUTH_SOCK").as_deref())
    );
    if undo.is_empty() && !added_signer {
        println!("\nNothing changed.");
    } else {
        println!("\nTo undo:");
        for u in &undo {
            println!("  {u}");
        }
        if added_signer {
            println!(
                "  and delete the line for {email} from {}",
                signers.display()
            );
        }
    }
    Ok(())
}

/// Write `$AUTHS_HOME/bin/auths-git-sign` (atomically, 0700), the wrapper that runs this binary
/// as `auths git sign`: git runs `gpg.ssh.program` as one executable, without a shell, so the
/// setting cannot carry the subcommand itself. Its path.
fn install_sign_wrapper(home: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| format!("cannot find the path of this auths binary: {e}"))?;
    let dir = home.join("bin");
    auths_presence::secure_fs::ensure_private_dir(&dir)?;
    let path = dir.join("auths-git-sign");
    let script = super::git_sign::wrapper_script(&exe);
    auths_presence::secure_fs::atomic_write(&path, script.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} executable: {e}", path.display()))?;
    }
    Ok(path)
}

/// Whether `SSH_AUTH_SOCK` (`sock`) is an auths agent: it answers `status@auths-presence`,
/// which other agents refuse.
fn auth_sock_line(sock: Option<&std::ffi::OsStr>) -> String {
    use auths_presence::agent::client;
    use auths_presence::presence::prompt::escape_control;
    let fix = "point it at ours with: eval \"$(auths agent env)\"";
    let Some(sock) = sock.filter(|s| !s.is_empty()) else {
        return format!("Warning: SSH_AUTH_SOCK is not set, so git cannot reach the agent; {fix}");
    };
    let path = PathBuf::from(sock);
    let shown = escape_control(&path.display().to_string());
    match client::status(&path) {
        Ok(_) => format!("SSH_AUTH_SOCK ({shown}) is the auths agent: signatures go through it."),
        Err(auths_presence::agent::AgentError::Client(client::ClientError::Connect { .. })) => {
            format!("Warning: no agent answers at SSH_AUTH_SOCK ({shown}); start it with `auths agent start`, then {fix}")
        }
        Err(_) => format!(
            "Warning: SSH_AUTH_SOCK ({shown}) is another agent, which signs without a touch; {fix}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_lines_quote_a_repository_path_with_a_space() {
        let s = Scope::Repo(PathBuf::from("/tmp/my repo"));
        assert_eq!(s.shell(), "git -C '/tmp/my repo' config --local");
        assert_eq!(Scope::Global.shell(), "git config --global");
    }
}
