//! `auths git sign …`: git's `gpg.ssh.program` (set by `auths git setup`, through the wrapper
//! `$AUTHS_HOME/bin/auths-git-sign`, since git runs that setting as one executable without a
//! shell).
//!
//! git runs the program as `PROGRAM -Y sign -n git -f KEY [-U] FILE`, and also as
//! `-Y find-principals`, `-Y verify` and `-Y check-novalidate` (gpg-interface.c). Every
//! invocation goes to `ssh-keygen` (found on PATH) unchanged: same arguments, the same stdin,
//! stdout and stderr, and its exit status. Only when a `-Y sign` fails does this ask the agent
//! at `SSH_AUTH_SOCK` (the `refusal@auths-presence` extension) why it refused the ssh-keygen
//! this process ran, and print the reason on stderr, which git shows after "error:": ssh-keygen
//! itself says only "agent refused operation".

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use auths_presence::agent::client::{self, ClientError};
use auths_presence::agent::AgentError;
use auths_presence::presence::prompt::escape_control;

/// Exit status when ssh-keygen cannot be run at all (as a shell says for a missing command).
const EXIT_NO_KEYGEN: i32 = 127;

/// Run ssh-keygen with `args`; the exit code to leave with (on Unix this process usually
/// becomes ssh-keygen and never returns).
pub fn run(args: Vec<OsString>) -> i32 {
    let socket = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty());
    #[cfg(unix)]
    {
        if !is_sign(&args) {
            return exec(&args);
        }
        if let Some(socket) = &socket {
            if let Some(code) = unix::sign_with_helper(&args, Path::new(socket)) {
                return code;
            }
        }
    }
    spawn_and_explain(&args, socket.as_deref())
}

/// Become ssh-keygen (Unix): stdio, pid, parent and exit status are then ssh-keygen's own.
#[cfg(unix)]
fn exec(args: &[OsString]) -> i32 {
    use std::os::unix::process::CommandExt;
    let e = Command::new("ssh-keygen").args(args).exec();
    no_keygen(&e)
}

fn no_keygen(e: &std::io::Error) -> i32 {
    eprintln!(
        "auths: cannot run ssh-keygen ({e}); install OpenSSH 8.2 or newer so that ssh-keygen is \
         on PATH"
    );
    EXIT_NO_KEYGEN
}

/// Run ssh-keygen as a child, wait, and explain a failed `-Y sign`: what platforms without
/// exec do, and what Unix does when the agent at `SSH_AUTH_SOCK` is not ours (or none), to say
/// so. ssh-keygen's parent is this process then.
fn spawn_and_explain(args: &[OsString], socket: Option<&OsStr>) -> i32 {
    let mut child = match Command::new("ssh-keygen").args(args).spawn() {
        Ok(c) => c,
        Err(e) => return no_keygen(&e),
    };
    let pid = child.id();
    let status = match child.wait() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("auths: cannot wait for ssh-keygen: {e}");
            return super::EXIT_FAILURE;
        }
    };
    if is_sign(args) && !status.success() {
        for line in explain(pid, socket) {
            eprintln!("{line}");
        }
    }
    exit_code(status)
}

/// `-Y sign` on Unix: this process becomes ssh-keygen, so that ssh-keygen's parent is the one
/// git started it from (a batch grant scoped to the parent then covers a whole
/// `git rebase -S`), and a helper forked before, connected to the agent while its parent was
/// still this process, waits for ssh-keygen to end and asks the agent whether it refused
/// ssh-keygen (the agent lets a process read its parent's refusals). The helper holds stderr,
/// so git (which reads the signer's stderr to its end) shows what it prints.
#[cfg(unix)]
mod unix {
    use std::ffi::OsString;
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::path::Path;
    use std::time::Duration;

    use auths_presence::agent::client;
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use nix::unistd::{fork, ForkResult};

    /// What the helper tells its parent once it has asked the agent.
    const OURS: u8 = 1;

    /// `None` when the agent at `socket` is not ours (or the helper could not be started):
    /// the caller then runs ssh-keygen as a child and explains a failure itself.
    pub(super) fn sign_with_helper(args: &[OsString], socket: &Path) -> Option<i32> {
        let me = std::process::id();
        // Both pipes are close-on-exec; the end ssh-keygen keeps is made inheritable below.
        let (mut ready_r, ready_w) = pipe()?;
        let (life_r, life_w) = pipe()?;
        // SAFETY: `auths git sign` has started no thread (clap parsing only, no runtime), so
        // the child is a copy of a single-threaded process and may allocate and do I/O.
        match unsafe { fork() }.ok()? {
            ForkResult::Child => {
                drop(ready_r);
                drop(life_w);
                helper(socket, me, ready_w, life_r)
            }
            ForkResult::Parent { .. } => {
                drop(ready_w);
                drop(life_r);
                let mut said = [0u8; 1];
                // The helper answers once it is connected and knows the agent (or exits).
                let ours = matches!(ready_r.read(&mut said), Ok(1) if said[0] == OURS);
                if !ours {
                    return None;
                }
                // ssh-keygen holds the pipe's write end until it ends: the helper's EOF.
                fcntl(life_w.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).ok()?;
                let code = super::exec(args);
                drop(life_w);
                Some(code)
            }
        }
    }

