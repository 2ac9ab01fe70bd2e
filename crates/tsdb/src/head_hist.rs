//! A head series' native-histogram samples: closed chunks in the packed encoding blocks use
//! (about 20 bytes a 20-bucket histogram) and the newest samples as they came, so the head
//! does not hold a heap object of several hundred bytes per histogram sample.

use std::sync::Arc;

use meshlens_model::{FloatHistogram, HistogramSample, RejectReason};

use crate::head::Appended;
use crate::histogram::{decode_chunk_into, encode_chunk, HistChunk};

/// Samples the open list gathers before it is encoded as a chunk.
const CHUNK_SAMPLES: usize = 120;

#[derive(Default)]
pub struct HeadHistograms {
    /// Encoded chunks, in time order, each before the next and before `open`.
    closed: Vec<HistChunk>,
    /// The newest samples, sorted by time with distinct timestamps.
    open: Vec<HistogramSample>,
}

/// The samples of an encoded chunk within `[mint, maxt]`. Chunks here were encoded by the
/// head itself, so they decode; should one not, its readable samples are kept.
fn decode(c: &HistChunk, mint: i64, maxt: i64, out: &mut Vec<HistogramSample>) {
    let r = decode_chunk_into(&c.bytes, mint, maxt, out);
    debug_assert!(r.is_ok(), "a head histogram chunk does not decode: {r:?}");
}

fn chunk_len(c: &HistChunk) -> usize {
    c.bytes
        .get(1..3)
        .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])))
}

impl HeadHistograms {
    fn last_t(&self) -> Option<i64> {
        self.open
            .last()
            .map(|s| s.t)
            .or_else(|| self.closed.last().map(|c| c.max_t))
    }

    /// Appends a sample with the float rules (see `MemSeries::append_histogram`).
    pub fn append(
        &mut self,
        t: i64,
        h: &Arc<FloatHistogram>,
        ooo_window: i64,
        same: impl Fn(&FloatHistogram, &FloatHistogram) -> bool,
    ) -> Result<Appended, RejectReason> {
        let Some(last) = self.last_t().filter(|l| t <= *l) else {
            self.open.push(HistogramSample { t, h: h.clone() });
            if self.open.len() >= CHUNK_SAMPLES {
                self.closed.push(encode_chunk(&self.open));
                self.open.clear();
            }
            return Ok(Appended::New);
        };
        if self.closed.is_empty() || self.open.first().is_some_and(|f| t >= f.t) {
            return match self.open.binary_search_by_key(&t, |s| s.t) {
                Ok(i) if same(&self.open[i].h, h) => Ok(Appended::Unchanged),
                Ok(_) => Err(RejectReason::Duplicate),
                Err(_) if last.saturating_sub(t) > ooo_window => Err(RejectReason::OutOfOrder),
                Err(i) => {
                    self.open.insert(i, HistogramSample { t, h: h.clone() });
                    Ok(Appended::New)
                }
            };
        }
        // Among the closed chunks: the first that ends at or after `t` holds it, or takes it.
        let k = self
            .closed
            .partition_point(|c| c.max_t < t)
            .min(self.closed.len().saturating_sub(1));
        let mut samples = Vec::with_capacity(chunk_len(&self.closed[k]) + 1);
        decode(&self.closed[k], i64::MIN, i64::MAX, &mut samples);
        match samples.binary_search_by_key(&t, |s| s.t) {
            Ok(i) if same(&samples[i].h, h) => Ok(Appended::Unchanged),
            Ok(_) => Err(RejectReason::Duplicate),
            Err(_) if last.saturating_sub(t) > ooo_window => Err(RejectReason::OutOfOrder),
            Err(i) => {
                samples.insert(i, HistogramSample { t, h: h.clone() });
                let parts: Vec<HistChunk> =
                    samples.chunks(CHUNK_SAMPLES).map(encode_chunk).collect();
                self.closed.splice(k..=k, parts);
                Ok(Appended::New)
            }
        }
    }

    /// The samples within `[mint, maxt]`, sorted by time.
    pub fn in_range(&self, mint: i64, maxt: i64) -> Vec<HistogramSample> {
        let mut out = Vec::new();
        for c in self.overlapping(mint, maxt) {
            decode(c, mint, maxt, &mut out);
        }
        let a = self.open.partition_point(|s| s.t < mint);
        let b = self.open.partition_point(|s| s.t <= maxt).max(a);
        out.extend_from_slice(&self.open[a..b]);
        out
    }

