//! The evaluator: walks the AST once for all steps of a query.

pub(crate) mod aggregate;
mod binary;
mod fold;
pub(crate) mod positions;
mod selector;
pub(crate) mod stream;
mod trim;

pub(crate) use selector::matchers as selector_matchers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use meshlens_model::{Labels, MetricReader, Sample, SeriesSamples};
use promql_parser::parser::{AtModifier, Expr, Offset};

use crate::error::PromqlError;
use crate::value::{Matrix, QueryResult, Series, Val, Value, VectorSample};
use crate::EngineOptions;

pub(crate) struct Evaluator<'a> {
    pub storage: &'a dyn MetricReader,
    pub opts: &'a EngineOptions,
    /// Evaluation timestamps (ms), ascending.
    pub ts: Vec<i64>,
    /// The query's start and end, for `@ start()` / `@ end()`.
    pub query_start: i64,
    pub query_end: i64,
    /// The query's step (ms; 0 for an instant query), for `step()`.
    pub query_step: i64,
    pub deadline: Instant,
    /// Samples decoded and step values held so far, against `max_samples`; shared with
    /// the threads that decode series in parallel.
    pub samples: AtomicUsize,
    /// Warnings and infos for the response, de-duplicated, in order of first report.
    pub notes: std::cell::RefCell<Notes>,
    /// Where calls start in the query text (worked out on first use; none for an expression
    /// without its text).
    pub positions: &'a positions::LazyPositions<'a>,
    /// The calls and aggregations being evaluated, innermost last (see [`Evaluator::warn_at`]).
    pub calls: std::cell::RefCell<Vec<usize>>,
    /// Names are marked to go at the end rather than dropped at once
    /// ([`crate::Engine::with_delayed_name_removal`]).
    pub delayed_names: bool,
    /// Range functions and `start_timestamp` read samples' start timestamps
    /// ([`crate::Engine::with_start_timestamps`]).
    pub start_times: bool,
}

/// The engine's optional Prometheus features a query runs with.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Features {
    pub delayed_names: bool,
    pub start_times: bool,
}

#[derive(Default, Clone)]
pub(crate) struct Notes {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

/// What a query covers: its steps and when it must be done by.
pub(crate) struct QuerySpan {
    pub start: i64,
    pub end: i64,
    pub step: i64,
    /// An instant query (start = end, step unused).
    pub instant: bool,
    pub deadline: Instant,
}

/// Selector times stay within ±2^62 ms (146 million years) and durations within 2^61 ms,
/// so `time - range - lookback` stays inside i64 at any subquery depth, whatever times the
/// API was given (any float) and whatever `@`, offsets and ranges the query holds.
const MAX_EVAL_TIME_MS: i64 = 1 << 62;

/// A duration in milliseconds, capped at 2^61.
pub(crate) fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis())
        .unwrap_or(i64::MAX)
        .min(1 << 61)
}

/// The earliest timestamp a window of `range` ending at `end` holds: Prometheus 3
/// leaves the start out, Prometheus 2 (`closed`, [`EngineOptions::closed_ranges`]) keeps it.
pub(crate) fn window_min(end: i64, range: i64, closed: bool) -> i64 {
    let start = end.saturating_sub(range);
    if closed {
        start
    } else {
        start.saturating_add(1)
    }
}

/// Adds `n` samples to a query's count; fails once it passes `max`.
pub(crate) fn charge(count: &AtomicUsize, max: usize, n: usize) -> Result<(), PromqlError> {
    let total = count.fetch_add(n, Ordering::Relaxed).saturating_add(n);
    if total > max {
        return Err(PromqlError::TooManySamples { limit: max });
    }
    Ok(())
}

