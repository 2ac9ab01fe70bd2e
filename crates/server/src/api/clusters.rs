//! The hub's view of its clusters: `GET /api/v1/clusters`, and the middleware that learns
//! each forwarding agent from the `X-Meshlens-Cluster`, `-Agent`, `-Items` and `-Oldest`
//! headers of the writes it accepts.
//!
//! The headers are advisory: a bad value is ignored rather than refused, so a sender's
//! bookkeeping can never cost it a write. Only 2xx answers count, so a retried request is
//! counted once, when it is stored.

mod tracker;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use meshlens_model::{LabelMatcher, MetricReader};
use serde_json::{json, Value};

use super::GlobalState;
use crate::tenants::{federated::FederatedMetrics, Target};

pub use tracker::{AgentKey, AgentView, ClusterTracker, ItemKind};

pub use meshlens_forward::{AGENT_HEADER, CLUSTER_HEADER, ITEMS_HEADER, OLDEST_HEADER};

/// The series label naming a cluster (what agents stamp on every series).
const CLUSTER_LABEL: &str = "cluster";
/// Longest cluster or agent name tracked; longer values are ignored.
const MAX_NAME: usize = 256;
/// Clusters named by stored series: over this much of the recent past.
const LABEL_LOOKBACK_MS: i64 = tracker::FORGET_MS;
/// A cluster's active series: those with samples this recent.
const SERIES_LOOKBACK_MS: i64 = 5 * 60_000;

/// Wraps `router` so that accepted writes from agents update the tracker.
pub fn observed(router: Router, state: Arc<GlobalState>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(state, observe))
}

async fn observe(State(s): State<Arc<GlobalState>>, req: Request, next: Next) -> Response {
    let seen = forwarded(&s, req.method(), req.uri().path(), req.headers());
    let resp = next.run(req).await;
    if let Some((key, kind, items, oldest)) = seen {
        if resp.status().is_success() {
            let now = meshlens_model::time::now_ms();
            s.clusters.record(now, key, kind, items, oldest);
        }
    }
    resp
}

/// What an agent's write says of its sender, or None for a request that is not one.
fn forwarded(
    s: &GlobalState,
    method: &Method,
    path: &str,
    h: &HeaderMap,
) -> Option<(AgentKey, ItemKind, u64, Option<i64>)> {
    if method != Method::POST {
        return None;
    }
    let kind = match path {
        "/api/v1/write" => ItemKind::Samples,
        "/v1/traces" | "/api/v2/spans" => ItemKind::Spans,
        _ => return None,
    };
    let cluster = name(h, CLUSTER_HEADER)?;
    let tenant = if s.tenants.multitenant() {
        // A write names exactly one tenant; otherwise it is refused and not counted anyway.
        let raw = h
            .get(meshlens_access::tenant::ORG_ID_HEADER)?
            .to_str()
            .ok()?;
        let mut ids = meshlens_access::tenant::parse_org_ids(raw).ok()?;
        (ids.len() == 1).then(|| ids.remove(0))?
    } else {
        s.tenants.scrape_stack().id.clone()
    };
    let agent = name(h, AGENT_HEADER).unwrap_or_else(|| "unknown".to_string());
    let items = header_str(h, ITEMS_HEADER)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let oldest = header_str(h, OLDEST_HEADER)
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|ms| *ms > 0);
    let key = AgentKey {
        tenant,
        cluster,
        agent,
    };
    Some((key, kind, items, oldest))
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)?.to_str().ok().map(str::trim)
}

/// A cluster or agent name: visible ASCII, not empty, not too long.
fn name(h: &HeaderMap, header: &str) -> Option<String> {
    header_str(h, header)
        .filter(|v| !v.is_empty() && v.len() <= MAX_NAME)
        .map(str::to_string)
}

