//! `sum`, `count`, `avg`, `min`, `max` and `group` folded series by series: each series'
//! step values go straight into its group's per-step accumulators, so an aggregation over
//! a selector (or a range function of one) never holds every input series' step values.
//! Accumulators fold values in the order the series arrive and give the same numbers as
//! aggregating the whole input at once (Kahan sums, the overflow-safe mean, min/max with
//! Prometheus's NaN handling); partial folds of consecutive blocks of series merge in
//! series order.

use std::collections::HashMap;

use meshlens_model::Labels;
use promql_parser::parser::LabelModifier;

use super::aggregate::{group_key, Kahan};
use crate::value::Series;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FoldOp {
    Sum,
    Count,
    Avg,
    Min,
    Max,
    Group,
}

impl FoldOp {
    /// The aggregations that can be folded (given no parameter).
    pub fn parse(op: &str) -> Option<FoldOp> {
        Some(match op {
            "sum" => FoldOp::Sum,
            "count" => FoldOp::Count,
            "avg" => FoldOp::Avg,
            "min" => FoldOp::Min,
            "max" => FoldOp::Max,
            "group" => FoldOp::Group,
            _ => return None,
        })
    }
}

/// One group's accumulators, one entry per step; only those its operation needs are
/// allocated.
struct Acc {
    labels: Labels,
    /// Values folded in.
    n: Vec<u32>,
    /// `sum`, and `avg`'s sum.
    sum: Vec<Kahan>,
    /// `min`/`max` so far (NaN until a number arrives), or `avg`'s running mean, used
    /// when the sum overflows.
    value: Vec<f64>,
    /// `avg`: whether an input was infinite or NaN (then the sum is the answer).
    non_finite: Vec<bool>,
}

impl Acc {
    fn new(op: FoldOp, labels: Labels, steps: usize) -> Acc {
        let sized = |yes: bool| if yes { steps } else { 0 };
        Acc {
            labels,
            n: vec![0; steps],
            sum: vec![Kahan::default(); sized(matches!(op, FoldOp::Sum | FoldOp::Avg))],
            value: vec![
                if op == FoldOp::Avg { 0.0 } else { f64::NAN };
                sized(matches!(op, FoldOp::Min | FoldOp::Max | FoldOp::Avg))
            ],
            non_finite: vec![false; sized(op == FoldOp::Avg)],
        }
    }
}

/// Groups in order of their first series, each with its accumulators.
pub(crate) struct GroupFold<'m> {
    op: FoldOp,
    modifier: &'m Option<LabelModifier>,
    /// The folded expression drops the metric name (a range function other than
    /// `last_over_time`), so `by (__name__)` must not see it.
    drop_name: bool,
    steps: usize,
    index: HashMap<Labels, usize>,
    groups: Vec<Acc>,
}

impl<'m> GroupFold<'m> {
    pub fn new(
        op: FoldOp,
        modifier: &'m Option<LabelModifier>,
        drop_name: bool,
        steps: usize,
    ) -> GroupFold<'m> {
        GroupFold {
            op,
            modifier,
            drop_name,
            steps,
            index: HashMap::new(),
            groups: Vec::new(),
        }
    }

    fn group(&mut self, key: Labels) -> &mut Acc {
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                let i = self.groups.len();
                self.index.insert(key.clone(), i);
                self.groups.push(Acc::new(self.op, key, self.steps));
                i
            }
        };
        &mut self.groups[i]
    }

    /// Folds one input series (labels as the folded expression gives them, before the
    /// name is dropped) into its group.
    pub fn add(&mut self, labels: &Labels, points: &[Option<f64>]) {
        let mut key = group_key(labels, self.modifier);
        if self.drop_name && key.metric_name().is_some() {
            key = key.without_metric_name();
        }
        let op = self.op;
        let acc = self.group(key);
        for (i, v) in points.iter().enumerate() {
            let Some(v) = *v else { continue };
            acc.n[i] += 1;
            match op {
                FoldOp::Sum => acc.sum[i].add(v),
                FoldOp::Count | FoldOp::Group => {}
                FoldOp::Min => acc.value[i] = fold_min(acc.value[i], v),
                FoldOp::Max => acc.value[i] = fold_max(acc.value[i], v),
                FoldOp::Avg => {
                    acc.sum[i].add(v);
                    let n = f64::from(acc.n[i]);
                    acc.value[i] += v / n - acc.value[i] / n;
                    acc.non_finite[i] |= !v.is_finite();
                }
            }
        }
    }

    /// Adds the groups of `later`, a fold of the series that come after this one's.
    pub fn merge(&mut self, later: GroupFold<'_>) {
        let op = self.op;
        for other in later.groups {
            let acc = self.group(other.labels);
            for i in 0..acc.n.len() {
                let (m, n) = (other.n[i], acc.n[i]);
                if m == 0 {
                    continue;
                }
                match op {
                    FoldOp::Sum => acc.sum[i].add(other.sum[i].value()),
                    FoldOp::Count | FoldOp::Group => {}
                    FoldOp::Min => acc.value[i] = fold_min(acc.value[i], other.value[i]),
                    FoldOp::Max => acc.value[i] = fold_max(acc.value[i], other.value[i]),
                    FoldOp::Avg => {
                        acc.sum[i].add(other.sum[i].value());
                        let weight = f64::from(m) / (f64::from(n) + f64::from(m));
                        acc.value[i] += (other.value[i] - acc.value[i]) * weight;
                        acc.non_finite[i] |= other.non_finite[i];
                    }
                }
                acc.n[i] = n + m;
            }
        }
    }

    /// The aggregated series, in order of each group's first input series.
    pub fn finish(self) -> Vec<Series> {
        let op = self.op;
        self.groups
            .into_iter()
            .map(|acc| {
                let points = (0..acc.n.len())
                    .map(|i| {
                        let n = acc.n[i];
                        (n > 0).then(|| match op {
                            FoldOp::Sum => acc.sum[i].value(),
                            FoldOp::Count => f64::from(n),
                            FoldOp::Group => 1.0,
                            FoldOp::Min | FoldOp::Max => acc.value[i],
                            FoldOp::Avg => {
                                let s = acc.sum[i].value();
                                if s.is_finite() || acc.non_finite[i] {
                                    s / f64::from(n)
                                } else {
                                    acc.value[i]
                                }
                            }
                        })
                    })
                    .collect();
                Series {
                    labels: acc.labels,
                    points,
                }
            })
            .collect()
    }
}

impl super::stream::Partial for GroupFold<'_> {
    fn add(&mut self, labels: &Labels, points: &[Option<f64>]) {
        GroupFold::add(self, labels, points)
    }
}

/// Prometheus's `min` step: NaN gives way to any number, numbers to smaller ones.
fn fold_min(m: f64, v: f64) -> f64 {
    if m > v || m.is_nan() {
        v
    } else {
        m
    }
}

fn fold_max(m: f64, v: f64) -> f64 {
    if m < v || m.is_nan() {
        v
    } else {
        m
    }
}
