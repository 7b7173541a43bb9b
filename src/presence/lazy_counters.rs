//! tokens.json counters, updated after the fact.
//!
//! A touch's receipt, which carries the verified sign counter in its authenticatorData, is the
//! one durable write before the signature leaves the agent. The counter reaches tokens.json
//! afterwards, from this writer's thread: counters that pile up while it writes are coalesced
//! (the highest per credential) into one update. A crash before that update loses nothing:
//! at start the gate takes, per credential, the higher of tokens.json and the audit chain
//! ([`super::audit::highest_counters`]).

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::enrollment::TokenStore;

/// A credential id and a counter it reached.
type Counter = (Vec<u8>, u32);

/// Queues counters for tokens.json; a thread writes them.
#[derive(Debug)]
pub(crate) struct LazyCounters {
    tx: Mutex<Option<Sender<Counter>>>,
    store: TokenStore,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl LazyCounters {
    /// A writer for `store`; its thread starts with the first counter.
    pub(crate) fn new(store: TokenStore) -> LazyCounters {
        LazyCounters {
            tx: Mutex::new(None),
            store,
            thread: Mutex::new(None),
        }
    }

    /// Save `count` for credential `id` soon (never lowers a stored counter).
    pub(crate) fn queue(&self, id: &[u8], count: u32) {
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tx.as_ref() {
            if t.send((id.to_vec(), count)).is_ok() {
                return;
            }
        }
        let (t, rx) = mpsc::channel();
        let store = self.store.clone();
        let started = std::thread::Builder::new()
            .name("auths-counters".into())
            .spawn(move || write_loop(&store, &rx));
        match started {
            Ok(handle) => {
                let _ = t.send((id.to_vec(), count));
                *tx = Some(t);
                let old = self
                    .thread
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .replace(handle);
                // A thread that stopped (its channel broke) is done; reap it.
                if let Some(old) = old {
                    let _ = old.join();
                }
            }
            // No thread: save it now (the chain has it either way).
            Err(_) => save(&self.store, id, count),
        }
    }
}

/// At most one tokens.json update per this long while touches keep coming: each update is
/// a file replaced with two fsyncs, which would compete for the disk with the receipts'
/// fsyncs, the ones a signature waits for. The first counter after a quiet spell is written
/// at once.
const MIN_INTERVAL: Duration = Duration::from_millis(500);

impl Drop for LazyCounters {
    /// The gate is gone (the agent stops): what is queued reaches tokens.json before this
    /// returns.
    fn drop(&mut self) {
        drop(self.tx.get_mut().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(t) = self
            .thread
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = t.join();
        }
    }
}

fn write_loop(store: &TokenStore, rx: &Receiver<Counter>) {
    let mut highest: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut last_write: Option<Instant> = None;
    // Ends when the gate (the sender) is gone, after writing what it queued.
    loop {
        let due = last_write.map(|t| t + MIN_INTERVAL);
        let next = match due {
            Some(due) if !highest.is_empty() => {
                match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        flush(store, &mut highest);
                        return;
                    }
                }
            }
            _ => match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => {
                    flush(store, &mut highest);
                    return;
                }
            },
        };
        if let Some((id, count)) = next {
            let c = highest.entry(id).or_insert(count);
            *c = (*c).max(count);
            for (id, count) in rx.try_iter() {
                let c = highest.entry(id).or_insert(count);
                *c = (*c).max(count);
            }
        }
        if due.is_none_or(|d| Instant::now() >= d) && !highest.is_empty() {
            flush(store, &mut highest);
            last_write = Some(Instant::now());
        }
    }
}

fn flush(store: &TokenStore, highest: &mut HashMap<Vec<u8>, u32>) {
    for (id, count) in highest.drain() {
        save(store, &id, count);
    }
}

fn save(store: &TokenStore, id: &[u8], count: u32) {
    match store.save_sign_count(id, count) {
        Ok(()) | Err(super::enrollment::EnrollmentError::NotFound(_)) => {}
        // The counter is safe in the audit chain; the next start takes it from there.
        Err(e) => eprintln!(
            "auths: warning: the sign counter could not be saved to tokens.json ({}); the audit log keeps it",
            crate::presence::error_chain(&e)
        ),
    }
}
