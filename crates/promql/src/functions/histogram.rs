//! `histogram_quantile` over classic buckets (series with an `le` label).

use std::collections::HashMap;

use meshlens_model::Labels;
use promql_parser::parser::Expr;

use super::{scalar_arg, vector_arg};
use crate::error::PromqlError;
use crate::eval::Evaluator;
use crate::value::{Series, Val};

pub(crate) fn histogram_quantile(ev: &Evaluator, args: &[&Expr]) -> Result<Val, PromqlError> {
    let q = scalar_arg(ev, args, 0, None, "histogram_quantile")?;
    let v = vector_arg(ev, args, 1, "histogram_quantile")?;
    if let Some(bad) = q.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        ev.warn_at(
            format!("quantile value should be between 0 and 1, got {bad}"),
            0,
        );
    }
    Ok(Val::Vector(per_histogram(
        ev,
        v,
        1,
        |step, h| super::native::quantile(q[step], h),
        |step, h| NanObservations::of(h)?.quantile_info(q[step], h),
        |step, name, buckets| quantile_noting_fixes(ev, 1, q[step], name, buckets),
    )))
}

/// [`bucket_quantile`] that tells the query, with Prometheus's info annotation, when the
/// buckets of metric `name` had to be repaired (a count lower than a smaller bucket's).
/// `arg`: the call's argument holding the buckets (for the annotation's position).
pub(crate) fn quantile_noting_fixes(
    ev: &Evaluator,
    arg: usize,
    q: f64,
    name: &str,
    buckets: &mut [(f64, f64)],
) -> f64 {
    let (v, forced) = bucket_quantile_fixing(q, buckets);
    if forced {
        ev.info_at(
            format!(
                "input to histogram_quantile needed to be fixed for monotonicity (see \
             https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) \
             for metric name {name:?}"
            ),
            arg,
        );
    }
    v
}

