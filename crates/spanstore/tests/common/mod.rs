//! Span builders and store helpers shared by the span store's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use meshlens_model::{Annotation, Endpoint, Span, SpanKind, TraceId};
use meshlens_spanstore::{SpanStore, SpanStoreOptions};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn tid(low: u64) -> TraceId {
    TraceId {
        high: 0,
        low,
        is_128: false,
    }
}

pub fn ep(svc: &str) -> Option<Endpoint> {
    Some(Endpoint {
        service_name: Some(svc.to_string()),
        ipv4: Some("10.0.0.1".into()),
        ipv6: None,
        port: None,
    })
}

#[allow(clippy::too_many_arguments)]
pub fn span(
    trace: TraceId,
    id: u64,
    parent: Option<u64>,
    svc: &str,
    name: &str,
    kind: Option<SpanKind>,
    ts_us: u64,
    dur: u64,
    tags: &[(&str, &str)],
) -> Span {
    Span {
        trace_id: trace,
        id,
        parent_id: parent,
        name: Some(name.to_string()),
        kind,
        timestamp: Some(ts_us),
        duration: Some(dur),
        local_endpoint: ep(svc),
        remote_endpoint: None,
        annotations: Vec::new(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        debug: false,
        shared: false,
    }
}

pub fn opts() -> SpanStoreOptions {
    SpanStoreOptions {
        fsync: false,
        ..Default::default()
    }
}

pub fn open(dir: &Path) -> SpanStore {
    SpanStore::open(dir, opts()).unwrap()
}

pub fn sorted(mut v: Vec<Span>) -> Vec<Span> {
    v.sort_by_key(|s| (s.timestamp, s.id, s.shared));
    v
}

pub fn full_span(t: TraceId, id: u64, ts: u64) -> Span {
    let mut s = span(
        t,
        id,
        Some(1),
        "Frontend",
        "GET /Home",
        Some(SpanKind::Server),
        ts,
        1234,
        &[("http.method", "GET"), ("http.url", "http://x/unique/1")],
    );
    s.remote_endpoint = Some(Endpoint {
        service_name: Some("gateway".into()),
        ipv4: None,
        ipv6: Some("2001:db8::1".into()),
        port: Some(443),
    });
    s.annotations = vec![
        Annotation {
            timestamp: ts + 5,
            value: "ws".into(),
        },
        Annotation {
            timestamp: ts - 3,
            value: "early".into(),
        },
    ];
    s.debug = true;
    s.shared = true;
    s
}
