//! From decoded OTLP metrics to Prometheus series (see the module table for the rules).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use meshlens_model::histogram::{EXPONENTIAL_SCHEMA_MAX, EXPONENTIAL_SCHEMA_MIN};
use meshlens_model::{
    BucketSpan, CounterResetHint, FloatHistogram, HistogramSample, Labels, MetricMetadata, Sample,
    SeriesHistograms, TimeSeries, METRIC_NAME, STALE_NAN,
};

use super::names::{label_name, metric_name, Kind};
use super::{
    Data, ExponentialBuckets, ExponentialHistogramPoint, ExportMetrics, HistogramPoint, Metric,
    NumberPoint, ResourceMetrics, SummaryPoint, TextAttrs, FLAG_NO_RECORDED_VALUE,
    TEMPORALITY_CUMULATIVE, TEMPORALITY_DELTA,
};

/// `target_info` gets a sample every half lookback delta (Prometheus's default 5m) between
/// the resource's earliest and latest data point, so it is found over the whole span.
const TARGET_INFO_STEP_MS: i64 = 150_000;
/// At most this many `target_info` samples per resource (the latest ones): a request with a
/// zero or ancient timestamp must not become millions of samples.
const TARGET_INFO_MAX_SAMPLES: i64 = 1_000;

/// The zero threshold Prometheus gives every histogram converted from OTLP (it does not use
/// the data point's `zero_threshold`).
const DEFAULT_ZERO_THRESHOLD: f64 = 1e-128;

/// How the translation is configured (the server's flags).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Resource attributes copied onto every series of that resource, as labels
    /// (`--otlp.promote-resource-attributes`).
    pub promote_resource_attributes: Vec<String>,
    /// `created-timestamp-zero-ingestion`: a zero at a data point's start time before it,
    /// for monotonic sums, histograms (float and exponential) and summaries' `_count` and
    /// `_sum` (see [`crate::created`]).
    pub created_timestamp_zero_ingestion: bool,
    /// Keep the same start times as created timestamps ([`Translated::series_created`]):
    /// an agent forwards them in remote write 2.0 for its hubs to decide on zeros.
    pub forward_created_timestamps: bool,
}

/// What a request translated to: float series and native-histogram series (samples in time
/// order), metadata per metric, and the refused data points with the first reason.
#[derive(Debug, Default)]
pub struct Translated {
    pub series: Vec<TimeSeries>,
    /// Exponential histograms as native histograms.
    pub histograms: Vec<SeriesHistograms>,
    pub metadata: Vec<MetricMetadata>,
    /// With [`Settings::created_timestamp_zero_ingestion`]: one entry per float series,
    /// aligned with `series`, the zero to store before its first sample; empty without.
    pub series_zeros: Vec<Option<Sample>>,
    /// With [`Settings::created_timestamp_zero_ingestion`]: the zeros of the histogram
    /// series, one sample each.
    pub histogram_zeros: Vec<SeriesHistograms>,
    /// With [`Settings::forward_created_timestamps`]: one entry per float series, aligned
    /// with `series`, the start time (ms) of its earliest point that has one (0: none),
    /// the created timestamp from which a receiver's zero would come; empty without.
    pub series_created: Vec<i64>,
    /// The same per histogram series, aligned with `histograms`.
    pub histograms_created: Vec<i64>,
    pub rejected: u64,
    pub first_rejection: Option<String>,
}

impl Translated {
    fn reject(&mut self, n: u64, why: impl FnOnce() -> String) {
        self.rejected += n;
        if self.first_rejection.is_none() && n > 0 {
            self.first_rejection = Some(why());
        }
    }

    /// The partial-success message: the first reason, and the total when there were more.
    pub fn message(&self) -> String {
        match &self.first_rejection {
            Some(first) if self.rejected > 1 => {
                format!("{first} ({} data points refused in all)", self.rejected)
            }
            Some(first) => first.clone(),
            None => String::new(),
        }
    }
}

