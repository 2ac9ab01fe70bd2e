//! Prometheus 3's extended range selectors (`anchored`, `smoothed`; see
//! [`crate::extended_syntax`] for how the parser is made to read them).
//!
//! `anchored` windows also take the last sample up to one lookback delta before their
//! start, as the value at the start: `increase`, `rate` and `delta` are then the plain
//! difference between that value and the last one, without extrapolation, and `changes`
//! and `resets` count from it. `smoothed` windows interpolate linearly between the samples
//! around each end (up to one lookback delta out on either side), for `increase`, `rate` and
//! `delta`; a smoothed instant selector interpolates at the evaluation time.

use std::sync::Arc;

use meshlens_model::histogram::CounterResetHint;
use meshlens_model::{
    is_stale_nan, FloatHistogram, HistogramSample, Labels, Sample, SeriesSamples,
};
use promql_parser::parser::{MatrixSelector, VectorSelector};

use super::rollup::RangeFn;
use crate::error::PromqlError;
use crate::eval::{merge_same_labels, millis, Evaluator};
use crate::extended_syntax::Extension;
use crate::value::{Series, Val};

const ANCHORED_FUNCTIONS: &str = "changes, delta, increase, rate, resets";
const SMOOTHED_FUNCTIONS: &str = "delta, increase, rate";

/// One series' samples, stale markers left out.
struct Read {
    labels: Labels,
    floats: Vec<Sample>,
    hists: Vec<HistogramSample>,
}

/// Every series of `vs` with its samples in `[from, to]`.
fn read(ev: &Evaluator, vs: &VectorSelector, from: i64, to: i64) -> Result<Vec<Read>, PromqlError> {
    let mut out = Vec::new();
    for cursor in ev.cursors(vs, from, to)? {
        ev.check_deadline()?;
        let mut floats = Vec::new();
        let n = cursor
            .decode_into(&mut floats)
            .map_err(|e| crate::eval::stream::storage_error(ev.opts, e))?;
        ev.hold(n)?;
        floats.retain(|s| !is_stale_nan(s.v));
        let hists = cursor.histograms().to_vec();
        ev.hold(hists.len())?;
        if !floats.is_empty() || !hists.is_empty() {
            out.push(Read {
                labels: cursor.labels().clone(),
                floats,
                hists,
            });
        }
    }
    Ok(out)
}

/// The samples of `s` with a timestamp in `(from, to]`.
fn window<T>(s: &[T], t: impl Fn(&T) -> i64, from: i64, to: i64) -> &[T] {
    let a = s.partition_point(|x| t(x) <= from);
    let b = s.partition_point(|x| t(x) <= to);
    &s[a..b.max(a)]
}

