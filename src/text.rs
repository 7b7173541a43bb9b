//! Text the CLI writes for other programs, and the OpenSSH key files it reads.
//!
//! Pure functions, here in the library (not in `src/cli`) so unit tests and the fuzz targets
//! reach them:
//! - POSIX shell words (`auths agent env`, the undo lines of `auths git setup`, the commands
//!   `install-service` prints): single quotes, POSIX.1-2017 XCU §2.2.3.
//! - systemd unit values (systemd.service(5) "Command lines", systemd.unit(5) "Specifiers",
//!   systemd.exec(5) `Environment=`): double quotes with C escapes, `%%` and `$$`.
//! - launchd plists (XML 1.0 §2.4 character data, §2.2 allowed characters).
//! - git's allowed-signers file (ssh-keygen(1) "ALLOWED SIGNERS").
//! - OpenSSH public key lines (`~/.ssh/id_ed25519.pub`) and private key files
//!   (PROTOCOL.key), through `ssh-key`.

use thiserror::Error;

/// Why a text could not be written or read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TextError {
    /// XML 1.0 cannot carry this character at all, not even as a character reference.
    #[error("{0:?} contains the control character U+{1:04X}, which a launchd plist cannot hold")]
    NotXml(String, u32),
    /// The principal of an allowed-signers line would split or end the line.
    #[error("{0:?} cannot be an allowed-signers principal: it is empty, starts with '#', or holds a space, quote or control character; set a plain user.email")]
    BadPrincipal(String),
    /// The key of an allowed-signers line is not one line.
    #[error("the key for the allowed-signers line is not a single line")]
    BadKeyLine,
    /// Not an OpenSSH public or private key.
    #[error("not an OpenSSH key: {0}")]
    Key(#[from] ssh_key::Error),
}

/// Characters a POSIX shell never treats specially inside a word (anywhere in it).
const SHELL_SAFE: &str = "/._-+:@=,";

