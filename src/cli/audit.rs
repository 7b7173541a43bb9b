//! `auths audit list|verify`.

use clap::Subcommand;

use auths_presence::presence::audit::{verify_chain, AuditLog, Outcome};
use auths_presence::presence::enrollment::TokenStore;
use auths_presence::presence::prompt::{describe_peer, escape_control};

use super::{home, CliResult};

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Show the receipts.
    List {
        /// Machine-readable output (the receipts as a JSON array).
        #[arg(long)]
        json: bool,
    },
    /// Re-verify the log offline: every receipt against the keys the chain enrolled, and the
    /// hash chain that every touch signed.
    Verify {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Also fail when a credential in the chain is not attested as a genuine security key.
        #[arg(long)]
        require_attested: bool,
    },
}

pub fn run(cmd: AuditCmd) -> CliResult {
    let home = home();
    let log = AuditLog::new(&home);
    match cmd {
        AuditCmd::List { json } => {
            let lines = log.read()?;
            if json {
                let v: Vec<serde_json::Value> = lines
                    .iter()
                    .map(|(n, r)| match r {
                        Ok(r) => serde_json::to_value(r).unwrap_or_default(),
                        Err(e) => serde_json::json!({"line": n, "error": e}),
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            if lines.is_empty() {
                eprintln!("no receipts yet in {}", log.path().display());
            }
            for (n, r) in lines {
                match r {
                    Ok(r) => {
                        let what = match r.outcome() {
                            Outcome::Approved => "touch ".to_owned(),
                            Outcome::Granted => "grant ".to_owned(),
                            Outcome::Denied => "DENIED".to_owned(),
                        };
                        // The log is a file the user (and so a same-user process) can write:
                        // every string from it is escaped before the terminal sees it.
                        println!(
                            "{} {what} {} {} {}{}",
                            r.time,
                            escape_control(&r.key),
                            escape_control(r.namespace.as_deref().unwrap_or("-")),
                            describe_peer(&r.peer),
                            r.reason
                                .map(|x| format!(": {}", escape_control(&x)))
                                .unwrap_or_default()
                        );
                    }
                    Err(e) => println!("line {n}: unreadable: {}", escape_control(&e)),
                }
            }
            Ok(())
        }
        AuditCmd::Verify {
            json,
            require_attested,
        } => {
            let tokens = TokenStore::open(&home)?.list()?;
            let lines = log.read_chain()?;
            let mut report = verify_chain(&lines, &tokens);
            let unattested: Vec<_> = report.chain.unattested().cloned().collect();
            if require_attested {
                for c in &unattested {
                    report
                        .problems
                        .push(auths_presence::presence::audit::Finding {
                            line: c.enrolled_line,
                            id: None,
                            outcome: None,
                            problem: Some(format!(
                                "credential {} ({}) is not attested as a genuine security key ({})",
                                escape_control(&c.id),
                                escape_control(&c.label),
                                c.attestation
                            )),
                        });
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{} signature(s) approved by a verified touch, {} under a verified grant, {} denial(s), {} approval(s) not signed",
                    report.approved, report.granted, report.denied, report.unsigned
                );
                let c = &report.chain;
                if c.chained {
                    if c.anchored_through > 0 {
                        println!(
                            "chain: intact; every line through line {} is signed by a touch",
                            c.anchored_through
                        );
                    } else {
                        println!("chain: no touch signs any line of it yet");
                    }
                    if c.unanchored > 0 {
                        println!(
                            "chain: {} line(s) after that are not yet anchored (the next touch signs them)",
                            c.unanchored
                        );
                    }
                } else if !lines.is_empty() {
                    println!("chain: none yet (the log is in the older format)");
                }
                if c.older_lines > 0 {
                    println!(
                        "chain: {} line(s) in the older format before it are unanchored",
                        c.older_lines
                    );
                }
                if !require_attested {
                    for u in &unattested {
                        println!(
                            "warning: credential {} ({}) is not attested as a genuine security key: {}",
                            escape_control(&u.id),
                            escape_control(&u.label),
                            u.attestation
                        );
                    }
                }
                for p in &report.problems {
                    let at = if p.line == 0 {
                        "tokens.json".to_owned()
                    } else {
                        format!("line {}", p.line)
                    };
                    println!(
                        "{at}: DOES NOT VERIFY: {}",
                        escape_control(p.problem.as_deref().unwrap_or(""))
                    );
                }
            }
            if report.ok() {
                Ok(())
            } else {
                Err(format!(
                    "{} problem(s) in {}: see above",
                    report.problems.len(),
                    log.path().display()
                )
                .into())
            }
        }
    }
}
