//! `auths token enroll|list|remove|test`.

use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Subcommand, ValueEnum};
use sha2::{Digest, Sha256};

use auths_presence::ctap::authdata::algorithm_name;
use auths_presence::ctap::command::{
    Algorithm, GetAssertionRequest, MakeCredentialRequest, RelyingParty, UserEntity,
};
use auths_presence::ctap::select::{self, on_first_up_needed, OpenedKey};
use auths_presence::ctap::{CtapError, StatusCode};
use auths_presence::presence::enrollment::{Enrollment, TokenStore};
use auths_presence::presence::verify::{verify_assertion, Expected};

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
        /// Preferred algorithm (the other is offered too, if the key lacks this one).
        #[arg(long, value_enum, default_value_t = AlgArg::Es256)]
        alg: AlgArg,
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
            device,
        } => enroll(label, &rp_id, alg, &device),
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

fn open_key(device: &DeviceArgs) -> Result<OpenedKey, Box<dyn std::error::Error>> {
    let selector = device.selector()?;
    let key = select::open(&selector, device.options(), &mut |n| {
        eprintln!("{n} security keys are plugged in: touch the one you want to use.")
    })?;
    if key.is_virtual {
        eprintln!(
            "warning: {} is a VIRTUAL key (software, not hardware): it proves nothing about a person being present.",
            key.description
        );
    }
    Ok(key)
}

fn enroll(label: Option<String>, rp_id: &str, alg: AlgArg, device: &DeviceArgs) -> CliResult {
    let store = TokenStore::open(&home())?;
    let existing = store.list()?;
    let label = label.unwrap_or_else(|| {
        if existing.is_empty() {
            "main".to_owned()
        } else {
            format!("key{}", existing.len() + 1)
        }
    });
    if existing.iter().any(|e| e.label == label) {
        return Err(format!(
            "a key labelled {label:?} is enrolled already; pick another --label or remove it first"
        )
        .into());
    }
    let mut key = open_key(device)?;
    let info = key.device.get_info()?;
    let preferred = match alg {
        AlgArg::Es256 => [Algorithm::Es256, Algorithm::EdDsa],
        AlgArg::Eddsa => [Algorithm::EdDsa, Algorithm::Es256],
    };
    let algorithms: Vec<Algorithm> = preferred
        .into_iter()
        .filter(|a| info.algorithms.is_empty() || info.supports_algorithm(a.cose_id()))
        .collect();
    if algorithms.is_empty() {
        return Err("this key supports neither ES256 nor EdDSA; it cannot be enrolled".into());
    }
    let exclude: Vec<&[u8]> = existing
        .iter()
        .filter(|e| e.rp_id == rp_id)
        .map(|e| e.credential_id.as_slice())
        .collect();
    let challenge: [u8; 32] = rand::random();
    let user_id: [u8; 16] = rand::random();
    let display = format!("auths presence gate ({label})");
    let request = MakeCredentialRequest {
        client_data_hash: Sha256::digest(challenge).into(),
        rp: RelyingParty {
            id: rp_id,
            name: Some("auths presence gate"),
        },
        user: UserEntity {
            id: &user_id,
            name: Some("auths"),
            display_name: Some(&display),
        },
        algorithms: &algorithms,
        exclude_list: &exclude,
    };
    let what = key.description.clone();
    let mut prompt =
        on_first_up_needed(|| eprintln!("Touch your security key to enroll it: {what}"));
    let resp = match key.device.make_credential(&request, &mut prompt, None) {
        Err(CtapError::Status(StatusCode::CredentialExcluded)) => {
            return Err("this security key is enrolled already (`auths token list` shows it)".into())
        }
        Err(CtapError::Status(StatusCode::UserActionTimeout)) | Err(CtapError::Deadline(_)) => {
            return Err("nobody touched the key in time; run the command again and touch the key when it blinks".into())
        }
        other => other?,
    };
    let attested = resp
        .auth_data
        .attested_credential_data
        .as_ref()
        .ok_or("the key returned no credential")?;
    let public_key = attested.public_key()?;
    if resp.auth_data.rp_id_hash != <[u8; 32]>::from(Sha256::digest(rp_id.as_bytes())) {
        return Err("the key made a credential for another relying party; refusing it".into());
    }
    if !resp.auth_data.flags.user_present() {
        return Err(
            "the key made a credential without a touch (UP flag clear); refusing it".into(),
        );
    }
    let enrollment = Enrollment {
        id: Enrollment::short_id(&attested.credential_id),
        label,
        credential_id: attested.credential_id.clone(),
        public_key_cose: public_key.to_cbor_bytes(),
        algorithm: public_key.algorithm(),
        rp_id: rp_id.to_owned(),
        aaguid: attested.aaguid.to_vec(),
        virtual_key: key.is_virtual,
        device: key.description.clone(),
        created: now_unix(),
        sign_count: resp.auth_data.sign_count,
    };
    store.add(enrollment.clone())?;
    println!(
        "enrolled {} ({}, {}, {}){}",
        enrollment.id,
        enrollment.label,
        enrollment.algorithm_name(),
        enrollment.device,
        if enrollment.virtual_key {
            " [virtual key]"
        } else {
            ""
        }
    );
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
        "{:<16}  {:<10}  {:<6}  {:<8}  DEVICE",
        "ID", "LABEL", "ALG", "COUNTER"
    );
    for t in tokens {
        println!(
            "{:<16}  {:<10}  {:<6}  {:<8}  {}{}",
            t.id,
            t.label,
            t.algorithm_name(),
            t.sign_count,
            t.device,
            if t.virtual_key { "  [VIRTUAL]" } else { "" }
        );
    }
    Ok(())
}