/// Evaluates `expr` for an instant or range query.
pub(crate) fn run(
    storage: &dyn MetricReader,
    opts: &EngineOptions,
    features: Features,
    expr: &Expr,
    source: Option<&str>,
    span: QuerySpan,
) -> Result<QueryResult, PromqlError> {
    let positions = positions::LazyPositions::new(source, expr);
    let QuerySpan {
        start,
        end,
        step,
        instant,
        deadline,
    } = span;
    let ts: Vec<i64> = if instant {
        vec![start]
    } else {
        (0..=end.saturating_sub(start) / step)
            .map(|i| start + i * step)
            .collect()
    };
    let ev = Evaluator {
        storage,
        opts,
        ts,
        query_start: start,
        query_end: end,
        query_step: if instant { 0 } else { step },
        deadline,
        samples: AtomicUsize::new(0),
        notes: Default::default(),
        positions: &positions,
        calls: Default::default(),
        delayed_names: features.delayed_names,
        start_times: features.start_times,
    };
    let inner = unwrap_parens(expr);
    if matches!(inner, Expr::MatrixSelector(_) | Expr::Subquery(_)) {
        if !instant {
            return Err(PromqlError::BadData { message: "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into() });
        }
        if let Expr::MatrixSelector(ms) = inner {
            if let Some(ext) = crate::extended_syntax::extension_of(&ms.vs) {
                let mut out = crate::functions::extended::bare_range(&ev, ms, ext)?;
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                return Ok(result(Value::Matrix(out), ev.notes.take()));
            }
        }
        let m = ev.eval_matrix(inner)?;
        let out: Vec<SeriesSamples> = m
            .series
            .iter()
            .map(|s| SeriesSamples {
                // A subquery's series whose name was to go lose it now.
                labels: match s.drop_name {
                    true => s.labels.without_metric_name(),
                    false => s.labels.clone(),
                },
                samples: m.window(s, 0).to_vec(),
                histograms: m.hist_window(s, 0).to_vec(),
            })
            .filter(|s| !s.samples.is_empty() || !s.histograms.is_empty())
            .collect();
        let out = merge_same_range_labels(out);
        return Ok(result(Value::Matrix(out), ev.notes.take()));
    }
    let mut v = ev.eval(expr)?;
    // Delayed name removal: the names marked to go go now.
    if let Val::Vector(series) = &mut v {
        for s in series.iter_mut().filter(|s| s.drop_name) {
            s.labels = s.labels.without_metric_name();
            s.drop_name = false;
        }
    }
    let value = match v {
        Val::Str(s) => Value::String { t: start, v: s },
        Val::Scalar(p) if instant => Value::Scalar { t: start, v: p[0] },
        Val::Scalar(p) => Value::Matrix(vec![SeriesSamples {
            labels: Labels::empty(),
            samples: ev
                .ts
                .iter()
                .zip(p)
                .map(|(t, v)| Sample::new(*t, v))
                .collect(),
            histograms: Vec::new(),
        }]),
        Val::Vector(series) if instant => {
            check_unique(&series)?;
            Value::Vector(
                series
                    .into_iter()
                    .filter_map(|s| {
                        let h = s.hist(0).cloned();
                        if h.is_some() {
                            return Some(VectorSample {
                                labels: s.labels,
                                t: start,
                                v: 0.0,
                                h,
                            });
                        }
                        s.points[0].map(|v| VectorSample {
                            labels: s.labels,
                            t: start,
                            v,
                            h: None,
                        })
                    })
                    .collect(),
            )
        }
        Val::Vector(series) => {
            let merged = merge_same_labels(series)?;
            let mut out: Vec<SeriesSamples> = merged
                .into_iter()
                .map(|s| SeriesSamples {
                    samples: s.samples(&ev.ts),
                    histograms: s.histogram_samples(&ev.ts),
                    labels: s.labels,
                })
                .filter(|s| !s.samples.is_empty() || !s.histograms.is_empty())
                .collect();
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            Value::Matrix(out)
        }
    };
    Ok(result(value, ev.notes.take()))
}

/// A range vector's series sorted by labels, those whose labels became equal (names dropped
/// at the end) merged, their samples in time order (Prometheus's
/// `mergeSeriesWithSameLabelset`).
fn merge_same_range_labels(mut out: Vec<SeriesSamples>) -> Vec<SeriesSamples> {
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut merged: Vec<SeriesSamples> = Vec::with_capacity(out.len());
    for s in out {
        match merged.last_mut() {
            Some(last) if last.labels == s.labels => {
                last.samples.extend(s.samples);
                last.samples.sort_by_key(|x| x.t);
                last.histograms.extend(s.histograms);
                last.histograms.sort_by_key(|x| x.t);
            }
            _ => merged.push(s),
        }
    }
    merged
}

fn result(value: Value, notes: Notes) -> QueryResult {
    QueryResult {
        value,
        warnings: notes.warnings,
        infos: notes.infos,
    }
}

pub(crate) fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

/// Fails when two series share a label set and both have a value at the same step.
fn check_unique(series: &[Series]) -> Result<(), PromqlError> {
    let mut seen: HashMap<&Labels, usize> = HashMap::new();
    for (i, s) in series.iter().enumerate() {
        if let Some(&j) = seen.get(&s.labels) {
            let other = &series[j];
            let occupied = |x: &Series, i: usize| x.points[i].is_some() || x.hist(i).is_some();
            if (0..s.points.len()).any(|i| occupied(s, i) && occupied(other, i)) {
                return Err(PromqlError::exec(
                    "vector cannot contain metrics with the same labelset",
                ));
            }
        } else {
            seen.insert(&s.labels, i);
        }
    }
    Ok(())
}

/// Folds series with equal labels into one (they must not overlap in steps).
pub(crate) fn merge_same_labels(series: Vec<Series>) -> Result<Vec<Series>, PromqlError> {
    let mut index: HashMap<Labels, usize> = HashMap::with_capacity(series.len());
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    for s in series {
        match index.get(&s.labels) {
            Some(&i) => {
                let target = &mut out[i];
                let steps = target.points.len();
                if s.has_hists() && target.hists.is_empty() {
                    target.hists = vec![None; steps];
                }
                for (j, b) in s.points.into_iter().enumerate() {
                    let h = s.hists.get(j).cloned().flatten();
                    if b.is_none() && h.is_none() {
                        continue;
                    }
                    if target.points[j].is_some() || target.hist(j).is_some() {
                        return Err(PromqlError::exec(
                            "vector cannot contain metrics with the same labelset",
                        ));
                    }
                    target.points[j] = b;
                    if h.is_some() {
                        target.hists[j] = h;
                    }
                }
            }
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
    }
    Ok(out)
}

impl<'a> Evaluator<'a> {
    pub fn steps(&self) -> usize {
        self.ts.len()
    }

    pub fn warn(&self, message: String) {
        let mut n = self.notes.borrow_mut();
        let m = format!("PromQL warning: {message}");
        if !n.warnings.contains(&m) {
            n.warnings.push(m);
        }
    }

    pub fn info(&self, message: String) {
        let mut n = self.notes.borrow_mut();
        let m = format!("PromQL info: {message}");
        if !n.infos.contains(&m) {
            n.infos.push(m);
        }
    }

    /// A warning about argument `arg` of the call being evaluated, with the argument's
    /// position in the query text when it is known (`... (1:25)`), as Prometheus gives it.
    pub fn warn_at(&self, message: String, arg: usize) {
        self.warn(self.positioned(message, |p| p.arg(self.current_call()?, arg)));
    }

    /// As [`Evaluator::warn_at`], for an info.
    pub fn info_at(&self, message: String, arg: usize) {
        self.info(self.positioned(message, |p| p.arg(self.current_call()?, arg)));
    }

    /// A warning about the call being evaluated as a whole (its name's position).
    pub fn warn_at_call(&self, message: String) {
        self.warn(self.positioned(message, |p| p.call(self.current_call()?)));
    }

    /// A warning about a series selector, with the selector's position when it is known.
    pub fn warn_at_selector(&self, message: String, vs: &promql_parser::parser::VectorSelector) {
        self.warn(self.positioned(message, |p| p.selector(positions::node_key(vs))));
    }

    /// Prometheus's warning for a sort in a range query, whose series come ordered by labels.
    pub fn warn_if_range_sort(&self) {
        if self.query_step != 0 {
            self.warn_at_call(
                "sort is ineffective for range queries since results are always ordered by labels"
                    .to_string(),
            );
        }
    }

    /// `message` with ` (line:column)` when `at` finds its position in the query.
    pub(crate) fn positioned(
        &self,
        message: String,
        at: impl FnOnce(&positions::SourcePositions) -> Option<String>,
    ) -> String {
        match self.positions.get().and_then(at) {
            Some(pos) => format!("{message} ({pos})"),
            None => message,
        }
    }

    /// The innermost call or aggregation being evaluated.
    pub(crate) fn current_call(&self) -> Option<usize> {
        self.calls.borrow().last().copied()
    }

    /// Evaluates `f` as the call `node` (for positions of its annotations).
    pub(crate) fn in_call<T>(&self, node: usize, f: impl FnOnce() -> T) -> T {
        self.calls.borrow_mut().push(node);
        let out = f();
        self.calls.borrow_mut().pop();
        out
    }

    pub fn check_deadline(&self) -> Result<(), PromqlError> {
        if Instant::now() > self.deadline {
            return Err(PromqlError::Timeout {
                after: self.opts.timeout,
            });
        }
        Ok(())
    }

    /// Counts samples held; fails past the query's limit.
    pub fn hold(&self, n: usize) -> Result<(), PromqlError> {
        charge(&self.samples, self.opts.max_samples, n)
    }

    /// The earliest timestamp a window of `range` ending at `end` holds (see
    /// [`window_min`]).
    pub fn window_min(&self, end: i64, range: i64) -> i64 {
        window_min(end, range, self.opts.closed_ranges)
    }

    /// The timestamps a node is evaluated at after its `@` and `offset` modifiers.
    pub fn effective_times(&self, at: &Option<AtModifier>, offset: &Option<Offset>) -> Vec<i64> {
        // Durations and `@` times may lie beyond i64 milliseconds: saturate, never wrap.
        let off = match offset {
            Some(Offset::Pos(d)) => millis(*d),
            Some(Offset::Neg(d)) => -millis(*d),
            None => 0,
        };
        let fixed = match at {
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(t)) => Some(match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => millis(d),
                Err(e) => -millis(e.duration()),
            }),
            None => None,
        };
        self.ts
            .iter()
            .map(|t| {
                (fixed.unwrap_or(*t).saturating_sub(off)).clamp(-MAX_EVAL_TIME_MS, MAX_EVAL_TIME_MS)
            })
            .collect()
    }

    pub fn eval(&self, expr: &Expr) -> Result<Val, PromqlError> {
        self.check_deadline()?;
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; self.steps()])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(series) => Ok(Val::Vector(
                    series
                        .into_iter()
                        .map(|s| {
                            let (labels, drop_name) =
                                crate::value::name_dropped(s.labels, self.delayed_names);
                            Series {
                                labels,
                                drop_name,
                                points: s.points.into_iter().map(|p| p.map(|x| -x)).collect(),
                                hists: s
                                    .hists
                                    .into_iter()
                                    .map(|h| {
                                        h.map(|h| {
                                            let mut h = (*h).clone();
                                            h.mul(-1.0);
                                            std::sync::Arc::new(h)
                                        })
                                    })
                                    .collect(),
                            }
                        })
                        .collect(),
                )),
                Val::Str(_) => Err(PromqlError::exec("unary minus on a string")),
            },
            Expr::VectorSelector(vs) => self.eval_vector_selector(vs),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => Err(PromqlError::exec(
                "a range vector is only allowed as a function argument",
            )),
            Expr::Call(c) => {
                self.in_call(positions::node_key(c), || crate::functions::call(self, c))
            }
            Expr::Aggregate(a) => self.in_call(positions::node_key(a), || self.eval_aggregate(a)),
            Expr::Binary(b) => self.eval_binary(b),
            Expr::Extension(_) => Err(PromqlError::exec("extension expressions are not supported")),
        }
    }

    pub fn eval_matrix(&self, expr: &Expr) -> Result<Matrix, PromqlError> {
        match unwrap_parens(expr) {
            Expr::MatrixSelector(ms) => self.eval_matrix_selector(ms),
            Expr::Subquery(sq) => self.eval_subquery(sq),
            _ => Err(PromqlError::exec("expected a range vector")),
        }
    }
}
