//! End-to-end tests of the span store: round trips, Zipkin query semantics, durability,
//! corruption handling, retention and concurrency.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use meshlens_model::{
    Annotation, DependencyLink, Endpoint, Span, SpanKind, SpanReader, SpanWriter, TraceId,
    TraceQuery,
};
use meshlens_spanstore::{bench, SpanStore, SpanStoreOptions};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn tid(low: u64) -> TraceId {
    TraceId {
        high: 0,
        low,
        is_128: false,
    }
}

fn ep(svc: &str) -> Option<Endpoint> {
    Some(Endpoint {
        service_name: Some(svc.to_string()),
        ipv4: Some("10.0.0.1".into()),
        ipv6: None,
        port: None,
    })
}

#[allow(clippy::too_many_arguments)]
fn span(
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

fn opts() -> SpanStoreOptions {
    SpanStoreOptions {
        fsync: false,
        ..Default::default()
    }
}

fn open(dir: &Path) -> SpanStore {
    SpanStore::open(dir, opts()).unwrap()
}

fn sorted(mut v: Vec<Span>) -> Vec<Span> {
    v.sort_by_key(|s| (s.timestamp, s.id, s.shared));
    v
}

fn full_span(t: TraceId, id: u64, ts: u64) -> Span {
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

#[test]
fn write_then_read_back_exact_spans_from_head_segment_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = TraceId {
        high: 0xdead,
        low: 0xbeef,
        is_128: true,
    };
    let base = (now_ms() as u64) * 1000;
    let mut spans = vec![full_span(t, 2, base + 10)];
    let mut bare = span(t, 1, None, "a", "x", None, base, 0, &[]);
    bare.name = None;
    bare.timestamp = None;
    bare.duration = None;
    bare.local_endpoint = None;
    spans.push(bare);
    let st = open(dir.path());
    st.write(&spans).unwrap();
    assert_eq!(sorted(st.trace(&t).unwrap()), sorted(spans.clone()));
    st.flush().unwrap();
    assert_eq!(st.stats().segments, 1);
    assert_eq!(sorted(st.trace(&t).unwrap()), sorted(spans.clone()));
    st.close().unwrap();
    drop(st);
    let st = open(dir.path());
    assert_eq!(sorted(st.trace(&t).unwrap()), sorted(spans));
    assert!(st.trace(&tid(12345)).unwrap().is_empty());
}

#[test]
fn trace_pieces_across_wal_segments_and_restarts_are_merged_and_deduped() {
    let dir = tempfile::tempdir().unwrap();
    let t = tid(77);
    let base = (now_ms() as u64) * 1000;
    let a = span(
        t,
        1,
        None,
        "a",
        "root",
        Some(SpanKind::Server),
        base,
        100,
        &[],
    );
    let b = span(
        t,
        2,
        Some(1),
        "b",
        "child",
        Some(SpanKind::Server),
        base + 60_000_000,
        50,
        &[],
    );
    let c = span(
        t,
        3,
        Some(2),
        "c",
        "leaf",
        Some(SpanKind::Server),
        base + 120_000_000,
        5,
        &[],
    );
    let st = open(dir.path());
    st.write(std::slice::from_ref(&a)).unwrap();
    st.flush().unwrap();
    st.write(&[b.clone(), a.clone()]).unwrap(); // `a` again: an exact duplicate
    st.simulate_crash();
    let st = open(dir.path());
    assert_eq!(st.trace(&t).unwrap(), vec![a.clone(), b.clone()]);
    st.write(std::slice::from_ref(&c)).unwrap();
    st.flush().unwrap();
    st.close().unwrap();
    drop(st);
    let st = open(dir.path());
    assert_eq!(st.stats().segments, 2);
    assert_eq!(st.trace(&t).unwrap(), vec![a, b, c]);
}

#[test]
fn strict_trace_ids_do_not_merge_64_and_128_bit() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path());
    let base = (now_ms() as u64) * 1000;
    let long = TraceId {
        high: 9,
        low: 5,
        is_128: true,
    };
    let short = tid(5);
    let zero_high = TraceId {
        high: 0,
        low: 5,
        is_128: true,
    };
    st.write(&[
        span(long, 1, None, "a", "x", None, base, 1, &[]),
        span(short, 2, None, "a", "x", None, base, 1, &[]),
        span(zero_high, 3, None, "a", "x", None, base, 1, &[]),
    ])
    .unwrap();
    for round in 0..2 {
        assert_eq!(st.trace(&long).unwrap().len(), 1, "round {round}");
        assert_eq!(st.trace(&long).unwrap()[0].id, 1);
        assert_eq!(st.trace(&short).unwrap()[0].id, 2);
        assert_eq!(st.trace(&zero_high).unwrap()[0].id, 3);
        st.flush().unwrap();
    }
}