/// `f(ms)` for a range function over an anchored or smoothed selector.
pub(crate) fn range_call(
    ev: &Evaluator,
    f: RangeFn,
    name: &str,
    ms: &MatrixSelector,
    ext: Extension,
) -> Result<Val, PromqlError> {
    let allowed = match ext {
        Extension::Anchored => matches!(
            f,
            RangeFn::Changes | RangeFn::Delta | RangeFn::Increase | RangeFn::Rate | RangeFn::Resets
        ),
        Extension::Smoothed => matches!(f, RangeFn::Delta | RangeFn::Increase | RangeFn::Rate),
    };
    if !allowed {
        let (word, list) = match ext {
            Extension::Anchored => ("anchored", ANCHORED_FUNCTIONS),
            Extension::Smoothed => ("smoothed", SMOOTHED_FUNCTIONS),
        };
        return Err(PromqlError::exec(format!(
            "{word} modifier can only be used with: {list} - not with {name}"
        )));
    }
    let smoothed = ext == Extension::Smoothed;
    let range = millis(ms.range);
    let lookback = ev.opts.lookback_delta_ms;
    let ends = ev.effective_times(&ms.vs.at, &ms.vs.offset);
    let (Some(&min), Some(&max)) = (ends.iter().min(), ends.iter().max()) else {
        return Ok(Val::Vector(Vec::new()));
    };
    let after = if smoothed { lookback } else { 0 };
    let from = min.saturating_sub(range).saturating_sub(lookback);
    let series = read(
        ev,
        &ms.vs,
        from.saturating_add(1),
        max.saturating_add(after),
    )?;
    let mut out = Vec::new();
    for s in series {
        let metric = s.labels.metric_name().unwrap_or("").to_string();
        let mut points = vec![None; ends.len()];
        let mut hists: Vec<Option<Arc<FloatHistogram>>> = Vec::new();
        for (step, &end) in ends.iter().enumerate() {
            let start = end.saturating_sub(range);
            let lo = start.saturating_sub(lookback);
            let hi = end.saturating_add(after);
            let fw = window(&s.floats, |x| x.t, lo, hi);
            let hw = window(&s.hists, |x| x.t, lo, hi);
            points[step] = match f {
                RangeFn::Changes | RangeFn::Resets => {
                    count_from_anchor(fw, hw, start, f == RangeFn::Resets)
                }
                _ => {
                    if !fw.is_empty() && !hw.is_empty() {
                        ev.warn_at(
                            format!("encountered a mix of histograms and floats for metric name {metric:?}"),
                            0,
                        );
                        continue;
                    }
                    if fw.is_empty() {
                        let counter = f != RangeFn::Delta;
                        let warn = |m: String| ev.warn_at(m, 0);
                        let h = extended_histogram_rate(
                            hw, start, end, smoothed, counter, &metric, &warn,
                        );
                        if let Some(mut h) = h {
                            if f == RangeFn::Rate {
                                h.div(range as f64 / 1000.0);
                            }
                            if hists.is_empty() {
                                hists = vec![None; ends.len()];
                            }
                            hists[step] = Some(Arc::new(h));
                        }
                        continue;
                    }
                    let counter = f != RangeFn::Delta;
                    extended_rate(fw, start, end, smoothed, counter).map(|v| match f {
                        RangeFn::Rate => v / (range as f64 / 1000.0),
                        _ => v,
                    })
                }
            };
        }
        if points.iter().any(Option::is_some) || hists.iter().any(Option::is_some) {
            let (labels, drop_name) = crate::value::name_dropped(s.labels, ev.delayed_names);
            out.push(Series {
                labels,
                points,
                hists,
                drop_name,
            });
        }
    }
    Ok(Val::Vector(merge_same_labels(out)?))
}

