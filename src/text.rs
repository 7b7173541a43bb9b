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
//!   (PROTOCOL.key), through `ssh-key` (an ECDSA scalar is first put in the fixed-size form
//!   ssh-key reads: OpenSSH drops its leading zero bytes).

use thiserror::Error;

use crate::agent::ecdsa::{normalise_private_section, ScalarError};

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
    /// An ECDSA private key whose scalar is not a valid mpint of its curve.
    #[error("not a valid ECDSA private key: {0}")]
    EcdsaScalar(#[from] ScalarError),
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
/// `auths agent add KEYFILE` reads it. Encrypted keys come back encrypted (open them with
/// [`decrypt_private_key`]).
///
/// The private scalar of an ECDSA key is an mpint, written by OpenSSH without its leading zero
/// bytes, which ssh-key 0.6 refuses: it is put in its fixed-size form first, strictly
/// ([`crate::agent::ecdsa`]).
pub fn private_key_from_openssh(text: &str) -> Result<ssh_key::PrivateKey, TextError> {
    if let Some(bytes) = openssh_key_bytes(text) {
        if let Some(parts) = KeyFileParts::parse(&bytes) {
            if parts.cipher == b"none" {
                if let Some(section) = normalise_private_section(parts.private, 8, 8)? {
                    return Ok(ssh_key::PrivateKey::from_bytes(
                        &parts.unencrypted(&section),
                    )?);
                }
            }
        }
    }
    Ok(ssh_key::PrivateKey::from_openssh(text.as_bytes())?)
}

/// The OpenSSH private key file `text` opened with `passphrase` (an unencrypted one as it is).
/// An ECDSA scalar is put in its fixed-size form, as in [`private_key_from_openssh`].
pub fn decrypt_private_key(
    text: &str,
    passphrase: &[u8],
) -> Result<ssh_key::PrivateKey, TextError> {
    let key = private_key_from_openssh(text)?;
    if !key.is_encrypted() {
        return Ok(key);
    }
    let ecdsa = matches!(key.algorithm(), ssh_key::Algorithm::Ecdsa { .. });
    if let (true, Some(bytes)) = (ecdsa, openssh_key_bytes(text)) {
        if let Some(parts) = KeyFileParts::parse(&bytes) {
            // What ssh-key's `PrivateKey::decrypt` does, with the scalar fixed in between.
            let cipher = key.cipher();
            let (k, iv) = key.kdf().derive_key_and_iv(cipher, passphrase)?;
            let tag = match (cipher.has_tag(), parts.tag) {
                (false, []) => None,
                (true, t) => Some(<[u8; 16]>::try_from(t).map_err(|_| ssh_key::Error::Crypto)?),
                (false, _) => return Err(ssh_key::Error::Crypto.into()),
            };
            let mut plain = zeroize::Zeroizing::new(parts.private.to_vec());
            cipher
                .decrypt(&k, &iv, &mut plain, tag)
                .map_err(ssh_key::Error::from)?;
            if let Some(section) = normalise_private_section(&plain, cipher.block_size(), 8)? {
                return Ok(ssh_key::PrivateKey::from_bytes(
                    &parts.unencrypted(&section),
                )?);
            }
        }
    }
    Ok(key.decrypt(passphrase)?)
}

/// The bytes of an `OPENSSH PRIVATE KEY` PEM document, or `None` (ssh-key then says why).
fn openssh_key_bytes(text: &str) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    use ssh_encoding::Reader as _;
    let mut pem = ssh_encoding::pem::Decoder::new_wrapped(text.as_bytes(), 70).ok()?;
    if pem.type_label() != "OPENSSH PRIVATE KEY" {
        return None;
    }
    let mut out = zeroize::Zeroizing::new(vec![0; pem.remaining_len()]);
    pem.read(&mut out).ok()?;
    Some(out)
}

/// The fields of an OpenSSH key file (PROTOCOL.key §1) holding one key.
struct KeyFileParts<'a> {
    cipher: &'a [u8],
    public: &'a [u8],
    /// The private section, encrypted unless the cipher is `none`.
    private: &'a [u8],
    /// What follows it: the tag of an AEAD cipher.
    tag: &'a [u8],
}

impl<'a> KeyFileParts<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        fn string<'b>(rest: &mut &'b [u8]) -> Option<&'b [u8]> {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
            let s = tail.get(..len)?;
            *rest = &tail[len..];
            Some(s)
        }
        let mut rest = bytes.strip_prefix(b"openssh-key-v1\0")?;
        let cipher = string(&mut rest)?;
        string(&mut rest)?; // kdfname
        string(&mut rest)?; // kdfoptions
        let (n, tail) = rest.split_first_chunk::<4>()?;
        if u32::from_be_bytes(*n) != 1 {
            return None;
        }
        rest = tail;
        let public = string(&mut rest)?;
        let private = string(&mut rest)?;
        Some(KeyFileParts {
            cipher,
            public,
            private,
            tag: rest,
        })
    }

    /// The unencrypted key file with this public key and the private section `section`.
    fn unencrypted(&self, section: &[u8]) -> zeroize::Zeroizing<Vec<u8>> {
        // Sized up front: the section is secret, and a growing vector would leave copies.
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity(
            15 + 3 * 4 + 8 + 4 + 4 + self.public.len() + 4 + section.len(),
        ));
        out.extend_from_slice(b"openssh-key-v1\0");
        for s in [&b"none"[..], b"none", b""] {
            push_string(&mut out, s);
        }
        out.extend_from_slice(&1u32.to_be_bytes());
        push_string(&mut out, self.public);
        push_string(&mut out, section);
        out
    }
}

fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    // A section or public key of a file read into memory: its length came from a u32.
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
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

    fn ssh_string(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    }

    /// An unencrypted OpenSSH key file of the P-256 key `d` (point `q`), its scalar written as
    /// the mpint bytes `mpint`, padded with `pad` (PROTOCOL.key; ssh-keygen pads to 8).
    fn ecdsa_file(q: &[u8], mpint: &[u8], pad: &[u8]) -> String {
        use base64::Engine as _;
        let mut public = Vec::new();
        ssh_string(&mut public, b"ecdsa-sha2-nistp256");
        ssh_string(&mut public, b"nistp256");
        ssh_string(&mut public, q);
        let mut private = vec![1, 2, 3, 4, 1, 2, 3, 4];
        private.extend_from_slice(&public);
        ssh_string(&mut private, mpint);
        ssh_string(&mut private, b"c");
        private.extend_from_slice(pad);
        let mut file = b"openssh-key-v1\0".to_vec();
        for s in [&b"none"[..], b"none", b""] {
            ssh_string(&mut file, s);
        }
        file.extend_from_slice(&1u32.to_be_bytes());
        ssh_string(&mut file, &public);
        ssh_string(&mut file, &private);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&file);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(70)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    fn pair(zeros: usize) -> ([u8; 32], Vec<u8>) {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let mut d = [0x77u8; 32];
        d[..zeros].fill(0);
        let q = p256::SecretKey::from_slice(&d)
            .unwrap()
            .public_key()
            .to_encoded_point(false);
        (d, q.as_bytes().to_vec())
    }

    /// Padding `1, 2, …` that brings the section of [`ecdsa_file`] to a multiple of 8.
    fn pad_for(mpint_len: usize) -> Vec<u8> {
        // checkints 8, alg 23, curve 12, Q 69, mpint 4 + len, comment 5.
        let len = 8 + 23 + 12 + 69 + 4 + mpint_len + 5;
        (1..=((8 - len % 8) % 8) as u8).collect()
    }

    #[test]
    fn ecdsa_key_files_whose_scalar_lost_its_leading_zeros_are_read() {
        use p256::ecdsa::signature::{Signer, Verifier};
        for zeros in [1, 2] {
            let (d, q) = pair(zeros);
            let text = ecdsa_file(&q, &d[zeros..], &pad_for(32 - zeros));
            // ssh-key alone refuses it.
            assert!(ssh_key::PrivateKey::from_openssh(text.as_bytes()).is_err());
            let key = private_key_from_openssh(&text).unwrap();
            assert_eq!(key.comment(), "c");
            let ecdsa = key.key_data().ecdsa().unwrap();
            assert_eq!(ecdsa.private_key_bytes(), d);
            assert_eq!(ecdsa.public_key_bytes(), q);
            let sig: ssh_key::Signature = key.try_sign(b"m").unwrap();
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&q).unwrap();
            vk.verify(b"m", &p256::ecdsa::Signature::try_from(&sig).unwrap())
                .unwrap();
            // Unencrypted: "decrypting" gives the same key.
            assert_eq!(
                decrypt_private_key(&text, b"").unwrap().key_data(),
                key.key_data()
            );
        }
    }

    #[test]
    fn ecdsa_key_files_with_bad_scalars_or_padding_are_refused() {
        let (mut d, _) = pair(0);
        d[0] = 0x80;
        let q = pair(0).1;
        // A negative scalar (no sign byte), a 34-byte one: refused as such.
        assert!(matches!(
            private_key_from_openssh(&ecdsa_file(&q, &d, &pad_for(32))),
            Err(TextError::EcdsaScalar(ScalarError::Negative))
        ));
        let mut long = vec![0, 0];
        long.extend_from_slice(&pair(0).0);
        assert!(matches!(
            private_key_from_openssh(&ecdsa_file(&q, &long, &pad_for(34))),
            Err(TextError::EcdsaScalar(ScalarError::TooLong { .. }))
        ));
        // Bad padding is left to ssh-key, which refuses it.
        let (d, q) = pair(1);
        let mut pad = pad_for(31);
        pad.extend_from_slice(&[1; 8]);
        assert!(matches!(
            private_key_from_openssh(&ecdsa_file(&q, &d[1..], &pad)),
            Err(TextError::Key(_))
        ));
        // A point that is not this scalar's still reads (the file's two public keys agree);
        // the agent refuses the pair when it is added (`keys::KeyStore::add`).
        let other = pair(2).1;
        assert!(private_key_from_openssh(&ecdsa_file(&other, &d[1..], &pad_for(31))).is_ok());
    }

    /// The fuzz seed key (fuzz/seed-keys), written as ssh-keygen writes a short scalar.
    #[test]
    fn short_scalar_seed_key_reads() {
        let key = private_key_from_openssh(include_str!(
            "../fuzz/seed-keys/ecdsa-p256-short-scalar.txt"
        ))
        .unwrap();
        let ecdsa = key.key_data().ecdsa().unwrap();
        assert_eq!(ecdsa.private_key_bytes()[..2], [0, 1]);
    }
}
