//! A read's sample budget: a query says how many samples it may still hold, and the read
//! path spends the budget chunk by chunk, stopping as soon as it is gone instead of
//! decoding everything and counting afterwards.

#[derive(Debug)]
pub(crate) struct SampleBudget {
    left: usize,
    exceeded: bool,
}

impl SampleBudget {
    pub fn new(max_samples: usize) -> Self {
        SampleBudget {
            left: max_samples,
            exceeded: false,
        }
    }

    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// Spends `n` samples just read; false, from then on, once more were read than allowed.
    pub fn spend(&mut self, n: usize) -> bool {
        #[cfg(test)]
        SPENDS.with(|c| c.set(c.get() + 1));
        match self.left.checked_sub(n) {
            Some(left) if !self.exceeded => self.left = left,
            _ => self.exceeded = true,
        }
        !self.exceeded
    }

    pub fn exceeded(&self) -> bool {
        self.exceeded
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
        let mut b = SampleBudget::new(10);
        assert!(b.spend(4));
        assert!(b.spend(6));
        assert!(!b.exceeded());
        assert!(!b.spend(1));
        assert!(b.exceeded());
        assert!(!b.spend(0));
        assert!(SampleBudget::unlimited().spend(usize::MAX));
    }
}
