//! Sign latency through the agent socket, against OpenSSH's `ssh-agent` in the same run, with
//! the same client (our blocking agent client) and an Ed25519 key:
//! - OpenSSH `ssh-agent` (no gate at all);
//! - ours inside a batch grant (no touch: the ungated cost of the agent and the grant check);
//! - ours gated, per-signature, with the virtual key touching at once (a full CTAPHID/CTAP2
//!   getAssertion, verification, counter save with fsync and a receipt with fsync).
//!
//! Run: `cargo bench --bench agent_sign` (needs ssh-agent and ssh-keygen on PATH).

#[cfg(unix)]
#[path = "../tests/cases/support/mod.rs"]
mod support;

#[cfg(unix)]
mod unix {
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use auths_presence::agent::client;
    use auths_presence::ctap::device::DeviceOptions;
    use auths_presence::ctap::virtual_key::{HidTimings, VirtualKey};
    use auths_presence::ctap::CtapError;
    use auths_presence::presence::policy::Policy;
    use auths_presence::presence::prompt::Prompter;
    use auths_presence::presence::touch::PresenceKey;
    use ssh_agent_lib::proto::{
        AddIdentity, PrivateCredential, PublicCredential, Request, Response, SignRequest,
    };

    use super::support::agent::{Agent, Opts};
    use super::support::gate::{self, AUTO};
    use super::support::{wait_until, KillOnDrop};
    use auths_presence::ctap::virtual_key::PinConfig;
    use auths_presence::presence::pin_entry::{NoPinSource, PinSource};
    use auths_presence::presence::presence_gate::UserVerification;

    const N: usize = 300;

    fn add(socket: &Path, key: &ssh_key::PrivateKey) {
        let req = Request::AddIdentity(AddIdentity {
            credential: PrivateCredential::Key {
                privkey: key.key_data().clone(),
                comment: "bench".into(),
            },
        });
        let r = client::request(socket, &req, Duration::from_secs(10)).unwrap();
        assert_eq!(r, Response::Success);
    }

    fn measure(name: &str, socket: &Path, key: &ssh_key::PrivateKey) -> Vec<Duration> {
        let req = Request::SignRequest(SignRequest {
            credential: PublicCredential::Key(key.public_key().key_data().clone()),
            data: b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor bench\n\nbench commit\n"
                .to_vec(),
            flags: 0,
        });
        // Warm up (and open the grant for the batch case).
        for _ in 0..5 {
            let r = client::request(socket, &req, Duration::from_secs(10)).unwrap();
            assert!(matches!(r, Response::SignResponse(_)), "{name}: {r:?}");
        }
        let mut times = Vec::with_capacity(N);
        for _ in 0..N {
            let t = Instant::now();
            let r = client::request(socket, &req, Duration::from_secs(10)).unwrap();
            times.push(t.elapsed());
            assert!(matches!(r, Response::SignResponse(_)), "{name}: {r:?}");
        }
        times.sort();
        times
    }

    fn report(name: &str, t: &[Duration]) {
        let mean = t.iter().sum::<Duration>() / t.len() as u32;
        let pct = |p: f64| t[((t.len() as f64 - 1.0) * p) as usize];
        println!(
            "{name:<44} n={:<4} mean {:>9.1} us  median {:>9.1} us  p95 {:>9.1} us  max {:>9.1} us",
            t.len(),
            mean.as_secs_f64() * 1e6,
            pct(0.5).as_secs_f64() * 1e6,
            pct(0.95).as_secs_f64() * 1e6,
            t[t.len() - 1].as_secs_f64() * 1e6
        );
    }

