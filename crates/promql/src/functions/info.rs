//! `info(v [, selector])`: adds the data labels of info series (`target_info` unless the
//! selector names others) to the series of `v` they describe, matched on the identifying
//! labels `instance` and `job`, as Prometheus 3 does.
//!
//! At each step the info series are read at the time the first selector of `v` reads (its
//! `@` and offset, and those of the subqueries around it), so that `info(m offset 1h)` joins
//! the info of an hour ago. Where two info series of one metric match, the one with the
//! newer sample wins; a tie is an error, as are two info metrics giving one label different
//! values.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use meshlens_model::{is_stale_nan, FloatHistogram, LabelMatcher, Labels, MatchOp, METRIC_NAME};
use promql_parser::parser::{AtModifier, Expr, Offset};

use super::vector_arg;
use crate::error::PromqlError;
use crate::eval::{millis, selector_matchers, unwrap_parens, Evaluator};
use crate::value::{series_slot, Series, Val};

const TARGET_INFO: &str = "target_info";
const IDENTIFYING_LABELS: [&str; 2] = ["instance", "job"];

/// A matcher added to `info`'s label selector so that the parser, which refuses a selector
/// whose matchers all match the empty string, reads it (Prometheus allows that one there);
/// [`info`] leaves it out again.
const PLACEHOLDER: &str = "__meshlens_info_selector__";

/// `query` with [`PLACEHOLDER`] in the label selector of each `info` call; `None` if there is
/// none to add it to.
pub(crate) fn parsable(query: &str) -> Option<String> {
    let mut out = query.to_string();
    let mut changed = false;
    // From the last call back, so that earlier offsets stay valid.
    for at in crate::eval::positions::call_args(query, "info", 1)
        .into_iter()
        .rev()
    {
        if !query[at..].starts_with('{') {
            continue;
        }
        let Some(close) = crate::eval::positions::group_close(query, at) else {
            continue;
        };
        let empty = query[at + 1..close].trim().is_empty();
        let extra = format!("{}{PLACEHOLDER}!=\"\"", if empty { "" } else { ", " });
        out.insert_str(close, &extra);
        changed = true;
    }
    changed.then_some(out)
}

