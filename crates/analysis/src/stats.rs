//! Traffic statistics in the manner of OPNFV Clover's visibility service: request counts per
//! URL, service, service and URL, URL and status code; user-agent shares; response times per
//! service; totals and the distinct values seen. One scan of the span store over the window
//! (split across threads by time), no second copy of the data.
//!
//! A request is a SERVER span, or a span without kind that carries HTTP tags, so that the
//! CLIENT half of each call does not count it twice.

mod collect;

use meshlens_model::{Span, SpanReader};
use serde::Serialize;

use crate::AnalysisError;
use collect::Partial;

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

/// The cluster a span was recorded in: Istio's `istio.cluster_id`, a `cluster` tag, OTel's
/// `k8s.cluster.name` (the first non-empty one), else `unknown`.
pub(crate) fn span_cluster(s: &Span) -> &str {
    ["istio.cluster_id", "cluster", "k8s.cluster.name"]
        .iter()
        .find_map(|k| s.tags.get(*k).filter(|v| !v.is_empty()))
        .map_or("unknown", String::as_str)
}

/// Threads the scan is split across (by time); the store is shared and read-only.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

pub fn compute_stats(spans: &dyn SpanReader, q: &StatsQuery) -> Result<Stats, AnalysisError> {
    let start_us = (q.end_ms - q.window_ms).max(0) as u64 * 1000 + 1;
    let end_us = q.end_ms.max(0) as u64 * 1000;
    let n = threads() as u64;
    let step = (end_us.saturating_sub(start_us) / n).max(1);
    let parts: Vec<Result<Partial, AnalysisError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let lo = start_us + i * step;
                let hi = if i == n - 1 { end_us } else { lo + step - 1 };
                scope.spawn(move || {
                    let mut p = Partial::new(q);
                    if lo <= hi {
                        spans.scan(lo, hi, &mut |s| p.visit(s))?;
                    }
                    Ok(p)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut parts = parts.into_iter();
    let mut acc = parts.next().expect("at least one part")?;
    for p in parts {
        acc.merge(p?);
    }
    Ok(acc.finish(q))
}
