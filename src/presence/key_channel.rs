//! The key's channel kept open between approvals.
//!
//! Opening a key costs a CTAPHID INIT (a channel allocated with a nonce checked) and a getInfo,
//! on every approval. [`CachedOpener`] keeps the channel of the last approval, with the getInfo
//! it read on open, and hands it to the next one. It opens the key again:
//! - when the kept channel fails on its first use by the next approval as a channel that is
//!   gone fails (the transport disconnected or errored: the key was unplugged, re-plugged or
//!   the virtual key restarted; `ERR_INVALID_CHANNEL`; framing from someone else's channel).
//!   That approval is then sent once more on a fresh channel, so a replug between two
//!   approvals costs nothing but the reopen;
//! - after any approval whose use of the key ended in an error (a status the key refused
//!   with, a timeout, a cancel, a PIN problem): the channel is not kept, so a key whose state
//!   changed (a PIN set meanwhile) is read afresh next time.
//!
//! Only the channel and the getInfo are kept. Nothing of an approval is: the pinUvAuthToken of
//! the unlock window stays with the gate as before (never in the channel), and every PIN or
//! hmac-secret exchange does its own key agreement.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::ctap::backend::{GetAssertionArgs, UvInfo, Waiting};
use crate::ctap::client_pin::{PinError, PinUvAuthToken};
use crate::ctap::command::GetAssertionResponse;
use crate::ctap::{CtapError, HidErrorCode};

use super::presence_gate::KeyOpener;
use super::touch::PresenceKey;

/// A [`KeyOpener`] that keeps the key's channel open between approvals (see the module docs).
pub struct CachedOpener {
    shared: Arc<Shared>,
}

struct Shared {
    opener: Box<dyn KeyOpener>,
    kept: Mutex<Option<Box<dyn PresenceKey>>>,
    opens: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn kept(&self) -> MutexGuard<'_, Option<Box<dyn PresenceKey>>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self, on_busy: &mut dyn FnMut()) -> Result<Box<dyn PresenceKey>, CtapError> {
        let key = self.opener.open_reporting_busy(on_busy)?;
        self.opens
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(key)
    }
}

