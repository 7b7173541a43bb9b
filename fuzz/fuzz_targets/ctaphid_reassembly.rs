//! CTAPHID reports from a device (CTAP 2.1 §11.2.4): the input is cut into 64-byte reports,
//! each parsed and fed to a reassembler the way the host side reads a response. A message that
//! completes must fragment back into reports that reassemble into the same message.
#![no_main]
use auths_presence::ctap::framing::{fragment, Packet, Progress, Reassembler, REPORT_LEN};
use libfuzzer_sys::fuzz_target;

fn reassemble(reports: &[[u8; REPORT_LEN]]) -> Vec<auths_presence::ctap::framing::Message> {
    let mut done = Vec::new();
    let mut current: Option<Reassembler> = None;
    for report in reports {
        let packet = Packet::parse(report);
        let step = match current.as_mut() {
            Some(r) => r.push(&packet),
            None => match Reassembler::start(&packet) {
                Ok((r, p)) => {
                    current = r;
                    Ok(p)
                }
                Err(e) => Err(e),
            },
        };
        match step {
            Ok(Progress::NeedMore) => {}
            Ok(Progress::Done(m)) => {
                current = None;
                done.push(m);
            }
            Err(_) => current = None,
        }
    }
    done
}

fuzz_target!(|data: &[u8]| {
    let reports: Vec<[u8; REPORT_LEN]> = data
        .chunks(REPORT_LEN)
        .map(|c| {
            let mut r = [0u8; REPORT_LEN];
            r[..c.len()].copy_from_slice(c);
            r
        })
        .collect();
    for m in reassemble(&reports) {
        let again = fragment(m.cid, m.cmd, &m.payload).expect("a reassembled message fits");
        assert_eq!(reassemble(&again), vec![m]);
    }
});
