//! The agent keeps answering (issue 9): no number of idle or stalled connections stops it, the
//! longest-idle connection makes room above the cap while a request in flight is never closed,
//! and the watch socket reaps watchers that close. A socket moved aside: the agent notices
//! (once a second, and at every accept), wipes its keys and says so. Real socket, real
//! `ssh-add` and `auths agent status`; the rig's bounded waits are the failure detector, never
//! a timing assertion.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, Arc, Mutex};

use auths_presence::agent::server::bind;
use auths_presence::agent::watch::{self, MAX_WATCHERS};
use auths_presence::presence::gate::{ApproveFuture, Gate, GateError};
use auths_presence::presence::prompt::{PromptEvent, Prompter};
use auths_presence::presence::request::ApprovalRequest;
use ssh_agent_lib::proto::{AddIdentity, PrivateCredential, Request, Response};

use super::support::agent::{runtime, Agent, Opts};
use super::support::cli::{stderr, User};
use super::support::gate::wait_event;
use super::support::openssh::{keygen, public_key, run_bounded, s, SSH_ADD};
use super::support::wire::{closed, encode, recv, request, send, sign_request, LIST};
use super::support::{short_tempdir, wait_until, DEADLINE};

/// A gate whose touch never comes: it reports when a request starts waiting and when the agent
/// drops the wait (the client went away, or its connection was closed).
struct TouchNeverComes {
    events: Mutex<mpsc::Sender<&'static str>>,
}

struct ReportDrop(mpsc::Sender<&'static str>);

impl Drop for ReportDrop {
    fn drop(&mut self) {
        let _ = self.0.send("dropped");
    }
}

impl Gate for TouchNeverComes {
    fn approve(&self, _request: ApprovalRequest) -> ApproveFuture<'_> {
        let tx = self.events.lock().unwrap().clone();
        let _ = tx.send("waiting");
        let guard = ReportDrop(tx);
        Box::pin(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Err(GateError::Cancelled)
        })
    }
}

fn touch_never_comes() -> (Arc<TouchNeverComes>, mpsc::Receiver<&'static str>) {
    let (tx, rx) = mpsc::channel();
    let gate = TouchNeverComes {
        events: Mutex::new(tx),
    };
    (Arc::new(gate), rx)
}

/// The number of identities in the agent's answer to a list request on `c`.
fn identities(c: &mut UnixStream) -> usize {
    match request(c, &Request::RequestIdentities) {
        Response::IdentitiesAnswer(ids) => ids.len(),
        other => panic!("expected the identities, got {other:?}"),
    }
}

#[test]
fn hundreds_of_idle_and_stalled_connections_do_not_stop_the_agent_answering() {
    let (gate, _events) = touch_never_comes();
    let agent = Agent::start(gate, Opts::default());
    let keys = keygen(agent.dir.path());
    agent.add(&[&keys.ed25519]);
    // Far more than the 64 connections an accept loop gated on a semaphore served: there,
    // `ssh-add` below waited in the listen backlog until the rig's deadline failed it.
    let mut idle: Vec<UnixStream> = (0..300).map(|_| agent.connect()).collect();
    let _stalled: Vec<UnixStream> = (0..30)
        .map(|_| {
            let mut c = agent.connect();
            c.write_all(&[0, 0]).unwrap(); // half a length prefix, never finished
            c
        })
        .collect();
    assert_eq!(agent.listed().len(), 1, "ssh-add -l is answered");
    // The idle ones were kept, and are served when they speak.
    for c in idle.iter_mut().step_by(37) {
        assert_eq!(identities(c), 1);
    }
}

