//! The gate's proof tokens and receipts, through the real presence gate over the virtual key:
//! a receipt says "signed" only after the signature; a panic in the key worker denies without
//! poisoning the policy; an unsettled approval records that nothing was signed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use auths_presence::ctap::device::DeviceOptions;
use auths_presence::ctap::virtual_key::HidTimings;
use auths_presence::ctap::CtapError;
use auths_presence::presence::audit::{verify_chain, AuditLog, Outcome, Receipt, VerifyReport};
use auths_presence::presence::enrollment::TokenStore;
use auths_presence::presence::gate::{Gate, GateError};
use auths_presence::presence::policy::Policy;
use auths_presence::presence::presence_gate::PresenceGate;
use auths_presence::presence::prompt::{PromptEvent, Prompter};
use auths_presence::presence::touch::PresenceKey;

use crate::support::gate::{
    enroll, open, presence_gate, sshsig_request as request, start_key, AUTO,
};
use crate::support::DEADLINE;

struct Setup {
    _dir: tempfile::TempDir,
    gate: PresenceGate,
    home: PathBuf,
    panic_next: Arc<AtomicBool>,
    rt: tokio::runtime::Runtime,
}

fn options() -> DeviceOptions {
    DeviceOptions {
        deadline: DEADLINE,
        ..DeviceOptions::default()
    }
}

/// A gate over an enrolled virtual key that touches at once; its opener panics once when
/// `panic_next` is set (a bug in a key backend).
fn setup(policy: Policy) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let key = start_key(&dir.path().join("key.json"), AUTO, HidTimings::default());
    enroll(&key, &home, options());
    let panic_next = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&panic_next);
    let opener = move || -> Result<Box<dyn PresenceKey>, CtapError> {
        if flag.swap(false, Ordering::SeqCst) {
            panic!("a key backend bug");
        }
        Ok(Box::new(open(&key, options())?))
    };
    let gate = presence_gate(&home, opener, policy, DEADLINE, Prompter::new(false), None);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    Setup {
        _dir: dir,
        gate,
        home,
        panic_next,
        rt,
    }
}

fn receipts(home: &Path) -> Vec<Receipt> {
    AuditLog::new(home)
        .read()
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.unwrap())
        .collect()
}

fn report(home: &Path) -> VerifyReport {
    let lines = AuditLog::new(home).read_chain().unwrap();
    verify_chain(&lines, &TokenStore::open(home).unwrap().list().unwrap())
}

#[test]
fn a_panicking_key_worker_denies_and_the_policy_holds_afterwards() {
    let s = setup("batch:3:60s:process".parse().unwrap());
    s.panic_next.store(true, Ordering::SeqCst);
    let first = s.rt.block_on(s.gate.approve(request(1)));
    assert!(matches!(first, Err(GateError::WorkerStopped)), "{first:?}");
    let r = receipts(&s.home);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].outcome(), Outcome::Denied);
    assert!(!r[0].signed, "a panic leaves no false receipt");

    // The grants lock is not poisoned and the batch policy still holds: one touch, then a
    // grant use.
    let touched = s.rt.block_on(s.gate.approve(request(2))).unwrap();
    assert_eq!(touched.grant_remaining(), None, "a touch");
    touched.signed().unwrap();
    let granted = s.rt.block_on(s.gate.approve(request(3))).unwrap();
    assert_eq!(
        granted.grant_remaining(),
        Some(1),
        "a grant use, not a touch"
    );
    granted.signed().unwrap();
    let rep = report(&s.home);
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!((rep.denied, rep.approved, rep.granted), (1, 1, 1));
}

