//! Presence proofs that travel with commits (`refs/notes/auths`):
//! `auths git setup --proofs` installs the hooks, the hooks run `auths git proof`, and
//! `auths git verify` checks a range in any clone that fetched the notes, with no `AUTHS_HOME`.

use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use auths_presence::presence::audit::{AuditLog, ChainEvent, Entry};
use auths_presence::presence::enrollment::{Enrollment, TokenStore};
use auths_presence::presence::prompt::escape_control;
use auths_presence::presence::proof::{
    signed_commit, verify_proof, Proof, ProofError, ProofVerdict, MAX_COMMIT, MAX_NOTE, NOTES_REF,
};
use auths_presence::text::shell_quote;
use clap::Subcommand;
use serde::Serialize;

use super::{home, CliResult};

/// The line that marks a hook as ours.
const HOOK_MARK: &str = "# auths-presence: presence proofs (refs/notes/auths)";

/// What a hook that was there before is renamed to; ours runs it first.
const CHAINED: &str = ".auths-chained";

/// What the hooks run.
#[derive(Subcommand, Debug)]
pub enum ProofCmd {
    /// Attach the proof of each commit's signature, from this user's audit log.
    Attach {
        /// The commits.
        #[arg(required = true, value_name = "REV")]
        revs: Vec<String>,
        /// Say nothing about commits that are not signed.
        #[arg(long)]
        quiet: bool,
    },
    /// The post-rewrite hook: reads `OLD NEW` lines on stdin and attaches the proofs of the new
    /// commits.
    PostRewrite {
        /// `amend` or `rebase`, as git passes it.
        kind: Option<String>,
    },
}

fn git(args: &[&str]) -> Result<Output, Box<dyn std::error::Error>> {
    Command::new("git")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| -> Box<dyn std::error::Error> {
            format!("cannot run git: {e}; is git installed and on PATH?").into()
        })
}

fn first_line(bytes: &[u8]) -> String {
    escape_control(
        String::from_utf8_lossy(bytes)
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim(),
    )
}

/// A revision from the user or a hook, refused when git could read it as an option.
fn revision(rev: &str) -> Result<&str, Box<dyn std::error::Error>> {
    if rev.is_empty() || rev.starts_with('-') || rev.chars().any(char::is_control) {
        return Err(format!("{:?} is not a revision", escape_control(rev)).into());
    }
    Ok(rev)
}

/// The commit ids `spec` names: a range (`A..B`, `A...B`) lists every commit in it; anything
/// else names one commit.
fn commits(spec: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let spec = revision(spec)?;
    let out = if spec.contains("..") {
        git(&["rev-list", "--end-of-options", spec])?
    } else {
        let rev = format!("{spec}^{{commit}}");
        git(&["rev-parse", "--verify", "--end-of-options", &rev])?
    };
    if !out.status.success() {
        return Err(format!(
            "git does not know {:?}: {}",
            escape_control(spec),
            first_line(&out.stderr)
        )
        .into());
    }
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    if ids.iter().any(|id| !is_object_id(id)) {
        return Err("git printed something that is not a commit id".into());
    }
    Ok(ids)
}

fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn commit_object(id: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let out = git(&["cat-file", "commit", id])?;
    if !out.status.success() {
        return Err(format!("cannot read commit {id}: {}", first_line(&out.stderr)).into());
    }
    if out.stdout.len() > MAX_COMMIT {
        return Err(format!("commit {id} is larger than {MAX_COMMIT} bytes").into());
    }
    Ok(out.stdout)
}

/// Every enrollment this user's AUTHS_HOME knows: tokens.json and, for keys removed since, the
/// audit chain.
fn all_enrollments(home: &Path) -> Result<Vec<Enrollment>, Box<dyn std::error::Error>> {
    let mut all = TokenStore::open(home)?.list()?;
    for line in AuditLog::new(home).read_chain()? {
        let found = match line.entry {
            Ok(Entry::Event(e)) => match *e {
                ChainEvent::Enrolled { enrollment, .. } => vec![*enrollment],
                ChainEvent::ChainStarted { enrollments, .. } => enrollments,
                ChainEvent::Removed { .. } => Vec::new(),
            },
            _ => Vec::new(),
        };
        for e in found {
            if !all.iter().any(|a| a.credential_id == e.credential_id) {
                all.push(e);
            }
        }
    }
    Ok(all)
}