impl CachedOpener {
    /// Keep the channels `opener` opens.
    pub fn new(opener: impl KeyOpener + 'static) -> CachedOpener {
        CachedOpener {
            shared: Arc::new(Shared {
                opener: Box::new(opener),
                kept: Mutex::new(None),
                opens: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// How many times the key was opened (INIT and getInfo), for tests and the bench.
    pub fn opens(&self) -> u64 {
        self.shared.opens.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A handle on the count of [`CachedOpener::opens`] that outlives the opener's move into
    /// a gate.
    pub fn counter(&self) -> OpenCount {
        OpenCount(Arc::clone(&self.shared))
    }

    /// Close the kept channel (the next approval opens the key again).
    pub fn forget(&self) {
        *self.shared.kept() = None;
    }
}

/// How many times a [`CachedOpener`] opened its key.
#[derive(Clone)]
pub struct OpenCount(Arc<Shared>);

impl OpenCount {
    /// Opens so far.
    pub fn get(&self) -> u64 {
        self.0.opens.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl std::fmt::Debug for OpenCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OpenCount").field(&self.get()).finish()
    }
}

impl KeyOpener for CachedOpener {
    fn open(&self) -> Result<Box<dyn PresenceKey>, CtapError> {
        self.open_reporting_busy(&mut || {})
    }

    fn open_reporting_busy(
        &self,
        on_busy: &mut dyn FnMut(),
    ) -> Result<Box<dyn PresenceKey>, CtapError> {
        let kept = self.shared.kept().take();
        let (key, reused) = match kept {
            Some(k) => (k, true),
            None => (self.shared.open(on_busy)?, false),
        };
        Ok(Box::new(Lease {
            key: Some(key),
            shared: Arc::clone(&self.shared),
            reused,
            failed: false,
        }))
    }
}

/// The channel, lent to one approval; given back when dropped, unless a use of it failed.
struct Lease {
    key: Option<Box<dyn PresenceKey>>,
    shared: Arc<Shared>,
    /// The channel was kept from an earlier approval and not used yet by this one: a failure
    /// that says the channel is gone is retried once on a fresh channel.
    reused: bool,
    failed: bool,
}

/// The channel is gone (the key was unplugged, re-plugged, restarted), not the request refused.
fn channel_gone(e: &CtapError) -> bool {
    matches!(
        e,
        CtapError::Transport(_)
            | CtapError::Hid(HidErrorCode::InvalidChannel)
            | CtapError::Framing(_)
            | CtapError::UnexpectedCommand { .. }
    )
}

fn pin_channel_gone(e: &PinError) -> bool {
    matches!(e, PinError::Ctap(c) if channel_gone(c))
}

impl Lease {
    fn key(&mut self) -> &mut dyn PresenceKey {
        // Always `Some` until drop.
        self.key.as_deref_mut().expect("the lease holds its key")
    }

    /// Run `op` on the channel; when the kept channel turns out to be gone on its first use,
    /// open the key again and run `op` once more on the new channel.
    fn run<T, E>(
        &mut self,
        gone: fn(&E) -> bool,
        mut op: impl FnMut(&mut dyn PresenceKey) -> Result<T, E>,
        reopen_error: impl FnOnce(CtapError) -> E,
    ) -> Result<T, E> {
        let first = op(self.key());
        let reused = std::mem::replace(&mut self.reused, false);
        let result = match first {
            Err(e) if reused && gone(&e) => match self.shared.open(&mut || {}) {
                Ok(fresh) => {
                    self.key = Some(fresh);
                    op(self.key())
                }
                Err(open) => Err(reopen_error(open)),
            },
            other => other,
        };
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// [`Lease::run`] for an operation that waits for the user: `wait` is lent to each try.
    fn run_waiting<T, E>(
        &mut self,
        gone: fn(&E) -> bool,
        wait: Waiting<'_>,
        mut op: impl FnMut(&mut dyn PresenceKey, Waiting<'_>) -> Result<T, E>,
        reopen_error: impl FnOnce(CtapError) -> E,
    ) -> Result<T, E> {
        let Waiting {
            on_up_needed,
            mut on_busy,
            cancel,
        } = wait;
        self.run(
            gone,
            |k| {
                let wait = Waiting {
                    on_up_needed: &mut *on_up_needed,
                    on_busy: on_busy.as_deref_mut().map(|f| f as &mut dyn FnMut()),
                    cancel,
                };
                op(k, wait)
            },
            reopen_error,
        )
    }
}

impl PresenceKey for Lease {
    fn get_assertion(
        &mut self,
        args: &GetAssertionArgs<'_>,
        wait: Waiting<'_>,
    ) -> Result<GetAssertionResponse, CtapError> {
        self.run_waiting(
            channel_gone,
            wait,
            |k, wait| k.get_assertion(args, wait),
            |e| e,
        )
    }

    fn get_assertion_with_hmac_secret(
        &mut self,
        args: &GetAssertionArgs<'_>,
        salt: &crate::ctap::hmac_secret::Salt,
        wait: Waiting<'_>,
    ) -> Result<(GetAssertionResponse, crate::ctap::hmac_secret::Request), CtapError> {
        self.run_waiting(
            channel_gone,
            wait,
            |k, wait| k.get_assertion_with_hmac_secret(args, salt, wait),
            |e| e,
        )
    }

    fn is_virtual(&self) -> bool {
        self.key.as_ref().is_some_and(|k| k.is_virtual())
    }

    fn description(&self) -> &str {
        self.key.as_ref().map_or("", |k| k.description())
    }

    fn uv_info(&self) -> Option<UvInfo> {
        self.key.as_ref().and_then(|k| k.uv_info())
    }

    fn pin_token(
        &mut self,
        pin: &[u8],
        permissions: u64,
        rp_id: &str,
    ) -> Result<PinUvAuthToken, PinError> {
        self.run(
            pin_channel_gone,
            |k| k.pin_token(pin, permissions, rp_id),
            PinError::Ctap,
        )
    }

    fn uv_token(
        &mut self,
        permissions: u64,
        rp_id: &str,
        wait: Waiting<'_>,
    ) -> Result<PinUvAuthToken, PinError> {
        self.run_waiting(
            pin_channel_gone,
            wait,
            |k, wait| k.uv_token(permissions, rp_id, wait),
            PinError::Ctap,
        )
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.failed {
            return;
        }
        if let Some(key) = self.key.take() {
            let mut kept = self.shared.kept();
            // Another approval's channel may have been kept meanwhile (only one approval
            // uses the key at a time in the gate); keep one either way.
            if kept.is_none() {
                *kept = Some(key);
            }
        }
    }
}
