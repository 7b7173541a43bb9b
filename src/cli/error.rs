//! What a user sees when a command fails: what happened (the library's error and its causes,
//! walked through `source()`), then one line of what to do next. This is the one place that
//! knows commands, flags and the platform; library errors name none of them
//! (age-plugin-yubikey's `error.rs` is the model).

use std::error::Error;

use auths_presence::agent::client::ClientError;
use auths_presence::agent::AgentError;
use auths_presence::ctap::client_pin::PinError;
use auths_presence::ctap::error::WebAuthnFailure;
use auths_presence::ctap::virtual_key::SimError;
use auths_presence::ctap::{CtapError, HidErrorCode, StatusCode};
use auths_presence::platform;
use auths_presence::presence::enrollment::EnrollmentError;
use auths_presence::presence::gate::GateError;
use auths_presence::presence::pin_entry::PinEntryError;
use auths_presence::presence::prompt::escape_control;
use auths_presence::presence::touch::TouchError;
use auths_presence::presence::verify::VerifyError;
use auths_presence::secure_fs::SecureFsError;

/// The lines to print for `e`: `error: …`, one `caused by: …` per source, and a `hint: …` when
/// one of the errors in the chain has a known next step. Every line has control characters
/// escaped (a path or a peer's text may carry them).
pub fn report(e: &(dyn Error + 'static)) -> Vec<String> {
    let mut lines = vec![format!("error: {}", escape(&e.to_string()))];
    let mut source = e.source();
    while let Some(s) = source {
        lines.push(format!("  caused by: {}", escape(&s.to_string())));
        source = s.source();
    }
    if let Some(h) = hint(e) {
        lines.push(format!("hint: {}", escape(&h)));
    }
    lines
}

/// The next step for the first error in the chain that has one.
pub fn hint(e: &(dyn Error + 'static)) -> Option<String> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(h) = hint_for(err) {
            return Some(h);
        }
        current = err.source();
    }
    None
}