pub(crate) fn info(ev: &Evaluator, args: &[&Expr]) -> Result<Val, PromqlError> {
    let (at, offset) = args
        .first()
        .map(|a| reference_modifiers(a))
        .unwrap_or_default();
    let base = vector_arg(ev, args, 0, "info")?;
    let given = match args.get(1).map(|a| unwrap_parens(a)) {
        None => Vec::new(),
        Some(Expr::VectorSelector(vs)) => selector_matchers(vs)?
            .into_iter()
            .filter(|m| m.name != PLACEHOLDER)
            .collect(),
        Some(_) => {
            return Err(PromqlError::exec(
                "info: argument 2 must be a label selector",
            ))
        }
    };
    let (names, data): (Vec<LabelMatcher>, Vec<LabelMatcher>) =
        given.into_iter().partition(|m| m.name == METRIC_NAME);
    let names = effective_name_matchers(names)?;

    // Info series among the input are passed through as they are.
    let is_info = |s: &Series| {
        let name = s.labels.get(METRIC_NAME).unwrap_or("");
        names.iter().all(|m| m.matches(name))
    };
    let ignored: Vec<bool> = base.iter().map(is_info).collect();
    let mut wanted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in base
        .iter()
        .zip(&ignored)
        .filter(|(_, i)| !**i)
        .map(|(s, _)| s)
    {
        for l in IDENTIFYING_LABELS {
            if let Some(v) = s.labels.get(l).filter(|v| !v.is_empty()) {
                wanted.entry(l).or_default().insert(v);
            }
        }
    }
    let times: Vec<i64> = ev
        .effective_times(&at, &None)
        .into_iter()
        .map(|t| t.saturating_sub(offset))
        .collect();
    let infos = if wanted.is_empty() {
        Vec::new()
    } else {
        let mut matchers = Vec::new();
        for (label, values) in &wanted {
            let alternatives: Vec<String> = values.iter().map(|v| regex::escape(v)).collect();
            matchers.push(matcher(
                MatchOp::RegexMatch,
                label,
                &alternatives.join("|"),
            )?);
        }
        matchers.extend(data.iter().cloned());
        matchers.extend(names.iter().cloned());
        read_info_series(ev, &matchers, &times)?
    };

    let data_names: BTreeSet<&str> = data.iter().map(|m| m.name.as_str()).collect();
    let all_match_empty = data.iter().all(LabelMatcher::matches_empty);
    let info_names: BTreeSet<&str> = infos
        .iter()
        .map(|i| i.labels.get(METRIC_NAME).unwrap_or(""))
        .collect();
    let steps = ev.steps();
    let mut out: Vec<Series> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for step in 0..steps {
        // The info series current at this step, by signature; the newest sample wins.
        let mut current: HashMap<Signature, (usize, i64)> = HashMap::new();
        for (i, s) in infos.iter().enumerate() {
            let Some(t) = s.at[step] else { continue };
            let name = s.labels.get(METRIC_NAME).unwrap_or("");
            match current.entry(signature(name, &s.labels)) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert((i, t));
                }
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let (j, existing) = *e.get();
                    if t > existing {
                        e.insert((i, t));
                    } else if t == existing {
                        return Err(PromqlError::exec(format!(
                            "found duplicate series for info metric: existing {} @ {existing}, new {} @ {t}",
                            infos[j].labels, s.labels
                        )));
                    }
                }
            }
        }
        for (s, ignored) in base.iter().zip(&ignored) {
            let (v, h) = (s.points[step], s.hist(step).cloned());
            if v.is_none() && h.is_none() {
                continue;
            }
            let labels = if *ignored {
                s.labels.clone()
            } else {
                let mut extra: BTreeMap<&str, &str> = BTreeMap::new();
                let mut matched = false;
                for name in &info_names {
                    let Some(&(i, _)) = current.get(&signature(name, &s.labels)) else {
                        continue;
                    };
                    matched = true;
                    for l in &infos[i].labels {
                        if l.name == METRIC_NAME
                            || (!data_names.is_empty() && !data_names.contains(l.name.as_str()))
                        {
                            continue;
                        }
                        if extra.get(l.name.as_str()).is_some_and(|v| *v != l.value) {
                            return Err(PromqlError::exec(format!(
                                "conflicting label: {}",
                                l.name
                            )));
                        }
                        if s.labels.get(&l.name).is_none() {
                            extra.insert(&l.name, &l.value);
                        }
                    }
                }
                if !matched && !all_match_empty {
                    continue;
                }
                let mut b = s.labels.builder();
                for (n, v) in extra {
                    b.set(n.to_string(), v.to_string());
                }
                b.build()
            };
            let j = series_slot(&mut out, &mut index, labels, steps);
            let target = &mut out[j];
            target.drop_name |= s.drop_name;
            if target.points[step].is_some() || target.hist(step).is_some() {
                return Err(PromqlError::exec(
                    "vector cannot contain metrics with the same labelset",
                ));
            }
            target.points[step] = v;
            if let Some(h) = h {
                set_hist(target, step, steps, h);
            }
        }
    }
    ev.hold(out.len() * steps)?;
    Ok(Val::Vector(out))
}

fn set_hist(s: &mut Series, step: usize, steps: usize, h: Arc<FloatHistogram>) {
    if s.hists.is_empty() {
        s.hists = vec![None; steps];
    }
    s.hists[step] = Some(h);
}

fn matcher(op: MatchOp, name: &str, value: &str) -> Result<LabelMatcher, PromqlError> {
    LabelMatcher::new(op, name.to_string(), value.to_string()).map_err(|e| PromqlError::BadData {
        message: e.to_string(),
    })
}

/// The `__name__` matchers that pick info series: those given when one of them is positive;
/// with negative ones only, those restricted to `.+_info`; with none, `target_info`.
fn effective_name_matchers(given: Vec<LabelMatcher>) -> Result<Vec<LabelMatcher>, PromqlError> {
    if given
        .iter()
        .any(|m| matches!(m.op, MatchOp::Equal | MatchOp::RegexMatch))
    {
        return Ok(given);
    }
    if given.is_empty() {
        return Ok(vec![LabelMatcher::equal(METRIC_NAME, TARGET_INFO)]);
    }
    let mut out = vec![matcher(MatchOp::RegexMatch, METRIC_NAME, ".+_info")?];
    out.extend(given);
    Ok(out)
}

