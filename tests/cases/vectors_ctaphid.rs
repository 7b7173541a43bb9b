//! Raw CTAPHID reports from `tests/vectors` (libfido2 captures and derived framing errors,
//! webauthn-rs fragmentation vectors) through our framing layer (CTAP 2.1 §11.2.4):
//! `Packet::parse` + `Reassembler` for every record, `fragment` for host-to-device records,
//! and every `expect.*` field checked. Records are counted per file, and a field this file
//! does not check fails the test, so nothing is skipped silently.

use std::collections::BTreeSet;

use auths_presence::ctap::framing::{
    cmd, fragment, keepalive, FramingError, Message, Packet, Progress, Reassembler, Report,
    CONT_DATA_LEN, INIT_DATA_LEN, MAX_PAYLOAD, REPORT_LEN,
};

const LIBFIDO2: &str = "libfido2_ctaphid_frames.txt";
const WEBAUTHN_RS: &str = "webauthn_rs_ctaphid_frames.txt";

use super::vector_records::{load, Record};

/// Why a report stream does not reassemble.
#[derive(Debug, PartialEq, Eq)]
enum StreamError {
    Framing(FramingError),
    /// The stream ended in the middle of a message.
    Incomplete {
        have: usize,
        bcnt: usize,
    },
}

/// Strict reassembly of a whole report stream into messages, in order. With `skip_foreign`,
/// reports for another channel than the message in progress are dropped, as the host reader
/// does on a shared hidraw node; without it they are an error.
fn reassemble(reports: &[Report], skip_foreign: bool) -> Result<Vec<Message>, StreamError> {
    let mut out = Vec::new();
    let mut partial: Option<(Reassembler, usize, usize)> = None;
    for report in reports {
        let packet = Packet::parse(report);
        if let Some((r, have, bcnt)) = partial.as_mut() {
            if skip_foreign && packet.cid() != r.cid() {
                continue;
            }
            match r.push(&packet).map_err(StreamError::Framing)? {
                Progress::NeedMore => *have = (*have + CONT_DATA_LEN).min(*bcnt),
                Progress::Done(m) => {
                    out.push(m);
                    partial = None;
                }
            }
            continue;
        }
        let (r, progress) = Reassembler::start(&packet).map_err(StreamError::Framing)?;
        match (r, progress) {
            (_, Progress::Done(m)) => out.push(m),
            (Some(r), Progress::NeedMore) => {
                let Packet::Init { bcnt, .. } = packet else {
                    unreachable!("a reassembler starts from an init packet")
                };
                partial = Some((r, INIT_DATA_LEN, usize::from(bcnt)));
            }
            (None, Progress::NeedMore) => unreachable!("NeedMore without a reassembler"),
        }
    }
    match partial {
        Some((_, have, bcnt)) => Err(StreamError::Incomplete { have, bcnt }),
        None => Ok(out),
    }
}

fn packets(rec: &Record) -> Vec<Report> {
    let reports: Vec<Report> = rec
        .req("packets")
        .split_whitespace()
        .map(|h| {
            let b = hex::decode(h).unwrap_or_else(|e| panic!("{}: bad hex {e}", rec.name()));
            b.as_slice()
                .try_into()
                .unwrap_or_else(|_| panic!("{}: a report of {} bytes, not 64", rec.name(), b.len()))
        })
        .collect();
    assert_eq!(
        reports.len(),
        (rec.int("packet_count") as usize),
        "{}",
        rec.name()
    );
    reports
}

fn cmd_name(c: u8) -> &'static str {
    match c {
        cmd::PING => "PING",
        cmd::MSG => "MSG",
        cmd::LOCK => "LOCK",
        cmd::INIT => "INIT",
        cmd::WINK => "WINK",
        cmd::CBOR => "CBOR",
        cmd::CANCEL => "CANCEL",
        cmd::KEEPALIVE => "KEEPALIVE",
        cmd::ERROR => "ERROR",
        _ => "?",
    }
}

