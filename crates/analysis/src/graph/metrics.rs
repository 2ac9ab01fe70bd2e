//! The graph from Istio's standard metrics, through the PromQL engine.
//!
//! Three instant queries at the window's end, each `sum by (<every identity label>)
//! (increase(<metric>[window]))`: requests (by response code and mTLS policy), duration
//! buckets (by `le`) and TCP bytes. Grouping by every identity label once, then folding in
//! Rust per graph type, serves all four graph types with the same queries; quantiles are
//! Prometheus's `histogram_quantile` algorithm applied to the folded buckets, which equals
//! `histogram_quantile(q, sum by (le, <edge labels>) (increase(...)))` at a third of the
//! storage reads of three separate quantile queries.
//!
//! Like Kiali, an edge reported by the destination proxy is taken from `reporter=
//! "destination"`; `reporter="source"` only fills in edges no destination reports (calls to
//! services outside the mesh), so no request is counted twice.

use meshlens_model::{Labels, MetricReader};
use meshlens_promql::{Engine, Value};

use super::{EdgeAcc, EdgeKey, EdgeMap, GraphQuery, GraphType, NodeKey};
use crate::fx::FxMap;
use crate::AnalysisError;

const IDENTITY: &str = "reporter, cluster, source_cluster, destination_cluster, \
    source_workload, source_workload_namespace, source_app, source_version, \
    destination_workload, destination_workload_namespace, destination_app, \
    destination_version, destination_service, destination_service_name, \
    destination_service_namespace, request_protocol";

fn query(
    engine: &Engine,
    storage: &dyn MetricReader,
    q: &GraphQuery,
    by: &str,
    metric: &str,
) -> Result<Vec<(Labels, f64)>, AnalysisError> {
    let text = format!(
        "sum by ({IDENTITY}{by}) (increase({metric}[{}ms]))",
        q.window_ms
    );
    let res = engine
        .instant_query(storage, &text, q.end_ms)
        .map_err(|source| AnalysisError::Promql {
            query: text.clone(),
            source,
        })?;
    Ok(match res.value {
        Value::Vector(v) => v
            .into_iter()
            .filter(|s| s.v.is_finite())
            .map(|s| (s.labels, s.v))
            .collect(),
        _ => Vec::new(),
    })
}

fn get<'a>(l: &'a Labels, names: &[&str]) -> &'a str {
    names
        .iter()
        .filter_map(|n| l.get(n))
        .find(|v| !v.is_empty() && *v != "unknown")
        .unwrap_or("unknown")
}

/// Which service a workload serves, learnt from the destination labels, so that a service
/// graph can name the source of a call by its service.
type ServiceOf = FxMap<(String, String, String), String>;

fn src_key(l: &Labels, gt: GraphType, services: &ServiceOf) -> NodeKey {
    let cluster = get(l, &["source_cluster", "cluster"]).to_string();
    let namespace = get(l, &["source_workload_namespace"]).to_string();
    let workload = get(l, &["source_workload"]);
    let (name, version) = match gt {
        GraphType::Workload => (workload.to_string(), None),
        GraphType::App => (get(l, &["source_app", "source_workload"]).to_string(), None),
        GraphType::VersionedApp => (
            get(l, &["source_app", "source_workload"]).to_string(),
            Some(get(l, &["source_version"]).to_string()),
        ),
        GraphType::Service => (
            services
                .get(&(cluster.clone(), namespace.clone(), workload.to_string()))
                .cloned()
                .unwrap_or_else(|| workload.to_string()),
            None,
        ),
    };
    NodeKey {
        cluster,
        namespace,
        name,
        version,
    }
}

fn dst_key(l: &Labels, gt: GraphType) -> NodeKey {
    let cluster = get(l, &["destination_cluster", "cluster"]).to_string();
    let svc = ["destination_service_name", "destination_service"];
    let (ns, name, version) = match gt {
        GraphType::Service => (
            get(l, &["destination_service_namespace"]),
            get(l, &svc),
            None,
        ),
        GraphType::Workload => (
            get(
                l,
                &[
                    "destination_workload_namespace",
                    "destination_service_namespace",
                ],
            ),
            get(l, &["destination_workload", svc[0], svc[1]]),
            None,
        ),
        GraphType::App | GraphType::VersionedApp => (
            get(
                l,
                &[
                    "destination_workload_namespace",
                    "destination_service_namespace",
                ],
            ),
            get(
                l,
                &["destination_app", "destination_workload", svc[0], svc[1]],
            ),
            (gt == GraphType::VersionedApp).then(|| get(l, &["destination_version"])),
        ),
    };
    NodeKey {
        cluster,
        namespace: ns.to_string(),
        name: name.to_string(),
        version: version.map(str::to_string),
    }
}

