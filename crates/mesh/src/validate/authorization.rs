//! AuthorizationPolicy checks: source namespaces that exist (KIA0101), methods that are
//! HTTP methods or gRPC names (KIA0102), hosts in the registry (KIA0104), peer identity
//! fields only where mTLS gives peers an identity (KIA0105), principals naming known service
//! accounts (KIA0106), and selectors that select (KIA0004).
//!
//! KIA0101, KIA0104, KIA0106 and KIA0004 need the service registry and are skipped without
//! Kubernetes manifests (see the module `validate`).

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use crate::security::{AuthorizationPolicy, Operation, PeerSource};

use super::locate::YamlPath;
use super::mtls::{auto_mtls, tls_mode};
use super::Ctx;

pub(crate) fn check(cx: &mut Ctx<'_>) {
    let inp = cx.inp;
    let mtls = MtlsView::new(cx);
    for ap in &inp.mesh.authorization_policies {
        let spec = YamlPath::root().k("spec");
        if cx.reg.known {
            selector(cx, ap);
        }
        let needs_mtls = !mtls.enabled_for(cx, ap);
        for (i, rule) in ap.spec.rules.iter().enumerate() {
            let r = spec.k("rules").i(i);
            for (j, from) in rule.from.iter().enumerate() {
                let Some(src) = &from.source else { continue };
                source(cx, ap, src, &r.k("from").i(j).k("source"), needs_mtls);
            }
            for (j, to) in rule.to.iter().enumerate() {
                let Some(op) = &to.operation else { continue };
                operation(cx, ap, op, &r.k("to").i(j).k("operation"));
            }
            for (j, c) in rule.when.iter().enumerate() {
                if needs_mtls && matches!(c.key.as_str(), "source.principal" | "source.namespace") {
                    let p = r.k("when").i(j).k("key");
                    cx.emit("KIA0105", ap, p, format!("key {}", c.key));
                }
            }
        }
    }
}

/// KIA0004: a selector that matches no workload (in the policy's namespace, or anywhere for
/// the root namespace's mesh-wide policies).
fn selector(cx: &mut Ctx<'_>, ap: &AuthorizationPolicy) {
    let Some(sel) = &ap.spec.selector else { return };
    if sel.match_labels.is_empty() {
        return;
    }
    let ns = (ap.namespace() != cx.opts.root_namespace).then(|| ap.namespace());
    if cx.reg.selected(&sel.match_labels, ns).next().is_none() {
        let p = YamlPath::root().k("spec").k("selector");
        cx.emit("KIA0004", ap, p, "selector matches no workload");
    }
}

fn source(cx: &mut Ctx<'_>, ap: &AuthorizationPolicy, s: &PeerSource, at: &YamlPath, mtls: bool) {
    if mtls {
        for (field, vals) in [
            ("principals", &s.principals),
            ("notPrincipals", &s.not_principals),
            ("serviceAccounts", &s.service_accounts),
            ("notServiceAccounts", &s.not_service_accounts),
            ("namespaces", &s.namespaces),
            ("notNamespaces", &s.not_namespaces),
        ] {
            if !vals.is_empty() {
                cx.emit("KIA0105", ap, at.k(field), format!("{field} without mTLS"));
            }
        }
    }
    if !cx.reg.known {
        return;
    }
    for (field, vals) in [
        ("namespaces", &s.namespaces),
        ("notNamespaces", &s.not_namespaces),
    ] {
        for (k, ns) in vals.iter().enumerate() {
            if !ns.contains('*') && !cx.reg.namespaces.contains(ns) {
                cx.emit("KIA0101", ap, at.k(field).i(k), format!("namespace {ns}"));
            }
        }
    }
    for (field, vals) in [
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
    ] {
        for (k, p) in vals.iter().enumerate() {
            let Some((ns, sa)) = service_account(p) else {
                continue;
            };
            if !cx.reg.has_service_account(ns, sa) {
                cx.emit("KIA0106", ap, at.k(field).i(k), format!("principal {p}"));
            }
        }
    }
}

/// (namespace, service account) of a principal `TD/ns/NS/sa/SA` without wildcards.
fn service_account(principal: &str) -> Option<(&str, &str)> {
    if principal.contains('*') {
        return None;
    }
    let parts: Vec<&str> = principal.split('/').collect();
    match parts.as_slice() {
        [_, "ns", ns, "sa", sa] if !ns.is_empty() && !sa.is_empty() => Some((ns, sa)),
        _ => None,
    }
}

