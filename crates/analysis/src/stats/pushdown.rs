//! The statistics from aggregations the span store runs itself (`SpanReader::aggregate`),
//! for stores where reading every span means shipping it (ClickHouse).
//!
//! The semantics stay here: which spans are requests, which tags name the cluster, URL,
//! status and user agent, `unknown` for a missing cluster or service, and the URL's path
//! (taken here from the grouped raw values, so the store needs no URL parsing). The store
//! only filters, groups, counts and summarises durations. Five aggregations, the last four
//! run concurrently: totals, operations, requests by (service, URL, status), requests by (cluster, user
//! agent), and response times by service. The result equals the scan's, field for field.

use std::collections::{BTreeMap, BTreeSet};

use meshlens_model::{
    MeasureValue, SpanAggregation, SpanDimension, SpanField, SpanFilter, SpanGroup, SpanKind,
    SpanMeasure, SpanReader, StorageError,
};

use super::collect::{path_of, AGENT, CLUSTER, PREFIXES, STATUS, TAG_KEYS, URL};
use super::{Count, Distinct, PairCount, ResponseTime, Stats, StatsQuery, Totals};

/// The percentiles of `ResponseTime`, in its field order.
const QUANTILES: [f64; 3] = [0.50, 0.90, 0.99];

fn tag_dim(keys: std::ops::Range<usize>, non_empty: bool, absent: Option<&str>) -> SpanDimension {
    SpanDimension {
        field: SpanField::Tag {
            keys: TAG_KEYS[keys].iter().map(|k| k.to_string()).collect(),
            non_empty,
        },
        absent: absent.map(str::to_string),
    }
}

fn cluster_dim() -> SpanDimension {
    tag_dim(CLUSTER, true, Some("unknown"))
}

fn service_dim() -> SpanDimension {
    SpanDimension {
        field: SpanField::LocalService,
        absent: Some("unknown".into()),
    }
}

/// The spans a query counts, and those of them that are requests.
fn filters(q: &StatsQuery) -> (SpanFilter, SpanFilter) {
    let mut base = Vec::new();
    if let Some(c) = &q.cluster {
        base.push(SpanFilter::Equals(cluster_dim(), c.clone()));
    }
    if let Some(s) = &q.service {
        base.push(SpanFilter::Equals(service_dim(), s.clone()));
    }
    let is_request = SpanFilter::Any(vec![
        SpanFilter::Kind(Some(SpanKind::Server)),
        SpanFilter::All(vec![
            SpanFilter::Kind(None),
            SpanFilter::TagKeyPrefix(PREFIXES[0].to_string()),
        ]),
    ]);
    let requests = SpanFilter::All(base.iter().cloned().chain([is_request]).collect());
    (SpanFilter::All(base), requests)
}

/// Counts by key, largest first, then by key (as the scan's tables sort them).
fn sorted(m: &BTreeMap<String, u64>) -> Vec<Count> {
    let mut v: Vec<Count> = m
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(k, &count)| Count {
            key: k.clone(),
            count,
        })
        .collect();
    super::order_counts(&mut v);
    v
}

fn sorted_pairs(m: &BTreeMap<(String, String), u64>) -> Vec<PairCount> {
    let mut v: Vec<PairCount> = m
        .iter()
        .map(|((key, sub), &count)| PairCount {
            key: key.clone(),
            sub: sub.clone(),
            count,
        })
        .collect();
    super::order_pairs(&mut v);
    v
}

/// The string of a group's key column (every column here has a value or is skipped).
fn key(g: &SpanGroup, i: usize) -> Option<&str> {
    g.key.get(i).and_then(|k| k.as_deref())
}

fn count(g: &SpanGroup) -> u64 {
    g.values.first().map_or(0, MeasureValue::count)
}

