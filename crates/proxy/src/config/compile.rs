//! Compiling a `MeshConfig` into the routing [`Table`]: host names resolved to FQDNs,
//! regexes compiled, DestinationRule policies merged (subset over top level), endpoints found
//! (ServiceEntry `endpoints`, or WorkloadEntries its `workloadSelector` picks). Anything the
//! proxy cannot act on is an error naming the object's file and line, so a bad config is
//! rejected before it serves.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use meshlens_mesh::host::{exported_to, fqdn, host_matches, request_host_candidates};
use meshlens_mesh::{
    ConfigError, DestinationRule, HeaderOperations, HttpRoute, MeshConfig, ServiceEntry, Source,
    VirtualService,
};
use meshlens_model::hash::FxMap;

use super::matches::{compile_match, re2_substitution};
use super::table::*;
use crate::resilience::fault::{grpc_code, Abort, Fault};
use crate::resilience::retry::{RetryOn, RetryPolicy};

/// What compiling needs to know about the proxy itself.
pub struct CompileContext<'a> {
    /// Namespace for short request hosts.
    pub namespace: &'a str,
    /// The proxy's own labels, for `sourceLabels` matches.
    pub labels: &'a BTreeMap<String, String>,
    pub registry: &'a StateRegistry,
    /// The Gateway this proxy serves as (`ns/name`), or `None` for a sidecar (Istio's
    /// reserved gateway name `mesh`).
    pub gateway: Option<&'a str>,
}

/// A Gateway's identity and the hosts its servers expose, as `(namespace scope, host)`
/// (`*` for any namespace).
struct GatewayScope<'a> {
    hosts: Vec<(&'a str, &'a str)>,
}

impl GatewayScope<'_> {
    /// Whether the gateway exposes `host` of a VirtualService in namespace `ns`.
    fn exposes(&self, host: &str, ns: &str) -> bool {
        self.hosts.iter().any(|&(scope, pattern)| {
            (scope == "*" || scope == ns) && (pattern == "*" || host_matches(pattern, host))
        })
    }
}

/// Resolves `--gateway` (`ns/name`) to its Gateway object.
fn gateway_scope<'a>(cfg: &'a MeshConfig, gw: &'a str) -> Result<GatewayScope<'a>, ConfigError> {
    let (namespace, name) = gw.split_once('/').unwrap_or(("default", gw));
    let Some(obj) = cfg
        .gateways
        .iter()
        .find(|g| g.namespace() == namespace && g.name() == name)
    else {
        return Err(ConfigError {
            file: Default::default(),
            line: 0,
            reason: format!(
                "Gateway {namespace}/{name} (this proxy's --gateway) is not in the config"
            ),
        });
    };
    let hosts = obj
        .spec
        .servers
        .iter()
        .flat_map(|s| s.hosts.iter())
        .map(|h| match h.split_once('/') {
            Some((".", host)) => (namespace, host),
            Some((scope, host)) => (scope, host),
            None => ("*", h.as_str()),
        })
        .collect();
    Ok(GatewayScope { hosts })
}

