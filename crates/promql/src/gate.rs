//! The bound on queries evaluating at once (`--query.max-concurrency`): a query takes a
//! slot before it evaluates and gives it back when done; when all are taken it waits, but
//! never past its own deadline, as Prometheus's active query tracker does.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

pub(crate) struct Gate {
    /// Zero: no limit.
    max: usize,
    active: Mutex<usize>,
    freed: Condvar,
}

/// A taken slot; dropping it frees the slot and wakes one waiting query.
pub(crate) struct Slot<'a> {
    gate: &'a Gate,
}

impl Gate {
    pub fn new(max: usize) -> Gate {
        Gate {
            max,
            active: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, usize> {
        // The count stays consistent even if a holder panicked: it is one integer.
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queries holding a slot now.
    pub fn active(&self) -> usize {
        *self.lock()
    }

    /// Takes a slot, waiting until `deadline` at most; `None` when none freed up in time.
    pub fn enter(&self, deadline: Instant) -> Option<Slot<'_>> {
        let mut n = self.lock();
        // Each pass either takes a slot, gives up at the deadline, or sleeps until a slot
        // frees or the deadline passes, so the loop ends by the deadline.
        loop {
            if self.max == 0 || *n < self.max {
                *n += 1;
                return Some(Slot { gate: self });
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            n = self
                .freed
                .wait_timeout(n, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut n = self.gate.lock();
        *n = n.saturating_sub(1);
        drop(n);
        self.gate.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn waits_for_a_free_slot_and_gives_up_at_the_deadline() {
        let g = Gate::new(2);
        let a = g.enter(Instant::now()).expect("first slot");
        let _b = g.enter(Instant::now()).expect("second slot");
        assert_eq!(g.active(), 2);
        assert!(g
            .enter(Instant::now() + Duration::from_millis(20))
            .is_none());
        drop(a);
        assert_eq!(g.active(), 1);
        assert!(g.enter(Instant::now()).is_some());
    }

    #[test]
    fn a_waiting_query_gets_the_slot_another_frees() {
        let g = Gate::new(1);
        let held = g.enter(Instant::now()).expect("slot");
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                g.enter(Instant::now() + Duration::from_secs(60))
                    .map(|_| g.max)
            });
            // Free the slot once the waiter is (very likely) asleep; either way it must
            // get the slot well before its deadline.
            std::thread::sleep(Duration::from_millis(20));
            drop(held);
            assert_eq!(waiter.join().expect("waiter"), Some(1));
        });
        assert_eq!(g.active(), 0);
    }

    #[test]
    fn zero_means_no_limit() {
        let g = Gate::new(0);
        let slots: Vec<_> = (0..100).map(|_| g.enter(Instant::now())).collect();
        assert!(slots.iter().all(Option::is_some));
        assert_eq!(g.active(), 100);
    }
}
