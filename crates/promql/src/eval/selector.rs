//! Selectors and subqueries: each reads storage (or evaluates its inner expression) once
//! for all steps.

use std::sync::atomic::{AtomicUsize, Ordering};

use std::collections::HashSet;

use meshlens_model::{is_stale_nan, HistogramSample, LabelMatcher, MatchOp, Sample};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Expr, MatrixSelector, SubqueryExpr, VectorSelector};

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
            start_times: self.start_times,
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

/// The selectors (by node address) whose histograms Prometheus reads for their count and
/// sum only: those inside `histogram_count`, `histogram_sum` or `histogram_avg` with no
/// subquery, bucket-reading histogram function or trim on their way up. Their counter-reset
/// hints are worked out while reading (see [`detect_reset_hints`]).
pub(crate) fn stats_only_selectors(expr: &Expr) -> HashSet<usize> {
    fn walk(e: &Expr, stats: bool, out: &mut HashSet<usize>) {
        match e {
            Expr::VectorSelector(vs) if stats => {
                out.insert(super::positions::node_key(vs));
            }
            Expr::MatrixSelector(ms) if stats => {
                out.insert(super::positions::node_key(&ms.vs));
            }
            Expr::Call(c) => {
                let (stats, skip) = match c.func.name {
                    "histogram_count" | "histogram_sum" | "histogram_avg" => (true, false),
                    "histogram_quantile" | "histogram_quantiles" | "histogram_fraction" => {
                        (false, true)
                    }
                    _ => (stats, false),
                };
                if !skip {
                    c.args.args.iter().for_each(|a| walk(a, stats, out));
                }
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    walk(p, stats, out);
                }
                walk(&a.expr, stats, out);
            }
            // Trims read the buckets.
            Expr::Binary(b) if crate::extended_syntax::trim_of(b).is_none() => {
                walk(&b.lhs, stats, out);
                walk(&b.rhs, stats, out);
            }
            Expr::Paren(p) => walk(&p.expr, stats, out),
            Expr::Unary(u) => walk(&u.expr, stats, out),
            // Subqueries need the buckets to detect counter resets.
            _ => {}
        }
    }
    let mut out = HashSet::new();
    walk(expr, false, &mut out);
    out
}

/// A series' histograms with the counter-reset hints Prometheus's histogram-stats iterator
/// gives them: a sample stored with an unknown hint gets "reset" or "no reset" from
/// comparing it with the sample read before it, provided the reading came through that
/// sample; it does not after a seek. The reading is that of a selector evaluated at
/// `times` with windows reaching `delta` back (the lookback delta or the range): it seeks
/// to the window's start whenever that lies past the sample it stands on. Staleness
/// markers are passed over without becoming the sample compared with.
pub(crate) fn detect_reset_hints(
    hists: &[HistogramSample],
    times: &[i64],
    delta: i64,
) -> Option<Vec<HistogramSample>> {
    use meshlens_model::CounterResetHint as Hint;
    if !hists
        .iter()
        .any(|x| x.h.counter_reset_hint == Hint::Unknown)
    {
        return None;
    }
    let mut out = hists.to_vec();
    let first = times.first()?;
    let mut cur = hists.partition_point(|x| x.t < first.saturating_sub(delta));
    let mut last: Option<usize> = None;
    let mut read = cur;
    let mut access = |i: usize, last: &mut Option<usize>, out: &mut Vec<HistogramSample>| {
        if i < read {
            return;
        }
        read = i + 1;
        if is_stale_nan(hists[i].h.sum) {
            return;
        }
        if hists[i].h.counter_reset_hint == Hint::Unknown {
            if let Some(l) = *last {
                let mut h = (*hists[i].h).clone();
                h.counter_reset_hint = if hists[i].h.detect_reset(&hists[l].h) {
                    Hint::CounterReset
                } else {
                    Hint::NotCounterReset
                };
                out[i].h = std::sync::Arc::new(h);
            }
        }
        *last = Some(i);
    };
    for &t in times {
        let t0 = t.saturating_sub(delta);
        if cur < hists.len() && t0 > hists[cur].t {
            last = None;
            cur += hists[cur..].partition_point(|x| x.t < t0);
        }
        while cur < hists.len() && hists[cur].t < t {
            access(cur, &mut last, &mut out);
            cur += 1;
        }
        if cur < hists.len() && hists[cur].t == t {
            access(cur, &mut last, &mut out);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlens_model::CounterResetHint as Hint;
    use meshlens_model::FloatHistogram;

    fn sample(t: i64, count: f64, hint: Hint) -> HistogramSample {
        let mut h = FloatHistogram::parse_notation(&format!(
            "{{{{count:{count} sum:{count} buckets:[{count}]}}}}"
        ))
        .unwrap();
        h.counter_reset_hint = hint;
        HistogramSample {
            t,
            h: std::sync::Arc::new(h),
        }
    }

    fn hints(out: &[HistogramSample]) -> Vec<Hint> {
        out.iter().map(|x| x.h.counter_reset_hint).collect()
    }

    #[test]
    fn stats_only_selectors_follow_prometheus_paths() {
        let count = |q: &str| {
            let e = promql_parser::parser::parse(q).unwrap();
            stats_only_selectors(&e).len()
        };
        assert_eq!(count("histogram_count(sum(a))"), 1);
        assert_eq!(count("histogram_sum(rate(a[5m])) + b"), 1);
        assert_eq!(count("sum(a)"), 0);
        assert_eq!(count("histogram_count(histogram_quantile(0.5, a))"), 0);
        assert_eq!(count("histogram_quantile(0.5, histogram_count(a))"), 0);
        assert_eq!(count("histogram_count(rate(a[5m:1m]))"), 0);
    }

    #[test]
    fn unknown_hints_are_detected_from_the_sample_read_before() {
        let hs = [
            sample(0, 5.0, Hint::Unknown),
            sample(60_000, 8.0, Hint::NotCounterReset),
            sample(120_000, 2.0, Hint::Unknown),
            sample(180_000, 4.0, Hint::Unknown),
        ];
        // Read from the first sample on: each unknown hint is detected.
        let out = detect_reset_hints(&hs, &[180_000], 300_000).unwrap();
        assert_eq!(
            hints(&out),
            [
                Hint::Unknown,
                Hint::NotCounterReset,
                Hint::CounterReset,
                Hint::NotCounterReset
            ]
        );
        // The window starts at the reset sample: nothing was read before it.
        let out = detect_reset_hints(&hs, &[180_000], 60_000).unwrap();
        assert_eq!(out[2].h.counter_reset_hint, Hint::Unknown);
        assert_eq!(out[3].h.counter_reset_hint, Hint::NotCounterReset);
        // Steps far apart seek past samples, which then are not compared with.
        let out = detect_reset_hints(&hs, &[0, 180_000], 30_000).unwrap();
        assert_eq!(out[3].h.counter_reset_hint, Hint::Unknown);
    }
}