/// An anchored or smoothed range selector as a query's result (an instant query of
/// `x[5m] anchored`): per series, the value at the window's start (the last sample at or
/// before it; smoothed: interpolated there), the samples inside the window, and the value
/// at its end (the last sample; smoothed: interpolated towards the next one), as
/// Prometheus's `extendFloats`. Native histograms are refused, as in Prometheus; a series
/// with no sample inside the window is left out.
pub(crate) fn bare_range(
    ev: &Evaluator,
    ms: &MatrixSelector,
    ext: Extension,
) -> Result<Vec<SeriesSamples>, PromqlError> {
    let smoothed = ext == Extension::Smoothed;
    let range = millis(ms.range);
    let lookback = ev.opts.lookback_delta_ms;
    let ends = ev.effective_times(&ms.vs.at, &ms.vs.offset);
    let Some(&end) = ends.first() else {
        return Ok(Vec::new());
    };
    let start = end.saturating_sub(range);
    let after = if smoothed { lookback } else { 0 };
    let series = read(
        ev,
        &ms.vs,
        start.saturating_sub(lookback).saturating_add(1),
        end.saturating_add(after),
    )?;
    let mut out = Vec::new();
    for s in series {
        if !s.hists.is_empty() {
            let word = if smoothed { "smoothed" } else { "anchored" };
            return Err(PromqlError::exec(format!(
                "{word} modifier is not supported with histograms"
            )));
        }
        if let Some(samples) = extend_window(&s.floats, start, end, smoothed) {
            out.push(SeriesSamples {
                labels: s.labels,
                samples,
                histograms: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// The samples of a window `(start, end]` with a value put at each end (see
/// [`bare_range`]); `f` reaches back one lookback delta before `start` (and, smoothed,
/// after `end`). `None` when no sample lies after `start`.
fn extend_window(f: &[Sample], start: i64, end: i64, smoothed: bool) -> Option<Vec<Sample>> {
    let mut last = f.len().checked_sub(1)?;
    // The last sample at or before the start, or the first one when none is.
    let first = f[..last]
        .partition_point(|x| x.t <= start)
        .saturating_sub(1);
    if smoothed {
        // The first sample at or after the end: the right end interpolates towards it.
        last = f[..last].partition_point(|x| x.t < end);
    }
    if f[last].t <= start {
        return None;
    }
    let left = if smoothed && f[first].t < start {
        interpolate(f[first], f[first + 1], start, false)
    } else {
        f[first].v
    };
    let right = if smoothed && last > 0 && f[last].t > end {
        interpolate(f[last - 1], f[last], end, false)
    } else {
        f[last].v
    };
    let lo = first + usize::from(f[first].t <= start);
    let hi = if f[last].t >= end { last } else { last + 1 };
    let mut out = Vec::with_capacity(hi.saturating_sub(lo) + 2);
    out.push(Sample::new(start, left));
    out.extend_from_slice(&f[lo..hi.max(lo)]);
    out.push(Sample::new(end, right));
    Some(out)
}

/// The increase (`counter`) or difference between the values at `start` and `end` of the
/// samples `f`: the samples themselves, or (smoothed) interpolated where a sample lies
/// beyond an end; counter resets in between are made up for.
fn extended_rate(f: &[Sample], start: i64, end: i64, smoothed: bool, counter: bool) -> Option<f64> {
    let mut last = f.len() - 1;
    let mut first = f[..last]
        .partition_point(|s| s.t <= start)
        .saturating_sub(1);
    if smoothed {
        last = f[..last].partition_point(|s| s.t < end);
    }
    if f[last].t <= start || (smoothed && f[first].t > end) {
        return None;
    }
    let left = if smoothed && f[first].t < start {
        interpolate(f[first], f[first + 1], start, counter)
    } else {
        f[first].v
    };
    let right = if smoothed && last > 0 && f[last].t > end {
        interpolate(f[last - 1], f[last], end, counter)
    } else {
        f[last].v
    };
    let mut result = right - left;
    if counter {
        if f[first].t <= start {
            first += 1;
        }
        if f[last].t >= end {
            last = last.wrapping_sub(1);
        }
        let inner = if last == usize::MAX || first > last {
            &[][..]
        } else {
            &f[first..=last]
        };
        let mut prev = left;
        for s in inner {
            if s.v < prev {
                result += prev;
            }
            prev = s.v;
        }
        if right < prev {
            result += prev;
        }
    }
    Some(result)
}

/// [`extended_rate`] of native histograms (the result a gauge histogram), with Prometheus's
/// warnings for mixed bucket kinds, gauges taken as counters and counters taken as gauges.
fn extended_histogram_rate(
    h: &[HistogramSample],
    start: i64,
    end: i64,
    smoothed: bool,
    counter: bool,
    metric: &str,
    warn: &dyn Fn(String),
) -> Option<FloatHistogram> {
    let mixed = || {
        warn(format!("vector contains a mix of histograms with exponential and custom buckets schemas for metric name {metric:?}"))
    };
    let mut last = h.len() - 1;
    let first = h[..last]
        .partition_point(|s| s.t <= start)
        .saturating_sub(1);
    if smoothed {
        last = h[..last].partition_point(|s| s.t < end);
    }
    if h[last].t <= start || (smoothed && h[first].t > end) {
        return None;
    }
    let custom = h[first].h.uses_custom_buckets();
    for s in &h[first..=last] {
        if s.h.uses_custom_buckets() != custom {
            mixed();
            return None;
        }
        if counter && s.h.counter_reset_hint == CounterResetHint::Gauge {
            warn(format!(
                "this native histogram metric is not a counter: {metric:?}"
            ));
        }
    }
    let at = |a: &HistogramSample, b: &HistogramSample, t: i64| -> Option<FloatHistogram> {
        if t == a.t {
            return Some((*a.h).clone());
        }
        if t == b.t {
            return Some((*b.h).clone());
        }
        let fraction = (t - a.t) as f64 / (b.t - a.t) as f64;
        let mut r = (*b.h).clone();
        if counter && b.h.detect_reset(&a.h) {
            r.mul(fraction);
            return Some(r);
        }
        r.sub(&a.h).ok()?;
        r.mul(fraction);
        r.add(&a.h).ok()?;
        Some(r)
    };
    let left = if smoothed && h[first].t < start {
        at(&h[first], &h[first + 1], start)
    } else {
        Some((*h[first].h).clone())
    };
    let right = if smoothed && last > 0 && h[last].t > end {
        at(&h[last - 1], &h[last], end)
    } else {
        Some((*h[last].h).clone())
    };
    let (Some(left), Some(right)) = (left, right) else {
        mixed();
        return None;
    };
    if !counter
        && (left.counter_reset_hint != CounterResetHint::Gauge
            || right.counter_reset_hint != CounterResetHint::Gauge)
    {
        warn(format!(
            "this native histogram metric is not a gauge: {metric:?}"
        ));
    }
    let mut result = right.clone();
    if result.sub(&left).is_err() {
        mixed();
        return None;
    }
    if counter {
        // The samples strictly between the two ends; a reset the left interpolation
        // already spanned is not counted again.
        let mut from = first + 1;
        let mut prev = &left;
        if smoothed && h[first].t < start && h[first + 1].h.detect_reset(&h[first].h) {
            prev = &h[first + 1].h;
            from += 1;
        }
        if from <= last {
            let mut correction: Option<FloatHistogram> = None;
            let mut add = |c: &FloatHistogram| match &mut correction {
                None => {
                    correction = Some(c.clone());
                    true
                }
                Some(sum) => sum.add(c).is_ok(),
            };
            for s in &h[from..last] {
                if s.h.detect_reset(prev) && !add(prev) {
                    mixed();
                    return None;
                }
                prev = &s.h;
            }
            if right.detect_reset(prev) && !add(prev) {
                mixed();
                return None;
            }
            if let Some(c) = correction {
                if result.add(&c).is_err() {
                    mixed();
                    return None;
                }
            }
        }
    }
    result.counter_reset_hint = CounterResetHint::Gauge;
    result.compact(0);
    Some(result)
}

/// The value at `t` on the line between two samples; a counter that fell is taken to have
/// restarted from zero.
fn interpolate(a: Sample, b: Sample, t: i64, counter: bool) -> f64 {
    let y1 = if counter && b.v < a.v { 0.0 } else { a.v };
    y1 + (b.v - y1) * (t - a.t) as f64 / (b.t - a.t) as f64
}

/// `changes` or `resets` counted from the last sample at or before `start` (floats and
/// histograms alike); `None` when no sample lies after `start`.
fn count_from_anchor(f: &[Sample], h: &[HistogramSample], start: i64, resets: bool) -> Option<f64> {
    let fa = f.partition_point(|s| s.t <= start);
    let ha = h.partition_point(|s| s.t <= start);
    if fa >= f.len() && ha >= h.len() {
        return None;
    }
    // The anchor: the newer of the last float and the last histogram up to `start`.
    let (fi, hi) = match (fa.checked_sub(1), ha.checked_sub(1)) {
        (None, None) => (0, 0),
        (Some(a), None) => (a, ha),
        (None, Some(b)) => (fa, b),
        (Some(a), Some(b)) if f[a].t >= h[b].t => (a, ha),
        (Some(_), Some(b)) => (fa, b),
    };
    enum V<'a> {
        F(f64),
        H(&'a FloatHistogram),
    }
    let mut merged: Vec<(i64, V)> = f[fi..]
        .iter()
        .map(|s| (s.t, V::F(s.v)))
        .chain(h[hi..].iter().map(|s| (s.t, V::H(&s.h))))
        .collect();
    merged.sort_by_key(|(t, _)| *t);
    let mut n = 0;
    for pair in merged.windows(2) {
        let hit = match (&pair[0].1, &pair[1].1) {
            (V::F(a), V::F(b)) if resets => b < a,
            (V::F(a), V::F(b)) => a != b && !(a.is_nan() && b.is_nan()),
            (V::H(a), V::H(b)) if resets => b.detect_reset(a),
            (V::H(a), V::H(b)) => !a.equals(b),
            _ => true,
        };
        n += usize::from(hit);
    }
    Some(n as f64)
}

/// A smoothed instant selector: at each step the value interpolated between the samples
/// around it (up to one lookback delta away), or the last one before it when none follows.
pub(crate) fn smoothed_selector(ev: &Evaluator, vs: &VectorSelector) -> Result<Val, PromqlError> {
    let times = ev.effective_times(&vs.at, &vs.offset);
    let (Some(&min), Some(&max)) = (times.iter().min(), times.iter().max()) else {
        return Ok(Val::Vector(Vec::new()));
    };
    let lookback = ev.opts.lookback_delta_ms;
    let series = read(
        ev,
        vs,
        min.saturating_sub(lookback).saturating_add(1),
        max.saturating_add(lookback),
    )?;
    let mut out = Vec::new();
    for s in series {
        let metric = s.labels.metric_name().unwrap_or("").to_string();
        let mut points = vec![None; times.len()];
        let mut hists: Vec<Option<Arc<FloatHistogram>>> = Vec::new();
        for (step, &t) in times.iter().enumerate() {
            let (lo, hi) = (t.saturating_sub(lookback), t.saturating_add(lookback));
            let fw = window(&s.floats, |x| x.t, lo, hi);
            let hw = window(&s.hists, |x| x.t, lo, hi);
            if !fw.is_empty() && !hw.is_empty() {
                ev.warn_at_selector(
                    format!(
                        "encountered a mix of histograms and floats for metric name {metric:?}"
                    ),
                    vs,
                );
                continue;
            }
            if !fw.is_empty() {
                let i = fw.partition_point(|x| x.t < t);
                points[step] = match fw.get(i) {
                    Some(x) if x.t == t => Some(x.v),
                    Some(&next) if i > 0 => Some(interpolate(fw[i - 1], next, t, false)),
                    None if i > 0 => Some(fw[i - 1].v),
                    _ => None,
                };
                continue;
            }
            let i = hw.partition_point(|x| x.t < t);
            let h = match hw.get(i) {
                Some(x) if x.t == t => Some((*x.h).clone()),
                Some(next) if i > 0 => {
                    let prev = &hw[i - 1];
                    if prev.h.uses_custom_buckets() != next.h.uses_custom_buckets() {
                        ev.warn_at_selector(format!("vector contains a mix of histograms with exponential and custom buckets schemas for metric name {metric:?}"), vs);
                        continue;
                    }
                    interpolate_histograms(prev, next, t)
                }
                None if i > 0 => {
                    let mut h = (*hw[i - 1].h).clone();
                    h.counter_reset_hint = CounterResetHint::Unknown;
                    Some(h)
                }
                _ => None,
            };
            if let Some(h) = h {
                if hists.is_empty() {
                    hists = vec![None; times.len()];
                }
                hists[step] = Some(Arc::new(h));
            }
        }
        if points.iter().any(Option::is_some) || hists.iter().any(Option::is_some) {
            out.push(Series {
                labels: s.labels,
                points,
                hists,
                drop_name: false,
            });
        }
    }
    ev.hold(out.len() * ev.steps())?;
    Ok(Val::Vector(out))
}

/// The histogram at `t` between two samples: a counter (unless both are gauges) that was
/// reset restarts from zero.
fn interpolate_histograms(
    a: &HistogramSample,
    b: &HistogramSample,
    t: i64,
) -> Option<FloatHistogram> {
    let fraction = (t - a.t) as f64 / (b.t - a.t) as f64;
    let counter = a.h.counter_reset_hint != CounterResetHint::Gauge
        || b.h.counter_reset_hint != CounterResetHint::Gauge;
    let mut h = (*b.h).clone();
    if counter && b.h.detect_reset(&a.h) {
        h.mul(fraction);
        return Some(h);
    }
    h.sub(&a.h).ok()?;
    h.mul(fraction);
    h.add(&a.h).ok()?;
    Some(h)
}
