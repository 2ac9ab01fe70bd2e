//! Traffic statistics in the manner of OPNFV Clover's visibility service: request counts per
//! URL, service, service and URL, URL and status code; user-agent shares; response times per
//! service; totals and the distinct values seen.
//!
//! One projection scan of the span store over the window (`SpanReader::parts`): only the
//! columns a statistic reads (trace id, service, name, kind, duration and a few tags), part
//! by part in parallel, never building `Span`s. A part that lies wholly inside the window
//! and can keep pre-aggregates (an immutable segment) is summed once per filter and its
//! partial kept by the store, so a later query covering it merges the partial instead of
//! decoding it. Results are exact: distinct trace ids and nearest-rank percentiles merge
//! from sorted runs, not sketches.
//!
//! A store that aggregates where its data lies (ClickHouse, on its shards) is asked to
//! instead (`SpanReader::aggregate`, see `pushdown`): a few grouped rows travel rather than
//! every span, and the result is the same.
//!
//! A request is a SERVER span, or a span without kind that carries HTTP tags, so that the
//! CLIENT half of each call does not count it twice.

mod collect;
mod parts;
mod pushdown;

use std::sync::Arc;

use meshlens_model::{Projection, Span, SpanPart, SpanReader, StorageError};
use serde::Serialize;

use crate::AnalysisError;
use collect::{Filter, PartScan, Partial, PREFIXES, TAG_KEYS};

