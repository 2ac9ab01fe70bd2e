//! Native histograms in PromQL: the instant value of a series holding histograms, range
//! functions over histogram windows, the `histogram_*` functions and the aggregations that
//! accept histograms. Float evaluation never comes here: a series reaches this module only
//! when storage handed it histogram samples.

use std::sync::Arc;

use meshlens_model::histogram::{self as nh, CounterResetHint, FloatHistogram};
use meshlens_model::{is_stale_nan, HistogramSample, Sample};

use super::rollup::{
    extrapolate, start_time_factor, start_time_overlap, start_time_reset, Extrapolation, RangeFn,
};
use crate::eval::stream::Read;

/// Per step, the histogram a series holds there (a step holds a float or a histogram).
pub(crate) type HistPoints = Vec<Option<Arc<FloatHistogram>>>;

/// What a histogram computation reports beside its values; the evaluator turns these into
/// the response's warnings and infos.
#[derive(Default)]
pub(crate) struct Notes {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
    /// Windows (series and step) where a sample's start time overlapped the previous
    /// sample, by metric name: one warning per name, with the count, as Prometheus.
    pub overlaps: Vec<(String, usize)>,
}

/// A series' start timestamps (Prometheus 3's "ST"), aligned with its float and histogram
/// samples; a kind without them is empty (read as 0: no start time).
#[derive(Clone, Copy, Default)]
pub(crate) struct StartTimes<'a> {
    pub floats: &'a [i64],
    pub hists: &'a [i64],
}

/// The start time of sample `i` of a kind, 0 when it has none.
fn st_at(sts: &[i64], i: usize) -> i64 {
    sts.get(i).copied().unwrap_or(0)
}

/// Adds `n` overlaps of `metric` to a list by metric name.
pub(crate) fn add_overlaps(list: &mut Vec<(String, usize)>, metric: String, n: usize) {
    match list.iter_mut().find(|(m, _)| *m == metric) {
        Some((_, k)) => *k += n,
        None => list.push((metric, n)),
    }
}

/// Prometheus's warning for start times overlapping the previous sample, `n` times.
pub(crate) fn overlap_warning(metric: &str, n: usize) -> String {
    let base = format!(
        "sample has start time that overlaps with previous sample timestamp for metric {metric:?}"
    );
    if n > 1 {
        format!("{base} ({n} occurrences)")
    } else {
        base
    }
}

impl Notes {
    /// `n` windows of `metric` held a start-time overlap.
    pub fn overlap(&mut self, metric: &str, n: usize) {
        add_overlaps(&mut self.overlaps, metric.to_string(), n);
    }

    fn warn(&mut self, m: String) {
        if !self.warnings.contains(&m) {
            self.warnings.push(m);
        }
    }

    fn info(&mut self, m: String) {
        if !self.infos.contains(&m) {
            self.infos.push(m);
        }
    }
}

/// Prometheus's info for custom-bucket histograms combined on the bounds both have.
fn note_reconciled(notes: &mut Notes, info: nh::AddInfo, operation: &str) {
    if info.custom_bounds_reconciled {
        notes.info(format!(
            "mismatched custom buckets were reconciled during {operation}"
        ));
    }
}

/// Prometheus's warning when histograms summed (by `sum`, `avg`, `sum_over_time` or
/// `avg_over_time`) include one hinted as a counter reset and one hinted as none.
fn note_reset_conflict(hists: &[&FloatHistogram], notes: &mut Notes) {
    let hinted = |hint| hists.iter().any(|h| h.counter_reset_hint == hint);
    if hinted(CounterResetHint::CounterReset) && hinted(CounterResetHint::NotCounterReset) {
        notes.warn("conflicting counter resets during histogram aggregation".to_string());
    }
}

fn mixed_warning(metric: &str) -> String {
    format!("encountered a mix of histograms and floats for metric name {metric:?}")
}

