//! The fast path (issue 16) keeps every guarantee of the slow one:
//! - the key's channel is kept between approvals and opened again when the key is re-plugged
//!   (the real agent against a restarted `auths sim serve`, and the gate in-process, counting
//!   opens);
//! - the touch receipt is the one durable write before signing: the real agent killed
//!   between that receipt and the tokens.json update loses no receipt, and after a restart a
//!   cloned key replaying the receipted counter is refused;
//! - receipts of many clients at once share fsyncs and the chain stays linked and verifies.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auths_presence::ctap::device::DeviceOptions;
use auths_presence::ctap::virtual_key::{HidTimings, TouchMode, VirtualKey};
use auths_presence::ctap::CtapError;
use auths_presence::presence::audit::{highest_counters, verify_chain, AuditLog, Outcome};
use auths_presence::presence::enrollment::TokenStore;
use auths_presence::presence::key_channel::CachedOpener;
use auths_presence::presence::pin_entry::NoPinSource;
use auths_presence::presence::policy::Policy;
use auths_presence::presence::presence_gate::UserVerification;
use auths_presence::presence::prompt::Prompter;
use auths_presence::presence::touch::PresenceKey;
use serde_json::Value;
use ssh_agent_lib::proto::{AddIdentity, PrivateCredential, Request, Response};

use super::support::agent::{Agent, Opts};
use super::support::cli::{stderr, Sim, User};
use super::support::gate::{self, AUTO};
use super::support::short_tempdir;
use super::support::wire;

/// `auths agent start` for `user` on `sock` with `device`, `env` set; stopped when dropped.
struct RunningAgent<'a> {
    user: &'a User,
    sock: String,
}

impl<'a> RunningAgent<'a> {
    fn start(user: &'a User, sock: &Path, device: &str, env: &[(&str, &Path)]) -> Self {
        let sock = sock.to_str().unwrap().to_owned();
        let out = user.auths_with(
            &["agent", "start", "--socket", &sock, "--device", device],
            env,
        );
        assert!(out.status.success(), "agent start: {}", stderr(&out));
        RunningAgent { user, sock }
    }

    fn add(&self, key: &Path) {
        let out = self.user.auths(&[
            "agent",
            "add",
            key.to_str().unwrap(),
            "--socket",
            &self.sock,
        ]);
        assert!(out.status.success(), "agent add: {}", stderr(&out));
    }

