//! VirtualService checks: destinations, subsets and gateways that must exist (KIA1101,
//! KIA1102, KIA1107), weights (KIA1104, ML0001), repeated destinations (KIA1105), hosts
//! claimed twice (KIA1106), and the meshlens route checks (ML0002 … ML0006).

use std::collections::BTreeMap;

use crate::host::{fqdn, host_matches};
use crate::resources::*;

use super::locate::YamlPath;
use super::registry::candidates;
use super::Ctx;

pub(crate) fn check(cx: &mut Ctx<'_>) {
    let inp = cx.inp;
    for vs in &inp.mesh.virtual_services {
        let spec = YamlPath::root().k("spec");
        gateways(cx, vs, &vs.spec.gateways, spec.k("gateways"));
        for (i, r) in vs.spec.http.iter().enumerate() {
            http_route(cx, vs, r, spec.k("http").i(i));
        }
        shadowed(cx, vs);
        for (i, r) in vs.spec.tcp.iter().enumerate() {
            for (j, d) in r.route.iter().enumerate() {
                let p = spec.k("tcp").i(i).k("route").i(j).k("destination");
                destination(cx, vs, &d.destination, p, "KIA1101");
            }
        }
        for (i, r) in vs.spec.tls.iter().enumerate() {
            for (j, d) in r.route.iter().enumerate() {
                let p = spec.k("tls").i(i).k("route").i(j).k("destination");
                destination(cx, vs, &d.destination, p, "KIA1101");
            }
        }
    }
    single_host(cx);
}

fn gateways(cx: &mut Ctx<'_>, vs: &VirtualService, gws: &[String], path: YamlPath) {
    for (i, g) in gws.iter().enumerate() {
        if g == "mesh" {
            continue;
        }
        let (ns, name) = gateway_ref(g, vs.namespace());
        if !g.contains('/') {
            cx.emit("KIA1108", vs, path.i(i), format!("write {ns}/{name}"));
        }
        let exists = cx
            .inp
            .mesh
            .gateways
            .iter()
            .any(|gw| gw.name() == name && gw.namespace() == ns);
        if !exists {
            cx.emit("KIA1102", vs, path.i(i), format!("gateway {ns}/{name}"));
        }
    }
}

/// (namespace, name) of a gateway reference: `ns/name`, `name` (the VS's namespace) or the
/// old `name.ns.svc.cluster.local` form.
pub(crate) fn gateway_ref(g: &str, vs_ns: &str) -> (String, String) {
    if let Some((ns, name)) = g.split_once('/') {
        return (ns.to_string(), name.to_string());
    }
    let parts: Vec<&str> = g.split('.').collect();
    if parts.len() >= 2 {
        return (parts[1].to_string(), parts[0].to_string());
    }
    (vs_ns.to_string(), g.to_string())
}