/// The instant value at each time over a series with both kinds of samples: the newest
/// sample within the lookback delta, unless it is a float staleness marker. Floats land in
/// `points`, histograms in the result; with `read` a time, the sample's time (or start
/// time, from `st`) as a float.
pub(crate) fn latest(
    floats: &[Sample],
    hists: &[HistogramSample],
    times: &[i64],
    window_min: impl Fn(i64) -> i64,
    read: Read,
    st: StartTimes<'_>,
    points: &mut Vec<Option<f64>>,
) -> HistPoints {
    points.clear();
    points.resize(times.len(), None);
    let mut out: HistPoints = vec![None; times.len()];
    for (i, &t) in times.iter().enumerate() {
        let fj = floats.partition_point(|s| s.t <= t).checked_sub(1);
        let f = fj.map(|j| floats[j]);
        let hj = hists.partition_point(|s| s.t <= t).checked_sub(1);
        let h = hj.map(|j| (&hists[j], st_at(st.hists, j)));
        let min = window_min(t);
        match (f, h) {
            (Some(f), Some((h, hst))) if h.t > f.t => {
                take_hist(h, hst, min, read, &mut points[i], &mut out[i])
            }
            (None, Some((h, hst))) => take_hist(h, hst, min, read, &mut points[i], &mut out[i]),
            (Some(f), _) => {
                if f.t >= min && !is_stale_nan(f.v) {
                    points[i] = Some(match read {
                        Read::Value => f.v,
                        Read::Time => f.t as f64 / 1000.0,
                        Read::StartTime => st_at(st.floats, fj.unwrap_or(0)) as f64 / 1000.0,
                    });
                }
            }
            (None, None) => {}
        }
    }
    out
}

fn take_hist(
    h: &HistogramSample,
    st: i64,
    min: i64,
    read: Read,
    point: &mut Option<f64>,
    hist: &mut Option<Arc<FloatHistogram>>,
) {
    if h.t < min {
        return;
    }
    match read {
        Read::Value => *hist = Some(h.h.clone()),
        Read::Time => *point = Some(h.t as f64 / 1000.0),
        Read::StartTime => *point = Some(st as f64 / 1000.0),
    }
}

/// A range function's value over one window that holds histograms: a float, a histogram,
/// or nothing (functions that ignore histograms, incompatible histograms, a mix with floats).
pub(crate) enum WindowValue {
    Float(f64),
    Hist(FloatHistogram),
    None,
    /// The float result computed without the histograms stands.
    Keep,
}

