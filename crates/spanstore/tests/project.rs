//! Projection scans (`SpanReader::parts`) against rows of the `Span`s `scan` builds, and
//! the segments' pre-aggregate memos: kept, bounded, dropped with the segment.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use meshlens_model::{Annotation, Memo, Projection, Span, SpanKind, SpanReader, SpanRow, NO_ID};
use meshlens_spanstore::{SpanStore, SpanStoreOptions};

const MIN_US: u64 = 60_000_000;

type OwnedRow = (
    (u64, u64, bool),
    Option<&'static str>,
    u64,
    Option<u64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<Option<String>>,
    u64,
);

fn owned(r: &SpanRow<'_>) -> OwnedRow {
    let own = |s: Option<&str>| s.map(str::to_string);
    (
        (r.trace_id.high, r.trace_id.low, r.trace_id.is_128),
        r.kind.map(SpanKind::as_str),
        r.timestamp,
        r.duration,
        own(r.name),
        own(r.local_service),
        own(r.remote_service),
        r.tags.iter().map(|t| own(*t)).collect(),
        r.prefixes,
    )
}

/// Every row of every part, sorted. Checks on the way that within a part, a string id
/// always stands for the same string; returns how many strings came with an id.
fn part_rows_ids(s: &SpanStore, p: &Projection<'_>) -> (Vec<OwnedRow>, usize) {
    let mut out = Vec::new();
    let mut with_id = 0;
    for part in s.parts(p.start_us, p.end_us).unwrap() {
        let mut by_id: HashMap<u32, String> = HashMap::new();
        part.scan(p, &mut |r| {
            let mut strings = vec![
                (r.name_id, r.name),
                (r.local_service_id, r.local_service),
                (r.remote_service_id, r.remote_service),
            ];
            strings.extend((0..r.tags.len()).map(|i| (r.tag_id(i), r.tags[i])));
            for (id, text) in strings {
                if id == NO_ID {
                    continue;
                }
                let text = text.expect("an id comes with its string");
                with_id += 1;
                let known = by_id.entry(id).or_insert_with(|| text.to_string());
                assert_eq!(known, text, "id {id}");
            }
            out.push(owned(r));
        })
        .unwrap();
    }
    out.sort();
    (out, with_id)
}

fn part_rows(s: &SpanStore, p: &Projection<'_>) -> Vec<OwnedRow> {
    part_rows_ids(s, p).0
}

/// The rows of the spans `scan` builds, sorted.
fn scan_rows(s: &SpanStore, p: &Projection<'_>) -> Vec<OwnedRow> {
    let mut out = Vec::new();
    s.scan(p.start_us, p.end_us, &mut |sp| {
        let mut tags = Vec::new();
        out.push(owned(&SpanRow::of_span(sp, p, &mut tags)));
    })
    .unwrap();
    out.sort();
    out
}

/// Generated traces plus what they lack: rare (inline) tag values, annotations, spans
/// without kind, timestamp, duration, name or endpoints, upper-case services, 64-bit ids.
fn varied(n: usize, seed: u64, lo: u64, hi: u64) -> Vec<Span> {
    let mut spans = meshlens_testdata::generate_spans_at(n, seed, lo, hi);
    for (i, s) in spans.iter_mut().enumerate() {
        // More than 1000 distinct values per segment, each once: stored inline.
        if i % 5 != 1 {
            s.tags
                .insert("user_agent".into(), format!("rare-agent-{seed}-{i}"));
        }
        if i % 7 == 0 {
            s.annotations.push(Annotation {
                timestamp: s.timestamp.unwrap_or(lo),
                value: "wr".into(),
            });
        }
        match i % 19 {
            0 => s.kind = None,
            1 => s.timestamp = None,
            2 => s.duration = None,
            3 => s.name = None,
            4 => s.local_endpoint = None,
            5 => s.remote_endpoint = None,
            6 => {
                if let Some(e) = s.local_endpoint.as_mut() {
                    e.service_name = Some("CartService.Default".into());
                }
            }
            7 => s.tags.clear(),
            _ => {}
        }
        if i % 23 == 0 {
            // A 64-bit id (its high half is zero, as parsing gives).
            s.trace_id.is_128 = false;
            s.trace_id.high = 0;
        }
    }
    spans
}