/// An info metric's name and the identifying labels a series has: a series and an info
/// series match when theirs are equal.
type Signature = (String, Vec<(&'static str, String)>);

fn signature(name: &str, labels: &Labels) -> Signature {
    let ids = IDENTIFYING_LABELS
        .iter()
        .filter_map(|l| labels.get(l).map(|v| (*l, v.to_string())))
        .collect();
    (name.to_string(), ids)
}

/// An info series and, per step, the time of its sample current then.
struct InfoSeries {
    labels: Labels,
    at: Vec<Option<i64>>,
}

/// The series `matchers` select, with their newest sample within the lookback delta of each
/// of `times` (a staleness marker ends it). Info series must hold floats.
fn read_info_series(
    ev: &Evaluator,
    matchers: &[LabelMatcher],
    times: &[i64],
) -> Result<Vec<InfoSeries>, PromqlError> {
    let (Some(&min), Some(&max)) = (times.iter().min(), times.iter().max()) else {
        return Ok(Vec::new());
    };
    let lookback = ev.opts.lookback_delta_ms;
    let cursors = ev
        .storage
        .select_lazy(matchers, ev.window_min(min, lookback), max)
        .map_err(|e| crate::eval::stream::storage_error(ev.opts, e))?;
    let mut out = Vec::new();
    let mut samples = Vec::new();
    for c in cursors {
        ev.check_deadline()?;
        if !c.histograms().is_empty() {
            return Err(PromqlError::exec("info sample should be float"));
        }
        samples.clear();
        let n = c
            .decode_into(&mut samples)
            .map_err(|e| crate::eval::stream::storage_error(ev.opts, e))?;
        ev.hold(n)?;
        let at: Vec<Option<i64>> = times
            .iter()
            .map(|&t| {
                let newest = samples.partition_point(|s| s.t <= t).checked_sub(1)?;
                let s = samples[newest];
                (s.t >= ev.window_min(t, lookback) && !is_stale_nan(s.v)).then_some(s.t)
            })
            .collect();
        if at.iter().any(Option::is_some) {
            out.push(InfoSeries {
                labels: c.labels().clone(),
                at,
            });
        }
    }
    Ok(out)
}

/// The `@` time and the offset (ms) at which the first selector of `expr` reads: its own,
/// plus the offsets of the subqueries around it up to the innermost one with an `@`.
fn reference_modifiers(expr: &Expr) -> (Option<AtModifier>, i64) {
    let mut path: Vec<&Expr> = Vec::new();
    first_selector(expr, &mut path)
        .map(|(at, offset)| {
            let mut at = at.clone();
            let mut total = offset_ms(offset);
            for e in path.iter().rev() {
                if at.is_some() {
                    break;
                }
                if let Expr::Subquery(sq) = e {
                    total = total.saturating_add(offset_ms(&sq.offset));
                    at = sq.at.clone();
                }
            }
            (at, total)
        })
        .unwrap_or_default()
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => millis(*d),
        Some(Offset::Neg(d)) => -millis(*d),
        None => 0,
    }
}

/// The modifiers of the first vector selector in `expr` (depth first), with the
/// expressions enclosing it in `path`.
fn first_selector<'e>(
    expr: &'e Expr,
    path: &mut Vec<&'e Expr>,
) -> Option<(&'e Option<AtModifier>, &'e Option<Offset>)> {
    let children: Vec<&Expr> = match expr {
        Expr::VectorSelector(vs) => return Some((&vs.at, &vs.offset)),
        Expr::MatrixSelector(ms) => return Some((&ms.vs.at, &ms.vs.offset)),
        Expr::Aggregate(a) => std::iter::once(a.expr.as_ref())
            .chain(a.param.as_deref())
            .collect(),
        Expr::Unary(u) => vec![u.expr.as_ref()],
        Expr::Binary(b) => vec![b.lhs.as_ref(), b.rhs.as_ref()],
        Expr::Paren(p) => vec![p.expr.as_ref()],
        Expr::Subquery(sq) => vec![sq.expr.as_ref()],
        Expr::Call(c) => c.args.args.iter().map(|a| a.as_ref()).collect(),
        _ => Vec::new(),
    };
    path.push(expr);
    for c in children {
        if let Some(found) = first_selector(c, path) {
            return Some(found);
        }
    }
    path.pop();
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_selector_matching_the_empty_string_is_read_only_in_info() {
        assert!(crate::parse(r#"info(metric, {data=~".*"})"#).is_ok());
        assert!(crate::parse(r#"info(metric, {})"#).is_ok());
        assert!(crate::parse(r#"rate(x[5m]) + info(metric, {__name__!="target_info"})"#).is_ok());
        assert!(crate::parse(r#"metric + {data=~".*"}"#).is_err());
    }
}
