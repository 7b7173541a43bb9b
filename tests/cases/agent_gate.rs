//! The presence-gated agent end to end: the real socket, the real gate, the real CTAPHID and
//! CTAP2 code against the virtual key, and real OpenSSH clients (`ssh-add`, `ssh-keygen -Y
//! sign` / `-Y verify`). No signature without a verified touch; one touch approves exactly one
//! request (or one bounded batch); hang-ups cancel; replays and cloned-key counters are refused
//! and logged; receipts re-verify offline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auths_presence::agent::keys::UnlockPolicy;
use auths_presence::ctap::backend::{GetAssertionArgs, SecurityKey, UvInfo, Waiting};
use auths_presence::ctap::client_pin::{PinError, PinUvAuthToken};
use auths_presence::ctap::command::GetAssertionResponse;
use auths_presence::ctap::device::DeviceOptions;
use auths_presence::ctap::select::OpenedKey;
use auths_presence::ctap::virtual_key::{HidTimings, PinConfig, TouchError, TouchMode, VirtualKey};
use auths_presence::ctap::CtapError;
use auths_presence::presence::audit::{verify_chain, verify_log, AuditLog, Outcome};
use auths_presence::presence::enrollment::TokenStore;
use auths_presence::presence::gate::GateError;
use auths_presence::presence::pin_entry::{NoPinSource, PinSource};
use auths_presence::presence::policy::Policy;
use auths_presence::presence::presence_gate::{BusyAwareOpener, UserVerification};
use auths_presence::presence::prompt::{PromptEvent, Prompter};
use auths_presence::presence::touch::PresenceKey;
use sha2::Digest as _;
use ssh_agent_lib::proto::{Request, Response};

use super::support::agent::{Agent, Opts};
use super::support::gate::{self, wait_event, AUTO};
use super::support::openssh::{
    ecdsa_key_with_short_scalar, keygen, keygen_one, public_key, run_bounded, s, KeyFiles,
    SSH_KEYGEN,
};
use super::support::wire::{encode, recv, request, send, sign_request, FAILURE};
use super::support::{short_tempdir, DEADLINE};

/// Shared between the rig and the gate's key opener, so a test can swap the key (restart it
/// on an old state file) or wrap its answers.
type KeySlot = Arc<Mutex<Arc<VirtualKey>>>;

struct Rig {
    dir: tempfile::TempDir,
    home: PathBuf,
    state: PathBuf,
    key: KeySlot,
    /// Offset added to the gate's clock (grant lifetimes).
    clock_offset: Arc<Mutex<Duration>>,
    prompter: Prompter,
    agent: Agent,
    keys: KeyFiles,
    /// When set, the gate's key returns this recorded assertion instead of asking the key.
    replay: Arc<Mutex<Option<GetAssertionResponse>>>,
    /// The last assertion the key gave.
    recorded: Arc<Mutex<Option<GetAssertionResponse>>>,
    enroll_touches: u64,
}

/// How long the key waits for a touch. Only a key that is never touched is waited out (that
/// refusal is under test), so only it gets seconds. Otherwise a touch comes at once or the test
/// cancels it, and a wait as long as the test's own bound costs nothing while keeping a loaded
/// machine (a slow `ssh-add -l` while the hang-up test's touch is pending) from timing the
/// touch out before the test acts.
fn touch_wait(mode: &TouchMode) -> Duration {
    match mode {
        TouchMode::Never => Duration::from_secs(2),
        _ => DEADLINE,
    }
}

/// A key started with `AUTO` (enrollment needs a touch), waiting `touch_wait(mode)` for a touch.
fn start_key(state: &Path, mode: &TouchMode) -> Arc<VirtualKey> {
    let timings = HidTimings {
        touch_timeout: touch_wait(mode),
        ..HidTimings::default()
    };
    gate::start_key(state, AUTO, timings)
}

/// The channel and the gate wait a second longer than the key, so the key's own answer (a
/// timeout, for `Never`) is what the gate sees.
fn device_options(wait: Duration) -> DeviceOptions {
    DeviceOptions {
        deadline: wait + Duration::from_secs(1),
        ..DeviceOptions::default()
    }
}

/// The gate's view of the key: the real `OpenedKey` over the virtual key's report
/// transport, plus a recorder (and, for the replay test, a replayer) of assertions.
struct Recording {
    inner: OpenedKey,
    replay: Arc<Mutex<Option<GetAssertionResponse>>>,
    recorded: Arc<Mutex<Option<GetAssertionResponse>>>,
}

impl PresenceKey for Recording {
    fn get_assertion(
        &mut self,
        args: &GetAssertionArgs<'_>,
        wait: Waiting<'_>,
    ) -> Result<GetAssertionResponse, CtapError> {
        if let Some(old) = self.replay.lock().unwrap().clone() {
            return Ok(old);
        }
        let r = SecurityKey::get_assertion(&mut self.inner, args, wait)?;
        *self.recorded.lock().unwrap() = Some(r.clone());
        Ok(r)
    }

    fn is_virtual(&self) -> bool {
        true
    }

    fn description(&self) -> &str {
        SecurityKey::description(&self.inner)
    }

    fn uv_info(&self) -> Option<UvInfo> {
        SecurityKey::uv_info(&self.inner)
    }

    fn pin_token(
        &mut self,
        pin: &[u8],
        permissions: u64,
        rp_id: &str,
    ) -> Result<PinUvAuthToken, PinError> {
        SecurityKey::pin_token(&mut self.inner, pin, permissions, rp_id)
    }

    fn uv_token(
        &mut self,
        permissions: u64,
        rp_id: &str,
        wait: Waiting<'_>,
    ) -> Result<PinUvAuthToken, PinError> {
        SecurityKey::uv_token(&mut self.inner, permissions, rp_id, wait)
    }