fn protocol(l: &Labels, default: &str) -> String {
    l.get("request_protocol").unwrap_or(default).to_string()
}

/// Edges per reporter (0 = destination, 1 = source).
struct Folded([EdgeMap; 2]);

impl Folded {
    fn acc(&mut self, l: &Labels, key: EdgeKey) -> &mut EdgeAcc {
        let r = usize::from(l.get("reporter") == Some("source"));
        let a = self.0[r].entry(key).or_default();
        a.from_metrics = true;
        a
    }
}

pub(crate) fn edges(
    storage: &dyn MetricReader,
    engine: &Engine,
    q: &GraphQuery,
) -> Result<EdgeMap, AnalysisError> {
    let gt = q.graph_type;
    // The queries are independent: run them side by side (the bucket query, ten times the
    // series of the others, dominates).
    let [requests, buckets, sent, received] = std::thread::scope(|s| {
        let run = |by: &'static str, metric: &'static str| {
            s.spawn(move || query(engine, storage, q, by, metric))
        };
        let handles = [
            run(
                ", response_code, connection_security_policy",
                "istio_requests_total",
            ),
            run(", le", "istio_request_duration_milliseconds_bucket"),
            run("", "istio_tcp_sent_bytes_total"),
            run("", "istio_tcp_received_bytes_total"),
        ];
        handles.map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    });
    let (requests, buckets, sent, received) = (requests?, buckets?, sent?, received?);

    let mut services = ServiceOf::default();
    if gt == GraphType::Service {
        for (l, _) in requests.iter().chain(&sent) {
            let w = get(l, &["destination_workload"]);
            let svc = get(l, &["destination_service_name", "destination_service"]);
            if w != "unknown" && svc != "unknown" {
                let cluster = get(l, &["destination_cluster", "cluster"]).to_string();
                let ns = get(l, &["destination_workload_namespace"]).to_string();
                services
                    .entry((cluster, ns, w.to_string()))
                    .or_insert(svc.to_string());
            }
        }
    }
    let key = |l: &Labels, default_proto: &str| EdgeKey {
        src: src_key(l, gt, &services),
        dst: dst_key(l, gt),
        protocol: protocol(l, default_proto),
    };
    let mut f = Folded([EdgeMap::default(), EdgeMap::default()]);
    for (l, v) in &requests {
        let a = f.acc(l, key(l, "http"));
        a.requests += v;
        *a.codes
            .entry(l.get("response_code").unwrap_or("0").to_string())
            .or_default() += v;
        if l.get("connection_security_policy") == Some("mutual_tls") {
            *a.mtls.get_or_insert(0.0) += v;
        } else {
            a.mtls.get_or_insert(0.0);
        }
    }
    for (l, v) in &buckets {
        let Some(le) = l.get("le").and_then(|s| s.parse::<f64>().ok()) else {
            continue;
        };
        let a = f.acc(l, key(l, "http"));
        match a.buckets.iter_mut().find(|b| b.0 == le) {
            Some(b) => b.1 += v,
            None => a.buckets.push((le, *v)),
        }
    }
    for (series, sent) in [(&sent, true), (&received, false)] {
        for (l, v) in series {
            let a = f.acc(l, key(l, "tcp"));
            let slot = if sent {
                &mut a.tcp_sent
            } else {
                &mut a.tcp_received
            };
            *slot.get_or_insert(0.0) += v;
        }
    }
    let [mut dest, source] = f.0;
    let reported: std::collections::HashSet<(NodeKey, NodeKey)> = dest
        .keys()
        .map(|k| (k.src.clone(), k.dst.clone()))
        .collect();
    for (k, v) in source {
        if !reported.contains(&(k.src.clone(), k.dst.clone())) {
            dest.insert(k, v);
        }
    }
    Ok(dest)
}