/// One word for a POSIX shell: as it is when it holds only safe characters, otherwise in
/// single quotes (a `'` becomes `'\''`). The empty word becomes `''`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || SHELL_SAFE.contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A command line for a POSIX shell: each word through [`shell_quote`], joined by spaces.
pub fn shell_line(cmd: &[String]) -> String {
    cmd.iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The line that points ssh/git at the agent: POSIX shells (`eval "$(auths agent env)"`) or,
/// on Windows, PowerShell (`auths agent env | Invoke-Expression`).
pub fn env_line(socket: &str, powershell: bool) -> String {
    if powershell {
        format!("$env:SSH_AUTH_SOCK = '{}'", socket.replace('\'', "''"))
    } else {
        format!(
            "SSH_AUTH_SOCK={}; export SSH_AUTH_SOCK;",
            shell_quote(socket)
        )
    }
}

/// The line that reports the agent's pid, in the same shell as [`env_line`].
pub fn pid_line(pid: u32, powershell: bool) -> String {
    if powershell {
        format!("Write-Host 'Agent pid {pid}'")
    } else {
        format!("echo Agent pid {pid};")
    }
}

fn systemd_quoted(s: &str, dollar: bool) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || SHELL_SAFE.contains(c))
    {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            // Specifiers are expanded in every unit setting we write.
            '%' => out.push_str("%%"),
            // `ExecStart=` expands `$VAR` and `${VAR}`, quoted or not.
            '$' if dollar => out.push_str("$$"),
            // A newline would end the setting; every control character goes as a C escape.
            c if c.is_control() && u32::from(c) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One word of a systemd `ExecStart=` line: as it is when it holds only safe characters,
/// otherwise double-quoted with `\\`, `\"`, C escapes for control characters, `%%` for `%`
/// (specifiers) and `$$` for `$` (variable expansion). The empty word becomes `""`.
pub fn systemd_exec_word(s: &str) -> String {
    systemd_quoted(s, true)
}

/// One `NAME=value` assignment of a systemd `Environment=` setting, quoted like
/// [`systemd_exec_word`] except that `$` is literal there.
pub fn systemd_env_assignment(s: &str) -> String {
    systemd_quoted(s, false)
}

/// Character data for an XML element (a plist `<string>`): `&`, `<`, `>` and `"` become
/// entity references. Control characters other than tab, newline and carriage return are not
/// allowed in XML 1.0 even as references, so they are refused.
pub fn xml_escape(s: &str) -> Result<String, TextError> {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if u32::from(c) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                return Err(TextError::NotXml(s.to_owned(), u32::from(c)));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// `type base64` of an OpenSSH public key line (the comment dropped).
pub fn key_without_comment(line: &str) -> Result<String, TextError> {
    let key = ssh_key::PublicKey::from_openssh(line.trim())?;
    Ok(ssh_key::PublicKey::new(key.key_data().clone(), "").to_openssh()?)
}

/// The allowed-signers line for `email` and `key` (ssh-keygen(1) "ALLOWED SIGNERS"): the
/// principal, `namespaces="git"`, the key. The principal comes from git's `user.email`, so
/// one that would split the line into other fields or start a comment is refused.
pub fn allowed_signers_line(email: &str, key: &str) -> Result<String, TextError> {
    if email.is_empty()
        || email.starts_with('#')
        || email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        return Err(TextError::BadPrincipal(email.to_owned()));
    }
    if key.is_empty() || key.chars().any(|c| c.is_control()) {
        return Err(TextError::BadKeyLine);
    }
    Ok(format!("{email} namespaces=\"git\" {key}"))
}

/// An OpenSSH private key file (`-----BEGIN OPENSSH PRIVATE KEY-----`, PROTOCOL.key), as
/// `auths agent add KEYFILE` reads it. Encrypted keys come back encrypted.
pub fn private_key_from_openssh(text: &str) -> Result<ssh_key::PrivateKey, TextError> {
    Ok(ssh_key::PrivateKey::from_openssh(text.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_lines_quote_what_the_shell_would_split() {
        assert_eq!(shell_quote("/home/a/.auths/x.pub"), "/home/a/.auths/x.pub");
        assert_eq!(shell_quote("my key.pub"), "'my key.pub'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn an_empty_word_stays_a_word() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(
            shell_line(&["a".into(), String::new(), "b c".into()]),
            "a '' 'b c'"
        );
        assert_eq!(systemd_exec_word(""), "\"\"");
    }

    #[test]
    fn env_line_for_posix_shells_and_powershell() {
        assert_eq!(
            env_line("/home/a/.auths/agent.sock", false),
            "SSH_AUTH_SOCK=/home/a/.auths/agent.sock; export SSH_AUTH_SOCK;"
        );
        assert_eq!(
            env_line("/tmp/a b", false),
            "SSH_AUTH_SOCK='/tmp/a b'; export SSH_AUTH_SOCK;"
        );
        assert_eq!(
            env_line("", false),
            "SSH_AUTH_SOCK=''; export SSH_AUTH_SOCK;"
        );
        assert_eq!(
            env_line(r"\\.\pipe\auths-agent-alice", true),
            r"$env:SSH_AUTH_SOCK = '\\.\pipe\auths-agent-alice'"
        );
        assert_eq!(
            env_line(r"\\.\pipe\o'brien", true),
            r"$env:SSH_AUTH_SOCK = '\\.\pipe\o''brien'"
        );
        assert_eq!(pid_line(42, false), "echo Agent pid 42;");
        assert_eq!(pid_line(42, true), "Write-Host 'Agent pid 42'");
    }

    #[test]
    fn systemd_words_escape_specifiers_variables_and_newlines() {
        assert_eq!(
            systemd_exec_word("/opt/my tools/auths"),
            "\"/opt/my tools/auths\""
        );
        assert_eq!(systemd_exec_word("/home/100%"), "\"/home/100%%\"");
        assert_eq!(systemd_exec_word("/home/$USER"), "\"/home/$$USER\"");
        assert_eq!(systemd_env_assignment("A=/home/$USER"), "\"A=/home/$USER\"");
        assert_eq!(systemd_exec_word("a\nb\"c\\"), "\"a\\x0ab\\\"c\\\\\"");
    }

    #[test]
    fn xml_escape_refuses_what_xml_cannot_hold() {
        assert_eq!(
            xml_escape("/Users/a&b/<auths>").unwrap(),
            "/Users/a&amp;b/&lt;auths&gt;"
        );
        assert!(matches!(
            xml_escape("/tmp/a\u{1}b"),
            Err(TextError::NotXml(_, 1))
        ));
    }

    #[test]
    fn allowed_signers_line_limits_the_key_to_git() {
        assert_eq!(
            allowed_signers_line("a@b.c", "ssh-ed25519 AAAA").unwrap(),
            "a@b.c namespaces=\"git\" ssh-ed25519 AAAA"
        );
    }

    #[test]
    fn allowed_signers_line_refuses_a_principal_that_would_inject_a_line() {
        for bad in ["", "a b@c", "a@b\nssh-ed25519 AAAA evil", "#a@b", "a\"@b"] {
            assert!(
                matches!(
                    allowed_signers_line(bad, "ssh-ed25519 AAAA"),
                    Err(TextError::BadPrincipal(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            allowed_signers_line("a@b.c", "ssh-ed25519 AAAA\nx"),
            Err(TextError::BadKeyLine)
        ));
    }

    #[test]
    fn key_without_comment_drops_the_comment_and_refuses_garbage() {
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsAs59N3OG3pyKMzIoJy/CW6LKQE0jAsZmHJPUotCy7 ada@laptop";
        assert_eq!(
            key_without_comment(line).unwrap(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsAs59N3OG3pyKMzIoJy/CW6LKQE0jAsZmHJPUotCy7"
        );
        assert!(key_without_comment("ssh-ed25519 !!!").is_err());
        assert!(private_key_from_openssh("-----BEGIN OPENSSH PRIVATE KEY-----\n").is_err());
    }
}