    fn get_assertion_with_hmac_secret(
        &mut self,
        args: &GetAssertionArgs<'_>,
        salt: &auths_presence::ctap::hmac_secret::Salt,
        wait: Waiting<'_>,
    ) -> Result<
        (
            GetAssertionResponse,
            auths_presence::ctap::hmac_secret::Request,
        ),
        CtapError,
    > {
        SecurityKey::get_assertion_with_hmac_secret(&mut self.inner, args, salt, wait)
    }
}

/// A key with clientPIN, and how the gate verifies the user on it.
struct UvSetup {
    config: PinConfig,
    uv: UserVerification,
    pins: gate::CountedPin,
    /// The key's default credProtect level.
    cred_protect: Option<u8>,
}

impl Rig {
    /// A rig whose key touches at once, with the default unlock window.
    fn touching(policy: Policy) -> Rig {
        Rig::new(policy, AUTO, UnlockPolicy::default())
    }

    fn new(policy: Policy, mode: TouchMode, agent_policy: UnlockPolicy) -> Rig {
        Rig::with_opts(
            policy,
            mode,
            Opts {
                policy: agent_policy,
                ..Opts::default()
            },
        )
    }

    fn with_opts(policy: Policy, mode: TouchMode, opts: Opts) -> Rig {
        Rig::build(policy, mode, opts, None)
    }

    /// A rig whose key has clientPIN as `uv.config` says and whose gate verifies the user as
    /// `uv.uv` says, with PINs from `uv.pins`.
    fn build(policy: Policy, mode: TouchMode, opts: Opts, uv: Option<UvSetup>) -> Rig {
        let dir = short_tempdir();
        let home = dir.path().join("home");
        let state = dir.path().join("key.json");
        let wait = touch_wait(&mode);
        let (pin_config, gate_uv, cred_protect) = match uv {
            Some(u) => (Some(u.config), Some((u.uv, u.pins)), u.cred_protect),
            None => (None, None, None),
        };
        let key = gate::start_key_with_cred_protect(
            &state,
            AUTO,
            HidTimings {
                touch_timeout: wait,
                ..HidTimings::default()
            },
            pin_config,
            cred_protect,
        );
        // Enroll through the real client, as `auths token enroll` does.
        let enroll_touches = match &gate_uv {
            Some((_, pins)) => {
                gate::enroll_with_pins(&key, &home, device_options(wait), &mut pins.clone())
            }
            None => gate::enroll(&key, &home, device_options(wait)),
        };
        key.set_touch_mode(mode);
        let slot: KeySlot = Arc::new(Mutex::new(key));
        let replay = Arc::new(Mutex::new(None));
        let recorded = Arc::new(Mutex::new(None));
        let opener = {
            let slot = slot.clone();
            let replay = replay.clone();
            let recorded = recorded.clone();
            BusyAwareOpener(
                move |on_busy: &mut dyn FnMut()| -> Result<Box<dyn PresenceKey>, CtapError> {
                    let key = slot.lock().unwrap().clone();
                    let inner = gate::open_reporting_busy(&key, device_options(wait), on_busy)?;
                    Ok(Box::new(Recording {
                        inner,
                        replay: replay.clone(),
                        recorded: recorded.clone(),
                    }))
                },
            )
        };
        let clock_offset = Arc::new(Mutex::new(Duration::ZERO));
        let base = Instant::now();
        let offset = clock_offset.clone();
        let prompter = Prompter::new(false);
        let (uv, pins): (UserVerification, Box<dyn PinSource + Send>) = match gate_uv {
            Some((uv, pins)) => (uv, Box::new(pins)),
            None => (UserVerification::Discouraged, Box::new(NoPinSource)),
        };
        let gate = gate::presence_gate_with_uv(
            &home,
            opener,
            policy,
            wait + Duration::from_secs(1),
            prompter.clone(),
            Some(Arc::new(move || base + *offset.lock().unwrap())),
            (uv, pins),
        );
        let agent = Agent::start(Arc::new(gate), opts);
        let keys = keygen(dir.path());
        Rig {
            dir,
            home,
            state,
            key: slot,
            clock_offset,
            prompter,
            agent,
            keys,
            replay,
            recorded,
            enroll_touches,
        }
    }

    /// A per-signature rig whose key waits for a manual touch, with both keys added, and a
    /// subscription to its prompts.
    fn waiting_for_a_touch() -> (Rig, tokio::sync::broadcast::Receiver<PromptEvent>) {
        let rig = Rig::new(
            Policy::PerSignature,
            TouchMode::Manual,
            UnlockPolicy::default(),
        );
        rig.add_keys();
        let events = rig.prompter.subscribe();
        (rig, events)
    }

    /// Send a raw sign request for `data` with the Ed25519 key on `client` (no answer read).
    fn ask_to_sign(&self, client: &mut std::os::unix::net::UnixStream, data: &[u8]) {
        let public = public_key(&self.keys.ed25519);
        send(client, &encode(&sign_request(&public, data)));
    }

    fn key(&self) -> Arc<VirtualKey> {
        self.key.lock().unwrap().clone()
    }

    /// Add both identity keys to the agent, then delete the private key files, so
    /// `ssh-keygen -Y sign` can only sign through the agent (it falls back to the file).
    fn add_keys(&self) {
        self.agent.add(&[&self.keys.ed25519, &self.keys.ecdsa]);
        std::fs::remove_file(&self.keys.ed25519).unwrap();
        std::fs::remove_file(&self.keys.ecdsa).unwrap();
    }

    /// Touches since the rig was built (enrollment took one).
    fn touches(&self) -> u64 {
        self.key().touch_count() - self.enroll_touches
    }

    /// `ssh-keygen -Y sign -n git` over `name` with `key`, run by `via` (None: directly, so
    /// the test process is its parent; Some(sh): through a shell, another parent).
    fn sign(&self, key: &Path, name: &str, via_shell: bool) -> bool {
        self.sign_with(Path::new(SSH_KEYGEN), "git", key, name, via_shell)
    }