pub fn proof(cmd: ProofCmd) -> CliResult {
    match cmd {
        ProofCmd::Attach { revs, quiet } => {
            let mut ids = Vec::new();
            for r in &revs {
                ids.extend(commits(r)?);
            }
            attach(&ids, quiet)
        }
        ProofCmd::PostRewrite { .. } => {
            let mut input = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin().take(1 << 20), &mut input)?;
            let ids: Vec<String> = input
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|id| is_object_id(id))
                .map(str::to_owned)
                .collect();
            attach(&ids, true)
        }
    }
}

/// Attach the proof of each signed commit in `ids`; commits not signed are skipped (said
/// unless `quiet`). Each proof is verified against its commit before it is written.
fn attach(ids: &[String], quiet: bool) -> CliResult {
    let home = home();
    let receipts: Vec<_> = AuditLog::new(&home)
        .read()?
        .into_iter()
        .filter_map(|(_, r)| r.ok())
        .collect();
    let enrollments = all_enrollments(&home)?;
    let mut failed = 0;
    for id in ids {
        let raw = commit_object(id)?;
        let commit = match signed_commit(&raw) {
            Ok(c) => c,
            Err(e) => {
                if !quiet {
                    eprintln!("auths: {}: {e}; no proof attached", short(id));
                }
                continue;
            }
        };
        let made = Proof::from_receipts(&receipts, &enrollments, &commit.digest)
            .and_then(|p| verify_proof(&p, &commit).map(|_| p));
        let proof = match made {
            Ok(p) => p,
            Err(e) => {
                eprintln!("auths: {}: no presence proof attached: {e}", short(id));
                failed += 1;
                continue;
            }
        };
        let mut child = Command::new("git")
            .args(["notes", "--ref", NOTES_REF, "add", "-f", "-F", "-", id])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(proof.to_json().as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            eprintln!(
                "auths: {}: git notes failed: {}",
                short(id),
                first_line(&out.stderr)
            );
            failed += 1;
            continue;
        }
        if !quiet {
            println!("{}: presence proof attached ({NOTES_REF})", short(id));
        }
    }
    if failed > 0 {
        return Err(format!("{failed} commit(s) got no presence proof").into());
    }
    Ok(())
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// One commit's result in `auths git verify --json`.
#[derive(Debug, Serialize)]
struct Checked {
    commit: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proof: Option<ProofVerdict>,
}

fn check_commit(id: &str, require_attested: bool) -> Result<ProofVerdict, String> {
    let raw = commit_object(id).map_err(|e| e.to_string())?;
    let commit = signed_commit(&raw).map_err(|e| e.to_string())?;
    let verified = git(&["verify-commit", id]).map_err(|e| e.to_string())?;
    if !verified.status.success() {
        return Err(format!(
            "its SSH signature does not verify with git's allowed signers (gpg.ssh.allowedSignersFile): {}",
            first_line(&verified.stderr)
        ));
    }
    let note = git(&["notes", "--ref", NOTES_REF, "show", id]).map_err(|e| e.to_string())?;
    if !note.status.success() {
        return Err(format!(
            "it has no presence proof (fetch the notes: git fetch origin {NOTES_REF}:{NOTES_REF})"
        ));
    }
    if note.stdout.len() > MAX_NOTE {
        return Err(
            ProofError::NotAProof(format!("it is larger than {MAX_NOTE} bytes")).to_string(),
        );
    }
    let proof = Proof::parse(&note.stdout).map_err(|e| e.to_string())?;
    let verdict = verify_proof(&proof, &commit).map_err(|e| e.to_string())?;
    if require_attested && verdict.attestation != "attested" {
        return Err(format!(
            "its key is not attested as a genuine security key ({})",
            verdict.attestation
        ));
    }
    Ok(verdict)
}

fn describe(v: &ProofVerdict) -> String {
    let how = match &v.grant {
        None => "approved by a touch".to_owned(),
        Some(t) => format!(
            "covered by a batch grant ({} signature(s) within {} s, scope {}) opened by a touch",
            t.max_signatures,
            t.ttl_secs,
            escape_control(&t.scope)
        ),
    };
    let uv = if v.user_verified {
        " with the user verified"
    } else {
        ""
    };
    let key = match v.attestation.as_str() {
        "attested" => match &v.model {
            Some(m) => format!("on an attested security key ({m})"),
            None => "on an attested security key".to_owned(),
        },
        "virtual" => "on the virtual key (not a security key)".to_owned(),
        other => format!("on a key that is not attested ({other})"),
    };
    format!("{how}{uv} {key}; signed by {}", v.key)
}

/// `auths git verify [REV | RANGE]`.
pub fn verify(spec: Option<String>, json: bool, require_attested: bool) -> CliResult {
    let spec = spec.unwrap_or_else(|| "HEAD".into());
    let ids = commits(&spec)?;
    let mut results = Vec::new();
    for id in &ids {
        let r = check_commit(id, require_attested);
        results.push(Checked {
            commit: id.clone(),
            ok: r.is_ok(),
            problem: r.as_ref().err().cloned(),
            proof: r.ok(),
        });
    }
    let bad = results.iter().filter(|r| !r.ok).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for r in &results {
            match (&r.proof, &r.problem) {
                (Some(v), _) => println!("{}: verified: {}", short(&r.commit), describe(v)),
                (None, Some(p)) => println!("{}: NOT VERIFIED: {p}", short(&r.commit)),
                (None, None) => {}
            }
        }
    }
    if ids.is_empty() {
        return Err(format!("{:?} names no commits", escape_control(&spec)).into());
    }
    if bad > 0 {
        return Err(format!(
            "{bad} of {} commit(s) have no verified presence proof",
            ids.len()
        )
        .into());
    }
    Ok(())
}

