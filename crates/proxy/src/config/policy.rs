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

/// The four parts of a destination policy that apply to one cluster.
#[derive(Clone, Copy, Default)]
pub struct EffectivePolicy<'p> {
    pub load_balancer: Option<&'p meshlens_mesh::LoadBalancerSettings>,
    pub connection_pool: Option<&'p meshlens_mesh::ConnectionPoolSettings>,
    pub outlier_detection: Option<&'p meshlens_mesh::OutlierDetection>,
    pub tls: Option<&'p serde_yaml_ng::Value>,
}

impl<'p> EffectivePolicy<'p> {
    /// A policy's own fields, or, when its `portLevelSettings` name `port`, that entry's
    /// fields alone: port-level settings replace the level above them, unset fields falling
    /// back to defaults rather than being inherited (Istio's documented rule).
    fn of(tp: &'p TrafficPolicy, port: Option<u16>) -> Self {
        let port_level = port.and_then(|p| {
            tp.port_level_settings
                .iter()
                .find(|s| s.port.as_ref().is_some_and(|x| x.number == u32::from(p)))
        });
        match port_level {
            Some(s) => EffectivePolicy {
                load_balancer: s.load_balancer.as_ref(),
                connection_pool: s.connection_pool.as_ref(),
                outlier_detection: s.outlier_detection.as_ref(),
                tls: s.tls.as_ref(),
            },
            None => EffectivePolicy {
                load_balancer: tp.load_balancer.as_ref(),
                connection_pool: tp.connection_pool.as_ref(),
                outlier_detection: tp.outlier_detection.as_ref(),
                tls: tp.tls.as_ref(),
            },
        }
    }

    /// Destination policy for `port` of a cluster: the rule's (its port level applied), then
    /// each field the subset sets over it, and the subset's own port level over everything.
    pub fn resolve(
        top: Option<&'p TrafficPolicy>,
        subset: Option<&'p TrafficPolicy>,
        port: Option<u16>,
    ) -> Self {
        let base = top.map(|t| Self::of(t, port)).unwrap_or_default();
        let Some(sub) = subset else {
            return base;
        };
        let names_port = port.is_some_and(|p| {
            sub.port_level_settings
                .iter()
                .any(|s| s.port.as_ref().is_some_and(|x| x.number == u32::from(p)))
        });
        if names_port {
            return Self::of(sub, port);
        }
        EffectivePolicy {
            load_balancer: sub.load_balancer.as_ref().or(base.load_balancer),
            connection_pool: sub.connection_pool.as_ref().or(base.connection_pool),
            outlier_detection: sub.outlier_detection.as_ref().or(base.outlier_detection),
            tls: sub.tls.as_ref().or(base.tls),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(yaml: &str) -> TrafficPolicy {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn simple(p: &EffectivePolicy<'_>) -> Option<String> {
        p.load_balancer.and_then(|l| l.simple.clone())
    }

    #[test]
    fn port_level_settings_replace_the_level_above() {
        let top = tp("loadBalancer: {simple: RANDOM}\nconnectionPool: {http: {http2MaxRequests: 1}}\nportLevelSettings:\n- port: {number: 8080}\n  loadBalancer: {simple: ROUND_ROBIN}\n");
        // Another port, or none: the destination level.
        for port in [Some(80), None] {
            let p = EffectivePolicy::resolve(Some(&top), None, port);
            assert_eq!(simple(&p).as_deref(), Some("RANDOM"));
            assert!(p.connection_pool.is_some());
        }
        // The named port: its entry alone, the pool limit not inherited.
        let p = EffectivePolicy::resolve(Some(&top), None, Some(8080));
        assert_eq!(simple(&p).as_deref(), Some("ROUND_ROBIN"));
        assert!(p.connection_pool.is_none());
    }

    #[test]
    fn subsets_override_field_by_field_and_their_port_level_wins() {
        let top =
            tp("loadBalancer: {simple: RANDOM}\noutlierDetection: {consecutive5xxErrors: 3}\n");
        let sub = tp("loadBalancer: {simple: ROUND_ROBIN}\nportLevelSettings:\n- port: {number: 9000}\n  loadBalancer: {simple: LEAST_REQUEST}\n");
        let p = EffectivePolicy::resolve(Some(&top), Some(&sub), Some(80));
        assert_eq!(simple(&p).as_deref(), Some("ROUND_ROBIN"));
        assert!(p.outlier_detection.is_some(), "the rule's field stays");
        let p = EffectivePolicy::resolve(Some(&top), Some(&sub), Some(9000));
        assert_eq!(simple(&p).as_deref(), Some("LEAST_REQUEST"));
        assert!(
            p.outlier_detection.is_none(),
            "a port level inherits nothing"
        );
        let none = EffectivePolicy::resolve(None, None, Some(80));
        assert!(none.load_balancer.is_none() && none.tls.is_none());
    }
}
