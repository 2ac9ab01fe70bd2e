//! `sum`, `count`, `avg`, `min`, `max` and `group` folded series by series: each series'
//! step values go straight into its group's per-step accumulators, so an aggregation over
//! a selector (or a range function of one) never holds every input series' step values.
//! Accumulators fold values in the order the series arrive and give the same numbers as
//! aggregating the whole input at once (Kahan sums, the overflow-safe mean, min/max with
//! Prometheus's NaN handling); partial folds of consecutive blocks of series merge in
//! series order.

use std::collections::HashMap;
use std::hash::Hasher;

use meshlens_model::hash::{FxHasher, FxMap};
use meshlens_model::{Label, Labels, SeriesCursor, METRIC_NAME};
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

/// How a series' group is found.
enum Keyer {
    /// `by (...)` or no modifier: the key is the values of these names (sorted, unique,
    /// without the metric name when it is dropped), each asked of the series on its own,
    /// so no label set is built for a series whose group exists. Groups are found by a
    /// hash of the values, then compared value by value.
    By {
        names: Vec<String>,
        by_hash: FxMap<u64, Vec<usize>>,
    },
    /// `without (...)`: the key is built from the whole label set.
    Labels(HashMap<Labels, usize>),
}

/// The hash of a key given as one value (or none) per name of [`Keyer::By`].
fn hash_values<'v>(values: impl Iterator<Item = Option<&'v str>>) -> u64 {
    let mut h = FxHasher::default();
    for v in values {
        match v {
            Some(v) => {
                h.write_u8(1);
                h.write_usize(v.len());
                h.write(v.as_bytes());
            }
            None => h.write_u8(0),
        }
    }
    h.finish()
}

/// Groups in order of their first series, each with its accumulators.
pub(crate) struct GroupFold<'m> {
    op: FoldOp,
    modifier: &'m Option<LabelModifier>,
    /// The folded expression drops the metric name (a range function other than
    /// `last_over_time`), so `by (__name__)` must not see it.
    drop_name: bool,
    steps: usize,
    keyer: Keyer,
    groups: Vec<Acc>,
}

impl<'m> GroupFold<'m> {
    pub fn new(
        op: FoldOp,
        modifier: &'m Option<LabelModifier>,
        drop_name: bool,
        steps: usize,
    ) -> GroupFold<'m> {
        let keyer = match modifier {
            Some(LabelModifier::Exclude(_)) => Keyer::Labels(HashMap::new()),
            Some(LabelModifier::Include(ls)) => {
                let mut names: Vec<String> = ls
                    .labels
                    .iter()
                    .filter(|n| !(drop_name && n.as_str() == METRIC_NAME))
                    .cloned()
                    .collect();
                names.sort_unstable();
                names.dedup();
                Keyer::By {
                    names,
                    by_hash: FxMap::default(),
                }
            }
            None => Keyer::By {
                names: Vec::new(),
                by_hash: FxMap::default(),
            },
        };
        GroupFold {
            op,
            modifier,
            drop_name,
            steps,
            keyer,
            groups: Vec::new(),
        }
    }

    /// The group of a series whose label values `get` gives (empty values count as
    /// absent, as in `Labels`), made when it is new.
    fn group_by<'v>(&mut self, get: impl Fn(&str) -> Option<&'v str>) -> usize {
        let Keyer::By { names, by_hash } = &mut self.keyer else {
            unreachable!("group_by is only called for a `by` fold");
        };
        let value = |n: &str| get(n).filter(|v| !v.is_empty());
        let h = hash_values(names.iter().map(|n| value(n)));
        let same = |g: &Acc| names.iter().all(|n| g.labels.get(n) == value(n));
        let found = by_hash
            .get(&h)
            .and_then(|gs| gs.iter().copied().find(|&g| same(&self.groups[g])));
        if let Some(g) = found {
            return g;
        }
        // `names` are sorted and unique, and empty values are left out: already a
        // normalised label set.
        let key = Labels::from_sorted_unchecked(
            names
                .iter()
                .filter_map(|n| value(n).map(|v| Label::new(n.as_str(), v)))
                .collect(),
        );
        let g = self.groups.len();
        by_hash.entry(h).or_default().push(g);
        self.groups.push(Acc::new(self.op, key, self.steps));
        g
    }

    /// The group of a key built from labels, made when it is new.
    fn group_of(&mut self, key: Labels) -> usize {
        match &mut self.keyer {
            Keyer::Labels(index) => match index.get(&key) {
                Some(&i) => i,
                None => {
                    let i = self.groups.len();
                    index.insert(key.clone(), i);
                    self.groups.push(Acc::new(self.op, key, self.steps));
                    i
                }
            },
            Keyer::By { .. } => self.group_by(|n| key.get(n)),
        }
    }

    /// Folds one input series (labels as the folded expression gives them, before the
    /// name is dropped) into its group.
    pub fn add(&mut self, series: &dyn SeriesCursor, points: &[Option<f64>]) {
        let g = match self.keyer {
            Keyer::By { .. } => self.group_by(|n| series.label_value(n)),
            Keyer::Labels(_) => {
                let mut key = group_key(series.labels(), self.modifier);
                if self.drop_name && key.metric_name().is_some() {
                    key = key.without_metric_name();
                }
                self.group_of(key)
            }
        };
        let op = self.op;
        let acc = &mut self.groups[g];
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
            let g = self.group_of(other.labels);
            let acc = &mut self.groups[g];
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
                    hists: Vec::new(),
                    drop_name: false,
                }
            })
            .collect()
    }
}

impl super::stream::Partial for GroupFold<'_> {
    fn add(&mut self, series: &dyn SeriesCursor, points: &[Option<f64>]) {
        GroupFold::add(self, series, points)
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