#[test]
fn above_the_cap_the_longest_idle_connection_makes_room_and_a_pending_touch_stays() {
    const CAP: usize = 8;
    let (gate, events) = touch_never_comes();
    let agent = Agent::start(
        gate,
        Opts {
            max_connections: CAP,
            ..Opts::default()
        },
    );
    let keys = keygen(agent.dir.path());
    // The oldest connection adds the key itself (no other connection may linger in the
    // registry), then asks for a signature that waits for a touch that never comes.
    let mut pending = agent.connect();
    let key = ssh_key::PrivateKey::read_openssh_file(&keys.ed25519).unwrap();
    let add = Request::AddIdentity(AddIdentity {
        credential: PrivateCredential::Key {
            privkey: key.key_data().clone(),
            comment: "pending".into(),
        },
    });
    assert_eq!(request(&mut pending, &add), Response::Success);
    send(
        &mut pending,
        &encode(&sign_request(&public_key(&keys.ed25519), b"waits")),
    );
    assert_eq!(events.recv_timeout(DEADLINE).unwrap(), "waiting");

    // The cap is full: the pending one and seven idle ones, oldest first.
    let mut idle: Vec<UnixStream> = (1..CAP).map(|_| agent.connect()).collect();
    let mut newer = Vec::new();
    for (i, old) in idle.iter_mut().enumerate() {
        // Each new connection is served, and closes exactly the connection idle longest:
        // never the one waiting for a touch, although it is older.
        let mut c = agent.connect();
        assert_eq!(identities(&mut c), 1);
        assert!(closed(old), "idle connection {i} was closed to make room");
        newer.push(c);
    }
    assert!(
        matches!(events.try_recv(), Err(mpsc::TryRecvError::Empty)),
        "the pending touch is still waiting"
    );
    // Only the pending one and the newer ones are left: the next one closes the oldest newer.
    let mut last = agent.connect();
    send(&mut last, LIST);
    assert!(recv(&mut last).is_some());
    assert!(closed(&mut newer[0]));
    assert_eq!(identities(&mut newer[1]), 1, "the others stay open");

    // The pending request was never closed: hanging up is what ends its wait now.
    drop(pending);
    assert_eq!(events.recv_timeout(DEADLINE).unwrap(), "dropped");
}

/// A watcher connected to `path`, reading with the rig's deadline.
fn watcher(path: &Path) -> BufReader<UnixStream> {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    BufReader::new(s)
}

/// The next JSON line from a watcher; `None` at EOF.
fn next_line(w: &mut BufReader<UnixStream>) -> Option<serde_json::Value> {
    let mut line = String::new();
    match w.read_line(&mut line).unwrap() {
        0 => None,
        _ => Some(serde_json::from_str(&line).unwrap()),
    }
}

#[test]
fn watchers_that_close_are_reaped_at_once_and_the_watch_cap_holds() {
    let rt = runtime();
    let t = short_tempdir();
    let path = t.path().join("s/agent.sock.watch");
    let listener = {
        let _enter = rt.enter();
        bind(&path).unwrap()
    };
    let prompter = Prompter::new(false);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(watch::run(listener, prompter.clone(), async move {
        let _ = stopped.await;
    }));

    let full: Vec<_> = (0..MAX_WATCHERS)
        .map(|_| {
            let mut w = watcher(&path);
            assert_eq!(next_line(&mut w).unwrap()["event"], "watching");
            w
        })
        .collect();
    let mut one_more = watcher(&path);
    let refused = next_line(&mut one_more).unwrap();
    assert_eq!(refused["event"], "refused", "{refused}");
    assert!(
        refused["reason"].as_str().unwrap().contains("close one"),
        "{refused}"
    );
    assert!(next_line(&mut one_more).is_none(), "and closed");

    // Every watcher goes away without a single event having been sent: they are reaped on
    // their EOF, not when a write to them fails. Until the agent has seen the EOFs a new
    // watcher is refused, so poll (bounded) for one that is taken.
    drop(full);
    let mut fresh = None;
    wait_until(
        "a new watcher is taken once the closed ones are reaped",
        || {
            let mut w = watcher(&path);
            let taken = next_line(&mut w).is_some_and(|l| l["event"] == "watching");
            if taken {
                fresh = Some(w);
            }
            taken
        },
    );
    let mut fresh = fresh.unwrap();
    prompter.emit(PromptEvent::Approved { id: "r-1".into() });
    let event = next_line(&mut fresh).unwrap();
    assert_eq!(event["event"], "approved");
    assert_eq!(event["id"], "r-1");

    stop.send(()).unwrap();
    rt.block_on(async { tokio::time::timeout(DEADLINE, task).await })
        .expect("the watch server stops within the deadline")
        .unwrap();
    assert!(
        next_line(&mut fresh).is_none(),
        "watchers are closed at shutdown"
    );
}

/// Do what the attack does: rename the agent's socket aside (in its own directory) and bind a
/// stand-in for a relay at its path. Returns where the agent's socket went, and the stand-in.
fn move_socket_aside(agent: &Agent) -> (PathBuf, UnixListener) {
    let aside = agent.path.with_file_name("moved.sock");
    std::fs::rename(&agent.path, &aside).unwrap();
    let relay = UnixListener::bind(&agent.path).unwrap();
    (aside, relay)
}

