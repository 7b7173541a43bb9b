//! Caller rules files (`rules.toml`): the strict parser never panics, and what parses is
//! evaluated against a few requests (confirmed and not) without panicking; first match and
//! verdict agree, and the listings of a parsed file hold no control characters.
#![no_main]
use auths_presence::presence::request::{Identity, PayloadKind, Requester};
use auths_presence::presence::rules::{Action, Query, Rules, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rules) = Rules::parse(text) else {
        return;
    };
    for r in rules.rules() {
        let line = r.describe();
        assert!(!line.chars().any(char::is_control), "{line:?}");
        let _ = r.to_json().to_string();
    }
    let fp = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    for identity in [Identity::Confirmed, Identity::Exited] {
        let requester = Requester {
            parent_exe: Some("/usr/bin/git".into()),
            identity,
            ..Requester::process(1000, 7, "/usr/bin/ssh-keygen")
        };
        for (kind, ns, host) in [
            (PayloadKind::Sshsig, Some("git"), None),
            (PayloadKind::Userauth, None, Some(fp)),
            (PayloadKind::Other, None, None),
        ] {
            let q = Query {
                key_fingerprint: fp,
                key_comment: Some("work"),
                requester: &requester,
                kind,
                namespace: ns,
                host_key: host,
            };
            let first = rules.first_match(&q).map(|r| r.action.clone());
            match (rules.evaluate(&q), first) {
                (Verdict::Allow(a), Some(Action::Allow { policy, .. })) => {
                    assert_eq!(a.policy, policy)
                }
                (Verdict::Deny { rule: Some(_), reason }, Some(Action::Deny))
                | (Verdict::Deny { rule: None, reason }, None) => {
                    assert!(!reason.chars().any(char::is_control), "{reason:?}")
                }
                (v, f) => panic!("verdict {v:?} and first match {f:?} disagree"),
            }
        }
    }
});
