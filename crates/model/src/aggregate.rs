//! Span aggregations a store may run itself (`SpanReader::aggregate`): a window, a filter,
//! the values to group by and what to compute per group.
//!
//! Why: an analysis that reads every span of a window (traffic statistics) ships all rows
//! out of a remote store; a store that can group and count where the data lies (ClickHouse,
//! on its shards) answers with a few rows instead. The analysis keeps the semantics (which
//! spans are requests, which tags name a cluster or a URL, how values are cleaned up); the
//! store only evaluates this small vocabulary. [`evaluate`] is the reference meaning of
//! every term, over spans in memory.

use std::collections::BTreeMap;

use crate::trace::{Span, SpanKind};

/// A string a span may carry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SpanField {
    /// The local endpoint's service name.
    LocalService,
    /// The span name.
    Name,
    /// The remote endpoint's service name.
    RemoteService,
    /// The value of the first of `keys` the span has as a tag; with `non_empty`, the first
    /// whose value is not empty.
    Tag { keys: Vec<String>, non_empty: bool },
}

impl SpanField {
    /// The field's value in `s`; `None` when absent (an empty service or name is absent,
    /// as stores keep them).
    pub fn of<'s>(&self, s: &'s Span) -> Option<&'s str> {
        match self {
            SpanField::LocalService => s.local_service().filter(|v| !v.is_empty()),
            SpanField::Name => s.name.as_deref().filter(|v| !v.is_empty()),
            SpanField::RemoteService => s.remote_service().filter(|v| !v.is_empty()),
            SpanField::Tag { keys, non_empty } => keys.iter().find_map(|k| {
                s.tags
                    .get(k)
                    .map(String::as_str)
                    .filter(|v| !*non_empty || !v.is_empty())
            }),
        }
    }
}

/// A field as a group key or filter operand: its value, or `absent` when the span has none
/// (so that "no cluster" and a cluster named `unknown` can be one group).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpanDimension {
    pub field: SpanField,
    pub absent: Option<String>,
}

impl SpanDimension {
    pub fn of<'s>(&'s self, s: &'s Span) -> Option<&'s str> {
        self.field.of(s).or(self.absent.as_deref())
    }
}

/// Which spans an aggregation reads (besides the window).
#[derive(Clone, Debug, PartialEq)]
pub enum SpanFilter {
    /// Every one of these (none: every span).
    All(Vec<SpanFilter>),
    /// At least one of these.
    Any(Vec<SpanFilter>),
    /// The span's kind is this (`None`: the span has no kind).
    Kind(Option<SpanKind>),
    /// Some tag key starts with this.
    TagKeyPrefix(String),
    /// The span has this tag (with any value, empty included).
    HasTag(String),
    /// The dimension's value is exactly this (compared byte for byte).
    Equals(SpanDimension, String),
}

impl SpanFilter {
    pub fn matches(&self, s: &Span) -> bool {
        match self {
            SpanFilter::All(v) => v.iter().all(|f| f.matches(s)),
            SpanFilter::Any(v) => v.iter().any(|f| f.matches(s)),
            SpanFilter::Kind(k) => s.kind == *k,
            SpanFilter::TagKeyPrefix(p) => s.tags.keys().any(|k| k.starts_with(p.as_str())),
            SpanFilter::HasTag(k) => s.tags.contains_key(k),
            SpanFilter::Equals(d, v) => d.of(s) == Some(v.as_str()),
        }
    }
}

/// What is computed per group.
#[derive(Clone, Debug, PartialEq)]
pub enum SpanMeasure {
    /// Spans in the group.
    Spans,
    /// Distinct trace ids in the group.
    Traces,
    /// The durations (µs) of the group's spans that have one: count, sum, min, max and
    /// the nearest-rank percentiles `q` in (0, 1]: the value of rank `ceil(q * count)`
    /// (at least 1) in ascending order, computed in `f64` exactly so.
    Durations { quantiles: Vec<f64> },
}

/// One aggregation over the spans with a timestamp in `[start_us, end_us]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanAggregation {
    pub start_us: u64,
    pub end_us: u64,
    pub filter: SpanFilter,
    /// Empty: one group of all matching spans (present even when none match).
    pub group_by: Vec<SpanDimension>,
    pub measures: Vec<SpanMeasure>,
}

/// A summary of durations (µs), see [`SpanMeasure::Durations`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurationSummary {
    pub count: u64,
    pub sum: u128,
    pub min: u64,
    pub max: u64,
    /// One per requested quantile, in order; 0 when `count` is 0.
    pub quantiles: Vec<u64>,
}

/// One measure's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MeasureValue {
    Count(u64),
    Durations(DurationSummary),
}

impl MeasureValue {
    pub fn count(&self) -> u64 {
        match self {
            MeasureValue::Count(n) => *n,
            MeasureValue::Durations(d) => d.count,
        }
    }
}

/// One group: its key (one value per `group_by` dimension) and one value per measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanGroup {
    pub key: Vec<Option<String>>,
    pub values: Vec<MeasureValue>,
}

/// The 1-based nearest rank of `q` among `n` values: `ceil(q * n)` clamped to `1..=n`.
pub fn nearest_rank(q: f64, n: u64) -> u64 {
    ((q * n as f64).ceil() as u64).clamp(1, n.max(1))
}

