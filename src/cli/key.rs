//! `auths key generate|import|list|remove|rewrap|test`: identity keys sealed by the enrolled
//! security keys (hmac-secret), in `$AUTHS_HOME/keys/<id>.sealed`.
//!
//! Progress, prompts and warnings go to stderr; stdout carries only what scripts read (the
//! public key line of `generate` and `import`, or JSON).

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand, ValueEnum};
use zeroize::Zeroizing;

use auths_presence::ctap::backend::SecurityKey;
use auths_presence::ctap::device::{CancelToken, DeviceOptions};
use auths_presence::ctap::select::{self, DeviceSelector};
use auths_presence::ctap::CtapError;
use auths_presence::presence::enrollment::{Enrollment, TokenStore};
use auths_presence::presence::prompt::escape_control;
use auths_presence::presence::seal_ops::{
    self, cannot_seal_reason, check_label, seal_client_data, sealing_touch, split_sealers,
    SealAction, SealOpError, SecretAsk, Verification,
};
use auths_presence::presence::sealed::{SealError, SealedKey, SealedStore};
use auths_presence::presence::touch::HmacSecret;

use super::{home, CliResult};

/// Largest private key file `auths key import` reads (an RSA-8192 key is about 6.5 KiB).
const MAX_KEY_FILE: u64 = 64 * 1024;

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Create an identity key sealed by every enrolled security key that answers (one touch
    /// each); prints its OpenSSH public key line.
    Generate {
        /// Key type.
        #[arg(long = "type", value_enum, default_value_t = KeyType::Ed25519)]
        kind: KeyType,
        /// A name for the key (the public key's comment).
        #[arg(long, value_name = "L")]
        label: Option<String>,
        #[command(flatten)]
        seal: SealArgs,
        /// Print JSON (id, label, public key, fingerprint, uv, sealed for) instead of the line.
        #[arg(long)]
        json: bool,
    },
    /// Seal an existing OpenSSH private key file (decrypted with its passphrase first).
    Import {
        /// The private key file (`-----BEGIN OPENSSH PRIVATE KEY-----`).
        file: PathBuf,
        /// A name for the key (default: the key's comment, else the file name).
        #[arg(long, value_name = "L")]
        label: Option<String>,
        /// Delete the plaintext file once the key is sealed (without it, a terminal is asked).
        #[arg(long)]
        delete_plaintext: bool,
        #[command(flatten)]
        seal: SealArgs,
        /// Print JSON instead of the public key line.
        #[arg(long)]
        json: bool,
    },
    /// List sealed keys and the security keys each is (and is not yet) sealed for.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove a sealed key for good.
    Remove {
        /// Id (or unique prefix) or label, as `auths key list` shows them.
        id: String,
    },
    /// Seal keys for enrolled security keys they are not sealed for yet (a backup enrolled
    /// later): one touch on a key that opens it, then one on each new key.
    Rewrap {
        /// Only this key (id, prefix or label); default every key missing a security key.
        id: Option<String>,
        #[command(flatten)]
        devices: Devices,
    },
    /// One touch: check that a security key opens a sealed key (prints its fingerprint).
    #[command(alias = "check")]
    Test {
        /// Id (or unique prefix) or label.
        id: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        devices: Devices,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// Ed25519.
    Ed25519,
    /// ECDSA on NIST P-256.
    EcdsaP256,
}

/// Which security keys to use: `--device` repeated, else `AUTHS_DEVICE`, else every plugged-in
/// FIDO key.
#[derive(Args, Debug, Clone)]
pub struct Devices {
    /// A security key to use: usb, usb:PATH, sim:SOCKET or windows; repeat for several
    /// [env: AUTHS_DEVICE; default every plugged-in key].
    #[arg(long = "device", value_name = "D")]
    pub devices: Vec<String>,
    /// How long to wait for each touch.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = auths_presence::presence::policy::parse_duration)]
    pub touch_timeout: Duration,
}

/// How a new key is sealed.
#[derive(Args, Debug, Clone)]
pub struct SealArgs {
    /// Seal under the secret a security key gives on a touch alone, without its PIN or
    /// fingerprint (any program running as you can get that secret while the key is plugged
    /// in).
    #[arg(long)]
    no_uv: bool,
    #[command(flatten)]
    devices: Devices,
}

pub fn run(cmd: KeyCmd) -> CliResult {
    match cmd {
        KeyCmd::Generate {
            kind,
            label,
            seal,
            json,
        } => generate(kind, label, &seal, json),
        KeyCmd::Import {
            file,
            label,
            delete_plaintext,
            seal,
            json,
        } => import(&file, label, delete_plaintext, &seal, json),
        KeyCmd::List { json } => list(json),
        KeyCmd::Remove { id } => remove(&id),
        KeyCmd::Rewrap { id, devices } => rewrap(id.as_deref(), &devices),
        KeyCmd::Test { id, json, devices } => test(&id, json, &devices),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One open security key.
struct Opened {
    key: Box<dyn SecurityKey>,
    selector: String,
    /// A pinUvAuthToken the key has not spent yet (it held none of the credentials asked).
    unused_token: Option<auths_presence::ctap::client_pin::PinUvAuthToken>,
}

impl Devices {
    fn selectors(&self) -> Result<Vec<DeviceSelector>, Box<dyn std::error::Error>> {
        if !self.devices.is_empty() {
            return Ok(self
                .devices
                .iter()
                .map(|d| d.parse())
                .collect::<Result<_, _>>()?);
        }
        match DeviceSelector::from_env()? {
            DeviceSelector::Usb => {
                let keys = auths_presence::ctap::hid::enumerate()?;
                if keys.is_empty() {
                    return Err(Box::new(CtapError::NoDevice));
                }
                Ok(keys
                    .into_iter()
                    .map(|k| DeviceSelector::UsbPath(k.path))
                    .collect())
            }
            other => Ok(vec![other]),
        }
    }

    fn options(&self) -> DeviceOptions {
        DeviceOptions {
            deadline: self.touch_timeout,
            ..DeviceOptions::default()
        }
    }

    /// Open every selected key. A key named with `--device` that does not open is an error;
    /// one found by enumeration is skipped with a warning.
    fn open(&self) -> Result<Vec<Opened>, Box<dyn std::error::Error>> {
        let explicit = !self.devices.is_empty();
        let mut out = Vec::new();
        for selector in self.selectors()? {
            let name = selector.to_string();
            match select::open_key(&selector, self.options(), &mut |_| {}) {
                Ok(key) => {
                    if key.is_virtual() {
                        eprintln!(
                            "warning: {} is a VIRTUAL key (software, not hardware): a key sealed by it is only as safe as its state file.",
                            escape_control(key.description())
                        );
                    }
                    out.push(Opened {
                        key,
                        selector: name,
                        unused_token: None,
                    });
                }
                Err(e) if !explicit => {
                    eprintln!(
                        "skipping {}: {}",
                        escape_control(&name),
                        escape_control(&e.to_string())
                    );
                }
                Err(e) => return Err(format!("cannot open {name}: {e}").into()),
            }
        }
        Ok(out)
    }
}

/// "Touch your security key to WHY: KEY", once.
fn touch_prompt(why: &str, key: &str) -> impl FnMut() {
    let line = format!("Touch your security key to {why}: {}", escape_control(key));
    let mut shown = false;
    move || {
        if !shown {
            shown = true;
            eprintln!("{line}");
        }
    }
}

fn token_name(t: &Enrollment) -> String {
    format!("{} ({})", t.id, escape_control(&t.label))
}

/// [`token_name`] of each, joined by `sep`.
fn token_names<'a>(tokens: impl Iterator<Item = &'a Enrollment>, sep: &str) -> String {
    tokens.map(token_name).collect::<Vec<_>>().join(sep)
}

/// The refusal when no enrolled key can seal, naming those that cannot and why.
fn no_sealer(tokens: &[Enrollment]) -> Box<dyn std::error::Error> {
    if tokens.is_empty() {
        return "no security key is enrolled; enroll one with `auths token enroll` (a FIDO2 key with hmac-secret: a YubiKey 5, a SoloKey, a Nitrokey 3, ...)".into();
    }
    let why: Vec<String> = tokens
        .iter()
        .filter_map(|t| cannot_seal_reason(t).map(|r| format!("{}: {r}", token_name(t))))
        .collect();
    format!(
        "no enrolled security key can seal identity keys ({}); enroll a FIDO2 key with the hmac-secret extension (`auths token enroll`; re-enroll a key enrolled before hmac-secret was asked for)",
        why.join("; ")
    )
    .into()
}

/// The enrolled credentials that can seal (an error naming the others when there is none).
fn sealers(tokens: &[Enrollment]) -> Result<Vec<&Enrollment>, Box<dyn std::error::Error>> {
    let (can, cannot) = split_sealers(tokens);
    if can.is_empty() {
        return Err(no_sealer(tokens));
    }
    for t in cannot {
        eprintln!(
            "note: {} cannot seal ({}); it will not open sealed keys",
            token_name(t),
            cannot_seal_reason(t).unwrap_or("")
        );
    }
    Ok(can)
}

/// Whether to seal under the user-verified secret, from `--no-uv` and what the keys can do.
fn choose_uv(no_uv: bool, keys: &[Opened]) -> Result<bool, Box<dyn std::error::Error>> {
    if no_uv {
        eprintln!(
            "warning: --no-uv: sealed under the secret a security key gives on a touch alone. \
             Many keys give that secret without any touch (hmac-secret with up=false), so any \
             program running as you can open this key while the security key is plugged in."
        );
        return Ok(false);
    }
    let without: Vec<&Opened> = keys
        .iter()
        .filter(|k| seal_ops::verification(&k.key) == Verification::None)
        .collect();
    if without.is_empty() {
        return Ok(true);
    }
    if without.len() == keys.len() {
        eprintln!(
            "warning: {} has no PIN and no fingerprint, so the key is sealed under the secret it \
             gives on a touch alone, which many keys also give without a touch to any program \
             running as you while it is plugged in. Set a PIN on the security key (e.g. \
             `ykman fido access change-pin`) and seal again for the stronger, user-verified seal.",
            without
                .iter()
                .map(|k| escape_control(k.key.description()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(false);
    }
    Err(format!(
        "{} has no PIN and no fingerprint, but the other security keys do: one file is sealed one way for all of them. Set a PIN on it (e.g. `ykman fido access change-pin`), leave it out (--device), or pass --no-uv to seal without user verification",
        without
            .iter()
            .map(|k| escape_control(k.key.description()))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .into())
}

/// What each sealing touch is told.
struct Round<'a> {
    action: SealAction,
    key_id: &'a str,
    label: &'a str,
    salt: &'a [u8; 32],
    uv: bool,
}

/// One sealing touch on `k` for any of `creds`: the secret, or `None` when the key holds
/// none of them. The enrolled counter is updated.
fn touch_one(
    k: &mut Opened,
    store: &TokenStore,
    creds: &[&Enrollment],
    round: &Round<'_>,
) -> Result<Option<HmacSecret>, Box<dyn std::error::Error>> {
    if creds.is_empty() {
        return Ok(None);
    }
    let credentials = seal_ops::credentials(creds)?;
    let client_data = seal_client_data(round.action, round.key_id, round.label, now_unix());
    let purpose = format!(
        "{} {} ({})",
        round.action.purpose(),
        round.key_id,
        escape_control(round.label)
    );
    let mut prompt = touch_prompt(&purpose, k.key.description());
    let cancel = CancelToken::new();
    let result = sealing_touch(
        &mut k.key,
        &SecretAsk {
            creds: &credentials,
            client_data: &client_data,
            salt: round.salt,
            uv: round.uv,
            purpose: &purpose,
        },
        &mut *super::pin::source(),
        &mut k.unused_token,
        &mut prompt,
        Some(&cancel),
    );
    match result {
        Ok((verified, secret)) => {
            let a = verified.assertion();
            store.save_sign_count(a.credential_id(), a.sign_count())?;
            Ok(Some(secret))
        }
        Err(e) if e.is_no_credentials() => Ok(None),
        Err(e) => Err(explain(e, k, creds)),
    }
}

/// A sealing failure with the next step.
fn explain(e: SealOpError, k: &Opened, creds: &[&Enrollment]) -> Box<dyn std::error::Error> {
    use auths_presence::ctap::StatusCode;
    use auths_presence::presence::touch::TouchError;
    let at = escape_control(&k.selector);
    match e {
        SealOpError::Touch(TouchError::Device(
            CtapError::Status(StatusCode::UserActionTimeout) | CtapError::Deadline(_),
        )) => format!(
            "nobody touched {at} in time; run the command again and touch the key when it blinks"
        )
        .into(),
        SealOpError::Touch(TouchError::Device(CtapError::Unsupported(m))) => format!(
            "{at}: {m}; the enrolled security keys that can are: {}",
            token_names(creds.iter().copied(), ", ")
        )
        .into(),
        SealOpError::NoUserVerification { .. } => format!(
            "{at}: {e}; set a PIN on it (e.g. `ykman fido access change-pin`), then run the command again"
        )
        .into(),
        other => Box::new(other),
    }
}

fn name_of(sealed: &SealedKey) -> String {
    format!("{} ({})", sealed.id, escape_control(&sealed.label))
}

/// Seal `private` for every opened key holding an enrolled credential that can seal, and save
/// it; prints the public key line (or JSON).
fn seal_and_save(
    mut private: ssh_key::PrivateKey,
    label: &str,
    seal: &SealArgs,
    json: bool,
) -> Result<SealedKey, Box<dyn std::error::Error>> {
    let home = home();
    let store = TokenStore::open(&home)?;
    let tokens = store.list()?;
    let can = sealers(&tokens)?;
    let sealed_store = SealedStore::new(&home);
    private.set_comment(label);
    let id = auths_presence::presence::sealed::key_id(private.public_key())?;
    if sealed_store.path(&id).exists() {
        return Err(Box::new(SealError::Exists(id)));
    }
    let mut keys = seal.devices.open()?;
    if keys.is_empty() {
        return Err(Box::new(CtapError::NoDevice));
    }
    let uv = choose_uv(seal.no_uv, &keys)?;
    let mut salt = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
    let round = Round {
        action: SealAction::Seal,
        key_id: &id,
        label,
        salt: &salt,
        uv,
    };
    let mut secrets: Vec<HmacSecret> = Vec::new();
    for k in &mut keys {
        let left: Vec<&Enrollment> = can
            .iter()
            .copied()
            .filter(|t| !secrets.iter().any(|s| s.credential_id() == t.credential_id))
            .collect();
        match touch_one(k, &store, &left, &round)? {
            Some(s) => secrets.push(s),
            None => eprintln!(
                "{} holds no enrolled credential that can seal: skipped (enroll it with `auths token enroll`)",
                escape_control(&k.selector)
            ),
        }
    }
    if secrets.is_empty() {
        return Err(format!(
            "none of the security keys used holds an enrolled credential that can seal (enrolled: {}); plug in an enrolled key",
            token_names(can.iter().copied(), ", ")
        )
        .into());
    }
    let unsealers: Vec<_> = secrets.iter().map(HmacSecret::unsealer).collect();
    let sealed = SealedKey::seal(&private, label, salt, uv, &unsealers, now_unix())?;
    drop(private);
    let path = sealed_store.save(&sealed, false)?;
    let missing: Vec<&&Enrollment> = can
        .iter()
        .filter(|t| !sealed.sealed_for().any(|c| c == t.credential_id))
        .collect();
    let sealed_for: Vec<&Enrollment> = can
        .iter()
        .copied()
        .filter(|t| sealed.sealed_for().any(|c| c == t.credential_id))
        .collect();
    eprintln!(
        "sealed {} for {} under the {} secret: {}",
        name_of(&sealed),
        token_names(sealed_for.iter().copied(), ", "),
        if uv { "user-verified" } else { "touch-only" },
        path.display()
    );
    if !missing.is_empty() {
        eprintln!(
            "not sealed yet for {}: plug it in and run `auths key rewrap {}`",
            token_names(missing.iter().map(|t| **t), ", "),
            sealed.id
        );
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&describe(&sealed, &tokens)?)?
        );
    } else {
        println!("{}", sealed.public_key);
    }
    Ok(sealed)
}

fn generate(kind: KeyType, label: Option<String>, seal: &SealArgs, json: bool) -> CliResult {
    let label = label.unwrap_or_else(|| "auths".to_owned());
    check_label(&label)?;
    let algorithm = match kind {
        KeyType::Ed25519 => ssh_key::Algorithm::Ed25519,
        KeyType::EcdsaP256 => ssh_key::Algorithm::Ecdsa {
            curve: ssh_key::EcdsaCurve::NistP256,
        },
    };
    let private = ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, algorithm)
        .map_err(|e| format!("cannot generate the key: {e}"))?;
    seal_and_save(private, &label, seal, json)?;
    Ok(())
}

/// The file's text, bounded, as UTF-8 in a zeroizing buffer.
fn read_key_file(file: &Path) -> Result<Zeroizing<String>, Box<dyn std::error::Error>> {
    let f =
        std::fs::File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut bytes = Zeroizing::new(Vec::new());
    f.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(format!(
            "{} is larger than {MAX_KEY_FILE} bytes: not an OpenSSH private key",
            file.display()
        )
        .into());
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        format!(
            "{} is not an OpenSSH private key (not text)",
            file.display()
        )
    })?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// The passphrase of `file`, from this run's PIN source: `AUTHS_ASKPASS`, `AUTHS_PINENTRY` or
/// the terminal.
fn passphrase(file: &Path) -> Result<Zeroizing<String>, Box<dyn std::error::Error>> {
    let prompt = format!(
        "Passphrase for {}: ",
        escape_control(&file.display().to_string())
    );
    let shown = escape_control(&file.display().to_string());
    super::pin::source()
        .passphrase(&prompt)
        .map_err(|e| match e {
            auths_presence::presence::pin_entry::PinEntryError::NoSource => format!(
                "{shown} is encrypted and nothing can ask for its passphrase: run this in a terminal, or set AUTHS_ASKPASS or AUTHS_PINENTRY"
            )
            .into(),
            e => format!("no passphrase for {shown}: {e}").into(),
        })
}

/// Refuse a key the agent cannot sign with: the agent's own check, on a throwaway store.
fn check_agent_can_sign(private: &ssh_key::PrivateKey) -> CliResult {
    use auths_presence::agent::keys::{KeyStore, UnlockPolicy};
    let mut store = KeyStore::new(UnlockPolicy::default());
    store
        .add(
            private.key_data().clone(),
            String::new(),
            None,
            std::time::Instant::now(),
        )
        .map_err(|e| format!("the agent cannot sign with this key: {e}"))?;
    store.wipe();
    Ok(())
}

fn import(
    file: &Path,
    label: Option<String>,
    delete_plaintext: bool,
    seal: &SealArgs,
    json: bool,
) -> CliResult {
    // Deleting a symbolic link would leave the key it points to: refuse before any touch.
    if delete_plaintext && std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink())
    {
        return Err(format!(
            "{} is a symbolic link: --delete-plaintext would delete the link and leave the key it points to; import the file it points to",
            escape_control(&file.display().to_string())
        )
        .into());
    }
    let text = read_key_file(file)?;
    let mut private = auths_presence::text::private_key_from_openssh(&text)
        .map_err(|e| format!("{} is not an OpenSSH private key: {e}", file.display()))?;
    if private.is_encrypted() {
        let pass = passphrase(file)?;
        private = auths_presence::text::decrypt_private_key(&text, pass.as_bytes())
            .map_err(|_| format!("wrong passphrase for {}", file.display()))?;
    }
    drop(text);
    check_agent_can_sign(&private)?;
    let label = match label {
        Some(l) => l,
        None if !private.comment().is_empty() && check_label(private.comment()).is_ok() => {
            private.comment().to_owned()
        }
        None => file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| check_label(n).is_ok())
            .unwrap_or_else(|| "imported".to_owned()),
    };
    check_label(&label)?;
    let sealed = seal_and_save(private, &label, seal, json)?;
    let terminal = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let delete = if delete_plaintext {
        true
    } else if terminal {
        ask_yes_no(&format!(
            "Delete the plaintext key {}? Keep it only if you store it somewhere safe. [y/N] ",
            escape_control(&file.display().to_string())
        ))?
    } else {
        eprintln!(
            "kept the plaintext key {}: delete it yourself once you no longer need it (or pass --delete-plaintext)",
            escape_control(&file.display().to_string())
        );
        false
    };
    if delete {
        std::fs::remove_file(file).map_err(|e| {
            format!(
                "{} is sealed as {}, but the plaintext {} could not be deleted: {e}; delete it yourself",
                sealed.id,
                sealed.id,
                file.display()
            )
        })?;
        eprintln!(
            "deleted {} (on SSDs and copy-on-write file systems its bytes may linger on the disk; backups keep copies)",
            escape_control(&file.display().to_string())
        );
    } else if terminal {
        // Asked, and the answer was no.
        eprintln!(
            "kept the plaintext key {}",
            escape_control(&file.display().to_string())
        );
    }
    Ok(())
}