    /// `PROGRAM -Y sign -n NAMESPACE` (an ssh-keygen) of a fresh message `name`, as a child of
    /// this test process (or of a shell, with `via_shell`: another parent).
    fn sign_with(
        &self,
        program: &Path,
        namespace: &str,
        key: &Path,
        name: &str,
        via_shell: bool,
    ) -> bool {
        let msg = self.dir.path().join(name);
        std::fs::write(&msg, format!("commit {name}\n")).unwrap();
        let _ = std::fs::remove_file(msg.with_extension("sig"));
        let pubkey = key.with_extension("pub");
        let mut cmd = if via_shell {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(format!(
                "'{}' -Y sign -n {namespace} -f '{}' '{}'",
                s(program),
                s(&pubkey),
                s(&msg)
            ));
            c
        } else {
            let mut c = Command::new(program);
            c.args(["-Y", "sign", "-n", namespace, "-f", s(&pubkey), s(&msg)]);
            c
        };
        self.agent.client_env(&mut cmd);
        let out = run_bounded(cmd);
        let mut sig = msg.as_os_str().to_owned();
        sig.push(".sig");
        let sig = PathBuf::from(sig);
        assert_eq!(out.status.success(), sig.exists(), "{out:?}");
        out.status.success()
    }

    /// `ssh-keygen -Y verify` of a signature made by `sign`.
    fn verify(&self, key: &Path, name: &str) -> bool {
        let msg = self.dir.path().join(name);
        let allowed = self.dir.path().join("allowed_signers");
        let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        std::fs::write(&allowed, format!("dev@example.com {pubkey}")).unwrap();
        let mut cmd = Command::new(SSH_KEYGEN);
        cmd.args([
            "-Y",
            "verify",
            "-f",
            s(&allowed),
            "-I",
            "dev@example.com",
            "-n",
            "git",
            "-s",
        ])
        .arg(format!("{}.sig", s(&msg)))
        .stdin(std::fs::File::open(&msg).unwrap());
        run_bounded(cmd).status.success()
    }

    fn receipts(&self) -> Vec<auths_presence::presence::audit::Receipt> {
        AuditLog::new(&self.home)
            .read()
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.unwrap())
            .collect()
    }

    fn outcomes(&self) -> Vec<Outcome> {
        self.receipts().into_iter().map(|r| r.outcome()).collect()
    }

    fn audit_verifies(&self) -> bool {
        let lines = AuditLog::new(&self.home).read_chain().unwrap();
        let tokens = TokenStore::open(&self.home).unwrap().list().unwrap();
        let report = verify_chain(&lines, &tokens);
        assert!(report.ok(), "{:?}", report.problems);
        report.ok()
    }
}

#[test]
fn no_touch_no_signature_and_a_touch_signs_what_ssh_keygen_verifies() {
    let rig = Rig::new(
        Policy::PerSignature,
        TouchMode::Never,
        UnlockPolicy::default(),
    );
    rig.add_keys();
    assert!(
        !rig.sign(&rig.keys.ed25519, "a", false),
        "nobody touched: refused"
    );
    assert_eq!(rig.touches(), 0);
    assert_eq!(rig.outcomes(), vec![Outcome::Denied]);

    rig.key().set_touch_mode(AUTO);
    assert!(rig.sign(&rig.keys.ed25519, "b", false));
    assert!(
        rig.verify(&rig.keys.ed25519, "b"),
        "ssh-keygen -Y verify accepts it"
    );
    assert!(rig.sign(&rig.keys.ecdsa, "c", false));
    assert!(rig.verify(&rig.keys.ecdsa, "c"));
    assert_eq!(rig.touches(), 2, "one touch per signature");
    assert_eq!(
        rig.outcomes(),
        vec![Outcome::Denied, Outcome::Approved, Outcome::Approved]
    );
    let r = &rig.receipts()[1];
    assert_eq!(r.namespace.as_deref(), Some("git"));
    assert!(r.peer.exe.as_deref().unwrap_or("").ends_with("ssh-keygen"));
    assert!(rig.audit_verifies());
}

#[test]
fn batch_one_touch_for_n_children_of_one_parent_then_new_touches() {
    let rig = Rig::touching("batch:3:60s:parent".parse().unwrap());
    rig.add_keys();
    for i in 0..3 {
        assert!(rig.sign(&rig.keys.ed25519, &format!("b{i}"), false));
    }
    assert_eq!(rig.touches(), 1, "N signatures, one touch");
    assert!(rig.sign(&rig.keys.ed25519, "b3", false));
    assert_eq!(rig.touches(), 2, "the N+1-th needs a touch");
    assert!(rig.sign(&rig.keys.ed25519, "b4", true));
    assert_eq!(rig.touches(), 3, "another parent needs its own touch");
    assert!(rig.sign(&rig.keys.ed25519, "b5", false));
    assert_eq!(rig.touches(), 3, "the second grant still has room");
    *rig.clock_offset.lock().unwrap() = Duration::from_secs(61);
    assert!(rig.sign(&rig.keys.ed25519, "b6", false));
    assert_eq!(rig.touches(), 4, "after T a new touch");
    assert!(rig.sign(&rig.keys.ecdsa, "b7", false));
    assert_eq!(rig.touches(), 5, "a grant covers one identity key only");
    for i in 0..8 {
        assert!(rig.verify(
            if i == 7 {
                &rig.keys.ecdsa
            } else {
                &rig.keys.ed25519
            },
            &format!("b{i}")
        ));
    }
    let o = rig.outcomes();
    assert_eq!(o.iter().filter(|x| **x == Outcome::Approved).count(), 5);
    assert_eq!(o.iter().filter(|x| **x == Outcome::Granted).count(), 3);
    assert!(rig.audit_verifies());
}

