//! The statistics from projection scans and cached per-segment partials equal a plain
//! reference computed from whole `Span`s (as `compute_stats` worked before projections), on
//! generated traces: windows covering and cutting segments, head-only data, filters, an
//! empty store, cold and warm caches, and the default `SpanReader::parts`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use meshlens_analysis::compute_stats;
use meshlens_analysis::stats::{
    Count, Distinct, PairCount, ResponseTime, Share, Stats, StatsQuery, Totals,
};
use meshlens_model::{
    RequiredOnly, Span, SpanAggregation, SpanGroup, SpanKind, SpanReader, StorageError,
};
use meshlens_spanstore::{SpanStore, SpanStoreOptions};

const MIN_US: u64 = 60_000_000;

/// The statistics straight from the definition, over built spans.
fn reference(r: &dyn SpanReader, q: &StatsQuery) -> Stats {
    let start_us = (q.end_ms - q.window_ms).max(0) as u64 * 1000 + 1;
    let end_us = q.end_ms.max(0) as u64 * 1000;
    let mut spans = Vec::new();
    if start_us <= end_us {
        r.scan(start_us, end_us, &mut |s| spans.push(s.clone()))
            .unwrap();
    }
    let tag = |s: &Span, keys: &[&str]| keys.iter().find_map(|k| s.tags.get(*k).cloned());
    let mut traces = BTreeSet::new();
    let (mut n_spans, mut requests) = (0u64, 0u64);
    let mut ops = BTreeSet::new();
    let mut clusters: BTreeMap<String, u64> = BTreeMap::new();
    let mut services: BTreeMap<String, u64> = BTreeMap::new();
    let mut urls: BTreeMap<String, u64> = BTreeMap::new();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut agents: BTreeMap<String, u64> = BTreeMap::new();
    let mut service_url: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut url_status: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut durations: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for s in &spans {
        let cluster = ["istio.cluster_id", "cluster", "k8s.cluster.name"]
            .iter()
            .find_map(|k| s.tags.get(*k).filter(|v| !v.is_empty()).cloned())
            .unwrap_or_else(|| "unknown".into());
        let service = s.local_service().unwrap_or("unknown").to_string();
        if q.cluster.as_ref().is_some_and(|c| *c != cluster)
            || q.service.as_ref().is_some_and(|x| *x != service)
        {
            continue;
        }
        n_spans += 1;
        traces.insert((s.trace_id.high, s.trace_id.low));
        if let Some(n) = &s.name {
            ops.insert(n.clone());
        }
        let request = match s.kind {
            Some(SpanKind::Server) => true,
            None => s.tags.keys().any(|k| k.starts_with("http.")),
            Some(_) => false,
        };
        if !request {
            continue;
        }
        requests += 1;
        *clusters.entry(cluster).or_default() += 1;
        *services.entry(service.clone()).or_default() += 1;
        if let Some(d) = s.duration {
            durations.entry(service.clone()).or_default().push(d);
        }
        let url = tag(
            s,
            &[
                "http.url",
                "url.full",
                "http.target",
                "url.path",
                "http.route",
            ],
        )
        .map(|u| path(&u));
        let status = tag(s, &["http.status_code", "http.response.status_code"]);
        if let Some(ua) = tag(s, &["user_agent", "http.user_agent", "user_agent.original"]) {
            *agents.entry(ua).or_default() += 1;
        }
        if let Some(u) = &url {
            *urls.entry(u.clone()).or_default() += 1;
            *service_url.entry((service, u.clone())).or_default() += 1;
            if let Some(st) = &status {
                *url_status.entry((u.clone(), st.clone())).or_default() += 1;
            }
        }
        if let Some(st) = status {
            *statuses.entry(st).or_default() += 1;
        }
    }
    let counts = |m: &BTreeMap<String, u64>| {
        let mut v: Vec<Count> = m
            .iter()
            .map(|(k, &count)| Count {
                key: k.clone(),
                count,
            })
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then(a.key.cmp(&b.key)));
        v
    };
    let pairs = |m: &BTreeMap<(String, String), u64>| {
        let mut v: Vec<PairCount> = m
            .iter()
            .map(|((k, s), &count)| PairCount {
                key: k.clone(),
                sub: s.clone(),
                count,
            })
            .collect();
        v.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then((&a.key, &a.sub).cmp(&(&b.key, &b.sub)))
        });
        v
    };
    let mut response_times: Vec<ResponseTime> = durations
        .into_iter()
        .map(|(service, mut d)| {
            d.sort_unstable();
            let n = d.len();
            let at = |q: f64| d[((q * n as f64).ceil() as usize).clamp(1, n) - 1] as f64 / 1000.0;
            let sum: u128 = d.iter().map(|&x| u128::from(x)).sum();
            ResponseTime {
                service,
                count: n as u64,
                min_ms: d[0] as f64 / 1000.0,
                avg_ms: sum as f64 / n as f64 / 1000.0,
                max_ms: d[n - 1] as f64 / 1000.0,
                p50_ms: at(0.5),
                p90_ms: at(0.9),
                p99_ms: at(0.99),
            }
        })
        .collect();
    response_times.sort_by(|a, b| b.count.cmp(&a.count).then(a.service.cmp(&b.service)));
    Stats {
        start_ms: q.end_ms - q.window_ms,
        end_ms: q.end_ms,
        cluster: q.cluster.clone(),
        service: q.service.clone(),
        totals: Totals {
            traces: traces.len() as u64,
            spans: n_spans,
            requests,
        },
        per_cluster: counts(&clusters),
        per_service: counts(&services),
        per_url: counts(&urls),
        per_service_url: pairs(&service_url),
        per_status: counts(&statuses),
        per_url_status: pairs(&url_status),
        user_agents: counts(&agents)
            .into_iter()
            .map(|c| Share {
                share: c.count as f64 / requests.max(1) as f64,
                key: c.key,
                count: c.count,
            })
            .collect(),
        response_times,
        distinct: Distinct {
            urls: urls.into_keys().collect(),
            user_agents: agents.into_keys().collect(),
            status_codes: statuses.into_keys().collect(),
            operations: ops.into_iter().collect(),
        },
    }
}