fn hint_for(e: &(dyn Error + 'static)) -> Option<String> {
    if let Some(e) = e.downcast_ref::<CtapError>() {
        return ctap_hint(e);
    }
    if let Some(e) = e.downcast_ref::<PinError>() {
        return pin_hint(e);
    }
    if let Some(e) = e.downcast_ref::<PinEntryError>() {
        return pin_entry_hint(e);
    }
    if let Some(e) = e.downcast_ref::<SecureFsError>() {
        return fs_hint(e);
    }
    if let Some(e) = e.downcast_ref::<EnrollmentError>() {
        return enrollment_hint(e);
    }
    if let Some(e) = e.downcast_ref::<AgentError>() {
        return agent_hint(e);
    }
    if let Some(ClientError::Connect { .. }) = e.downcast_ref::<ClientError>() {
        return Some(
            "start one with `auths agent start` (and check SSH_AUTH_SOCK or --socket)".into(),
        );
    }
    if let Some(e) = e.downcast_ref::<GateError>() {
        return match e {
            GateError::NotEnrolled => Some(ENROLL.into()),
            GateError::TouchTimeout(_) => Some(TOUCH_AGAIN.into()),
            GateError::CannotVerifyUser(_) => Some(
                "use a key with a PIN or a fingerprint, or start the agent with --uv discouraged"
                    .into(),
            ),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<TouchError>() {
        return match e {
            TouchError::NotEnrolled => Some(ENROLL.into()),
            TouchError::Enrollment(inner) => enrollment_hint(inner),
            TouchError::Device(inner) => ctap_hint(inner),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<VerifyError>() {
        return match e {
            VerifyError::CounterNotIncreased { .. } => Some(
                "stop using this security key until you know why: a key whose counter goes \
                 back may have been cloned; `auths audit list` shows its earlier touches"
                    .into(),
            ),
            VerifyError::UnknownCredential => Some(
                "this key holds no enrolled credential: plug in an enrolled key, or enroll \
                 this one with `auths token enroll`"
                    .into(),
            ),
            _ => None,
        };
    }
    if let Some(SimError::InUse(_)) = e.downcast_ref::<SimError>() {
        return Some("stop that virtual key, or pass another --socket".into());
    }
    None
}

const ENROLL: &str = "enroll a security key first: `auths token enroll`";
const TOUCH_AGAIN: &str = "run the command again and touch the key when it blinks";

fn ctap_hint(e: &CtapError) -> Option<String> {
    Some(match e {
        CtapError::NoDevice => no_device_hint().into(),
        CtapError::NoDeviceChosen(_) => {
            "touch the key you want to use when they blink, or pass --device usb:PATH \
             (`auths token list` shows the enrolled ones)"
                .into()
        }
        CtapError::Open { .. } if platform::LINUX => {
            "check that you may open /dev/hidraw*: install the udev rule (udev/70-auths-fido.rules \
             into /etc/udev/rules.d/, then `sudo udevadm control --reload && sudo udevadm \
             trigger`) and re-plug the key"
                .into()
        }
        CtapError::ReadTimeout(_) => "unplug the security key and plug it in again".into(),
        CtapError::Deadline(_) | CtapError::Status(StatusCode::UserActionTimeout) => {
            TOUCH_AGAIN.into()
        }
        CtapError::Hid(HidErrorCode::ChannelBusy) | CtapError::Busy(_) => {
            "another program is using the security key (a browser waiting for a touch?): \
             finish or cancel that, then try again"
                .into()
        }
        CtapError::Status(StatusCode::NoCredentials) => {
            "this key holds none of the enrolled credentials: plug in an enrolled key, or \
             enroll this one with `auths token enroll`"
                .into()
        }
        CtapError::WebAuthn { kind, .. } => match kind {
            WebAuthnFailure::Cancelled => {
                "run the command again and touch the key when the Windows dialog asks"
            }
            WebAuthnFailure::NotSupported => {
                "this key cannot make ES256 or EdDSA credentials; try another key"
            }
            WebAuthnFailure::BadRequest => {
                "this is a bug in auths: please report it with your Windows version"
            }
            _ => {
                "check that the security key is plugged in and that Windows can use it \
                 (Settings > Accounts > Sign-in options > Security Key)"
            }
        }
        .into(),
        _ => return None,
    })
}

fn no_device_hint() -> &'static str {
    if platform::WINDOWS {
        "plug in a FIDO2 security key; on Windows keys are reached through webauthn.dll \
         (--device windows)"
    } else if platform::LINUX {
        "plug in a FIDO2 security key; if one is plugged in, install the udev rule \
         (udev/70-auths-fido.rules into /etc/udev/rules.d/, then `sudo udevadm control \
         --reload && sudo udevadm trigger`) and re-plug it"
    } else {
        "plug in a FIDO2 security key"
    }
}

fn fs_hint(e: &SecureFsError) -> Option<String> {
    Some(match e {
        SecureFsError::LoosePermissions { path, want, .. } => {
            format!("chmod {want:o} {}", path.display())
        }
        SecureFsError::LooseAcl { fix, .. } => fix.clone(),
        SecureFsError::Symlink(path) => format!(
            "remove the link {} and let auths create a real directory",
            path.display()
        ),
        SecureFsError::NotARegularFile(path) => format!(
            "something put it there in place of auths' file: look at it, then remove {}",
            path.display()
        ),
        SecureFsError::ForeignOwner { .. } => {
            "use a directory of your own (set AUTHS_HOME, or pass --socket)".into()
        }
        _ => return None,
    })
}

fn pin_hint(e: &PinError) -> Option<String> {
    Some(match e {
        PinError::Ctap(inner) => return ctap_hint(inner),
        PinError::WrongPin { .. } => "run the command again with the right PIN".into(),
        PinError::AuthBlocked => "unplug the security key, plug it in again, then retry".into(),
        PinError::PinBlocked => {
            "only a reset clears a blocked PIN, and it deletes every credential on the key \
             (YubiKey: `ykman fido reset`); enroll the key again afterwards"
                .into()
        }
        PinError::PinNotSet => {
            "set a PIN first (YubiKey: `ykman fido access change-pin`), or use a key \
             without alwaysUv"
                .into()
        }
        PinError::PolicyViolation { .. } | PinError::TooLong => {
            "choose a PIN the key accepts".into()
        }
        PinError::UvBlocked => "use the key's PIN instead of its fingerprint".into(),
        PinError::UvInvalid { .. } => "try again with an enrolled finger".into(),
        _ => return None,
    })
}

fn pin_entry_hint(e: &PinEntryError) -> Option<String> {
    Some(match e {
        PinEntryError::NoSource => {
            "run it in a terminal, or set AUTHS_ASKPASS to a program that prints the PIN \
             (it gets the prompt as its argument, like SSH_ASKPASS), or AUTHS_PINENTRY to a \
             pinentry program (pinentry-gnome3, pinentry-mac, …)"
                .into()
        }
        PinEntryError::Cancelled => "run the command again and enter the PIN".into(),
        PinEntryError::Program { .. } => "check AUTHS_ASKPASS: it must name a program".into(),
        _ => return None,
    })
}

fn enrollment_hint(e: &EnrollmentError) -> Option<String> {
    Some(match e {
        EnrollmentError::Pin(inner) => return pin_hint(inner),
        EnrollmentError::PinEntry(inner) => return pin_entry_hint(inner),
        // Transparent wrappers: their source() skips the inner error, so look inside here.
        EnrollmentError::Fs(inner) => return fs_hint(inner),
        EnrollmentError::Device(inner) => return ctap_hint(inner),
        EnrollmentError::Corrupt { .. } => {
            "restore the file from a backup, or move it away and enroll again".into()
        }
        EnrollmentError::NewerSchema { .. } => "upgrade auths".into(),
        EnrollmentError::NotFound(_) | EnrollmentError::Ambiguous(_) => {
            "`auths token list` shows the ids and labels".into()
        }
        EnrollmentError::KeyAlreadyEnrolled | EnrollmentError::Duplicate(_) => {
            "`auths token list` shows it".into()
        }
        EnrollmentError::NoTouch => TOUCH_AGAIN.into(),
        EnrollmentError::LabelTaken(_) => {
            "pick another --label, or remove the other key first (`auths token remove`)".into()
        }
        EnrollmentError::AlgorithmNotSupported { .. } => {
            "omit --alg to let the key pick, or ask for one it lists".into()
        }
        _ => return None,
    })
}

fn client_hint(e: &ClientError) -> Option<String> {
    match e {
        ClientError::Connect { .. } => {
            Some("start one with `auths agent start` (and check SSH_AUTH_SOCK or --socket)".into())
        }
        _ => None,
    }
}

fn agent_hint(e: &AgentError) -> Option<String> {
    Some(match e {
        // Transparent: its source() skips the inner error, so look inside here.
        AgentError::Client(inner) => return client_hint(inner),
        AgentError::AlreadyRunning(_) => {
            "stop it first (`auths agent stop`), or pass another --socket".into()
        }
        AgentError::NotASocket(_) => "remove it, or pass another --socket".into(),
        AgentError::BadSocketPath(_) => "pass an absolute --socket path".into(),
        AgentError::NoSuchKey => "add it with `auths agent add KEYFILE`".into(),
        AgentError::Locked => "unlock it with `ssh-add -X`".into(),
        AgentError::BadPassphrase => "try `ssh-add -X` again".into(),
        AgentError::Bind { .. } => "check that the directory exists and is yours".into(),
        _ => return None,
    })
}

/// `s` with control characters escaped, line by line (CLI messages may hold line breaks of
/// their own).
fn escape(s: &str) -> String {
    s.split('\n')
        .map(escape_control)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn walks_the_chain_and_adds_the_fix_of_the_deepest_known_error() {
        let e = EnrollmentError::Fs(SecureFsError::LoosePermissions {
            path: PathBuf::from("/home/u/.auths"),
            mode: 0o755,
            want: 0o700,
        });
        let lines = report(&e);
        assert!(lines[0].starts_with("error: "), "{lines:?}");
        assert_eq!(
            lines.last().unwrap(),
            "hint: chmod 700 /home/u/.auths",
            "{lines:?}"
        );
        let gate = GateError::NotEnrolled;
        assert_eq!(hint(&gate).as_deref(), Some(ENROLL));
        let none = GateError::Cancelled;
        assert_eq!(hint(&none), None);
        assert!(!report(&none).iter().any(|l| l.starts_with("hint:")));
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let e = SecureFsError::NotADirectory(PathBuf::from("\u{1b}[2Jfake prompt\r"));
        let text = report(&e).join("\n");
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text}");
        assert!(text.contains("\\u{1b}[2Jfake prompt\\r"), "{text}");
    }
}
