//! `auths audit verify` over a user-writable AUTHS_HOME: the input is a tokens.json, a NUL
//! byte, then audit.jsonl; the log is parsed line by line and re-verified, receipts alone
//! against the enrollments (none when the tokens part does not parse) and as a hash chain;
//! the agent's start reads the highest sign counter per credential from it.
#![no_main]
use std::path::Path;

use auths_presence::presence::audit::{
    highest_counters, parse_chain, parse_lines, verify_chain, verify_log,
};
use auths_presence::presence::enrollment::parse_tokens;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (tokens, log) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let enrollments = parse_tokens(tokens, Path::new("tokens.json")).unwrap_or_default();
    let Ok(text) = std::str::from_utf8(log) else {
        return;
    };
    let lines = parse_lines(text);
    let report = verify_log(&lines, &enrollments);
    assert!(
        report.approved + report.granted + report.denied + report.problems.len() >= lines.len()
    );
    let chain = parse_chain(text);
    let report = verify_chain(&chain, &enrollments);
    assert!(report.chain.anchored_through <= chain.last().map_or(0, |l| l.number));
    assert!(report.chain.unanchored <= chain.len());
    assert!(highest_counters(&chain).len() <= chain.len());
});
