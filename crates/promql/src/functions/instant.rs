//! Functions of instant vectors and scalars: math, clamping, rounding, time and date, label
//! manipulation, sorting, `absent`, `vector`, `scalar`, `timestamp`.

use meshlens_model::{Labels, MatchOp, METRIC_NAME};
use promql_parser::parser::Expr;
use regex::Regex;

use super::{scalar_arg, string_arg, vector_arg};
use crate::error::PromqlError;
use crate::eval::{merge_same_labels, unwrap_parens, Evaluator};
use crate::value::{Series, Val};

pub(crate) fn call(ev: &Evaluator, name: &str, args: &[&Expr]) -> Result<Val, PromqlError> {
    let steps = ev.steps();
    match name {
        "time" => {
            return Ok(Val::Scalar(
                ev.ts.iter().map(|t| *t as f64 / 1000.0).collect(),
            ))
        }
        "pi" => return Ok(Val::Scalar(vec![std::f64::consts::PI; steps])),
        // The query's own parameters, in seconds, the same at every step.
        "step" | "range" | "start" | "end" => {
            let ms = match name {
                "step" => ev.query_step,
                "range" => ev.query_end.saturating_sub(ev.query_start),
                "start" => ev.query_start,
                _ => ev.query_end,
            };
            return Ok(Val::Scalar(vec![ms as f64 / 1000.0; steps]));
        }
        "min_of" | "max_of" => {
            let a = scalar_arg(ev, args, 0, None, name)?;
            let b = scalar_arg(ev, args, 1, None, name)?;
            let pick = |x: f64, y: f64| match (x.is_nan() || y.is_nan(), name == "min_of") {
                (true, _) => f64::NAN,
                (false, true) => x.min(y),
                (false, false) => x.max(y),
            };
            return Ok(Val::Scalar(
                a.iter().zip(&b).map(|(x, y)| pick(*x, *y)).collect(),
            ));
        }
        "vector" => {
            let s = scalar_arg(ev, args, 0, None, name)?;
            return Ok(Val::Vector(vec![Series::floats(
                Labels::empty(),
                s.into_iter().map(Some).collect(),
            )]));
        }
        "scalar" => {
            let v = vector_arg(ev, args, 0, name)?;
            return Ok(Val::Scalar(
                (0..steps)
                    .map(|i| {
                        let mut present = v.iter().filter_map(|s| s.points[i]);
                        match (present.next(), present.next()) {
                            (Some(x), None) => x,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ));
        }
        "absent" => {
            let v = vector_arg(ev, args, 0, name)?;
            let points: Vec<Option<f64>> = (0..steps)
                .map(|i| {
                    v.iter()
                        .all(|s| s.points[i].is_none() && s.hist(i).is_none())
                        .then_some(1.0)
                })
                .collect();
            let out = if points.iter().any(Option::is_some) {
                vec![Series::floats(absent_labels(args.first().copied()), points)]
            } else {
                Vec::new()
            };
            return Ok(Val::Vector(out));
        }
        "timestamp" => return timestamp(ev, args),
        "start_timestamp" => return start_timestamp(ev, args),
        "label_replace" => return label_replace(ev, args),
        "label_join" => return label_join(ev, args),
        "sort" | "sort_desc" => {
            let mut v = vector_arg(ev, args, 0, name)?;
            ev.warn_if_range_sort();
            if steps == 1 {
                // Sorting is by float value: native histograms are left out.
                v.retain(|s| s.points[0].is_some());
                let desc = name == "sort_desc";
                v.sort_by(|a, b| {
                    let (x, y) = (
                        a.points[0].unwrap_or(f64::NAN),
                        b.points[0].unwrap_or(f64::NAN),
                    );
                    match (x.is_nan(), y.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ if desc => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
                        _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                    }
                });
            }
            return Ok(Val::Vector(v));
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = vector_arg(ev, args, 0, name)?;
            ev.warn_if_range_sort();
            let labels: Vec<String> = (1..args.len())
                .map(|i| string_arg(args, i, name))
                .collect::<Result<_, _>>()?;
            let desc = name == "sort_by_label_desc";
            v.sort_by(|a, b| {
                let mut ord = std::cmp::Ordering::Equal;
                for l in &labels {
                    ord = natural_cmp(a.labels.get(l).unwrap_or(""), b.labels.get(l).unwrap_or(""));
                    if ord != std::cmp::Ordering::Equal {
                        break;
                    }
                }
                if ord == std::cmp::Ordering::Equal {
                    ord = a.labels.cmp(&b.labels);
                }
                if desc {
                    ord.reverse()
                } else {
                    ord
                }
            });
            return Ok(Val::Vector(v));
        }
        _ => {}
    }
    // Value-mapping functions: f(value, params...) per point, name dropped.
    let date_fn = matches!(
        name,
        "day_of_month"
            | "day_of_week"
            | "day_of_year"
            | "days_in_month"
            | "hour"
            | "minute"
            | "month"
            | "year"
    );
    let input = if date_fn && args.is_empty() {
        vec![Series::floats(
            Labels::empty(),
            ev.ts.iter().map(|t| Some(*t as f64 / 1000.0)).collect(),
        )]
    } else {
        vector_arg(ev, args, 0, name)?
    };
    let p1 = match name {
        "clamp" | "clamp_min" | "clamp_max" => Some(scalar_arg(ev, args, 1, None, name)?),
        "round" => Some(scalar_arg(ev, args, 1, Some(1.0), name)?),
        _ => None,
    };
    let p2 = if name == "clamp" {
        Some(scalar_arg(ev, args, 2, None, name)?)
    } else {
        None
    };
    let f: fn(f64) -> f64 = match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sqrt" => f64::sqrt,
        "sgn" => |v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        },
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => f64::to_degrees,
        "rad" => f64::to_radians,
        "day_of_month" => |v| date_part(v, DatePart::DayOfMonth),
        "day_of_week" => |v| date_part(v, DatePart::DayOfWeek),
        "day_of_year" => |v| date_part(v, DatePart::DayOfYear),
        "days_in_month" => |v| date_part(v, DatePart::DaysInMonth),
        "hour" => |v| date_part(v, DatePart::Hour),
        "minute" => |v| date_part(v, DatePart::Minute),
        "month" => |v| date_part(v, DatePart::Month),
        "year" => |v| date_part(v, DatePart::Year),
        "clamp" | "clamp_min" | "clamp_max" | "round" => |v| v,
        other => {
            return Err(PromqlError::exec(format!(
                "function {other:?} is not supported"
            )))
        }
    };
    let mut out = Vec::with_capacity(input.len());
    for s in input {
        let points: Vec<Option<f64>> = s
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let v = (*p)?;
                match name {
                    "clamp" => {
                        let (lo, hi) = (p1.as_ref()?[i], p2.as_ref()?[i]);
                        if hi < lo {
                            return None;
                        }
                        // As Go's math.Max/Min: a NaN bound makes NaN.
                        Some(go_max(lo, go_min(hi, v)))
                    }
                    "clamp_min" => Some(go_max(v, p1.as_ref()?[i])),
                    "clamp_max" => Some(go_min(v, p1.as_ref()?[i])),
                    "round" => {
                        let inv = 1.0 / p1.as_ref()?[i];
                        Some((v * inv + 0.5).floor() / inv)
                    }
                    _ => Some(f(v)),
                }
            })
            .collect();
        if points.iter().any(Option::is_some) {
            let (labels, drop_name) = crate::value::name_dropped(s.labels, ev.delayed_names);
            out.push(Series {
                labels,
                points,
                hists: Vec::new(),
                drop_name,
            });
        }
    }
    Ok(Val::Vector(merge_same_labels(out)?))
}

fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Labels of `absent(...)`: the selector's equality matchers (each name once).
pub(crate) fn absent_labels(arg: Option<&Expr>) -> Labels {
    let vs = match arg.map(unwrap_parens) {
        Some(Expr::VectorSelector(vs)) => vs,
        Some(Expr::MatrixSelector(ms)) => &ms.vs,
        _ => return Labels::empty(),
    };
    let Ok(matchers) = crate::eval::selector_matchers(vs) else {
        return Labels::empty();
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut dup: Vec<String> = Vec::new();
    for (i, m) in matchers.iter().enumerate() {
        if m.name == "__name__" {
            continue;
        }
        if matchers
            .iter()
            .enumerate()
            .any(|(j, o)| j != i && o.name == m.name)
        {
            dup.push(m.name.clone());
        }
        if m.op == MatchOp::Equal {
            pairs.push((m.name.clone(), m.value.clone()));
        }
    }
    pairs.retain(|(n, _)| !dup.contains(n));
    Labels::from_pairs(pairs)
}

fn timestamp(ev: &Evaluator, args: &[&Expr]) -> Result<Val, PromqlError> {
    // Of a plain selector: the timestamps of the samples themselves.
    if let Some(Expr::VectorSelector(vs)) = args.first().map(|a| unwrap_parens(a)) {
        let source = ev.latest_source(vs, true)?;
        return Ok(Val::Vector(merge_same_labels(ev.collect(source)?)?));
    }
    let v = vector_arg(ev, args, 0, "timestamp")?;
    let out = v
        .into_iter()
        .map(|s| {
            let points = s
                .points
                .iter()
                .zip(&ev.ts)
                .map(|(p, t)| p.map(|_| *t as f64 / 1000.0))
                .collect();
            let (labels, drop_name) = crate::value::name_dropped(s.labels, ev.delayed_names);
            Series {
                labels,
                points,
                hists: Vec::new(),
                drop_name,
            }
        })
        .collect();
    Ok(Val::Vector(merge_same_labels(out)?))
}

/// `start_timestamp(v)`: the start time (seconds, 0 for none) of each series' sample, as
/// storage gives it; only a plain selector's samples have one, so of any other expression,
/// and with start timestamps off ([`crate::Engine::with_start_timestamps`]), the result is
/// empty, as in Prometheus.
fn start_timestamp(ev: &Evaluator, args: &[&Expr]) -> Result<Val, PromqlError> {
    if let Some(Expr::VectorSelector(vs)) = args.first().map(|a| unwrap_parens(a)) {
        if ev.start_times {
            let source = ev.start_time_source(vs)?;
            return Ok(Val::Vector(merge_same_labels(ev.collect(source)?)?));
        }
        return Ok(Val::Vector(Vec::new()));
    }
    // Evaluated for its errors and annotations; its values have no start times.
    vector_arg(ev, args, 0, "start_timestamp")?;
    Ok(Val::Vector(Vec::new()))
}

fn label_replace(ev: &Evaluator, args: &[&Expr]) -> Result<Val, PromqlError> {
    let v = vector_arg(ev, args, 0, "label_replace")?;
    let dst = string_arg(args, 1, "label_replace")?;
    let repl = string_arg(args, 2, "label_replace")?;
    let src = string_arg(args, 3, "label_replace")?;
    let re_src = string_arg(args, 4, "label_replace")?;
    let re = Regex::new(&format!("^(?s:{re_src})$")).map_err(|e| {
        PromqlError::exec(format!(
            "invalid regular expression in label_replace(): {re_src}: {e}"
        ))
    })?;
    if !meshlens_model::labels::is_valid_label_name(&dst) {
        return Err(PromqlError::exec(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let out = v
        .into_iter()
        .map(|mut s| {
            let value = s.labels.get(&src).unwrap_or("").to_string();
            if let Some(caps) = re.captures(&value) {
                let mut res = String::new();
                caps.expand(&repl, &mut res);
                let mut b = s.labels.builder();
                b.set(dst.clone(), res);
                s.labels = b.build();
                // A name set here stays (delayed name removal).
                if dst == METRIC_NAME {
                    s.drop_name = false;
                }
            }
            s
        })
        .collect();
    Ok(Val::Vector(merge_same_labels(out)?))
}

fn label_join(ev: &Evaluator, args: &[&Expr]) -> Result<Val, PromqlError> {
    let v = vector_arg(ev, args, 0, "label_join")?;
    let dst = string_arg(args, 1, "label_join")?;
    let sep = string_arg(args, 2, "label_join")?;
    let srcs: Vec<String> = (3..args.len())
        .map(|i| string_arg(args, i, "label_join"))
        .collect::<Result<_, _>>()?;
    if !meshlens_model::labels::is_valid_label_name(&dst) {
        return Err(PromqlError::exec(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let out = v
        .into_iter()
        .map(|mut s| {
            let joined = srcs
                .iter()
                .map(|l| s.labels.get(l).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(&sep);
            let mut b = s.labels.builder();
            b.set(dst.clone(), joined);
            s.labels = b.build();
            if dst == METRIC_NAME {
                s.drop_name = false;
            }
            s
        })
        .collect();
    Ok(Val::Vector(merge_same_labels(out)?))
}

/// Compares strings with digit runs compared by numeric value ("a2" < "a10").
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, _) => return std::cmp::Ordering::Less,
            (_, None) => return std::cmp::Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let nx = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let ny = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (dx, dy) = (&x[..nx], &y[..ny]);
                let tx = dx.iter().skip_while(|c| **c == b'0').count();
                let ty = dy.iter().skip_while(|c| **c == b'0').count();
                let ord = tx.cmp(&ty).then_with(|| dx[nx - tx..].cmp(&dy[ny - ty..]));
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
                x = &x[nx..];
                y = &y[ny..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

#[derive(Clone, Copy)]
enum DatePart {
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    DaysInMonth,
    Hour,
    Minute,
    Month,
    Year,
}

fn date_part(v: f64, part: DatePart) -> f64 {
    if !v.is_finite() {
        return f64::NAN;
    }
    let secs = v.trunc() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = meshlens_model::time::civil_from_days(days);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    (match part {
        DatePart::DayOfMonth => i64::from(d),
        DatePart::DayOfWeek => (days + 4).rem_euclid(7),
        DatePart::DayOfYear => month_days[..(m - 1) as usize].iter().sum::<i64>() + i64::from(d),
        DatePart::DaysInMonth => month_days[(m - 1) as usize],
        DatePart::Hour => rem / 3600,
        DatePart::Minute => rem % 3600 / 60,
        DatePart::Month => i64::from(m),
        DatePart::Year => y,
    }) as f64
}
