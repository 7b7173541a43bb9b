//! The fast path (issue 16): our agent against OpenSSH's `ssh-agent`, started in the same run,
//! driven by the same raw protocol client (one persistent connection per client, Ed25519):
//!
//! (a) one signature inside a batch grant vs plain `ssh-agent`;
//! (b) a gated signature, the virtual key touching at once, vs `ssh-agent` with the key added
//!     with the confirm constraint (`ssh-add -c`) and an askpass that approves at once
//!     (`SSH_ASKPASS=/bin/true`, `SSH_ASKPASS_REQUIRE=force`);
//! (c) throughput with 32 concurrent clients in a batch grant vs plain `ssh-agent` with 32.
//!
//! Also: the virtual key's own ES256 signature (its share of the gated figure) and its whole
//! getAssertion as a raw round trip, and our overhead on a gated signature with each taken
//! out. The gated key keeps its counter in memory (a key's flash write is the key's time).
//!
//! Run: `cargo bench --bench fast_path` (needs ssh-agent on PATH). `FAST_PATH_N` sets the
//! number of sequential requests per figure (default 2000).

#[cfg(unix)]
#[path = "../tests/cases/support/mod.rs"]
mod support;

#[cfg(unix)]
mod unix {
    use std::os::unix::net::UnixStream;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use auths_presence::ctap::device::DeviceOptions;
    use auths_presence::ctap::virtual_key::{
        HidTimings, StateLocation, VirtualKey, VirtualKeyConfig,
    };
    use auths_presence::ctap::CtapError;
    use auths_presence::presence::key_channel::CachedOpener;
    use auths_presence::presence::pin_entry::NoPinSource;
    use auths_presence::presence::policy::Policy;
    use auths_presence::presence::presence_gate::{KeyOpener, UserVerification};
    use auths_presence::presence::prompt::Prompter;
    use auths_presence::presence::touch::PresenceKey;
    use ssh_agent_lib::proto::{
        AddIdentity, AddIdentityConstrained, KeyConstraint, PrivateCredential, Request, Response,
    };

    use super::support::agent::{Agent, Opts};
    use super::support::gate::{self, AUTO};
    use super::support::wire;
    use super::support::{wait_until, KillOnDrop};

    const DATA: &[u8] =
        b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor bench\n\nbench commit\n";
    const CLIENTS: usize = 32;
    /// Requests before the timed ones on each connection.
    const WARM_UP: usize = 20;

