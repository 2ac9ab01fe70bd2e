//! Functions of a range vector: rate and friends, *_over_time, regression, smoothing.
//! Over a matrix selector they run series by series ([`crate::eval::stream`]); over a
//! subquery, over the subquery's series. Either way each series is computed for all steps
//! in one pass ([`super::rollup`]).

use promql_parser::parser::Expr;

use super::rollup::{RangeFn, Scratch};
use super::scalar_arg;
use crate::error::PromqlError;
use crate::eval::stream::hist_rollup;
use crate::eval::{merge_same_labels, unwrap_parens, Evaluator};
use crate::value::{Series, Val};

/// Evaluates `name` when it takes a range vector; `None` for other functions.
pub(crate) fn call(ev: &Evaluator, name: &str, args: &[&Expr]) -> Result<Option<Val>, PromqlError> {
    let Some(f) = RangeFn::parse(name) else {
        return Ok(None);
    };
    let arg = *args
        .get(f.matrix_arg())
        .ok_or_else(|| PromqlError::exec(format!("{name}: missing range vector")))?;
    if f == RangeFn::AbsentOverTime {
        return absent_over_time(ev, args, arg).map(Some);
    }
    if let Expr::MatrixSelector(ms) = unwrap_parens(arg) {
        if let Some(ext) = crate::extended_syntax::extension_of(&ms.vs) {
            return super::extended::range_call(ev, f, name, ms, ext).map(Some);
        }
        let params = range_params(ev, f, args)?;
        let mut source = ev.rollup_source(ms, f, params)?;
        source.call = ev.current_call().map(|call| (call, f.matrix_arg()));
        return Ok(Some(Val::Vector(merge_same_labels(ev.collect(source)?)?)));
    }
    let m = ev.eval_matrix(arg)?;
    let params = range_params(ev, f, args)?;
    if f.wants_counter() {
        for s in &m.series {
            if let Some(metric) = s.labels.metric_name() {
                if !["_total", "_sum", "_count", "_bucket"]
                    .iter()
                    .any(|sfx| metric.ends_with(sfx))
                {
                    ev.info_at(format!("metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {metric:?}"), f.matrix_arg());
                }
            }
        }
    }
    let rollup = super::rollup::Rollup {
        f,
        range: m.range,
        ends: &m.ends,
        ts: &ev.ts,
        closed: m.closed,
        p1: params.p1.as_deref(),
        p2: params.p2.as_deref(),
    };
    let mut out = Vec::with_capacity(m.series.len());
    let mut scratch = Scratch::default();
    for s in &m.series {
        ev.check_deadline()?;
        let mut points = Vec::new();
        rollup.eval(&s.samples, &mut scratch, &mut points);
        let hists = if s.hists.is_empty() {
            Vec::new()
        } else {
            let mut notes = super::native::Notes::default();
            let metric = s.labels.metric_name().unwrap_or("");
            let h = hist_rollup(
                &rollup,
                &s.samples,
                &s.hists,
                // A subquery's values carry no start times.
                super::native::StartTimes::default(),
                metric,
                &mut points,
                &mut notes,
            );
            notes
                .warnings
                .into_iter()
                .for_each(|w| ev.warn_at(w, f.matrix_arg()));
            notes
                .infos
                .into_iter()
                .for_each(|i| ev.info_at(i, f.matrix_arg()));
            h
        };
        if points.iter().any(Option::is_some) || hists.iter().any(Option::is_some) {
            // A subquery's series may have its name to go already.
            let (labels, drop_name) = if f.keeps_name() {
                (s.labels.clone(), s.drop_name)
            } else {
                crate::value::name_dropped(s.labels.clone(), ev.delayed_names)
            };
            out.push(Series {
                labels,
                points,
                hists,
                drop_name,
            });
        }
    }
    Ok(Some(Val::Vector(merge_same_labels(out)?)))
}

/// A range function's scalar arguments, one value per step: `quantile_over_time`'s φ,
/// `predict_linear`'s t, smoothing's factors.
#[derive(Default)]
pub(crate) struct RangeParams {
    pub p1: Option<Vec<f64>>,
    pub p2: Option<Vec<f64>>,
}

/// A range function's scalar arguments, checked (smoothing factors strictly between 0 and
/// 1; a warning for a quantile outside [0, 1]).
pub(crate) fn range_params(
    ev: &Evaluator,
    f: RangeFn,
    args: &[&Expr],
) -> Result<RangeParams, PromqlError> {
    let name = match f {
        RangeFn::QuantileOverTime => "quantile_over_time",
        RangeFn::PredictLinear => "predict_linear",
        RangeFn::DoubleExponential => "double_exponential_smoothing",
        _ => return Ok(RangeParams::default()),
    };
    let p1 = match f {
        RangeFn::QuantileOverTime => scalar_arg(ev, args, 0, None, name)?,
        _ => scalar_arg(ev, args, 1, None, name)?,
    };
    let p2 = match f {
        RangeFn::DoubleExponential => Some(scalar_arg(ev, args, 2, None, name)?),
        _ => None,
    };
    if let Some(tf) = &p2 {
        for (s, t) in p1.iter().zip(tf) {
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
    if f == RangeFn::QuantileOverTime {
        if let Some(bad) = p1.iter().find(|q| !(0.0..=1.0).contains(*q)) {
            ev.warn_at(
                format!("quantile value should be between 0 and 1, got {bad}"),
                0,
            );
        }
    }
    Ok(RangeParams { p1: Some(p1), p2 })
}

/// 1 at the steps where no series has a sample in its window.
fn absent_over_time(ev: &Evaluator, args: &[&Expr], arg: &Expr) -> Result<Val, PromqlError> {
    let m = ev.eval_matrix(arg)?;
    let points: Vec<Option<f64>> = (0..ev.steps())
        .map(|i| {
            m.series
                .iter()
                .all(|s| m.window(s, i).is_empty() && m.hist_window(s, i).is_empty())
                .then_some(1.0)
        })
        .collect();
    let labels = super::instant::absent_labels(args.first().copied());
    let out = if points.iter().any(Option::is_some) {
        vec![Series::floats(labels, points)]
    } else {
        Vec::new()
    };
    Ok(Val::Vector(out))
}
