//! `auths token enroll|list|remove|test`.

use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Subcommand, ValueEnum};

use auths_presence::ctap::backend::SecurityKey;
use auths_presence::ctap::command::Algorithm;
use auths_presence::ctap::cose::algorithm_name;
use auths_presence::ctap::device::CancelToken;
use auths_presence::ctap::select;
use auths_presence::ctap::{CtapError, StatusCode};
use auths_presence::presence::attestation::{self, Trust, Verdict};
use auths_presence::presence::challenge::self_test_client_data;
use auths_presence::presence::enrollment::{enroll_key_with_trust, Enrollment, TokenStore};
use auths_presence::presence::prompt::escape_control;
use auths_presence::presence::touch::{touch, Credentials, TouchError};

use super::{home, CliResult, DeviceArgs};

/// Default relying-party id of enrolled credentials.
pub const DEFAULT_RP_ID: &str = "auths:presence";

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Enroll a security key: one touch creates a credential on it.
    Enroll {
        /// A name for this key ("main", "backup").
        #[arg(long, value_name = "L")]
        label: Option<String>,
        /// Relying-party id to scope the credential to.
        #[arg(long, default_value = DEFAULT_RP_ID)]
        rp_id: String,
        /// Offer only this algorithm (the key must list it). Without it, ES256 and EdDSA are
        /// both offered, ES256 first, and the key picks.
        #[arg(long, value_enum)]
        alg: Option<AlgArg>,
        /// A FIDO Metadata Service BLOB you downloaded (https://mds3.fidoalliance.org/): its
        /// signature is verified up to the FIDO root; it names the key's model, adds the
        /// vendors' roots, and refuses models reported compromised or revoked.
        #[arg(long, value_name = "FILE")]
        mds: Option<std::path::PathBuf>,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// List enrolled keys.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove an enrolled key by id or label.
    Remove {
        /// Id (or unique prefix) or label, as `auths token list` shows them.
        id: String,
    },
    /// One touch, verified end to end against the enrolled keys.
    Test {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        device: DeviceArgs,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgArg {
    /// ECDSA P-256 (COSE -7): every FIDO2 key has it.
    Es256,
    /// Ed25519 (COSE -8): YubiKey 5.2.3+ and others.
    Eddsa,
}

pub fn run(cmd: TokenCmd) -> CliResult {
    match cmd {
        TokenCmd::Enroll {
            label,
            rp_id,
            alg,
            mds,
            device,
        } => enroll(label, &rp_id, alg, mds.as_deref(), &device),
        TokenCmd::List { json } => list(json),
        TokenCmd::Remove { id } => {
            let store = TokenStore::open(&home())?;
            let e = store.remove(&id)?;
            eprintln!("removed {} ({}, {})", e.id, e.label, e.device);
            Ok(())
        }
        TokenCmd::Test { json, device } => test(json, &device),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A callback that prints `line` on stderr the first time it runs.
fn say_once(line: String) -> impl FnMut() {
    let mut shown = false;
    move || {
        if !shown {
            shown = true;
            eprintln!("{line}");
        }
    }
}

/// The prompt shown once, when the key starts to blink: "Touch your security key to WHY: KEY".
/// The description carries the USB product name, the device's own text: it is escaped.
fn touch_prompt(why: &'static str, key: &str) -> impl FnMut() {
    say_once(format!(
        "Touch your security key to {why}: {}",
        escape_control(key)
    ))
}

/// Says once that the key is busy with another program, while the request waits its turn.
fn busy_prompt(key: &str) -> impl FnMut() {
    say_once(format!(
        "The security key is busy with another program (a browser waiting for a touch?): waiting for it: {}",
        escape_control(key)
    ))
}

fn open_key(device: &DeviceArgs) -> Result<Box<dyn SecurityKey>, Box<dyn std::error::Error>> {
    let selector = device.selector()?;
    let key = select::open_key_reporting_busy(
        &selector,
        device.options(),
        &mut |n| eprintln!("{n} security keys are plugged in: touch the one you want to use."),
        &mut busy_prompt(&selector.to_string()),
    )?;
    if key.is_virtual() {
        eprintln!(
            "warning: {} is a VIRTUAL key (software, not hardware): it proves nothing about a person being present.",
            escape_control(key.description())
        );
    }
    Ok(key)
}

/// The trust an enrollment is judged against: the bundled roots, and the MDS BLOB in `mds`
/// (verified up to the bundled FIDO MDS root) when one is given.
fn enrollment_trust(mds: Option<&std::path::Path>) -> Result<Trust, Box<dyn std::error::Error>> {
    let trust = Trust::bundled();
    let Some(path) = mds else {
        return Ok(trust);
    };
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read the MDS BLOB {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(attestation::mds::MAX_BLOB_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the MDS BLOB {}: {e}", path.display()))?;
    let m = attestation::mds::parse_and_verify(&bytes, &attestation::mds::fido_root()).map_err(
        |e| {
            format!(
                "{e} ({}); download it again from https://mds3.fidoalliance.org/",
                path.display()
            )
        },
    )?;
    eprintln!(
        "FIDO MDS BLOB no. {} verified ({} models, next update {})",
        m.no,
        m.len(),
        escape_control(&m.next_update)
    );
    let today = attestation::mds::utc_date(now_unix());
    if m.is_stale(&today) {
        eprintln!(
            "warning: this MDS BLOB's next update was due {}: statuses in it may be out of date; download a fresh one from https://mds3.fidoalliance.org/",
            escape_control(&m.next_update)
        );
    }
    Ok(trust.with_mds(m))
}

fn enroll(
    label: Option<String>,
    rp_id: &str,
    alg: Option<AlgArg>,
    mds: Option<&std::path::Path>,
    device: &DeviceArgs,
) -> CliResult {
    let store = TokenStore::open(&home())?;
    let trust = enrollment_trust(mds)?;
    let mut key = open_key(device)?;
    let preferred: &[Algorithm] = match alg {
        None => &[Algorithm::Es256, Algorithm::EdDsa],
        Some(AlgArg::Es256) => &[Algorithm::Es256],
        Some(AlgArg::Eddsa) => &[Algorithm::EdDsa],
    };
    let mut prompt = touch_prompt("enroll it", key.description());
    let enrollment = enroll_key_with_trust(
        key.as_mut(),
        &store,
        label.as_deref(),
        rp_id,
        preferred,
        &mut prompt,
        &mut *super::pin::source(),
        &trust,
    )?;
    println!(
        "enrolled {} ({}, {}, {}){}",
        enrollment.id,
        escape_control(&enrollment.label),
        enrollment.algorithm_name(),
        escape_control(&enrollment.device),
        if enrollment.virtual_key {
            " [virtual key]"
        } else {
            ""
        }
    );
    let a = &enrollment.attestation;
    match a.verdict {
        Verdict::Attested => println!(
            "attestation: attested by {}{}",
            escape_control(a.vendor.as_deref().unwrap_or("?")),
            a.model
                .as_deref()
                .map(|m| format!(" ({})", escape_control(m)))
                .unwrap_or_default()
        ),
        v => {
            println!("attestation: {v}");
            if v != Verdict::Virtual {
                eprintln!(
                    "warning: this key's model is not attested{}; `auths agent start --require-attested` will refuse it",
                    a.detail
                        .as_deref()
                        .map(|d| format!(" ({})", escape_control(d)))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

fn list(json: bool) -> CliResult {
    let store = TokenStore::open(&home())?;
    let tokens = store.list()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tokens)?);
        return Ok(());
    }
    if tokens.is_empty() {
        eprintln!("no security key is enrolled; enroll one with `auths token enroll`");
        return Ok(());
    }
    println!(
        "{:<16}  {:<10}  {:<6}  {:<5}  {:<8}  {:<15}  DEVICE",
        "ID", "LABEL", "ALG", "PROTO", "COUNTER", "ATTESTATION"
    );
    for t in tokens {
        println!(
            "{:<16}  {:<10}  {:<6}  {:<5}  {:<8}  {:<15}  {}{}",
            escape_control(&t.id),
            escape_control(&t.label),
            t.algorithm_name(),
            t.protocol,
            t.sign_count,
            t.attestation.verdict,
            escape_control(&t.device),
            if t.virtual_key { "  [VIRTUAL]" } else { "" }
        );
    }
    Ok(())
}

/// A pinUvAuthToken (ga permission) for `auths token test`, from the PIN source of this run.
fn test_pin_token(
    key: &mut Box<dyn SecurityKey>,
    rp_id: &str,
) -> Result<auths_presence::ctap::client_pin::PinUvAuthToken, Box<dyn std::error::Error>> {
    use auths_presence::presence::pin_entry::PinRequest;
    let description = key.description().to_owned();
    let pin = super::pin::source().pin(&PinRequest {
        key: &description,
        purpose: "test it",
        retries: None,
    })?;
    Ok(key.pin_token(
        pin.as_bytes(),
        auths_presence::ctap::client_pin::permissions::GET_ASSERTION,
        rp_id,
    )?)
}

/// One touch of `auths token test`, with its prompts.
fn test_touch(
    key: &mut Box<dyn SecurityKey>,
    creds: &Credentials,
    client_data: &str,
    pin_token: Option<&auths_presence::ctap::client_pin::PinUvAuthToken>,
    cancel: &CancelToken,
) -> Result<auths_presence::presence::touch::VerifiedTouch, TouchError> {
    let mut prompt = touch_prompt("test it", key.description());
    let mut busy = busy_prompt(key.description());
    let ask = auths_presence::presence::touch::Ask {
        creds,
        client_data,
        require_uv: false,
        pin_token,
    };
    let wait = auths_presence::ctap::backend::Waiting {
        on_up_needed: &mut prompt,
        on_busy: Some(&mut busy),
        cancel: Some(cancel),
    };
    touch(key, &ask, wait)
}

fn test(json: bool, device: &DeviceArgs) -> CliResult {
    let store = TokenStore::open(&home())?;
    let tokens = store.list()?;
    if tokens.is_empty() {
        return Err("no security key is enrolled; enroll one with `auths token enroll`".into());
    }
    let mut creds = Credentials::enrolled(&tokens)?;
    // The receipts are the durable record of counters (tokens.json follows them lazily): a
    // cloned key's counter is checked against the higher of the two.
    let receipted = auths_presence::presence::audit::highest_counters(
        &auths_presence::presence::audit::AuditLog::new(&home()).read_chain()?,
    );
    creds.raise_counters(|id| receipted.get(id).copied());
    let rp_id = creds.rp_id().to_owned();
    let candidates: Vec<&Enrollment> = tokens.iter().filter(|t| t.rp_id == rp_id).collect();
    let mut key = open_key(device)?;
    // A self-test client data: it names no identity key and no bytes, so it approves nothing.
    let client_data = self_test_client_data(now_unix());
    // A key that verifies the user on every assertion (alwaysUv) needs its PIN here too.
    let mut token = None;
    if key.uv_info().is_some_and(|u| u.needed_to_sign()) {
        token = Some(test_pin_token(&mut key, &rp_id)?);
    }
    let cancel = CancelToken::new();
    let mut touched = test_touch(&mut key, &creds, &client_data, token.as_ref(), &cancel);
    if token.is_none()
        && matches!(
            touched,
            Err(TouchError::Device(CtapError::Status(
                StatusCode::PuatRequired
            )))
        )
    {
        token = Some(test_pin_token(&mut key, &rp_id)?);
        touched = test_touch(&mut key, &creds, &client_data, token.as_ref(), &cancel);
    }
    let verified = match touched {
        Err(TouchError::Device(CtapError::Status(StatusCode::NoCredentials))) => {
            return Err("this security key holds none of the enrolled credentials; plug in an enrolled key or enroll this one".into())
        }
        Err(TouchError::Device(
            CtapError::Status(StatusCode::UserActionTimeout) | CtapError::Deadline(_),
        )) => {
            return Err("nobody touched the key in time; run the command again and touch the key when it blinks".into())
        }
        other => other?,
    };
    let verified = verified.assertion();
    store.save_sign_count(verified.credential_id(), verified.sign_count())?;
    let t = candidates
        .iter()
        .find(|t| t.credential_id == verified.credential_id())
        .ok_or("verified credential vanished from the enrollment list")?;
    let flags = verified.flags();
    let previous = receipted
        .get(&t.credential_id)
        .map_or(t.sign_count, |r| (*r).max(t.sign_count));
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": true,
                "id": t.id,
                "label": t.label,
                "algorithm": algorithm_name(verified.algorithm()),
                "user_present": flags.user_present(),
                "user_verified": flags.user_verified(),
                "sign_count": verified.sign_count(),
                "previous_sign_count": previous,
                "rp_id": rp_id,
                "virtual_key": t.virtual_key,
            })
        );
    } else {
        println!("ok: {} ({}) answered and verified", t.id, t.label);
        println!("  rp id hash   matches {rp_id}");
        println!(
            "  flags        UP={} UV={}",
            u8::from(flags.user_present()),
            u8::from(flags.user_verified())
        );
        println!(
            "  signature    {} over authData || SHA-256(clientData): valid",
            algorithm_name(verified.algorithm())
        );
        let counter_note = if verified.sign_count() > previous {
            "increased"
        } else {
            "zero on both sides: this key keeps no counter"
        };
        println!(
            "  sign counter {} (was {}): {counter_note}",
            verified.sign_count(),
            previous
        );
        if t.virtual_key {
            println!("  note         this is the VIRTUAL key, not hardware");
        }
    }
    Ok(())
}