fn operation(cx: &mut Ctx<'_>, ap: &AuthorizationPolicy, op: &Operation, at: &YamlPath) {
    for (field, vals) in [("methods", &op.methods), ("notMethods", &op.not_methods)] {
        for (k, m) in vals.iter().enumerate() {
            if !is_method(m) {
                cx.emit("KIA0102", ap, at.k(field).i(k), format!("method {m}"));
            }
        }
    }
    if !cx.reg.known {
        return;
    }
    for (field, vals) in [("hosts", &op.hosts), ("notHosts", &op.not_hosts)] {
        for (k, h) in vals.iter().enumerate() {
            // Wildcards and hosts with a port are patterns over requests, not names.
            let host = h.rsplit_once(':').map_or(h.as_str(), |(h, _)| h);
            if host.contains('*') {
                continue;
            }
            if !cx.reg.has_host(host, ap.namespace()) {
                cx.emit("KIA0104", ap, at.k(field).i(k), format!("host {h}"));
            }
        }
    }
}

/// An HTTP method (RFC 9110 and PATCH), or a fully-qualified gRPC method
/// `/package.Service/Method`.
fn is_method(m: &str) -> bool {
    const HTTP: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    if HTTP.contains(&m) {
        return true;
    }
    let ident =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let Some(rest) = m.strip_prefix('/') else {
        return false;
    };
    match rest.split_once('/') {
        Some((service, method)) => {
            service.contains('.') && service.split('.').all(ident) && ident(method)
        }
        None => false,
    }
}

/// Whether workloads receive mTLS, from PeerAuthentications and DestinationRules.
struct MtlsView {
    /// (namespace, selector labels, mode) of every PeerAuthentication.
    policies: Vec<(String, BTreeMap<String, String>, String)>,
    auto: bool,
    /// Whether some DestinationRule for `*.local` or `*.NS.svc.cluster.local` sets
    /// ISTIO_MUTUAL: namespaces (`None` for mesh-wide).
    mutual_rules: Vec<Option<String>>,
}

impl MtlsView {
    fn new(cx: &Ctx<'_>) -> Self {
        let policies = cx
            .inp
            .raw_of("PeerAuthentication")
            .map(|o| {
                let mode = o
                    .get(&["spec", "mtls", "mode"])
                    .and_then(Value::as_str)
                    .unwrap_or("UNSET")
                    .to_ascii_uppercase();
                let sel = o.labels(&["spec", "selector", "matchLabels"]);
                (o.namespace.clone(), sel.into_iter().collect(), mode)
            })
            .collect();
        let mutual_rules = cx
            .inp
            .mesh
            .destination_rules
            .iter()
            .filter(|d| tls_mode(d).as_deref() == Some("ISTIO_MUTUAL"))
            .filter_map(|d| {
                let h = d.spec.host.as_str();
                if h == "*.local" {
                    Some(None)
                } else {
                    let ns = h.strip_prefix("*.")?.strip_suffix(".svc.cluster.local")?;
                    Some(Some(ns.to_string()))
                }
            })
            .collect();
        MtlsView {
            policies,
            auto: auto_mtls(cx),
            mutual_rules,
        }
    }

    /// The mode for the policy's workloads: a PeerAuthentication with the same selector, else
    /// the namespace's, else the mesh's. STRICT gives every request a peer identity;
    /// PERMISSIVE (Istio's default) does for mesh clients when auto mTLS or an ISTIO_MUTUAL
    /// rule makes them send it; DISABLE never does.
    fn enabled_for(&self, cx: &Ctx<'_>, ap: &AuthorizationPolicy) -> bool {
        let ns = ap.namespace();
        let root = cx.opts.root_namespace.as_str();
        let sel = ap
            .spec
            .selector
            .as_ref()
            .map(|s| s.match_labels.clone())
            .unwrap_or_default();
        let find = |ns: &str, sel: &BTreeMap<String, String>| {
            self.policies
                .iter()
                .find(|(n, s, m)| n == ns && s == sel && m != "UNSET")
                .map(|(_, _, m)| m.as_str())
        };
        let empty = BTreeMap::new();
        let mode = (!sel.is_empty())
            .then(|| find(ns, &sel))
            .flatten()
            .or_else(|| find(ns, &empty))
            .or_else(|| find(root, &empty))
            .unwrap_or("PERMISSIVE");
        match mode {
            "STRICT" => true,
            "DISABLE" => false,
            _ => {
                self.auto
                    || self
                        .mutual_rules
                        .iter()
                        .any(|r| r.is_none() || r.as_deref() == Some(ns))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods() {
        for ok in ["GET", "PATCH", "/pkg.Svc/Method", "/a.b.c_d/Do_It"] {
            assert!(is_method(ok), "{ok}");
        }
        for bad in [
            "get",
            "FETCH",
            "/Svc/Method",
            "/pkg.Svc",
            "pkg.Svc/M",
            "/pkg..S/M",
            "",
        ] {
            assert!(!is_method(bad), "{bad}");
        }
    }

    #[test]
    fn principals_name_service_accounts() {
        assert_eq!(
            service_account("cluster.local/ns/shop/sa/web"),
            Some(("shop", "web"))
        );
        assert_eq!(service_account("cluster.local/ns/shop/sa/*"), None);
        assert_eq!(service_account("web"), None);
    }
}