/// A fixture of traces exercising every search criterion; checked both from the head and
/// from segments.
fn query_fixture(st: &SpanStore, base: u64) {
    let s = |t, id, p, svc: &str, name: &str, kind, off: u64, dur, tags: &[(&str, &str)]| {
        span(tid(t), id, p, svc, name, kind, base + off, dur, tags)
    };
    let mut client = s(
        1,
        11,
        None,
        "Frontend",
        "GET /cart",
        Some(SpanKind::Client),
        0,
        5000,
        &[("http.method", "GET")],
    );
    client.remote_endpoint = ep("cartservice");
    let mut ann = s(
        2,
        21,
        None,
        "frontend",
        "get /home",
        Some(SpanKind::Server),
        1_000_000,
        200,
        &[("http.status_code", "500"), ("error", "true")],
    );
    ann.annotations.push(Annotation {
        timestamp: base + 1_000_010,
        value: "cache.miss".into(),
    });
    st.write(&[
        client,
        s(
            1,
            12,
            Some(11),
            "cartservice",
            "GetCart",
            Some(SpanKind::Server),
            100,
            4000,
            &[("http.method", "GET")],
        ),
        ann,
        s(
            2,
            22,
            Some(21),
            "redis",
            "get",
            Some(SpanKind::Server),
            1_000_100,
            90_000,
            &[],
        ),
        s(
            3,
            31,
            None,
            "frontend",
            "get /home",
            Some(SpanKind::Server),
            2_000_000,
            300,
            &[("http.method", "POST")],
        ),
    ])
    .unwrap();
}

fn ids(r: Vec<Vec<Span>>) -> Vec<u64> {
    r.iter().map(|t| t[0].trace_id.low).collect()
}

