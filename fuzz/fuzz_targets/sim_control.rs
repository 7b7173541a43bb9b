//! The virtual key's control-socket protocol (`auths sim touch` and tests talk to
//! `auths sim serve` through it): one command line in, one reply line out, both parsed
//! strictly. A reply we write must parse back to itself.
#![no_main]
use auths_presence::ctap::virtual_key::{ControlCommand, ControlReply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cmd) = ControlCommand::parse(line) {
        assert_eq!(ControlCommand::parse(&cmd.as_line()), Ok(cmd));
    }
    if let Ok(reply) = ControlReply::parse(line) {
        assert_eq!(ControlReply::parse(&reply.to_line()), Ok(reply));
    }
});