    /// `ssh-keygen -Y sign` through the agent: whether a signature came back.
    fn sign(&self, key: &Path, msg: &Path) -> bool {
        let _ = std::fs::remove_file(msg.with_extension("sig"));
        Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", "git", "-f"])
            .arg(key.with_extension("pub"))
            .arg(msg)
            .env("SSH_AUTH_SOCK", &self.sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for RunningAgent<'_> {
    fn drop(&mut self) {
        let _ = self.user.auths(&["agent", "stop", "--socket", &self.sock]);
    }
}

/// An Ed25519 identity key file (and its .pub) in `dir`, and a message to sign.
fn identity(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = dir.join("id");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let msg = dir.join("msg");
    std::fs::write(&msg, "tree 4b825dc\n\ncommit\n").unwrap();
    (key, msg)
}

/// The enrolled credential's counter in tokens.json.
fn stored_counter(user: &User) -> u64 {
    let list = user.json(&["token", "list", "--json"]);
    list[0]["sign_count"].as_u64().expect("sign_count")
}

/// The receipts, as `auths audit list --json` shows them.
fn receipts(user: &User) -> Vec<Value> {
    user.json(&["audit", "list", "--json"])
        .as_array()
        .unwrap()
        .clone()
}

/// The sign counter in a receipt's authenticatorData.
fn receipt_counter(r: &Value) -> u64 {
    let ad = hex::decode(r["auth_data"].as_str().expect("auth_data")).unwrap();
    u64::from(u32::from_be_bytes(ad[33..37].try_into().unwrap()))
}

#[test]
fn a_crash_between_the_receipt_and_tokens_json_loses_nothing_and_lets_no_replay_through() {
    let user = User::new();
    let sim = Sim::start(&user.dir, "key", &[]);
    user.ok(&["token", "enroll", "--device", &sim.device()]);
    // A clone of the key as it is now: it will hand out the next counters a second time.
    std::fs::copy(user.dir.join("key.state"), user.dir.join("clone.state")).unwrap();
    std::fs::copy(user.dir.join("key.state"), user.dir.join("clone2.state")).unwrap();
    let enrolled = stored_counter(&user);
    let (key, msg) = identity(&user.dir);
    let sock = user.home.join("a.sock");

    // The agent dies (abort: no unwinding, no destructors) right after the touch's receipt
    // is durable and before tokens.json is updated.
    let crash = RunningAgent::start(
        &user,
        &sock,
        &sim.device(),
        &[("AUTHS_FAULT", Path::new("after-receipt"))],
    );
    crash.add(&key);
    assert!(
        !crash.sign(&key, &msg),
        "the agent died before the signature left it"
    );
    std::mem::forget(crash); // nothing to stop: it is dead
    let after_crash = receipts(&user);
    let last = after_crash.last().expect("the receipt was not lost");
    assert_eq!(last["outcome"], "approved", "{last}");
    assert_eq!(last["signed"], true, "{last}");
    let receipted = receipt_counter(last);
    assert!(receipted > enrolled);
    assert_eq!(
        stored_counter(&user),
        enrolled,
        "the crash came before tokens.json was updated"
    );

    // `auths token test` checks a key's counter against the receipts too: a second clone,
    // whose next counter is the one receipted, is refused though tokens.json lags.
    drop(sim);
    let clone2 = Sim::start(&user.dir, "clone2", &[]);
    let tested = user.auths(&["token", "test", "--device", &clone2.device()]);
    assert!(
        !tested.status.success(),
        "a cloned counter passed auths token test"
    );
    assert!(stderr(&tested).contains("counter"), "{}", stderr(&tested));
    drop(clone2);

    // Restarted on the clone, whose next counter is the one already receipted: refused.
    let clone = Sim::start(&user.dir, "clone", &[]);
    let again = RunningAgent::start(&user, &sock, &clone.device(), &[]);
    assert_eq!(
        stored_counter(&user),
        receipted,
        "the agent took the receipted counter back into tokens.json at start"
    );
    again.add(&key);
    assert!(
        !again.sign(&key, &msg),
        "a replayed counter must be refused after the crash"
    );
    let r = receipts(&user);
    assert_eq!(r.len(), after_crash.len() + 1);
    let denied = r.last().unwrap();
    assert_eq!(denied["outcome"], "denied", "{denied}");
    assert!(
        denied["reason"].as_str().unwrap_or("").contains("counter"),
        "{denied}"
    );
    drop(again);
    drop(clone);

    // The genuine key, one counter further, signs; the chain verifies with every receipt.
    let sim = Sim::start(&user.dir, "key", &[]);
    let genuine = RunningAgent::start(&user, &sock, &sim.device(), &[]);
    genuine.add(&key);
    assert!(genuine.sign(&key, &msg));
    let r = receipts(&user);
    assert_eq!(r.len(), after_crash.len() + 2);
    assert!(receipt_counter(r.last().unwrap()) > receipted);
    let verify = user.auths(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
}

#[test]
fn the_real_agent_keeps_its_channel_and_a_restarted_key_between_two_approvals_still_signs() {
    let user = User::new();
    let mut sim = Sim::start(&user.dir, "key", &[]);
    user.ok(&["token", "enroll", "--device", &sim.device()]);
    let (key, msg) = identity(&user.dir);
    let agent = RunningAgent::start(&user, &user.home.join("a.sock"), &sim.device(), &[]);
    agent.add(&key);
    assert!(agent.sign(&key, &msg));
    assert!(
        agent.sign(&key, &msg),
        "the kept channel serves the next one"
    );
    // Unplugged and plugged in again: the kept channel is gone.
    assert!(sim.stop());
    let _sim = Sim::start(&user.dir, "key", &[]);
    assert!(agent.sign(&key, &msg), "reopened after the replug");
    assert!(agent.sign(&key, &msg));
    let r = receipts(&user);
    assert_eq!(r.len(), 4);
    assert!(r
        .iter()
        .all(|r| r["outcome"] == "approved" && r["signed"] == true));
    assert!(user.auths(&["audit", "verify"]).status.success());
}

/// The virtual key waits a short while for a touch: only the test of a touch that never
/// comes waits it out.
fn timings() -> HidTimings {
    HidTimings {
        touch_timeout: Duration::from_millis(300),
        ..HidTimings::default()
    }
}

/// The gate in-process with a counting, kept channel over a key that tests can replace.
struct Rig {
    _dir: tempfile::TempDir,
    home: std::path::PathBuf,
    state: std::path::PathBuf,
    slot: Arc<Mutex<Arc<VirtualKey>>>,
    opens: auths_presence::presence::key_channel::OpenCount,
    agent: Agent,
    id: ssh_key::PrivateKey,
}

impl Rig {
    fn new(policy: Policy) -> Rig {
        let dir = short_tempdir();
        let home = dir.path().join("home");
        let state = dir.path().join("key.json");
        let key = gate::start_key(&state, AUTO, timings());
        gate::enroll(&key, &home, DeviceOptions::default());
        let slot = Arc::new(Mutex::new(key));
        let s = slot.clone();
        let opener = CachedOpener::new(move || -> Result<Box<dyn PresenceKey>, CtapError> {
            let key = s.lock().unwrap().clone();
            Ok(Box::new(gate::open(&key, DeviceOptions::default())?))
        });
        let opens = opener.counter();
        let gate = gate::presence_gate_with_uv(
            &home,
            opener,
            policy,
            Duration::from_secs(10),
            Prompter::new(false),
            None,
            (UserVerification::Discouraged, Box::new(NoPinSource)),
        );
        let agent = Agent::start(Arc::new(gate), Opts::default());
        let id = ssh_key::PrivateKey::random(&mut rand::thread_rng(), ssh_key::Algorithm::Ed25519)
            .unwrap();
        let add = Request::AddIdentity(AddIdentity {
            credential: PrivateCredential::Key {
                privkey: id.key_data().clone(),
                comment: "fast".into(),
            },
        });
        let mut c = UnixStream::connect(&agent.path).unwrap();
        assert_eq!(wire::request(&mut c, &add), Response::Success);
        Rig {
            _dir: dir,
            home,
            state,
            slot,
            opens,
            agent,
            id,
        }
    }

    fn sign(&self, c: &mut UnixStream, data: &[u8]) -> bool {
        matches!(
            wire::request(c, &wire::sign_request(self.id.public_key(), data)),
            Response::SignResponse(_)
        )
    }

    fn key(&self) -> Arc<VirtualKey> {
        self.slot.lock().unwrap().clone()
    }

    fn outcomes(&self) -> Vec<Outcome> {
        AuditLog::new(&self.home)
            .read()
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.unwrap().outcome())
            .collect()
    }

    fn chain_verifies(&self) -> bool {
        let lines = AuditLog::new(&self.home).read_chain().unwrap();
        let tokens = TokenStore::open(&self.home).unwrap().list().unwrap();
        verify_chain(&lines, &tokens).ok()
    }
}

#[test]
fn the_gate_opens_the_key_once_for_many_approvals_and_again_after_a_replug_or_a_failure() {
    let rig = Rig::new(Policy::PerSignature);
    let mut c = UnixStream::connect(&rig.agent.path).unwrap();
    for i in 0..5u8 {
        assert!(rig.sign(&mut c, &[i]));
    }
    assert_eq!(
        rig.opens.get(),
        1,
        "one INIT and getInfo for five approvals"
    );
    assert_eq!(rig.key().touch_count(), 5 + 1, "each had its own touch");

    // Re-plugged: a new power cycle of the same key on the same state.
    let replugged = gate::start_key(&rig.state, AUTO, timings());
    let old = std::mem::replace(&mut *rig.slot.lock().unwrap(), replugged);
    drop(old);
    assert!(rig.sign(&mut c, b"after the replug"));
    assert_eq!(rig.opens.get(), 2);
    assert!(rig.sign(&mut c, b"and again"));
    assert_eq!(rig.opens.get(), 2, "the new channel is kept in turn");

    // A touch that never comes (the key times out, a refusal) does not keep its channel:
    // the next approval opens the key afresh.
    rig.key().set_touch_mode(TouchMode::Never);
    assert!(!rig.sign(&mut c, b"nobody touches"));
    rig.key().set_touch_mode(AUTO);
    assert_eq!(rig.opens.get(), 2);
    assert!(rig.sign(&mut c, b"after"));
    assert_eq!(rig.opens.get(), 3);
    assert!(rig.chain_verifies());
    let outcomes = rig.outcomes();
    assert_eq!(
        outcomes.iter().filter(|o| **o == Outcome::Denied).count(),
        1
    );
    assert_eq!(outcomes.len(), 9);
}

#[test]
fn many_clients_in_a_grant_share_fsyncs_and_every_receipt_is_in_a_chain_that_verifies() {
    let rig = Rig::new("batch:1000:1h:process".parse().unwrap());
    let mut c = UnixStream::connect(&rig.agent.path).unwrap();
    assert!(rig.sign(&mut c, b"opens the grant"));
    let (clients, each) = (16, 10);
    std::thread::scope(|s| {
        for t in 0..clients {
            let rig = &rig;
            s.spawn(move || {
                let mut c = UnixStream::connect(&rig.agent.path).unwrap();
                for i in 0..each {
                    assert!(rig.sign(&mut c, format!("{t}/{i}").as_bytes()));
                }
            });
        }
    });
    let outcomes = rig.outcomes();
    assert_eq!(outcomes.len(), 1 + clients * each);
    assert_eq!(outcomes[0], Outcome::Approved);
    assert!(outcomes[1..].iter().all(|o| *o == Outcome::Granted));
    assert_eq!(
        rig.key().touch_count(),
        1 + 1,
        "one touch for the whole batch"
    );
    assert!(rig.chain_verifies());
}

#[test]
fn tokens_json_catches_up_with_the_receipted_counters_when_the_gate_stops() {
    let rig = Rig::new(Policy::PerSignature);
    let mut c = UnixStream::connect(&rig.agent.path).unwrap();
    for i in 0..3u8 {
        assert!(rig.sign(&mut c, &[i]));
    }
    drop(c);
    let Rig {
        _dir, home, agent, ..
    } = rig;
    // The agent stops: its gate goes, and the counters it queued are written by then.
    drop(agent);
    let highest = highest_counters(&AuditLog::new(&home).read_chain().unwrap());
    let tokens = TokenStore::open(&home).unwrap().list().unwrap();
    let receipted = highest[&tokens[0].credential_id];
    assert!(receipted >= 3);
    assert_eq!(tokens[0].sign_count, receipted);
}