fn ask_yes_no(question: &str) -> Result<bool, Box<dyn std::error::Error>> {
    use std::io::{BufRead, Write};
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().take(64).read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// A sealed key for `auths key list --json`.
fn describe(
    k: &SealedKey,
    tokens: &[Enrollment],
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let public = ssh_key::PublicKey::from_openssh(&k.public_key)?;
    let enrolled = |c: &[u8]| tokens.iter().find(|t| t.credential_id == c);
    let sealed_for: Vec<serde_json::Value> = k
        .sealed_for()
        .map(|c| match enrolled(c) {
            Some(t) => serde_json::json!({"id": t.id, "label": t.label, "enrolled": true}),
            None => {
                serde_json::json!({"id": Enrollment::short_id(c), "label": null, "enrolled": false})
            }
        })
        .collect();
    let (can, cannot) = split_sealers(tokens);
    let not_sealed_for: Vec<serde_json::Value> = can
        .iter()
        .filter(|t| !k.sealed_for().any(|c| c == t.credential_id))
        .map(|t| serde_json::json!({"id": t.id, "label": t.label}))
        .collect();
    let cannot_seal: Vec<serde_json::Value> = cannot
        .iter()
        .map(|t| serde_json::json!({"id": t.id, "label": t.label, "reason": cannot_seal_reason(t)}))
        .collect();
    Ok(serde_json::json!({
        "id": k.id,
        "label": k.label,
        "type": public.algorithm().as_str(),
        "public_key": k.public_key,
        "fingerprint": public.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
        "uv": k.uv,
        "created": k.created,
        "sealed_for": sealed_for,
        "not_sealed_for": not_sealed_for,
        "cannot_seal": cannot_seal,
    }))
}

fn list(json: bool) -> CliResult {
    let home = home();
    let tokens = TokenStore::open(&home)?.list()?;
    // The files that read are listed; each that does not is named on stderr, and the command
    // fails after listing the others.
    let (keys, unreadable) = SealedStore::new(&home).load_all();
    let described = keys
        .iter()
        .map(|k| describe(k, &tokens))
        .collect::<Result<Vec<_>, _>>()?;
    let result: CliResult = match unreadable.len() {
        0 => Ok(()),
        n => {
            for e in &unreadable {
                for line in super::error::report(e) {
                    eprintln!("{line}");
                }
            }
            Err(format!(
                "{n} sealed key file(s) cannot be read (above): restore them from a copy, or remove them"
            )
            .into())
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&described)?);
        return result;
    }
    if keys.is_empty() && unreadable.is_empty() {
        eprintln!("no sealed key; create one with `auths key generate` or `auths key import FILE`");
        return Ok(());
    }
    println!(
        "{:<16}  {:<12}  {:<20}  {:<3}  {:<50}  SEALED FOR",
        "ID", "LABEL", "TYPE", "UV", "FINGERPRINT"
    );
    for d in &described {
        let ids = |v: &serde_json::Value| {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .map(|t| {
                            let id = t["id"].as_str().unwrap_or("?");
                            match t["enrolled"].as_bool() {
                                Some(false) => format!("{id} (no longer enrolled)"),
                                _ => id.to_owned(),
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        let missing = ids(&d["not_sealed_for"]);
        println!(
            "{:<16}  {:<12}  {:<20}  {:<3}  {:<50}  {}{}",
            escape_control(d["id"].as_str().unwrap_or("")),
            escape_control(d["label"].as_str().unwrap_or("")),
            d["type"].as_str().unwrap_or(""),
            if d["uv"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            d["fingerprint"].as_str().unwrap_or(""),
            escape_control(&ids(&d["sealed_for"])),
            if missing.is_empty() {
                String::new()
            } else {
                format!(
                    "; NOT yet for {} (`auths key rewrap`)",
                    escape_control(&missing)
                )
            }
        );
    }
    result
}

fn remove(which: &str) -> CliResult {
    let store = SealedStore::new(&home());
    let k = store.remove(which)?;
    eprintln!(
        "removed sealed key {}. It is gone for good unless you kept a copy of the private key or of {}.{}.",
        name_of(&k),
        k.id,
        auths_presence::presence::sealed::EXTENSION
    );
    Ok(())
}

/// One touch on a key that opens `sealed` (a `rewrap` or `check` touch): the secret, and which
/// opened key gave it. Keys that hold none of its credentials are left in `keys` for sealing.
fn open_touch(
    sealed: &SealedKey,
    action: SealAction,
    keys: &mut [Opened],
    store: &TokenStore,
    tokens: &[Enrollment],
) -> Result<(HmacSecret, usize), Box<dyn std::error::Error>> {
    let (can, _) = split_sealers(tokens);
    let wrapped: Vec<&Enrollment> = can
        .iter()
        .copied()
        .filter(|t| sealed.sealed_for().any(|c| c == t.credential_id))
        .collect();
    if wrapped.is_empty() {
        return Err(format!(
            "no enrolled security key opens {}: it is sealed for {}, none of which is enrolled now; enroll one of them again, or import the key again from a copy",
            name_of(sealed),
            sealed
                .sealed_for()
                .map(Enrollment::short_id)
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into());
    }
    let salt: [u8; 32] = sealed
        .salt
        .as_slice()
        .try_into()
        .map_err(|_| "the sealed key's salt is not 32 bytes")?;
    let round = Round {
        action,
        key_id: &sealed.id,
        label: &sealed.label,
        salt: &salt,
        uv: sealed.uv,
    };
    for (i, k) in keys.iter_mut().enumerate() {
        if let Some(secret) = touch_one(k, store, &wrapped, &round)? {
            return Ok((secret, i));
        }
    }
    // Which enrolled credential answered? Ask with every sealing credential to name it.
    let others: Vec<&Enrollment> = can
        .iter()
        .copied()
        .filter(|t| !sealed.sealed_for().any(|c| c == t.credential_id))
        .collect();
    let backup = if others.is_empty() {
        String::new()
    } else {
        format!(
            " If the key plugged in is {} (enrolled after this key was sealed), plug in one of the keys above with it and run `auths key rewrap {}`.",
            token_names(others.iter().copied(), " or "),
            sealed.id
        )
    };
    Err(format!(
        "no security key used opens {}: it is sealed for {}.{backup}",
        name_of(sealed),
        token_names(wrapped.iter().copied(), ", ")
    )
    .into())
}

fn rewrap(which: Option<&str>, devices: &Devices) -> CliResult {
    let home = home();
    let store = TokenStore::open(&home)?;
    let tokens = store.list()?;
    let can = sealers(&tokens)?;
    let sealed_store = SealedStore::new(&home);
    let targets = match which {
        Some(w) => vec![sealed_store.find(w)?],
        None => sealed_store.list()?,
    };
    let missing_of = |k: &SealedKey| -> Vec<&Enrollment> {
        can.iter()
            .copied()
            .filter(|t| !k.sealed_for().any(|c| c == t.credential_id))
            .collect()
    };
    let targets: Vec<SealedKey> = targets
        .into_iter()
        .filter(|k| {
            let m = missing_of(k).is_empty();
            if m {
                eprintln!(
                    "{} is sealed for every enrolled security key that can seal",
                    name_of(k)
                );
            }
            !m
        })
        .collect();
    if targets.is_empty() {
        return Ok(());
    }
    let mut keys = devices.open()?;
    if keys.is_empty() {
        return Err(Box::new(CtapError::NoDevice));
    }
    for mut sealed in targets {
        let missing = missing_of(&sealed);
        let (opener, used) = open_touch(&sealed, SealAction::Rewrap, &mut keys, &store, &tokens)?;
        let salt: [u8; 32] = sealed
            .salt
            .as_slice()
            .try_into()
            .map_err(|_| "the sealed key's salt is not 32 bytes")?;
        let round = Round {
            action: SealAction::Seal,
            key_id: &sealed.id,
            label: &sealed.label,
            salt: &salt,
            uv: sealed.uv,
        };
        let mut more: Vec<HmacSecret> = Vec::new();
        for (i, k) in keys.iter_mut().enumerate() {
            if i == used {
                continue;
            }
            let left: Vec<&Enrollment> = missing
                .iter()
                .copied()
                .filter(|t| !more.iter().any(|s| s.credential_id() == t.credential_id))
                .collect();
            if left.is_empty() {
                break;
            }
            match touch_one(k, &store, &left, &round)? {
                Some(s) => more.push(s),
                None => eprintln!(
                    "{} holds none of the credentials {} is missing: skipped",
                    escape_control(&k.selector),
                    name_of(&sealed)
                ),
            }
        }
        if more.is_empty() {
            return Err(format!(
                "{} opened, but no other security key used holds {}: plug it in too (or name it with another --device) and run `auths key rewrap {}` again",
                name_of(&sealed),
                token_names(missing.iter().copied(), " or "),
                sealed.id
            )
            .into());
        }
        let unsealers: Vec<_> = more.iter().map(HmacSecret::unsealer).collect();
        sealed.rewrap(&opener.unsealer(), &unsealers)?;
        sealed_store.save(&sealed, true)?;
        let added: Vec<String> = more
            .iter()
            .map(|s| {
                tokens
                    .iter()
                    .find(|t| t.credential_id == s.credential_id())
                    .map(token_name)
                    .unwrap_or_else(|| Enrollment::short_id(s.credential_id()))
            })
            .collect();
        eprintln!(
            "{} is now sealed for {} too",
            name_of(&sealed),
            added.join(", ")
        );
    }
    Ok(())
}

fn test(which: &str, json: bool, devices: &Devices) -> CliResult {
    let home = home();
    let store = TokenStore::open(&home)?;
    let tokens = store.list()?;
    let sealed = SealedStore::new(&home).find(which)?;
    let mut keys = devices.open()?;
    if keys.is_empty() {
        return Err(Box::new(CtapError::NoDevice));
    }
    let (secret, _) = open_touch(&sealed, SealAction::Check, &mut keys, &store, &tokens)?;
    let private = sealed.unseal(&secret.unsealer())?;
    let fingerprint = private
        .public_key()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string();
    drop(private);
    let by = Enrollment::short_id(secret.credential_id());
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": true,
                "id": sealed.id,
                "fingerprint": fingerprint,
                "credential": by,
                "uv": sealed.uv,
            })
        );
    } else {
        println!("ok {fingerprint}");
        eprintln!("{} opens with security key {by}", name_of(&sealed));
    }
    Ok(())
}
