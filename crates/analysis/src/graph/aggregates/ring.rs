//! One edge's figures at one resolution: a ring of time buckets, one row of `f32` per
//! figure, allocated only once the figure is non-zero, in pages of 32 buckets allocated
//! as the buckets they hold are written (a ring of a day's 5-minute buckets holds 1/8 of
//! its row a few hours after a start, or for an edge that came and went).
//!
//! Why this shape: a graph over a window sums O(buckets) cells per figure, and the memory
//! is fixed per edge and figure (capacity x 4 bytes) whatever the traffic. The ring knows
//! the newest bucket written; the slots of the `capacity` buckets up to it hold those
//! buckets, and moving the newest bucket on clears the slots it passes (amortised one
//! slot per bucket), so a read never mistakes an old bucket for the one it wants. A bit
//! per slot says whether its bucket was written at all (what tells an edge without data
//! in a window from one whose figures sum to zero). Per edge that is 1 bit of bookkeeping
//! per slot where a stamp per slot took 32: most of an edge's memory when it has few
//! figures.

/// Bucket `k` holds what happened in `((k - 1) * step, k * step]`, the left-open windows
/// PromQL's range selectors use.
pub(crate) fn bucket_of(t: i64, step: i64) -> Option<u32> {
    if t <= 0 {
        return None;
    }
    u32::try_from((t + step - 1) / step).ok()
}

pub(crate) struct Ring {
    /// The newest bucket written; 0: none yet. Slots hold buckets
    /// `(newest - capacity, newest]`.
    newest: u32,
    /// Per slot: whether its bucket was written since the slot was last cleared.
    written: Box<[u64]>,
    cap: u32,
    /// Per figure of the edge (same order as the edge's fields); None while all zero.
    rows: Vec<Option<Row>>,
}

/// Buckets per page of a row.
const PAGE: usize = 32;

/// One figure's cells, by slot; a page exists once one of its slots was written non-zero.
struct Row(Box<[Option<Box<[f32; PAGE]>>]>);

impl Row {
    fn new(cap: usize) -> Row {
        Row(vec![None; cap.div_ceil(PAGE)].into_boxed_slice())
    }

    fn add(&mut self, s: usize, x: f64) {
        let page = self.0[s / PAGE].get_or_insert_with(|| Box::new([0.0; PAGE]));
        let c = &mut page[s % PAGE];
        *c = (f64::from(*c) + x) as f32;
    }

    fn clear(&mut self, s: usize) {
        if let Some(page) = &mut self.0[s / PAGE] {
            page[s % PAGE] = 0.0;
        }
    }

    fn clear_all(&mut self) {
        for page in self.0.iter_mut().flatten() {
            page.fill(0.0);
        }
    }

    /// The sum of slots `a..b`.
    fn sum(&self, a: usize, b: usize) -> f64 {
        let mut total = 0.0;
        let mut s = a;
        while s < b {
            let end = ((s / PAGE + 1) * PAGE).min(b);
            if let Some(page) = &self.0[s / PAGE] {
                total += sum_f32(&page[s % PAGE..s % PAGE + (end - s)]);
            }
            s = end;
        }
        total
    }

    fn bytes(&self) -> usize {
        self.0.len() * 8 + self.0.iter().flatten().count() * PAGE * 4
    }
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        let cap = capacity.clamp(1, u32::MAX as usize / 2);
        Ring {
            newest: 0,
            written: vec![0; cap.div_ceil(64)].into_boxed_slice(),
            cap: cap as u32,
            rows: Vec::new(),
        }
    }

    /// A new figure of the edge: zero in every bucket until written.
    pub fn push_field(&mut self) {
        self.rows.push(None);
    }

    #[inline]
    fn slot(&self, k: u32) -> usize {
        (k % self.cap) as usize
    }

    fn is_written(&self, s: usize) -> bool {
        self.written[s / 64] & (1 << (s % 64)) != 0
    }

    /// Makes `k` the newest bucket, clearing the slots of the buckets passed over (their
    /// old contents left the retention).
    fn advance(&mut self, k: u32) {
        if self.newest == 0 || k - self.newest >= self.cap {
            // Every bucket held left the window.
            self.written.fill(0);
            for r in self.rows.iter_mut().flatten() {
                r.clear_all();
            }
        } else {
            for b in self.newest + 1..=k {
                let s = self.slot(b);
                self.written[s / 64] &= !(1 << (s % 64));
                for r in self.rows.iter_mut().flatten() {
                    r.clear(s);
                }
            }
        }
        self.newest = k;
    }

    /// Adds `x` to figure `f` in bucket `k`. A bucket older than the ring holds has left
    /// the retention and is dropped (returns false).
    pub fn add(&mut self, k: u32, f: usize, x: f64) -> bool {
        if k == 0 {
            return false;
        }
        if k > self.newest {
            self.advance(k);
        } else if self.newest - k >= self.cap {
            return false;
        }
        let s = self.slot(k);
        self.written[s / 64] |= 1 << (s % 64);
        if x == 0.0 {
            return true;
        }
        let cap = self.cap as usize;
        let Some(row) = self.rows.get_mut(f) else {
            return false;
        };
        row.get_or_insert_with(|| Row::new(cap)).add(s, x);
        true
    }

    /// Adds each figure's sum over buckets `(lo, hi]` to `out` (one entry per figure);
    /// false when no bucket in the range holds data.
    pub fn sum(&self, lo: u32, hi: u32, out: &mut [f64]) -> bool {
        if self.newest == 0 {
            return false;
        }
        // The buckets of the range the ring still holds.
        let first = lo
            .saturating_add(1)
            .max(self.newest.saturating_sub(self.cap - 1))
            .max(1);
        let last = hi.min(self.newest);
        if first > last {
            return false;
        }
        let n = (last - first + 1) as usize;
        let a = self.slot(first);
        let cap = self.cap as usize;
        // At most two runs of slots: to the ring's end, then from its start.
        let runs = if a + n <= cap {
            [(a, a + n), (0, 0)]
        } else {
            [(a, cap), (0, a + n - cap)]
        };
        if !runs
            .iter()
            .any(|&(x, y)| (x..y).any(|s| self.is_written(s)))
        {
            return false;
        }
        for (o, row) in out.iter_mut().zip(&self.rows) {
            if let Some(r) = row {
                *o += runs.iter().map(|&(x, y)| r.sum(x, y)).sum::<f64>();
            }
        }
        true
    }

    /// Heap bytes held: written bits, row pointers and allocated pages.
    pub fn bytes(&self) -> usize {
        self.written.len() * 8
            + self.rows.capacity() * std::mem::size_of::<Option<Row>>()
            + self.rows.iter().flatten().map(Row::bytes).sum::<usize>()
    }

    pub fn allocated_rows(&self) -> usize {
        self.rows.iter().flatten().count()
    }
}