#[test]
fn a_receipt_says_signed_only_after_the_signature() {
    let s = setup("batch:3:60s:process".parse().unwrap());
    let approval = s.rt.block_on(s.gate.approve(request(1))).unwrap();
    assert!(
        receipts(&s.home).is_empty(),
        "nothing is written before the outcome"
    );
    approval.not_signed("the signer failed").unwrap();
    let r = receipts(&s.home);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].outcome(), Outcome::Approved);
    assert!(!r[0].signed);
    assert_eq!(r[0].reason.as_deref(), Some("the signer failed"));
    // An unsigned touch opens no grant: the next request needs its own touch.
    let next = s.rt.block_on(s.gate.approve(request(2))).unwrap();
    assert_eq!(next.grant_remaining(), None);
    // Dropped unsettled (a panic in the agent, a client gone): recorded as not signed.
    drop(next);
    let r = receipts(&s.home);
    assert_eq!(r.len(), 2);
    assert!(!r[1].signed);
    let rep = report(&s.home);
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!((rep.approved, rep.unsigned), (0, 2));
}

#[test]
fn an_approval_covers_only_its_own_key_and_bytes() {
    let s = setup(Policy::PerSignature);
    let approval = s.rt.block_on(s.gate.approve(request(1))).unwrap();
    assert!(approval.covers("SHA256:identity", &[1; 32]));
    assert!(!approval.covers("SHA256:identity", &[2; 32]));
    assert!(!approval.covers("SHA256:other", &[1; 32]));
    approval.signed().unwrap();
}

#[test]
fn lowering_a_counter_in_tokens_json_does_not_let_a_cloned_key_through() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let state = dir.path().join("key.json");
    let key = start_key(&state, AUTO, HidTimings::default());
    enroll(&key, &home, options());
    // A clone of the key as it is now: its counter will fall behind the original's.
    let cloned_state = dir.path().join("clone.json");
    std::fs::copy(&state, &cloned_state).unwrap();
    let slot = Arc::new(std::sync::Mutex::new(key));
    let opener = {
        let slot = Arc::clone(&slot);
        move || -> Result<Box<dyn PresenceKey>, CtapError> {
            let key = Arc::clone(&slot.lock().unwrap());
            Ok(Box::new(open(&key, options())?))
        }
    };
    let gate = presence_gate(
        &home,
        opener,
        Policy::PerSignature,
        DEADLINE,
        Prompter::new(false),
        None,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for d in 1..=2 {
        rt.block_on(gate.approve(request(d)))
            .unwrap()
            .signed()
            .unwrap();
    }
    // A same-user process edits tokens.json to lower the counter, and swaps in the clone.
    let tokens = home.join("tokens.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&tokens).unwrap()).unwrap();
    for t in json["tokens"].as_array_mut().unwrap() {
        t["sign_count"] = 0.into();
    }
    std::fs::write(&tokens, serde_json::to_vec(&json).unwrap()).unwrap();
    *slot.lock().unwrap() = start_key(&cloned_state, AUTO, HidTimings::default());
    let refused = rt.block_on(gate.approve(request(3)));
    assert!(
        matches!(
            refused,
            Err(GateError::Verification(
                auths_presence::presence::verify::VerifyError::CounterNotIncreased { .. }
            ))
        ),
        "{refused:?}"
    );
}

#[test]
fn a_request_that_goes_away_while_queued_is_denied_under_its_announced_id() {
    let s = setup(Policy::PerSignature);
    // A touched approval holds the device turn until its receipt is written.
    let first = s.rt.block_on(s.gate.approve(request(1))).unwrap();
    let mut events = s.gate.prompter().subscribe();
    let id = s.rt.block_on(async {
        let second = s.gate.approve(request(2));
        tokio::pin!(second);
        tokio::select! {
            r = &mut second => panic!("no turn while the first holds it: {r:?}"),
            e = events.recv() => match e.unwrap() {
                // Announced: it has polled up to its wait for the turn.
                PromptEvent::Requested { id, .. } => id,
                other => panic!("{other:?}"),
            },
        }
        // Its client hangs up: the future is dropped while it waits.
    });
    assert_eq!(
        events.try_recv().unwrap(),
        PromptEvent::Denied {
            id: id.clone(),
            reason: GateError::Cancelled.to_string()
        }
    );
    first.signed().unwrap();
    let r = receipts(&s.home);
    assert_eq!(
        r.iter()
            .map(|r| (r.id.as_str(), r.outcome()))
            .collect::<Vec<_>>()[0],
        (id.as_str(), Outcome::Denied)
    );
    assert_eq!(r[1].outcome(), Outcome::Approved);
}