/// `GET /api/v1/clusters`: the clusters of the request's tenant(s), from the agents heard
/// of and from the `cluster` label of stored series.
pub async fn clusters(State(s): State<Arc<GlobalState>>, headers: HeaderMap) -> Response {
    let (tenants, reader) = match reader_of(&s, &headers).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let now = meshlens_model::time::now_ms();
    let agents: Vec<AgentView> = s
        .clusters
        .snapshot(now)
        .into_iter()
        .filter(|a| tenants.contains(&a.key.tenant))
        .collect();
    let mut names: Vec<String> = agents.iter().map(|a| a.key.cluster.clone()).collect();
    let series = tokio::task::spawn_blocking(move || {
        match reader.label_values(CLUSTER_LABEL, &[], now - LABEL_LOOKBACK_MS, now) {
            Ok(v) => names.extend(v.into_iter().filter(|c| !c.is_empty())),
            Err(e) => tracing::debug!(error = %e, "reading cluster label values failed"),
        }
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|c| {
                let m = [LabelMatcher::equal(CLUSTER_LABEL, c.clone())];
                let n = reader
                    .series(&m, now - SERIES_LOOKBACK_MS, now)
                    .map(|s| s.len() as u64)
                    .inspect_err(
                        |e| tracing::debug!(cluster = %c, error = %e, "counting series failed"),
                    )
                    .ok();
                (c, n)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let multitenant = s.tenants.multitenant();
    super::success(render(now, &agents, series, multitenant))
}

/// The tenants a read covers and a metric reader over them; or the refusal of a request
/// whose `X-Scope-OrgID` is missing or bad (as every tenant route answers it).
async fn reader_of(
    s: &GlobalState,
    headers: &HeaderMap,
) -> Result<(Vec<String>, Arc<dyn MetricReader>), Response> {
    match s.tenants.resolve(headers, false).await {
        Ok(Target::One(stack)) => Ok((vec![stack.id.clone()], stack.metrics_reader.clone())),
        Ok(Target::View(_)) => {
            // `resolve` accepted the header, so it parses; tenants never written read empty.
            let ids = headers
                .get(meshlens_access::tenant::ORG_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| meshlens_access::tenant::parse_org_ids(v).ok())
                .unwrap_or_default();
            let stacks = s.tenants.all();
            let readers = stacks
                .iter()
                .filter(|st| ids.contains(&st.id))
                .map(|st| (st.id.clone(), st.metrics_reader.clone()))
                .collect();
            Ok((ids, Arc::new(FederatedMetrics { tenants: readers })))
        }
        Err(r) => Err((r.status, format!("{}\n", r.message)).into_response()),
    }
}

/// The answer's `data`: one entry per cluster, sorted by name.
fn render(
    now: i64,
    agents: &[AgentView],
    series: Vec<(String, Option<u64>)>,
    with_tenant: bool,
) -> Value {
    let mut by_cluster: BTreeMap<&str, Vec<&AgentView>> = BTreeMap::new();
    for a in agents {
        by_cluster.entry(&a.key.cluster).or_default().push(a);
    }
    let series: BTreeMap<String, Option<u64>> = series.into_iter().collect();
    let mut names: Vec<&str> = by_cluster.keys().copied().collect();
    names.extend(series.keys().map(String::as_str));
    names.sort_unstable();
    names.dedup();
    let data: Vec<Value> = names
        .into_iter()
        .map(|name| {
            let list = by_cluster.get(name).map(Vec::as_slice).unwrap_or_default();
            cluster_json(
                now,
                name,
                list,
                series.get(name).copied().flatten(),
                with_tenant,
            )
        })
        .collect();
    Value::Array(data)
}

fn cluster_json(
    now: i64,
    name: &str,
    agents: &[&AgentView],
    series: Option<u64>,
    with_tenant: bool,
) -> Value {
    let mut list: Vec<&&AgentView> = agents.iter().collect();
    list.sort_by(|a, b| (&a.key.agent, &a.key.tenant).cmp(&(&b.key.agent, &b.key.tenant)));
    let agent_json: Vec<Value> = list
        .iter()
        .map(|a| {
            let mut v = json!({
                "id": a.key.agent,
                "lastSeen": meshlens_model::time::rfc3339_ms(a.last_seen_ms),
                "secondsSinceSeen": a.seconds_since_seen,
                "lagSeconds": a.lag_seconds,
                "samplesPerSecond": a.samples_per_second,
                "spansPerSecond": a.spans_per_second,
                "stale": a.stale,
            });
            if with_tenant {
                v["tenant"] = json!(a.key.tenant);
            }
            v
        })
        .collect();
    let last = agents.iter().map(|a| a.last_seen_ms).max();
    // A stale agent's lag is as old as its last request: only live agents say how far
    // behind the cluster is now.
    let lag = agents
        .iter()
        .filter(|a| !a.stale)
        .filter_map(|a| a.lag_seconds)
        .reduce(f64::max);
    json!({
        "name": name,
        "agents": agent_json,
        "lastSeen": last.map(meshlens_model::time::rfc3339_ms),
        "secondsSinceSeen": last.map(|l| (now - l).max(0) as f64 / 1000.0),
        "lagSeconds": lag,
        "samplesPerSecond": agents.iter().map(|a| a.samples_per_second).sum::<f64>(),
        "spansPerSecond": agents.iter().map(|a| a.spans_per_second).sum::<f64>(),
        "stale": !agents.is_empty() && agents.iter().all(|a| a.stale),
        "series": series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(cluster: &str, agent: &str, last: i64, lag: Option<f64>, stale: bool) -> AgentView {
        AgentView {
            key: AgentKey {
                tenant: "anonymous".into(),
                cluster: cluster.into(),
                agent: agent.into(),
            },
            last_seen_ms: last,
            seconds_since_seen: 0.0,
            lag_seconds: lag,
            samples_per_second: 10.0,
            spans_per_second: 1.5,
            stale,
        }
    }

    #[test]
    fn clusters_from_agents_and_from_series_labels() {
        let now = 1_700_000_010_000;
        let agents = [
            view("east", "b", now - 2_000, Some(0.5), false),
            view("east", "a", now - 1_000, Some(0.2), false),
            view("east", "old", now - 3_600_000, Some(99.0), true),
        ];
        let series = vec![("edge".to_string(), Some(7)), ("east".to_string(), None)];
        let data = render(now, &agents, series, false);
        let names: Vec<&str> = data
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["east", "edge"]);
        let east = &data[0];
        let ids: Vec<&str> = east["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a", "b", "old"]);
        assert_eq!(east["lastSeen"], "2023-11-14T22:13:29Z");
        assert_eq!(east["secondsSinceSeen"], 1.0);
        assert_eq!(east["lagSeconds"], 0.5, "the stale agent's lag is left out");
        assert_eq!(east["samplesPerSecond"], 30.0);
        assert_eq!(east["spansPerSecond"], 4.5);
        assert_eq!(east["series"], Value::Null);
        assert_eq!(east["stale"], false);
        assert_eq!(east["agents"][2]["stale"], true);
        assert!(east["agents"][0].get("tenant").is_none());
        let edge = &data[1];
        assert_eq!(edge["agents"], json!([]));
        assert_eq!(edge["series"], 7);
        assert_eq!(edge["lastSeen"], Value::Null);
        assert_eq!(edge["samplesPerSecond"], 0.0);
    }

    #[test]
    fn header_names_are_trimmed_and_bounded() {
        use axum::http::HeaderValue;
        let h = |pairs: &[(&'static str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_str(v).unwrap());
            }
            m
        };
        let full = h(&[
            (CLUSTER_HEADER, "east"),
            (AGENT_HEADER, "host:1"),
            (ITEMS_HEADER, "12"),
            (OLDEST_HEADER, "1700000000000"),
        ]);
        let bad = h(&[
            (CLUSTER_HEADER, " west "),
            (ITEMS_HEADER, "lots"),
            (OLDEST_HEADER, "-5"),
        ]);
        assert_eq!(name(&full, CLUSTER_HEADER).as_deref(), Some("east"));
        assert_eq!(name(&bad, CLUSTER_HEADER).as_deref(), Some("west"));
        assert_eq!(name(&bad, AGENT_HEADER), None);
        let long = h(&[(CLUSTER_HEADER, &"x".repeat(MAX_NAME + 1))]);
        assert_eq!(name(&long, CLUSTER_HEADER), None);
        let empty = h(&[(CLUSTER_HEADER, "  ")]);
        assert_eq!(name(&empty, CLUSTER_HEADER), None);
    }
}