#[test]
fn find_traces_follows_zipkin_semantics_in_head_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path());
    let end = now_ms();
    let base = ((end - 60_000) as u64) * 1000;
    query_fixture(&st, base);
    let q = |f: &dyn Fn(&mut TraceQuery)| {
        let mut q = TraceQuery {
            end_ts: end,
            lookback: 3_600_000,
            limit: 10,
            ..Default::default()
        };
        f(&mut q);
        ids(st.find_traces(&q).unwrap())
    };
    for round in 0..2 {
        // Newest first by trace start.
        assert_eq!(q(&|_| {}), vec![3, 2, 1], "round {round}");
        assert_eq!(q(&|q| q.limit = 2), vec![3, 2]);
        // Service names are case-insensitive.
        assert_eq!(
            q(&|q| q.service_name = Some("FRONTEND".into())),
            vec![3, 2, 1]
        );
        assert_eq!(q(&|q| q.service_name = Some("cartservice".into())), vec![1]);
        assert_eq!(
            q(&|q| q.service_name = Some("nope".into())),
            Vec::<u64>::new()
        );
        // Remote service of that service's spans.
        assert_eq!(
            q(&|q| {
                q.service_name = Some("frontend".into());
                q.remote_service_name = Some("CartService".into());
            }),
            vec![1]
        );
        assert_eq!(
            q(&|q| {
                q.service_name = Some("cartservice".into());
                q.remote_service_name = Some("cartservice".into());
            }),
            Vec::<u64>::new()
        );
        // Span name, case-insensitive, must be on the service's spans.
        assert_eq!(q(&|q| q.span_name = Some("GET /HOME".into())), vec![3, 2]);
        assert_eq!(
            q(&|q| {
                q.service_name = Some("redis".into());
                q.span_name = Some("get /home".into());
            }),
            Vec::<u64>::new()
        );
        // Annotation query: tag key, tag key=value, annotation value, all required.
        assert_eq!(
            q(&|q| q.annotation_query = vec![("error".into(), None)]),
            vec![2]
        );
        assert_eq!(
            q(&|q| q.annotation_query = vec![("cache.miss".into(), None)]),
            vec![2]
        );
        assert_eq!(
            q(&|q| q.annotation_query = vec![("http.method".into(), Some("GET".into()))]),
            vec![1]
        );
        assert_eq!(
            q(&|q| q.annotation_query = vec![
                ("http.method".into(), Some("POST".into())),
                ("error".into(), None)
            ]),
            Vec::<u64>::new()
        );
        assert_eq!(
            q(&|q| {
                q.service_name = Some("redis".into());
                q.annotation_query = vec![("error".into(), None)];
            }),
            Vec::<u64>::new()
        );
        // Durations apply to one span (of the service, when given).
        assert_eq!(q(&|q| q.min_duration = Some(50_000)), vec![2]);
        assert_eq!(
            q(&|q| {
                q.service_name = Some("frontend".into());
                q.min_duration = Some(50_000);
            }),
            Vec::<u64>::new()
        );
        assert_eq!(
            q(&|q| {
                q.min_duration = Some(4_000);
                q.max_duration = Some(4_500);
            }),
            vec![1]
        );
        assert_eq!(q(&|q| q.max_duration = Some(250)), vec![2]);
        // Lookback window: only the first 1.5 s of the fixture.
        assert_eq!(
            q(&|q| {
                q.end_ts = (base / 1000) as i64 + 1_500;
                q.lookback = 2_000;
            }),
            vec![2, 1]
        );
        assert_eq!(
            q(&|q| {
                q.end_ts = (base / 1000) as i64 - 1;
                q.lookback = 60_000;
            }),
            Vec::<u64>::new()
        );
        // Whole traces come back.
        let r = st
            .find_traces(&TraceQuery {
                service_name: Some("cartservice".into()),
                end_ts: end,
                lookback: 3_600_000,
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r[0].len(), 2);
        st.flush().unwrap();
    }
}

#[test]
fn names_are_sorted_lower_case_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path());
    let base = ((now_ms() - 60_000) as u64) * 1000;
    query_fixture(&st, base);
    let check = |st: &SpanStore| {
        assert_eq!(
            st.service_names().unwrap(),
            vec!["cartservice", "frontend", "redis"]
        );
        assert_eq!(
            st.span_names("FrontEnd").unwrap(),
            vec!["get /cart", "get /home"]
        );
        assert_eq!(
            st.remote_service_names("frontend").unwrap(),
            vec!["cartservice"]
        );
        assert!(st.span_names("nope").unwrap().is_empty());
        assert_eq!(
            st.autocomplete_keys().unwrap(),
            vec!["error", "http.method", "http.status_code"]
        );
        assert_eq!(
            st.autocomplete_values("http.method").unwrap(),
            vec!["GET", "POST"]
        );
    };
    check(&st);
    st.close().unwrap();
    drop(st);
    check(&open(dir.path()));
}

#[test]
fn configured_autocomplete_keys_limit_values() {
    let dir = tempfile::tempdir().unwrap();
    let st = SpanStore::open(
        dir.path(),
        SpanStoreOptions {
            fsync: false,
            autocomplete_keys: vec!["http.method".into()],
            ..Default::default()
        },
    )
    .unwrap();
    query_fixture(&st, ((now_ms() - 1000) as u64) * 1000);
    assert_eq!(st.autocomplete_keys().unwrap(), vec!["http.method"]);
    assert_eq!(
        st.autocomplete_values("http.method").unwrap(),
        vec!["GET", "POST"]
    );
    assert!(st
        .autocomplete_values("http.status_code")
        .unwrap()
        .is_empty());
}

