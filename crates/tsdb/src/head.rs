//! The in-memory head: recent samples per series, compressed into chunks as they fill, and a
//! postings index over the series.
//!
//! Series are found by a keyed 128-bit hash of their labels ([`labels::SeriesKey`]) in
//! sharded maps, so appends to different series rarely contend; each series has its own lock. Labels live outside that lock,
//! interned ([`labels`]), so finding a series takes no series lock and builds no `Labels`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use meshlens_model::hash::FxMap;
use meshlens_model::{
    FloatHistogram, HeadCardinality, HistogramSample, LabelMatcher, Labels, RejectReason, Sample,
};
use parking_lot::{Mutex, MutexGuard, RwLock};
use roaring::RoaringBitmap;

use crate::chunk;
use crate::chunk::appender::Appender;
use crate::postings::Postings;

#[path = "head_chunks.rs"]
mod closed;
#[path = "head_hist.rs"]
mod hist;
#[path = "head_labels.rs"]
mod labels;
#[path = "head_read.rs"]
mod read;
pub(crate) use read::cmp_label_pairs;

use closed::ClosedChunks;
use hist::HeadHistograms;
use labels::{Keyer, SeriesKey, SeriesLabels, Symbols};

thread_local! {
    /// The samples of a chunk being closed, decoded for re-encoding, and its bytes: buffers
    /// per thread instead of allocations per closed chunk.
    static CLOSE_SCRATCH: std::cell::RefCell<(Vec<Sample>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// `MemSeries::window_end` before it is known.
const UNKNOWN_WINDOW: i64 = i64::MIN;

/// The end (exclusive) of the block window holding `t`.
fn window_end(t: i64, block_duration: i64) -> i64 {
    (t.div_euclid(block_duration) + 1).saturating_mul(block_duration)
}

/// Samples per head chunk; blocks re-encode into larger chunks.
pub const HEAD_CHUNK_SAMPLES: usize = 120;
const SHARDS: usize = 32;

/// One series of the head: its labels, fixed at creation and read without a lock, and its
/// samples behind its own lock.
pub struct Series {
    id: u32,
    labels: SeriesLabels,
    /// Where the series' next append writes (see [`Series::prefetch`]); only a hint.
    tail: AtomicUsize,
    inner: Mutex<MemSeries>,
}

impl Series {
    /// The series' id in the head (and in its WAL records).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The labels, built as the model's owned type.
    pub fn labels(&self) -> Labels {
        self.labels.to_labels()
    }

    pub fn lock(&self) -> MutexGuard<'_, MemSeries> {
        self.inner.lock()
    }

    /// Records where the next append to `s` (this series' samples, locked) will write.
    #[inline]
    pub fn note_tail(&self, s: &MemSeries) {
        self.tail.store(s.open.tail_addr(), Ordering::Relaxed);
    }

    /// Asks the CPU to fetch this series into cache ahead of an append: the first of two
    /// steps, then [`Series::prefetch_tail`] a little later, once this has arrived.
    /// Appends walk thousands of series once per scrape, so a series is usually out of
    /// cache, and the unlock after each append would otherwise wait for its lines; fetched
    /// a few series ahead, the misses overlap instead.
    #[inline]
    pub fn prefetch(&self) {
        let at = self as *const Series as usize;
        for line in (0..std::mem::size_of::<Series>()).step_by(64) {
            prefetch(at + line);
        }
    }

    /// Asks the CPU to fetch the end of the open chunk, where the next append writes.
    #[inline]
    pub fn prefetch_tail(&self) {
        prefetch(self.tail.load(Ordering::Relaxed));
    }
}

#[inline]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    if addr != 0 {
        // SAFETY: a prefetch is only a hint: it never faults and never changes memory,
        // whatever the address (a stale one just fetches a useless line).
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// A series' samples.
pub struct MemSeries {
    /// The closed chunks, in time order.
    chunks: ClosedChunks,
    /// The newest samples, compressed as they arrive.
    open: Appender,
    /// Late samples within the out-of-order window, sorted by time; None (one word) while
    /// there are none, as for most series.
    #[allow(clippy::box_collection)]
    ooo: Option<Box<Vec<Sample>>>,
    /// The newest in-order sample, once `has_last` (a flag beside `removed` instead of an
    /// `Option`, whose tag would cost a word).
    last: Sample,
    has_last: bool,
    /// Where the block window of the open chunk's first sample ends (the chunk closes
    /// there); `UNKNOWN_WINDOW` until computed, so appends need no division.
    window_end: i64,
    /// Native-histogram samples, sorted by time with distinct timestamps; None (one word)
    /// for the float-only series that are the rule.
    hist: Option<Box<HeadHistograms>>,
    /// Set when garbage collection drops the series; holders of a handle must look it up
    /// again.
    pub removed: bool,
}

/// What one sample append did.
pub enum Appended {
    New,
    /// Same timestamp and same value as stored: ignored, as Prometheus does.
    Unchanged,
}

impl MemSeries {
    fn new() -> Self {
        MemSeries {
            chunks: ClosedChunks::default(),
            open: Appender::default(),
            ooo: None,
            last: Sample::new(0, 0.0),
            has_last: false,
            window_end: UNKNOWN_WINDOW,
            hist: None,
            removed: false,
        }
    }

    /// Appends a native-histogram sample. Histograms keep their own order beside the
    /// floats (a series may switch between the two), under the float rules: a timestamp
    /// already held is unchanged when the histogram is equal and a duplicate otherwise;
    /// one older than the newest histogram is refused as out of order beyond `ooo_window`
    /// and inserted in time order within it.
    pub fn append_histogram(
        &mut self,
        t: i64,
        h: &Arc<FloatHistogram>,
        ooo_window: i64,
    ) -> Result<Appended, RejectReason> {
        self.hist
            .get_or_insert_with(Default::default)
            .append(t, h, ooo_window, same_histogram)
    }

    /// The native-histogram samples within `[mint, maxt]`, sorted by time.
    pub fn histograms_in(&self, mint: i64, maxt: i64) -> Vec<HistogramSample> {
        self.hist
            .as_deref()
            .map_or_else(Vec::new, |h| h.in_range(mint, maxt))
    }

    /// Whether a native-histogram sample may lie in `[mint, maxt]` (chunk-level for the
    /// encoded ones).
    pub fn has_histograms_in(&self, mint: i64, maxt: i64) -> bool {
        self.hist.as_deref().is_some_and(|h| h.has_in(mint, maxt))
    }

    /// How many native-histogram samples the series holds.
    pub fn num_histograms(&self) -> usize {
        self.hist.as_deref().map_or(0, HeadHistograms::len)
    }

    /// Removes and returns every native-histogram sample before `boundary`.
    pub fn take_histograms_before(&mut self, boundary: i64) -> Vec<HistogramSample> {
        let Some(h) = self.hist.as_deref_mut() else {
            return Vec::new();
        };
        let out = h.take_before(boundary);
        if h.is_empty() {
            self.hist = None;
        }
        out
    }

    pub fn append(
        &mut self,
        t: i64,
        v: f64,
        ooo_window: i64,
        block_duration: i64,
    ) -> Result<Appended, RejectReason> {
        if !self.has_last {
            self.open.append(t, v);
            self.last = Sample::new(t, v);
            self.has_last = true;
            return Ok(Appended::New);
        }
        let last = self.last;
        if t == last.t {
            return if v.to_bits() == last.v.to_bits() {
                Ok(Appended::Unchanged)
            } else {
                Err(RejectReason::Duplicate)
            };
        }
        if t < last.t {
            if last.t.saturating_sub(t) > ooo_window {
                return Err(RejectReason::OutOfOrder);
            }
            let late = self.ooo.get_or_insert_with(Default::default);
            return match late.binary_search_by_key(&t, |s| s.t) {
                Ok(i) if late[i].v.to_bits() == v.to_bits() => Ok(Appended::Unchanged),
                Ok(_) => Err(RejectReason::Duplicate),
                Err(i) => {
                    late.insert(i, Sample::new(t, v));
                    Ok(Appended::New)
                }
            };
        }
        if self.window_end == UNKNOWN_WINDOW {
            if let Some(f) = self.open.first_t() {
                self.window_end = window_end(f, block_duration);
            }
        }
        // t is above every in-order sample, so it leaves the open chunk's window exactly
        // when it reaches the window's end.
        let crosses_window = !self.open.is_empty() && t >= self.window_end;
        if self.open.len() >= HEAD_CHUNK_SAMPLES || crosses_window {
            self.close_open();
        }
        if self.open.is_empty() {
            self.window_end = window_end(t, block_duration);
        }
        self.open.append(t, v);
        self.last = Sample::new(t, v);
        Ok(Appended::New)
    }

    fn close_open(&mut self) {
        if self.open.is_empty() {
            return;
        }
        CLOSE_SCRATCH.with(|scratch| {
            let (samples, bytes) = &mut *scratch.borrow_mut();
            samples.clear();
            // Our own streams always decode; a failure would leave samples out, not panic.
            let _ = self.open.decode_range_into(i64::MIN, i64::MAX, samples);
            if let Some(last) = samples.last() {
                bytes.clear();
                chunk::encode_into(samples, bytes);
                self.chunks.push(last.t, bytes);
            }
        });
        self.open = Appender::sized_like(&self.open);
        self.window_end = UNKNOWN_WINDOW;
    }

    /// Removes and returns every sample before `boundary`.
    pub fn take_before(&mut self, boundary: i64) -> Vec<Sample> {
        let mut out = Vec::new();
        self.chunks.take_before(boundary, &mut out);
        if self.open.first_t().is_some_and(|t| t < boundary) {
            let (before, after): (Vec<Sample>, Vec<Sample>) = self
                .open
                .samples()
                .into_iter()
                .partition(|s| s.t < boundary);
            out.extend(before);
            self.open = Appender::default();
            self.window_end = UNKNOWN_WINDOW;
            for s in after {
                self.open.append(s.t, s.v);
            }
        }
        if let Some(late) = self.ooo.as_deref_mut() {
            if late.first().is_some_and(|s| s.t < boundary) {
                let split = late.partition_point(|s| s.t < boundary);
                out.extend(late.drain(..split));
                out.sort_by_key(|s| s.t);
                out.dedup_by_key(|s| s.t);
            }
            if late.is_empty() {
                self.ooo = None;
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.open.is_empty() && self.ooo.is_none() && self.hist.is_none()
    }

    pub fn time_range(&self) -> Option<(i64, i64)> {
        let mut min = i64::MAX;
        let mut max = i64::MIN;
        if let Some((a, b)) = self.chunks.time_range() {
            min = min.min(a);
            max = max.max(b);
        }
        if let (Some(a), Some(b)) = (self.open.first_t(), self.open.last_t()) {
            min = min.min(a);
            max = max.max(b);
        }
        for s in self.ooo.as_deref().into_iter().flatten() {
            min = min.min(s.t);
            max = max.max(s.t);
        }
        if let Some((a, b)) = self.hist.as_deref().and_then(HeadHistograms::time_range) {
            min = min.min(a);
            max = max.max(b);
        }
        (min <= max).then_some((min, max))
    }

    pub fn num_chunks(&self) -> usize {
        self.chunks.len() + usize::from(!self.open.is_empty())
    }
}

/// Whether two histograms are the same sample: equal fields, NaN sums included (a stale
/// marker written twice is unchanged, not a duplicate).
fn same_histogram(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    a == b
        || (a.sum.to_bits() == b.sum.to_bits() && {
            let mut x = a.clone();
            x.sum = b.sum;
            x == *b
        })
}

pub type SeriesRef = Arc<Series>;

/// One shard of the series map, by series key.
#[derive(Default)]
struct Shard {
    by_key: FxMap<SeriesKey, SeriesRef>,
    /// Further series under a key already in `by_key`: only ever filled if two label sets'
    /// keys agree, found when a series is created from owned labels.
    collided: FxMap<SeriesKey, Vec<SeriesRef>>,
}

impl Shard {
    fn find(&self, key: SeriesKey, eq: impl Fn(&SeriesLabels) -> bool) -> Option<&SeriesRef> {
        let first = self.by_key.get(&key)?;
        if eq(&first.labels) {
            return Some(first);
        }
        self.collided.get(&key)?.iter().find(|s| eq(&s.labels))
    }

    fn insert(&mut self, key: SeriesKey, s: SeriesRef) {
        match self.by_key.entry(key) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(s);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collided.entry(key).or_default().push(s);
            }
        }
    }

    fn remove(&mut self, key: SeriesKey, id: u32) {
        let in_first = self.by_key.get(&key).is_some_and(|s| s.id == id);
        let more = self.collided.get_mut(&key);
        match (in_first, more) {
            (true, Some(more)) => {
                // Promote a collided series to the first slot.
                if let Some(next) = more.pop() {
                    self.by_key.insert(key, next);
                }
                if more.is_empty() {
                    self.collided.remove(&key);
                }
            }
            (true, None) => {
                self.by_key.remove(&key);
            }
            (false, Some(more)) => {
                more.retain(|s| s.id != id);
                if more.is_empty() {
                    self.collided.remove(&key);
                }
            }
            (false, None) => {}
        }
    }
}

pub struct Head {
    shards: Vec<RwLock<Shard>>,
    series: RwLock<Vec<Option<SeriesRef>>>,
    postings: RwLock<Postings>,
    symbols: Symbols,
    keyer: Keyer,
    /// Series in label order, for reads (see `head_read.rs`).
    order: read::LabelOrder,
    pub min_t: AtomicI64,
    pub max_t: AtomicI64,
    pub num_series: AtomicU64,
}

impl Head {
    pub fn new() -> Self {
        Head {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            series: RwLock::default(),
            postings: RwLock::default(),
            symbols: Symbols::default(),
            keyer: Keyer::default(),
            order: read::LabelOrder::default(),
            min_t: AtomicI64::new(i64::MAX),
            max_t: AtomicI64::new(i64::MIN),
            num_series: AtomicU64::new(0),
        }
    }

    fn shard_index(key: SeriesKey) -> usize {
        (key.1 >> 58) as usize % SHARDS
    }

    fn shard(&self, key: SeriesKey) -> &RwLock<Shard> {
        &self.shards[Self::shard_index(key)]
    }

    /// The live series with exactly these labels, if any.
    pub fn lookup(&self, labels: &Labels) -> Option<(u32, SeriesRef)> {
        let key = self.keyer.key_labels(labels);
        let shard = self.shard(key).read();
        let s = shard.find(key, |l| l.eq_labels(labels))?;
        Some((s.id, s.clone()))
    }

    /// The live series whose labels are exactly `pairs`, which must be normalised (sorted
    /// by name, names unique, no empty value: `RawSeries::is_normalised`). Found by its key
    /// alone (see [`SeriesKey`]), unless that key is known to be shared.
    pub fn lookup_pairs(&self, pairs: &[(&str, &str)]) -> Option<SeriesRef> {
        let key = self.keyer.key(pairs.iter().copied());
        let shard = self.shard(key).read();
        if shard.collided.contains_key(&key) {
            return shard.find(key, |l| l.eq_pairs(pairs)).cloned();
        }
        shard.by_key.get(&key).cloned()
    }

    /// [`Self::lookup_pairs`] for a batch (`None` entries are skipped): keys first, then
    /// each shard read-locked once for all of its keys, so that the lookups' cache misses
    /// overlap instead of each waiting behind its own lock acquisition.
    pub fn lookup_many(&self, batch: &[Option<&[(&str, &str)]>]) -> Vec<Option<SeriesRef>> {
        let mut keyed: Vec<(usize, usize, SeriesKey)> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, pairs)| {
                let key = self.keyer.key(pairs.as_ref()?.iter().copied());
                Some((Self::shard_index(key), i, key))
            })
            .collect();
        keyed.sort_unstable_by_key(|&(shard, i, _)| (shard, i));
        let mut out = vec![None; batch.len()];
        for group in keyed.chunk_by(|a, b| a.0 == b.0) {
            let shard = self.shards[group[0].0].read();
            for &(_, i, key) in group {
                out[i] = match batch[i] {
                    Some(pairs) if shard.collided.contains_key(&key) => {
                        shard.find(key, |l| l.eq_pairs(pairs)).cloned()
                    }
                    _ => shard.by_key.get(&key).cloned(),
                };
            }
        }
        out
    }

    /// The series for `labels`, created when missing; `on_create` runs (under the creation
    /// lock) before any other appender can see a new series, so its WAL record comes first.
    pub fn get_or_create(
        &self,
        labels: &Labels,
        on_create: impl FnOnce(u32, &Labels),
    ) -> (u32, SeriesRef, bool) {
        let key = self.keyer.key_labels(labels);
        if let Some(s) = self.shard(key).read().find(key, |l| l.eq_labels(labels)) {
            return (s.id, s.clone(), false);
        }
        let mut shard = self.shard(key).write();
        if let Some(s) = shard.find(key, |l| l.eq_labels(labels)) {
            return (s.id, s.clone(), false);
        }
        let interned = self.symbols.intern(labels);
        let s = {
            let mut series = self.series.write();
            let s: SeriesRef = Arc::new(Series {
                id: series.len() as u32,
                labels: interned,
                tail: AtomicUsize::new(0),
                inner: Mutex::new(MemSeries::new()),
            });
            series.push(Some(s.clone()));
            s
        };
        on_create(s.id, labels);
        self.postings.write().add(s.id, labels);
        shard.insert(key, s.clone());
        self.num_series.fetch_add(1, Ordering::Relaxed);
        (s.id, s, true)
    }

    pub fn note_times(&self, min: i64, max: i64) {
        if min <= max {
            self.min_t.fetch_min(min, Ordering::Relaxed);
            self.max_t.fetch_max(max, Ordering::Relaxed);
        }
    }

    pub fn select_ids(&self, matchers: &[LabelMatcher]) -> RoaringBitmap {
        self.postings.read().select(matchers)
    }

    pub fn get(&self, id: u32) -> Option<SeriesRef> {
        self.series.read().get(id as usize)?.clone()
    }

    pub fn label_values(&self, name: &str, ids: &RoaringBitmap) -> Vec<String> {
        self.postings.read().values_within(name, ids)
    }

    pub fn label_names(&self, ids: &RoaringBitmap) -> Vec<String> {
        self.postings.read().names_within(ids)
    }

    /// Every live series with its id.
    pub fn all_series(&self) -> Vec<(u32, SeriesRef)> {
        self.series
            .read()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i as u32, s.clone()?)))
            .collect()
    }

    /// Drops series that hold no samples; returns how many.
    pub fn gc(&self) -> usize {
        let mut removed = 0;
        for (id, s) in self.all_series() {
            let mut guard = s.lock();
            if !guard.is_empty() {
                continue;
            }
            guard.removed = true;
            let labels = s.labels();
            let key = self.keyer.key_labels(&labels);
            self.shard(key).write().remove(key, id);
            self.postings.write().remove(id, &labels);
            self.series.write()[id as usize] = None;
            self.num_series.fetch_sub(1, Ordering::Relaxed);
            removed += 1;
        }
        if removed > 0 {
            self.symbols.sweep();
        }
        self.recompute_time_range();
        removed
    }

    pub fn recompute_time_range(&self) {
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        for (_, s) in self.all_series() {
            if let Some((a, b)) = s.lock().time_range() {
                min = min.min(a);
                max = max.max(b);
            }
        }
        self.min_t.store(min, Ordering::Relaxed);
        self.max_t.store(max, Ordering::Relaxed);
    }

    pub fn num_chunks(&self) -> u64 {
        self.all_series()
            .iter()
            .map(|(_, s)| s.lock().num_chunks() as u64)
            .sum()
    }

    /// Native-histogram samples in the head.
    pub fn num_histograms(&self) -> u64 {
        self.all_series()
            .iter()
            .map(|(_, s)| s.lock().num_histograms() as u64)
            .sum()
    }

    /// The head's cardinality as Prometheus's `/api/v1/status/tsdb` reports it, with the
    /// `limit` largest entries of each list.
    pub fn cardinality(&self, limit: usize) -> HeadCardinality {
        let mut by_metric = Vec::new();
        let mut values_by_name: HashMap<String, (u64, u64)> = HashMap::new();
        let mut pairs = Vec::new();
        let mut num_label_pairs = 0;
        self.postings.read().for_each_pair(|name, value, series| {
            if series == 0 {
                return;
            }
            num_label_pairs += 1;
            if name == "__name__" {
                by_metric.push((value.to_string(), series));
            }
            let e = values_by_name.entry(name.to_string()).or_default();
            e.0 += 1;
            e.1 += value.len() as u64 * series;
            pairs.push((format!("{name}={value}"), series));
        });
        let (value_counts, memory): (Vec<_>, Vec<_>) = values_by_name
            .into_iter()
            .map(|(n, (values, bytes))| ((n.clone(), values), (n, bytes)))
            .unzip();
        HeadCardinality {
            num_series: self.num_series.load(Ordering::Relaxed),
            num_label_pairs,
            chunk_count: self.num_chunks(),
            min_time: self.min_t.load(Ordering::Relaxed),
            max_time: self.max_t.load(Ordering::Relaxed),
            series_count_by_metric_name: top(by_metric, limit),
            label_value_count_by_label_name: top(value_counts, limit),
            memory_in_bytes_by_label_name: top(memory, limit),
            series_count_by_label_value_pair: top(pairs, limit),
        }
    }
}