/// Series under construction, keyed by their labels.
#[derive(Default)]
struct Builder {
    index: HashMap<Labels, usize>,
    histogram_index: HashMap<Labels, usize>,
    /// Whether start times become zeros ([`Settings::created_timestamp_zero_ingestion`]).
    created_zeros: bool,
    /// Whether start times are noted at all (for zeros, or to forward them).
    note_starts: bool,
    /// Per float series index: the start time (ms) of its earliest point that has one.
    starts: HashMap<usize, (i64, i64)>,
    /// The same per histogram series index.
    histogram_starts: HashMap<usize, (i64, i64)>,
    out: Translated,
}

/// Keeps the start time of the earliest point: a series' zero goes before its first
/// sample, and one between two samples of the same request would be out of order there.
fn note_start(starts: &mut HashMap<usize, (i64, i64)>, i: usize, t: i64, start: i64) {
    let e = starts.entry(i).or_insert((t, start));
    if t < e.0 {
        *e = (t, start);
    }
}

impl Builder {
    /// [`Self::add`], with the point's start time noted for its created-timestamp zero
    /// when those are on and the point has a value.
    fn add_started(&mut self, labels: Labels, t: i64, v: f64, start_ns: u64, flags: u32) {
        let i = self.add(labels, t, v);
        if self.note_starts && start_ns != 0 && flags & FLAG_NO_RECORDED_VALUE == 0 {
            note_start(&mut self.starts, i, t, millis(start_ns));
        }
    }

    fn add(&mut self, labels: Labels, t: i64, v: f64) -> usize {
        let i = match self.index.get(&labels) {
            Some(&i) => i,
            None => {
                self.out.series.push(TimeSeries {
                    labels: labels.clone(),
                    samples: Vec::new(),
                });
                self.index.insert(labels, self.out.series.len() - 1);
                self.out.series.len() - 1
            }
        };
        self.out.series[i].samples.push(Sample::new(t, v));
        i
    }

    fn add_histogram(&mut self, labels: Labels, t: i64, h: FloatHistogram) -> usize {
        let i = match self.histogram_index.get(&labels) {
            Some(&i) => i,
            None => {
                self.out.histograms.push(SeriesHistograms {
                    labels: labels.clone(),
                    samples: Vec::new(),
                });
                self.histogram_index
                    .insert(labels, self.out.histograms.len() - 1);
                self.out.histograms.len() - 1
            }
        };
        self.out.histograms[i]
            .samples
            .push(HistogramSample { t, h: Arc::new(h) });
        i
    }

    /// Each series' created timestamp, for [`Settings::forward_created_timestamps`].
    fn created_timestamps(&mut self) {
        let start = |starts: &HashMap<usize, (i64, i64)>, i| starts.get(&i).map_or(0, |s| s.1);
        self.out.series_created = (0..self.out.series.len())
            .map(|i| start(&self.starts, i))
            .collect();
        self.out.histograms_created = (0..self.out.histograms.len())
            .map(|i| start(&self.histogram_starts, i))
            .collect();
    }

    /// The zeros of the series whose earliest point had a start time before it; called
    /// once the samples are sorted.
    fn created_zeros(&mut self) {
        if !self.created_zeros {
            return;
        }
        let out = &mut self.out;
        out.series_zeros = out
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (_, start) = *self.starts.get(&i)?;
                crate::created::float_zero(start, s.samples.first()?.t)
            })
            .collect();
        for (i, s) in out.histograms.iter().enumerate() {
            let zero = self
                .histogram_starts
                .get(&i)
                .and_then(|&(_, start)| crate::created::histogram_zero(start, s.samples.first()?));
            if let Some(zero) = zero {
                out.histogram_zeros.push(SeriesHistograms {
                    labels: s.labels.clone(),
                    samples: vec![zero],
                });
            }
        }
    }
}

/// What every series of one resource shares.
struct ResourceLabels {
    job: Option<String>,
    instance: Option<String>,
    promoted: Vec<(String, String)>,
}