fn http_route(cx: &mut Ctx<'_>, vs: &VirtualService, r: &HttpRoute, p: YamlPath) {
    let ns = vs.namespace();
    for (j, m) in r.matches.iter().enumerate() {
        match_regexes(cx, vs, m, p.k("match").i(j));
        gateways(cx, vs, &m.gateways, p.k("match").i(j).k("gateways"));
    }
    if let Some(rw) = r
        .rewrite
        .as_ref()
        .and_then(|rw| rw.uri_regex_rewrite.as_ref())
    {
        let path = p.k("rewrite").k("uriRegexRewrite").k("match");
        regex(cx, vs, &rw.pattern, path);
    }
    let mut seen: BTreeMap<(String, Option<&str>), usize> = BTreeMap::new();
    for (j, d) in r.route.iter().enumerate() {
        let dp = p.k("route").i(j).k("destination");
        destination(cx, vs, &d.destination, dp.clone(), "KIA1101");
        let key = (
            fqdn(&d.destination.host, ns),
            d.destination.subset.as_deref(),
        );
        if let Some(first) = seen.insert(key, j) {
            cx.emit("KIA1105", vs, dp, format!("same as route[{first}]"));
        }
    }
    weights(cx, vs, &r.route, &p);
    if let Some(m) = &r.mirror {
        destination(cx, vs, m, p.k("mirror"), "ML0004");
    }
    for (k, m) in r.mirrors.iter().enumerate() {
        let mp = p.k("mirrors").i(k);
        destination(cx, vs, &m.destination, mp.k("destination"), "ML0004");
        percent(cx, vs, m.percentage, mp.k("percentage").k("value"));
    }
    percent(
        cx,
        vs,
        r.mirror_percentage,
        p.k("mirrorPercentage").k("value"),
    );
    if let Some(v) = r.mirror_percent.filter(|v| *v > 100) {
        cx.emit("ML0005", vs, p.k("mirrorPercent"), format!("{v}"));
    }
    if let Some(f) = &r.fault {
        if let Some(d) = &f.delay {
            percent(
                cx,
                vs,
                d.percentage,
                p.k("fault").k("delay").k("percentage").k("value"),
            );
            if let Some(v) = d.percent.filter(|v| *v > 100) {
                cx.emit(
                    "ML0005",
                    vs,
                    p.k("fault").k("delay").k("percent"),
                    format!("{v}"),
                );
            }
        }
        if let Some(a) = &f.abort {
            percent(
                cx,
                vs,
                a.percentage,
                p.k("fault").k("abort").k("percentage").k("value"),
            );
        }
    }
    if let (Some(t), Some(rt)) = (&r.timeout, &r.retries) {
        if let Some(per) = &rt.per_try_timeout {
            let total = per.value * rt.attempts;
            if rt.attempts > 0 && total > t.value && !t.value.is_zero() {
                let detail = format!(
                    "{} x {} attempts = {:?} > timeout {}",
                    per.text, rt.attempts, total, t.text
                );
                cx.emit("ML0006", vs, p.k("retries").k("perTryTimeout"), detail);
            }
        }
    }
}

/// Host (KIA1101 or, for mirrors, ML0004) and subset (KIA1107) of one destination.
fn destination(
    cx: &mut Ctx<'_>,
    vs: &VirtualService,
    d: &Destination,
    p: YamlPath,
    host_code: &'static str,
) {
    let ns = vs.namespace();
    if cx.reg.known && !d.host.is_empty() && !cx.reg.has_host(&d.host, ns) {
        cx.emit(host_code, vs, p.k("host"), format!("host {}", d.host));
    }
    if let Some(subset) = &d.subset {
        if !subset_defined(cx, &d.host, ns, subset) {
            cx.emit(
                "KIA1107",
                vs,
                p.k("subset"),
                format!("no DestinationRule for {} defines subset {subset}", d.host),
            );
        }
    }
}

/// Whether a DestinationRule for the host defines the subset.
fn subset_defined(cx: &Ctx<'_>, host: &str, ns: &str, subset: &str) -> bool {
    let cands = candidates(host, ns);
    cx.inp.mesh.destination_rules.iter().any(|dr| {
        let h = fqdn(&dr.spec.host, dr.namespace());
        cands.iter().any(|c| host_matches(&h, c))
            && dr.spec.subsets.iter().any(|s| s.name == subset)
    })
}

fn weights(cx: &mut Ctx<'_>, vs: &VirtualService, route: &[HttpRouteDestination], p: &YamlPath) {
    let w = |d: &HttpRouteDestination| d.weight.unwrap_or(0);
    match route {
        [] => {}
        [one] if w(one) != 0 && w(one) != 100 => {
            let detail = format!("weight {} is ignored", w(one));
            cx.emit("KIA1104", vs, p.k("route").i(0).k("weight"), detail);
        }
        [_] => {}
        many => {
            let sum: u32 = many.iter().map(w).sum();
            if sum != 100 {
                cx.emit("ML0001", vs, p.k("route"), format!("weights sum to {sum}"));
            }
        }
    }
}

fn percent(cx: &mut Ctx<'_>, vs: &VirtualService, pct: Option<Percent>, p: YamlPath) {
    if let Some(v) = pct.map(|p| p.value).filter(|v| !(0.0..=100.0).contains(v)) {
        cx.emit("ML0005", vs, p, format!("{v}"));
    }
}

