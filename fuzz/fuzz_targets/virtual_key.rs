//! The virtual key's device side (`ctap/virtual_key/hid.rs`), as `auths sim serve` runs it
//! behind a socket anyone with access can write raw reports to. The first byte picks the touch
//! mode (bits 0-1) and, with bit 7, a U2F-only key (U2F APDUs in CTAPHID_MSG); then each step is one op byte and, for a report, 64 bytes: op bits 0-1 say what
//! happens (report, timers, touch, touch mode), bit 2 puts the channel the device last
//! allocated into the report (the device picks channel ids at random, which a fuzzer cannot
//! guess), bits 3-7 how many 20 ms pass first. The check is that nothing panics and output
//! stays bounded.
#![no_main]
use std::time::{Duration, Instant};

use auths_presence::ctap::framing::{cmd, Packet, REPORT_LEN};
use auths_presence::ctap::virtual_key::authenticator::Authenticator;
use auths_presence::ctap::virtual_key::hid::{HidDevice, HidTimings, TouchMode};
use auths_presence::ctap::virtual_key::state::KeyState;
use libfuzzer_sys::fuzz_target;

fn mode(b: u8) -> TouchMode {
    match b % 4 {
        0 => TouchMode::Auto {
            delay: Duration::ZERO,
        },
        1 => TouchMode::Auto {
            delay: Duration::from_millis(u64::from(b) * 4),
        },
        2 => TouchMode::Never,
        _ => TouchMode::Manual,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    // keepalive_interval stays non-zero: a zero interval is a known, separately assigned bug.
    let timings = HidTimings {
        touch_timeout: Duration::from_millis(2_000),
        msg_timeout: Duration::from_millis(500),
        keepalive_interval: Duration::from_millis(100),
    };
    let mut dev = HidDevice::new(
        Authenticator::new(KeyState::in_memory()),
        mode(first),
        timings,
    );
    if first & 0x80 != 0 {
        dev = dev.u2f_only();
    }
    let mut now = Instant::now();
    let mut allocated = [0u8; 4];
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        now += Duration::from_millis(20 * u64::from(op >> 3));
        let out = match op & 3 {
            0 => {
                let mut report = [0u8; REPORT_LEN];
                let n = rest.len().min(REPORT_LEN);
                report[..n].copy_from_slice(&rest[..n]);
                rest = &rest[n..];
                if op & 4 != 0 {
                    report[..4].copy_from_slice(&allocated);
                }
                dev.handle_report(&report, now)
            }
            1 => dev.poll(now),
            2 => dev.touch().unwrap_or_default(),
            _ => dev.set_touch_mode(mode(op >> 2), now),
        };
        // The largest CTAPHID message is 129 reports; keepalives add a few per poll.
        assert!(out.len() <= 2 * 129 + 64, "{} reports at once", out.len());
        for r in &out {
            // CTAPHID_INIT response: nonce (8), then the new channel id (4).
            if let Packet::Init {
                cmd: c, bcnt, data, ..
            } = Packet::parse(r)
            {
                if c == cmd::INIT && bcnt >= 17 {
                    allocated.copy_from_slice(&data[8..12]);
                }
            }
        }
        let _ = dev.next_deadline();
    }
});
