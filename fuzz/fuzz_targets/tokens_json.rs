//! `$AUTHS_HOME/tokens.json`, a file the user can write: parsed as the store reads it, each
//! enrollment's COSE key parsed strictly, and lookups by id and label.
#![no_main]
use std::path::Path;

use auths_presence::presence::enrollment::{find, parse_tokens};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tokens) = parse_tokens(data, Path::new("tokens.json")) else {
        return;
    };
    for t in &tokens {
        let _ = t.allowed();
        let _ = t.algorithm_name();
        if let Ok(i) = find(&tokens, &t.label) {
            assert!(i < tokens.len());
        }
        if let Ok(i) = find(&tokens, &t.id) {
            assert!(i < tokens.len());
        }
    }
});