/// The statistics of `[start_us, end_us]` from the store's aggregations, or `None` when the
/// store does not aggregate.
pub(super) fn stats(
    spans: &dyn SpanReader,
    q: &StatsQuery,
    start_us: u64,
    end_us: u64,
) -> Result<Option<Stats>, StorageError> {
    let (base, requests) = filters(q);
    let agg = |filter: &SpanFilter, group_by: Vec<SpanDimension>, measures: Vec<SpanMeasure>| {
        spans.aggregate(&SpanAggregation {
            start_us,
            end_us,
            filter: filter.clone(),
            group_by,
            measures,
        })
    };
    let name = SpanDimension {
        field: SpanField::Name,
        absent: None,
    };
    let by_call = vec![
        service_dim(),
        tag_dim(URL, false, None),
        tag_dim(STATUS, false, None),
    ];
    let by_origin = vec![cluster_dim(), tag_dim(AGENT, false, None)];
    let durations = SpanMeasure::Durations {
        quantiles: QUANTILES.to_vec(),
    };
    // The totals first: a store that does not aggregate says so at once.
    let Some(totals) = agg(
        &base,
        Vec::new(),
        vec![SpanMeasure::Spans, SpanMeasure::Traces],
    )?
    else {
        return Ok(None);
    };
    // The rest together: each is a round trip to a remote store, and they are independent.
    let (names, calls, origins, times) = std::thread::scope(|scope| {
        let join = |h: std::thread::ScopedJoinHandle<'_, _>| {
            h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
        };
        let names = scope.spawn(|| agg(&base, vec![name], vec![SpanMeasure::Spans]));
        let calls = scope.spawn(|| agg(&requests, by_call, vec![SpanMeasure::Spans]));
        let origins = scope.spawn(|| agg(&requests, by_origin, vec![SpanMeasure::Spans]));
        let times = agg(&requests, vec![service_dim()], vec![durations]);
        (join(names), join(calls), join(origins), times)
    });
    let (Some(names), Some(calls), Some(origins), Some(times)) = (names?, calls?, origins?, times?)
    else {
        return Ok(None);
    };

    let (spans_n, traces) = match totals.first().map(|g| g.values.as_slice()) {
        Some([s, t]) => (s.count(), t.count()),
        _ => (0, 0),
    };
    let operations: BTreeSet<String> = names
        .iter()
        .filter_map(|g| key(g, 0).map(str::to_string))
        .collect();

    let mut requests_n = 0;
    let mut services: BTreeMap<String, u64> = BTreeMap::new();
    let mut urls: BTreeMap<String, u64> = BTreeMap::new();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut service_url: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut url_status: BTreeMap<(String, String), u64> = BTreeMap::new();
    for g in &calls {
        let n = count(g);
        requests_n += n;
        let service = key(g, 0).unwrap_or("unknown");
        *services.entry(service.to_string()).or_default() += n;
        let url = key(g, 1).map(path_of);
        let status = key(g, 2);
        if let Some(s) = status {
            *statuses.entry(s.to_string()).or_default() += n;
        }
        if let Some(u) = url {
            *urls.entry(u.to_string()).or_default() += n;
            *service_url
                .entry((service.to_string(), u.to_string()))
                .or_default() += n;
            if let Some(s) = status {
                *url_status
                    .entry((u.to_string(), s.to_string()))
                    .or_default() += n;
            }
        }
    }
    let mut clusters: BTreeMap<String, u64> = BTreeMap::new();
    let mut agents: BTreeMap<String, u64> = BTreeMap::new();
    for g in &origins {
        let n = count(g);
        *clusters
            .entry(key(g, 0).unwrap_or("unknown").to_string())
            .or_default() += n;
        if let Some(a) = key(g, 1) {
            *agents.entry(a.to_string()).or_default() += n;
        }
    }
    let user_agents = super::shares(sorted(&agents), requests_n);
    let mut response_times: Vec<ResponseTime> = times
        .iter()
        .filter_map(|g| match g.values.first() {
            Some(MeasureValue::Durations(d)) if d.count > 0 => {
                let pick = |i: usize| d.quantiles.get(i).copied().unwrap_or(0);
                Some(ResponseTime::from_micros(
                    key(g, 0).unwrap_or("unknown"),
                    d.count,
                    d.min,
                    d.sum,
                    d.max,
                    [pick(0), pick(1), pick(2)],
                ))
            }
            _ => None,
        })
        .collect();
    super::order_response_times(&mut response_times);
    Ok(Some(Stats {
        start_ms: q.end_ms.saturating_sub(q.window_ms),
        end_ms: q.end_ms,
        cluster: q.cluster.clone(),
        service: q.service.clone(),
        totals: Totals {
            traces,
            spans: spans_n,
            requests: requests_n,
        },
        per_cluster: sorted(&clusters),
        per_service: sorted(&services),
        per_url: sorted(&urls),
        per_service_url: sorted_pairs(&service_url),
        per_status: sorted(&statuses),
        per_url_status: sorted_pairs(&url_status),
        user_agents,
        response_times,
        distinct: Distinct {
            urls: urls.into_keys().collect(),
            user_agents: agents.into_keys().collect(),
            status_codes: statuses.into_keys().collect(),
            operations: operations.into_iter().collect(),
        },
    }))
}