#[derive(Clone, Debug, PartialEq)]
pub struct StatsQuery {
    pub window_ms: i64,
    /// End of the window, milliseconds since the epoch; the window is `(end - window, end]`.
    pub end_ms: i64,
    /// Only spans of this cluster (`istio.cluster_id`, `cluster` or `k8s.cluster.name` tag;
    /// `unknown` when none).
    pub cluster: Option<String>,
    /// Only spans whose local service is this.
    pub service: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Distinct trace ids among the counted spans.
    pub traces: u64,
    pub spans: u64,
    pub requests: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Count {
    pub key: String,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PairCount {
    pub key: String,
    pub sub: String,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Share {
    pub key: String,
    pub count: u64,
    /// count / requests.
    pub share: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResponseTime {
    pub service: String,
    pub count: u64,
    pub min_ms: f64,
    pub avg_ms: f64,
    pub max_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Distinct {
    pub urls: Vec<String>,
    pub user_agents: Vec<String>,
    pub status_codes: Vec<String>,
    pub operations: Vec<String>,
}

/// The statistics; every list is sorted by count, largest first, then by key.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    pub start_ms: i64,
    pub end_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub totals: Totals,
    /// Requests per cluster.
    pub per_cluster: Vec<Count>,
    pub per_service: Vec<Count>,
    pub per_url: Vec<Count>,
    /// key = service, sub = URL.
    pub per_service_url: Vec<PairCount>,
    pub per_status: Vec<Count>,
    /// key = URL, sub = status code.
    pub per_url_status: Vec<PairCount>,
    pub user_agents: Vec<Share>,
    pub response_times: Vec<ResponseTime>,
    pub distinct: Distinct,
}

/// The order of every count list: largest first, then by key.
pub(crate) fn order_counts(v: &mut [Count]) {
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
}

/// The order of every pair list: largest first, then by key and sub-key.
pub(crate) fn order_pairs(v: &mut [PairCount]) {
    v.sort_by(|p, r| {
        r.count
            .cmp(&p.count)
            .then_with(|| (&p.key, &p.sub).cmp(&(&r.key, &r.sub)))
    });
}

/// User-agent shares: each count over all requests.
pub(crate) fn shares(counts: Vec<Count>, requests: u64) -> Vec<Share> {
    counts
        .into_iter()
        .map(|c| Share {
            share: c.count as f64 / requests.max(1) as f64,
            key: c.key,
            count: c.count,
        })
        .collect()
}

/// The order of the response times: most requests first, then by service.
pub(crate) fn order_response_times(v: &mut [ResponseTime]) {
    v.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.service.cmp(&b.service))
    });
}

impl ResponseTime {
    /// From microseconds: the smallest, the sum, the largest and the p50, p90 and p99
    /// nearest-rank picks of `count` durations.
    pub(crate) fn from_micros(
        service: &str,
        count: u64,
        min: u64,
        sum: u128,
        max: u64,
        [p50, p90, p99]: [u64; 3],
    ) -> ResponseTime {
        let ms = |us: u64| us as f64 / 1000.0;
        ResponseTime {
            service: service.to_string(),
            count,
            min_ms: ms(min),
            avg_ms: sum as f64 / count as f64 / 1000.0,
            max_ms: ms(max),
            p50_ms: ms(p50),
            p90_ms: ms(p90),
            p99_ms: ms(p99),
        }
    }
}

/// The tags naming a span's cluster: Istio's, a plain tag, OTel's.
pub(crate) const CLUSTER_TAGS: [&str; 3] = ["istio.cluster_id", "cluster", "k8s.cluster.name"];

/// The cluster a span was recorded in: the first non-empty of [`CLUSTER_TAGS`], else
/// `unknown`.
pub(crate) fn span_cluster(s: &Span) -> &str {
    CLUSTER_TAGS
        .iter()
        .find_map(|k| s.tags.get(*k).filter(|v| !v.is_empty()))
        .map_or("unknown", String::as_str)
}

/// The pre-aggregate of one part under one filter: the filter is part of the key.
fn memo_key(q: &StatsQuery) -> String {
    format!(
        "meshlens-analysis/stats/v1 cluster={:?} service={:?}",
        q.cluster, q.service
    )
}

/// The statistics of one part: its cached partial when the part lies inside the window and
/// has one, else a projection scan (whose result is offered to the part's cache when the
/// part lies inside the window).
fn part_stats(
    part: &dyn SpanPart,
    proj: &Projection<'_>,
    filter: &Filter<'_>,
    key: &str,
) -> Result<Arc<Partial>, StorageError> {
    let whole = part
        .time_range()
        .is_some_and(|(lo, hi)| lo >= proj.start_us && hi <= proj.end_us);
    if whole {
        if let Some(hit) = part
            .memo_get(key)
            .and_then(|m| m.downcast::<Partial>().ok())
        {
            return Ok(hit);
        }
    }
    let mut scan = PartScan::new(filter);
    part.scan(proj, &mut |r| scan.visit(r))?;
    let acc = Arc::new(scan.finish());
    if whole {
        part.memo_put(key, acc.clone(), acc.bytes());
    }
    Ok(acc)
}

pub fn compute_stats(spans: &dyn SpanReader, q: &StatsQuery) -> Result<Stats, AnalysisError> {
    // The window is (end - window, end] in milliseconds.
    let us = |ms: i64| (ms.max(0) as u64).saturating_mul(1000);
    let start_us = us(q.end_ms.saturating_sub(q.window_ms)).saturating_add(1);
    let end_us = us(q.end_ms);
    let mut acc = Partial::default();
    if start_us <= end_us {
        if let Some(stats) = pushdown::stats(spans, q, start_us, end_us)? {
            return Ok(stats);
        }
        let proj = Projection {
            start_us,
            end_us,
            tags: &TAG_KEYS,
            tag_prefixes: &PREFIXES,
            // `unknown` also stands for spans without a service, which no index has.
            service: q.service.as_deref().filter(|s| *s != "unknown"),
        };
        let filter = Filter {
            cluster: q.cluster.as_deref(),
            service: q.service.as_deref(),
        };
        let key = memo_key(q);
        let parts = spans.parts(start_us, end_us)?;
        let partials = parts::map_parts(&parts, |p| part_stats(p, &proj, &filter, &key))?;
        for p in &partials {
            acc.merge(p);
        }
    }
    Ok(acc.finish(q))
}
