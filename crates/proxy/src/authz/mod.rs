//! Authorization: Istio's AuthorizationPolicy, enforced by inbound proxies (and gateways)
//! before a request is routed or its body read.
//!
//! The policies that apply to the proxy's workload are compiled once per config load
//! ([`compile`]) into [`Policies`], which the routing table carries; a request is then
//! judged by the pure [`Policies::check`] over its [`Attributes`]. Istio's order: a
//! matching DENY policy denies; AUDIT policies only mark; with no ALLOW policy the request
//! is allowed, with some it must match one of them. A denial is Envoy's answer, 403 with
//! the body [`DENIED_BODY`].
//!
//! Design decision: nothing here is fail-open. What meshlens cannot evaluate (CUSTOM, an
//! unknown `when` key) refuses the config, so the last good policy set keeps enforcing, and
//! attributes meshlens does not have (request principals: no JWT authentication) are absent,
//! which Istio's semantics already turn into "no match".

pub mod compile;
pub mod matcher;

use std::borrow::Cow;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName, Method};

use crate::conn::ConnInfo;
use matcher::{Field, IpBlock, StrPattern};

/// Envoy's RBAC denial body (clients and tests compare it).
pub const DENIED_BODY: &str = "RBAC: access denied";

/// The policies of one workload, split by action, each list in config order.
#[derive(Debug, Default)]
pub struct Policies {
    pub deny: Vec<Policy>,
    pub allow: Vec<Policy>,
    pub audit: Vec<Policy>,
}

/// One compiled policy: it matches when any of its rules does.
#[derive(Debug)]
pub struct Policy {
    /// `namespace/name`, for logs.
    pub name: String,
    pub rules: Vec<Rule>,
}

/// `from`, `to` and `when` are ANDed; the items of each are ORed; empty matches all.
#[derive(Debug, Default)]
pub struct Rule {
    pub from: Vec<SourceMatch>,
    pub to: Vec<OperationMatch>,
    pub when: Vec<Condition>,
}

#[derive(Debug, Default)]
pub struct SourceMatch {
    pub principals: Field<StrPattern>,
    /// `NS/SA`, compared with the principal's namespace and service account.
    pub service_accounts: Field<StrPattern>,
    pub request_principals: Field<StrPattern>,
    pub namespaces: Field<StrPattern>,
    pub ip_blocks: Field<IpBlock>,
    pub remote_ip_blocks: Field<IpBlock>,
}

#[derive(Debug, Default)]
pub struct OperationMatch {
    /// Lowercased: hosts compare case-insensitively.
    pub hosts: Field<StrPattern>,
    pub ports: Field<u16>,
    pub methods: Field<StrPattern>,
    pub paths: Field<StrPattern>,
}

/// A `when` condition on one attribute.
#[derive(Debug)]
pub enum Condition {
    Header(HeaderName, Field<StrPattern>),
    SourceIp(Field<IpBlock>),
    RemoteIp(Field<IpBlock>),
    SourcePrincipal(Field<StrPattern>),
    SourceNamespace(Field<StrPattern>),
    DestinationPort(Field<u16>),
    /// `request.auth.*`: meshlens authenticates no request tokens, so the attribute is
    /// always absent.
    RequestAuth(Field<StrPattern>),
}

/// What a request is judged on.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    /// The peer's proven identity without `spiffe://` (`TD/ns/NS/sa/SA`); `None` on
    /// plaintext.
    pub principal: Option<&'a str>,
    /// The namespace inside the principal.
    pub namespace: Option<&'a str>,
    /// The direct peer's address.
    pub source_ip: IpAddr,
    /// The original client's: the direct peer, as no proxy in front is trusted (Istio's
    /// default `numTrustedProxies: 0`).
    pub remote_ip: IpAddr,
    /// As received (port included when sent).
    pub authority: &'a str,
    /// Lowercase, without the port.
    pub host: &'a str,
    /// The authority's port (80 when absent): the port routing uses.
    pub port: u16,
    pub method: &'a str,
    /// Without the query, percent-decoded where RFC 3986 allows (`%41` → `A`); `None`
    /// when it has dot segments (`/a/../b`), which a policy could not judge safely.
    pub path: Option<Cow<'a, str>>,
    pub headers: &'a HeaderMap,
}