/// The sum of `f32` cells in `f64`, eight lanes at a time (the compiler vectorises
/// independent accumulators; one running sum would serialise every addition).
fn sum_f32(v: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += f64::from(*x);
        }
    }
    lanes.iter().sum::<f64>() + rest.iter().map(|x| f64::from(*x)).sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_left_open() {
        assert_eq!(bucket_of(15_000, 15_000), Some(1));
        assert_eq!(bucket_of(15_001, 15_000), Some(2));
        assert_eq!(bucket_of(0, 15_000), None);
    }

    #[test]
    fn old_buckets_are_overwritten_and_never_read_as_new() {
        let mut r = Ring::new(4);
        r.push_field();
        r.push_field();
        assert!(r.add(10, 0, 1.0));
        assert!(r.add(11, 1, 2.0));
        assert!(r.add(12, 0, 3.0));
        let mut out = [0.0; 2];
        assert!(r.sum(9, 12, &mut out));
        assert_eq!(out, [4.0, 2.0]);
        // Bucket 14 takes bucket 10's slot; 10 is gone, and a late write to it is refused.
        assert!(r.add(14, 1, 5.0));
        assert!(!r.add(10, 0, 1.0));
        let mut out = [0.0; 2];
        assert!(r.sum(9, 14, &mut out));
        assert_eq!(out, [3.0, 7.0]);
        let mut out = [0.0; 2];
        assert!(!r.sum(20, 23, &mut out));
        assert_eq!(out, [0.0, 0.0]);
        // A range wrapping around the ring's end, all slots current (the fast path).
        let mut out = [0.0; 2];
        assert!(r.sum(11, 14, &mut out));
        assert_eq!(out, [3.0, 5.0]);
        assert!(r.add(13, 0, 0.5));
        let mut out = [0.0; 2];
        assert!(r.sum(10, 14, &mut out));
        assert_eq!(out, [3.5, 7.0]);
        // Only figure 0 and 1 rows are allocated, once written non-zero.
        assert_eq!(r.allocated_rows(), 2);
        r.push_field();
        assert!(r.add(14, 2, 0.0));
        assert_eq!(r.allocated_rows(), 2);
    }

    /// The ring against a plain model of what it must hold: every accepted write to a
    /// bucket within `capacity` of the newest one, summed in `f32` as the ring does. Writes
    /// jump ahead, fall behind and repeat; every read inside the held window agrees on the
    /// sums and on whether any bucket of the range was written.
    #[test]
    fn agrees_with_a_model_of_every_write() {
        // One page and a partial one; several pages, the last partial.
        for cap in [7u32, 70] {
            let mut r = Ring::new(cap as usize);
            for _ in 0..3 {
                r.push_field();
            }
            let mut model: std::collections::BTreeMap<u32, [f32; 3]> = Default::default();
            let mut newest = 0u32;
            let mut x = 0x2545_f491_4f6c_dd1du64;
            let mut next = |n: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % n
            };
            for step in 0..1500 {
                // Mostly near the newest bucket, sometimes far ahead or behind.
                let k = match next(10) {
                    0 => newest + 1 + next(20) as u32,
                    1 => newest.saturating_sub(next(12) as u32),
                    _ => (newest + next(3) as u32).saturating_sub(1),
                }
                .max(1);
                let f = next(3) as usize;
                let v = if next(4) == 0 {
                    0.0
                } else {
                    next(100) as f64 / 4.0
                };
                let held = k > newest || newest - k < cap;
                assert_eq!(
                    r.add(k, f, v),
                    held,
                    "step {step}: add to {k}, newest {newest}"
                );
                if held {
                    newest = newest.max(k);
                    let cell = &mut model.entry(k).or_default()[f];
                    *cell = (f64::from(*cell) + v) as f32;
                    model.retain(|&b, _| newest - b < cap);
                }
                let lo = newest.saturating_sub(cap) + next(u64::from(cap)) as u32;
                let hi = (lo + next(u64::from(cap) + 1) as u32).min(newest);
                let mut got = [0.0; 3];
                let any = r.sum(lo, hi, &mut got);
                let inside: Vec<&[f32; 3]> = if hi > lo {
                    model.range(lo + 1..=hi).map(|(_, c)| c).collect()
                } else {
                    Vec::new()
                };
                assert_eq!(any, !inside.is_empty(), "step {step}: ({lo}, {hi}]");
                for (i, g) in got.iter().enumerate() {
                    let want: f64 = inside.iter().map(|c| f64::from(c[i])).sum();
                    assert_eq!(*g, want, "step {step}: figure {i} over ({lo}, {hi}]");
                }
            }
        }
    }
}