pub fn compile(cfg: &MeshConfig, ctx: &CompileContext<'_>) -> Result<Table, Vec<ConfigError>> {
    let mut b = Builder {
        ctx,
        cfg,
        ses: HashMap::new(),
        drs: Vec::new(),
        clusters: HashMap::new(),
        errors: Vec::new(),
    };
    // Objects not exported to this proxy's namespace do not exist for it.
    let ns = ctx.namespace;
    for se in &cfg.service_entries {
        if !exported_to(&se.spec.export_to, se.namespace(), ns) {
            continue;
        }
        for h in &se.spec.hosts {
            b.ses.entry(fqdn(h, se.namespace())).or_insert(se);
        }
    }
    for dr in &cfg.destination_rules {
        if !exported_to(&dr.spec.export_to, dr.namespace(), ns) {
            continue;
        }
        b.drs.push((fqdn(&dr.spec.host, dr.namespace()), dr));
    }
    let gateway = match ctx.gateway.map(|g| gateway_scope(cfg, g)).transpose() {
        Ok(g) => g,
        Err(e) => return Err(vec![e]),
    };
    let mut exact: FxMap<String, Arc<VirtualHost>> = FxMap::default();
    let mut wildcard: Vec<(String, Arc<VirtualHost>)> = Vec::new();
    for vs in &cfg.virtual_services {
        if !b.binds(vs) {
            continue;
        }
        let vh = Arc::new(b.virtual_host(vs));
        for h in &vs.spec.hosts {
            if gateway
                .as_ref()
                .is_some_and(|gw| !gw.exposes(h, vs.namespace()))
            {
                continue; // the gateway has no server for this host
            }
            let name = fqdn(h, vs.namespace());
            if name.starts_with('*') {
                if !wildcard.iter().any(|(p, _)| *p == name) {
                    wildcard.push((name, vh.clone()));
                }
            } else {
                exact.entry(name).or_insert_with(|| vh.clone());
            }
        }
    }
    // ServiceEntry hosts without a VirtualService get a default route (on a sidecar; a
    // gateway serves only the hosts bound to it).
    let se_hosts: Vec<(String, &ServiceEntry)> = match gateway {
        Some(_) => Vec::new(),
        None => b.ses.iter().map(|(k, v)| (k.clone(), *v)).collect(),
    };
    for (host, se) in se_hosts {
        if exact.contains_key(&host) || host.starts_with('*') {
            continue;
        }
        let cluster = b.cluster(&host, se.namespace(), None, None, &se.source);
        let route = Route {
            name: "default".into(),
            matches: Vec::new(),
            action: Action::Forward(vec![WeightedCluster {
                weight: 100,
                cluster,
                headers: HeaderOps::default(),
            }]),
            fault: None,
            timeout: None,
            retry: RetryPolicy::istio_default(),
            mirrors: Vec::new(),
            rewrite: None,
            headers: HeaderOps::default(),
        };
        let vh = VirtualHost {
            name: format!("{}/{}", se.namespace(), se.name()),
            routes: vec![route],
        };
        exact.insert(host, Arc::new(vh));
    }
    wildcard.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    let authz = crate::authz::compile::compile(
        &cfg.authorization_policies,
        &crate::authz::compile::Workload {
            root_namespace: meshlens_mesh::security::DEFAULT_ROOT_NAMESPACE,
            namespace: ctx.namespace,
            labels: ctx.labels,
        },
    )
    .unwrap_or_else(|e| {
        b.errors.extend(e);
        Default::default()
    });
    let tcp = super::tcp::compile(&mut b);
    let inbound_mtls =
        crate::tls::policy::inbound_mtls(&cfg.peer_authentications, ctx.namespace, ctx.labels)
            .unwrap_or_else(|errors| {
                for (src, reason) in errors {
                    b.error(&src, reason);
                }
                Default::default()
            });
    if !b.errors.is_empty() {
        return Err(b.errors);
    }
    let live: HashSet<String> = b.clusters.values().map(|c| c.name.clone()).collect();
    ctx.registry.retain(&live);
    let short = short_names(&exact, ctx.namespace);
    Ok(Table {
        exact,
        short,
        wildcard,
        tcp,
        namespace: ctx.namespace.to_string(),
        authz,
        inbound_mtls,
    })
}

/// The short names that complete (as [`request_host_candidates`] does in `namespace`) to a
/// host of `exact` and are not themselves in it.
fn short_names(
    exact: &FxMap<String, Arc<VirtualHost>>,
    namespace: &str,
) -> FxMap<String, Arc<VirtualHost>> {
    let suffix = format!(".svc.{}", meshlens_mesh::host::CLUSTER_DOMAIN);
    let mut short = FxMap::default();
    for (fqdn, vh) in exact {
        let Some(rest) = fqdn.strip_suffix(&suffix) else {
            continue;
        };
        let name = rest.split('.').next().unwrap_or(rest);
        for alias in [format!("{rest}.svc"), rest.to_string(), name.to_string()] {
            let completes = request_host_candidates(&alias, namespace).get(1) == Some(fqdn);
            if completes && !exact.contains_key(&alias) {
                short.entry(alias).or_insert_with(|| vh.clone());
            }
        }
    }
    short
}

type ClusterKey = (String, Option<String>, Option<u16>);