/// Install the post-commit and post-rewrite hooks in `repo`, chaining any hook already there.
pub fn install_hooks(repo: &Path) -> CliResult {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--git-path", "hooks"])
        .output()?;
    if !out.status.success() {
        return Err(format!("cannot find the hooks of {}", repo.display()).into());
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let dir = if dir.is_absolute() {
        dir
    } else {
        repo.join(dir)
    };
    std::fs::create_dir_all(&dir)?;
    let exe = std::env::current_exe()?;
    let auths = shell_quote(&exe.display().to_string());
    let mut undo = Vec::new();
    for (name, body) in [
        (
            "post-commit",
            format!(
                "{auths} git proof attach --quiet HEAD || echo 'auths: HEAD has no presence proof (see above)' >&2\n"
            ),
        ),
        (
            "post-rewrite",
            format!(
                "printf '%s\\n' \"$input\" | {auths} git proof post-rewrite \"$@\" || echo 'auths: some rewritten commits have no presence proof (see above)' >&2\n"
            ),
        ),
    ] {
        let path = dir.join(name);
        let chained = dir.join(format!("{name}{CHAINED}"));
        match std::fs::read_to_string(&path) {
            Ok(old) if old.contains(HOOK_MARK) => {}
            Ok(_) => {
                if chained.exists() {
                    return Err(format!(
                        "both {} and {} exist: move one away, then run this again",
                        path.display(),
                        chained.display()
                    )
                    .into());
                }
                std::fs::rename(&path, &chained)?;
                println!(
                    "{name}: the hook already there now runs first, from {}",
                    chained.display()
                );
                undo.push(format!(
                    "mv {} {}",
                    shell_quote(&chained.display().to_string()),
                    shell_quote(&path.display().to_string())
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                undo.push(format!("rm {}", shell_quote(&path.display().to_string())));
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display()).into()),
        }
        let read_input = if name == "post-rewrite" {
            "input=$(cat)\n"
        } else {
            ""
        };
        let run_chained = if name == "post-rewrite" {
            "if [ -x \"$0.auths-chained\" ]; then printf '%s\\n' \"$input\" | \"$0.auths-chained\" \"$@\" || status=$?; fi\n"
        } else {
            "if [ -x \"$0.auths-chained\" ]; then \"$0.auths-chained\" \"$@\" || status=$?; fi\n"
        };
        let script = format!(
            "#!/bin/sh\n{HOOK_MARK}\n# Installed by `auths git setup --proofs`; a hook that was here before runs first.\n{read_input}status=0\n{run_chained}{body}exit $status\n"
        );
        write_hook(&path, &script)?;
        println!("{name}: attaches presence proofs ({})", path.display());
    }
    println!("Share the proofs with the commits:");
    println!("  git push origin {NOTES_REF}");
    println!("  git config --add remote.origin.fetch '+{NOTES_REF}:{NOTES_REF}'");
    println!("Anyone can then check a range: auths git verify origin/main..HEAD");
    if !undo.is_empty() {
        println!("To undo the hooks:");
        for u in undo {
            println!("  {u}");
        }
    }
    Ok(())
}

/// Write an executable hook atomically: a temporary file beside it, then a rename.
fn write_hook(path: &Path, script: &str) -> CliResult {
    let tmp = path.with_extension(format!("auths-tmp-{}", std::process::id()));
    std::fs::write(&tmp, script)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}
