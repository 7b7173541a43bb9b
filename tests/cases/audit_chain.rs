//! The audit log as a hash chain the security key signs, through the real presence gate over
//! the virtual key: lines deleted, reordered, edited or inserted are found, even when the
//! attacker rewrites every `prev` after the change; a software key put into tokens.json by hand
//! and the receipts it "approves" are found; an older log is read and reported as unanchored;
//! `auths audit verify` exits non-zero and says where.

use std::path::{Path, PathBuf};

use auths_presence::ctap::device::DeviceOptions;
use auths_presence::ctap::virtual_key::{HidTimings, VirtualKey};
use auths_presence::ctap::CtapError;
use auths_presence::presence::audit::{
    line_hash, parse_chain, verify_chain, AuditLog, ChainLine, VerifyReport, AUDIT_FILE,
};
use auths_presence::presence::enrollment::{TokenStore, TOKENS_FILE};
use auths_presence::presence::gate::Gate;
use auths_presence::presence::policy::Policy;
use auths_presence::presence::presence_gate::PresenceGate;
use auths_presence::presence::prompt::Prompter;
use auths_presence::presence::touch::PresenceKey;
use sha2::Digest;
use std::sync::Arc;

use crate::support::cli::AUTHS;
use crate::support::gate::{
    enroll, open, presence_gate, sshsig_request as request, start_key, AUTO,
};
use crate::support::openssh::run_bounded;
use crate::support::DEADLINE;

fn options() -> DeviceOptions {
    DeviceOptions {
        deadline: DEADLINE,
        ..DeviceOptions::default()
    }
}

