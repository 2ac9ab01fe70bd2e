//! Selectors and subqueries: each reads storage (or evaluates its inner expression) once
//! for all steps.

use std::sync::atomic::{AtomicUsize, Ordering};

use meshlens_model::{is_stale_nan, LabelMatcher, MatchOp, Sample};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{MatrixSelector, SubqueryExpr, VectorSelector};

use super::Evaluator;
use crate::error::PromqlError;
use crate::value::{Matrix, RangeSeries, Val};

pub(crate) fn matchers(vs: &VectorSelector) -> Result<Vec<LabelMatcher>, PromqlError> {
    let mut out = Vec::new();
    if let Some(n) = &vs.name {
        out.push(LabelMatcher::equal("__name__", n.clone()));
    }
    for m in &vs.matchers.matchers {
        if crate::extended_syntax::is_marker(&m.name) {
            continue;
        }
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::RegexMatch,
            PMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
        };
        out.push(
            LabelMatcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| {
                PromqlError::BadData {
                    message: e.to_string(),
                }
            })?,
        );
    }
    Ok(out)
}

impl<'a> Evaluator<'a> {
    /// An instant selector, series by series (see [`super::stream`]).
    pub fn eval_vector_selector(&self, vs: &VectorSelector) -> Result<Val, PromqlError> {
        if crate::extended_syntax::extension_of(vs)
            == Some(crate::extended_syntax::Extension::Smoothed)
        {
            return crate::functions::extended::smoothed_selector(self, vs);
        }
        let source = self.latest_source(vs, false)?;
        let out = self.collect(source)?;
        self.hold(out.len() * self.steps())?;
        Ok(Val::Vector(out))
    }

    /// A range vector with every sample any step's window needs, for what cannot be
    /// evaluated series by series (a range vector as the query's result,
    /// `absent_over_time`). Samples count against the limit as they are decoded.
    pub fn eval_matrix_selector(&self, ms: &MatrixSelector) -> Result<Matrix, PromqlError> {
        let range = super::millis(ms.range);
        let ends = self.effective_times(&ms.vs.at, &ms.vs.offset);
        let (Some(&min), Some(&max)) = (ends.iter().min(), ends.iter().max()) else {
            return Ok(Matrix {
                series: Vec::new(),
                range,
                ends,
                closed: self.opts.closed_ranges,
            });
        };
        let mut series = Vec::new();
        for cursor in self.cursors(&ms.vs, self.window_min(min, range), max)? {
            self.check_deadline()?;
            let mut samples = Vec::new();
            let n = cursor
                .decode_into(&mut samples)
                .map_err(|e| super::stream::storage_error(self.opts, e))?;
            self.hold(n)?;
            samples.retain(|x| !is_stale_nan(x.v));
            let hists = cursor.histograms().to_vec();
            self.hold(hists.len())?;
            if !samples.is_empty() || !hists.is_empty() {
                series.push(RangeSeries {
                    labels: cursor.labels().clone(),
                    samples,
                    hists,
                    drop_name: false,
                });
            }
        }
        Ok(Matrix {
            series,
            range,
            ends,
            closed: self.opts.closed_ranges,
        })
    }

    pub fn eval_subquery(&self, sq: &SubqueryExpr) -> Result<Matrix, PromqlError> {
        let range = super::millis(sq.range);
        let step = sq
            .step
            .map(super::millis)
            .filter(|s| *s > 0)
            .unwrap_or(self.opts.default_subquery_step_ms);
        let ends = self.effective_times(&sq.at, &sq.offset);
        let (Some(&min), Some(&max)) = (ends.iter().min(), ends.iter().max()) else {
            return Ok(Matrix {
                series: Vec::new(),
                range,
                ends,
                closed: self.opts.closed_ranges,
            });
        };
        // Inner steps: multiples of `step` inside (min - range, max] ([min - range, max] with
        // closed ranges), counted before any is made, in i128 because ranges, offsets and
        // `@` times may reach the ends of i64.
        let (step, max) = (i128::from(step), i128::from(max));
        let start = i128::from(min) - i128::from(range);
        let first = match self.opts.closed_ranges {
            true => (start + step - 1).div_euclid(step) * step,
            false => start.div_euclid(step) * step + step,
        };
        let count = if first > max {
            0
        } else {
            (max - first) / step + 1
        };
        if count > 11_000 * 100 {
            return Err(PromqlError::exec("subquery needs too many steps"));
        }
        let inner_ts: Vec<i64> = (0..count)
            .filter_map(|i| i64::try_from(first + i * step).ok())
            .collect();
        let inner = Evaluator {
            storage: self.storage,
            opts: self.opts,
            ts: inner_ts,
            query_start: self.query_start,
            query_end: self.query_end,
            query_step: self.query_step,
            deadline: self.deadline,
            samples: AtomicUsize::new(self.samples.load(Ordering::Relaxed)),
            notes: Default::default(),
            positions: self.positions,
            calls: Default::default(),
            delayed_names: self.delayed_names,
        };
        let v = inner.eval(&sq.expr)?;
        self.samples
            .store(inner.samples.load(Ordering::Relaxed), Ordering::Relaxed);
        let inner_notes = inner.notes.take();
        inner_notes
            .warnings
            .into_iter()
            .for_each(|w| self.warn(w.trim_start_matches("PromQL warning: ").to_string()));
        inner_notes
            .infos
            .into_iter()
            .for_each(|i| self.info(i.trim_start_matches("PromQL info: ").to_string()));
        let series = match v {
            Val::Vector(series) => series
                .into_iter()
                .map(|s| RangeSeries {
                    samples: s.samples(&inner.ts),
                    hists: without_reset_hints(s.histogram_samples(&inner.ts)),
                    labels: s.labels,
                    drop_name: s.drop_name,
                })
                .filter(|s| !s.samples.is_empty() || !s.hists.is_empty())
                .collect(),
            Val::Scalar(p) => vec![RangeSeries {
                labels: meshlens_model::Labels::empty(),
                samples: inner
                    .ts
                    .iter()
                    .zip(p)
                    .map(|(t, v)| Sample::new(*t, v))
                    .collect(),
                hists: Vec::new(),
                drop_name: false,
            }],
            Val::Str(_) => return Err(PromqlError::exec("subquery over a string")),
        };
        Ok(Matrix {
            series,
            range,
            ends,
            closed: self.opts.closed_ranges,
        })
    }
}

/// A subquery's histograms with their counter-reset hints made unknown: a hint describes
/// the sample's relation to the stored sample before it, which a subquery's steps (that
/// may repeat or skip samples) no longer follow, so resets are detected from the counts,
/// as for floats.
fn without_reset_hints(
    mut hists: Vec<meshlens_model::HistogramSample>,
) -> Vec<meshlens_model::HistogramSample> {
    use meshlens_model::CounterResetHint as Hint;
    for x in &mut hists {
        if matches!(
            x.h.counter_reset_hint,
            Hint::CounterReset | Hint::NotCounterReset
        ) {
            let mut h = (*x.h).clone();
            h.counter_reset_hint = Hint::Unknown;
            x.h = std::sync::Arc::new(h);
        }
    }
    hists
}
