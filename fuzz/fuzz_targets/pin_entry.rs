//! What a PIN program says: a pinentry's Assuan lines (`parse_line`) and an askpass
//! program's output (`pin_from_output`). Both are bounded and strict; nothing may panic, and
//! an accepted PIN is at most 63 bytes of one line.
#![no_main]
use auths_presence::presence::pin_entry::{pin_from_output, MAX_PIN_LEN};
use auths_presence::presence::pinentry::{escape, parse_line, Line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Line::Data(d)) = parse_line(data) {
        assert!(d.len() <= data.len());
    }
    if let Ok(pin) = pin_from_output(data) {
        assert!(!pin.is_empty() && pin.len() <= MAX_PIN_LEN && !pin.contains('\n'));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let escaped = escape(text);
        assert!(!escaped.bytes().any(|b| b == b'\n' || b == b'\r'));
    }
});