pub(super) struct Builder<'a> {
    ctx: &'a CompileContext<'a>,
    cfg: &'a MeshConfig,
    ses: HashMap<String, &'a ServiceEntry>,
    drs: Vec<(String, &'a DestinationRule)>,
    clusters: HashMap<ClusterKey, Arc<Cluster>>,
    errors: Vec<ConfigError>,
}

/// Whether a `gateways:` entry written in namespace `ns` names `gw` (`ns/name`): a bare
/// name resolves in the writer's namespace.
fn names_gateway(entry: &str, ns: &str, gw: &str) -> bool {
    match entry.split_once('/') {
        Some(_) => entry == gw,
        None => gw.split_once('/') == Some((ns, entry)),
    }
}

fn err(src: &Source, reason: String) -> ConfigError {
    ConfigError {
        file: src.file.clone(),
        line: src.line,
        reason,
    }
}

impl<'a> Builder<'a> {
    fn virtual_host(&mut self, vs: &VirtualService) -> VirtualHost {
        let mut routes = Vec::new();
        for (i, r) in vs.spec.http.iter().enumerate() {
            let what = format!("VirtualService {}/{} http[{i}]", vs.namespace(), vs.name());
            if let Some(route) = self.route(vs, &what, r) {
                routes.push(route);
            }
        }
        VirtualHost {
            name: format!("{}/{}", vs.namespace(), vs.name()),
            routes,
        }
    }