/// What a window of `f` gives. `floats` are the window's float samples (without staleness
/// markers), `hists` its histograms (non-empty); `[start, end]` the window's bounds.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rollup_window(
    f: RangeFn,
    floats: &[Sample],
    hists: &[HistogramSample],
    st: StartTimes<'_>,
    start: i64,
    end: i64,
    range_ms: i64,
    closed: bool,
    metric: &str,
    notes: &mut Notes,
) -> WindowValue {
    use RangeFn::*;
    match f {
        CountOverTime => return WindowValue::Float((floats.len() + hists.len()) as f64),
        PresentOverTime => return WindowValue::Float(1.0),
        LastOverTime => {
            let h = &hists[hists.len() - 1];
            return match floats.last() {
                Some(x) if x.t > h.t => WindowValue::Float(x.v),
                _ => WindowValue::Hist((*h.h).clone()),
            };
        }
        FirstOverTime => {
            let h = &hists[0];
            return match floats.first() {
                Some(x) if x.t < h.t => WindowValue::Float(x.v),
                _ => WindowValue::Hist((*h.h).clone()),
            };
        }
        TsOfFirstOverTime => {
            let t = floats.first().map_or(hists[0].t, |x| x.t.min(hists[0].t));
            return WindowValue::Float(t as f64 / 1000.0);
        }
        TsOfLastOverTime => {
            let h = hists[hists.len() - 1].t;
            let t = floats.last().map_or(h, |x| x.t.max(h));
            return WindowValue::Float(t as f64 / 1000.0);
        }
        _ => {}
    }
    if matches!(f, Resets | Changes) {
        return WindowValue::Float(resets_or_changes(f == Resets, floats, hists, st));
    }
    // `irate` and `idelta` read only the window's two newest samples: floats there give the
    // float result, a float and a histogram nothing, and older floats do not matter.
    let floats = match f {
        Irate | Idelta => {
            let mut newest: Vec<(i64, bool)> = floats
                .iter()
                .rev()
                .take(2)
                .map(|x| (x.t, false))
                .chain(hists.iter().rev().take(2).map(|x| (x.t, true)))
                .collect();
            newest.sort_by_key(|b| std::cmp::Reverse(b.0));
            match newest.get(..2) {
                Some([(_, true), (_, true)]) => &[][..],
                Some([(_, false), (_, false)]) => return WindowValue::Keep,
                Some(_) => {
                    notes.warn(mixed_warning(metric));
                    return WindowValue::None;
                }
                None => return WindowValue::None,
            }
        }
        _ => floats,
    };
    let combines = matches!(
        f,
        Rate | Increase | Delta | Irate | Idelta | SumOverTime | AvgOverTime
    );
    if !floats.is_empty() {
        if combines {
            notes.warn(mixed_warning(metric));
            return WindowValue::None;
        }
        // Functions of floats only: the floats' value stands, the histograms are noted.
        notes.info(format!(
            "ignored histograms in a range containing both floats and histograms for metric name {metric:?}"
        ));
        return WindowValue::Keep;
    }
    match f {
        Rate | Increase | Delta => {
            let counter = f != Delta;
            let (first, last) = (&hists[0], &hists[hists.len() - 1]);
            let range_s = range_ms as f64 / 1000.0;
            // A counter whose first sample starts inside the window: 0 at its start time
            // rather than extrapolation to the window's start (one sample is then enough).
            let from_start = if counter {
                let st0 = st_at(st.hists, 0);
                start_time_factor(
                    st0,
                    first.t,
                    last.t,
                    hists.len(),
                    start,
                    end,
                    f == Rate,
                    range_s,
                )
            } else {
                None
            };
            if hists.len() < 2 && from_start.is_none() {
                return WindowValue::None;
            }
            let mut h = if hists.len() < 2 {
                let mut h = FloatHistogram {
                    schema: first.h.schema,
                    custom_values: first.h.custom_values.clone(),
                    ..FloatHistogram::default()
                };
                h.counter_reset_hint = CounterResetHint::Gauge;
                h
            } else {
                match histogram_rate(hists, st.hists, counter, metric, notes) {
                    Some(h) => h,
                    None => return WindowValue::None,
                }
            };
            if let Some(factor) = from_start {
                if h.add(&first.h).is_err() {
                    notes.warn(format!(
                        "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {metric:?}"
                    ));
                    return WindowValue::None;
                }
                h.mul(factor);
                h.counter_reset_hint = CounterResetHint::Gauge;
                h.compact(0);
                return WindowValue::Hist(h);
            }
            let counts: Vec<Sample> = hists.iter().map(|x| Sample::new(x.t, x.h.count)).collect();
            let how = |counter| Extrapolation {
                counter,
                rate: f == Rate,
                range_s,
                prom2: closed,
            };
            let factor = if counter && h.count > 0.0 {
                extrapolate(h.count, &counts, start, end, how(true)).map(|x| x / h.count)
            } else {
                extrapolate(1.0, &counts, start, end, how(false))
            };
            match factor {
                Some(factor) => {
                    h.mul(factor);
                    WindowValue::Hist(h)
                }
                None => WindowValue::None,
            }
        }
        Irate | Idelta => {
            if hists.len() < 2 {
                return WindowValue::None;
            }
            let (prev, last) = (&hists[hists.len() - 2], &hists[hists.len() - 1]);
            // A gauge hint on either sample: not a counter for irate; a gauge next to a
            // counter: not a gauge for idelta (two counters are its plain use).
            let gauges = [prev, last].map(|x| x.h.counter_reset_hint == CounterResetHint::Gauge);
            if f == Irate && gauges.contains(&true) {
                notes.warn(format!(
                    "this native histogram metric is not a counter: {metric:?}"
                ));
            }
            if f == Idelta && gauges[0] != gauges[1] {
                notes.warn(format!(
                    "this native histogram metric is not a gauge: {metric:?}"
                ));
            }
            let mut h = (*last.h).clone();
            let n = hists.len();
            let by_start_time = start_time_reset(
                st_at(st.hists, n - 2),
                prev.t,
                st_at(st.hists, n - 1),
                last.t,
            );
            let reset = f == Irate && (by_start_time || last.h.detect_reset(&prev.h));
            if !reset {
                match h.sub_with_info(&prev.h) {
                    Ok(info) => note_reconciled(notes, info, "subtraction"),
                    Err(_) => {
                        notes.warn(format!(
                            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {metric:?}"
                        ));
                        return WindowValue::None;
                    }
                }
            }
            if f == Irate {
                let dt = (last.t - prev.t) as f64 / 1000.0;
                if dt == 0.0 {
                    return WindowValue::None;
                }
                h.div(dt);
            }
            h.counter_reset_hint = CounterResetHint::Gauge;
            h.compact(0);
            WindowValue::Hist(h)
        }
        SumOverTime | AvgOverTime => {
            let all: Vec<&FloatHistogram> = hists.iter().map(|x| x.h.as_ref()).collect();
            let summed = match f {
                AvgOverTime => mean(&all, notes),
                _ => kahan_sum(&all, notes),
            };
            match summed {
                Ok(mut sum) => {
                    sum.compact(0);
                    WindowValue::Hist(sum)
                }
                Err(_) => {
                    notes.warn(format!(
                        "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {metric:?}"
                    ));
                    WindowValue::None
                }
            }
        }
        // Functions of floats over histograms only: nothing, as Prometheus gives.
        _ => WindowValue::None,
    }
}

