//! Functions of a range vector: rate and friends, *_over_time, regression, smoothing.

use meshlens_model::Sample;
use promql_parser::parser::Expr;

use super::{quantile, scalar_arg};
use crate::error::PromqlError;
use crate::eval::aggregate::{mean, variance, Kahan};
use crate::eval::{unwrap_parens, Evaluator};
use crate::value::{Series, Val};

/// Evaluates `name` when it takes a range vector; `None` for other functions.
pub(crate) fn call(ev: &Evaluator, name: &str, args: &[&Expr]) -> Result<Option<Val>, PromqlError> {
    let matrix_pos = match name {
        "quantile_over_time" => 1,
        "rate"
        | "irate"
        | "increase"
        | "delta"
        | "idelta"
        | "deriv"
        | "predict_linear"
        | "resets"
        | "changes"
        | "avg_over_time"
        | "min_over_time"
        | "max_over_time"
        | "sum_over_time"
        | "count_over_time"
        | "stddev_over_time"
        | "stdvar_over_time"
        | "last_over_time"
        | "present_over_time"
        | "absent_over_time"
        | "mad_over_time"
        | "holt_winters"
        | "double_exponential_smoothing" => 0,
        _ => return Ok(None),
    };
    let m = ev.eval_matrix(
        args.get(matrix_pos)
            .ok_or_else(|| PromqlError::exec(format!("{name}: missing range vector")))?,
    )?;
    let steps = ev.steps();
    if name == "absent_over_time" {
        let points: Vec<Option<f64>> = (0..steps)
            .map(|i| {
                m.series
                    .iter()
                    .all(|s| m.window(s, i).is_empty())
                    .then_some(1.0)
            })
            .collect();
        let labels = super::instant::absent_labels(args.first().copied());
        let out = if points.iter().any(Option::is_some) {
            vec![Series { labels, points }]
        } else {
            Vec::new()
        };
        return Ok(Some(Val::Vector(out)));
    }
    let p1 = match name {
        "quantile_over_time" => Some(scalar_arg(ev, args, 0, None, name)?),
        "predict_linear" | "holt_winters" | "double_exponential_smoothing" => {
            Some(scalar_arg(ev, args, 1, None, name)?)
        }
        _ => None,
    };
    let p2 = match name {
        "holt_winters" | "double_exponential_smoothing" => {
            Some(scalar_arg(ev, args, 2, None, name)?)
        }
        _ => None,
    };
    if let (Some(sf), Some(tf)) = (&p1, &p2) {
        for (s, t) in sf.iter().zip(tf) {
            if *s <= 0.0 || *s >= 1.0 {
                return Err(PromqlError::exec(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {s}"
                )));
            }
            if *t <= 0.0 || *t >= 1.0 {
                return Err(PromqlError::exec(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {t}"
                )));
            }
        }
    }
    if matches!(name, "rate" | "increase" | "irate") {
        for s in &m.series {
            if let Some(metric) = s.labels.metric_name() {
                if !["_total", "_sum", "_count", "_bucket"]
                    .iter()
                    .any(|sfx| metric.ends_with(sfx))
                {
                    ev.info(format!("metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {metric:?}"));
                }
            }
        }
    }
    if let Some(q) = p1.as_ref().filter(|_| name == "quantile_over_time") {
        if let Some(bad) = q.iter().find(|q| !(0.0..=1.0).contains(*q)) {
            ev.warn(format!(
                "quantile value should be between 0 and 1, got {bad}"
            ));
        }
    }
    let range_s = m.range as f64 / 1000.0;
    let prom2 = ev.opts.closed_ranges;
    let mut out = Vec::with_capacity(m.series.len());
    let mut scratch = Vec::new();
    for s in &m.series {
        ev.check_deadline()?;
        let mut points = vec![None; steps];
        for (i, point) in points.iter_mut().enumerate() {
            let w = m.window(s, i);
            if w.is_empty() {
                continue;
            }
            let end = m.ends[i];
            *point = match name {
                "rate" => extrapolated(w, end - m.range, end, true, true, range_s, prom2),
                "increase" => extrapolated(w, end - m.range, end, true, false, range_s, prom2),
                "delta" => extrapolated(w, end - m.range, end, false, false, range_s, prom2),
                "irate" => instant_delta(w, true),
                "idelta" => instant_delta(w, false),
                "deriv" => (w.len() >= 2).then(|| linear_regression(w, w[0].t).0),
                "predict_linear" => (w.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(w, ev.ts[i]);
                    intercept + slope * p1.as_ref().map_or(0.0, |p| p[i])
                }),
                "resets" => Some(w.windows(2).filter(|p| p[1].v < p[0].v).count() as f64),
                "changes" => Some(
                    w.windows(2)
                        .filter(|p| !(p[1].v == p[0].v || (p[1].v.is_nan() && p[0].v.is_nan())))
                        .count() as f64,
                ),
                "avg_over_time" => {
                    scratch.clear();
                    scratch.extend(w.iter().map(|x| x.v));
                    Some(mean(&scratch))
                }
                "sum_over_time" => {
                    let mut k = Kahan::default();
                    w.iter().for_each(|x| k.add(x.v));
                    Some(k.value())
                }
                "min_over_time" => Some(w.iter().map(|x| x.v).fold(f64::NAN, |m, v| {
                    if m > v || m.is_nan() {
                        v
                    } else {
                        m
                    }
                })),
                "max_over_time" => Some(w.iter().map(|x| x.v).fold(f64::NAN, |m, v| {
                    if m < v || m.is_nan() {
                        v
                    } else {
                        m
                    }
                })),
                "count_over_time" => Some(w.len() as f64),
                "last_over_time" => w.last().map(|x| x.v),
                "present_over_time" => Some(1.0),
                "stddev_over_time" | "stdvar_over_time" => {
                    scratch.clear();
                    scratch.extend(w.iter().map(|x| x.v));
                    let var = variance(&scratch);
                    Some(if name == "stddev_over_time" {
                        var.sqrt()
                    } else {
                        var
                    })
                }
                "quantile_over_time" => {
                    scratch.clear();
                    scratch.extend(w.iter().map(|x| x.v));
                    Some(quantile(
                        p1.as_ref().map_or(f64::NAN, |p| p[i]),
                        &mut scratch,
                    ))
                }
                "mad_over_time" if w.iter().any(|x| x.v.is_nan()) => Some(f64::NAN),
                "mad_over_time" => {
                    scratch.clear();
                    scratch.extend(w.iter().map(|x| x.v));
                    let median = quantile(0.5, &mut scratch);
                    let mut dev: Vec<f64> = scratch.iter().map(|v| (v - median).abs()).collect();
                    Some(quantile(0.5, &mut dev))
                }
                "holt_winters" | "double_exponential_smoothing" => double_exponential(
                    w,
                    p1.as_ref().map_or(0.5, |p| p[i]),
                    p2.as_ref().map_or(0.5, |p| p[i]),
                ),
                _ => None,
            };
        }
        if points.iter().any(Option::is_some) {
            let labels = if name == "last_over_time" {
                s.labels.clone()
            } else {
                s.labels.without_metric_name()
            };
            out.push(Series { labels, points });
        }
    }
    let _ = unwrap_parens;
    Ok(Some(Val::Vector(crate::eval::merge_same_labels(out)?)))
}

