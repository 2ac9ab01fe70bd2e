//! Routing: find the virtual host for a request's authority, then the first route whose match
//! blocks accept it (blocks ORed, conditions inside a block ANDed), as Envoy's route table
//! does with what Istio programs.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, Method};
use meshlens_mesh::host::{host_matches, request_host_candidates};

use crate::config::table::{Route, Table, VirtualHost};

/// Istio's `StringMatch`, compiled. Regexes are anchored (RE2 full match, as Envoy's
/// `safe_regex`).
#[derive(Debug, Clone)]
pub enum StrMatch {
    Exact(String),
    Prefix(String),
    Regex(regex::Regex),
    /// `{}`: the header is present.
    Present,
}

impl StrMatch {
    pub fn matches(&self, v: &str) -> bool {
        match self {
            StrMatch::Exact(s) => v == s,
            StrMatch::Prefix(p) => v.starts_with(p.as_str()),
            StrMatch::Regex(r) => r.is_match(v),
            StrMatch::Present => true,
        }
    }
}

/// One `match` block.
#[derive(Debug, Clone, Default)]
pub struct Match {
    pub uri: Option<StrMatch>,
    pub ignore_uri_case: bool,
    pub scheme: Option<StrMatch>,
    pub method: Option<StrMatch>,
    pub authority: Option<StrMatch>,
    pub headers: Vec<(HeaderName, StrMatch)>,
    pub without_headers: Vec<(HeaderName, StrMatch)>,
    pub query: Vec<(String, StrMatch)>,
    pub port: Option<u16>,
}

/// The parts of a request routing looks at.
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// Path without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// As received, port included if it was sent.
    pub authority: &'a str,
    /// Lowercase, without the port.
    pub host: &'a str,
    pub port: u16,
    pub scheme: &'a str,
}

impl Match {
    pub fn matches(&self, r: &RequestView<'_>) -> bool {
        if let Some(m) = &self.uri {
            let ok = if self.ignore_uri_case {
                match m {
                    StrMatch::Exact(s) => r.path.eq_ignore_ascii_case(s),
                    StrMatch::Prefix(p) => r
                        .path
                        .get(..p.len())
                        .is_some_and(|h| h.eq_ignore_ascii_case(p)),
                    other => other.matches(r.path),
                }
            } else {
                m.matches(r.path)
            };
            if !ok {
                return false;
            }
        }
        if self.scheme.as_ref().is_some_and(|m| !m.matches(r.scheme))
            || self
                .method
                .as_ref()
                .is_some_and(|m| !m.matches(r.method.as_str()))
            || self
                .authority
                .as_ref()
                .is_some_and(|m| !m.matches(r.authority))
            || self.port.is_some_and(|p| p != r.port)
        {
            return false;
        }
        for (name, m) in &self.headers {
            let hit = r
                .headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| m.matches(v)));
            if !hit {
                return false;
            }
        }
        for (name, m) in &self.without_headers {
            let hit = r
                .headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| m.matches(v)));
            if hit {
                return false;
            }
        }
        for (name, m) in &self.query {
            let hit = r.query.is_some_and(|q| {
                q.split('&').any(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    k == name && m.matches(v)
                })
            });
            if !hit {
                return false;
            }
        }
        true
    }
}

/// The virtual host serving `host` (already lowercase, without port): exact names first
/// (with Kubernetes short-name completion), then wildcards.
pub fn virtual_host<'t>(table: &'t Table, host: &str) -> Option<&'t VirtualHost> {
    // Both candidates looked up without building them (see `Table::short`); only wildcards
    // need the completed names.
    if !host.ends_with('.') && !host.bytes().any(|b| b.is_ascii_uppercase()) {
        if let Some(v) = table.exact.get(host).or_else(|| table.short.get(host)) {
            return Some(v);
        }
        if table.wildcard.is_empty() {
            return None;
        }
    }
    let candidates = request_host_candidates(host, &table.namespace);
    for c in &candidates {
        if let Some(v) = table.exact.get(c) {
            return Some(v);
        }
    }
    for (pattern, v) in &table.wildcard {
        if candidates.iter().any(|c| host_matches(pattern, c)) {
            return Some(v);
        }
    }
    None
}

/// The first route accepting the request, and the match block that accepted it (rewrites
/// depend on it).
pub fn find<'t>(table: &'t Table, r: &RequestView<'_>) -> Option<(&'t Route, Option<&'t Match>)> {
    let vh = virtual_host(table, r.host)?;
    for route in &vh.routes {
        if route.matches.is_empty() {
            return Some((route, None));
        }
        if let Some(m) = route.matches.iter().find(|m| m.matches(r)) {
            return Some((route, Some(m)));
        }
    }
    None
}

/// Splits an authority into lowercase host and port (default `default_port`). The host is
/// borrowed unless it has to be lowercased.
pub fn split_authority(authority: &str, default_port: u16) -> (Cow<'_, str>, u16) {
    let a = authority.trim();
    if let Some(rest) = a.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once(']') {
            let port = p
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(default_port);
            return (lowercase(h), port);
        }
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (lowercase(h), port),
            Err(_) => (lowercase(a), default_port),
        },
        _ => (lowercase(a), default_port),
    }
}

fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_split() {
        assert_eq!(
            split_authority("Reviews:9080", 80),
            ("reviews".into(), 9080)
        );
        assert_eq!(split_authority("reviews", 80), ("reviews".into(), 80));
        assert_eq!(split_authority("[::1]:81", 80), ("::1".into(), 81));
    }
}