#[test]
fn dependencies_link_client_server_and_messaging_spans() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path());
    let end = now_ms();
    let base = ((end - 10_000) as u64) * 1000;
    let t = tid(5);
    let mut c = span(
        t,
        2,
        Some(1),
        "frontend",
        "call",
        Some(SpanKind::Client),
        base + 10,
        100,
        &[("error", "true")],
    );
    c.remote_endpoint = ep("backend");
    let mut p = span(
        t,
        4,
        Some(3),
        "backend",
        "send",
        Some(SpanKind::Producer),
        base + 30,
        5,
        &[],
    );
    p.remote_endpoint = ep("kafka");
    // A client with no server side: linked by its remote service name.
    let mut lone = span(
        tid(6),
        7,
        None,
        "frontend",
        "call",
        Some(SpanKind::Client),
        base,
        9,
        &[],
    );
    lone.remote_endpoint = ep("Stripe");
    st.write(&[
        span(
            t,
            1,
            None,
            "frontend",
            "root",
            Some(SpanKind::Server),
            base,
            1000,
            &[],
        ),
        c,
        span(
            t,
            3,
            Some(2),
            "backend",
            "serve",
            Some(SpanKind::Server),
            base + 20,
            80,
            &[],
        ),
        p,
        lone,
    ])
    .unwrap();
    let want = vec![
        DependencyLink {
            parent: "backend".into(),
            child: "kafka".into(),
            call_count: 1,
            error_count: 0,
        },
        DependencyLink {
            parent: "frontend".into(),
            child: "backend".into(),
            call_count: 1,
            error_count: 1,
        },
        DependencyLink {
            parent: "frontend".into(),
            child: "stripe".into(),
            call_count: 1,
            error_count: 0,
        },
    ];
    assert_eq!(st.dependencies(end, 60_000).unwrap(), want);
    st.flush().unwrap();
    assert_eq!(st.dependencies(end, 60_000).unwrap(), want);
    assert!(st.dependencies(end - 20_000, 1_000).unwrap().is_empty());
}

#[test]
fn scan_visits_spans_in_range_from_head_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path());
    let now = (now_ms() as u64) * 1000;
    let spans = bench::generate_spans_at(300, 1, now - 10_000_000, now);
    st.write(&spans[..spans.len() / 2]).unwrap();
    st.flush().unwrap();
    st.write(&spans[spans.len() / 2..]).unwrap();
    let (lo, hi) = (now - 8_000_000, now - 2_000_000);
    let want = spans
        .iter()
        .filter(|s| s.timestamp.is_some_and(|t| t >= lo && t <= hi))
        .count();
    let mut n = 0;
    st.scan(lo, hi, &mut |s| {
        assert!(s.timestamp.unwrap() >= lo && s.timestamp.unwrap() <= hi);
        n += 1;
    })
    .unwrap();
    assert_eq!(n, want);
    assert!(want > 0);
}

fn wal_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn torn_wal_tail_is_truncated_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path());
    let base = ((now_ms() - 1000) as u64) * 1000;
    st.write(&[span(tid(1), 1, None, "a", "x", None, base, 1, &[])])
        .unwrap();
    st.write(&[span(tid(2), 2, None, "a", "x", None, base, 1, &[])])
        .unwrap();
    st.simulate_crash();
    let wal = wal_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&wal).unwrap();
    let full = bytes.len();
    // Tear the second frame, then add garbage.
    bytes.truncate(full - 3);
    bytes.extend_from_slice(&[0xff; 7]);
    fs::write(&wal, &bytes).unwrap();
    let st = open(dir.path());
    assert_eq!(st.stats().wal_torn_tails, 1);
    assert_eq!(st.trace(&tid(1)).unwrap().len(), 1);
    assert!(st.trace(&tid(2)).unwrap().is_empty());
    // New writes after recovery survive another restart.
    st.write(&[span(tid(3), 3, None, "a", "x", None, base, 1, &[])])
        .unwrap();
    st.simulate_crash();
    let st = open(dir.path());
    assert_eq!(st.stats().wal_torn_tails, 0);
    assert_eq!(st.trace(&tid(1)).unwrap().len(), 1);
    assert_eq!(st.trace(&tid(3)).unwrap().len(), 1);
}