fn resource_labels(r: &ResourceMetrics, settings: &Settings) -> ResourceLabels {
    let get = |k: &str| {
        r.attributes
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let job = get("service.name").map(|name| match get("service.namespace") {
        Some(ns) => format!("{ns}/{name}"),
        None => name,
    });
    let mut promoted: Vec<(String, String)> = r
        .attributes
        .iter()
        .filter(|(k, _)| settings.promote_resource_attributes.iter().any(|p| p == k))
        .cloned()
        .collect();
    promoted.sort_by(|a, b| a.0.cmp(&b.0));
    ResourceLabels {
        job,
        instance: get("service.instance.id"),
        promoted,
    }
}

/// Attributes as sanitized labels: keys sorted, values of keys that sanitize alike joined by
/// `;`. Errors name the attribute.
fn attribute_labels(attrs: &TextAttrs) -> Result<BTreeMap<String, String>, String> {
    let mut sorted: Vec<&(String, String)> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in sorted {
        let name = label_name(k).map_err(|e| format!("attribute {k:?}: {e}"))?;
        match out.get_mut(&name) {
            Some(existing) => {
                existing.push(';');
                existing.push_str(v);
            }
            None => {
                out.insert(name, v.clone());
            }
        }
    }
    Ok(out)
}

/// A data point's labels without `__name__`: its attributes, the promoted resource
/// attributes where not already set, then `job` and `instance`.
fn point_labels(
    attrs: &TextAttrs,
    res: &ResourceLabels,
) -> Result<BTreeMap<String, String>, String> {
    let mut l = attribute_labels(attrs)?;
    for (k, v) in &res.promoted {
        let name = label_name(k).map_err(|e| format!("resource attribute {k:?}: {e}"))?;
        l.entry(name).or_insert_with(|| v.clone());
    }
    if let Some(job) = &res.job {
        l.insert("job".into(), job.clone());
    }
    if let Some(instance) = &res.instance {
        l.insert("instance".into(), instance.clone());
    }
    Ok(l)
}

fn with_name(base: &BTreeMap<String, String>, name: &str, extra: Option<(&str, String)>) -> Labels {
    let mut pairs: Vec<(String, String)> =
        base.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some((k, v)) = extra {
        pairs.push((k.to_string(), v));
    }
    pairs.push((METRIC_NAME.to_string(), name.to_string()));
    Labels::from_pairs(pairs)
}

fn millis(ns: u64) -> i64 {
    (ns / 1_000_000) as i64
}

/// Formats a bound or quantile as Prometheus does (shortest, no exponent).
fn float_label(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    format!("{f}")
}

fn kind_of(m: &Metric) -> Option<Kind> {
    Some(match &m.data {
        Data::Missing => return None,
        Data::Gauge(_) => Kind::Gauge,
        Data::Sum {
            monotonic: true, ..
        } => Kind::MonotonicCounter,
        Data::Sum { .. } => Kind::NonMonotonicCounter,
        Data::Histogram { .. } => Kind::Histogram,
        Data::ExponentialHistogram { .. } => Kind::ExponentialHistogram,
        Data::Summary(_) => Kind::Summary,
    })
}

fn times(m: &Metric) -> Vec<u64> {
    match &m.data {
        Data::Missing => Vec::new(),
        Data::Gauge(p) | Data::Sum { points: p, .. } => p.iter().map(|p| p.time_ns).collect(),
        Data::Histogram { points, .. } => points.iter().map(|p| p.time_ns).collect(),
        Data::ExponentialHistogram { points, .. } => points.iter().map(|p| p.time_ns).collect(),
        Data::Summary(p) => p.iter().map(|p| p.time_ns).collect(),
    }
}

fn point_count(m: &Metric) -> usize {
    times(m).len()
}

/// Translates a request; what cannot be stored is counted and the first reason kept.
pub fn translate(req: &ExportMetrics, settings: &Settings) -> Translated {
    let mut b = Builder {
        created_zeros: settings.created_timestamp_zero_ingestion,
        note_starts: settings.created_timestamp_zero_ingestion
            || settings.forward_created_timestamps,
        ..Builder::default()
    };
    for (ri, r) in req.resources.iter().enumerate() {
        let res = resource_labels(r, settings);
        let (mut earliest, mut latest) = (u64::MAX, 0u64);
        for (si, s) in r.scopes.iter().enumerate() {
            for (mi, m) in s.metrics.iter().enumerate() {
                let path = || {
                    format!(
                        "resourceMetrics[{ri}].scopeMetrics[{si}].metrics[{mi}] ({:?})",
                        m.name
                    )
                };
                for t in times(m) {
                    earliest = earliest.min(t);
                    latest = latest.max(t);
                }
                translate_metric(&mut b, m, &res, &path);
            }
        }
        if earliest <= latest {
            target_info(&mut b, r, &res, millis(earliest), millis(latest));
        }
    }
    for s in &mut b.out.series {
        s.samples.sort_by_key(|s| s.t);
        // The same sample twice (target_info of two resources alike) is stored once.
        s.samples
            .dedup_by(|a, b| a.t == b.t && a.v.to_bits() == b.v.to_bits());
    }
    for s in &mut b.out.histograms {
        // Stable: two points at the same time stay in the order sent (storage keeps the first).
        s.samples.sort_by_key(|s| s.t);
    }
    b.created_zeros();
    if settings.forward_created_timestamps {
        b.created_timestamps();
    }
    b.out
}

fn translate_metric(b: &mut Builder, m: &Metric, res: &ResourceLabels, path: &dyn Fn() -> String) {
    let n = point_count(m) as u64;
    let Some(kind) = kind_of(m) else {
        return;
    };
    let temporality = match &m.data {
        Data::Sum { temporality, .. }
        | Data::Histogram { temporality, .. }
        | Data::ExponentialHistogram { temporality, .. } => Some(*temporality),
        _ => None,
    };
    match temporality {
        Some(TEMPORALITY_CUMULATIVE) | None => {}
        Some(t) => {
            let which = if t == TEMPORALITY_DELTA {
                "delta"
            } else {
                "unspecified"
            };
            b.out.reject(n, || {
                format!(
                    "{}.dataPoints[0]: {which} aggregation temporality is not supported; meshlens stores cumulative series only (configure the exporter for cumulative temporality)",
                    path()
                )
            });
            return;
        }
    }
    let name = match metric_name(&m.name, &m.unit, kind) {
        Ok(name) => name,
        Err(e) => {
            b.out.reject(n, || format!("{}.dataPoints[0]: {e}", path()));
            return;
        }
    };
    b.out.metadata.push(MetricMetadata {
        metric_family: name.clone(),
        kind: match kind {
            Kind::MonotonicCounter => "counter",
            Kind::Histogram | Kind::ExponentialHistogram => "histogram",
            Kind::Summary => "summary",
            _ => "gauge",
        }
        .into(),
        help: m.description.clone(),
        unit: m.unit.clone(),
    });
    match &m.data {
        Data::Gauge(points) | Data::Sum { points, .. } => {
            // Only a counter starts from zero; a gauge's start time says nothing of its value.
            let counter = kind == Kind::MonotonicCounter;
            for (pi, p) in points.iter().enumerate() {
                if let Err(e) = number_point(b, &name, p, res, counter) {
                    b.out
                        .reject(1, || format!("{}.dataPoints[{pi}]: {e}", path()));
                }
            }
        }
        Data::Histogram { points, .. } => {
            for (pi, p) in points.iter().enumerate() {
                if let Err(e) = histogram_point(b, &name, p, res) {
                    b.out
                        .reject(1, || format!("{}.dataPoints[{pi}]: {e}", path()));
                }
            }
        }
        Data::Summary(points) => {
            for (pi, p) in points.iter().enumerate() {
                if let Err(e) = summary_point(b, &name, p, res) {
                    b.out
                        .reject(1, || format!("{}.dataPoints[{pi}]: {e}", path()));
                }
            }
        }
        Data::ExponentialHistogram { points, .. } => {
            for (pi, p) in points.iter().enumerate() {
                if let Err(e) = exponential_point(b, &name, p, res) {
                    b.out
                        .reject(1, || format!("{}.dataPoints[{pi}]: {e}", path()));
                }
            }
        }
        Data::Missing => {}
    }
}

fn value_or_stale(flags: u32, v: f64) -> f64 {
    if flags & FLAG_NO_RECORDED_VALUE != 0 {
        STALE_NAN
    } else {
        v
    }
}

fn number_point(
    b: &mut Builder,
    name: &str,
    p: &NumberPoint,
    res: &ResourceLabels,
    counter: bool,
) -> Result<(), String> {
    let base = point_labels(&p.attributes, res)?;
    let (labels, t, v) = (
        with_name(&base, name, None),
        millis(p.time_ns),
        value_or_stale(p.flags, p.value),
    );
    if counter {
        b.add_started(labels, t, v, p.start_ns, p.flags);
    } else {
        b.add(labels, t, v);
    }
    Ok(())
}

fn histogram_point(
    b: &mut Builder,
    name: &str,
    p: &HistogramPoint,
    res: &ResourceLabels,
) -> Result<(), String> {
    if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.bounds.len() + 1 {
        return Err(format!(
            "histogram has {} bucket counts for {} explicit bounds (expected {})",
            p.bucket_counts.len(),
            p.bounds.len(),
            p.bounds.len() + 1
        ));
    }
    if let Some(i) = p
        .bounds
        .windows(2)
        .position(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less))
    {
        return Err(format!(
            "histogram explicit bounds are not increasing at index {}: {} then {}",
            i + 1,
            p.bounds[i],
            p.bounds[i + 1]
        ));
    }
    let total: u128 = p.bucket_counts.iter().map(|&c| u128::from(c)).sum();
    if !p.bucket_counts.is_empty() && total != u128::from(p.count) {
        return Err(format!(
            "histogram bucket counts add up to {total}, its count is {}",
            p.count
        ));
    }
    let base = point_labels(&p.attributes, res)?;
    let t = millis(p.time_ns);
    let v = |x: f64| value_or_stale(p.flags, x);
    let (start, flags) = (p.start_ns, p.flags);
    if let Some(sum) = p.sum {
        let labels = with_name(&base, &format!("{name}_sum"), None);
        b.add_started(labels, t, v(sum), start, flags);
    }
    let labels = with_name(&base, &format!("{name}_count"), None);
    b.add_started(labels, t, v(p.count as f64), start, flags);
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0u64;
    for (bound, c) in p.bounds.iter().zip(&p.bucket_counts) {
        cumulative = cumulative.saturating_add(*c);
        let labels = with_name(&base, &bucket, Some(("le", float_label(*bound))));
        b.add_started(labels, t, v(cumulative as f64), start, flags);
    }
    let labels = with_name(&base, &bucket, Some(("le", "+Inf".into())));
    b.add_started(labels, t, v(p.count as f64), start, flags);
    Ok(())
}