fn path(u: &str) -> String {
    let no_scheme = match u.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        },
        None => u,
    };
    no_scheme.split(['?', '#']).next().unwrap_or("").to_string()
}

/// Generated traces with the shapes the generator lacks: clusters (and empty cluster
/// tags), spans without kind (with and without HTTP tags), without timestamp or duration,
/// other URL / status / user-agent keys, upper-case services, 64-bit ids.
fn varied(n_traces: usize, seed: u64, lo: u64, hi: u64) -> Vec<Span> {
    let mut spans = meshlens_testdata::generate_spans_at(n_traces, seed, lo, hi);
    for (i, s) in spans.iter_mut().enumerate() {
        let mut put = |k: &str, v: &str| {
            s.tags.insert(k.to_string(), v.to_string());
        };
        match i % 11 {
            0 => put("istio.cluster_id", "west"),
            1 => {
                put("istio.cluster_id", "");
                put("cluster", "east");
            }
            2 => put("k8s.cluster.name", "north"),
            _ => {}
        }
        match i % 13 {
            0 => {
                let u = s.tags.remove("http.url").unwrap_or_default();
                s.tags.insert("url.full".into(), u);
            }
            1 => {
                s.tags.remove("http.url");
                s.tags.insert("http.target".into(), "/t/x?y=1".into());
            }
            2 => {
                s.tags.remove("http.url");
                s.tags.insert("http.route".into(), "/r/{id}".into());
            }
            3 => {
                let c = s.tags.remove("http.status_code").unwrap_or_default();
                s.tags.insert("http.response.status_code".into(), c);
            }
            4 => {
                let ua = s.tags.remove("user_agent").unwrap_or_default();
                s.tags.insert("user_agent.original".into(), ua);
            }
            _ => {}
        }
        match i % 17 {
            0 => s.kind = None,
            1 => {
                s.kind = None;
                s.tags.retain(|k, _| !k.starts_with("http."));
            }
            2 => s.timestamp = None,
            3 => s.duration = None,
            4 => {
                if let Some(e) = s.local_endpoint.as_mut() {
                    e.service_name = Some("Frontend.Default".into());
                }
            }
            5 => s.local_endpoint = None,
            6 => s.name = None,
            _ => {}
        }
        if i % 29 == 0 {
            // A 64-bit id (its high half is zero, as parsing gives).
            s.trace_id.is_128 = false;
            s.trace_id.high = 0;
        }
    }
    spans
}