#[test]
fn corrupt_segment_is_quarantined_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path());
    let base = ((now_ms() - 1000) as u64) * 1000;
    st.write(&[span(tid(1), 1, None, "a", "x", None, base, 1, &[])])
        .unwrap();
    st.flush().unwrap();
    st.write(&[span(tid(2), 2, None, "a", "x", None, base, 1, &[])])
        .unwrap();
    st.close().unwrap();
    drop(st);
    let mut segs: Vec<_> = fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    assert_eq!(segs.len(), 2);
    let mut b = fs::read(&segs[0]).unwrap();
    let n = b.len();
    b[n - 20] ^= 0x55;
    fs::write(&segs[0], &b).unwrap();
    fs::write(&segs[1], b"garbage").unwrap_or(());
    fs::write(dir.path().join("segments").join("zzz.seg"), b"x").unwrap();
    let st = open(dir.path());
    assert_eq!(st.stats().corrupt_segments, 2);
    assert_eq!(
        fs::read_dir(dir.path().join("corrupted")).unwrap().count(),
        2
    );
    assert!(st.trace(&tid(1)).unwrap().is_empty());
    st.write(&[span(tid(4), 4, None, "a", "x", None, base, 1, &[])])
        .unwrap();
    assert_eq!(st.trace(&tid(4)).unwrap().len(), 1);
}

#[test]
fn corrupt_block_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path());
    let base = ((now_ms() - 1000) as u64) * 1000;
    st.write(&[span(tid(1), 1, None, "a", "x", None, base, 1, &[])])
        .unwrap();
    st.close().unwrap();
    drop(st);
    let seg = fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut b = fs::read(&seg).unwrap();
    b[10] ^= 0xff; // inside the first block
    fs::write(&seg, &b).unwrap();
    let st = open(dir.path());
    assert!(st.trace(&tid(1)).is_err());
    assert!(st.scan(0, u64::MAX, &mut |_| {}).is_err());
}

#[test]
fn retention_drops_old_segments_by_time_and_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let o = SpanStoreOptions {
        fsync: false,
        retention_ms: 3_600_000,
        ..Default::default()
    };
    let st = SpanStore::open(dir.path(), o.clone()).unwrap();
    let now = (now_ms() as u64) * 1000;
    let old = now - 2 * 3_600_000_000;
    st.write(&[span(tid(1), 1, None, "old", "x", None, old, 1, &[])])
        .unwrap();
    st.flush().unwrap();
    st.write(&[span(tid(2), 2, None, "new", "x", None, now, 1, &[])])
        .unwrap();
    st.flush().unwrap();
    assert_eq!(st.stats().segments, 2);
    assert_eq!(st.enforce_retention().unwrap(), 1);
    assert_eq!(st.stats().segments, 1);
    assert!(st.trace(&tid(1)).unwrap().is_empty());
    assert_eq!(st.service_names().unwrap(), vec!["new"]);
    st.close().unwrap();
    drop(st);

    // By size: several segments, keep only what fits.
    let dir = tempfile::tempdir().unwrap();
    let st = SpanStore::open(dir.path(), o.clone()).unwrap();
    for i in 0..4u64 {
        let spans = bench::generate_spans_at(50, i, now - 1_000_000, now);
        st.write(&spans).unwrap();
        st.flush().unwrap();
    }
    let per = st.stats().segment_bytes / 4;
    st.close().unwrap();
    drop(st);
    let st = SpanStore::open(
        dir.path(),
        SpanStoreOptions {
            retention_bytes: Some(per * 2 + per / 2),
            ..o
        },
    )
    .unwrap();
    let s = st.stats();
    assert_eq!(s.segments, 2);
    assert_eq!(s.retention_dropped_segments, 2);
    assert_eq!(
        fs::read_dir(dir.path().join("segments")).unwrap().count(),
        2
    );
}

