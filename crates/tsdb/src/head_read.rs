//! The head's read side: what a selection asks of a series (does it have data in a range,
//! where, and its samples decoded straight into the caller's buffer) and of the head (the
//! series behind a set of ids). A child module of `head`, so it reads `MemSeries` directly
//! while the append side stays in `head.rs`.

use std::cmp::Ordering;
use std::sync::Arc;

use meshlens_model::Sample;
use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;

use super::{Head, MemSeries, Series, SeriesRef};
use crate::budget::SampleBudget;
use crate::chunk::ChunkError;

impl MemSeries {
    /// Samples in `[mint, maxt]`, sorted, de-duplicated (in-order data wins over late data).
    pub fn samples_in(&self, mint: i64, maxt: i64) -> Vec<Sample> {
        let mut out = Vec::new();
        // Head chunks are our own encoding: a failure would leave samples out, not panic.
        let _ = self.decode_in_order(mint, maxt, &mut out, &SampleBudget::unlimited());
        let late = self.late_in(mint, maxt);
        if !late.is_empty() {
            out.extend_from_slice(late);
            out.sort_by_key(|s| s.t);
            out.dedup_by_key(|s| s.t);
        }
        out
    }

    /// The time span, clipped to `[mint, maxt]`, of the in-order chunks (closed and open)
    /// that overlap the range; None when none does. Chunk-level: a gap between two samples
    /// may still hold the whole range.
    pub(crate) fn in_order_bounds(&self, mint: i64, maxt: i64) -> Option<(i64, i64)> {
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for c in self.overlapping_chunks(mint, maxt) {
            lo = lo.min(c.min_t);
            hi = hi.max(c.max_t);
        }
        if let (Some(f), Some(l)) = (self.open.first_t(), self.open.last_t()) {
            if f <= maxt && l >= mint {
                lo = lo.min(f);
                hi = hi.max(l);
            }
        }
        (lo <= hi).then(|| (lo.max(mint), hi.min(maxt)))
    }

    /// The late (out-of-order) samples within `[mint, maxt]`, sorted by time.
    pub(crate) fn late_in(&self, mint: i64, maxt: i64) -> &[Sample] {
        let Some(late) = self.ooo.as_deref() else {
            return &[];
        };
        let a = late.partition_point(|s| s.t < mint);
        let b = late.partition_point(|s| s.t <= maxt).max(a);
        &late[a..b]
    }

    /// Closed chunks overlapping `[mint, maxt]` (in time order, not overlapping each other:
    /// the walk over their headers stops at the first chunk past the range).
    fn overlapping_chunks(
        &self,
        mint: i64,
        maxt: i64,
    ) -> impl Iterator<Item = super::closed::ChunkView<'_>> {
        self.chunks.overlapping(mint, maxt)
    }

    /// Appends the in-order samples within `[mint, maxt]` (closed chunks, then the open
    /// one) to `buf`, in time order, spending `budget` chunk by chunk; stops once it is
    /// exceeded. Returns how many samples were appended.
    pub(crate) fn decode_in_order(
        &self,
        mint: i64,
        maxt: i64,
        buf: &mut Vec<Sample>,
        budget: &SampleBudget,
    ) -> Result<usize, ChunkError> {
        let mut n = 0;
        for c in self.overlapping_chunks(mint, maxt) {
            let got = c.decode_range_into(mint, maxt, buf)?;
            n += got;
            if !budget.spend(got) {
                return Ok(n);
            }
        }
        if self.open.first_t().is_some_and(|f| f <= maxt)
            && self.open.last_t().is_some_and(|l| l >= mint)
        {
            let got = self.open.decode_range_into(mint, maxt, buf)?;
            n += got;
            budget.spend(got);
        }
        Ok(n)
    }

    /// Whether the series may hold a sample in `[mint, maxt]`: chunk-level for closed
    /// chunks, exact for the open chunk and late samples.
    pub fn has_data_in(&self, mint: i64, maxt: i64) -> bool {
        self.overlapping_chunks(mint, maxt).next().is_some()
            || self.open.has_sample_in(mint, maxt)
            || !self.late_in(mint, maxt).is_empty()
            || self.has_histograms_in(mint, maxt)
    }
}