#[test]
fn a_batch_grant_covers_only_the_executable_and_namespace_its_touch_approved() {
    let rig = Rig::touching("batch:10:60s:parent".parse().unwrap());
    rig.add_keys();
    let ed = &rig.keys.ed25519;
    assert!(rig.sign(ed, "g0", false));
    assert!(rig.sign(ed, "g1", false));
    assert_eq!(rig.touches(), 1, "git's ssh-keygen rides its own grant");
    // A sibling with another executable: a copy of ssh-keygen elsewhere, the same bytes in
    // another file.
    let copy = rig.dir.path().join("not-ssh-keygen");
    std::fs::copy(SSH_KEYGEN, &copy).unwrap();
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    assert!(rig.sign_with(&copy, "git", ed, "g2", false));
    assert_eq!(rig.touches(), 2, "another executable needs its own touch");
    // The same ssh-keygen with another namespace.
    assert!(rig.sign_with(Path::new(SSH_KEYGEN), "file", ed, "g3", false));
    assert_eq!(rig.touches(), 3, "another namespace needs its own touch");
    // Each of those touches opened a grant of its own kind; git's grant still serves git.
    assert!(rig.sign_with(&copy, "git", ed, "g4", false));
    assert!(rig.sign_with(Path::new(SSH_KEYGEN), "file", ed, "g5", false));
    assert!(rig.sign(ed, "g6", false));
    assert_eq!(rig.touches(), 3);
    // Grant-use receipts name the requester and the namespace they were used for.
    let r = rig.receipts();
    let last = r.last().unwrap();
    assert_eq!(last.outcome(), Outcome::Granted);
    assert_eq!(last.namespace.as_deref(), Some("git"));
    assert_eq!(last.peer.exe.as_deref(), Some(SSH_KEYGEN));
    assert!(
        last.peer.exe_file.is_some(),
        "the executable's file identity is known"
    );
    let file = &r[r.len() - 2];
    assert_eq!(file.namespace.as_deref(), Some("file"));
    assert!(rig.audit_verifies());
}

#[test]
fn a_key_added_with_confirm_never_uses_a_grant() {
    let rig = Rig::touching("batch:10:60s:parent".parse().unwrap());
    let out = rig.agent.ssh_add(&["-c", s(&rig.keys.ed25519)]);
    assert!(out.status.success(), "ssh-add -c: {out:?}");
    std::fs::remove_file(&rig.keys.ed25519).unwrap();
    assert!(rig.sign(&rig.keys.ed25519, "c0", false));
    assert!(rig.sign(&rig.keys.ed25519, "c1", false));
    assert_eq!(
        rig.touches(),
        2,
        "every signature with a confirm key needs its own touch"
    );
    assert!(rig.outcomes().iter().all(|o| *o == Outcome::Approved));
    assert!(rig.audit_verifies());
}

