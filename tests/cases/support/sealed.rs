//! Sealed identity keys for tests: a fresh Ed25519 key sealed in `AUTHS_HOME/keys` for the
//! enrolled virtual key, through the library's one verified touch with hmac-secret (what
//! `auths key generate` does), so agent tests need no plaintext key file.

use std::path::Path;

use auths_presence::ctap::backend::Waiting;
use auths_presence::ctap::device::DeviceOptions;
use auths_presence::ctap::select::{self, DeviceSelector};
use auths_presence::presence::enrollment::TokenStore;
use auths_presence::presence::sealed::{SealedKey, SealedStore};
use auths_presence::presence::touch::{self, Ask, Credentials};

use super::DEADLINE;

/// Seal a new Ed25519 key labelled `label` for the credentials enrolled in `home`, with one
/// touch of the virtual key at `sim` (which must touch by itself). Returns the private key
/// (for the test's own checks) and the sealed file.
pub fn seal_new_key(home: &Path, sim: &Path, label: &str) -> (ssh_key::PrivateKey, SealedKey) {
    let private =
        ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let sealed = seal(home, sim, &private, label);
    (private, sealed)
}

/// Seal `private` as [`seal_new_key`] does.
pub fn seal(home: &Path, sim: &Path, private: &ssh_key::PrivateKey, label: &str) -> SealedKey {
    let enrolled = TokenStore::open(home).unwrap().list().unwrap();
    let creds = Credentials::enrolled(&enrolled).unwrap();
    let mut key = select::open(
        &DeviceSelector::Sim(sim.to_path_buf()),
        DeviceOptions {
            deadline: DEADLINE,
            ..DeviceOptions::default()
        },
        &mut |_| {},
    )
    .unwrap();
    let salt: [u8; 32] = rand::random();
    let client_data = format!("{{\"type\":\"auths.presence.seal.test\",\"label\":\"{label}\"}}");
    let (_touch, secret) = touch::touch_with_secret(
        &mut key,
        &Ask {
            creds: &creds,
            client_data: &client_data,
            require_uv: false,
            pin_token: None,
        },
        &salt,
        Waiting {
            on_up_needed: &mut || {},
            on_busy: None,
            cancel: None,
        },
    )
    .unwrap();
    let sealed = SealedKey::seal(private, label, salt, false, &[secret.unsealer()], 0).unwrap();
    SealedStore::new(home).save(&sealed, false).unwrap();
    sealed
}
