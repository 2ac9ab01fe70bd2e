//! One edge's figures at one resolution: a ring of time buckets, one row of `f32` per
//! figure, allocated only once the figure is non-zero.
//!
//! Why this shape: a graph over a window sums O(buckets) cells per figure, and the memory
//! is fixed per edge and figure (capacity x 4 bytes) whatever the traffic. Each slot
//! remembers which bucket it holds (its stamp), so old buckets are overwritten in place
//! (no sweeping) and a read never mistakes a stale slot for the bucket it wants.

/// Bucket `k` holds what happened in `((k - 1) * step, k * step]`, the left-open windows
/// PromQL's range selectors use.
pub(crate) fn bucket_of(t: i64, step: i64) -> Option<u32> {
    if t <= 0 {
        return None;
    }
    u32::try_from((t + step - 1) / step).ok()
}

pub(crate) struct Ring {
    /// The bucket each slot holds; 0: none yet.
    stamps: Box<[u32]>,
    /// Per figure of the edge (same order as the edge's fields); None while all zero.
    rows: Vec<Option<Box<[f32]>>>,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            stamps: vec![0; capacity.max(1)].into_boxed_slice(),
            rows: Vec::new(),
        }
    }

    /// A new figure of the edge: zero in every bucket until written.
    pub fn push_field(&mut self) {
        self.rows.push(None);
    }

    /// Adds `x` to figure `f` in bucket `k`. A bucket older than the one its slot holds has
    /// left the retention and is dropped (returns false).
    pub fn add(&mut self, k: u32, f: usize, x: f64) -> bool {
        let cap = self.stamps.len();
        let s = k as usize % cap;
        if self.stamps[s] != k {
            if self.stamps[s] > k {
                return false;
            }
            self.stamps[s] = k;
            for r in self.rows.iter_mut().flatten() {
                r[s] = 0.0;
            }
        }
        if x == 0.0 {
            return true;
        }
        let Some(row) = self.rows.get_mut(f) else {
            return false;
        };
        let row = row.get_or_insert_with(|| vec![0.0; cap].into_boxed_slice());
        row[s] = (f64::from(row[s]) + x) as f32;
        true
    }

    /// Adds each figure's sum over buckets `(lo, hi]` to `out` (one entry per figure);
    /// false when no bucket in the range holds data.
    pub fn sum(&self, lo: u32, hi: u32, slots: &mut Vec<usize>, out: &mut [f64]) -> bool {
        let cap = self.stamps.len();
        let n = hi.saturating_sub(lo) as usize;
        if n == 0 {
            return false;
        }
        if n <= cap {
            // The buckets lie in at most two runs of slots; when every slot holds the
            // bucket wanted (the steady state), each row is summed run by run.
            let first = (lo as usize + 1) % cap;
            let runs = if first + n <= cap {
                [(first, first + n), (0, 0)]
            } else {
                [(first, cap), (0, first + n - cap)]
            };
            let mut k = lo + 1;
            let (mut all, mut any) = (true, false);
            for &(a, b) in &runs {
                for &stamp in &self.stamps[a..b] {
                    let ok = stamp == k;
                    all &= ok;
                    any |= ok;
                    k = k.wrapping_add(1);
                }
            }
            if !any {
                return false;
            }
            if all {
                for (o, row) in out.iter_mut().zip(&self.rows) {
                    if let Some(r) = row {
                        *o += runs.iter().map(|&(a, b)| sum_f32(&r[a..b])).sum::<f64>();
                    }
                }
                return true;
            }
        }
        slots.clear();
        slots.extend(
            (lo.saturating_add(1)..=hi)
                .map(|k| (k, k as usize % cap))
                .filter(|&(k, s)| self.stamps[s] == k)
                .map(|(_, s)| s),
        );
        if slots.is_empty() {
            return false;
        }
        for (o, row) in out.iter_mut().zip(&self.rows) {
            if let Some(r) = row {
                *o += slots.iter().map(|&s| f64::from(r[s])).sum::<f64>();
            }
        }
        true
    }

    /// Heap bytes held: stamps, row pointers and allocated rows.
    pub fn bytes(&self) -> usize {
        let cap = self.stamps.len();
        cap * 4
            + self.rows.capacity() * std::mem::size_of::<Option<Box<[f32]>>>()
            + self.rows.iter().flatten().count() * cap * 4
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
        let mut slots = Vec::new();
        let mut out = [0.0; 2];
        assert!(r.sum(9, 12, &mut slots, &mut out));
        assert_eq!(out, [4.0, 2.0]);
        // Bucket 14 takes bucket 10's slot; 10 is gone, and a late write to it is refused.
        assert!(r.add(14, 1, 5.0));
        assert!(!r.add(10, 0, 1.0));
        let mut out = [0.0; 2];
        assert!(r.sum(9, 14, &mut slots, &mut out));
        assert_eq!(out, [3.0, 7.0]);
        let mut out = [0.0; 2];
        assert!(!r.sum(20, 23, &mut slots, &mut out));
        assert_eq!(out, [0.0, 0.0]);
        // A range wrapping around the ring's end, all slots current (the fast path).
        let mut out = [0.0; 2];
        assert!(r.sum(11, 14, &mut slots, &mut out));
        assert_eq!(out, [3.0, 5.0]);
        assert!(r.add(13, 0, 0.5));
        let mut out = [0.0; 2];
        assert!(r.sum(10, 14, &mut slots, &mut out));
        assert_eq!(out, [3.5, 7.0]);
        // Only figure 0 and 1 rows are allocated, once written non-zero.
        assert_eq!(r.allocated_rows(), 2);
        r.push_field();
        assert!(r.add(14, 2, 0.0));
        assert_eq!(r.allocated_rows(), 2);
    }
}
