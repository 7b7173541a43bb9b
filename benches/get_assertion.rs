//! What one touch-gated signature costs us, without the touch: a getAssertion round trip
//! against the virtual key through the 64-byte report transport (the code path a YubiKey
//! sees), with `verify_assertion` on the answer, for ES256 and EdDSA. A 1 KiB PING round
//! trip measures the CTAPHID framing and transport alone (18 reports each way).
//!
//! Run: `cargo bench --bench get_assertion -- --warm-up-time 1 --measurement-time 3`.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sha2::{Digest, Sha256};

use auths_presence::ctap::command::{
    Algorithm, GetAssertionRequest, MakeCredentialRequest, RelyingParty, UserEntity,
};
use auths_presence::ctap::device::{Device, DeviceOptions};
use auths_presence::ctap::virtual_key::{
    StateLocation, TouchMode, VirtualKey, VirtualKeyConfig, VirtualTransport,
};
use auths_presence::presence::verify::{verify_assertion, AllowedCredential, Expected};

const RP: &str = "auths:presence";

fn start() -> (VirtualKey, Device<VirtualTransport>) {
    let key = VirtualKey::start(VirtualKeyConfig {
        state: StateLocation::InMemory,
        touch_mode: TouchMode::Auto {
            delay: Duration::ZERO,
        },
        ..VirtualKeyConfig::default()
    })
    .expect("virtual key");
    let dev = Device::open(key.connect(), DeviceOptions::default()).expect("open");
    (key, dev)
}

fn enroll(dev: &mut Device<VirtualTransport>, alg: Algorithm) -> AllowedCredential {
    let resp = dev
        .make_credential(
            &MakeCredentialRequest {
                client_data_hash: [7; 32],
                rp: RelyingParty { id: RP, name: None },
                user: UserEntity {
                    id: b"bench",
                    name: None,
                    display_name: None,
                },
                algorithms: &[alg],
                exclude_list: &[],
                pin_uv_auth: None,
            },
            &mut |_| {},
            None,
        )
        .expect("makeCredential");
    let att = resp
        .auth_data
        .attested_credential_data
        .expect("attested credential");
    AllowedCredential {
        id: att.credential_id.clone(),
        public_key: att.public_key().expect("COSE key"),
        sign_count: resp.auth_data.sign_count,
    }
}

fn get_assertion(c: &mut Criterion) {
    let mut group = c.benchmark_group("get_assertion_round_trip_verified");
    for (label, alg) in [("es256", Algorithm::Es256), ("eddsa", Algorithm::EdDsa)] {
        let (_key, mut dev) = start();
        let mut cred = enroll(&mut dev, alg);
        let mut n: u64 = 0;
        group.bench_function(label, |b| {
            b.iter(|| {
                n += 1;
                let cdh: [u8; 32] = Sha256::digest(n.to_be_bytes()).into();
                let allow = [cred.id.as_slice()];
                let resp = dev
                    .get_assertion(
                        &GetAssertionRequest {
                            rp_id: RP,
                            client_data_hash: cdh,
                            allow_list: &allow,
                            user_verification: false,
                            pin_uv_auth: None,
                        },
                        &mut |_| {},
                        None,
                    )
                    .expect("getAssertion");
                let verified = verify_assertion(
                    &Expected {
                        rp_id: RP,
                        client_data_hash: cdh,
                        allowed: std::slice::from_ref(&cred),
                        require_uv: false,
                    },
                    &resp,
                )
                .expect("verified");
                cred.sign_count = verified.sign_count();
                black_box(verified)
            })
        });
    }
    group.finish();
}

fn ping(c: &mut Criterion) {
    let (_key, mut dev) = start();
    let data: Vec<u8> = (0..1024u32).map(|i| i as u8).collect();
    let mut group = c.benchmark_group("ctaphid_ping");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("1KiB", |b| {
        b.iter(|| black_box(dev.ping(black_box(&data)).expect("ping")))
    });
    group.finish();
}

criterion_group!(benches, get_assertion, ping);
criterion_main!(benches);