/// `ssh-add -l` through `socket`: the listed lines, none when the agent holds no key.
fn listed_at(socket: &Path) -> Vec<String> {
    let mut cmd = Command::new(SSH_ADD);
    cmd.arg("-l")
        .env("SSH_AUTH_SOCK", socket)
        .stdin(std::process::Stdio::null());
    let out = run_bounded(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if stdout.contains("no identities") {
        return Vec::new();
    }
    assert!(out.status.success(), "ssh-add -l: {out:?}");
    stdout.lines().map(str::to_owned).collect()
}

/// `ssh-add FILE` through `socket`, which must succeed.
fn add_at(socket: &Path, file: &Path) {
    let mut cmd = Command::new(SSH_ADD);
    cmd.arg(file)
        .env("SSH_AUTH_SOCK", socket)
        .stdin(std::process::Stdio::null());
    let out = run_bounded(cmd);
    assert!(out.status.success(), "ssh-add: {out:?}");
}

fn is_socket_replaced(e: &PromptEvent) -> bool {
    matches!(e, PromptEvent::SocketReplaced { .. })
}

#[test]
fn a_socket_moved_aside_is_noticed_unasked_its_keys_wiped_and_status_says_so() {
    let (gate, _events) = touch_never_comes();
    let agent = Agent::start(gate, Opts::default());
    let mut events = agent.prompter.subscribe();
    let keys = keygen(agent.dir.path());
    agent.add(&[&keys.ed25519]);
    assert_eq!(agent.listed().len(), 1);

    let (aside, _relay) = move_socket_aside(&agent);
    // Nobody connects to the agent now: only its once-a-second check can notice.
    let event = wait_event(&mut events, is_socket_replaced);
    let path = agent.path.display().to_string();
    assert_eq!(event, PromptEvent::SocketReplaced { path: path.clone() });
    assert_eq!(agent.state.socket_replaced(), Some(path.as_str()));
    assert!(listed_at(&aside).is_empty(), "the key was wiped");

    // `auths agent status`, asking the agent where its socket went.
    let user = User::new();
    let status = user.json(&["agent", "status", "--json", "--socket", s(&aside)]);
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["identities"], 0, "{status}");
    assert_eq!(status["socket_replaced"], true, "{status}");
    assert_eq!(status["replaced_socket"], path.as_str(), "{status}");
    let out = user.auths(&["agent", "status", "--socket", s(&aside)]);
    assert!(!out.status.success(), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("moved aside or replaced"), "{err}");
    assert!(err.contains("wiped every key"), "{err}");
    assert!(err.contains("auths agent stop"), "{err}");

    // Noticed once: a key added now stays (the check is not repeated), and no second event.
    add_at(&aside, &keys.ecdsa);
    assert_eq!(listed_at(&aside).len(), 1);
    assert!(events.try_recv().is_err(), "one event");
}

#[test]
fn the_first_request_through_a_moved_socket_finds_the_keys_already_wiped() {
    let (gate, _events) = touch_never_comes();
    let agent = Agent::start(gate, Opts::default());
    let mut events = agent.prompter.subscribe();
    let keys = keygen(agent.dir.path());
    agent.add(&[&keys.ed25519]);

    let (aside, _relay) = move_socket_aside(&agent);
    // A relay forwarding to the moved socket connects at once: the agent checks at accept,
    // before it serves anything, so the relay learns no key.
    assert!(listed_at(&aside).is_empty());
    wait_event(&mut events, is_socket_replaced);
    let status = auths_presence::agent::client::status(&aside).unwrap();
    assert_eq!(
        status.socket_replaced.as_deref(),
        Some(agent.path.display().to_string().as_str())
    );
}

#[test]
fn status_of_an_agent_whose_socket_stayed_reports_nothing_replaced() {
    let (gate, _events) = touch_never_comes();
    let agent = Agent::start(gate, Opts::default());
    let user = User::new();
    let status = user.json(&["agent", "status", "--json", "--socket", s(&agent.path)]);
    assert_eq!(status["socket_replaced"], false, "{status}");
    assert!(user
        .auths(&["agent", "status", "--socket", s(&agent.path)])
        .status
        .success());
}
