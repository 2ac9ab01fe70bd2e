//! The head's read side: what a selection asks of a series (does it have data in a range,
//! where, and its samples decoded straight into the caller's buffer) and of the head (the
//! series behind a set of ids). A child module of `head`, so it reads `MemSeries` directly
//! while the append side stays in `head.rs`.

use meshlens_model::Sample;
use roaring::RoaringBitmap;

use super::{Head, MemSeries, SeriesRef};
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
        let a = self.ooo.partition_point(|s| s.t < mint);
        let b = self.ooo.partition_point(|s| s.t <= maxt).max(a);
        &self.ooo[a..b]
    }

    /// Closed chunks overlapping `[mint, maxt]`: they are in time order and do not overlap
    /// each other, so the first is found by binary search.
    fn overlapping_chunks(&self, mint: i64, maxt: i64) -> impl Iterator<Item = &crate::chunk::Chunk> {
        let first = self.chunks.partition_point(|c| c.max_t < mint);
        self.chunks[first..].iter().take_while(move |c| c.min_t <= maxt)
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
    }
}

impl Head {
    /// The live series behind `ids`, in id order, under one lock of the series table.
    pub(crate) fn series_refs(&self, ids: &RoaringBitmap) -> Vec<SeriesRef> {
        let series = self.series.read();
        ids.iter()
            .filter_map(|id| series.get(id as usize)?.clone())
            .collect()
    }
}