/// The reference meaning of an aggregation: `spans` (those outside the window or without a
/// timestamp are skipped) grouped and measured in memory. Groups come sorted by key.
pub fn evaluate<'s>(
    a: &SpanAggregation,
    spans: impl IntoIterator<Item = &'s Span>,
) -> Vec<SpanGroup> {
    type Acc = (u64, Vec<(u64, u64)>, Vec<u64>);
    let mut groups: BTreeMap<Vec<Option<String>>, Acc> = BTreeMap::new();
    if a.group_by.is_empty() {
        groups.insert(Vec::new(), Acc::default());
    }
    for s in spans {
        let Some(t) = s.timestamp else { continue };
        if t < a.start_us || t > a.end_us || !a.filter.matches(s) {
            continue;
        }
        let key = a
            .group_by
            .iter()
            .map(|d| d.of(s).map(str::to_string))
            .collect();
        let g = groups.entry(key).or_default();
        g.0 += 1;
        g.1.push((s.trace_id.high, s.trace_id.low));
        g.2.extend(s.duration);
    }
    groups
        .into_iter()
        .map(|(key, (spans, mut traces, mut durations))| {
            traces.sort_unstable();
            traces.dedup();
            durations.sort_unstable();
            let values = a
                .measures
                .iter()
                .map(|m| match m {
                    SpanMeasure::Spans => MeasureValue::Count(spans),
                    SpanMeasure::Traces => MeasureValue::Count(traces.len() as u64),
                    SpanMeasure::Durations { quantiles } => {
                        MeasureValue::Durations(summarize(&durations, quantiles))
                    }
                })
                .collect();
            SpanGroup { key, values }
        })
        .collect()
}

/// The summary of sorted durations.
fn summarize(sorted: &[u64], quantiles: &[f64]) -> DurationSummary {
    let n = sorted.len() as u64;
    let at = |rank: u64| sorted.get(rank as usize - 1).copied().unwrap_or(0);
    DurationSummary {
        count: n,
        sum: sorted.iter().map(|&d| u128::from(d)).sum(),
        min: sorted.first().copied().unwrap_or(0),
        max: sorted.last().copied().unwrap_or(0),
        quantiles: quantiles.iter().map(|&q| at(nearest_rank(q, n))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Endpoint, TraceId};

    fn span(id: u64, trace: u64, kind: Option<SpanKind>, svc: &str, tags: &[(&str, &str)]) -> Span {
        Span {
            trace_id: TraceId {
                high: 0,
                low: trace,
                is_128: false,
            },
            id,
            parent_id: None,
            name: Some("op".into()),
            kind,
            timestamp: Some(100 + id),
            duration: Some(id * 10),
            local_endpoint: Some(Endpoint {
                service_name: Some(svc.into()),
                ..Default::default()
            }),
            remote_endpoint: None,
            annotations: Vec::new(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            debug: false,
            shared: false,
        }
    }

    #[test]
    fn groups_filters_and_measures() {
        let spans = vec![
            span(1, 1, Some(SpanKind::Server), "a", &[("cluster", "")]),
            span(
                2,
                1,
                Some(SpanKind::Server),
                "a",
                &[("k8s.cluster.name", "x")],
            ),
            span(3, 2, None, "b", &[("http.url", "/")]),
            span(4, 2, None, "b", &[]),
            span(5, 3, Some(SpanKind::Client), "a", &[]),
        ];
        let cluster = SpanDimension {
            field: SpanField::Tag {
                keys: vec!["cluster".into(), "k8s.cluster.name".into()],
                non_empty: true,
            },
            absent: Some("unknown".into()),
        };
        let a = SpanAggregation {
            start_us: 0,
            end_us: 104,
            filter: SpanFilter::Any(vec![
                SpanFilter::Kind(Some(SpanKind::Server)),
                SpanFilter::All(vec![
                    SpanFilter::Kind(None),
                    SpanFilter::TagKeyPrefix("http.".into()),
                ]),
            ]),
            group_by: vec![cluster],
            measures: vec![
                SpanMeasure::Spans,
                SpanMeasure::Traces,
                SpanMeasure::Durations {
                    quantiles: vec![0.5, 1.0],
                },
            ],
        };
        let got = evaluate(&a, &spans);
        let key = |s: &str| vec![Some(s.to_string())];
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].key, key("unknown"));
        assert_eq!(got[0].values[0], MeasureValue::Count(2));
        assert_eq!(got[0].values[1], MeasureValue::Count(2));
        assert_eq!(
            got[0].values[2],
            MeasureValue::Durations(DurationSummary {
                count: 2,
                sum: 40,
                min: 10,
                max: 30,
                quantiles: vec![10, 30],
            })
        );
        assert_eq!(got[1].key, key("x"));
        assert_eq!(got[1].values[0].count(), 1);
    }

    #[test]
    fn an_ungrouped_aggregation_has_one_group_even_when_empty() {
        let a = SpanAggregation {
            start_us: 0,
            end_us: 1,
            filter: SpanFilter::All(Vec::new()),
            group_by: Vec::new(),
            measures: vec![SpanMeasure::Spans],
        };
        let got = evaluate(&a, &[]);
        assert_eq!(
            got,
            vec![SpanGroup {
                key: Vec::new(),
                values: vec![MeasureValue::Count(0)],
            }]
        );
    }

    #[test]
    fn nearest_ranks() {
        assert_eq!(nearest_rank(0.5, 100), 50);
        assert_eq!(nearest_rank(0.99, 100), 99);
        assert_eq!(nearest_rank(0.9, 1), 1);
        assert_eq!(nearest_rank(0.0, 5), 1);
        assert_eq!(nearest_rank(1.0, 5), 5);
    }
}
