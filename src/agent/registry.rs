//! The open connections and how long each has been idle, so that the accept loop never waits:
//! above the cap, the longest-idle connection is closed to make room for the new one.
//!
//! Idle means waiting for the first byte of the next message. A connection that is inside a
//! message, being answered or waiting for a touch is busy and is never closed here (a stalled
//! message is the read timeout's business, a pending touch the gate's). Idleness is stamped
//! with a logical tick (one counter for the whole registry), not a clock: the order is what
//! matters, and it follows the order of events exactly.
//!
//! Per request a connection does two atomic operations ([`Slot::busy`], [`Slot::idle`]); the
//! registry's lock is taken at accept and when a connection ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// `SlotState::since` of a connection inside a request.
const BUSY: u64 = 0;
/// `SlotState::since` of a connection chosen to be closed.
const EVICTED: u64 = u64::MAX;

/// The open connections, at most `cap` of them idle-evictable.
#[derive(Debug)]
pub(crate) struct Registry {
    cap: usize,
    /// Last tick handed out; ticks start at 1 (0 is [`BUSY`]).
    tick: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<SlotState>>>,
    next_id: AtomicU64,
    /// Evictions not yet reported ([`Registry::take_evicted`]).
    evicted: AtomicU64,
}

#[derive(Debug)]
struct SlotState {
    /// [`BUSY`], [`EVICTED`], or the tick at which the connection became idle.
    since: AtomicU64,
    /// Woken when the connection is evicted.
    close: Notify,
}

/// One connection's entry; removes itself from the registry when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    id: u64,
    state: Arc<SlotState>,
    registry: Arc<Registry>,
}

impl Registry {
    /// A registry that keeps at most `cap` connections (at least 1) before it evicts.
    pub(crate) fn new(cap: usize) -> Arc<Registry> {
        Arc::new(Registry {
            cap: cap.max(1),
            tick: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<SlotState>>> {
        // Every critical section leaves the map consistent, so a poisoned lock is usable.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_tick(&self) -> u64 {
        self.tick.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Register a connection just accepted (idle: it has sent nothing yet). When `cap`
    /// connections are open, the longest-idle one is evicted first; when none is idle, the new
    /// one is admitted above the cap (busy connections end on their own: read timeout, touch
    /// timeout).
    pub(crate) fn admit(self: &Arc<Self>) -> Slot {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(SlotState {
            since: AtomicU64::new(self.next_tick()),
            close: Notify::new(),
        });
        let mut conns = self.lock();
        while conns.len() >= self.cap && self.evict_longest_idle(&mut conns) {}
        conns.insert(id, Arc::clone(&state));
        drop(conns);
        Slot {
            id,
            state,
            registry: Arc::clone(self),
        }
    }

    /// Evict the longest-idle connection, if any is idle (accept failed for want of file
    /// descriptors: free one). True when one was evicted.
    pub(crate) fn evict_one(&self) -> bool {
        self.evict_longest_idle(&mut self.lock())
    }

    /// The cap.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Connections evicted since the last call (the sweep logs one line a second, not one
    /// per eviction: a program opening connections in a loop must not fill the log).
    pub(crate) fn take_evicted(&self) -> u64 {
        self.evicted.swap(0, Ordering::Relaxed)
    }

    /// Evict the idle connection with the oldest tick: mark it [`EVICTED`], remove it and wake
    /// it.
    fn evict_longest_idle(&self, conns: &mut HashMap<u64, Arc<SlotState>>) -> bool {
        let evicted = evict_longest_idle(conns);
        if evicted {
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        evicted
    }

    /// Connections open now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

fn evict_longest_idle(conns: &mut HashMap<u64, Arc<SlotState>>) -> bool {
    loop {
        let oldest = conns
            .iter()
            .filter_map(|(id, s)| {
                let since = s.since.load(Ordering::Acquire);
                (since != BUSY && since != EVICTED).then_some((since, *id))
            })
            .min();
        let Some((since, id)) = oldest else {
            return false;
        };
        let slot = &conns[&id];
        // The connection may have just received a byte and turned busy: then it stays and we
        // look again.
        if slot
            .since
            .compare_exchange(since, EVICTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // notify_one keeps a permit when the connection is not waiting yet.
            slot.close.notify_one();
            conns.remove(&id);
            return true;
        }
    }
}

impl Slot {
    /// The first byte of a message arrived. False when the connection was evicted meanwhile
    /// (it must then close without serving the message).
    pub(crate) fn busy(&self) -> bool {
        self.state
            .since
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s != EVICTED).then_some(BUSY)
            })
            .is_ok()
    }

    /// The answer was written; the connection waits for its next message. Called on a busy
    /// slot only, which eviction never touches.
    pub(crate) fn idle(&self) {
        debug_assert_eq!(self.state.since.load(Ordering::Acquire), BUSY);
        self.state
            .since
            .store(self.registry.next_tick(), Ordering::Release);
    }

    /// Completes once the connection has been evicted.
    pub(crate) async fn evicted(&self) {
        self.state.close.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut conns = self.registry.lock();
        // An evicted slot was removed already (its id is never reused).
        if conns
            .get(&self.id)
            .is_some_and(|s| Arc::ptr_eq(s, &self.state))
        {
            conns.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_idle_is_evicted_and_busy_ones_never() {
        let reg = Registry::new(3);
        let a = reg.admit();
        let b = reg.admit();
        let c = reg.admit();
        assert!(a.busy(), "a is inside a request");
        // b is now the longest idle.
        let d = reg.admit();
        assert_eq!(reg.len(), 3);
        assert!(!b.busy(), "b was evicted");
        a.idle();
        // a went idle after c: c goes next.
        let e = reg.admit();
        assert!(!c.busy(), "c was evicted");
        assert!(d.busy() && a.busy() && e.busy());
        // Everyone is busy: the next one is admitted above the cap.
        let f = reg.admit();
        assert_eq!(reg.len(), 4);
        a.idle();
        d.idle();
        drop(b);
        assert_eq!(
            reg.len(),
            4,
            "dropping an evicted slot removes nothing else"
        );
        drop(a);
        assert_eq!(reg.len(), 3);
        // f has been idle since it was admitted, before d went idle.
        assert!(reg.evict_one());
        assert!(!f.busy(), "f was evicted");
        assert!(reg.evict_one());
        assert!(!d.busy(), "d was evicted");
        assert!(!reg.evict_one(), "e is busy: nothing to evict");
        assert_eq!(reg.len(), 1);
        assert_eq!(reg.take_evicted(), 4, "b, c, f and d");
        assert_eq!(reg.take_evicted(), 0);
    }
}
