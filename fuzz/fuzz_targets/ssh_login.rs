//! What a peer sends about an ssh login (src/agent/userauth.rs): the data of a login sign
//! request (RFC 4252 §7, OpenSSH's hostbound method) and the body of a
//! `session-bind@openssh.com` extension (OpenSSH `PROTOCOL.agent` §1), then the check of one
//! against the other. Input: `u16 length || bind body (length bytes) || login data`; each
//! parser also reads the whole input.
#![no_main]
use auths_presence::agent::userauth::{
    parse_session_bind, parse_userauth, Bindings, Method, MAX_SESSION_ID_LEN, MAX_USER_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(whole) = parse_userauth(data) {
        check_login(&whole);
    }
    if let Ok(bind) = parse_session_bind(data) {
        let _ = bind.verify();
    }
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (bind, login) = rest.split_at(len);
    let mut bindings = Bindings::new();
    if let Ok(bind) = parse_session_bind(bind) {
        assert!(!bind.session_id.is_empty() && bind.session_id.len() <= MAX_SESSION_ID_LEN);
        // The same bind twice: recorded (or refused) once, then nothing changes or it is
        // refused again; never two bindings for one session.
        let first = bindings.bind(bind.clone());
        let _ = bindings.bind(bind);
        assert!(bindings.len() <= usize::from(first.is_ok()));
    }
    if let Ok(login) = parse_userauth(login) {
        check_login(&login);
        if let Ok(details) = bindings.login(&login) {
            assert_eq!(details.user, login.user);
            // A host key is named only when a binding vouches for it.
            assert_eq!(details.host_key.is_some(), !bindings.is_empty());
            // A login through a forwarding hop has the hop's binding before its own.
            assert!(!bindings.forwarding() || bindings.len() > 1);
        }
    }
});

fn check_login(login: &auths_presence::agent::userauth::Userauth) {
    assert!(!login.session_id.is_empty() && login.session_id.len() <= MAX_SESSION_ID_LEN);
    // Escaped for display: no control character reaches a terminal.
    assert!(!login
        .user
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')));
    assert!(login.user.len() <= MAX_USER_LEN * 10);
    assert_eq!(login.host_key.is_some(), login.method == Method::Hostbound);
}