/// A float per step from each histogram of `v`: native ones by `native`, classic ones (the
/// series of one metric and label set but `le`, grouped) by `classic` over their metric name
/// and (upper bound, cumulative count) pairs. Results drop the metric name, so two metrics
/// with the same labels give two results with one label set (which the query refuses, as
/// Prometheus does). Series without a usable `le` are left out with a warning; where a
/// native histogram and classic buckets of the same metric and labels meet at a step,
/// neither is evaluated there, with Prometheus's warning. `arg`: the call's argument `v`
/// came from (for the warnings' position). `nan_info`: an info to give (with the metric name)
/// for a native histogram at a step, see [`NanObservations`].
pub(crate) fn per_histogram(
    ev: &Evaluator,
    v: Vec<Series>,
    arg: usize,
    native: impl Fn(usize, &meshlens_model::FloatHistogram) -> f64,
    nan_info: impl Fn(usize, &meshlens_model::FloatHistogram) -> Option<&'static str>,
    classic: impl Fn(usize, &str, &mut [(f64, f64)]) -> f64,
) -> Vec<Series> {
    let (mut hists, v): (Vec<Series>, Vec<Series>) = v.into_iter().partition(Series::has_hists);
    for s in &hists {
        for (step, h) in s.hists.iter().enumerate() {
            if let Some(info) = h.as_ref().and_then(|h| nan_info(step, h)) {
                let info = match s.labels.metric_name() {
                    Some(name) if !name.is_empty() => format!("{info} for metric name {name:?}"),
                    _ => info.to_string(),
                };
                ev.info_at(info, arg);
            }
        }
    }
    let native_of: HashMap<Labels, usize> = hists
        .iter()
        .enumerate()
        .map(|(i, h)| (h.labels.clone(), i))
        .collect();
    let mut groups: Vec<(Labels, Vec<(f64, usize)>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for (i, s) in v.iter().enumerate() {
        let Some(le) = s.labels.get("le").and_then(parse_le) else {
            let name = s.labels.metric_name().unwrap_or("");
            let le = s.labels.get("le").unwrap_or("");
            ev.warn_at(format!("bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {name:?}"), arg);
            continue;
        };
        let mut b = s.labels.builder();
        b.del("le");
        let key = b.build();
        let g = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push((le, i));
    }
    let steps = ev.steps();
    let mut out = Vec::new();
    for (key, members) in groups {
        let name = key.metric_name().unwrap_or("").to_string();
        let twin = native_of.get(&key).copied();
        let mut points = vec![None; steps];
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for (step, point) in points.iter_mut().enumerate() {
            buckets.clear();
            buckets.extend(
                members
                    .iter()
                    .filter_map(|(le, i)| v[*i].points[step].map(|c| (*le, c))),
            );
            if buckets.is_empty() {
                continue;
            }
            if let Some(n) = twin.filter(|&n| hists[n].hist(step).is_some()) {
                ev.warn_at(format!(
                    "vector contains a mix of classic and native histograms for metric name {name:?}"
                ), arg);
                hists[n].hists[step] = None;
                continue;
            }
            *point = Some(classic(step, &name, &mut buckets));
        }
        if points.iter().any(Option::is_some) {
            let (labels, drop_name) = crate::value::name_dropped(key, ev.delayed_names);
            out.push(Series {
                labels,
                points,
                hists: Vec::new(),
                drop_name,
            });
        }
    }
    let mut natives = super::of_histograms(hists, ev.delayed_names, native);
    natives.append(&mut out);
    natives
}

/// Observations of NaN in a native histogram: counted in its count and sum (which turns
/// NaN), in no bucket. Prometheus ranks them above every bucket and says so in an info.
pub(crate) struct NanObservations {
    /// Observations in the buckets (zero bucket included).
    in_buckets: f64,
}

impl NanObservations {
    /// `None` unless `h` has some: a NaN sum, and fewer observations in the buckets than in
    /// the count (with only -Inf and +Inf observed the sum is NaN too, but the buckets hold
    /// all). The buckets are added up only for a NaN sum.
    pub fn of(h: &meshlens_model::FloatHistogram) -> Option<Self> {
        if !h.sum.is_nan() {
            return None;
        }
        let in_buckets = h.zero_count
            + h.positive_buckets.iter().sum::<f64>()
            + h.negative_buckets.iter().sum::<f64>();
        (in_buckets < h.count).then_some(NanObservations { in_buckets })
    }

    /// `histogram_quantile`'s info: the quantile's rank lies past the buckets (the result
    /// is NaN), or within them (the result is skewed higher).
    pub fn quantile_info(
        &self,
        q: f64,
        h: &meshlens_model::FloatHistogram,
    ) -> Option<&'static str> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        Some(if q * h.count > self.in_buckets {
            "input to histogram_quantile has NaN observations, result is NaN"
        } else {
            "input to histogram_quantile has NaN observations, result is skewed higher"
        })
    }

    /// `histogram_fraction`'s info.
    pub fn fraction_info(&self) -> &'static str {
        "input to histogram_fraction has NaN observations, which are excluded from all fractions"
    }
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        _ => s.parse().ok(),
    }
}

/// Prometheus's bucketQuantile over classic buckets: `b` holds (upper bound, cumulative
/// count) pairs in any order (sorted in place), and must end at `+Inf`. Equal bounds are
/// summed and decreasing counts repaired as Prometheus does, so every caller (PromQL, the
/// service graph's latency figures) gets the same number. NaN when there is no answer
/// (no `+Inf` bucket, no observations, q is NaN).
pub fn bucket_quantile(q: f64, b: &mut [(f64, f64)]) -> f64 {
    bucket_quantile_fixing(q, b).0
}