#[test]
fn wiping_the_keys_ends_every_grant() {
    let rig = Rig::touching("batch:10:60s:parent".parse().unwrap());
    rig.agent.add(&[&rig.keys.ed25519]);
    let pubkey = rig.keys.ed25519.with_extension("pub");
    let private = std::fs::read(&rig.keys.ed25519).unwrap();
    std::fs::remove_file(&rig.keys.ed25519).unwrap();
    assert!(rig.sign(&rig.keys.ed25519, "w0", false));
    assert!(rig.sign(&rig.keys.ed25519, "w1", false));
    assert_eq!(rig.touches(), 1);
    assert!(rig.agent.ssh_add(&["-D"]).status.success());
    std::fs::write(&rig.keys.ed25519, &private).unwrap();
    std::fs::set_permissions(
        &rig.keys.ed25519,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    rig.agent.add(&[&rig.keys.ed25519]);
    std::fs::remove_file(&rig.keys.ed25519).unwrap();
    assert!(pubkey.exists());
    assert!(rig.sign(&rig.keys.ed25519, "w2", false));
    assert_eq!(
        rig.touches(),
        2,
        "after ssh-add -D the same key needs a new touch"
    );
}

#[test]
fn hang_up_during_touch_cancels_the_key_and_signs_nothing_while_others_are_served() {
    let (rig, mut events) = Rig::waiting_for_a_touch();
    let mut client = rig.agent.connect();
    rig.ask_to_sign(&mut client, b"bytes to sign");
    let pending = wait_event(&mut events, |e| matches!(e, PromptEvent::Pending { .. }));
    let PromptEvent::Pending { message, .. } = pending else {
        unreachable!()
    };
    assert!(
        message.starts_with("Touch your security key to approve unknown data for "),
        "{message}"
    );
    // A pending touch does not delay requests that need none.
    assert_eq!(rig.agent.listed().len(), 2);
    drop(client);
    let denied = wait_event(&mut events, |e| matches!(e, PromptEvent::Denied { .. }));
    let PromptEvent::Denied { reason, .. } = denied else {
        unreachable!()
    };
    // Cancelled by the hang-up, not timed out (whose reason also ends "was cancelled").
    assert_eq!(reason, GateError::Cancelled.to_string());
    assert!(
        matches!(rig.key().touch(), Err(TouchError::NothingWaiting)),
        "the key was cancelled"
    );
    assert_eq!(rig.touches(), 0);
    assert_eq!(rig.outcomes(), vec![Outcome::Denied]);
}

#[test]
fn two_competing_requests_and_one_touch_sign_nothing() {
    let (rig, mut events) = Rig::waiting_for_a_touch();
    // The attacker's request is pending first, the key blinking for it...
    let mut first = rig.agent.connect();
    rig.ask_to_sign(&mut first, b"attacker's bytes");
    wait_event(&mut events, |e| matches!(e, PromptEvent::Pending { .. }));
    // ...then the user's own request comes: both are refused, the blinking one cancelled.
    let mut second = rig.agent.connect();
    rig.ask_to_sign(&mut second, b"user's bytes");
    assert_eq!(recv(&mut second).as_deref(), Some(FAILURE));
    assert_eq!(recv(&mut first).as_deref(), Some(FAILURE));
    let contention = wait_event(&mut events, |e| matches!(e, PromptEvent::Contention { .. }));
    let PromptEvent::Contention {
        first: a,
        second: b,
    } = contention
    else {
        unreachable!()
    };
    assert!(a.contains("pid") && b.contains("pid"), "{a} / {b}");
    // The one touch the user gives now finds nothing to approve.
    assert!(
        matches!(rig.key().touch(), Err(TouchError::NothingWaiting)),
        "the pending touch was cancelled"
    );
    assert_eq!(rig.touches(), 0);
    let receipts = rig.receipts();
    assert_eq!(receipts.len(), 2, "both denied, with receipts");
    for r in &receipts {
        assert_eq!(r.outcome(), Outcome::Denied);
        assert!(!r.signed);
        assert!(
            r.reason
                .as_deref()
                .unwrap_or("")
                .contains("two programs asked for a touch at once"),
            "{:?}",
            r.reason
        );
    }
    // Afterwards a single request is served normally.
    rig.key().set_touch_mode(AUTO);
    assert!(rig.sign(&rig.keys.ed25519, "after", false));
    assert_eq!(rig.touches(), 1);
}

#[test]
fn replayed_assertion_is_refused_and_logged() {
    let rig = Rig::touching(Policy::PerSignature);
    rig.add_keys();
    assert!(rig.sign(&rig.keys.ed25519, "a", false));
    let old = rig
        .recorded
        .lock()
        .unwrap()
        .clone()
        .expect("an assertion was made");
    *rig.replay.lock().unwrap() = Some(old);
    assert!(
        !rig.sign(&rig.keys.ed25519, "b", false),
        "a replayed assertion approves nothing"
    );
    let r = rig.receipts();
    assert_eq!(r[1].outcome(), Outcome::Denied);
    assert!(
        r[1].reason
            .as_deref()
            .unwrap_or("")
            .contains("did not verify"),
        "{:?}",
        r[1].reason
    );
    assert!(rig.audit_verifies());
}

#[test]
fn key_whose_counter_goes_back_is_refused_and_the_denial_logged() {
    let rig = Rig::touching(Policy::PerSignature);
    rig.add_keys();
    let saved = std::fs::read(&rig.state).unwrap();
    assert!(rig.sign(&rig.keys.ed25519, "a", false));
    assert!(rig.sign(&rig.keys.ed25519, "b", false));
    // A clone of the key as it was before: same secret, older counter.
    let old = {
        let mut slot = rig.key.lock().unwrap();
        let clone_state = rig.dir.path().join("clone.json");
        std::fs::write(&clone_state, &saved).unwrap();
        std::fs::set_permissions(
            &clone_state,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let clone = start_key(&clone_state, &AUTO);
        std::mem::replace(&mut *slot, clone)
    };
    drop(old);
    assert!(
        !rig.sign(&rig.keys.ed25519, "c", false),
        "a cloned key is refused"
    );
    let r = rig.receipts();
    assert_eq!(r.last().unwrap().outcome(), Outcome::Denied);
    assert!(
        r.last()
            .unwrap()
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("counter"),
        "{:?}",
        r.last()
    );
}

#[test]
fn receipt_for_one_request_does_not_verify_as_another() {
    let rig = Rig::touching(Policy::PerSignature);
    rig.add_keys();
    assert!(rig.sign(&rig.keys.ed25519, "a", false));
    let log = AuditLog::new(&rig.home);
    let tokens = TokenStore::open(&rig.home).unwrap().list().unwrap();
    let lines = log.read().unwrap();
    assert!(verify_log(&lines, &tokens).ok());
    let mut forged = lines.clone();
    if let (_, Ok(r)) = &mut forged[0] {
        r.digest = hex::encode(sha2::Sha256::digest(b"request B"));
    }
    let report = verify_log(&forged, &tokens);
    assert_eq!(report.problems.len(), 1, "A's touch does not approve B");
    let mut forged = lines.clone();
    if let (_, Ok(r)) = &mut forged[0] {
        r.peer.pid = Some(1);
    }
    assert_eq!(
        verify_log(&forged, &tokens).problems.len(),
        1,
        "nor another requester"
    );
}

#[test]
fn max_signatures_wipes_the_keys() {
    let rig = Rig::new(
        Policy::PerSignature,
        AUTO,
        UnlockPolicy {
            max_signatures: Some(2),
            ..UnlockPolicy::default()
        },
    );
    rig.add_keys();
    assert!(rig.sign(&rig.keys.ed25519, "a", false));
    assert!(rig.sign(&rig.keys.ecdsa, "b", false));
    assert!(rig.agent.listed().is_empty(), "the cap wiped the keys");
    assert!(!rig.sign(&rig.keys.ed25519, "c", false));
}

#[test]
fn lock_wipes_keys_so_nothing_can_be_signed() {
    let rig = Rig::touching(Policy::PerSignature);
    rig.add_keys();
    auths_presence::agent::client::wipe(&rig.agent.path).unwrap();
    assert!(rig.agent.listed().is_empty());
    assert!(!rig.sign(&rig.keys.ed25519, "a", false));
    assert_eq!(
        rig.touches(),
        0,
        "no key to sign with: the gate is not even asked"
    );
    let mut c = rig.agent.connect();
    assert!(
        matches!(request(&mut c, &Request::RequestIdentities), Response::IdentitiesAnswer(v) if v.is_empty())
    );
}

/// A connection made by a child process that has exited, and been reaped, by the time this
/// returns. The socket was created before the fork, so this process holds it too: the
/// kernel's peer credentials name the child, which is gone when the agent reads them.
fn connected_by_a_process_that_exited(path: &Path) -> std::os::unix::net::UnixStream {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    let addr = UnixAddr::new(path).unwrap();
    // SAFETY: the child calls only connect(2) and _exit(2), both async-signal-safe, on values
    // made before the fork: it takes no lock and allocates nothing.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let ok = connect(fd.as_raw_fd(), &addr).is_ok();
            // SAFETY: _exit ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => {
            assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
            let stream = std::os::unix::net::UnixStream::from(fd);
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            stream.set_write_timeout(Some(DEADLINE)).unwrap();
            stream
        }
    }
}