fn match_regexes(cx: &mut Ctx<'_>, vs: &VirtualService, m: &HttpMatchRequest, p: YamlPath) {
    let singles = [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ];
    for (k, sm) in singles {
        if let Some(re) = sm.as_ref().and_then(|s| s.regex.as_ref()) {
            regex(cx, vs, re, p.k(k).k("regex"));
        }
    }
    let maps = [
        ("headers", &m.headers),
        ("withoutHeaders", &m.without_headers),
        ("queryParams", &m.query_params),
    ];
    for (k, map) in maps {
        for (name, sm) in map {
            if let Some(re) = &sm.regex {
                regex(cx, vs, re, p.k(k).k(name).k("regex"));
            }
        }
    }
}

/// ML0003: Envoy compiles these with RE2; the `regex` crate accepts the same syntax (no
/// look-around, no back-references).
fn regex(cx: &mut Ctx<'_>, vs: &VirtualService, re: &str, p: YamlPath) {
    if let Err(e) = regex::Regex::new(re) {
        let first = e
            .to_string()
            .lines()
            .last()
            .unwrap_or("")
            .trim()
            .to_string();
        cx.emit("ML0003", vs, p, format!("{re:?}: {first}"));
    }
}

/// ML0002: an HTTP route that matches every request hides all routes after it.
fn shadowed(cx: &mut Ctx<'_>, vs: &VirtualService) {
    let Some(i) = vs.spec.http.iter().position(catch_all) else {
        return;
    };
    for k in i + 1..vs.spec.http.len() {
        let p = YamlPath::root().k("spec").k("http").i(k);
        cx.emit("ML0002", vs, p, format!("http[{i}] matches every request"));
    }
}

fn catch_all(r: &HttpRoute) -> bool {
    r.matches.is_empty() || r.matches.iter().any(match_all)
}

fn match_all(m: &HttpMatchRequest) -> bool {
    let uri_all = match &m.uri {
        None => true,
        Some(u) => {
            u.prefix.as_deref() == Some("/") && u.exact.is_none() && u.regex.is_none()
                || u.regex.as_deref() == Some(".*") && u.exact.is_none() && u.prefix.is_none()
        }
    };
    uri_all
        && m.scheme.is_none()
        && m.method.is_none()
        && m.authority.is_none()
        && m.headers.is_empty()
        && m.without_headers.is_empty()
        && m.query_params.is_empty()
        && m.port.is_none()
        && m.source_labels.is_empty()
        && m.gateways.is_empty()
        && m.source_namespace.is_none()
}

/// TCP and TLS routes are kept raw by the model: check their destinations' hosts and subsets.
/// KIA1106: two VirtualServices claim the same host for the same gateway (or the mesh).
fn single_host(cx: &mut Ctx<'_>) {
    let inp = cx.inp;
    let vss = &inp.mesh.virtual_services;
    let mut by_key: BTreeMap<(String, String), Vec<(usize, usize)>> = BTreeMap::new();
    for (v, vs) in vss.iter().enumerate() {
        let gws: Vec<(String, String)> = if vs.spec.gateways.is_empty() {
            vec![("".into(), "mesh".into())]
        } else {
            vs.spec
                .gateways
                .iter()
                .map(|g| {
                    if g == "mesh" {
                        ("".into(), "mesh".into())
                    } else {
                        gateway_ref(g, vs.namespace())
                    }
                })
                .collect()
        };
        for (h, host) in vs.spec.hosts.iter().enumerate() {
            for g in &gws {
                let key = (format!("{}/{}", g.0, g.1), fqdn(host, vs.namespace()));
                by_key.entry(key).or_default().push((v, h));
            }
        }
    }
    let mut hits = Vec::new();
    for ((gw, host), list) in by_key {
        let mut objs: Vec<usize> = list.iter().map(|x| x.0).collect();
        objs.dedup();
        if objs.len() < 2 {
            continue;
        }
        for (v, h) in list {
            let others: Vec<String> = objs
                .iter()
                .filter(|o| **o != v)
                .map(|o| vss[*o].name().to_string())
                .collect();
            hits.push((
                v,
                h,
                format!(
                    "{host} (gateway {}) also in {}",
                    gw.trim_start_matches('/'),
                    others.join(", ")
                ),
            ));
        }
    }
    for (v, h, detail) in hits {
        let vs = &vss[v];
        cx.emit(
            "KIA1106",
            vs,
            YamlPath::root().k("spec").k("hosts").i(h),
            detail,
        );
    }
}
