//! The write side under ingest: spans written borrowed (`write_refs`) are stored exactly as
//! owned ones, segments are written in the background without changing what is read back,
//! a stalled segment writer makes writers wait instead of losing or piling up data, and a
//! WAL replay after a crash gives back what was acknowledged.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::now_ms;
use meshlens_model::{Span, SpanReader, SpanRef, SpanWriter};
use meshlens_spanstore::{SpanStore, SpanStoreOptions};
use meshlens_testdata::generate_spans_at;

fn all_spans(st: &SpanStore) -> Vec<Span> {
    let mut out = Vec::new();
    st.scan(0, u64::MAX, &mut |s| out.push(s.clone())).unwrap();
    out.sort_by_key(|s| (s.trace_id, s.id, s.timestamp));
    out
}

fn sorted(mut v: Vec<Span>) -> Vec<Span> {
    v.sort_by_key(|s| (s.trace_id, s.id, s.timestamp));
    v
}

fn names(st: &SpanStore) -> Vec<String> {
    let mut out = Vec::new();
    for svc in st.service_names().unwrap() {
        out.push(format!("service {svc}"));
        for n in st.span_names(&svc).unwrap() {
            out.push(format!("  span {n}"));
        }
        for r in st.remote_service_names(&svc).unwrap() {
            out.push(format!("  remote {r}"));
        }
    }
    for k in st.autocomplete_keys().unwrap() {
        out.push(format!(
            "key {k}: {:?}",
            st.autocomplete_values(&k).unwrap()
        ));
    }
    out
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn borrowed_and_owned_writes_store_the_same_spans_and_replay_them() {
    let now = (now_ms() as u64) * 1000;
    let spans = generate_spans_at(400, 31, now - 600_000_000, now);
    let opts = SpanStoreOptions {
        segment_target_spans: 700,
        ..Default::default()
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = SpanStore::open(da.path(), opts.clone()).unwrap();
    let b = SpanStore::open(db.path(), opts.clone()).unwrap();
    for chunk in spans.chunks(97) {
        a.write(chunk).unwrap();
        let refs: Vec<SpanRef<'_>> = chunk.iter().map(SpanRef::from_span).collect();
        b.write_refs(&refs).unwrap();
    }
    let want = sorted(spans.clone());
    assert_eq!(all_spans(&a), want);
    assert_eq!(all_spans(&b), want);
    assert_eq!(names(&a), names(&b));
    assert!(!names(&b).is_empty());
    for s in spans.iter().step_by(53) {
        assert_eq!(
            sorted(a.trace(&s.trace_id).unwrap()),
            sorted(b.trace(&s.trace_id).unwrap())
        );
    }

    // A crash before any flush: what was acknowledged comes back from the WAL (and the
    // segments already written), span for span.
    b.simulate_crash();
    let b = SpanStore::open(db.path(), opts).unwrap();
    assert_eq!(all_spans(&b), want);
    assert_eq!(names(&a), names(&b));
}

#[test]
fn segments_written_in_the_background_hold_exactly_the_written_spans() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SpanStoreOptions {
        segment_target_spans: 500,
        ..Default::default()
    };
    let st = SpanStore::open(dir.path(), opts).unwrap();
    let now = (now_ms() as u64) * 1000;
    let spans = generate_spans_at(700, 5, now - 600_000_000, now);
    for chunk in spans.chunks(120) {
        let refs: Vec<SpanRef<'_>> = chunk.iter().map(SpanRef::from_span).collect();
        st.write_refs(&refs).unwrap();
    }
    // Every cut happened inside a write; no flush() call: the flusher thread writes every
    // sealed head on its own.
    wait_for("background segment writes", || st.stats().sealed_heads == 0);
    let s = st.stats();
    assert!(s.segments >= spans.len() / 620, "{s:?}");
    assert!(s.head_spans < 500, "{s:?}");
    assert_eq!(s.spans as usize, spans.len());
    assert_eq!(all_spans(&st), sorted(spans));
}

#[test]
fn a_stalled_segment_writer_makes_writers_wait_not_lose_spans() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SpanStoreOptions {
        segment_target_spans: 100,
        ..Default::default()
    };
    let st = Arc::new(SpanStore::open(dir.path(), opts).unwrap());
    let now = (now_ms() as u64) * 1000;
    let spans: Vec<Span> = generate_spans_at(120, 9, now - 600_000_000, now)
        .into_iter()
        .take(500)
        .collect();
    let held = st.hold_segment_writes();
    // Each batch fills the head, which is sealed and queued for the (stalled) writer.
    for chunk in spans[..300].chunks(100) {
        st.write(chunk).unwrap();
    }
    assert_eq!(st.stats().sealed_heads, 3);
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (st, done) = (st.clone(), done.clone());
        let rest = spans[300..].to_vec();
        std::thread::spawn(move || {
            for chunk in rest.chunks(100) {
                st.write(chunk).unwrap();
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !done.load(Ordering::SeqCst),
        "a write went through while three sealed heads waited for the segment writer"
    );
    assert_eq!(st.stats().sealed_heads, 3);
    assert_eq!(st.stats().spans, 300);
    drop(held);
    writer.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    wait_for("queued segments", || st.stats().sealed_heads == 0);
    assert_eq!(all_spans(&st), sorted(spans));
}

/// The names a write adds are checked against hash tables of what the indexes hold; the
/// result must be what inserting every name in write order gives (values first come, first
/// kept up to the cap of 1000 per key).
#[test]
fn names_noted_at_write_equal_inserting_every_name_in_order() {
    use std::collections::{BTreeMap, BTreeSet};
    let now = (now_ms() as u64) * 1000;
    let mut spans = generate_spans_at(500, 77, now - 600_000_000, now);
    for (i, s) in spans.iter_mut().enumerate() {
        // A key with more distinct values than the cap, and one that is low-cardinality.
        s.tags.insert("request_id".into(), format!("req-{i}"));
        s.tags.insert("shard".into(), format!("s{}", i % 7));
    }
    let dir = tempfile::tempdir().unwrap();
    let st = SpanStore::open(dir.path(), SpanStoreOptions::default()).unwrap();
    for chunk in spans.chunks(64) {
        let refs: Vec<SpanRef<'_>> = chunk.iter().map(SpanRef::from_span).collect();
        st.write_refs(&refs).unwrap();
    }
    let mut want: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut services: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for s in &spans {
        for (k, v) in &s.tags {
            let vs = want.entry(k).or_default();
            if vs.len() < 1000 {
                vs.insert(v);
            }
        }
        if let Some(svc) = s.local_service() {
            let e = services.entry(svc.to_lowercase()).or_default();
            if let Some(n) = &s.name {
                e.0.insert(n.to_lowercase());
            }
            if let Some(r) = s.remote_service() {
                e.1.insert(r.to_lowercase());
            }
        }
    }
    assert_eq!(want["request_id"].len(), 1000);
    assert_eq!(
        st.autocomplete_keys().unwrap(),
        want.keys().map(|k| k.to_string()).collect::<Vec<_>>()
    );
    for (k, vs) in &want {
        let got = st.autocomplete_values(k).unwrap();
        assert_eq!(
            got,
            vs.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            "{k}"
        );
    }
    assert_eq!(
        st.service_names().unwrap(),
        services.keys().cloned().collect::<Vec<_>>()
    );
    for (svc, (names, remotes)) in &services {
        assert_eq!(
            st.span_names(svc).unwrap(),
            names.iter().cloned().collect::<Vec<_>>()
        );
        assert_eq!(
            st.remote_service_names(svc).unwrap(),
            remotes.iter().cloned().collect::<Vec<_>>()
        );
    }
}