#[test]
fn a_peer_that_exited_before_it_was_identified_uses_no_grant_and_the_prompt_says_so() {
    // The connection waits in the backlog until its process has exited; only then does the
    // agent accept it and ask the kernel who it is.
    let orphan = Arc::new(Mutex::new(None));
    let slot = orphan.clone();
    let rig = Rig::with_opts(
        "batch:10:60s:user".parse().unwrap(),
        AUTO,
        Opts {
            backlog: Some(Box::new(move |path: &Path| {
                *slot.lock().unwrap() = Some(connected_by_a_process_that_exited(path));
            })),
            ..Opts::default()
        },
    );
    let mut orphan = orphan.lock().unwrap().take().expect("connected");
    rig.add_keys();
    let public = public_key(&rig.keys.ed25519);
    let ask = sign_request(&public, b"bytes any process of the user may have signed");
    let signed = |r: Response| matches!(r, Response::SignResponse(_));

    // This process asks: one touch, which opens a grant for this executable.
    assert!(signed(request(&mut rig.agent.connect(), &ask)));
    assert_eq!(rig.touches(), 1);
    // A second connection of this process, confirmed alive, rides that grant.
    assert!(signed(request(&mut rig.agent.connect(), &ask)));
    assert_eq!(rig.touches(), 1, "the grant covered it");

    // The orphan asks for the same bytes: its identity cannot be confirmed, so no grant
    // covers it; it needs a touch of its own, and the prompt says why.
    rig.key().set_touch_mode(TouchMode::Manual);
    let mut events = rig.prompter.subscribe();
    send(&mut orphan, &encode(&ask));
    let PromptEvent::Pending { message, peer, .. } =
        wait_event(&mut events, |e| matches!(e, PromptEvent::Pending { .. }))
    else {
        unreachable!()
    };
    assert!(message.contains("(process exited)"), "{message}");
    assert!(
        !message.contains("one touch approves"),
        "its touch opens no grant: {message}"
    );
    assert_eq!(
        peer.identity,
        auths_presence::presence::request::Identity::Exited
    );
    assert_eq!(
        (peer.exe, peer.parent_pid),
        (None, None),
        "nothing read is kept"
    );
    rig.key().touch().unwrap();
    assert_eq!(
        recv(&mut orphan).map(|b| b[0]),
        Some(14),
        "signed after a touch"
    );
    assert_eq!(rig.touches(), 2);
    // And that touch opened nothing: the orphan's next request needs a touch again.
    rig.key().set_touch_mode(AUTO);
    assert!(signed(request(&mut orphan, &ask)));
    assert_eq!(rig.touches(), 3);
    assert!(rig.audit_verifies());
}

/// The bytes `ssh-keygen -Y sign -n NAMESPACE` asks the agent to sign (PROTOCOL.sshsig): the
/// magic, then the namespace, reserved, hash algorithm and message hash as SSH strings.
fn sshsig_blob(namespace: &str, message: &[u8]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s);
    }
    let mut b = b"SSHSIG".to_vec();
    string(&mut b, namespace.as_bytes());
    string(&mut b, b"");
    string(&mut b, b"sha512");
    string(&mut b, &sha2::Sha512::digest(message));
    b
}

/// No character that a terminal or a bidi-aware display acts on.
fn inert(s: &str) -> bool {
    !s.chars()
        .any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
}

#[test]
fn a_namespace_with_escape_sequences_reaches_no_prompt_or_watcher_raw() {
    let rig = Rig::new(
        "batch:5:60s:process".parse().unwrap(),
        TouchMode::Manual,
        UnlockPolicy::default(),
    );
    rig.add_keys();
    let mut events = rig.prompter.subscribe();
    // Erase the screen, flip the text direction, a C1 CSI: a forged prompt would follow.
    let evil = "git\x1b[2J\u{202e}\u{9b}31mssh-keygen \u{2190} git";
    let blob = sshsig_blob(evil, b"tree 1234\n");
    let public = public_key(&rig.keys.ed25519);
    let mut client = rig.agent.connect();
    send(&mut client, &encode(&sign_request(&public, &blob)));
    let PromptEvent::Requested {
        message, namespace, ..
    } = wait_event(&mut events, |e| matches!(e, PromptEvent::Requested { .. }))
    else {
        unreachable!()
    };
    assert!(
        inert(&message) && inert(namespace.as_deref().unwrap()),
        "{message:?}"
    );
    let PromptEvent::Pending {
        message, namespace, ..
    } = wait_event(&mut events, |e| matches!(e, PromptEvent::Pending { .. }))
    else {
        unreachable!()
    };
    assert!(
        inert(&message) && inert(namespace.as_deref().unwrap()),
        "{message:?}"
    );
    assert!(message.contains("\\u{1b}[2J"), "shown escaped: {message}");
    rig.key().touch().unwrap();
    assert_eq!(recv(&mut client).map(|b| b[0]), Some(14));
    // The second one rides the grant: its event is escaped too.
    send(&mut client, &encode(&sign_request(&public, &blob)));
    let PromptEvent::Granted { namespace, .. } =
        wait_event(&mut events, |e| matches!(e, PromptEvent::Granted { .. }))
    else {
        unreachable!()
    };
    assert!(inert(namespace.as_deref().unwrap()));
    assert_eq!(recv(&mut client).map(|b| b[0]), Some(14));
    // The receipts keep the namespace as it was (evidence), and `auths audit list` escapes
    // it (cli_agent::audit_list_never_prints_a_peers_control_characters).
    assert!(rig
        .receipts()
        .iter()
        .all(|r| r.namespace.as_deref() == Some(evil)));
}

/// A rig whose virtual key has the PIN `pin` set, `always_uv` as given, and whose gate
/// verifies the user as `uv` says, with the PIN source it returns.
fn pin_rig(
    pin: &str,
    always_uv: bool,
    uv: UserVerification,
    given: &str,
) -> (Rig, gate::CountedPin) {
    let config = PinConfig {
        pin: Some(zeroize::Zeroizing::new(pin.as_bytes().to_vec())),
        always_uv,
        ..PinConfig::default()
    };
    uv_rig(config, None, uv, given)
}

