//! Sealed identity keys for tests: a fresh Ed25519 key sealed in `AUTHS_HOME/keys` for the
//! enrolled virtual key, through the library's one verified touch with hmac-secret (what
//! `auths key generate` does), so agent tests need no plaintext key file.

use std::path::Path;

use auths_presence::ctap::backend::{SecurityKey, Waiting};
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
    let sealed = seal(home, sim, &private, label, None);
    (private, sealed)
}

/// Seal `private` as [`seal_new_key`] does; with `uv_pin`, under the secret the key gives only
/// with the user verified (the getAssertion carries a pinUvAuthParam from that PIN).
pub fn seal(
    home: &Path,
    sim: &Path,
    private: &ssh_key::PrivateKey,
    label: &str,
    uv_pin: Option<&str>,
) -> SealedKey {
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
    let token = uv_pin.map(|pin| {
        key.pin_token(
            pin.as_bytes(),
            auths_presence::ctap::client_pin::permissions::GET_ASSERTION,
            creds.rp_id(),
        )
        .unwrap()
    });
    let salt: [u8; 32] = rand::random();
    let client_data = format!("{{\"type\":\"auths.presence.seal.test\",\"label\":\"{label}\"}}");
    let (_touch, secret) = touch::touch_with_secret(
        &mut key,
        &Ask {
            creds: &creds,
            client_data: &client_data,
            require_uv: token.is_some(),
            pin_token: token.as_ref(),
        },
        &salt,
        Waiting {
            on_up_needed: &mut || {},
            on_busy: None,
            cancel: None,
        },
    )
    .unwrap();
    assert_eq!(secret.user_verified(), uv_pin.is_some());
    let sealed = SealedKey::seal(
        private,
        label,
        salt,
        uv_pin.is_some(),
        &[secret.unsealer()],
        0,
    )
    .unwrap();
    SealedStore::new(home).save(&sealed, false).unwrap();
    sealed
}
