//! PromQL functions. Dispatch by name; range-vector functions in `range.rs` (their
//! per-series, all-steps computation in `rollup.rs`), the rest in `instant.rs`,
//! classic-histogram quantiles in `histogram.rs`.

pub(crate) mod extended;
pub(crate) mod histogram;
pub(crate) mod info;
mod instant;
pub(crate) mod native;
mod range;
pub(crate) mod rollup;

pub(crate) use range::{range_params, RangeParams};

use promql_parser::parser::{Call, Expr};

use crate::error::PromqlError;
use crate::eval::{unwrap_parens, Evaluator};
use crate::value::{Series, Val};

pub(crate) fn call(ev: &Evaluator, c: &Call) -> Result<Val, PromqlError> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|b| b.as_ref()).collect();
    if let Some(v) = range::call(ev, name, &args)? {
        return Ok(v);
    }
    if name == "histogram_quantile" {
        return histogram::histogram_quantile(ev, &args);
    }
    if let Some(f) = native::property(name) {
        let v = vector_arg(ev, &args, 0, name)?;
        return Ok(Val::Vector(of_histograms(v, ev.delayed_names, |_, h| f(h))));
    }
    if name == "info" {
        return info::info(ev, &args);
    }
    if name == "histogram_quantiles" {
        return histogram_quantiles(ev, &args);
    }
    if name == "histogram_fraction" {
        let lower = scalar_arg(ev, &args, 0, None, name)?;
        let upper = scalar_arg(ev, &args, 1, None, name)?;
        let v = vector_arg(ev, &args, 2, name)?;
        return Ok(Val::Vector(histogram::per_histogram(
            ev,
            v,
            2,
            |i, h| native::fraction(lower[i], upper[i], h),
            |_, h| histogram::NanObservations::of(h).map(|n| n.fraction_info()),
            |i, _, buckets| histogram::bucket_fraction(lower[i], upper[i], buckets),
        )));
    }
    instant::call(ev, name, &args)
}

/// A float per step from each series' histograms (floats are left out), the metric name
/// dropped (`delayed`: marked to go at the end).
pub(crate) fn of_histograms(
    v: Vec<Series>,
    delayed: bool,
    f: impl Fn(usize, &meshlens_model::FloatHistogram) -> f64,
) -> Vec<Series> {
    v.into_iter()
        .filter(Series::has_hists)
        .map(|s| {
            let points = (0..s.points.len())
                .map(|i| s.hist(i).map(|h| f(i, h)))
                .collect();
            let (labels, drop_name) = crate::value::name_dropped(s.labels, delayed);
            Series {
                drop_name,
                ..Series::floats(labels, points)
            }
        })
        .collect()
}

/// The instant-vector argument `i`.
pub(crate) fn vector_arg(
    ev: &Evaluator,
    args: &[&Expr],
    i: usize,
    fname: &str,
) -> Result<Vec<Series>, PromqlError> {
    match args.get(i).map(|a| ev.eval(a)).transpose()? {
        Some(Val::Vector(v)) => Ok(v),
        _ => Err(PromqlError::exec(format!(
            "{fname}: argument {} must be an instant vector",
            i + 1
        ))),
    }
}

/// The scalar argument `i` (one value per step), or `default` when absent.
pub(crate) fn scalar_arg(
    ev: &Evaluator,
    args: &[&Expr],
    i: usize,
    default: Option<f64>,
    fname: &str,
) -> Result<Vec<f64>, PromqlError> {
    match args.get(i) {
        None => default
            .map(|d| vec![d; ev.steps()])
            .ok_or_else(|| PromqlError::exec(format!("{fname}: missing argument {}", i + 1))),
        Some(a) => match ev.eval(a)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(PromqlError::exec(format!(
                "{fname}: argument {} must be a scalar",
                i + 1
            ))),
        },
    }
}

pub(crate) fn string_arg(args: &[&Expr], i: usize, fname: &str) -> Result<String, PromqlError> {
    match args.get(i).map(|a| unwrap_parens(a)) {
        Some(Expr::StringLiteral(s)) => Ok(s.val.clone()),
        _ => Err(PromqlError::exec(format!(
            "{fname}: argument {} must be a string",
            i + 1
        ))),
    }
}

pub(crate) use meshlens_model::format_value as format_float;

/// Prometheus's quantile over unsorted values (sorts them in place).
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| {
        a.partial_cmp(b)
            .unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()).reverse())
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0) as usize;
    let upper = (lower + 1).min(values.len() - 1);
    let weight = rank - rank.floor();
    values[lower] * (1.0 - weight) + values[upper] * weight
}

/// `histogram_quantiles(v, "label", q1, q2, …)`: each quantile of each native histogram,
/// as a series with the quantile in `label`.
fn histogram_quantiles(ev: &Evaluator, args: &[&Expr]) -> Result<Val, PromqlError> {
    let name = "histogram_quantiles";
    let v = vector_arg(ev, args, 0, name)?;
    let label = string_arg(args, 1, name)?;
    if args.len() < 3 {
        return Err(PromqlError::exec(format!("{name}: no quantile given")));
    }
    let mut out = Vec::new();
    for i in 2..args.len() {
        let q = scalar_arg(ev, args, i, None, name)?;
        if let Some(bad) = q.iter().find(|q| !(0.0..=1.0).contains(*q)) {
            ev.warn_at(
                format!("quantile value should be between 0 and 1, got {bad}"),
                i,
            );
        }
        let value = openmetrics_float(q.first().copied().unwrap_or(f64::NAN));
        let quantiles = histogram::per_histogram(
            ev,
            v.clone(),
            0,
            |step, h| native::quantile(q[step], h),
            |step, h| histogram::NanObservations::of(h)?.quantile_info(q[step], h),
            |step, name, buckets| histogram::quantile_noting_fixes(ev, 0, q[step], name, buckets),
        );
        for mut s in quantiles {
            let mut b = s.labels.builder();
            b.set(label.clone(), value.clone());
            s.labels = b.build();
            out.push(s);
        }
    }
    Ok(Val::Vector(out))
}

/// A float as OpenMetrics writes label values: whole numbers keep a `.0`.
fn openmetrics_float(v: f64) -> String {
    let s = format_float(v);
    if v.is_finite() && !s.contains(['.', 'e', 'E']) {
        format!("{s}.0")
    } else {
        s
    }
}