    /// A pipe (read end, write end), both ends close-on-exec (set at once: nothing else runs
    /// in this process that could exec in between).
    fn pipe() -> Option<(File, File)> {
        let (r, w) = nix::unistd::pipe().ok()?;
        for fd in [&r, &w] {
            fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).ok()?;
        }
        Some((File::from(r), File::from(w)))
    }

    fn helper(socket: &Path, parent: u32, mut ready: File, mut life: File) -> ! {
        let conn = client::connect(socket, Duration::from_secs(5))
            .ok()
            .and_then(|mut c| client::refusals_on(&mut c).ok().map(|_| c));
        let Some(mut conn) = conn else {
            // Not ours: the parent explains a failure itself.
            std::process::exit(0);
        };
        if ready.write_all(&[OURS]).is_err() {
            std::process::exit(0);
        }
        drop(ready);
        let mut rest = Vec::new();
        // EOF when ssh-keygen (the parent, after exec) ends, whatever it did.
        let _ = life.read_to_end(&mut rest);
        if let Ok(refusals) = client::refusals_on(&mut conn) {
            if let Some(r) = refusals.into_iter().find(|r| r.pid == parent) {
                eprintln!("{}", super::not_signed(&r.reason));
                eprintln!("auths: {}", super::next_step(&r.reason));
            }
        }
        std::process::exit(0)
    }
}

/// True for an `ssh-keygen -Y sign` invocation (`-Y sign` or `-Ysign`).
fn is_sign(args: &[OsString]) -> bool {
    args.iter().enumerate().any(|(i, a)| {
        a == OsStr::new("-Ysign")
            || (a == OsStr::new("-Y") && args.get(i + 1).is_some_and(|n| n == "sign"))
    })
}

/// ssh-keygen's exit code, or 128 + the signal that ended it (as a shell reports it).
fn exit_code(status: ExitStatus) -> i32 {
    if let Some(code) = status.code() {
        return code;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + sig;
        }
    }
    super::EXIT_FAILURE
}

/// The lines that explain why the ssh-keygen with `pid` did not sign, as the agent at `socket`
/// recorded it.
fn explain(pid: u32, socket: Option<&OsStr>) -> Vec<String> {
    let Some(socket) = socket.filter(|s| !s.is_empty()) else {
        return vec![
            "auths: not signed: SSH_AUTH_SOCK is not set, so ssh-keygen reached no agent".into(),
            "auths: start the agent and point SSH_AUTH_SOCK at it: eval \"$(auths agent env)\""
                .into(),
        ];
    };
    let socket = PathBuf::from(socket);
    let shown = escape_control(&socket.display().to_string());
    match client::refusals(&socket) {
        Ok(refusals) => match refusals.into_iter().find(|r| r.pid == pid) {
            Some(r) => vec![
                not_signed(&r.reason),
                format!("auths: {}", next_step(&r.reason)),
            ],
            None => vec![
                "auths: not signed; the agent recorded no refusal of this signature, so \
                 ssh-keygen stopped before asking it (its message above says why)"
                    .into(),
            ],
        },
        Err(AgentError::Client(ClientError::Connect { .. })) => vec![
            format!("auths: not signed: no agent answers at SSH_AUTH_SOCK ({shown})"),
            "auths: start it with `auths agent start`, then eval \"$(auths agent env)\"".into(),
        ],
        Err(AgentError::Client(ClientError::Refused)) => vec![
            format!(
                "auths: not signed: SSH_AUTH_SOCK ({shown}) is another agent than auths, which \
                 cannot say why it refused"
            ),
            "auths: point SSH_AUTH_SOCK at the auths agent: eval \"$(auths agent env)\"".into(),
        ],
        Err(e) => vec![format!(
            "auths: not signed, and the agent at {shown} could not say why: {}",
            escape_control(&e.to_string())
        )],
    }
}

/// "auths: not signed: REASON", escaped.
fn not_signed(reason: &str) -> String {
    format!("auths: not signed: {}", escape_control(reason))
}

/// What to do next after `reason`.
fn next_step(reason: &str) -> &'static str {
    if reason.starts_with("no touch within") {
        "run the git command again and touch your security key while it blinks"
    } else if reason.contains("does not hold this key") {
        "add the key to the agent (`auths agent add KEYFILE`), then run the git command again"
    } else if reason.starts_with("the agent is locked") {
        "unlock the agent with `ssh-add -X`, then run the git command again"
    } else if reason.contains("PIN") {
        "run the git command again and give the security key's PIN when asked"
    } else {
        "`auths agent watch` shows each request as it comes; `auths doctor` checks the set-up"
    }
}

/// The wrapper `auths git setup` points `gpg.ssh.program` at: a script that runs this binary
/// as `auths git sign` (git runs that setting as one executable, without a shell).
pub fn wrapper_script(auths: &Path) -> String {
    format!(
        "#!/bin/sh\n# Written by `auths git setup`: git's gpg.ssh.program.\nexec {} git sign \"$@\"\n",
        auths_presence::text::shell_quote(&auths.display().to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_sign_invocations_are_explained() {
        assert!(is_sign(&args(&["-Y", "sign", "-n", "git", "-f", "k", "f"])));
        assert!(is_sign(&args(&["-Ysign", "-n", "git"])));
        assert!(!is_sign(&args(&["-Y", "verify", "-n", "git"])));
        assert!(!is_sign(&args(&["-Y", "find-principals", "-s", "sign"])));
        assert!(!is_sign(&args(&["-Y"])));
    }

    #[test]
    fn no_socket_says_so() {
        let lines = explain(1, None);
        assert!(lines[0].contains("SSH_AUTH_SOCK is not set"), "{lines:?}");
    }

    #[test]
    fn the_wrapper_quotes_the_path() {
        assert_eq!(
            wrapper_script(Path::new("/opt/my auths/auths")),
            "#!/bin/sh\n# Written by `auths git setup`: git's gpg.ssh.program.\n\
             exec '/opt/my auths/auths' git sign \"$@\"\n"
        );
    }
}