/// `resets` or `changes` over a window's floats and histograms together, in time order: a
/// switch between a float and a histogram counts as both, as in Prometheus.
fn resets_or_changes(
    resets: bool,
    floats: &[Sample],
    hists: &[HistogramSample],
    st: StartTimes<'_>,
) -> f64 {
    enum Point<'a> {
        F(f64),
        H(&'a FloatHistogram),
    }
    let (mut i, mut j) = (0, 0);
    // The previous sample, its time and its start time.
    let mut prev: Option<(Point, i64, i64)> = None;
    let mut n = 0usize;
    while i < floats.len() || j < hists.len() {
        let (cur, t, cur_st) = if j >= hists.len() || (i < floats.len() && floats[i].t < hists[j].t)
        {
            i += 1;
            (
                Point::F(floats[i - 1].v),
                floats[i - 1].t,
                st_at(st.floats, i - 1),
            )
        } else {
            j += 1;
            (
                Point::H(&hists[j - 1].h),
                hists[j - 1].t,
                st_at(st.hists, j - 1),
            )
        };
        let by_start = |pt: i64, pst: i64| resets && start_time_reset(pst, pt, cur_st, t);
        let counted = match (&prev, &cur) {
            (None, _) => false,
            (Some((Point::F(a), pt, pst)), Point::F(b)) if resets => b < a || by_start(*pt, *pst),
            (Some((Point::F(a), _, _)), Point::F(b)) => !(a == b || (a.is_nan() && b.is_nan())),
            (Some((Point::H(a), pt, pst)), Point::H(b)) if resets => {
                by_start(*pt, *pst) || b.detect_reset(a)
            }
            (Some((Point::H(a), _, _)), Point::H(b)) => !b.equals(a),
            _ => true,
        };
        n += usize::from(counted);
        prev = Some((cur, t, cur_st));
    }
    n as f64
}