fn store(dir: &std::path::Path, opts: SpanStoreOptions) -> SpanStore {
    SpanStore::open(dir, opts).unwrap()
}

fn small_segments() -> SpanStoreOptions {
    SpanStoreOptions {
        segment_target_spans: 1_000,
        ..common::opts()
    }
}

const TAGS: [&str; 6] = [
    "http.url",
    "user_agent",
    "missing.key",
    "http.status_code",
    "user_agent",
    "error",
];
const PREFIXES: [&str; 4] = ["http.", "upstream", "zzz", "user_agent"];

#[test]
fn part_rows_equal_rows_of_built_spans() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), small_segments());
    let now = common::now_ms() as u64 * 1000;
    for k in 0..12u64 {
        let lo = now - 60 * MIN_US + k * 5 * MIN_US;
        s.write_spans(&varied(300, k, lo, lo + 5 * MIN_US)).unwrap();
        s.flush().unwrap();
    }
    s.flush().unwrap();
    s.write_spans(&varied(300, 77, now - 8 * MIN_US, now))
        .unwrap();
    let st = s.stats();
    assert!(st.segments >= 4 && st.head_spans > 0, "{st:?}");

    let windows = [
        (1, u64::MAX),
        (now - 45 * MIN_US + 17, now - 12 * MIN_US),
        (now - 5 * MIN_US, now),
        (now + MIN_US, now + 2 * MIN_US),
    ];
    for (start_us, end_us) in windows {
        let p = Projection {
            start_us,
            end_us,
            tags: &TAGS,
            tag_prefixes: &PREFIXES,
            service: None,
        };
        let want = scan_rows(&s, &p);
        let (got, with_id) = part_rows_ids(&s, &p);
        assert_eq!(got, want, "window {start_us}..{end_us}");
        if start_us == 1 {
            assert!(want.len() > 10_000);
            assert!(with_id > want.len(), "segment strings carry dictionary ids");
        }
        // With a service hint a part may leave out other services, never that one.
        for svc in ["cartservice.default", "CartService.Default", "nosuch"] {
            let hinted = Projection {
                service: Some(svc),
                ..p
            };
            let of_svc = |rows: Vec<OwnedRow>| -> Vec<OwnedRow> {
                rows.into_iter()
                    .filter(|r| r.5.as_deref() == Some(svc))
                    .collect()
            };
            let got = of_svc(part_rows(&s, &hinted));
            assert_eq!(got, of_svc(want.clone()), "{svc} in {start_us}..{end_us}");
            if start_us == 1 && svc != "nosuch" {
                assert!(!got.is_empty());
            }
        }
    }
}

#[test]
fn too_many_prefixes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), small_segments());
    let now = common::now_ms() as u64 * 1000;
    s.write_spans(&varied(50, 1, now - MIN_US, now)).unwrap();
    s.flush().unwrap();
    s.write_spans(&varied(50, 2, now - MIN_US, now)).unwrap();
    let many = vec!["x"; 65];
    let p = Projection {
        start_us: 1,
        end_us: u64::MAX,
        tags: &[],
        tag_prefixes: &many,
        service: None,
    };
    let parts = s.parts(1, u64::MAX).unwrap();
    assert!(parts.len() >= 2);
    for part in parts {
        let e = part.scan(&p, &mut |_| {}).unwrap_err();
        assert_eq!(e.http_status(), 400, "{e}");
    }
}

fn memo(v: u64) -> Memo {
    Arc::new(v)
}