/// [`bucket_quantile`], and whether a count had to be raised to a smaller bucket's (by
/// more than floating-point noise): what Prometheus reports as forced monotonicity.
pub(crate) fn bucket_quantile_fixing(q: f64, b: &mut [(f64, f64)]) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    let Some(mut b) = by_bound(b) else {
        return (f64::NAN, false);
    };
    // Counts must not decrease; tiny floating-point deltas are smoothed.
    let mut forced = false;
    let mut prev = b[0].1;
    for bucket in b.iter_mut().skip(1) {
        let curr = bucket.1;
        if curr == prev {
            continue;
        }
        if (curr - prev).abs() <= 1e-12 * curr.abs().max(prev.abs()) {
            bucket.1 = prev;
            continue;
        }
        if curr < prev {
            bucket.1 = prev;
            forced = true;
            continue;
        }
        prev = curr;
    }
    (quantile_of_monotonic(q, &b), forced)
}

/// The interpolation over repaired buckets (sorted, merged, counts not decreasing).
fn quantile_of_monotonic(q: f64, b: &[(f64, f64)]) -> f64 {
    if b.len() < 2 {
        return f64::NAN;
    }
    let observations = b[b.len() - 1].1;
    if observations == 0.0 || observations.is_nan() {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let idx = b[..b.len() - 1].partition_point(|x| x.1 < rank);
    if idx == b.len() - 1 {
        return b[b.len() - 2].0;
    }
    if idx == 0 && b[0].0 <= 0.0 {
        return b[0].0;
    }
    let (mut start, end, mut count) = (0.0, b[idx].0, b[idx].1);
    if idx > 0 {
        start = b[idx - 1].0;
        count -= b[idx - 1].1;
        rank -= b[idx - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Classic buckets sorted by bound, those with the same bound summed; None unless the last
/// is `+Inf` (without it there is no total).
fn by_bound(b: &mut [(f64, f64)]) -> Option<Vec<(f64, f64)>> {
    b.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal));
    if b.last().is_none_or(|l| l.0 != f64::INFINITY) {
        return None;
    }
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(b.len());
    for &(le, c) in b.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => merged.push((le, c)),
        }
    }
    Some(merged)
}

/// The share of observations between `lower` and `upper` in classic buckets (pairs as for
/// [`bucket_quantile`]), interpolating linearly inside the buckets the bounds fall in, as
/// Prometheus's `histogram_fraction` does. The first bucket is taken to start at 0 when its
/// bound is positive, else at -Inf; nothing is interpolated in a bucket with an infinite
/// bound. NaN without a `+Inf` bucket, without observations, or for a NaN bound.
pub fn bucket_fraction(lower: f64, upper: f64, b: &mut [(f64, f64)]) -> f64 {
    let Some(merged) = by_bound(b) else {
        return f64::NAN;
    };
    let count = merged[merged.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let mut rank = 0.0;
    let (mut lower_rank, mut upper_rank) = (None, None);
    let mut lower_bound = if merged[0].0 <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (i, &(upper_bound, c)) in merged.iter().enumerate() {
        if i > 0 {
            lower_bound = merged[i - 1].0;
        }
        let interpolate = |v: f64| {
            if lower_bound == f64::NEG_INFINITY {
                c
            } else {
                rank + (c - rank) * (v - lower_bound) / (upper_bound - lower_bound)
            }
        };
        if lower_rank.is_none() && lower_bound >= lower {
            lower_rank = Some(rank);
        }
        if upper_rank.is_none() && lower_bound >= upper {
            upper_rank = Some(rank);
        }
        if lower_rank.is_some() && upper_rank.is_some() {
            break;
        }
        if lower_rank.is_none() && lower_bound < lower && upper_bound > lower {
            lower_rank = Some(interpolate(lower));
        }
        if upper_rank.is_none() && lower_bound < upper && upper_bound > upper {
            upper_rank = Some(interpolate(upper));
        }
        if lower_rank.is_some() && upper_rank.is_some() {
            break;
        }
        rank = c;
    }
    let capped = |r: Option<f64>| r.filter(|r| *r <= count).unwrap_or(count);
    (capped(upper_rank) - capped(lower_rank)) / count
}
