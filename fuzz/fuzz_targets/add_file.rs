//! `add-file@auths-presence`: the request a peer sends (decoded strictly, at most one path and
//! a lifetime, nothing after) and the key file the agent then reads from a user-writable path
//! (a sealed key, or an OpenSSH private key, encrypted ones asked a fixed passphrase). The
//! first byte picks which; neither may panic.
#![no_main]
use std::path::Path;

use auths_presence::agent::add_file::{self, AddFile, AddFileAnswer};
use libfuzzer_sys::fuzz_target;
use ssh_encoding::{Decode, Encode};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Ok(req) = AddFile::decode(&mut &rest[..]) {
                assert!(req.path.len() <= add_file::MAX_PATH);
                let mut again = Vec::new();
                req.encode(&mut again).unwrap();
                assert_eq!(AddFile::decode(&mut again.as_slice()).unwrap(), req);
                let _ = add_file::checked_path(&req.path);
            }
        }
        1 => {
            if let Ok(answer) = AddFileAnswer::decode(&mut &rest[..]) {
                assert!(!answer.message.chars().any(char::is_control));
            }
        }
        _ => {
            let _ = add_file::parse_key_file(Path::new("/fuzz/key"), rest, |_| {
                Ok(zeroize::Zeroizing::new("fuzz".to_owned()))
            });
        }
    }
});
