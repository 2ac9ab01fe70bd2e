//! DestinationRule checks: the host exists (KIA0202), subsets select workloads (KIA0203,
//! KIA0209), no two rules claim the same host and subset (KIA0201), and a workload selector
//! selects something (KIA0004). The mTLS checks are in `mtls`.
//!
//! As in Kiali, a subset without workloads is an error only when some VirtualService routes
//! to it; otherwise it is reported as info, since rules often define versions ahead of their
//! deployment (Bookinfo's `destination-rule-all.yaml` does).

use std::collections::BTreeMap;

use crate::host::{fqdn, host_matches};
use crate::resources::DestinationRule;

use super::locate::YamlPath;
use super::registry::candidates;
use super::{Ctx, Severity};

pub(crate) fn check(cx: &mut Ctx<'_>) {
    let inp = cx.inp;
    let spec = YamlPath::root().k("spec");
    for dr in &inp.mesh.destination_rules {
        let ns = dr.namespace();
        let host = &dr.spec.host;
        if cx.reg.known && !namespace_or_mesh_wide(host) && !cx.reg.has_host(host, ns) {
            cx.emit("KIA0202", dr, spec.k("host"), format!("host {host}"));
        }
        let workloads = cx.reg.workloads_of_host(inp, host, ns);
        for (i, s) in dr.spec.subsets.iter().enumerate() {
            let sp = spec.k("subsets").i(i);
            if s.labels.is_empty() {
                cx.emit("KIA0209", dr, sp, format!("subset {}", s.name));
                continue;
            }
            if let Some(ws) = &workloads {
                let any = ws
                    .iter()
                    .any(|w| super::registry::labels_match(&s.labels, w));
                if !any {
                    let (severity, why) = if subset_routed(cx, dr, &s.name) {
                        (Severity::Error, "")
                    } else {
                        (Severity::Info, " (no route uses it)")
                    };
                    let detail = format!("subset {} of {host}{why}", s.name);
                    cx.emit_as("KIA0203", severity, dr, sp.k("labels"), detail);
                }
            }
        }
        if let Some(sel) = &dr.spec.workload_selector {
            if cx.reg.known && cx.reg.selected(&sel.labels, Some(ns)).next().is_none() {
                let p = spec.k("workloadSelector");
                cx.emit("KIA0004", dr, p, "workloadSelector matches no workload");
            }
        }
    }
    multi_match(cx);
}

/// Whether some VirtualService route (http, tcp or tls) sends traffic to this rule's host
/// and subset.
fn subset_routed(cx: &Ctx<'_>, dr: &DestinationRule, subset: &str) -> bool {
    let dr_host = fqdn(&dr.spec.host, dr.namespace());
    let hits = |host: &str, vs_ns: &str| {
        candidates(host, vs_ns)
            .iter()
            .any(|c| host_matches(&dr_host, c))
    };
    cx.inp.mesh.virtual_services.iter().any(|vs| {
        let ns = vs.namespace();
        let http = vs.spec.http.iter().flat_map(|r| &r.route).any(|d| {
            d.destination.subset.as_deref() == Some(subset) && hits(&d.destination.host, ns)
        });
        let l4 = vs
            .spec
            .tcp
            .iter()
            .flat_map(|r| &r.route)
            .chain(vs.spec.tls.iter().flat_map(|r| &r.route))
            .any(|d| {
                d.destination.subset.as_deref() == Some(subset) && hits(&d.destination.host, ns)
            });
        http || l4
    })
}

/// `*`, `*.local`, `*.svc.cluster.local`, `*.<ns>.svc.cluster.local`: rules for many hosts
/// (mTLS defaults) that need no registry entry.
pub(crate) fn namespace_or_mesh_wide(host: &str) -> bool {
    host == "*" || (host.starts_with("*.") && host.ends_with(".local"))
}

/// KIA0201: rules for the same host (without workload selectors) that both define a subset of
/// the same name, or both apply to the whole host.
fn multi_match(cx: &mut Ctx<'_>) {
    let inp = cx.inp;
    let drs: Vec<&DestinationRule> = inp
        .mesh
        .destination_rules
        .iter()
        .filter(|d| d.spec.workload_selector.is_none())
        .collect();
    let mut by_host: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, dr) in drs.iter().enumerate() {
        by_host
            .entry(fqdn(&dr.spec.host, dr.namespace()))
            .or_default()
            .push(i);
    }
    for (host, list) in by_host {
        for &a in &list {
            for &b in &list {
                if a == b {
                    continue;
                }
                let (da, db) = (drs[a], drs[b]);
                let other = format!("{}/{}", db.namespace(), db.name());
                if da.spec.subsets.is_empty() && db.spec.subsets.is_empty() {
                    let p = YamlPath::root().k("spec").k("host");
                    cx.emit("KIA0201", da, p, format!("{host} also in {other}"));
                    continue;
                }
                for (i, s) in da.spec.subsets.iter().enumerate() {
                    if db.spec.subsets.iter().any(|t| t.name == s.name) {
                        let p = YamlPath::root().k("spec").k("subsets").i(i);
                        let detail = format!("{host} subset {} also in {other}", s.name);
                        cx.emit("KIA0201", da, p, detail);
                    }
                }
            }
        }
    }
}