fn gate_over(home: &Path, key: &Arc<VirtualKey>) -> PresenceGate {
    let key = Arc::clone(key);
    let opener =
        move || -> Result<Box<dyn PresenceKey>, CtapError> { Ok(Box::new(open(&key, options())?)) };
    presence_gate(
        home,
        opener,
        Policy::PerSignature,
        DEADLINE,
        Prompter::new(false),
        None,
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A home with one enrolled virtual key and `touches` signatures, each approved by a touch:
/// the chain is [chain_started, enrolled, receipt 1, …].
struct Logged {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    home: PathBuf,
    key: Arc<VirtualKey>,
}

impl Logged {
    fn new(touches: u8) -> Logged {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let key = start_key(&dir.path().join("key.json"), AUTO, HidTimings::default());
        enroll(&key, &home, options());
        let l = Logged {
            dir: dir.path().to_path_buf(),
            _dir: dir,
            home,
            key,
        };
        l.sign(1..=touches);
        l
    }

    fn sign(&self, digests: impl IntoIterator<Item = u8>) {
        let gate = gate_over(&self.home, &self.key);
        let rt = runtime();
        for d in digests {
            rt.block_on(gate.approve(request(d)))
                .unwrap()
                .signed()
                .unwrap();
        }
    }

    fn raw(&self) -> Vec<String> {
        std::fs::read_to_string(self.home.join(AUDIT_FILE))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write(&self, lines: &[String]) {
        std::fs::write(self.home.join(AUDIT_FILE), lines.join("\n") + "\n").unwrap();
    }

    fn report(&self) -> VerifyReport {
        report_of(&self.raw(), &self.home)
    }

    /// Run `auths ARGS` on this home.
    fn auths(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = std::process::Command::new(AUTHS);
        cmd.args(args).env("AUTHS_HOME", &self.home);
        run_bounded(cmd)
    }
}

fn report_of(lines: &[String], home: &Path) -> VerifyReport {
    let chain: Vec<ChainLine> = parse_chain(&(lines.join("\n") + "\n"));
    verify_chain(&chain, &TokenStore::open(home).unwrap().list().unwrap())
}

/// What an attacker who knows the format does after changing a line: rewrite the `prev` of
/// every line after the first one so that each names the hash of the line before it again.
fn relink(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(l).unwrap();
        if i > 0 && v.contains_key("prev") {
            v.insert(
                "prev".into(),
                hex::encode(line_hash(out.last().unwrap())).into(),
            );
        }
        out.push(serde_json::to_string(&v).unwrap());
    }
    out
}

fn problems(r: &VerifyReport) -> Vec<String> {
    r.problems
        .iter()
        .map(|p| format!("line {}: {}", p.line, p.problem.clone().unwrap_or_default()))
        .collect()
}

fn edit(line: &str, member: &str, value: serde_json::Value) -> String {
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
    v.insert(member.into(), value);
    serde_json::to_string(&v).unwrap()
}

#[test]
fn an_intact_chain_verifies_and_says_how_far_the_touches_anchor_it() {
    let l = Logged::new(3);
    let raw = l.raw();
    assert_eq!(raw.len(), 5, "chain start, enrollment, three receipts");
    assert!(raw[0].contains(r#""event":"chain_started""#), "{}", raw[0]);
    assert!(raw[1].contains(r#""event":"enrolled""#), "{}", raw[1]);
    let r = l.report();
    assert!(r.ok(), "{:?}", problems(&r));
    assert_eq!(r.approved, 3);
    assert!(r.chain.chained);
    // The last touch's client data commits to the line before its own receipt.
    assert_eq!(r.chain.anchored_through, 4);
    assert_eq!(
        r.chain.unanchored, 1,
        "the last receipt waits for the next touch"
    );
    assert_eq!(r.chain.credentials.len(), 1);
    assert_eq!(r.chain.credentials[0].attestation, "virtual");
}

#[test]
fn a_deleted_line_is_found_with_or_without_the_prev_links_rewritten() {
    let l = Logged::new(4);
    let mut raw = l.raw();
    raw.remove(3); // receipt 2
    let r = report_of(&raw, &l.home);
    assert!(!r.ok());
    assert!(
        problems(&r)
            .iter()
            .any(|p| p.starts_with("line 4:") && p.contains("does not follow")),
        "{:?}",
        problems(&r)
    );
    let relinked = relink(&raw);
    let r = report_of(&relinked, &l.home);
    assert!(
        problems(&r)
            .iter()
            .any(|p| p.contains("committed to a chain head that is not in this log")),
        "the touch after the deletion signed the deleted line: {:?}",
        problems(&r)
    );
}

#[test]
fn reordered_lines_are_found() {
    let l = Logged::new(4);
    let mut raw = l.raw();
    raw.swap(3, 4); // receipts 2 and 3
    assert!(!report_of(&raw, &l.home).ok());
    let r = report_of(&relink(&raw), &l.home);
    let p = problems(&r);
    assert!(!r.ok(), "{p:?}");
    assert!(
        p.iter().any(|p| p.contains("chain head")),
        "a touch's commitment no longer matches: {p:?}"
    );
}

#[test]
fn an_edited_line_is_found_even_where_no_signature_covers_the_member() {
    let l = Logged::new(3);
    let raw = l.raw();
    // `time` is not in the client data: only the chain can show that it changed.
    let mut edited = raw.clone();
    edited[2] = edit(&raw[2], "time", 1.into());
    let r = report_of(&edited, &l.home);
    assert!(
        problems(&r)
            .iter()
            .any(|p| p.starts_with("line 4:") && p.contains("does not follow")),
        "{:?}",
        problems(&r)
    );
    let r = report_of(&relink(&edited), &l.home);
    assert!(
        problems(&r)
            .iter()
            .any(|p| p.starts_with("line 4:") && p.contains("chain head")),
        "the touch of line 4 signed the original line 3: {:?}",
        problems(&r)
    );
}

#[test]
fn an_inserted_line_is_found() {
    let l = Logged::new(3);
    let raw = l.raw();
    // A copy of a real denial-free receipt, inserted before the last touch.
    let mut inserted = raw.clone();
    inserted.insert(3, edit(&raw[2], "id", "00".repeat(12).into()));
    assert!(!report_of(&inserted, &l.home).ok());
    let r = report_of(&relink(&inserted), &l.home);
    assert!(
        problems(&r).iter().any(|p| p.contains("chain head")),
        "{:?}",
        problems(&r)
    );
    // An older-format line slipped into the chain.
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&raw[2]).unwrap();
    v.remove("v");
    v.remove("prev");
    let mut older = raw.clone();
    older.insert(3, serde_json::to_string(&v).unwrap());
    assert!(problems(&report_of(&older, &l.home))
        .iter()
        .any(|p| p.contains("without the chain's format")));
}

/// The attack the chain exists for: a same-user process puts a software key (here a second
/// virtual key) into tokens.json by hand as a "backup", and has the gate approve with it. The
/// receipts it gets verify on their own, but the chain never enrolled that key.
#[test]
fn a_software_key_added_to_tokens_json_by_hand_is_found() {
    let l = Logged::new(2);
    let other_home = l.dir.join("other");
    let soft = start_key(&l.dir.join("soft.json"), AUTO, HidTimings::default());
    enroll(&soft, &other_home, options());
    let soft_enrollment = TokenStore::open(&other_home).unwrap().list().unwrap()[0].clone();

    // tokens.json edited by hand: the software key, marked as a real one.
    let path = l.home.join(TOKENS_FILE);
    let mut tokens: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut forged = serde_json::to_value(&soft_enrollment).unwrap();
    forged["virtual_key"] = false.into();
    forged["label"] = "backup".into();
    tokens["tokens"]
        .as_array_mut()
        .unwrap()
        .push(forged.clone());
    std::fs::write(&path, serde_json::to_vec(&tokens).unwrap()).unwrap();

    // The gate of this home now takes the software key's touches (it reads tokens.json).
    let gate = gate_over(&l.home, &soft);
    runtime()
        .block_on(gate.approve(request(9)))
        .unwrap()
        .signed()
        .unwrap();

    let r = l.report();
    let p = problems(&r);
    assert!(
        p.iter()
            .any(|p| p.starts_with("line 5:") && p.contains("not enrolled")),
        "the receipt by the software key: {p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.starts_with("line 0:") && p.contains("backup")),
        "the hand-added credential: {p:?}"
    );

    // Through the binary: exit non-zero, saying where.
    let out = l.auths(&["audit", "verify"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("tokens.json: DOES NOT VERIFY"), "{stdout}");
    assert!(stdout.contains("line 5: DOES NOT VERIFY"), "{stdout}");
}

/// The attacker writes the enrollment line into the chain too (well linked, after the last
/// touch): the chain then holds the key, and only its attestation tells it apart.
#[test]
fn a_forged_enrollment_line_is_reported_as_unattested_and_refused_with_require_attested() {
    let l = Logged::new(1);
    let soft = start_key(&l.dir.join("soft.json"), AUTO, HidTimings::default());
    let other_home = l.dir.join("other");
    enroll(&soft, &other_home, options());
    let mut forged = TokenStore::open(&other_home).unwrap().list().unwrap()[0].clone();
    forged.virtual_key = false;
    forged.label = "backup".into();
    // A careful forger: client data naming this log's head, and the hash the attestation is
    // said to have signed made to match it (the statement itself then no longer verifies).
    let head = AuditLog::new(&l.home).head().unwrap();
    forged.client_data = serde_json::json!({
        "type": "auths.presence.enroll.v1",
        "nonce": "00",
        "chain": head,
    })
    .to_string();
    forged.attestation.client_data_hash =
        hex::encode(sha2::Sha256::digest(forged.client_data.as_bytes()));
    // As `auths token enroll` would write it, through the library, so the chain is well linked.
    TokenStore::open(&l.home).unwrap().add(forged).unwrap();
    let gate = gate_over(&l.home, &soft);
    runtime()
        .block_on(gate.approve(request(9)))
        .unwrap()
        .signed()
        .unwrap();

    let r = l.report();
    assert!(r.ok(), "well linked: {:?}", problems(&r));
    let unattested: Vec<_> = r.chain.unattested().map(|c| c.label.clone()).collect();
    assert!(unattested.contains(&"backup".to_owned()), "{unattested:?}");

    let out = l.auths(&["audit", "verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("is not attested"), "{stdout}");
    let out = l.auths(&["audit", "verify", "--require-attested", "--json"]);
    assert!(!out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["problem"].as_str().unwrap().contains("backup")));
}

#[test]
fn an_older_log_is_read_reported_unanchored_and_the_chain_begins_after_it() {
    let l = Logged::new(2);
    // The same receipts as an older version wrote them: no `v`, no `prev`, no event lines.
    let older: Vec<String> = l
        .raw()
        .iter()
        .filter(|x| !x.contains(r#""event":"#))
        .map(|x| {
            let mut v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(x).unwrap();
            v.remove("v");
            v.remove("prev");
            serde_json::to_string(&v).unwrap()
        })
        .collect();
    l.write(&older);
    let r = l.report();
    assert!(r.ok(), "{:?}", problems(&r));
    assert!(!r.chain.chained);
    assert_eq!(r.chain.older_lines, 2);
    assert_eq!(r.approved, 2);

    l.sign([3, 4]);
    let raw = l.raw();
    assert!(raw[2].contains(r#""event":"chain_started""#), "{}", raw[2]);
    assert!(raw[2].contains(r#""older_lines":2"#), "{}", raw[2]);
    let r = l.report();
    assert!(r.ok(), "{:?}", problems(&r));
    assert!(r.chain.chained);
    assert_eq!(r.chain.older_lines, 2);
    assert_eq!(r.approved, 4);
    assert_eq!(
        r.chain.anchored_through, 4,
        "the fourth touch signed the third"
    );
}

#[test]
fn a_line_cut_short_by_a_crash_is_reported_and_the_chain_goes_on_after_it() {
    let l = Logged::new(1);
    let path = l.home.join(AUDIT_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(br#"{"v":2,"prev":"ab","id":"#);
    std::fs::write(&path, &bytes).unwrap();
    l.sign([2, 3]);
    let chain = AuditLog::new(&l.home).read_chain().unwrap();
    assert_eq!(chain.len(), 6, "the cut line stays a line of its own");
    let r = l.report();
    let p = problems(&r);
    assert_eq!(p.len(), 1, "only the cut line: {p:?}");
    assert!(p[0].starts_with("line 4:"), "{p:?}");
    assert_eq!(r.approved, 3);
}

/// An enrollment's client data names the chain head, and the key's attestation signed it: an
/// enrollment line is anchored by the key that was enrolled, not only by later touches.
#[test]
fn an_enrollment_commits_to_the_chain_before_it() {
    let l = Logged::new(2);
    let raw = l.raw();
    let enrolled: serde_json::Value = serde_json::from_str(&raw[1]).unwrap();
    let cd: serde_json::Value =
        serde_json::from_str(enrolled["enrollment"]["client_data"].as_str().unwrap()).unwrap();
    assert_eq!(cd["type"], "auths.presence.enroll.v1");
    assert_eq!(cd["chain"], hex::encode(line_hash(&raw[0])));

    // A second key enrolled after two receipts; then a receipt before it deleted, and every
    // `prev` after it rewritten.
    let second = start_key(&l.dir.join("second.json"), AUTO, HidTimings::default());
    enroll(&second, &l.home, options());
    let r = l.report();
    assert!(r.ok(), "{:?}", problems(&r));
    let mut raw = l.raw();
    assert!(raw[4].contains(r#""event":"enrolled""#), "{}", raw[4]);
    raw.remove(2);
    let p = problems(&report_of(&relink(&raw), &l.home));
    assert!(
        p.iter()
            .any(|p| p.starts_with("line 4:") && p.contains("the enrollment committed")),
        "{p:?}"
    );

    // The client data changed: the attestation no longer signs it.
    let mut raw = l.raw();
    let mut v: serde_json::Value = serde_json::from_str(&raw[4]).unwrap();
    let changed = v["enrollment"]["client_data"].as_str().unwrap().replacen(
        "\"nonce\":\"",
        "\"nonce\":\"0",
        1,
    );
    v["enrollment"]["client_data"] = changed.into();
    raw[4] = serde_json::to_string(&v).unwrap();
    let p = problems(&report_of(&relink(&raw), &l.home));
    assert!(
        p.iter()
            .any(|p| p.contains("not what its attestation signed")),
        "{p:?}"
    );
}
