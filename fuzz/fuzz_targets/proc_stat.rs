//! The peer helpers: `/proc/PID/stat` (proc(5); the command name in it is chosen by the
//! peer), the `proc_pidpath` buffer and the macOS start-time conversion.
#![no_main]
use auths_presence::agent::peer::{
    filetime_to_u64, parse_proc_stat, path_from_buf, timeval_to_micros,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_proc_stat(s);
    }
    if data.len() >= 20 {
        let n = i32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        let sec = u64::from_le_bytes(data[4..12].try_into().unwrap_or_default());
        let usec = u64::from_le_bytes(data[12..20].try_into().unwrap_or_default());
        if let Some(p) = path_from_buf(&data[20..], n) {
            assert!(!p.is_empty());
        }
        if let Some(us) = timeval_to_micros(sec, usec) {
            assert_eq!(us / 1_000_000, sec);
        }
        let _ = filetime_to_u64(n as u32, sec as u32);
    }
});