/// A per-signature rig whose key has clientPIN as `config` says and makes credentials with
/// credProtect `cred_protect`, and whose gate verifies the user as `uv` says, with the PIN
/// `given` by the source it returns. The Ed25519 key is added, its files kept (a test adds it
/// again after a wipe).
fn uv_rig(
    config: PinConfig,
    cred_protect: Option<u8>,
    uv: UserVerification,
    given: &str,
) -> (Rig, gate::CountedPin) {
    let pins = gate::CountedPin::new(given);
    let rig = Rig::build(
        Policy::PerSignature,
        AUTO,
        Opts::default(),
        Some(UvSetup {
            config,
            uv,
            pins: pins.clone(),
            cred_protect,
        }),
    );
    rig.agent.add(&[&rig.keys.ed25519]);
    (rig, pins)
}

fn signed(rig: &Rig, data: &[u8]) -> bool {
    let public = public_key(&rig.keys.ed25519);
    matches!(
        request(&mut rig.agent.connect(), &sign_request(&public, data)),
        Response::SignResponse(_)
    )
}

#[test]
fn an_always_uv_key_gets_its_pin_once_per_unlock_window_and_a_touch_every_time() {
    let (rig, pins) = pin_rig("2468", true, UserVerification::Discouraged, "2468");
    assert_eq!(pins.asked(), 1, "enrollment needed the PIN");
    for i in 0..3 {
        assert!(signed(&rig, format!("commit {i}").as_bytes()));
    }
    assert_eq!(rig.touches(), 3, "every signature still needs its touch");
    assert_eq!(pins.asked(), 2, "the PIN once for the unlock window");
    let prompt = pins.prompts.lock().unwrap()[1].clone();
    assert!(
        prompt.starts_with("PIN for virtual, to approve unknown data for "),
        "{prompt}"
    );
    // The receipts record the verified user, and audit verify checks it against what the key
    // signed; the PIN is nowhere in them.
    let receipts = rig.receipts();
    assert!(receipts.iter().all(|r| matches!(
        r.evidence,
        auths_presence::presence::audit::Evidence::Approved {
            user_verified: true,
            ..
        }
    )));
    assert!(rig.audit_verifies());
    let audit = std::fs::read_to_string(rig.home.join("audit.jsonl")).unwrap();
    assert!(!audit.contains("2468"));

    // Wiping the keys (lock, timeouts) wipes the token: the next window asks again.
    rig.agent.state.wipe_keys();
    rig.agent.add(&[&rig.keys.ed25519]);
    assert!(signed(&rig, b"after the wipe"));
    assert_eq!(pins.asked(), 3);
}

#[test]
fn uv_required_asks_the_pin_and_a_wrong_one_signs_nothing_and_says_how_many_tries_are_left() {
    let (rig, pins) = pin_rig("2468", false, UserVerification::Required, "1111");
    assert_eq!(pins.asked(), 0, "a CTAP 2.1 key enrolls without the PIN");
    assert!(!signed(&rig, b"commit"));
    assert_eq!(pins.asked(), 1, "one try, never retried on our own");
    assert_eq!(
        rig.touches(),
        0,
        "no touch was asked for without a verified user"
    );
    let r = rig.receipts();
    assert_eq!(r.last().unwrap().outcome(), Outcome::Denied);
    let reason = r.last().unwrap().reason.clone().unwrap_or_default();
    assert!(
        reason.contains("wrong PIN") && reason.contains("7 tries left"),
        "{reason}"
    );
    assert!(!reason.contains("1111"));
}

#[test]
fn a_token_the_key_no_longer_takes_is_replaced_by_asking_for_the_pin_again() {
    let (rig, pins) = pin_rig("2468", false, UserVerification::Required, "2468");
    assert!(signed(&rig, b"one"));
    assert_eq!(pins.asked(), 1);
    // The key is unplugged and plugged in again: a new power cycle, the old token is void.
    let state = rig.state.clone();
    let replugged = gate::start_key_with_pin(
        &state,
        AUTO,
        HidTimings::default(),
        Some(PinConfig {
            pin: Some(zeroize::Zeroizing::new(b"2468".to_vec())),
            ..PinConfig::default()
        }),
    );
    let old = std::mem::replace(&mut *rig.key.lock().unwrap(), replugged);
    drop(old);
    assert!(signed(&rig, b"two"));
    assert_eq!(
        pins.asked(),
        2,
        "the refused token made the gate ask once more"
    );
    assert!(rig.audit_verifies());
}

#[test]
fn a_key_busy_with_another_program_is_waited_for_and_the_wait_is_told() {
    let rig = Rig::touching(Policy::PerSignature);
    rig.add_keys();
    let mut events = rig.prompter.subscribe();
    // A browser holds the key, waiting for a WebAuthn touch.
    rig.key().hold_for(Duration::from_secs(600));
    let mut client = rig.agent.connect();
    rig.ask_to_sign(&mut client, b"while the browser holds the key");
    let PromptEvent::KeyBusy { message, .. } =
        wait_event(&mut events, |e| matches!(e, PromptEvent::KeyBusy { .. }))
    else {
        unreachable!()
    };
    assert!(message.contains("busy with another program"), "{message}");
    // The browser is done: our request reaches the key and is signed after its touch.
    rig.key().hold_for(Duration::ZERO);
    assert_eq!(recv(&mut client).map(|b| b[0]), Some(14));
    assert_eq!(rig.touches(), 1);
    assert_eq!(rig.outcomes(), vec![Outcome::Approved]);
}

#[test]
fn a_key_busy_until_the_touch_timeout_refuses_and_says_why() {
    let rig = Rig::new(
        Policy::PerSignature,
        TouchMode::Never,
        UnlockPolicy::default(),
    );
    rig.add_keys();
    rig.key().hold_for(Duration::from_secs(600));
    assert!(!rig.sign(&rig.keys.ed25519, "held", false));
    let r = rig.receipts();
    assert_eq!(r.len(), 1);
    let reason = r[0].reason.clone().unwrap_or_default();
    assert!(reason.contains("busy with another program"), "{reason}");
    assert_eq!(rig.touches(), 0);
}