/// The increase over a window of histograms (at least two), counter resets added back for
/// counters; `None` when the histograms cannot be combined (a warning says why).
fn histogram_rate(
    points: &[HistogramSample],
    sts: &[i64],
    counter: bool,
    metric: &str,
    notes: &mut Notes,
) -> Option<FloatHistogram> {
    // Sample `k` resets the counter by its start time.
    let st_reset = |k: usize| {
        start_time_reset(
            st_at(sts, k - 1),
            points[k - 1].t,
            st_at(sts, k),
            points[k].t,
        )
    };
    let first = &points[0].h;
    let last = &points[points.len() - 1].h;
    if counter
        && (first.counter_reset_hint == CounterResetHint::Gauge
            || last.counter_reset_hint == CounterResetHint::Gauge)
    {
        notes.warn(format!(
            "this native histogram metric is not a counter: {metric:?}"
        ));
    }
    // A reset between the first two samples makes the first one irrelevant.
    let mut prev: FloatHistogram = (**first).clone();
    if counter && (st_reset(1) || points[1].h.detect_reset(first)) {
        prev = FloatHistogram {
            schema: points[1].h.schema,
            custom_values: points[1].h.custom_values.clone(),
            ..FloatHistogram::default()
        };
    }
    let custom = prev.uses_custom_buckets();
    if last.uses_custom_buckets() != custom
        || points[1..points.len() - 1]
            .iter()
            .any(|p| counter && p.h.uses_custom_buckets() != custom)
    {
        notes.warn(format!(
            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {metric:?}"
        ));
        return None;
    }
    if counter
        && points[1..points.len() - 1]
            .iter()
            .any(|p| p.h.counter_reset_hint == CounterResetHint::Gauge)
    {
        notes.warn(format!(
            "this native histogram metric is not a counter: {metric:?}"
        ));
    }
    let mut h = (**last).clone();
    match h.sub_with_info(&prev) {
        Ok(info) => note_reconciled(notes, info, "subtraction"),
        Err(_) => {
            notes.warn(format!(
                "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {metric:?}"
            ));
            return None;
        }
    }
    if counter {
        let mut before: &FloatHistogram = &prev;
        let mut overlap = false;
        for (k, p) in points.iter().enumerate().skip(1) {
            overlap |= start_time_overlap(st_at(sts, k - 1), points[k - 1].t, st_at(sts, k));
            if (st_reset(k) || p.h.detect_reset(before)) && h.add(before).is_err() {
                return None;
            }
            before = &p.h;
        }
        if overlap {
            notes.overlap(metric, 1);
        }
    } else if first.counter_reset_hint != CounterResetHint::Gauge
        || last.counter_reset_hint != CounterResetHint::Gauge
    {
        notes.warn(format!(
            "this native histogram metric is not a gauge: {metric:?}"
        ));
    }
    h.counter_reset_hint = CounterResetHint::Gauge;
    h.compact(0);
    Some(h)
}

/// `histogram_count`, `histogram_sum`, `histogram_avg`, `histogram_stddev`,
/// `histogram_stdvar`: a float from one histogram; `None` for other names.
pub(crate) fn property(name: &str) -> Option<fn(&FloatHistogram) -> f64> {
    Some(match name {
        "histogram_count" => |h| h.count,
        "histogram_sum" => |h| h.sum,
        "histogram_avg" => |h| h.sum / h.count,
        "histogram_stddev" => nh::stddev,
        "histogram_stdvar" => nh::stdvar,
        _ => return None,
    })
}

/// `histogram_fraction` of one histogram.
pub(crate) fn fraction(lower: f64, upper: f64, h: &FloatHistogram) -> f64 {
    nh::fraction(lower, upper, h)
}

/// `histogram_quantile` of one histogram.
pub(crate) fn quantile(q: f64, h: &FloatHistogram) -> f64 {
    nh::quantile(q, h)
}

/// An aggregation's value at one step over the histograms of a group (`hists` non-empty,
/// no floats alongside): `sum` and `avg` give a histogram, `count` and `group` floats.
/// `None` with a warning for a mix of incompatible histograms, and for operators that
/// ignore histograms (then with an info).
pub(crate) fn aggregate(op: &str, hists: &[&FloatHistogram], notes: &mut Notes) -> WindowValue {
    match op {
        "count" => WindowValue::Float(hists.len() as f64),
        "group" => WindowValue::Float(1.0),
        "sum" | "avg" => match if op == "avg" {
            mean(hists, notes)
        } else {
            kahan_sum(hists, notes)
        } {
            Ok(mut acc) => {
                acc.compact(0);
                WindowValue::Hist(acc)
            }
            Err(_) => {
                notes.warn(
                    "vector contains a mix of histograms with exponential and custom buckets schemas"
                        .to_string(),
                );
                WindowValue::None
            }
        },
        other => {
            notes.info(format!("ignored histogram in {other} aggregation"));
            WindowValue::None
        }
    }
}