/// An exponential-histogram point as a native histogram, the way Prometheus 3's
/// `exponentialToNativeHistogram` builds it.
fn exponential_point(
    b: &mut Builder,
    name: &str,
    p: &ExponentialHistogramPoint,
    res: &ResourceLabels,
) -> Result<(), String> {
    if p.scale < EXPONENTIAL_SCHEMA_MIN {
        return Err(format!(
            "exponential histogram scale {} is below {EXPONENTIAL_SCHEMA_MIN}, the lowest native histogram schema",
            p.scale
        ));
    }
    // Prometheus writes a histogram whose sum and count are the staleness marker here. A
    // native-histogram staleness marker is not something meshlens's histogram storage and
    // queries recognise (it would be read as a histogram with a NaN sum), so the point is
    // skipped instead: no sample, and not counted as refused.
    if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
        return Ok(());
    }
    // Finer scales are merged down to schema 8: 2^scale_down OTLP buckets per bucket.
    let (schema, scale_down) = if p.scale > EXPONENTIAL_SCHEMA_MAX {
        (
            EXPONENTIAL_SCHEMA_MAX,
            p.scale.abs_diff(EXPONENTIAL_SCHEMA_MAX),
        )
    } else {
        (p.scale, 0)
    };
    let (positive_spans, positive_buckets) =
        buckets_layout(&p.positive, scale_down).map_err(|e| format!("positive buckets: {e}"))?;
    let (negative_spans, negative_buckets) =
        buckets_layout(&p.negative, scale_down).map_err(|e| format!("negative buckets: {e}"))?;
    // Prometheus's storage refuses a histogram whose buckets do not add up to its count (or,
    // with a NaN sum, exceed it); so is the point here.
    let in_buckets: u128 = p
        .positive
        .bucket_counts
        .iter()
        .chain(&p.negative.bucket_counts)
        .map(|&c| u128::from(c))
        .sum::<u128>()
        + u128::from(p.zero_count);
    let sum = p.sum.unwrap_or(0.0);
    let count = u128::from(p.count);
    if (sum.is_nan() && in_buckets > count) || (!sum.is_nan() && in_buckets != count) {
        return Err(format!(
            "exponential histogram has {in_buckets} observations in its buckets (zero bucket included), but its count is {}",
            p.count
        ));
    }
    let h = FloatHistogram {
        // Cumulative only (delta is refused before); OTLP has no gauge histograms, and a
        // reset cannot be told from the point alone: unknown, as Prometheus says.
        counter_reset_hint: CounterResetHint::Unknown,
        schema,
        zero_threshold: DEFAULT_ZERO_THRESHOLD,
        zero_count: p.zero_count as f64,
        count: p.count as f64,
        sum,
        positive_spans,
        negative_spans,
        positive_buckets,
        negative_buckets,
        custom_values: Vec::new(),
    };
    let base = point_labels(&p.attributes, res)?;
    let t = millis(p.time_ns);
    let i = b.add_histogram(with_name(&base, name, None), t, h);
    if b.note_starts && p.start_ns != 0 {
        note_start(&mut b.histogram_starts, i, t, millis(p.start_ns));
    }
    Ok(())
}