/// Check `expect.msgN.*` of one message.
fn check_message(rec: &Record, i: usize, m: &Message) {
    let name = rec.name();
    let k = |f: &str| format!("expect.msg{i}.{f}");
    assert_eq!(
        m.cid.to_be_bytes().to_vec(),
        rec.hex(&k("cid")),
        "{name} msg{i} cid"
    );
    // The recorded command carries the init-packet bit 7; ours has it cleared.
    assert_eq!(vec![m.cmd | 0x80], rec.hex(&k("cmd")), "{name} msg{i} cmd");
    assert_eq!(cmd_name(m.cmd), rec.req(&k("cmd_name")), "{name} msg{i}");
    assert_eq!(
        m.payload.len(),
        (rec.int(&k("bcnt")) as usize),
        "{name} msg{i} bcnt"
    );
    assert_eq!(m.payload, rec.hex(&k("payload")), "{name} msg{i} payload");

    if let Some(status) = rec.get(&k("keepalive_status")) {
        assert_eq!(m.cmd, cmd::KEEPALIVE, "{name} msg{i}");
        let got = match m.payload[..] {
            [keepalive::PROCESSING] => "PROCESSING",
            [keepalive::UPNEEDED] => "UPNEEDED",
            _ => "?",
        };
        assert_eq!(got, status, "{name} msg{i} keepalive status");
    }

    if rec.get(&k("init.nonce")).is_some() {
        assert_eq!(m.cmd, cmd::INIT, "{name} msg{i}");
        let p = &m.payload;
        assert_eq!(p.len(), 17, "{name}: INIT response length");
        assert_eq!(p[..8].to_vec(), rec.hex(&k("init.nonce")), "{name} nonce");
        assert_eq!(p[8..12].to_vec(), rec.hex(&k("init.new_cid")), "{name} cid");
        assert_eq!(
            usize::from(p[12]),
            (rec.int(&k("init.ctaphid_protocol_version")) as usize),
            "{name}"
        );
        assert_eq!(
            format!("{}.{}.{}", p[13], p[14], p[15]),
            rec.req(&k("init.device_version")),
            "{name}"
        );
        assert_eq!(vec![p[16]], rec.hex(&k("init.capabilities")), "{name}");
        let names: Vec<&str> = [(0x01u8, "WINK"), (0x04, "CBOR"), (0x08, "NMSG")]
            .into_iter()
            .filter(|(bit, _)| p[16] & bit != 0)
            .map(|(_, n)| n)
            .collect();
        assert_eq!(
            names.join(","),
            rec.req(&k("init.capability_names")),
            "{name}"
        );
    }
}

/// The error each `expected = error` record must give, by name: the reason in the record's
/// `expect.error` text, as a typed value.
fn expected_error(name: &str) -> StreamError {
    match name {
        "libfido2-cbor-getassertion-cid-mismatch" => {
            StreamError::Framing(FramingError::ChannelMismatch {
                expected: 0x0022_0002,
                got: 0x0092_000e,
            })
        }
        "derived-getinfo-bad-sequence" => StreamError::Framing(FramingError::BadSeq {
            expected: 1,
            got: 5,
        }),
        "derived-getinfo-missing-last-frame" => StreamError::Incomplete {
            have: 57 + 9 * 59,
            bcnt: 597,
        },
        "derived-getinfo-continuation-first" => {
            StreamError::Framing(FramingError::UnexpectedCont(0))
        }
        "derived-init-bcnt-7610-too-large" => StreamError::Framing(FramingError::TooLong(7610)),
        other => panic!("error record {other} has no typed expectation in this test"),
    }
}

/// One record with literal packets.
fn check_packet_record(rec: &Record) {
    let name = rec.name();
    assert_eq!((rec.int("report_size") as usize), REPORT_LEN, "{name}");
    let reports = packets(rec);
    let direction = rec.req("direction");
    assert!(
        direction == "device_to_host" || direction == "host_to_device",
        "{name}: direction {direction}"
    );
    match rec.req("expected") {
        "ok" => {
            let msgs = reassemble(&reports, false)
                .unwrap_or_else(|e| panic!("{name}: expected ok, got {e:?}"));
            assert_eq!(
                msgs.len(),
                (rec.int("expect.message_count") as usize),
                "{name}"
            );
            for (i, m) in msgs.iter().enumerate() {
                check_message(rec, i, m);
            }
            if direction == "host_to_device" {
                // What a host sends: our fragmenter must produce exactly these reports.
                let mut sent = Vec::new();
                for m in &msgs {
                    sent.extend(fragment(m.cid, m.cmd, &m.payload).unwrap());
                }
                assert_eq!(sent, reports, "{name}: fragment differs from the recording");
            }
        }
        "error" => {
            assert!(!rec.req("expect.error").is_empty(), "{name}");
            let got = reassemble(&reports, false);
            assert_eq!(got, Err(expected_error(&name)), "{name}");
            if let Some(spliced) = rec.get("expect.payload_if_cid_ignored") {
                let spliced = hex::decode(spliced).unwrap();
                // The host reader drops the foreign-channel frames: the message never completes.
                assert!(
                    matches!(
                        reassemble(&reports, true),
                        Err(StreamError::Incomplete { .. })
                    ),
                    "{name}: splicing across channels must not complete"
                );
                // Only with every CID forced to the first one do the frames join up.
                let first = Packet::parse(&reports[0]).cid().to_be_bytes();
                let forced: Vec<Report> = reports
                    .iter()
                    .map(|r| {
                        let mut r = *r;
                        r[..4].copy_from_slice(&first);
                        r
                    })
                    .collect();
                let msgs = reassemble(&forced, false).unwrap();
                assert_eq!(msgs.len(), 1, "{name}");
                assert_eq!(msgs[0].payload, spliced, "{name}: spliced payload");
            }
        }
        other => panic!("{name}: expected = {other}"),
    }
}

