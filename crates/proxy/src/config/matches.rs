//! VirtualService match blocks, compiled: Istio `StringMatch`es to exact, prefix, anchored
//! regex (RE2 full-match semantics) or presence checks.

use std::collections::BTreeMap;

use http::HeaderName;
use meshlens_mesh::{HttpMatchRequest, StringMatch};

use crate::route::{Match, StrMatch};

pub fn compile_match(m: &HttpMatchRequest) -> Result<Match, String> {
    let sm = |field: &str, s: &StringMatch, allow_presence: bool| -> Result<StrMatch, String> {
        match (&s.exact, &s.prefix, &s.regex) {
            (Some(e), None, None) => Ok(StrMatch::Exact(e.clone())),
            (None, Some(p), None) => Ok(StrMatch::Prefix(p.clone())),
            (None, None, Some(r)) => regex::Regex::new(&format!("^(?:{r})$"))
                .map(StrMatch::Regex)
                .map_err(|e| format!("{field}.regex: {e}")),
            (None, None, None) if allow_presence => Ok(StrMatch::Present),
            (None, None, None) => Err(format!("{field}: needs exact, prefix or regex")),
            _ => Err(format!("{field}: only one of exact, prefix or regex")),
        }
    };
    let opt = |field: &str, s: &Option<StringMatch>| -> Result<Option<StrMatch>, String> {
        s.as_ref().map(|s| sm(field, s, false)).transpose()
    };
    let headers = |field: &str, h: &BTreeMap<String, StringMatch>| {
        h.iter()
            .map(|(k, v)| {
                let name = HeaderName::try_from(k.to_ascii_lowercase())
                    .map_err(|_| format!("{field}: invalid header name {k:?}"))?;
                Ok((name, sm(&format!("{field}.{k}"), v, true)?))
            })
            .collect::<Result<Vec<_>, String>>()
    };
    let uri = opt("uri", &m.uri)?;
    let uri = match (uri, m.ignore_uri_case) {
        (Some(StrMatch::Regex(r)), true) => Some(StrMatch::Regex(
            regex::Regex::new(&format!("(?i){}", r.as_str())).map_err(|e| e.to_string())?,
        )),
        (u, _) => u,
    };
    Ok(Match {
        uri,
        ignore_uri_case: m.ignore_uri_case,
        scheme: opt("scheme", &m.scheme)?,
        method: opt("method", &m.method)?,
        authority: opt("authority", &m.authority)?,
        headers: headers("headers", &m.headers)?,
        without_headers: headers("withoutHeaders", &m.without_headers)?,
        query: m
            .query_params
            .iter()
            .map(|(k, v)| Ok((k.clone(), sm(&format!("queryParams.{k}"), v, true)?)))
            .collect::<Result<_, String>>()?,
        port: m.port.and_then(|p| u16::try_from(p).ok()),
    })
}

pub fn re2_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                let d = chars.next().expect("peeked");
                out.push_str(&format!("${{{d}}}"));
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}
