//! Selectors and subqueries: each reads storage (or evaluates its inner expression) once
//! for all steps.

use meshlens_model::{is_stale_nan, LabelMatcher, MatchOp, Sample};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{MatrixSelector, SubqueryExpr, VectorSelector};

use super::Evaluator;
use crate::error::PromqlError;
use crate::value::{Matrix, RangeSeries, Series, Val};

pub(crate) fn matchers(vs: &VectorSelector) -> Result<Vec<LabelMatcher>, PromqlError> {
    let mut out = Vec::new();
    if let Some(n) = &vs.name {
        out.push(LabelMatcher::equal("__name__", n.clone()));
    }
    for m in &vs.matchers.matchers {
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
    fn select_or(
        &self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<meshlens_model::SeriesSamples>, PromqlError> {
        if !vs.matchers.or_matchers.is_empty() {
            return Err(PromqlError::BadData {
                message: "\"or\" label matchers are not supported".into(),
            });
        }
        let m = matchers(vs)?;
        // Storage stops reading once it passes what the query may still hold.
        let series = self
            .storage
            .select_limited(&m, mint, maxt, self.sample_budget())
            .map_err(|e| match e {
                meshlens_model::StorageError::TooManySamples { .. } => {
                    PromqlError::TooManySamples {
                        limit: self.opts.max_samples,
                    }
                }
                other => other.into(),
            })?;
        self.hold(series.iter().map(|s| s.samples.len()).sum())?;
        Ok(series)
    }

    pub fn eval_vector_selector(&self, vs: &VectorSelector) -> Result<Val, PromqlError> {
        let times = self.effective_times(&vs.at, &vs.offset);
        let lookback = self.opts.lookback_delta_ms;
        let (Some(&min), Some(&max)) = (times.iter().min(), times.iter().max()) else {
            return Ok(Val::Vector(Vec::new()));
        };
        let raw = self.select_or(vs, self.window_min(min, lookback), max)?;
        let mut out = Vec::with_capacity(raw.len());
        for s in raw {
            self.check_deadline()?;
            let points: Vec<Option<f64>> = times
                .iter()
                .map(|&t| {
                    let hi = s.samples.partition_point(|x| x.t <= t);
                    let last = s.samples[..hi].last()?;
                    (self.within_lookback(last.t, t) && !is_stale_nan(last.v)).then_some(last.v)
                })
                .collect();
            if points.iter().any(Option::is_some) {
                out.push(Series {
                    labels: s.labels,
                    points,
                });
            }
        }
        self.hold(out.len() * self.steps())?;
        Ok(Val::Vector(out))
    }

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
        let raw = self.select_or(&ms.vs, self.window_min(min, range), max)?;
        let series = raw
            .into_iter()
            .map(|s| RangeSeries {
                labels: s.labels,
                samples: s
                    .samples
                    .into_iter()
                    .filter(|x| !is_stale_nan(x.v))
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect();
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
            deadline: self.deadline,
            samples: std::cell::Cell::new(self.samples.get()),
            notes: Default::default(),
        };
        let v = inner.eval(&sq.expr)?;
        self.samples.set(inner.samples.get());
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
                    labels: s.labels,
                })
                .filter(|s| !s.samples.is_empty())
                .collect(),
            Val::Scalar(p) => vec![RangeSeries {
                labels: meshlens_model::Labels::empty(),
                samples: inner
                    .ts
                    .iter()
                    .zip(p)
                    .map(|(t, v)| Sample::new(*t, v))
                    .collect(),
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
