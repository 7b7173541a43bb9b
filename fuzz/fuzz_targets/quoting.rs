//! The text the CLI writes for shells, systemd, launchd and git, from paths, arguments and
//! git's user.email (all user-chosen). Each writer is checked against an independent reader
//! written here from the grammar: the reader must give back exactly the input, and nothing
//! may be left that the consumer would expand (`$`, `%`, a newline ending the setting).
#![no_main]
use auths_presence::text::{
    allowed_signers_line, env_line, shell_line, shell_quote, systemd_env_assignment,
    systemd_exec_word, xml_escape,
};
use libfuzzer_sys::fuzz_target;

const SAFE: &str = "/._-+:@=,";

/// POSIX sh words (XCU §2.2, §2.6.5 field splitting on spaces): single quotes, backslash,
/// and unquoted characters that are never special. `None` for anything else.
fn sh_words(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {
                words.push(cur.take()?);
            }
            '\'' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '\\' => cur.get_or_insert_with(String::new).push(chars.next()?),
            c if c.is_ascii_alphanumeric() || SAFE.contains(c) => {
                cur.get_or_insert_with(String::new).push(c)
            }
            _ => return None,
        }
    }
    words.push(cur?);
    Some(words)
}

/// One systemd word (systemd.syntax(7) quoting, C escapes, specifiers, `$` in ExecStart).
fn systemd_word(s: &str, exec: bool) -> Option<String> {
    let Some(inner) = s.strip_prefix('"') else {
        let plain = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || SAFE.contains(c));
        return plain.then(|| s.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return None,
            '\\' => match chars.next()? {
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                'x' => {
                    let h: String = [chars.next()?, chars.next()?].iter().collect();
                    out.push(char::from(u8::from_str_radix(&h, 16).ok()?));
                }
                _ => return None,
            },
            '%' => (chars.next()? == '%').then(|| out.push('%'))?,
            '$' if exec => (chars.next()? == '$').then(|| out.push('$'))?,
            c if c.is_control() && (c as u32) < 0x80 => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

fn xml_unescape(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(['&', '<', '>', '"']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let (c, n) = [
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
        ]
        .iter()
        .find(|(e, _)| rest.starts_with(e))
        .map(|(e, c)| (*c, e.len()))?;
        out.push(c);
        rest = &rest[n..];
    }
    out.push_str(rest);
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    assert_eq!(sh_words(&shell_quote(s)), Some(vec![s.to_owned()]), "{s:?}");
    let words: Vec<String> = s.split('\0').map(str::to_owned).collect();
    assert_eq!(sh_words(&shell_line(&words)).as_ref(), Some(&words));

    let posix = env_line(s, false);
    let quoted = posix
        .strip_prefix("SSH_AUTH_SOCK=")
        .and_then(|r| r.strip_suffix("; export SSH_AUTH_SOCK;"))
        .expect("the env line's frame");
    assert_eq!(sh_words(quoted), Some(vec![s.to_owned()]));
    let ps = env_line(s, true);
    let inner = ps
        .strip_prefix("$env:SSH_AUTH_SOCK = '")
        .and_then(|r| r.strip_suffix('\''))
        .expect("the PowerShell frame");
    assert!(!inner.replace("''", "").contains('\''));
    assert_eq!(inner.replace("''", "'"), s);

    let w = systemd_exec_word(s);
    assert!(!w.contains('\n'));
    assert_eq!(systemd_word(&w, true).as_deref(), Some(s), "{w}");
    let e = systemd_env_assignment(s);
    assert!(!e.contains('\n'));
    assert_eq!(systemd_word(&e, false).as_deref(), Some(s), "{e}");

    if let Ok(x) = xml_escape(s) {
        assert!(!x.contains('<') && !x.contains('>'));
        // XML 1.0 §2.2 `Char`.
        assert!(x
            .chars()
            .all(|c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{fffd}' | '\u{10000}'..)));
        assert_eq!(xml_unescape(&x).as_deref(), Some(s));
    }

    if let Ok(line) = allowed_signers_line(s, "ssh-ed25519 AAAA") {
        assert!(!line.contains('\n') && !line.starts_with('#'));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields, [s, "namespaces=\"git\"", "ssh-ed25519", "AAAA"]);
    }
    if let Ok(line) = allowed_signers_line("a@b.c", s) {
        assert_eq!(line.lines().count(), 1);
    }
});