impl<'a> Attributes<'a> {
    /// The attributes of a request on `conn`; `path` without the query.
    pub fn new(
        conn: &'a ConnInfo,
        method: &'a Method,
        authority: &'a str,
        host: &'a str,
        port: u16,
        path: &'a str,
        headers: &'a HeaderMap,
    ) -> Self {
        let principal = conn
            .principal
            .as_deref()
            .map(|p| p.strip_prefix("spiffe://").unwrap_or(p));
        Attributes {
            principal,
            namespace: principal.and_then(namespace_of),
            source_ip: conn.peer.ip().to_canonical(),
            remote_ip: conn.peer.ip().to_canonical(),
            authority,
            host,
            port,
            method: method.as_str(),
            path: normalize_path(path),
            headers,
        }
    }
}

/// `NS` of `TD/ns/NS/sa/SA`.
pub fn namespace_of(principal: &str) -> Option<&str> {
    let mut parts = principal.split('/');
    while let Some(p) = parts.next() {
        if p == "ns" {
            return parts.next();
        }
    }
    None
}

/// `NS/SA` of `TD/ns/NS/sa/SA`.
pub fn service_account_of(principal: &str) -> Option<String> {
    let mut parts = principal.split('/');
    let (mut ns, mut sa) = (None, None);
    while let Some(p) = parts.next() {
        match p {
            "ns" => ns = parts.next(),
            "sa" => sa = parts.next(),
            _ => {}
        }
    }
    Some(format!("{}/{}", ns?, sa?))
}

/// The path as Envoy's normalization would judge it: unreserved characters percent-decoded
/// (so `/adm%69n` is `/admin`); `None` when a segment is `.` or `..` (encoded or not).
pub fn normalize_path(path: &str) -> Option<Cow<'_, str>> {
    let decoded: Cow<'_, str> = if path.contains('%') {
        Cow::Owned(decode_unreserved(path))
    } else {
        Cow::Borrowed(path)
    };
    if decoded.split('/').any(|s| s == "." || s == "..") {
        return None;
    }
    Some(decoded)
}

fn decode_unreserved(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(c) = hex {
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    out.push(char::from(c));
                    i += 3;
                    continue;
                }
            }
        }
        // `i` stays on a char boundary: it only ever skips whole chars or `%XX`.
        let ch_len = path[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&path[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// Why a request was allowed or denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason<'p> {
    /// No ALLOW policy applies and no DENY policy matched.
    NoAllowPolicy,
    AllowedBy(&'p str),
    DeniedBy(&'p str),
    /// ALLOW policies apply and none matched.
    NoAllowMatched,
    /// The path has dot segments and policies apply.
    AmbiguousPath,
}

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'p> {
    pub allowed: bool,
    pub reason: Reason<'p>,
    /// The first AUDIT policy that matched.
    pub audited_by: Option<&'p str>,
}

impl Policies {
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.allow.is_empty() && self.audit.is_empty()
    }

    /// Istio's evaluation order: DENY, then AUDIT (marks only), then ALLOW.
    pub fn check<'p>(&'p self, a: &Attributes<'_>) -> Decision<'p> {
        let decide = |allowed, reason, audited_by| Decision {
            allowed,
            reason,
            audited_by,
        };
        let audited = || {
            self.audit
                .iter()
                .find(|p| p.matches(a))
                .map(|p| p.name.as_str())
        };
        if self.deny.is_empty() && self.allow.is_empty() {
            return decide(true, Reason::NoAllowPolicy, audited());
        }
        if a.path.is_none() {
            return decide(false, Reason::AmbiguousPath, None);
        }
        if let Some(p) = self.deny.iter().find(|p| p.matches(a)) {
            return decide(false, Reason::DeniedBy(&p.name), None);
        }
        let audited_by = audited();
        if self.allow.is_empty() {
            return decide(true, Reason::NoAllowPolicy, audited_by);
        }
        match self.allow.iter().find(|p| p.matches(a)) {
            Some(p) => decide(true, Reason::AllowedBy(&p.name), audited_by),
            None => decide(false, Reason::NoAllowMatched, audited_by),
        }
    }

    /// [`Policies::check`] with the decision logged: denials at debug (they are counted in
    /// `istio_requests_total` with code 403), audits at info, as an access log would.
    pub fn permits(&self, a: &Attributes<'_>) -> bool {
        let d = self.check(a);
        if let Some(p) = d.audited_by {
            tracing::info!(policy = p, method = a.method, authority = a.authority, path = ?a.path, source = %a.source_ip, principal = ?a.principal, allowed = d.allowed, "authorization audit");
        }
        if !d.allowed {
            tracing::debug!(reason = ?d.reason, method = a.method, authority = a.authority, source = %a.source_ip, "request denied by authorization policy");
        }
        d.allowed
    }
}

impl Policy {
    pub fn matches(&self, a: &Attributes<'_>) -> bool {
        self.rules.iter().any(|r| r.matches(a))
    }
}

impl Rule {
    pub fn matches(&self, a: &Attributes<'_>) -> bool {
        (self.from.is_empty() || self.from.iter().any(|s| s.matches(a)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(a)))
            && self.when.iter().all(|c| c.matches(a))
    }
}

impl SourceMatch {
    fn matches(&self, a: &Attributes<'_>) -> bool {
        self.principals.matches(a.principal)
            && (self.service_accounts.is_empty()
                || self
                    .service_accounts
                    .matches(a.principal.and_then(service_account_of).as_deref()))
            && self.request_principals.matches::<str>(None)
            && self.namespaces.matches(a.namespace)
            && self.ip_blocks.matches(Some(&a.source_ip))
            && self.remote_ip_blocks.matches(Some(&a.remote_ip))
    }
}

impl OperationMatch {
    fn matches(&self, a: &Attributes<'_>) -> bool {
        hosts_match(&self.hosts, a)
            && self.ports.matches(Some(&a.port))
            && self.methods.matches(Some(a.method))
            && self.paths.matches(a.path.as_deref())
    }
}

/// Hosts compare with the authority as sent and with its bare host, so `svc` matches
/// `svc:9080` too (as Istio's host matcher allows any port).
fn hosts_match(f: &Field<StrPattern>, a: &Attributes<'_>) -> bool {
    if f.is_empty() {
        return true;
    }
    let authority: Cow<'_, str> = if a.authority.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(a.authority.to_ascii_lowercase())
    } else {
        Cow::Borrowed(a.authority)
    };
    let hit = |v: &str| f.any.iter().any(|m| m.matches(v));
    let any = f.any.is_empty() || hit(&authority) || hit(a.host);
    let none = !f
        .none
        .iter()
        .any(|m| m.matches(&authority) || m.matches(a.host));
    any && none
}