    fn route(&mut self, vs: &VirtualService, what: &str, r: &HttpRoute) -> Option<Route> {
        let src = &vs.source;
        let ns = vs.namespace();
        let mut matches = Vec::new();
        for (j, m) in r.matches.iter().enumerate() {
            if !self.match_applies(
                &m.gateways,
                ns,
                m.source_namespace.as_deref(),
                &m.source_labels,
            ) {
                continue;
            }
            match compile_match(m) {
                Ok(cm) => matches.push(cm),
                Err(e) => self
                    .errors
                    .push(err(src, format!("{what}.match[{j}]: {e}"))),
            }
        }
        if !r.matches.is_empty() && matches.is_empty() {
            return None; // every block is for other sources or gateways
        }
        let headers = self.header_ops(src, what, r.headers.as_ref());
        let action = if let Some(rd) = &r.redirect {
            Action::Redirect(Redirect {
                uri: rd.uri.clone(),
                authority: rd.authority.clone(),
                port: rd.port.and_then(|p| u16::try_from(p).ok()),
                scheme: rd.scheme.clone(),
                code: rd.redirect_code.unwrap_or(301),
            })
        } else if let Some(d) = &r.direct_response {
            let body = d
                .body
                .as_ref()
                .and_then(|b| b.string.clone())
                .unwrap_or_default();
            Action::Direct {
                status: d.status,
                body: Bytes::from(body),
            }
        } else if !r.route.is_empty() {
            let all_unweighted = r.route.iter().all(|d| d.weight.is_none());
            let mut dests = Vec::new();
            for d in &r.route {
                let port = d
                    .destination
                    .port
                    .as_ref()
                    .and_then(|p| u16::try_from(p.number).ok());
                let cluster = self.cluster(
                    &d.destination.host,
                    ns,
                    d.destination.subset.as_deref(),
                    port,
                    src,
                );
                let weight = if all_unweighted {
                    1
                } else {
                    d.weight.unwrap_or(0)
                };
                let headers = self.header_ops(src, what, d.headers.as_ref());
                dests.push(WeightedCluster {
                    weight,
                    cluster,
                    headers,
                });
            }
            Action::Forward(dests)
        } else {
            self.errors.push(err(
                src,
                format!("{what}: needs `route`, `redirect` or `directResponse`"),
            ));
            return None;
        };
        let retry = match &r.retries {
            None => RetryPolicy::istio_default(),
            Some(rt) if rt.attempts == 0 => RetryPolicy::none(),
            Some(rt) => {
                let on = rt.retry_on.as_deref().unwrap_or(
                    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
                );
                match RetryOn::parse(on) {
                    Ok(on) => RetryPolicy {
                        attempts: rt.attempts,
                        per_try_timeout: rt
                            .per_try_timeout
                            .as_ref()
                            .map(|d| d.value)
                            .filter(|d| !d.is_zero()),
                        on,
                    },
                    Err(e) => {
                        self.errors
                            .push(err(src, format!("{what}.retries.retryOn: {e}")));
                        RetryPolicy::none()
                    }
                }
            }
        };
        let fault = r.fault.as_ref().map(|f| Fault {
            delay: f.delay.as_ref().and_then(|d| {
                let pct = d
                    .percentage
                    .map(|p| p.value)
                    .or(d.percent.map(f64::from))
                    .unwrap_or(0.0);
                d.fixed_delay.as_ref().map(|x| (x.value, pct))
            }),
            abort: f.abort.as_ref().and_then(|a| {
                let pct = a.percentage.map(|p| p.value).unwrap_or(0.0);
                let abort = match (&a.http_status, &a.grpc_status) {
                    (Some(s), _) => Some(Abort::Http(*s)),
                    (None, Some(g)) => grpc_code(g).map(Abort::Grpc),
                    _ => None,
                };
                abort.map(|x| (x, pct))
            }),
        });
        if let Some((Abort::Http(s), _)) = fault.as_ref().and_then(|f| f.abort) {
            if !(200..600).contains(&s) {
                self.errors.push(err(
                    src,
                    format!("{what}.fault.abort.httpStatus: {s} is not an HTTP status"),
                ));
            }
        }
        let mut mirrors = Vec::new();
        if let Some(m) = &r.mirror {
            let pct = r
                .mirror_percentage
                .map(|p| p.value)
                .or(r.mirror_percent.map(f64::from))
                .unwrap_or(100.0);
            let port = m.port.as_ref().and_then(|p| u16::try_from(p.number).ok());
            let cluster = self.cluster(&m.host, ns, m.subset.as_deref(), port, src);
            mirrors.push(Mirror {
                cluster,
                percent: pct,
            });
        }
        for m in &r.mirrors {
            let d = &m.destination;
            let port = d.port.as_ref().and_then(|p| u16::try_from(p.number).ok());
            let cluster = self.cluster(&d.host, ns, d.subset.as_deref(), port, src);
            mirrors.push(Mirror {
                cluster,
                percent: m.percentage.map(|p| p.value).unwrap_or(100.0),
            });
        }
        let rewrite = match &r.rewrite {
            None => None,
            Some(rw) => {
                let regex = match &rw.uri_regex_rewrite {
                    None => None,
                    Some(rr) => match regex::Regex::new(&rr.pattern) {
                        // RE2 substitutions are \1; the regex crate's are ${1}.
                        Ok(re) => Some((re, re2_substitution(&rr.rewrite))),
                        Err(e) => {
                            self.errors
                                .push(err(src, format!("{what}.rewrite.uriRegexRewrite: {e}")));
                            None
                        }
                    },
                };
                Some(Rewrite {
                    uri: rw.uri.clone(),
                    authority: rw.authority.clone(),
                    regex,
                })
            }
        };
        Some(Route {
            name: r.name.clone().unwrap_or_default(),
            matches,
            action,
            fault,
            timeout: r.timeout.as_ref().map(|t| t.value).filter(|t| !t.is_zero()),
            retry,
            mirrors,
            rewrite,
            headers,
        })
    }

    fn header_ops(
        &mut self,
        src: &Source,
        what: &str,
        h: Option<&meshlens_mesh::Headers>,
    ) -> HeaderOps {
        let Some(h) = h else {
            return HeaderOps::default();
        };
        let mut edit = |ops: Option<&HeaderOperations>| -> HeaderEdit {
            let mut e = HeaderEdit::default();
            let Some(ops) = ops else { return e };
            let mut pair = |k: &String, v: &String| -> Option<(HeaderName, HeaderValue)> {
                match (
                    HeaderName::try_from(k.as_str()),
                    HeaderValue::try_from(v.as_str()),
                ) {
                    (Ok(n), Ok(v)) => Some((n, v)),
                    _ => {
                        self.errors.push(err(
                            src,
                            format!("{what}.headers: invalid header {k:?}: {v:?}"),
                        ));
                        None
                    }
                }
            };
            e.set = ops.set.iter().filter_map(|(k, v)| pair(k, v)).collect();
            e.add = ops.add.iter().filter_map(|(k, v)| pair(k, v)).collect();
            e.remove = ops
                .remove
                .iter()
                .filter_map(|k| HeaderName::try_from(k.as_str()).ok())
                .collect();
            e
        };
        HeaderOps {
            request: edit(h.request.as_ref()),
            response: edit(h.response.as_ref()),
        }
    }

