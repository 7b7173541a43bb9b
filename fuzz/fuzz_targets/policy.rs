//! `--policy` and duration strings (`--idle-timeout`, `--touch-timeout`, config): what parses
//! prints back as a policy that parses to the same value.
#![no_main]
use auths_presence::presence::policy::{parse_duration, Policy, Scope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_duration(s) {
        assert!(d.as_secs() > 0);
    }
    let _ = s.parse::<Scope>();
    if let Ok(p) = s.parse::<Policy>() {
        let printed = p.to_string();
        assert_eq!(printed.parse::<Policy>(), Ok(p), "{printed}");
        let _ = p.grant_terms();
    }
});
