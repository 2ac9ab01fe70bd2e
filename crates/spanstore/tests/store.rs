//! End-to-end tests of the span store's storage side: round trips, durability across
//! restarts, corruption handling, retention and concurrency.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use common::{full_span, now_ms, open, sorted, span, tid};
use meshlens_model::{SpanKind, SpanReader, SpanWriter, TraceId, TraceQuery};
use meshlens_spanstore::{SpanStore, SpanStoreOptions};
use meshlens_testdata::generate_spans_at;

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
        let spans = generate_spans_at(50, i, now - 1_000_000, now);
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
        let spans = generate_spans_at(600, 100 + w, now - 60_000_000, now);
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
