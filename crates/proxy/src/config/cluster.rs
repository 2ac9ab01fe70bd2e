//! Building one cluster: the destination's endpoints (ServiceEntry `endpoints`, WorkloadEntries
//! selected by its `workloadSelector`, or the host itself when nothing declares it), narrowed
//! to a DestinationRule subset's labels, with the subset's traffic policy.

use std::collections::BTreeMap;
use std::sync::Arc;

use meshlens_mesh::{ServicePort, Source, WorkloadEntrySpec};

use super::compile::Builder;
use super::policy::{dest_labels, lb_policy, limiter, limits, outlier, EffectivePolicy};
use super::table::{Cluster, Endpoint};
use crate::balance::LbPolicy;

pub(super) fn build(
    b: &mut Builder<'_>,
    host: &str,
    fqdn: &str,
    ns: &str,
    subset: Option<&str>,
    port: Option<u16>,
    src: &Source,
) -> Cluster {
    let view = b.view(fqdn);
    let dr = view.dr;
    let subset_def =
        subset.and_then(|s| dr.and_then(|d| d.spec.subsets.iter().find(|x| x.name == s)));
    let missing_subset = subset.is_some() && subset_def.is_none();

    // Service port and protocol.
    let se = view.se;
    let se_port: Option<&ServicePort> = se.and_then(|se| {
        let ports = &se.spec.ports;
        match port {
            Some(p) => ports.iter().find(|x| x.number == u32::from(p)),
            None => ports.first(),
        }
    });
    let svc_port = port.or(se_port.and_then(|p| u16::try_from(p.number).ok()));
    let policy = EffectivePolicy::resolve(
        dr.and_then(|d| d.spec.traffic_policy.as_ref()),
        subset_def.and_then(|s| s.traffic_policy.as_ref()),
        svc_port,
    );
    let lb = match lb_policy(policy.load_balancer) {
        Ok(l) => l,
        Err(e) => {
            // A policy error can only come from a DestinationRule.
            if let Some(dr) = dr {
                b.error(
                    &dr.source,
                    format!(
                        "DestinationRule {}/{} trafficPolicy.{e}",
                        dr.namespace(),
                        dr.name()
                    ),
                );
            }
            LbPolicy::LeastRequest
        }
    };
    let http2 = se_port.is_some_and(|p| {
        let proto = p.protocol.as_deref().unwrap_or("").to_ascii_uppercase();
        let name = p.name.as_deref().unwrap_or("").to_ascii_lowercase();
        matches!(proto.as_str(), "HTTP2" | "GRPC" | "GRPC-WEB")
            || name.starts_with("grpc")
            || name.starts_with("http2")
    }) || policy
        .connection_pool
        .and_then(|c| c.http.as_ref())
        .and_then(|h| h.h2_upgrade_policy.as_deref())
        == Some("UPGRADE");

    let name = format!(
        "outbound|{}|{}|{}",
        svc_port.unwrap_or(0),
        subset.unwrap_or(""),
        fqdn
    );
    let state = view.registry.cluster(&name);
    let svc_ns = se.map(|s| s.namespace()).unwrap_or(ns);

    // Candidate workloads: (spec, WorkloadEntry name, namespace).
    let mut workloads: Vec<(&WorkloadEntrySpec, Option<&str>)> = Vec::new();
    let mut direct = false;
    match se {
        Some(se) if !se.spec.endpoints.is_empty() => {
            workloads.extend(se.spec.endpoints.iter().map(|e| (e, None)));
        }
        Some(se) if se.spec.workload_selector.is_some() => {
            let sel = &se.spec.workload_selector.as_ref().expect("checked").labels;
            for we in &view.cfg.workload_entries {
                if we.namespace() == se.namespace() && selects(sel, &we.spec.labels) {
                    workloads.push((&we.spec, Some(we.name())));
                }
            }
        }
        Some(se) => direct = se.spec.resolution.as_deref() != Some("STATIC"),
        None => direct = true,
    }
    let subset_labels: BTreeMap<String, String> =
        subset_def.map(|s| s.labels.clone()).unwrap_or_default();

    let mut endpoints = Vec::new();
    let mut health = state.endpoints.lock();
    let mut keep = Vec::new();
    if direct {
        // Nothing declares endpoints: dial the host as written.
        let target = se
            .map(|_| fqdn.to_string())
            .unwrap_or_else(|| host.to_string());
        let key = format!("{target}:{}", svc_port.unwrap_or(0));
        let h = health.entry(key.clone()).or_default().clone();
        keep.push(key);
        endpoints.push(Arc::new(Endpoint::new(
            target,
            svc_port,
            BTreeMap::new(),
            Arc::new(dest_labels(fqdn, svc_ns, None)),
            h,
        )));
    } else {
        for (w, we_name) in workloads {
            if !selects(&subset_labels, &w.labels) {
                continue;
            }
            let ep_port = se_port
                .and_then(|p| p.name.as_ref().and_then(|n| w.ports.get(n)).copied())
                .or(se_port.and_then(|p| p.target_port))
                .and_then(|p| u16::try_from(p).ok())
                .or(svc_port);
            let addr = w.address.clone();
            let key = format!("{addr}:{}", ep_port.unwrap_or(0));
            let h = health.entry(key.clone()).or_default().clone();
            keep.push(key);
            endpoints.push(Arc::new(Endpoint::new(
                addr,
                ep_port,
                w.labels.clone(),
                Arc::new(dest_labels(fqdn, svc_ns, Some((&w.labels, we_name)))),
                h,
            )));
        }
    }
    health.retain(|k, _| keep.contains(k));
    drop(health);
    if missing_subset {
        tracing::warn!(
            source = %src,
            "a route names subset {:?} of {fqdn} that no DestinationRule defines; it answers 503 NC",
            subset.unwrap_or("")
        );
    }

    let tls = match crate::tls::policy::upstream_tls(policy.tls) {
        Ok(t) => t,
        Err(e) => {
            if let Some(dr) = dr {
                b.error(
                    &dr.source,
                    format!(
                        "DestinationRule {}/{} trafficPolicy.{e}",
                        dr.namespace(),
                        dr.name()
                    ),
                );
            }
            crate::tls::UpstreamTls::Disable
        }
    };
    Cluster {
        labels: Arc::new(dest_labels(fqdn, svc_ns, None)),
        name,
        port: svc_port,
        endpoints,
        missing_subset,
        lb,
        limiter: limiter(&state, limits(policy.connection_pool)),
        outlier: outlier(policy.outlier_detection),
        http2,
        state,
        tls,
        mesh_external: se.is_some_and(|s| s.spec.location.as_deref() == Some("MESH_EXTERNAL")),
    }
}

/// Whether `labels` has every pair of `selector`.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