    /// Our agent on its own socket, gating with `policy` on an enrolled virtual key that
    /// touches at once; with `pin`, the key has that PIN and alwaysUv, and the gate verifies
    /// the user with it.
    fn our_agent(
        dir: &Path,
        name: &str,
        policy: Policy,
        pin: Option<&str>,
    ) -> (Agent, Arc<VirtualKey>, Option<gate::CountedPin>) {
        let home = dir.join(format!("{name}-home"));
        let state = dir.join(format!("{name}-key.json"));
        let config = pin.map(|p| PinConfig {
            pin: Some(zeroize::Zeroizing::new(p.as_bytes().to_vec())),
            always_uv: true,
            ..PinConfig::default()
        });
        let key = gate::start_key_with_pin(&state, AUTO, HidTimings::default(), config);
        let pins = pin.map(gate::CountedPin::new);
        match &pins {
            Some(p) => {
                gate::enroll_with_pins(&key, &home, DeviceOptions::default(), &mut p.clone())
            }
            None => gate::enroll(&key, &home, DeviceOptions::default()),
        };
        let k = key.clone();
        let opener = move || -> Result<Box<dyn PresenceKey>, CtapError> {
            Ok(Box::new(gate::open(&k, DeviceOptions::default())?))
        };
        let (uv, source): (UserVerification, Box<dyn PinSource + Send>) = match &pins {
            Some(p) => (UserVerification::Required, Box::new(p.clone())),
            None => (UserVerification::Discouraged, Box::new(NoPinSource)),
        };
        let gate = gate::presence_gate_with_uv(
            &home,
            opener,
            policy,
            Duration::from_secs(10),
            Prompter::new(false),
            None,
            (uv, source),
        );
        (Agent::start(Arc::new(gate), Opts::default()), key, pins)
    }

    pub fn main() {
        if std::env::args().any(|a| a == "--list") {
            println!("agent_sign: bench");
            return;
        }
        let tmp = tempfile::Builder::new()
            .prefix("ab-")
            .tempdir_in("/tmp")
            .unwrap();
        let private = tmp.path().join("p");
        auths_presence::secure_fs::ensure_private_dir(&private).unwrap();
        let dir = &private;
        let key = ssh_key::PrivateKey::random(&mut rand::thread_rng(), ssh_key::Algorithm::Ed25519)
            .unwrap();

        let ssh_sock = dir.join("openssh.sock");
        let openssh = Command::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(&ssh_sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(KillOnDrop);
        let (batch, _k1, _) = our_agent(
            dir,
            "batch",
            "batch:1000000:1h:process".parse().unwrap(),
            None,
        );
        let (gated, k2, _) = our_agent(dir, "gated", Policy::PerSignature, None);
        let (uv, k3, pins) = our_agent(dir, "uv", Policy::PerSignature, Some("2468"));
        let (batch_sock, gated_sock, uv_sock) = (&batch.path, &gated.path, &uv.path);
        add(batch_sock, &key);
        add(gated_sock, &key);
        add(uv_sock, &key);

        println!("sign latency through the agent socket, Ed25519 identity key, same client, {N} requests each");
        match openssh {
            Ok(_guard) => {
                wait_until("OpenSSH ssh-agent listens", || {
                    std::os::unix::net::UnixStream::connect(&ssh_sock).is_ok()
                });
                add(&ssh_sock, &key);
                report(
                    "OpenSSH ssh-agent (no gate)",
                    &measure("openssh", &ssh_sock, &key),
                );
            }
            Err(e) => println!("OpenSSH ssh-agent not available ({e}); skipped"),
        }
        report(
            "auths, inside a batch grant (no touch)",
            &measure("batch", batch_sock, &key),
        );
        let before = k2.touch_count();
        report(
            "auths, gated per signature (virtual key)",
            &measure("gated", gated_sock, &key),
        );
        println!(
            "virtual key touches during the gated run: {}",
            k2.touch_count() - before
        );
        let before = k3.touch_count();
        report(
            "auths, gated + PIN (cached pinUvAuthToken)",
            &measure("uv", uv_sock, &key),
        );
        println!(
            "virtual key touches during the PIN run: {}; PIN asked {} time(s) in all (enrollment included)",
            k3.touch_count() - before,
            pins.map(|p| p.asked()).unwrap_or(0)
        );
    }
}

fn main() {
    #[cfg(unix)]
    unix::main();
    #[cfg(not(unix))]
    println!("agent_sign needs Unix sockets (OpenSSH's ssh-agent and ours)");
}