/// The head's series in label order as of the last build, so that a selection gets its
/// series sorted by comparing ranks, not labels. Series created since are sorted by their
/// labels and merged in; the order is rebuilt once they are more than a few percent.
#[derive(Default)]
pub(crate) struct LabelOrder {
    current: RwLock<Arc<Ranks>>,
    rebuilding: Mutex<()>,
}

#[derive(Default)]
struct Ranks {
    /// Position in label order, by series id; `u32::MAX` for series not live at the build.
    /// Ids are never reused, so a rank stays right for as long as its series lives.
    by_id: Vec<u32>,
}

impl Ranks {
    fn get(&self, id: u32) -> Option<u32> {
        self.by_id
            .get(id as usize)
            .copied()
            .filter(|&r| r != u32::MAX)
    }
}

/// Orders two head series as their labels order.
fn cmp_series(a: &Series, b: &Series) -> Ordering {
    cmp_label_pairs(a.label_pairs(), b.label_pairs())
}

/// `Labels`' order (pair by pair, name then value; a prefix first) over label pairs. Strings
/// interned in the head compare equal by address before any byte is read.
pub(crate) fn cmp_label_pairs<'x, 'y>(
    mut a: impl Iterator<Item = (&'x str, &'x str)>,
    mut b: impl Iterator<Item = (&'y str, &'y str)>,
) -> Ordering {
    let same = |x: &str, y: &str| std::ptr::eq(x, y) || x == y;
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((an, av)), Some((bn, bv))) => {
                if !same(an, bn) {
                    return an.cmp(bn);
                }
                if !same(av, bv) {
                    return av.cmp(bv);
                }
            }
        }
    }
}

impl Head {
    /// The live series behind `ids`, sorted by labels.
    pub(crate) fn sorted_series(&self, ids: &RoaringBitmap) -> Vec<SeriesRef> {
        let ranks = self.ranks();
        let mut ranked: Vec<(u32, SeriesRef)> = Vec::with_capacity(ids.len() as usize);
        let mut fresh: Vec<SeriesRef> = Vec::new();
        {
            let series = self.series.read();
            for id in ids {
                let Some(Some(s)) = series.get(id as usize) else {
                    continue;
                };
                match ranks.get(id) {
                    Some(r) => ranked.push((r, s.clone())),
                    None => fresh.push(s.clone()),
                }
            }
        }
        ranked.sort_unstable_by_key(|(r, _)| *r);
        let ranked = ranked.into_iter().map(|(_, s)| s);
        if fresh.is_empty() {
            return ranked.collect();
        }
        fresh.sort_unstable_by(|a, b| cmp_series(a, b));
        let mut out = Vec::with_capacity(ranked.len() + fresh.len());
        let mut fresh = fresh.into_iter().peekable();
        for s in ranked {
            while let Some(f) = fresh.next_if(|f| cmp_series(f, &s).is_lt()) {
                out.push(f);
            }
            out.push(s);
        }
        out.extend(fresh);
        out
    }

    /// The current label order, rebuilt first when too many series are missing from it.
    fn ranks(&self) -> Arc<Ranks> {
        let stale = |r: &Ranks, len: usize| len.saturating_sub(r.by_id.len()) > 256 + len / 16;
        let ranks = self.order.current.read().clone();
        if !stale(&ranks, self.series.read().len()) {
            return ranks;
        }
        let _one = self.order.rebuilding.lock();
        let ranks = self.order.current.read().clone();
        let mut live: Vec<SeriesRef> = self.series.read().iter().flatten().cloned().collect();
        let len = live.iter().map(|s| s.id as usize + 1).max().unwrap_or(0);
        if !stale(&ranks, len) {
            return ranks;
        }
        live.sort_unstable_by(|a, b| cmp_series(a, b));
        let mut by_id = vec![u32::MAX; len];
        for (rank, s) in live.iter().enumerate() {
            by_id[s.id as usize] = rank as u32;
        }
        let fresh = Arc::new(Ranks { by_id });
        *self.order.current.write() = fresh.clone();
        fresh
    }
}

impl Series {
    /// The labels as sorted (name, value) pairs borrowed from the head's symbol table: what
    /// a selection sorts by, without building `Labels` (equal strings share one address).
    pub(crate) fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.labels.pairs()
    }
}