fn test(json: bool, device: &DeviceArgs) -> CliResult {
    let store = TokenStore::open(&home())?;
    let tokens = store.list()?;
    if tokens.is_empty() {
        return Err("no security key is enrolled; enroll one with `auths token enroll`".into());
    }
    let mut key = open_key(device)?;
    // All enrolled credentials share one rp id in practice; test the first rp id's set.
    let rp_id = tokens[0].rp_id.clone();
    let candidates: Vec<&Enrollment> = tokens.iter().filter(|t| t.rp_id == rp_id).collect();
    let allowed = candidates
        .iter()
        .map(|t| t.allowed())
        .collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<&[u8]> = candidates
        .iter()
        .map(|t| t.credential_id.as_slice())
        .collect();
    let client_data = serde_json::json!({
        "type": "auths.presence.test",
        "nonce": hex::encode(rand::random::<[u8; 32]>()),
        "created": now_unix(),
    })
    .to_string();
    let client_data_hash: [u8; 32] = Sha256::digest(client_data.as_bytes()).into();
    let request = GetAssertionRequest {
        rp_id: &rp_id,
        client_data_hash,
        allow_list: &ids,
        user_verification: false,
    };
    let what = key.description.clone();
    let mut prompt = on_first_up_needed(|| eprintln!("Touch your security key to test it: {what}"));
    let resp = match key.device.get_assertion(&request, &mut prompt, None) {
        Err(CtapError::Status(StatusCode::NoCredentials)) => {
            return Err("this security key holds none of the enrolled credentials; plug in an enrolled key or enroll this one".into())
        }
        Err(CtapError::Status(StatusCode::UserActionTimeout)) | Err(CtapError::Deadline(_)) => {
            return Err("nobody touched the key in time; run the command again and touch the key when it blinks".into())
        }
        other => other?,
    };
    let verified = verify_assertion(
        &Expected {
            rp_id: &rp_id,
            client_data_hash,
            allowed: &allowed,
            require_uv: false,
        },
        &resp,
    )?;
    store.save_sign_count(verified.credential_id(), verified.sign_count())?;
    let t = candidates
        .iter()
        .find(|t| t.credential_id == verified.credential_id())
        .ok_or("verified credential vanished from the enrollment list")?;
    let flags = verified.flags();
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
                "previous_sign_count": t.sign_count,
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
        let counter_note = if verified.sign_count() > t.sign_count {
            "increased"
        } else {
            "zero on both sides: this key keeps no counter"
        };
        println!(
            "  sign counter {} (was {}): {counter_note}",
            verified.sign_count(),
            t.sign_count
        );
        if t.virtual_key {
            println!("  note         this is the VIRTUAL key, not hardware");
        }
    }
    Ok(())
}
