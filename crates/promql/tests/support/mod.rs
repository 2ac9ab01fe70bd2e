//! Test support: an in-memory `MetricReader` and the PromQL test-script runner.
#![allow(dead_code)]

pub mod held;
pub mod script;
pub mod series;

use std::collections::BTreeMap;

use std::sync::Arc;

use meshlens_model::{
    FloatHistogram, HistogramSample, LabelMatcher, Labels, MaterializedCursor, MetricMetadata,
    MetricReader, Sample, SeriesCursor, SeriesSamples, StorageError,
};

/// Series held in memory, sorted by labels; samples sorted by time. A series' float and
/// native-histogram samples are kept apart, as a store hands them out.
#[derive(Default)]
pub struct MemStore {
    pub series: BTreeMap<Labels, Vec<Sample>>,
    pub histograms: BTreeMap<Labels, Vec<HistogramSample>>,
    /// Start timestamps by series and sample time, for the samples that have one
    /// (promqltest's `metric@st` lines).
    pub start_times: BTreeMap<Labels, BTreeMap<i64, i64>>,
}

impl MemStore {
    /// A histogram sample; it replaces a float or histogram at the same time.
    pub fn add_histogram(&mut self, labels: Labels, t: i64, h: FloatHistogram) {
        if let Some(s) = self.series.get_mut(&labels) {
            s.retain(|x| x.t != t);
        }
        let s = self.histograms.entry(labels).or_default();
        let h = Arc::new(h);
        match s.binary_search_by_key(&t, |x| x.t) {
            Ok(i) => s[i].h = h,
            Err(i) => s.insert(i, HistogramSample { t, h }),
        }
    }

    /// The start timestamp of the sample (float or histogram) at `t`.
    pub fn set_start_time(&mut self, labels: Labels, t: i64, st: i64) {
        self.start_times.entry(labels).or_default().insert(t, st);
    }

    pub fn add(&mut self, labels: Labels, t: i64, v: f64) {
        let s = self.series.entry(labels).or_default();
        match s.binary_search_by_key(&t, |x| x.t) {
            Ok(i) => s[i].v = v,
            Err(i) => s.insert(i, Sample::new(t, v)),
        }
    }

    /// Every series (float, histogram or both) matching `m`, in label order.
    fn matching(&self, m: &[LabelMatcher]) -> Vec<&Labels> {
        let mut all: Vec<&Labels> = self.series.keys().chain(self.histograms.keys()).collect();
        all.sort();
        all.dedup();
        all.retain(|l| m.iter().all(|x| x.matches(l.get(&x.name).unwrap_or(""))));
        all
    }
}

/// The counter-reset hints Prometheus's TSDB gives histograms read back: gauge histograms
/// stay gauges; a counter histogram that starts a chunk reads as unknown (even where the
/// chunk was cut for a counter reset: Prometheus cannot know the previous chunk was read),
/// every later one in the chunk as no reset. A chunk is cut at the series' first sample, at
/// a counter reset, at a switch from gauge to counter and where the schema, the zero
/// threshold or the custom bounds change.
fn with_hints(samples: &[HistogramSample]) -> Vec<HistogramSample> {
    use meshlens_model::CounterResetHint as Hint;
    let mut out: Vec<HistogramSample> = Vec::with_capacity(samples.len());
    for (i, x) in samples.iter().enumerate() {
        if x.h.counter_reset_hint == Hint::Gauge {
            out.push(x.clone());
            continue;
        }
        let new_chunk = match i.checked_sub(1).map(|j| &samples[j].h) {
            None => true,
            Some(prev) => {
                prev.counter_reset_hint == Hint::Gauge
                    || prev.schema != x.h.schema
                    || prev.zero_threshold != x.h.zero_threshold
                    || prev.custom_values != x.h.custom_values
                    || x.h.detect_reset(prev)
            }
        };
        let hint = if new_chunk {
            Hint::Unknown
        } else {
            Hint::NotCounterReset
        };
        let mut h = (*x.h).clone();
        h.counter_reset_hint = hint;
        out.push(HistogramSample {
            t: x.t,
            h: Arc::new(h),
        });
    }
    out
}

/// A series read back with the start timestamps of its samples (0 where one has none).
struct StCursor {
    inner: MaterializedCursor,
    floats: Vec<i64>,
    hists: Vec<i64>,
}

impl SeriesCursor for StCursor {
    fn labels(&self) -> &Labels {
        self.inner.labels()
    }

    fn decode_into(&self, buf: &mut Vec<Sample>) -> Result<usize, StorageError> {
        self.inner.decode_into(buf)
    }

    fn histograms(&self) -> &[HistogramSample] {
        self.inner.histograms()
    }

    fn decode_start_times_into(&self, buf: &mut Vec<i64>) -> Result<usize, StorageError> {
        buf.extend_from_slice(&self.floats);
        Ok(self.floats.len())
    }

    fn histogram_start_times(&self) -> &[i64] {
        &self.hists
    }
}

impl MetricReader for MemStore {
    /// Series with start timestamps come with them; the others as `select` gives them.
    fn select_lazy<'a>(
        &'a self,
        m: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Box<dyn SeriesCursor + 'a>>, StorageError> {
        Ok(self
            .select(m, mint, maxt)?
            .into_iter()
            .map(|s| match self.start_times.get(&s.labels) {
                Some(sts) => {
                    let st = |t: i64| sts.get(&t).copied().unwrap_or(0);
                    let floats = s.samples.iter().map(|x| st(x.t)).collect();
                    let hists = s.histograms.iter().map(|x| st(x.t)).collect();
                    Box::new(StCursor {
                        inner: MaterializedCursor(s),
                        floats,
                        hists,
                    }) as Box<dyn SeriesCursor + 'a>
                }
                None => Box::new(MaterializedCursor(s)) as Box<dyn SeriesCursor + 'a>,
            })
            .collect())
    }

    fn select(
        &self,
        m: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        Ok(self
            .matching(m)
            .into_iter()
            .map(|l| SeriesSamples {
                labels: l.clone(),
                samples: self.series.get(l).map_or_else(Vec::new, |s| {
                    s.iter()
                        .filter(|x| x.t >= mint && x.t <= maxt)
                        .copied()
                        .collect()
                }),
                histograms: self.histograms.get(l).map_or_else(Vec::new, |s| {
                    with_hints(s)
                        .into_iter()
                        .filter(|x| x.t >= mint && x.t <= maxt)
                        .collect()
                }),
            })
            .filter(|s| !s.samples.is_empty() || !s.histograms.is_empty())
            .collect())
    }

    fn series(
        &self,
        m: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        Ok(self
            .select(m, mint, maxt)?
            .into_iter()
            .map(|s| s.labels)
            .collect())
    }

    fn label_names(&self, m: &[LabelMatcher], _: i64, _: i64) -> Result<Vec<String>, StorageError> {
        let mut v: Vec<String> = self
            .matching(m)
            .into_iter()
            .flat_map(|l| l.iter().map(|x| x.name.clone()))
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    fn label_values(
        &self,
        name: &str,
        m: &[LabelMatcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut v: Vec<String> = self
            .matching(m)
            .into_iter()
            .filter_map(|l| l.get(name).map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    fn metadata(&self, _: Option<&str>) -> Result<Vec<MetricMetadata>, StorageError> {
        Ok(Vec::new())
    }
}