#[test]
fn concurrent_writers_and_readers_lose_nothing_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let o = SpanStoreOptions {
        fsync: true,
        segment_target_spans: 3_000,
        ..Default::default()
    };
    let st = Arc::new(SpanStore::open(dir.path(), o.clone()).unwrap());
    let now = (now_ms() as u64) * 1000;
    let mut handles = Vec::new();
    let mut all = Vec::new();
    for w in 0..4u64 {
        let spans = bench::generate_spans_at(600, 100 + w, now - 60_000_000, now);
        all.extend(spans.iter().cloned());
        let st = st.clone();
        handles.push(std::thread::spawn(move || {
            for chunk in spans.chunks(150) {
                st.write(chunk).unwrap();
            }
        }));
    }
    for r in 0..2 {
        let st = st.clone();
        let probe = all[r * 7].trace_id;
        handles.push(std::thread::spawn(move || {
            for _ in 0..30 {
                let _ = st.trace(&probe).unwrap();
                let q = TraceQuery {
                    service_name: Some("frontend.default".into()),
                    end_ts: now_ms(),
                    lookback: 3_600_000,
                    limit: 10,
                    ..Default::default()
                };
                let _ = st.find_traces(&q).unwrap();
                let _ = st.service_names().unwrap();
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let count = |st: &SpanStore| {
        let mut n = 0usize;
        st.scan(0, u64::MAX, &mut |_| n += 1).unwrap();
        n
    };
    assert_eq!(count(&st), all.len());
    assert!(st.stats().segments + st.stats().sealed_heads >= 2);
    let st = Arc::into_inner(st).unwrap();
    st.simulate_crash();
    let st = SpanStore::open(dir.path(), o).unwrap();
    assert_eq!(count(&st), all.len());
    assert_eq!(st.stats().spans as usize, all.len());
    for s in all.iter().step_by(97) {
        let got = st.trace(&s.trace_id).unwrap();
        assert!(
            got.contains(s),
            "span {} of trace {} lost",
            s.id,
            s.trace_id
        );
    }
}

#[test]
fn writes_after_close_fail_and_reads_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let st = open(dir.path());
    let base = ((now_ms() - 1000) as u64) * 1000;
    st.write(&[span(tid(1), 1, None, "a", "x", None, base, 1, &[])])
        .unwrap();
    st.close().unwrap();
    st.close().unwrap();
    assert!(st
        .write(&[span(tid(2), 2, None, "a", "x", None, base, 1, &[])])
        .is_err());
    assert_eq!(st.trace(&tid(1)).unwrap().len(), 1);
    assert_eq!(st.stats().wal_bytes, 0);
}

#[test]
fn generated_istio_traces_look_right() {
    let now = (now_ms() as u64) * 1000;
    let spans = bench::generate_spans_at(200, 7, now - 1_000_000, now);
    let mut per_trace: BTreeMap<TraceId, usize> = BTreeMap::new();
    for s in &spans {
        *per_trace.entry(s.trace_id).or_default() += 1;
        assert!(s.tags.len() >= 7);
    }
    assert_eq!(per_trace.len(), 200);
    assert!(
        per_trace.values().all(|&n| (3..=8).contains(&n)),
        "{per_trace:?}"
    );
    assert!(spans.iter().any(|s| s.tags.contains_key("error")));
    assert_eq!(
        spans,
        bench::generate_spans_at(200, 7, now - 1_000_000, now)
    );
}
