//! Host names as Istio reads them: short names are relative to the object's namespace, and
//! `name.namespace` is completed with the cluster domain.

/// The cluster domain Istio assumes (`cluster.local`).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The FQDN a host written in an object of `namespace` stands for: `reviews` becomes
/// `reviews.<namespace>.svc.cluster.local`; names with dots and wildcards stay as written
/// (lowercased), as Istio only expands names without dots.
pub fn fqdn(host: &str, namespace: &str) -> String {
    let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if h.contains('.') || h.contains('*') {
        h
    } else {
        format!("{h}.{namespace}.svc.{CLUSTER_DOMAIN}")
    }
}

/// Names a request's host may stand for, most specific first: itself, then the Kubernetes
/// completions (`name` -> `name.<ns>.svc.cluster.local`, `name.ns` and `name.ns.svc` ->
/// `….svc.cluster.local`). The port must already be stripped.
pub fn request_host_candidates(host: &str, namespace: &str) -> Vec<String> {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    let mut out = vec![h.clone()];
    let dots = h.matches('.').count();
    if dots == 0 {
        out.push(format!("{h}.{namespace}.svc.{CLUSTER_DOMAIN}"));
    } else if h.ends_with(".svc") {
        out.push(format!("{h}.{CLUSTER_DOMAIN}"));
    } else if dots == 1 {
        out.push(format!("{h}.svc.{CLUSTER_DOMAIN}"));
    }
    out
}

/// Whether `host` (an FQDN) matches `pattern`, which may be `*` or start with `*.`.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => pattern == host,
    }
}

/// The Kubernetes service name and namespace of an FQDN such as
/// `reviews.prod.svc.cluster.local`; other hosts give (host, fallback namespace).
pub fn service_name_namespace<'a>(fqdn: &'a str, fallback_ns: &'a str) -> (&'a str, &'a str) {
    let suffix = format!(".svc.{CLUSTER_DOMAIN}");
    if let Some(rest) = fqdn.strip_suffix(&suffix) {
        if let Some((name, ns)) = rest.split_once('.') {
            return (name, ns);
        }
    }
    (fqdn, fallback_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_expand_in_namespace() {
        assert_eq!(fqdn("reviews", "prod"), "reviews.prod.svc.cluster.local");
        assert_eq!(fqdn("api.example.com", "prod"), "api.example.com");
        assert_eq!(
            request_host_candidates("reviews.prod", "default"),
            vec!["reviews.prod", "reviews.prod.svc.cluster.local"]
        );
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert_eq!(
            service_name_namespace("reviews.prod.svc.cluster.local", "x"),
            ("reviews", "prod")
        );
    }
}

/// Whether an object of namespace `own` with Istio's `exportTo` list is visible to a proxy in
/// namespace `ns`: empty or `*` means everywhere, `.` its own namespace, `~` nowhere, any other
/// entry that namespace.
pub fn exported_to(export_to: &[String], own: &str, ns: &str) -> bool {
    export_to.is_empty()
        || export_to.iter().any(|e| match e.as_str() {
            "*" => true,
            "." => own == ns,
            "~" => false,
            other => other == ns,
        })
}

#[cfg(test)]
mod export_tests {
    use super::exported_to;

    #[test]
    fn export_to_follows_istio() {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(exported_to(&[], "a", "b"));
        assert!(exported_to(&v(&["*"]), "a", "b"));
        assert!(exported_to(&v(&["."]), "a", "a"));
        assert!(!exported_to(&v(&["."]), "a", "b"));
        assert!(!exported_to(&v(&["~"]), "a", "a"));
        assert!(exported_to(&v(&[".", "b"]), "a", "b"));
        assert!(!exported_to(&v(&["c"]), "a", "b"));
    }
}