/// `wrs-fragment-max-size-7609`: described by rules instead of literal packets.
fn check_max_size_rule(rec: &Record) {
    let name = rec.name();
    assert_eq!(rec.req("direction"), "host_to_device");
    assert_eq!(rec.req("expected"), "ok");
    assert_eq!((rec.int("report_size") as usize), REPORT_LEN);
    let len = rec.int("payload_len") as usize;
    assert_eq!(len, MAX_PAYLOAD, "{name}: the maximum is ours too");
    let byte = rec.hex("payload_byte");
    assert_eq!(byte.len(), 1);
    let payload = vec![byte[0]; len];

    let first = rec.hex("expect.first_packet");
    let first: Report = first.as_slice().try_into().unwrap();
    let Packet::Init { cid, cmd: c, .. } = Packet::parse(&first) else {
        panic!("{name}: first packet is not an init packet")
    };
    let reports = fragment(cid, c, &payload).unwrap();
    assert_eq!(
        reports.len(),
        (rec.int("expect.packet_count") as usize),
        "{name}"
    );
    assert_eq!(reports[0], first, "{name}: first packet");

    // `00000001 || (n-1 as SEQ byte, 00..7f) || ff*59  for n = 1..128`
    let rule = rec.req("expect.continuation_packet_n");
    let (head, tail) = rule
        .split_once("||")
        .unwrap_or_else(|| panic!("{name}: rule {rule:?}"));
    let cid_bytes = hex::decode(head.trim()).unwrap();
    assert_eq!(cid_bytes, cid.to_be_bytes());
    assert!(tail.contains("00..7f") && tail.contains("ff*59"), "{rule}");
    for (n, r) in reports.iter().enumerate().skip(1) {
        let mut want = [0u8; REPORT_LEN];
        want[..4].copy_from_slice(&cid_bytes);
        want[4] = (n - 1) as u8;
        want[5..].fill(byte[0]);
        assert_eq!(*r, want, "{name}: continuation packet {n}");
    }
    let msgs = reassemble(&reports, false).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].payload, payload);

    assert_eq!(rec.req("expect.payload_len_7610"), "error");
    assert_eq!(
        fragment(cid, c, &vec![byte[0]; 7610]),
        Err(FramingError::TooLong(7610)),
        "{name}"
    );
}

fn check_file(file: &'static str, expected_records: usize) {
    let records = load(file);
    assert_eq!(
        records.len(),
        expected_records,
        "{file}: record count changed; update this test"
    );
    let mut names = BTreeSet::new();
    for rec in &records {
        let name = rec.req("name").to_owned();
        assert!(names.insert(name.clone()), "{file}: duplicate {name}");
        if rec.get("packets").is_some() {
            check_packet_record(rec);
        } else {
            check_max_size_rule(rec);
        }
        // Provenance and prose: read, not checked.
        for k in ["origin", "note", "derived_from", "tamper"] {
            rec.get(k);
        }
        assert_eq!(
            rec.unchecked(),
            Vec::<String>::new(),
            "{file}: {name} has fields this test does not check"
        );
    }
}

#[test]
fn libfido2_ctaphid_frames_reassemble_or_fail_as_recorded() {
    check_file(LIBFIDO2, 18);
}

#[test]
fn webauthn_rs_ctaphid_frames_fragment_exactly_as_recorded() {
    check_file(WEBAUTHN_RS, 2);
}

#[test]
fn record_reader_handles_comments_blank_lines_and_equals_in_values() {
    let r = super::vector_records::parse(
        "t",
        "# h\n\nname = a\nx = 00ff\n\n\nname = b\nnote = a = b\n",
    );
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].hex("x"), vec![0, 255]);
    assert_eq!(r[1].req("note"), "a = b");
    assert_eq!(r[1].unchecked(), vec!["name".to_owned()]);
}
