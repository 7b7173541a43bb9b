//! Group commit: lines that arrive together share one write and one fsync.
//!
//! Every caller queues its job and waits. Whoever finds no commit under way becomes the
//! committer: it takes every job queued so far (its own among them), hands them to the write
//! function in arrival order (one write, one fsync), records the one outcome for each, and
//! wakes the waiters. Jobs that arrived during that write form the next group, committed by
//! one of their own callers. No caller returns before its own job is durable (or failed), no
//! thread is started, and nobody sleeps: waiting is on a condition variable.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

/// A group committer for jobs of type `J` whose outcome is `R`.
#[derive(Debug)]
pub struct GroupCommit<J, R> {
    state: Mutex<State<J, R>>,
    done: Condvar,
}

#[derive(Debug)]
struct State<J, R> {
    queue: Vec<(u64, J)>,
    committing: bool,
    next: u64,
    outcomes: HashMap<u64, R>,
    /// Groups committed and the largest one, for tests and the bench.
    groups: u64,
    largest: usize,
}

impl<J, R> Default for GroupCommit<J, R> {
    fn default() -> Self {
        GroupCommit {
            state: Mutex::new(State {
                queue: Vec::new(),
                committing: false,
                next: 0,
                outcomes: HashMap::new(),
                groups: 0,
                largest: 0,
            }),
            done: Condvar::new(),
        }
    }
}

impl<J, R: Clone> GroupCommit<J, R> {
    fn state(&self) -> MutexGuard<'_, State<J, R>> {
        // Nothing panics while the lock is held (the write runs outside it).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `job` and return its outcome once the group it went out in was written by
    /// `write`, which gets the group's jobs in arrival order and returns one outcome per job.
    /// A `write` that panics fails its group with `on_panic` instead of leaving it waiting.
    pub fn commit(&self, job: J, write: impl Fn(Vec<J>) -> Vec<R>, on_panic: impl Fn() -> R) -> R {
        let mut st = self.state();
        let ticket = st.next;
        st.next = st.next.wrapping_add(1);
        st.queue.push((ticket, job));
        loop {
            if let Some(r) = st.outcomes.remove(&ticket) {
                return r;
            }
            if st.committing {
                st = self.done.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.committing = true;
            let group = std::mem::take(&mut st.queue);
            drop(st);
            let (tickets, jobs): (Vec<u64>, Vec<J>) = group.into_iter().unzip();
            let n = tickets.len();
            let outcomes = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(jobs)))
                .ok()
                .filter(|o| o.len() == n);
            st = self.state();
            st.groups = st.groups.wrapping_add(1);
            st.largest = st.largest.max(n);
            match outcomes {
                Some(outcomes) => st.outcomes.extend(tickets.into_iter().zip(outcomes)),
                None => {
                    let failed = on_panic();
                    st.outcomes
                        .extend(tickets.into_iter().map(|t| (t, failed.clone())));
                }
            }
            st.committing = false;
            self.done.notify_all();
        }
    }

    /// Groups committed so far, and the largest group.
    pub fn stats(&self) -> (u64, usize) {
        let st = self.state();
        (st.groups, st.largest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn every_job_gets_its_own_outcome_and_jobs_that_wait_go_out_together() {
        let gc: Arc<GroupCommit<u32, u32>> = Arc::default();
        // The first group's write blocks until every other caller has queued its job, so
        // those go out together in the second group.
        let queued = Arc::new(Barrier::new(2));
        let writes = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let first = {
            let (gc, queued, writes) = (gc.clone(), queued.clone(), writes.clone());
            std::thread::spawn(move || {
                gc.commit(
                    0,
                    |jobs| {
                        queued.wait();
                        writes.lock().unwrap().push(jobs.clone());
                        jobs.iter().map(|j| j * 10).collect()
                    },
                    || u32::MAX,
                )
            })
        };
        // Wait until the first write is under way.
        while !gc.state().committing {
            std::thread::yield_now();
        }
        let others: Vec<_> = (1..=8)
            .map(|j| {
                let (gc, writes) = (gc.clone(), writes.clone());
                std::thread::spawn(move || {
                    gc.commit(
                        j,
                        |jobs| {
                            writes.lock().unwrap().push(jobs.clone());
                            jobs.iter().map(|j| j * 10).collect()
                        },
                        || u32::MAX,
                    )
                })
            })
            .collect();
        while gc.state().queue.len() < 8 {
            std::thread::yield_now();
        }
        queued.wait();
        assert_eq!(first.join().unwrap(), 0);
        for (j, t) in (1..=8).zip(others) {
            assert_eq!(t.join().unwrap(), j * 10);
        }
        let writes = writes.lock().unwrap();
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert_eq!(writes[1].len(), 8);
        assert_eq!(gc.stats(), (2, 8));
    }

    #[test]
    fn a_write_that_panics_fails_its_group_and_the_next_group_still_commits() {
        let gc: GroupCommit<u32, Result<u32, ()>> = GroupCommit::default();
        let r = gc.commit(1, |_| panic!("disk on fire"), || Err(()));
        assert_eq!(r, Err(()));
        let r = gc.commit(2, |jobs| jobs.into_iter().map(Ok).collect(), || Err(()));
        assert_eq!(r, Ok(2));
    }
}