/// A store's own aggregation (as ClickHouse's), by the model's reference meaning of an
/// aggregation over the spans `store` scans: `compute_stats` takes the pushdown path.
fn reference_aggregate(
    store: &dyn SpanReader,
    a: &SpanAggregation,
) -> Result<Option<Vec<SpanGroup>>, StorageError> {
    let mut spans = Vec::new();
    if a.start_us <= a.end_us {
        store.scan(a.start_us, a.end_us, &mut |s| spans.push(s.clone()))?;
    }
    // Any order will do: the analysis must not rely on the store's.
    let mut groups = meshlens_model::aggregate::evaluate(a, &spans);
    groups.reverse();
    Ok(Some(groups))
}

fn store(dir: &std::path::Path) -> Arc<SpanStore> {
    let opts = SpanStoreOptions {
        fsync: false,
        segment_target_spans: 4_000,
        ..SpanStoreOptions::default()
    };
    Arc::new(SpanStore::open(dir, opts).unwrap())
}

fn queries(end_ms: i64) -> Vec<StatsQuery> {
    let q = |window_min: i64, end_min_ago: i64, cluster: Option<&str>, service: Option<&str>| {
        StatsQuery {
            window_ms: window_min * 60_000,
            end_ms: end_ms - end_min_ago * 60_000,
            cluster: cluster.map(String::from),
            service: service.map(String::from),
        }
    };
    vec![
        q(70, 0, None, None),
        q(23, 17, None, None),
        q(70, 0, Some("west"), None),
        q(70, 0, Some("unknown"), None),
        q(70, 0, None, Some("frontend.default")),
        q(70, 0, None, Some("Frontend.Default")),
        q(70, 0, None, Some("unknown")),
        q(31, 5, Some("east"), Some("cartservice.default")),
        q(5, 0, None, None),
        q(10, 120, None, None),
        q(0, 0, None, None),
    ]
}

/// Field by field, so that a difference is reported readably.
fn same(got: &Stats, want: &Stats, what: &str) {
    assert_eq!(got.totals, want.totals, "{what}: totals");
    assert_eq!(got.per_cluster, want.per_cluster, "{what}: per_cluster");
    assert_eq!(got.per_service, want.per_service, "{what}: per_service");
    assert_eq!(
        got.response_times, want.response_times,
        "{what}: response times"
    );
    assert_eq!(got.per_status, want.per_status, "{what}: per_status");
    assert_eq!(got.user_agents, want.user_agents, "{what}: user agents");
    assert_eq!(got.distinct, want.distinct, "{what}: distinct");
    assert!(got == want, "{what}: URL lists differ");
}

fn assert_all_equal(store: &Arc<SpanStore>, end_ms: i64) {
    // Only the required methods: `parts` is the trait's default (time slices over `scan`).
    let scan_only = RequiredOnly::new(&**store);
    for q in queries(end_ms) {
        let want = reference(&**store, &q);
        same(
            &compute_stats(&**store, &q).unwrap(),
            &want,
            &format!("cold {q:?}"),
        );
        same(
            &compute_stats(&**store, &q).unwrap(),
            &want,
            &format!("warm {q:?}"),
        );
        let default = compute_stats(&scan_only, &q).unwrap();
        same(&default, &want, &format!("default parts {q:?}"));
    }
    let by_reference = |a: &SpanAggregation| reference_aggregate(&**store, a);
    let aggregating = RequiredOnly {
        store: &**store,
        aggregate: Some(&by_reference),
    };
    for q in queries(end_ms) {
        let want = reference(&**store, &q);
        let got = compute_stats(&aggregating, &q).unwrap();
        same(&got, &want, &format!("aggregated by the store {q:?}"));
    }
}