impl Condition {
    fn matches(&self, a: &Attributes<'_>) -> bool {
        match self {
            Condition::Header(name, f) => {
                let mut vals = a.headers.get_all(name).iter();
                match (vals.next(), vals.next()) {
                    (None, _) => f.matches::<str>(None),
                    (Some(v), None) => f.matches(Some(&*String::from_utf8_lossy(v.as_bytes()))),
                    // Several values are matched joined, as Envoy does.
                    (Some(_), Some(_)) => {
                        let joined: Vec<Cow<'_, str>> = a
                            .headers
                            .get_all(name)
                            .iter()
                            .map(|v| String::from_utf8_lossy(v.as_bytes()))
                            .collect();
                        f.matches(Some(joined.join(",").as_str()))
                    }
                }
            }
            Condition::SourceIp(f) => f.matches(Some(&a.source_ip)),
            Condition::RemoteIp(f) => f.matches(Some(&a.remote_ip)),
            Condition::SourcePrincipal(f) => f.matches(a.principal),
            Condition::SourceNamespace(f) => f.matches(a.namespace),
            Condition::DestinationPort(f) => f.matches(Some(&a.port)),
            Condition::RequestAuth(f) => f.matches::<str>(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;

    /// The policies of a workload in `default`, from `action: rules` pairs (rules as YAML).
    fn policies(list: &[(&str, &str)]) -> Policies {
        let yaml: String = list
            .iter()
            .enumerate()
            .map(|(i, (action, rules))| {
                format!("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p{i}, namespace: default}}\nspec: {{action: {action}, rules: {rules}}}\n")
            })
            .collect();
        let cfg = meshlens_mesh::MeshConfig::parse_str(&yaml, "t.yaml").unwrap();
        let labels = BTreeMap::new();
        compile::compile(
            &cfg.authorization_policies,
            &compile::Workload {
                root_namespace: "istio-system",
                namespace: "default",
                labels: &labels,
            },
        )
        .unwrap()
    }

    fn judge<'p>(p: &'p Policies, path: &str) -> Decision<'p> {
        let conn = ConnInfo {
            peer: "127.0.0.1:1".parse().unwrap(),
            security: crate::conn::Security::MutualTls,
            principal: Some(Arc::from("spiffe://td/ns/default/sa/web")),
        };
        let h = HeaderMap::new();
        let m = Method::GET;
        p.check(&Attributes::new(&conn, &m, "svc", "svc", 80, path, &h))
    }

    const ADMIN: &str = "[{to: [{operation: {paths: [/admin*]}}]}]";
    const ALL: &str = "[{}]";

    #[test]
    fn evaluation_order() {
        let none = policies(&[]);
        assert_eq!(judge(&none, "/").reason, Reason::NoAllowPolicy);

        let p = policies(&[("ALLOW", ALL), ("DENY", ADMIN), ("AUDIT", ADMIN)]);
        let d = judge(&p, "/admin");
        assert_eq!(
            (d.allowed, d.reason),
            (false, Reason::DeniedBy("default/p1"))
        );
        let d = judge(&p, "/");
        assert_eq!(
            (d.allowed, d.reason),
            (true, Reason::AllowedBy("default/p0"))
        );

        let p = policies(&[("AUDIT", ADMIN)]);
        let d = judge(&p, "/admin/x");
        assert!(d.allowed);
        assert_eq!(d.audited_by, Some("default/p0"));
        assert_eq!(judge(&p, "/").audited_by, None);
        // Audit alone never denies, not even a path it cannot judge.
        assert!(judge(&p, "/a/../admin").allowed);

        let p = policies(&[("ALLOW", ADMIN)]);
        assert_eq!(judge(&p, "/x").reason, Reason::NoAllowMatched);
        assert!(judge(&p, "/admin").allowed);
        assert_eq!(judge(&p, "/x/../admin").reason, Reason::AmbiguousPath);

        // No rules: an ALLOW allows nothing, a DENY denies nothing.
        assert!(!judge(&policies(&[("ALLOW", "[]")]), "/").allowed);
        assert!(judge(&policies(&[("DENY", "[]")]), "/").allowed);
    }

    #[test]
    fn lists_are_ored_and_parts_anded() {
        let p = policies(&[(
            "ALLOW",
            "[{from: [{source: {namespaces: [other]}}, {source: {namespaces: [default]}}], to: [{operation: {paths: [/a]}}, {operation: {paths: [/b]}}]}]",
        )]);
        assert!(judge(&p, "/a").allowed);
        assert!(judge(&p, "/b").allowed);
        assert!(!judge(&p, "/c").allowed);
        let p = policies(&[(
            "ALLOW",
            "[{from: [{source: {namespaces: [other]}}], to: [{operation: {paths: [/a]}}]}, {when: [{key: source.namespace, values: [default]}]}]",
        )]);
        assert!(judge(&p, "/c").allowed, "the second rule matches");
    }

    #[test]
    fn namespace_from_principal() {
        assert_eq!(namespace_of("cluster.local/ns/shop/sa/web"), Some("shop"));
        assert_eq!(namespace_of("cluster.local/sa/web"), None);
        assert_eq!(
            service_account_of("cluster.local/ns/shop/sa/web").as_deref(),
            Some("shop/web")
        );
        assert_eq!(service_account_of("cluster.local/ns/shop"), None);
    }

    #[test]
    fn path_normalization() {
        assert_eq!(normalize_path("/a/b").as_deref(), Some("/a/b"));
        assert_eq!(normalize_path("/adm%69n").as_deref(), Some("/admin"));
        assert_eq!(normalize_path("/a%2Fb").as_deref(), Some("/a%2Fb"));
        assert_eq!(normalize_path("/%").as_deref(), Some("/%"));
        assert_eq!(normalize_path("/a%4").as_deref(), Some("/a%4"));
        assert_eq!(normalize_path("/é%41").as_deref(), Some("/éA"));
        assert!(normalize_path("/public/../admin").is_none());
        assert!(normalize_path("/public/%2e%2E/admin").is_none());
        assert!(normalize_path("/./admin").is_none());
        assert!(normalize_path("/a/..").is_none());
    }

    /// Every string over an alphabet of path troublemakers, up to 6 characters: no panic,
    /// and what is judged has no dot segment left in any encoding.
    #[test]
    fn path_normalization_exhaustive() {
        const ALPHABET: [&str; 7] = ["/", ".", "%", "2", "e", "é", "A"];
        let mut stack = vec![String::new()];
        let mut n = 0;
        while let Some(p) = stack.pop() {
            n += 1;
            if let Some(norm) = normalize_path(&p) {
                assert!(norm.split('/').all(|s| s != "." && s != ".."), "{p:?}");
                assert_eq!(normalize_path(&norm).as_deref(), Some(&*norm), "{p:?}");
            }
            if p.chars().count() < 6 {
                stack.extend(ALPHABET.iter().map(|c| format!("{p}{c}")));
            }
        }
        assert_eq!(n, (0..=6).map(|k| 7usize.pow(k)).sum::<usize>());
    }
}