/// One side of an exponential histogram as Prometheus spans and absolute counts, as
/// Prometheus's `convertBucketsLayout` lays them out:
///
/// - OTLP bucket `i` covers `(base^i, base^(i+1)]`, Prometheus bucket `j` covers
///   `(base^(j-1), base^j]`: OTLP index `offset + i` becomes `(offset + i) >> scale_down`
///   (merging `2^scale_down` buckets; the shift floors, right for negative indices too), plus
///   one;
/// - the first span starts at the first bucket's index; a bucket is written when its count
///   is not zero, and the last bucket always;
/// - between two written buckets, up to two empty ones are written as zeros, a longer run
///   starts a new span (so a first bucket followed by more than two empty ones leaves a
///   first span of length 0, exactly as in Prometheus).
///
/// One deliberate difference: when merging, Prometheus stops adding up a group that follows
/// an empty merged bucket (its `count == 0` branch does not move its index), so observations
/// can land one bucket too low; here each merged bucket holds the sum of its group. The
/// tests compare this function with a transcription of Prometheus's where the two agree.
pub(super) fn buckets_layout(
    b: &ExponentialBuckets,
    scale_down: u32,
) -> Result<(Vec<BucketSpan>, Vec<f64>), String> {
    let Some(last_i) = b.bucket_counts.len().checked_sub(1) else {
        return Ok((Vec::new(), Vec::new()));
    };
    // i64 arithmetic shifts by at most 63 floor exactly for these magnitudes.
    let shift = scale_down.min(63);
    let index = |i: usize| ((i64::from(b.offset) + i as i64) >> shift) + 1;
    let (first, last) = (index(0), index(last_i));
    if i32::try_from(first).is_err() || i32::try_from(last).is_err() {
        return Err(format!(
            "bucket indices {first}..={last} do not fit in 32 bits (offset {}, {} buckets)",
            b.offset,
            b.bucket_counts.len()
        ));
    }
    // (index, count) of every merged bucket, in order, without gaps.
    let mut merged: Vec<(i64, u128)> = Vec::new();
    for (i, &c) in b.bucket_counts.iter().enumerate() {
        let j = index(i);
        match merged.last_mut() {
            Some((at, n)) if *at == j => *n += u128::from(c),
            _ => merged.push((j, u128::from(c))),
        }
    }
    let mut spans = vec![BucketSpan {
        offset: first as i32,
        length: 0,
    }];
    let mut counts = Vec::new();
    let mut next = first;
    let n = merged.len();
    for (k, (j, c)) in merged.into_iter().enumerate() {
        if c == 0 && k + 1 < n {
            continue;
        }
        let gap = j - next;
        let span = spans.last_mut().expect("one span at least");
        if gap > 2 {
            spans.push(BucketSpan {
                offset: i32::try_from(gap).map_err(|_| format!("a gap of {gap} buckets"))?,
                length: 1,
            });
        } else {
            span.length += gap as u32 + 1;
            counts.extend(std::iter::repeat_n(0.0, gap as usize));
        }
        counts.push(c as f64);
        next = j + 1;
    }
    Ok((spans, counts))
}