#[test]
fn projection_and_preaggregates_equal_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let end_ms = meshlens_model::time::now_ms();
    let now = end_ms as u64 * 1000;
    // An hour in 12 slices, each flushed to segments; then 4 minutes left in the head.
    for k in 0..12u64 {
        let lo = now - 64 * MIN_US + k * 5 * MIN_US;
        s.write_spans(&varied(400, k, lo, lo + 5 * MIN_US)).unwrap();
        s.flush().unwrap();
    }
    // The same spans again in one slice: duplicates count as stored.
    let again = varied(400, 3, now - 49 * MIN_US, now - 44 * MIN_US);
    s.write_spans(&again).unwrap();
    s.flush().unwrap();
    s.write_spans(&varied(500, 99, now - 4 * MIN_US, now - MIN_US))
        .unwrap();
    let st = s.stats();
    assert!(st.segments > 10 && st.head_spans > 0, "{st:?}");
    assert!(
        compute_stats(&*s, &queries(end_ms)[0])
            .unwrap()
            .totals
            .spans
            > 20_000
    );
    assert_all_equal(&s, end_ms);
    assert!(s.stats().preaggregates > 0, "whole segments keep partials");
}

#[test]
fn head_only_and_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let end_ms = meshlens_model::time::now_ms();
    assert_all_equal(&s, end_ms);
    let empty = compute_stats(&*s, &queries(end_ms)[0]).unwrap();
    assert_eq!(empty.totals, Totals::default());
    let now = end_ms as u64 * 1000;
    s.write_spans(&varied(400, 7, now - 30 * MIN_US, now - MIN_US))
        .unwrap();
    assert_eq!(s.stats().segments, 0);
    assert_all_equal(&s, end_ms);
    assert_eq!(s.stats().preaggregates, 0, "a head keeps no partials");
}

#[test]
fn evicted_and_retained_partials_give_the_same_figures() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SpanStoreOptions {
        fsync: false,
        segment_target_spans: 2_000,
        // Room for a few segments' partials only: queries keep evicting.
        preaggregate_bytes: 200_000,
        ..SpanStoreOptions::default()
    };
    let s = Arc::new(SpanStore::open(dir.path(), opts).unwrap());
    let end_ms = meshlens_model::time::now_ms();
    let now = end_ms as u64 * 1000;
    for k in 0..6u64 {
        let lo = now - 60 * MIN_US + k * 10 * MIN_US;
        s.write_spans(&varied(500, 40 + k, lo, lo + 10 * MIN_US))
            .unwrap();
    }
    s.flush().unwrap();
    assert_all_equal(&s, end_ms);
    let st = s.stats();
    assert!(
        st.preaggregates > 0 && st.preaggregate_bytes <= 200_000,
        "{st:?}"
    );
}

#[test]
fn extreme_windows_are_answered_not_panicked_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let end_ms = meshlens_model::time::now_ms();
    let now = end_ms as u64 * 1000;
    s.write_spans(&varied(50, 5, now - 10 * MIN_US, now))
        .unwrap();
    s.flush().unwrap();
    let q = |window_ms: i64, end_ms: i64| StatsQuery {
        window_ms,
        end_ms,
        cluster: None,
        service: None,
    };
    let all = compute_stats(&*s, &q(i64::MAX, i64::MAX)).unwrap();
    assert_eq!(
        all.totals,
        compute_stats(&*s, &q(3_600_000, end_ms + 1))
            .unwrap()
            .totals
    );
    assert!(all.totals.spans > 0);
    for (w, e) in [
        (i64::MIN, 0),
        (-5, end_ms),
        (i64::MIN, i64::MAX),
        (10, i64::MIN),
    ] {
        assert_eq!(
            compute_stats(&*s, &q(w, e)).unwrap().totals,
            Totals::default()
        );
    }
}