    fn destination_rule(&self, host: &str) -> Option<&'a DestinationRule> {
        self.drs
            .iter()
            .find(|(h, _)| h == host)
            .or_else(|| self.drs.iter().find(|(h, _)| host_matches(h, host)))
            .map(|(_, d)| *d)
    }

    /// The cluster for a destination, built once per (host, subset, port).
    pub(super) fn cluster(
        &mut self,
        host: &str,
        ns: &str,
        subset: Option<&str>,
        port: Option<u16>,
        src: &Source,
    ) -> Arc<Cluster> {
        let name = fqdn(host, ns);
        let key = (name.clone(), subset.map(str::to_string), port);
        if let Some(c) = self.clusters.get(&key) {
            return c.clone();
        }
        let c = Arc::new(super::cluster::build(
            self, host, &name, ns, subset, port, src,
        ));
        self.clusters.insert(key, c.clone());
        c
    }
}

/// Access for `cluster::build`.
pub(super) struct BuilderView<'b> {
    pub se: Option<&'b ServiceEntry>,
    pub dr: Option<&'b DestinationRule>,
    pub cfg: &'b MeshConfig,
    pub registry: &'b StateRegistry,
}

impl<'a> Builder<'a> {
    pub(super) fn view(&self, fqdn_host: &str) -> BuilderView<'a> {
        BuilderView {
            se: self.ses.get(fqdn_host).copied(),
            dr: self.destination_rule(fqdn_host),
            cfg: self.cfg,
            registry: self.ctx.registry,
        }
    }

    pub(super) fn error(&mut self, src: &Source, reason: String) {
        self.errors.push(err(src, reason));
    }

    pub(super) fn config(&self) -> &'a MeshConfig {
        self.cfg
    }

    pub(super) fn service_entry(&self, fqdn_host: &str) -> Option<&'a ServiceEntry> {
        self.ses.get(fqdn_host).copied()
    }

    /// Whether an L4 match block is for this proxy: the mesh (not only gateways), and its
    /// source namespace and labels, as HTTP match blocks are filtered.
    pub(super) fn applies_here(&self, m: &meshlens_mesh::L4MatchAttributes, ns: &str) -> bool {
        self.match_applies(
            &m.gateways,
            ns,
            m.source_namespace.as_deref(),
            &m.source_labels,
        )
    }

    /// Whether a match block (HTTP or TCP) of a VirtualService in namespace `ns` is for this
    /// proxy: its `gateways` (when set) name it, and its source namespace and labels are
    /// this proxy's.
    fn match_applies(
        &self,
        gateways: &[String],
        ns: &str,
        source_namespace: Option<&str>,
        source_labels: &BTreeMap<String, String>,
    ) -> bool {
        (gateways.is_empty() || gateways.iter().any(|g| self.names_us(g, ns)))
            && source_namespace.is_none_or(|n| n == self.ctx.namespace)
            && source_labels
                .iter()
                .all(|(k, v)| self.ctx.labels.get(k) == Some(v))
    }

    /// Whether a `gateways:` entry written in namespace `ns` names this proxy: the reserved
    /// `mesh` for a sidecar, the Gateway's name for a gateway.
    fn names_us(&self, entry: &str, ns: &str) -> bool {
        match self.ctx.gateway {
            Some(gw) => names_gateway(entry, ns, gw),
            None => entry == "mesh",
        }
    }

    /// Whether a VirtualService is for this proxy: exported to its namespace and bound to
    /// it (no `gateways` means sidecars only).
    pub(super) fn binds(&self, vs: &VirtualService) -> bool {
        let g = &vs.spec.gateways;
        exported_to(&vs.spec.export_to, vs.namespace(), self.ctx.namespace)
            && match self.ctx.gateway {
                Some(_) => g.iter().any(|e| self.names_us(e, vs.namespace())),
                None => g.is_empty() || g.iter().any(|e| e == "mesh"),
            }
    }
}
