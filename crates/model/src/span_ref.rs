//! A span whose strings are borrowed from the request body it was decoded from.
//!
//! Why: building an owned [`Span`] costs some 25 allocations (every name, address, tag key
//! and value) that ingest frees again right after storing the span. Decoders produce
//! `SpanRef`s instead; strings are copied only where decoding changes them (lower-casing,
//! JSON escapes, numbers written as text). Engines that encode spans themselves read them
//! through [`crate::SpanWriter::write_refs`]; the rest get owned spans from its default.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::trace::{Annotation, Endpoint, Span, SpanKind, TraceId};

/// [`Endpoint`] with borrowed strings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointRef<'a> {
    pub service_name: Option<Cow<'a, str>>,
    pub ipv4: Option<Cow<'a, str>>,
    pub ipv6: Option<Cow<'a, str>>,
    pub port: Option<u16>,
}

impl<'a> EndpointRef<'a> {
    pub fn from_endpoint(e: &'a Endpoint) -> EndpointRef<'a> {
        EndpointRef {
            service_name: e.service_name.as_deref().map(Cow::Borrowed),
            ipv4: e.ipv4.as_deref().map(Cow::Borrowed),
            ipv6: e.ipv6.as_deref().map(Cow::Borrowed),
            port: e.port,
        }
    }

    pub fn to_endpoint(&self) -> Endpoint {
        Endpoint {
            service_name: self.service_name.as_deref().map(str::to_owned),
            ipv4: self.ipv4.as_deref().map(str::to_owned),
            ipv6: self.ipv6.as_deref().map(str::to_owned),
            port: self.port,
        }
    }
}

/// [`Span`] with borrowed strings. Same meaning field by field; `tags` is a vector sorted
/// by key with unique keys (what `Span`'s `BTreeMap` holds), built with [`sort_tags`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanRef<'a> {
    pub trace_id: TraceId,
    pub id: u64,
    pub parent_id: Option<u64>,
    pub name: Option<Cow<'a, str>>,
    pub kind: Option<SpanKind>,
    pub timestamp: Option<u64>,
    pub duration: Option<u64>,
    pub local_endpoint: Option<EndpointRef<'a>>,
    pub remote_endpoint: Option<EndpointRef<'a>>,
    /// (timestamp in microseconds, value), in the order sent.
    pub annotations: Vec<(u64, Cow<'a, str>)>,
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub debug: bool,
    pub shared: bool,
}

/// Sorts tags by key; of repeated keys the last one pushed wins, as with inserts into a map.
pub fn sort_tags(tags: &mut Vec<(Cow<'_, str>, Cow<'_, str>)>) {
    if tags.windows(2).all(|w| w[0].0 < w[1].0) {
        return;
    }
    // Stable: equal keys keep their push order, so the last of a run is the newest.
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    let mut w = 0;
    for r in 0..tags.len() {
        if r + 1 < tags.len() && tags[r + 1].0 == tags[r].0 {
            continue;
        }
        tags.swap(w, r);
        w += 1;
    }
    tags.truncate(w);
}

impl<'a> SpanRef<'a> {
    /// Borrows every string of `s`.
    pub fn from_span(s: &'a Span) -> SpanRef<'a> {
        SpanRef {
            trace_id: s.trace_id,
            id: s.id,
            parent_id: s.parent_id,
            name: s.name.as_deref().map(Cow::Borrowed),
            kind: s.kind,
            timestamp: s.timestamp,
            duration: s.duration,
            local_endpoint: s.local_endpoint.as_ref().map(EndpointRef::from_endpoint),
            remote_endpoint: s.remote_endpoint.as_ref().map(EndpointRef::from_endpoint),
            annotations: s
                .annotations
                .iter()
                .map(|a| (a.timestamp, Cow::Borrowed(a.value.as_str())))
                .collect(),
            tags: s
                .tags
                .iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())))
                .collect(),
            debug: s.debug,
            shared: s.shared,
        }
    }

    pub fn to_span(&self) -> Span {
        Span {
            trace_id: self.trace_id,
            id: self.id,
            parent_id: self.parent_id,
            name: self.name.as_deref().map(str::to_owned),
            kind: self.kind,
            timestamp: self.timestamp,
            duration: self.duration,
            local_endpoint: self.local_endpoint.as_ref().map(EndpointRef::to_endpoint),
            remote_endpoint: self.remote_endpoint.as_ref().map(EndpointRef::to_endpoint),
            annotations: self
                .annotations
                .iter()
                .map(|(t, v)| Annotation {
                    timestamp: *t,
                    value: v.to_string(),
                })
                .collect(),
            tags: self
                .tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            debug: self.debug,
            shared: self.shared,
        }
    }

    pub fn local_service(&self) -> Option<&str> {
        self.local_endpoint.as_ref()?.service_name.as_deref()
    }

    pub fn remote_service(&self) -> Option<&str> {
        self.remote_endpoint.as_ref()?.service_name.as_deref()
    }

    /// The value of tag `key` (tags are sorted, so a binary search).
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.tags[i].1.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(v: &[(&'static str, &'static str)]) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        v.iter()
            .map(|(k, v)| (Cow::Borrowed(*k), Cow::Borrowed(*v)))
            .collect()
    }

    #[test]
    fn sort_tags_keeps_the_last_of_repeated_keys_like_a_map() {
        let input = [
            ("b", "1"),
            ("a", "1"),
            ("b", "2"),
            ("c", "1"),
            ("a", "2"),
            ("b", "3"),
        ];
        let mut t = tags(&input);
        sort_tags(&mut t);
        let mut m = BTreeMap::new();
        for (k, v) in input {
            m.insert(k, v);
        }
        let want: Vec<(&str, &str)> = m.into_iter().collect();
        let got: Vec<(&str, &str)> = t.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        assert_eq!(got, want);
        let mut sorted = tags(&[("a", "1"), ("b", "2")]);
        sort_tags(&mut sorted);
        assert_eq!(sorted, tags(&[("a", "1"), ("b", "2")]));
    }

    #[test]
    fn spans_round_trip_through_refs() {
        let mut t = BTreeMap::new();
        t.insert("http.status_code".to_string(), "503".to_string());
        t.insert("error".to_string(), "true".to_string());
        let s = Span {
            trace_id: TraceId {
                high: 1,
                low: 2,
                is_128: true,
            },
            id: 3,
            parent_id: Some(4),
            name: Some("get /".into()),
            kind: Some(SpanKind::Server),
            timestamp: Some(5),
            duration: Some(6),
            local_endpoint: Some(Endpoint {
                service_name: Some("a".into()),
                ipv4: Some("10.0.0.1".into()),
                ipv6: None,
                port: Some(80),
            }),
            remote_endpoint: None,
            annotations: vec![Annotation {
                timestamp: 7,
                value: "wr".into(),
            }],
            tags: t,
            debug: true,
            shared: false,
        };
        let r = SpanRef::from_span(&s);
        assert_eq!(r.to_span(), s);
        assert_eq!(r.tag("error"), Some("true"));
        assert_eq!(r.tag("http.status_code"), Some("503"));
        assert_eq!(r.tag("nope"), None);
        assert_eq!(r.local_service(), Some("a"));
        assert_eq!(r.remote_service(), None);
    }
}