/// The sum of histograms with Kahan compensation, as Prometheus sums them: the layout (and
/// counter-reset hint) of the plain sum, every count summed in a compensated running sum
/// over the inputs brought to that layout. Falls back to the plain sum if an input does not
/// map onto the layout bucket for bucket.
/// The mean of histograms: their sum divided by their number, or, where the sum overflows
/// (finite inputs, an infinite count or bucket in the sum), a running mean that stays in
/// range, as Prometheus falls back to one.
pub(crate) fn mean(
    hists: &[&FloatHistogram],
    notes: &mut Notes,
) -> Result<FloatHistogram, nh::HistogramError> {
    let mut sum = kahan_sum(hists, notes)?;
    if !infinite(&sum) || hists.iter().any(|h| infinite(h)) {
        sum.div(hists.len() as f64);
        return Ok(sum);
    }
    let mut mean = hists[0].clone();
    for (i, h) in hists.iter().enumerate().skip(1) {
        // mean += h/n - mean/n
        let n = (i + 1) as f64;
        let mut step = (*h).clone();
        step.div(n);
        let mut part = mean.clone();
        part.div(n);
        step.sub(&part)?;
        mean.add(&step)?;
    }
    // Only what overflowed takes the running mean: the compensated sum is exact elsewhere.
    sum.div(hists.len() as f64);
    let pick = |s: &mut f64, m: f64| {
        if !s.is_finite() {
            *s = m;
        }
    };
    pick(&mut sum.count, mean.count);
    pick(&mut sum.sum, mean.sum);
    pick(&mut sum.zero_count, mean.zero_count);
    if sum.positive_spans != mean.positive_spans || sum.negative_spans != mean.negative_spans {
        return Ok(mean);
    }
    for (s, m) in sum.positive_buckets.iter_mut().zip(&mean.positive_buckets) {
        pick(s, *m);
    }
    for (s, m) in sum.negative_buckets.iter_mut().zip(&mean.negative_buckets) {
        pick(s, *m);
    }
    Ok(sum)
}

fn infinite(h: &FloatHistogram) -> bool {
    !h.count.is_finite()
        || !h.zero_count.is_finite()
        || h.positive_buckets
            .iter()
            .chain(&h.negative_buckets)
            .any(|b| !b.is_finite())
}

/// Custom bounds reconciled on the way are noted as Prometheus notes them.
pub(crate) fn kahan_sum(
    hists: &[&FloatHistogram],
    notes: &mut Notes,
) -> Result<FloatHistogram, nh::HistogramError> {
    note_reset_conflict(hists, notes);
    let mut plain = hists[0].clone();
    for h in &hists[1..] {
        let info = plain.add_with_info(h)?;
        note_reconciled(notes, info, "aggregation");
    }
    if hists.len() < 2 {
        return Ok(plain);
    }
    let mut zero = plain.clone();
    zero.count = 0.0;
    zero.sum = 0.0;
    zero.zero_count = 0.0;
    zero.positive_buckets.iter_mut().for_each(|b| *b = 0.0);
    zero.negative_buckets.iter_mut().for_each(|b| *b = 0.0);
    let mut aligned = Vec::with_capacity(hists.len());
    for h in hists {
        let mut t = zero.clone();
        t.add(h)?;
        if t.positive_spans != plain.positive_spans
            || t.negative_spans != plain.negative_spans
            || t.zero_threshold != plain.zero_threshold
        {
            return Ok(plain);
        }
        aligned.push(t);
    }
    let kahan = |values: &mut dyn Iterator<Item = f64>| {
        let mut k = crate::eval::aggregate::Kahan::default();
        values.for_each(|v| k.add(v));
        k.value()
    };
    plain.count = kahan(&mut aligned.iter().map(|t| t.count));
    plain.sum = kahan(&mut aligned.iter().map(|t| t.sum));
    plain.zero_count = kahan(&mut aligned.iter().map(|t| t.zero_count));
    for (i, b) in plain.positive_buckets.iter_mut().enumerate() {
        *b = kahan(&mut aligned.iter().map(|t| t.positive_buckets[i]));
    }
    for (i, b) in plain.negative_buckets.iter_mut().enumerate() {
        *b = kahan(&mut aligned.iter().map(|t| t.negative_buckets[i]));
    }
    Ok(plain)
}