#[test]
fn a_key_with_built_in_uv_verifies_with_the_finger_and_never_asks_for_the_pin() {
    // A Bio key with alwaysUv: the finger verifies, no PIN is set.
    let config = PinConfig {
        always_uv: true,
        builtin_uv: true,
        ..PinConfig::default()
    };
    let (rig, pins) = uv_rig(config, None, UserVerification::Discouraged, "unused");
    assert!(signed(&rig, b"one"));
    assert!(signed(&rig, b"two"));
    assert_eq!(pins.asked(), 0, "no PIN: the finger verified");
    // The virtual finger is a touch: one for the unlock window's token, one per signature.
    assert_eq!(rig.touches(), 3);
    assert!(rig.receipts().iter().all(|r| matches!(
        r.evidence,
        auths_presence::presence::audit::Evidence::Approved {
            user_verified: true,
            ..
        }
    )));
    assert!(rig.audit_verifies());
}

/// An ECDSA key whose private scalar starts with a zero byte (OpenSSH drops it from the mpint
/// `ssh-add` sends; one `ssh-keygen` key in 256) signs after a touch, and `ssh-keygen -Y verify`
/// accepts the signature.
#[test]
fn an_ecdsa_key_whose_scalar_starts_with_zero_signs_what_ssh_keygen_verifies() {
    let rig = Rig::new(Policy::PerSignature, AUTO, UnlockPolicy::default());
    let key = ecdsa_key_with_short_scalar(rig.dir.path(), "id_short", 1);
    rig.agent.add(&[&key]);
    std::fs::remove_file(&key).unwrap();
    assert!(rig.sign(&key, "short", false));
    assert!(rig.verify(&key, "short"), "ssh-keygen -Y verify accepts it");
    assert_eq!(rig.touches(), 1);
}

#[test]
fn a_ctap_2_0_key_with_a_pin_enrolls_with_it_and_signs_with_its_legacy_token() {
    // A YubiKey 5 before 5.4: getPinToken only, makeCredential needs the PIN.
    let config = PinConfig {
        pin: Some(zeroize::Zeroizing::new(b"2468".to_vec())),
        ctap_2_0: true,
        protocols: vec![auths_presence::ctap::pin::PinProtocol::One],
        ..PinConfig::default()
    };
    let (rig, pins) = uv_rig(config, None, UserVerification::Required, "2468");
    assert_eq!(pins.asked(), 1, "enrollment needed the PIN");
    assert!(signed(&rig, b"one"));
    assert!(signed(&rig, b"two"));
    assert_eq!(pins.asked(), 2, "once more for the unlock window");
    assert_eq!(rig.touches(), 2);
    assert!(rig.audit_verifies());
}

#[test]
fn a_key_that_makes_credentials_needing_uv_gets_its_pin_from_the_gate() {
    // A key configured with credProtect userVerificationRequired by default: without a
    // verified user it answers "no credentials" for ours.
    let config = PinConfig {
        pin: Some(zeroize::Zeroizing::new(b"2468".to_vec())),
        ..PinConfig::default()
    };
    let (rig, pins) = uv_rig(config, Some(3), UserVerification::Discouraged, "2468");
    let tokens = TokenStore::open(&rig.home).unwrap().list().unwrap();
    assert!(tokens[0].uv_required, "enrollment recorded credProtect 3");
    assert!(signed(&rig, b"needs the user verified"));
    assert_eq!(pins.asked(), 1);
    assert!(rig.audit_verifies());
}

/// RSA-3072, P-384 and P-521 identity keys sign through the agent after a touch, and
/// `ssh-keygen -Y verify` accepts each signature (ssh-keygen asks for rsa-sha2-512).
#[test]
fn rsa_p384_and_p521_keys_sign_what_ssh_keygen_verifies() {
    let rig = Rig::touching(Policy::PerSignature);
    let dir = rig.dir.path();
    let keys = [
        keygen_one(dir, "id_rsa", &["-t", "rsa", "-b", "3072"]),
        keygen_one(dir, "id_p384", &["-t", "ecdsa", "-b", "384"]),
        keygen_one(dir, "id_p521", &["-t", "ecdsa", "-b", "521"]),
    ];
    let paths: Vec<&Path> = keys.iter().map(|k| k.as_path()).collect();
    rig.agent.add(&paths);
    for (i, key) in keys.iter().enumerate() {
        std::fs::remove_file(key).unwrap();
        let name = format!("m{i}");
        assert!(rig.sign(key, &name, false), "{}", key.display());
        assert!(rig.verify(key, &name), "{} verifies", key.display());
    }
    assert_eq!(rig.touches(), 3);
    assert!(rig.audit_verifies());
}

/// A plain `ssh-rsa` signature (SHA-1, no SHA-2 flag) is refused before any touch is asked
/// for; rsa-sha2-256 and -512 are made.
#[test]
fn an_rsa_signature_over_sha1_is_refused_without_a_touch() {
    use ssh_agent_lib::proto::{PublicCredential, SignRequest};
    let rig = Rig::touching(Policy::PerSignature);
    let key = keygen_one(rig.dir.path(), "id_rsa", &["-t", "rsa", "-b", "2048"]);
    rig.agent.add(&[&key]);
    let public = public_key(&key);
    let ask = |flags: u32| {
        request(
            &mut rig.agent.connect(),
            &Request::SignRequest(SignRequest {
                credential: PublicCredential::Key(public.key_data().clone()),
                data: b"bytes".to_vec(),
                flags,
            }),
        )
    };
    assert_eq!(ask(0), Response::Failure);
    assert_eq!(rig.touches(), 0, "refused before the key was asked");
    for (flags, alg) in [(2, "rsa-sha2-256"), (4, "rsa-sha2-512")] {
        let Response::SignResponse(sig) = ask(flags) else {
            panic!("flags {flags} not signed")
        };
        assert_eq!(sig.algorithm().as_str(), alg);
        use p256::ecdsa::signature::Verifier;
        Verifier::verify(public.key_data(), b"bytes", &sig)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
    }
    assert_eq!(rig.touches(), 2);
}