#[test]
fn segments_keep_memos_heads_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), small_segments());
    let now = common::now_ms() as u64 * 1000;
    s.write_spans(&varied(400, 1, now - 30 * MIN_US, now - 20 * MIN_US))
        .unwrap();
    s.flush().unwrap();
    s.write_spans(&varied(100, 2, now - 5 * MIN_US, now))
        .unwrap();
    let parts = s.parts(1, u64::MAX).unwrap();
    let (segs, heads): (Vec<_>, Vec<_>) = parts.iter().partition(|p| p.time_range().is_some());
    assert!(!segs.is_empty() && !heads.is_empty());
    for (i, p) in segs.iter().enumerate() {
        let (lo, hi) = p.time_range().unwrap();
        assert!(lo >= now - 30 * MIN_US && lo <= hi && hi <= now - 20 * MIN_US);
        assert!(p.memo_get("k").is_none());
        p.memo_put("k", memo(i as u64), 100);
    }
    for p in &heads {
        p.memo_put("k", memo(9), 100);
        assert!(p.memo_get("k").is_none());
    }
    // A fresh snapshot sees the same segments and their memos.
    let again = s.parts(1, u64::MAX).unwrap();
    let got: Vec<u64> = again
        .iter()
        .filter_map(|p| p.memo_get("k"))
        .map(|m| *m.downcast::<u64>().unwrap())
        .collect();
    assert_eq!(got, (0..segs.len() as u64).collect::<Vec<_>>());
    assert!(again.iter().all(|p| p.memo_get("other").is_none()));
    let st = s.stats();
    assert_eq!(
        (st.preaggregates, st.preaggregate_bytes),
        (segs.len() as u64, 100 * segs.len() as u64)
    );
}

#[test]
fn memos_are_bounded_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SpanStoreOptions {
        preaggregate_bytes: 250,
        ..small_segments()
    };
    let s = store(dir.path(), opts);
    let now = common::now_ms() as u64 * 1000;
    for k in 0..3 {
        s.write_spans(&varied(100, k, now - 30 * MIN_US, now))
            .unwrap();
        s.flush().unwrap();
    }
    let parts = s.parts(1, u64::MAX).unwrap();
    assert!(parts.len() >= 3, "{}", parts.len());
    parts[0].memo_put("k", memo(0), 100);
    parts[1].memo_put("k", memo(1), 100);
    // Touch the first: the second is now the least recently used.
    assert!(parts[0].memo_get("k").is_some());
    parts[2].memo_put("k", memo(2), 100);
    assert!(parts[0].memo_get("k").is_some());
    assert!(parts[1].memo_get("k").is_none());
    assert!(parts[2].memo_get("k").is_some());
    // Larger than the whole budget: not kept.
    parts[1].memo_put("big", memo(3), 251);
    assert!(parts[1].memo_get("big").is_none());
    let st = s.stats();
    assert_eq!((st.preaggregates, st.preaggregate_bytes), (2, 200));
}

#[test]
fn memos_go_with_segments_dropped_by_retention() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SpanStoreOptions {
        retention_ms: 3_600_000,
        ..small_segments()
    };
    let s = store(dir.path(), opts);
    let now = common::now_ms() as u64 * 1000;
    s.write_spans(&varied(300, 1, now - 130 * MIN_US, now - 125 * MIN_US))
        .unwrap();
    s.flush().unwrap();
    s.write_spans(&varied(300, 2, now - 10 * MIN_US, now - 5 * MIN_US))
        .unwrap();
    s.flush().unwrap();
    let value = memo(1);
    let (old_ts, new_ts) = (now - 128 * MIN_US, now - 7 * MIN_US);
    for p in s.parts(1, u64::MAX).unwrap() {
        if p.time_range().is_some() {
            p.memo_put("k", value.clone(), 10);
        }
    }
    let n_segments = s.stats().segments as u64;
    assert_eq!(s.stats().preaggregates, n_segments);
    assert!(s.enforce_retention().unwrap() >= 1);
    // Only the survivors' memos are counted, and the dropped ones were freed.
    let parts = s.parts(1, u64::MAX).unwrap();
    let live = parts.iter().filter(|p| p.memo_get("k").is_some()).count();
    assert!(parts
        .iter()
        .filter_map(|p| p.time_range())
        .all(|(lo, _)| lo > old_ts && lo <= new_ts));
    assert_eq!(s.stats().preaggregates, live as u64);
    drop(parts);
    assert_eq!(Arc::strong_count(&value), 1 + live);
    assert!(live >= 1 && (live as u64) < n_segments);
}