fn top(mut v: Vec<(String, u64)>, limit: usize) -> Vec<(String, u64)> {
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(limit);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A series is found from the pairs a request carries exactly when it is found from
    /// its `Labels`: many series sharing most pairs, pairs that differ only in where the
    /// name ends, and label sets that are a prefix of another.
    #[test]
    fn lookup_by_pairs_finds_what_lookup_by_labels_finds() {
        let head = Head::new();
        let sets: Vec<Vec<(String, String)>> = (0..300)
            .map(|i| {
                let mut v = vec![
                    ("__name__".to_string(), "up".to_string()),
                    ("instance".to_string(), format!("10.0.0.{}:9100", i % 50)),
                    ("job".to_string(), "node".to_string()),
                ];
                match i % 3 {
                    0 => {}
                    1 => v.push(("mode".to_string(), format!("m{}", i % 7))),
                    _ => v.push(("mod".to_string(), format!("em{}", i % 7))),
                }
                v
            })
            .collect();
        fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
            v.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
        }
        let mut made = Vec::new();
        for (i, set) in sets.iter().enumerate().filter(|(i, _)| i % 4 != 3) {
            let labels = Labels::from_pairs(pairs(set));
            let (_, s, created) = head.get_or_create(&labels, |_, _| {});
            made.push((i, s, created));
        }
        for (i, set) in sets.iter().enumerate() {
            let labels = Labels::from_pairs(pairs(set));
            let by_labels = head.lookup(&labels).map(|(_, s)| s);
            let by_pairs = head.lookup_pairs(&pairs(set));
            match (&by_labels, &by_pairs) {
                (Some(a), Some(b)) => assert!(Arc::ptr_eq(a, b), "set {i}"),
                (None, None) => {}
                _ => panic!(
                    "set {i}: by labels {:?}, by pairs {:?}",
                    by_labels.is_some(),
                    by_pairs.is_some()
                ),
            }
            let held = made.iter().any(|(j, _, _)| sets[*j] == *set);
            assert_eq!(by_pairs.is_some(), held, "set {i}");
        }
        // The batched lookup finds the same series, in the batch's order, skipping `None`s.
        let owned: Vec<Vec<(&str, &str)>> = sets.iter().map(|s| pairs(s)).collect();
        let batch: Vec<Option<&[(&str, &str)]>> = owned
            .iter()
            .enumerate()
            .map(|(i, p)| (i % 5 != 4).then_some(p.as_slice()))
            .collect();
        let many = head.lookup_many(&batch);
        assert_eq!(many.len(), batch.len());
        for (i, got) in many.iter().enumerate() {
            let want = batch[i].and_then(|p| head.lookup_pairs(p));
            match (got, &want) {
                (Some(a), Some(b)) => assert!(Arc::ptr_eq(a, b), "batch {i}"),
                (None, None) => {}
                _ => panic!(
                    "batch {i}: {:?} against {:?}",
                    got.is_some(),
                    want.is_some()
                ),
            }
        }
        // `mod="em1"` and `mode="m1"` are the same bytes in a row; neither finds the other.
        let mode = [("__name__", "up"), ("mode", "m1")];
        head.get_or_create(&Labels::from_pairs(mode), |_, _| {});
        assert!(head.lookup_pairs(&mode).is_some());
        assert!(head
            .lookup_pairs(&[("__name__", "up"), ("mod", "em1")])
            .is_none());
        // One series per distinct set (sets without `mode` repeat), and the `mode` one.
        let distinct: std::collections::HashSet<&Vec<(String, String)>> =
            made.iter().map(|(j, _, _)| &sets[*j]).collect();
        let created = made.iter().filter(|m| m.2).count();
        assert!(distinct.len() < made.len());
        assert_eq!(created, distinct.len());
        assert_eq!(
            head.num_series.load(Ordering::Relaxed) as usize,
            created + 1
        );
    }

    /// A head holds one `Series` per series (in an `Arc`: 16 bytes more, then the
    /// allocator's rounding to 16): its size is most of a series' fixed cost. 216 bytes keep
    /// the allocation at 240 with glibc's malloc; a field more costs every series 16.
    #[test]
    fn series_stay_small() {
        assert!(
            std::mem::size_of::<Series>() <= 216,
            "{}",
            std::mem::size_of::<Series>()
        );
    }

    #[test]
    fn cardinality_follows_the_series() {
        let head = Head::new();
        assert_eq!(head.cardinality(10).num_series, 0);
        for (name, job) in [("up", "a"), ("up", "b"), ("rpc", "a")] {
            let (_, s, _) = head.get_or_create(
                &Labels::from_pairs([("__name__", name), ("job", job)]),
                |_, _| {},
            );
            s.lock().append(1000, 1.0, 0, 7_200_000).unwrap();
            head.note_times(1000, 1000);
        }
        let c = head.cardinality(10);
        assert_eq!(c.num_series, 3);
        assert_eq!(c.num_label_pairs, 4);
        assert_eq!(c.chunk_count, 3);
        assert_eq!((c.min_time, c.max_time), (1000, 1000));
        assert_eq!(
            c.series_count_by_metric_name,
            vec![("up".into(), 2), ("rpc".into(), 1)]
        );
        assert_eq!(
            c.label_value_count_by_label_name,
            vec![("__name__".into(), 2), ("job".into(), 2)]
        );
        // __name__: "up" (2 bytes) x 2 series + "rpc" (3) x 1; job: "a" x 2 + "b" x 1.
        assert_eq!(
            c.memory_in_bytes_by_label_name,
            vec![("__name__".into(), 7), ("job".into(), 3)]
        );
        assert_eq!(
            c.series_count_by_label_value_pair[0],
            ("__name__=up".into(), 2)
        );
        assert_eq!(
            head.cardinality(1).series_count_by_label_value_pair.len(),
            1
        );
    }

    #[test]
    fn series_spread_over_the_shards() {
        let head = Head::new();
        let mut per_shard = [0usize; SHARDS];
        for i in 0..4000 {
            let l = Labels::from_pairs([("__name__", "m"), ("i", i.to_string().as_str())]);
            let key = head.keyer.key_labels(&l);
            let shard = head.shard(key);
            per_shard[head
                .shards
                .iter()
                .position(|s| std::ptr::eq(s, shard))
                .unwrap()] += 1;
        }
        assert!(per_shard.iter().all(|n| *n > 60), "{per_shard:?}");
    }

    #[test]
    fn series_append_rules() {
        let mut s = MemSeries::new();
        let bd = 7_200_000;
        assert!(matches!(s.append(1000, 1.0, 0, bd), Ok(Appended::New)));
        assert!(matches!(
            s.append(1000, 1.0, 0, bd),
            Ok(Appended::Unchanged)
        ));
        assert_eq!(
            s.append(1000, 2.0, 0, bd).err(),
            Some(RejectReason::Duplicate)
        );
        assert_eq!(
            s.append(500, 2.0, 0, bd).err(),
            Some(RejectReason::OutOfOrder)
        );
        assert!(matches!(s.append(500, 2.0, 600, bd), Ok(Appended::New)));
        assert!(matches!(s.append(2000, 3.0, 600, bd), Ok(Appended::New)));
        let got: Vec<i64> = s.samples_in(0, 10_000).iter().map(|x| x.t).collect();
        assert_eq!(got, vec![500, 1000, 2000]);
        let before = s.take_before(1500);
        assert_eq!(
            before.iter().map(|x| x.t).collect::<Vec<_>>(),
            vec![500, 1000]
        );
        assert_eq!(s.samples_in(0, 10_000).len(), 1);
        assert!(
            s.ooo.is_none(),
            "no late sample left: nothing held for them"
        );
    }

    proptest::proptest! {
        /// Whatever the times and values, a series gives back exactly what was appended, for
        /// any range, before and after a cut at any boundary, across many closed chunks.
        #[test]
        fn reads_and_cuts_give_back_what_was_appended(
            steps in proptest::collection::vec((1i64..400, 0u8..4, -10_000i64..10_000), 1..900),
            ranges in proptest::collection::vec((-100i64..40_000, 0i64..20_000), 1..8),
            pick in 0usize..1000,
            shift in -1i64..=1,
        ) {
            let mut s = MemSeries::new();
            let mut want = Vec::new();
            let mut t = -50;
            for (dt, kind, x) in steps {
                t += dt;
                let v = match kind {
                    0 => x as f64,
                    1 => x as f64 / 100.0,
                    2 => x as f64 / 7.0,
                    _ => f64::from_bits((x as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                };
                proptest::prop_assert!(matches!(s.append(t, v, 0, 1000), Ok(Appended::New)));
                want.push(Sample::new(t, v));
            }
            let bits = |v: &[Sample]| v.iter().map(|x| (x.t, x.v.to_bits())).collect::<Vec<_>>();
            proptest::prop_assert!(s.chunks.iter().all(|c| c.min_t / 1000 == c.max_t / 1000));
            for (mint, len) in ranges {
                let maxt = mint + len;
                let exp: Vec<Sample> =
                    want.iter().filter(|x| x.t >= mint && x.t <= maxt).copied().collect();
                proptest::prop_assert_eq!(bits(&s.samples_in(mint, maxt)), bits(&exp));
                proptest::prop_assert_eq!(s.has_data_in(mint, maxt), !exp.is_empty() || s
                    .chunks.overlapping(mint, maxt).next().is_some());
            }
            proptest::prop_assert_eq!(
                s.time_range(),
                Some((want[0].t, want[want.len() - 1].t))
            );
            // A cut at, just before or just after a sample's time: chunk edges included.
            let boundary = want[pick % want.len()].t + shift;
            let before = s.take_before(boundary);
            let split = want.partition_point(|x| x.t < boundary);
            proptest::prop_assert_eq!(bits(&before), bits(&want[..split]));
            proptest::prop_assert_eq!(bits(&s.samples_in(i64::MIN, i64::MAX)), bits(&want[split..]));
            proptest::prop_assert_eq!(s.is_empty(), split == want.len());
        }
    }

    #[test]
    fn chunks_close_at_size_and_window() {
        let mut s = MemSeries::new();
        for i in 0..300 {
            s.append(i * 10, i as f64, 0, 1000).unwrap_or(Appended::New);
        }
        assert!(s.chunks.iter().all(|c| c.min_t / 1000 == c.max_t / 1000));
        assert_eq!(s.samples_in(0, 3000).len(), 300);
    }

    #[test]
    fn chunks_keep_to_windows_after_a_cut() {
        let mut s = MemSeries::new();
        for i in 0..95 {
            s.append(i * 10, i as f64, 0, 1000).unwrap_or(Appended::New);
        }
        // The cut leaves the open chunk holding 900..940, in window [0, 1000).
        assert_eq!(s.take_before(900).len(), 90);
        for i in 95..250 {
            s.append(i * 10, i as f64, 0, 1000).unwrap_or(Appended::New);
        }
        s.close_open();
        assert!(s.chunks.iter().all(|c| c.min_t / 1000 == c.max_t / 1000));
        assert_eq!(s.samples_in(0, 3000).len(), 160);
    }
}