fn summary_point(
    b: &mut Builder,
    name: &str,
    p: &SummaryPoint,
    res: &ResourceLabels,
) -> Result<(), String> {
    let base = point_labels(&p.attributes, res)?;
    let t = millis(p.time_ns);
    let v = |x: f64| value_or_stale(p.flags, x);
    // `_sum` and `_count` are counters; the quantiles are not, and get no zero.
    let (start, flags) = (p.start_ns, p.flags);
    let labels = with_name(&base, &format!("{name}_sum"), None);
    b.add_started(labels, t, v(p.sum), start, flags);
    let labels = with_name(&base, &format!("{name}_count"), None);
    b.add_started(labels, t, v(p.count as f64), start, flags);
    for (q, value) in &p.quantiles {
        b.add(
            with_name(&base, name, Some(("quantile", float_label(*q)))),
            t,
            v(*value),
        );
    }
    Ok(())
}

/// `target_info`: the resource's other attributes, with `job` and `instance`; only when
/// there are such attributes and at least one of `job` and `instance`.
fn target_info(b: &mut Builder, r: &ResourceMetrics, res: &ResourceLabels, first: i64, last: i64) {
    const IDENTIFYING: [&str; 3] = ["service.namespace", "service.name", "service.instance.id"];
    let others: TextAttrs = r
        .attributes
        .iter()
        .filter(|(k, _)| !IDENTIFYING.contains(&k.as_str()))
        .cloned()
        .collect();
    if others.is_empty() || (res.job.is_none() && res.instance.is_none()) {
        return;
    }
    // A resource attribute that cannot be a label name is left out of target_info.
    let valid: TextAttrs = others
        .into_iter()
        .filter(|(k, _)| label_name(k).is_ok())
        .collect();
    let Ok(mut l) = attribute_labels(&valid) else {
        return;
    };
    if let Some(job) = &res.job {
        l.insert("job".into(), job.clone());
    }
    if let Some(instance) = &res.instance {
        l.insert("instance".into(), instance.clone());
    }
    let labels = with_name(&l, "target_info", None);
    let start = first.max(last - (TARGET_INFO_MAX_SAMPLES - 1) * TARGET_INFO_STEP_MS);
    let mut t = start;
    let mut last_added = None;
    while t < last {
        b.add(labels.clone(), t, 1.0);
        last_added = Some(t);
        t += TARGET_INFO_STEP_MS;
    }
    if last_added.is_none_or(|a| a < last) {
        b.add(labels, last, 1.0);
    }
}