/// Prometheus's extrapolated rate/increase/delta over the window from `start` to `end`.
fn extrapolated(
    w: &[Sample],
    start: i64,
    end: i64,
    counter: bool,
    rate: bool,
    range_s: f64,
    prom2: bool,
) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (first, last) = (w[0], w[w.len() - 1]);
    let mut result = last.v - first.v;
    if counter {
        let mut prev = first.v;
        for s in &w[1..] {
            if s.v < prev {
                result += prev;
            }
            prev = s.v;
        }
    }
    let mut to_start = (first.t - start) as f64 / 1000.0;
    let mut to_end = (end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_step = sampled / (w.len() - 1) as f64;
    let threshold = avg_step * 1.1;
    // Prometheus 3 caps the gap at the threshold first and then at the counter's zero
    // point; Prometheus 2 took the zero point first, so a zero point just under the
    // threshold is extrapolated to rather than half a step.
    if !prom2 && to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if prom2 && to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if rate {
        factor /= range_s;
    }
    Some(result * factor)
}

fn instant_delta(w: &[Sample], rate: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (prev, last) = (w[w.len() - 2], w[w.len() - 1]);
    let dt = (last.t - prev.t) as f64 / 1000.0;
    if dt == 0.0 {
        return None;
    }
    if rate {
        let diff = if last.v < prev.v {
            last.v
        } else {
            last.v - prev.v
        };
        Some(diff / dt)
    } else {
        Some(last.v - prev.v)
    }
}

/// Least-squares slope and the intercept at `intercept_t`.
fn linear_regression(w: &[Sample], intercept_t: i64) -> (f64, f64) {
    let init = w[0].v;
    if w.iter().all(|s| s.v == init) {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let (mut sx, mut sy, mut sxy, mut sx2) = (
        Kahan::default(),
        Kahan::default(),
        Kahan::default(),
        Kahan::default(),
    );
    let n = w.len() as f64;
    for s in w {
        let x = (s.t - intercept_t) as f64 / 1000.0;
        sx.add(x);
        sy.add(s.v);
        sxy.add(x * s.v);
        sx2.add(x * x);
    }
    let (sx, sy, sxy, sx2) = (sx.value(), sy.value(), sxy.value(), sx2.value());
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn double_exponential(w: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, w[0].v);
    let mut b = w[1].v - w[0].v;
    for (i, s) in w.iter().enumerate().skip(1) {
        let x = sf * s.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}