    /// Whether a sample may lie in `[mint, maxt]`: chunk-level for closed chunks, exact for
    /// the open samples.
    pub fn has_in(&self, mint: i64, maxt: i64) -> bool {
        self.overlapping(mint, maxt).next().is_some()
            || self
                .open
                .get(self.open.partition_point(|s| s.t < mint))
                .is_some_and(|s| s.t <= maxt)
    }

    fn overlapping(&self, mint: i64, maxt: i64) -> impl Iterator<Item = &HistChunk> {
        let from = self.closed.partition_point(|c| c.max_t < mint);
        self.closed[from..]
            .iter()
            .take_while(move |c| c.min_t <= maxt)
    }

    pub fn len(&self) -> usize {
        self.closed.iter().map(chunk_len).sum::<usize>() + self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.open.is_empty()
    }

    pub fn time_range(&self) -> Option<(i64, i64)> {
        let min = self
            .closed
            .first()
            .map(|c| c.min_t)
            .or_else(|| self.open.first().map(|s| s.t))?;
        Some((min, self.last_t()?))
    }

    /// Removes and returns every sample before `boundary`.
    pub fn take_before(&mut self, boundary: i64) -> Vec<HistogramSample> {
        let mut out = Vec::new();
        let whole = self.closed.partition_point(|c| c.max_t < boundary);
        for c in self.closed.drain(..whole) {
            decode(&c, i64::MIN, i64::MAX, &mut out);
        }
        if let Some(c) = self.closed.first().filter(|c| c.min_t < boundary) {
            let mut samples = Vec::with_capacity(chunk_len(c));
            decode(c, i64::MIN, i64::MAX, &mut samples);
            let split = samples.partition_point(|s| s.t < boundary);
            self.closed[0] = encode_chunk(&samples[split..]);
            out.extend(samples.drain(..split));
        }
        if self.closed.is_empty() {
            let split = self.open.partition_point(|s| s.t < boundary);
            out.extend(self.open.drain(..split));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hist(v: u32) -> Arc<FloatHistogram> {
        Arc::new(crate::histogram::tests::sample_histogram(v))
    }

    proptest! {
        /// Against a sorted list of samples, under appends in and out of order, duplicates,
        /// range reads and removal of the oldest.
        #[test]
        fn behaves_as_a_sorted_list(
            ops in proptest::collection::vec((0u8..10, 0i64..2_000, 0u32..4), 1..700),
        ) {
            let window = 400;
            let mut store = HeadHistograms::default();
            let mut model: Vec<HistogramSample> = Vec::new();
            let mut clock = 0i64;
            for (op, x, v) in ops {
                match op {
                    0..=6 => {
                        // Mostly forward, sometimes back by up to twice the window.
                        let t = if op < 5 { clock + 1 + x % 5 } else { clock - x % (2 * window) };
                        clock = clock.max(t);
                        let h = hist(v);
                        let last = model.last().map(|s| s.t);
                        let want = match model.binary_search_by_key(&t, |s| s.t) {
                            Ok(i) if model[i].h == h => Ok(()),
                            Ok(_) => Err(RejectReason::Duplicate),
                            Err(_) if last.is_some_and(|l| t < l && l - t > window) => Err(RejectReason::OutOfOrder),
                            Err(i) => { model.insert(i, HistogramSample { t, h: h.clone() }); Ok(()) }
                        };
                        let got = store.append(t, &h, window, |a, b| a == b).map(|_| ());
                        prop_assert_eq!(got, want);
                    }
                    7 | 8 => {
                        let (mint, maxt) = (clock - x, clock - x / 2);
                        let want: Vec<HistogramSample> =
                            model.iter().filter(|s| s.t >= mint && s.t <= maxt).cloned().collect();
                        prop_assert_eq!(store.has_in(mint, maxt) || want.is_empty(), true);
                        prop_assert_eq!(store.in_range(mint, maxt), want);
                    }
                    _ => {
                        let boundary = clock - x;
                        let split = model.partition_point(|s| s.t < boundary);
                        let want: Vec<HistogramSample> = model.drain(..split).collect();
                        prop_assert_eq!(store.take_before(boundary), want);
                    }
                }
                prop_assert_eq!(store.len(), model.len());
                prop_assert_eq!(
                    store.time_range(),
                    model.first().map(|a| (a.t, model.last().unwrap().t))
                );
            }
        }
    }
}