    fn n() -> usize {
        std::env::var("FAST_PATH_N")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2000)
    }

    fn add(socket: &Path, key: &ssh_key::PrivateKey, confirm: bool) {
        let credential = PrivateCredential::Key {
            privkey: key.key_data().clone(),
            comment: "bench".into(),
        };
        let req = if confirm {
            Request::AddIdConstrained(AddIdentityConstrained {
                identity: AddIdentity { credential },
                constraints: vec![KeyConstraint::Confirm],
            })
        } else {
            Request::AddIdentity(AddIdentity { credential })
        };
        let mut s = UnixStream::connect(socket).unwrap();
        assert_eq!(wire::request(&mut s, &req), Response::Success);
    }

    /// `n` sequential signatures on one connection, each timed; sorted.
    fn latencies(name: &str, socket: &Path, key: &ssh_key::PrivateKey, n: usize) -> Vec<Duration> {
        let req = wire::encode(&wire::sign_request(key.public_key(), DATA));
        let mut s = UnixStream::connect(socket).unwrap();
        let one = |s: &mut UnixStream| {
            wire::send(s, &req);
            let r = wire::recv(s).expect("an answer");
            assert_eq!(r.first(), Some(&14), "{name}: not a signature: {r:?}");
        };
        // Warm up (and open the grant for the batch case).
        for _ in 0..WARM_UP {
            one(&mut s);
        }
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            one(&mut s);
            times.push(t.elapsed());
        }
        times.sort();
        times
    }

    /// `clients` connections signing `each` times at once: signatures per second, and the
    /// sorted per-request latencies.
    fn throughput(
        name: &str,
        socket: &Path,
        key: &ssh_key::PrivateKey,
        clients: usize,
        each: usize,
    ) -> (f64, Vec<Duration>) {
        let req = Arc::new(wire::encode(&wire::sign_request(key.public_key(), DATA)));
        // Every client connects and warms up first; a barrier starts them together.
        let barrier = Arc::new(std::sync::Barrier::new(clients + 1));
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                let (req, barrier, socket) = (req.clone(), barrier.clone(), socket.to_owned());
                let name = name.to_owned();
                std::thread::spawn(move || {
                    let mut s = UnixStream::connect(&socket).unwrap();
                    let one = |s: &mut UnixStream| {
                        wire::send(s, &req);
                        let r = wire::recv(s).expect("an answer");
                        assert_eq!(r.first(), Some(&14), "{name}: not a signature");
                    };
                    one(&mut s);
                    barrier.wait();
                    let mut times = Vec::with_capacity(each);
                    for _ in 0..each {
                        let t = Instant::now();
                        one(&mut s);
                        times.push(t.elapsed());
                    }
                    times
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut all: Vec<Duration> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let elapsed = start.elapsed();
        all.sort();
        ((clients * each) as f64 / elapsed.as_secs_f64(), all)
    }

    fn pct(t: &[Duration], p: f64) -> f64 {
        t[((t.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
    }

    fn line(name: &str, t: &[Duration]) {
        println!(
            "  {name:<52} p50 {:>8.3} ms  p99 {:>8.3} ms  (n={})",
            pct(t, 0.5),
            pct(t, 0.99),
            t.len()
        );
    }

    fn ratio(what: &str, ours: &[Duration], theirs: &[Duration], goal: &str) {
        println!(
            "  => {what}: p50 {:.2}x  p99 {:.2}x  (goal {goal})",
            pct(ours, 0.5) / pct(theirs, 0.5),
            pct(ours, 0.99) / pct(theirs, 0.99)
        );
    }

    fn openssh(dir: &Path, name: &str, askpass: bool) -> Option<(KillOnDrop, PathBuf)> {
        let sock = dir.join(format!("{name}.sock"));
        let mut cmd = Command::new("ssh-agent");
        cmd.args(["-D", "-a"])
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if askpass {
            // The confirmation of a `-c` key runs $SSH_ASKPASS; /bin/true exits 0 with no
            // output, which ssh-agent takes as "yes" at once.
            cmd.env("SSH_ASKPASS", "/bin/true")
                .env("SSH_ASKPASS_REQUIRE", "force")
                .env("DISPLAY", ":0");
        }
        match cmd.spawn() {
            Ok(child) => {
                let guard = KillOnDrop(child);
                wait_until("OpenSSH ssh-agent listens", || {
                    UnixStream::connect(&sock).is_ok()
                });
                Some((guard, sock))
            }
            Err(e) => {
                println!("OpenSSH ssh-agent not available ({e}); its figures are skipped");
                None
            }
        }
    }

    /// Our agent gating with `policy` on an enrolled virtual key that touches at once, the
    /// key's channel kept open between approvals as `auths agent start` keeps it.
    fn ours(dir: &Path, name: &str, policy: Policy, in_memory: bool) -> (Agent, Arc<VirtualKey>) {
        let home = dir.join(format!("{name}-home"));
        let state = dir.join(format!("{name}-key.json"));
        let key = if in_memory {
            Arc::new(
                VirtualKey::start(VirtualKeyConfig {
                    state: StateLocation::InMemory,
                    touch_mode: AUTO,
                    ..VirtualKeyConfig::default()
                })
                .unwrap(),
            )
        } else {
            gate::start_key(&state, AUTO, HidTimings::default())
        };
        gate::enroll(&key, &home, DeviceOptions::default());
        let k = key.clone();
        let open = move || -> Result<Box<dyn PresenceKey>, CtapError> {
            Ok(Box::new(gate::open(&k, DeviceOptions::default())?))
        };
        // FAST_PATH_REOPEN=1: open the key for every approval, as before the channel was kept.
        let opener: Box<dyn KeyOpener> = if std::env::var_os("FAST_PATH_REOPEN").is_some() {
            Box::new(open)
        } else {
            Box::new(CachedOpener::new(open))
        };
        let gate = gate::presence_gate_with_uv(
            &home,
            move || opener.open(),
            policy,
            Duration::from_secs(10),
            Prompter::new(false),
            None,
            (UserVerification::Discouraged, Box::new(NoPinSource)),
        );
        (Agent::start(Arc::new(gate), Opts::default()), key)
    }

    /// The virtual key's own ES256 signature over authData || clientDataHash (37 + 32 bytes).
    fn es256(n: usize) -> Vec<Duration> {
        use p256::ecdsa::signature::Signer;
        let sk = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let msg = [7u8; 69];
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let s: p256::ecdsa::Signature = sk.sign(std::hint::black_box(&msg));
            std::hint::black_box(s);
            times.push(t.elapsed());
        }
        times.sort();
        times
    }

    /// `FAST_PATH_ONLY=a|b|c` runs one part (for profiling); every part by default.
    fn part(p: &str) -> bool {
        std::env::var("FAST_PATH_ONLY").map_or(true, |o| o.contains(p))
    }

    /// The key's own time for one getAssertion: a raw round trip on one open channel (CTAPHID
    /// framing both ways, the key's CBOR, counter and ES256), nothing verified, no agent.
    fn raw_get_assertion(key: &VirtualKey, home: &Path, n: usize) -> Vec<Duration> {
        use auths_presence::ctap::backend::{GetAssertionArgs, SecurityKey, Waiting};
        let enrolled = auths_presence::presence::enrollment::TokenStore::open(home)
            .unwrap()
            .list()
            .unwrap();
        let id = enrolled[0].credential_id.clone();
        let mut k = gate::open(key, DeviceOptions::default()).unwrap();
        let ids: [&[u8]; 1] = [&id];
        let client_data = br#"{"type":"auths.presence.v1","nonce":"bench"}"#;
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let args = GetAssertionArgs {
                rp_id: &enrolled[0].rp_id,
                client_data,
                allow_list: &ids,
                pin_token: None,
                user_verification: false,
            };
            let t = Instant::now();
            let r = SecurityKey::get_assertion(
                &mut k,
                &args,
                Waiting {
                    on_up_needed: &mut || {},
                    on_busy: None,
                    cancel: None,
                },
            )
            .unwrap();
            times.push(t.elapsed());
            std::hint::black_box(r);
        }
        times.sort();
        times
    }

    pub fn main() {
        if std::env::args().any(|a| a == "--list") {
            println!("fast_path: bench");
            return;
        }
        let n = n();
        let tmp = tempfile::Builder::new()
            .prefix("fp-")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tmp.path().join("p");
        auths_presence::secure_fs::ensure_private_dir(&dir).unwrap();
        let key = ssh_key::PrivateKey::random(&mut rand::thread_rng(), ssh_key::Algorithm::Ed25519)
            .unwrap();

        let plain = openssh(&dir, "openssh", false);
        let confirm = openssh(&dir, "openssh-c", true);
        let (batch, _k1) = ours(
            &dir,
            "batch",
            "batch:100000000:1h:process".parse().unwrap(),
            false,
        );
        // The gated key keeps its counter in memory: a key's own flash write (the virtual
        // key's is an atomic file replace with two fsyncs) is the key's time, not ours.
        // FAST_PATH_KEY_FILE=1: the virtual key saves its counter to its state file, as the
        // first measurements (before the fast path) were taken.
        let key_file = std::env::var_os("FAST_PATH_KEY_FILE").is_some();
        let (gated, k2) = ours(&dir, "gated", Policy::PerSignature, !key_file);
        let k2_home = dir.join("gated-home");
        add(&batch.path, &key, false);
        add(&gated.path, &key, false);
        if let Some((_, s)) = &plain {
            add(s, &key, false);
        }
        if let Some((_, s)) = &confirm {
            add(s, &key, true);
        }

        println!("fast path: Ed25519 identity key, one raw protocol connection per client, {n} sequential requests per figure");
        if part("a") {
            println!("(a) one signature inside a batch grant, 1 client");
            let ours_batch = latencies("batch", &batch.path, &key, n);
            line("auths, batch grant (no touch)", &ours_batch);
            if let Some((_, s)) = &plain {
                let theirs = latencies("openssh", s, &key, n);
                line("OpenSSH ssh-agent", &theirs);
                ratio("auths / OpenSSH", &ours_batch, &theirs, "<= 0.40x");
            }
        }
        if part("b") {
            println!(
            "(b) gated signature, virtual key touching at once, vs ssh-add -c + instant askpass"
        );
            let before = k2.touch_count();
            let ours_gated = latencies("gated", &gated.path, &key, n);
            let touches = k2.touch_count() - before;
            line("auths, gated per signature (virtual key)", &ours_gated);
            assert_eq!(
                touches,
                (n + WARM_UP) as u64,
                "every gated signature had its own touch"
            );
            if let Some((_, s)) = &confirm {
                let theirs = latencies("openssh -c", s, &key, n);
                line("OpenSSH ssh-agent, -c key, askpass /bin/true", &theirs);
                ratio("auths / OpenSSH -c", &ours_gated, &theirs, "<= 1.0x");
            }
            let sig = es256(n);
            line("virtual key's own ES256 signature (apart)", &sig);
            let raw = raw_get_assertion(&k2, &k2_home, n);
            line("the key's whole getAssertion, raw round trip", &raw);
            // Differences of medians; a difference of two p99s is no p99, so none is printed.
            println!(
                "  => our overhead, the key's ES256 taken out: p50 {:.3} ms  (goal <= 1 ms)",
                pct(&ours_gated, 0.5) - pct(&sig, 0.5)
            );
            println!(
                "  => our overhead, the key's whole getAssertion taken out: p50 {:.3} ms",
                pct(&ours_gated, 0.5) - pct(&raw, 0.5)
            );
        }
        if part("c") {
            println!("(c) throughput, {CLIENTS} clients at once, batch grant");
            let each = (n / 4).max(50);
            let (ours_rate, ours_t) = throughput("batch", &batch.path, &key, CLIENTS, each);
            println!("  auths, batch grant: {ours_rate:>10.0} signatures/s");
            line("auths, per request", &ours_t);
            if let Some((_, s)) = &plain {
                let (rate, t) = throughput("openssh", s, &key, CLIENTS, each);
                println!("  OpenSSH ssh-agent:  {rate:>10.0} signatures/s");
                line("OpenSSH, per request", &t);
                println!(
                    "  => auths / OpenSSH throughput: {:.2}x  (goal >= 3.5x)",
                    ours_rate / rate
                );
            }
        }
        drop((plain, confirm));
    }
}

fn main() {
    #[cfg(unix)]
    unix::main();
    #[cfg(not(unix))]
    println!("fast_path needs Unix sockets (OpenSSH's ssh-agent and ours)");
}
