//! A read's sample budget: a query says how many samples it may still hold, and the read
//! path spends the budget chunk by chunk, stopping as soon as it is gone instead of
//! decoding everything and counting afterwards. One budget may be shared by the threads
//! decoding one selection in parallel.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[derive(Debug)]
pub(crate) struct SampleBudget {
    left: AtomicUsize,
    exceeded: AtomicBool,
    /// `usize::MAX`: nothing to count, so spending is free.
    unlimited: bool,
}

impl SampleBudget {
    pub fn new(max_samples: usize) -> Self {
        SampleBudget {
            left: AtomicUsize::new(max_samples),
            exceeded: AtomicBool::new(false),
            unlimited: max_samples == usize::MAX,
        }
    }

    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// Spends `n` samples just read; false, from then on, once more were read than allowed.
    pub fn spend(&self, n: usize) -> bool {
        #[cfg(test)]
        SPENDS.with(|c| c.set(c.get() + 1));
        if self.unlimited {
            return true;
        }
        if self.exceeded.load(Ordering::Relaxed) {
            return false;
        }
        let spent = self
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            });
        if spent.is_err() {
            self.exceeded.store(true, Ordering::Relaxed);
        }
        spent.is_ok()
    }

    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
thread_local! {
    /// Budget spends on this thread: one per chunk (or head buffer) read, so tests can see
    /// that a read stopped early.
    static SPENDS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Chunks read on this thread so far (tests only).
#[cfg(test)]
pub(crate) fn chunks_read() -> usize {
    SPENDS.with(|c| c.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spending_past_the_budget_sticks() {
        let b = SampleBudget::new(10);
        assert!(b.spend(4));
        assert!(b.spend(6));
        assert!(!b.exceeded());
        assert!(!b.spend(1));
        assert!(b.exceeded());
        assert!(!b.spend(0));
        assert!(SampleBudget::unlimited().spend(usize::MAX));
    }

    #[test]
    fn threads_share_one_budget() {
        let b = SampleBudget::new(400);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        assert!(b.spend(1));
                    }
                });
            }
        });
        // Exactly the budget was spent across the threads: not one sample more passes.
        assert!(!b.exceeded());
        assert!(!b.spend(1));
    }
}
