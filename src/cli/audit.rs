//! `auths audit list|verify`.

use clap::Subcommand;

use auths_presence::presence::audit::{verify_log, AuditLog, Outcome};
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
    /// Re-verify every receipt offline against the enrolled keys.
    Verify {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
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
        AuditCmd::Verify { json } => {
            let tokens = TokenStore::open(&home)?.list()?;
            let lines = log.read()?;
            let report = verify_log(&lines, &tokens);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{} signature(s) approved by a verified touch, {} under a verified grant, {} denial(s), {} approval(s) not signed",
                    report.approved, report.granted, report.denied, report.unsigned
                );
                for p in &report.problems {
                    println!(
                        "line {}: DOES NOT VERIFY: {}",
                        p.line,
                        escape_control(p.problem.as_deref().unwrap_or(""))
                    );
                }
            }
            if report.ok() {
                Ok(())
            } else {
                Err(format!(
                    "{} receipt(s) in {} do not verify",
                    report.problems.len(),
                    log.path().display()
                )
                .into())
            }
        }
    }
}
