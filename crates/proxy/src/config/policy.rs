//! DestinationRule traffic policy and endpoint labels, compiled for a cluster: the load
//! balancer, connection-pool limits, outlier detection (Istio's defaults filled in), and the
//! destination labels Istio's metrics carry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use meshlens_mesh::host::service_name_namespace;
use meshlens_mesh::TrafficPolicy;

use super::table::ClusterState;
use crate::balance::LbPolicy;
use crate::resilience::outlier::OutlierPolicy;
use crate::resilience::pool::{Limiter, Limits};
use crate::telemetry::metrics::{DestLabels, PeerLabels};

/// Destination policy: the subset's fields override the top level's.
pub fn merged_policy<'p>(
    top: Option<&'p TrafficPolicy>,
    subset: Option<&'p TrafficPolicy>,
) -> (
    Option<&'p meshlens_mesh::LoadBalancerSettings>,
    Option<&'p meshlens_mesh::ConnectionPoolSettings>,
    Option<&'p meshlens_mesh::OutlierDetection>,
) {
    let pick = |f: fn(&'p TrafficPolicy) -> bool| subset.filter(|s| f(s)).or(top);
    (
        pick(|p| p.load_balancer.is_some()).and_then(|p| p.load_balancer.as_ref()),
        pick(|p| p.connection_pool.is_some()).and_then(|p| p.connection_pool.as_ref()),
        pick(|p| p.outlier_detection.is_some()).and_then(|p| p.outlier_detection.as_ref()),
    )
}

pub fn lb_policy(lb: Option<&meshlens_mesh::LoadBalancerSettings>) -> Result<LbPolicy, String> {
    let Some(lb) = lb else {
        return Ok(LbPolicy::LeastRequest); // Istio's default since 1.14
    };
    if let Some(ch) = &lb.consistent_hash {
        if let Some(h) = &ch.http_header_name {
            return HeaderName::try_from(h.to_ascii_lowercase())
                .map(LbPolicy::HashHeader)
                .map_err(|_| format!("consistentHash.httpHeaderName: invalid header {h:?}"));
        }
        if let Some(q) = &ch.http_query_parameter_name {
            return Ok(LbPolicy::HashQuery(q.clone()));
        }
        if ch.use_source_ip == Some(true) {
            return Ok(LbPolicy::HashSourceIp);
        }
        return Err("consistentHash: only httpHeaderName, httpQueryParameterName and useSourceIp are supported".into());
    }
    match lb.simple.as_deref() {
        None | Some("LEAST_REQUEST" | "LEAST_CONN" | "UNSPECIFIED") => Ok(LbPolicy::LeastRequest),
        Some("ROUND_ROBIN") => Ok(LbPolicy::RoundRobin),
        Some("RANDOM" | "PASSTHROUGH") => Ok(LbPolicy::Random),
        Some(o) => Err(format!("loadBalancer.simple: unknown {o:?}")),
    }
}

pub fn limits(cp: Option<&meshlens_mesh::ConnectionPoolSettings>) -> Option<Limits> {
    let cp = cp?;
    let http = cp.http.as_ref();
    let max_requests = http.and_then(|h| h.http2_max_requests);
    let max_pending = http.and_then(|h| h.http1_max_pending_requests);
    let max_connections = cp.tcp.as_ref().and_then(|t| t.max_connections);
    if max_requests.is_none() && max_pending.is_none() && max_connections.is_none() {
        return None;
    }
    Some(Limits {
        max_requests: max_requests.map(u64::from).unwrap_or(u64::from(u32::MAX)),
        max_connections,
        max_pending: max_pending.map(u64::from).unwrap_or(u64::from(u32::MAX)),
    })
}

pub fn outlier(od: Option<&meshlens_mesh::OutlierDetection>) -> Option<OutlierPolicy> {
    let od = od?;
    let d = OutlierPolicy::default();
    Some(OutlierPolicy {
        consecutive_5xx: od
            .consecutive_5xx_errors
            .or(od.consecutive_errors)
            .or(d.consecutive_5xx),
        consecutive_gateway: od.consecutive_gateway_errors,
        interval: od
            .interval
            .as_ref()
            .map(|x| x.value)
            .unwrap_or(d.interval)
            .max(Duration::from_millis(1)),
        base_ejection: od
            .base_ejection_time
            .as_ref()
            .map(|x| x.value)
            .unwrap_or(d.base_ejection),
        max_ejection_percent: od.max_ejection_percent.unwrap_or(d.max_ejection_percent),
    })
}

/// Limiter for a cluster, reused across reloads while its limits are unchanged.
pub fn limiter(state: &ClusterState, l: Option<Limits>) -> Option<Arc<Limiter>> {
    let mut cur = state.limiter.lock();
    match (l, cur.as_ref()) {
        (None, _) => {
            *cur = None;
            None
        }
        (Some(l), Some(existing)) if existing.limits == l => Some(existing.clone()),
        (Some(l), _) => {
            let n = Arc::new(Limiter::new(l));
            *cur = Some(n.clone());
            Some(n)
        }
    }
}

/// Destination labels from an endpoint's labels (Istio's peer metadata in a sidecar mesh;
/// here declared on the ServiceEntry endpoint or WorkloadEntry).
pub fn dest_labels(
    service: &str,
    namespace: &str,
    labels: Option<(&BTreeMap<String, String>, Option<&str>)>,
) -> DestLabels {
    let (svc_name, svc_ns) = service_name_namespace(service, namespace);
    let mut d = DestLabels::unknown();
    d.service = service.to_string();
    d.service_name = svc_name.to_string();
    d.service_namespace = svc_ns.to_string();
    if let Some((l, we_name)) = labels {
        let get = |k: &str| l.get(k).cloned();
        let app = get("app").or_else(|| get("app.kubernetes.io/name"));
        let version = get("version").or_else(|| get("app.kubernetes.io/version"));
        let workload = get("service.istio.io/workload-name")
            .or_else(|| we_name.map(str::to_string))
            .or_else(|| match (&app, &version) {
                (Some(a), Some(v)) => Some(format!("{a}-{v}")),
                (Some(a), None) => Some(a.clone()),
                _ => None,
            });
        d.peer = PeerLabels {
            workload: workload.unwrap_or_else(|| "unknown".into()),
            workload_namespace: namespace.to_string(),
            principal: "unknown".into(),
            canonical_service: get("service.istio.io/canonical-name")
                .or_else(|| app.clone())
                .unwrap_or_else(|| "unknown".into()),
            canonical_revision: get("service.istio.io/canonical-revision")
                .or_else(|| version.clone())
                .unwrap_or_else(|| "latest".into()),
            app: app.unwrap_or_else(|| "unknown".into()),
            version: version.unwrap_or_else(|| "unknown".into()),
            cluster: get("topology.istio.io/cluster").unwrap_or_else(|| "unknown".into()),
        };
    }
    d
}
