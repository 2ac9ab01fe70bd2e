//! The buffer on disk: durability across reopen, damage, cursors, bounds, concurrency.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meshlens_forward::{AppendError, Buffer, BufferOptions, Kind};

fn opts(dir: &Path) -> BufferOptions {
    BufferOptions {
        dir: dir.to_path_buf(),
        max_size_bytes: 0,
        max_age: Duration::ZERO,
        drop_oldest: false,
        segment_bytes: 1 << 20,
        fsync: true,
    }
}

fn dests(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Bytes snappy cannot shrink, so a record's size on disk is known.
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn payload(i: usize) -> Vec<u8> {
    format!("record-{i:05};").repeat(1 + i % 4).into_bytes()
}

fn kind(i: usize) -> Kind {
    if i % 3 == 2 {
        Kind::Spans
    } else {
        Kind::Metrics
    }
}

/// Every record `dest` has not been sent, one a batch, committing each.
fn drain(b: &Buffer, dest: &str) -> Vec<(Kind, Vec<u8>, u64)> {
    let mut out = Vec::new();
    while let Some(batch) = b.read_batch(dest, 1).unwrap() {
        assert_eq!(batch.records, 1);
        assert_eq!(batch.next_seq, batch.first_seq + 1);
        out.push((batch.kind, batch.payload, batch.items));
        b.commit(dest, batch.next_seq).unwrap();
    }
    out
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

fn append_n(b: &Buffer, range: std::ops::Range<usize>) {
    for i in range {
        b.append(kind(i), i as u32, &payload(i)).unwrap();
    }
}

fn expected(range: std::ops::Range<usize>) -> Vec<(Kind, Vec<u8>, u64)> {
    range.map(|i| (kind(i), payload(i), i as u64)).collect()
}

#[test]
fn append_and_reopen_keep_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let o = BufferOptions {
        segment_bytes: 500,
        ..opts(dir.path())
    };
    {
        let b = Buffer::open(o.clone(), &dests(&["a"])).unwrap();
        append_n(&b, 0..100);
        assert_eq!(b.stats().appended_records, 100);
        assert_eq!(b.durable_end(), 100);
    }
    assert!(segment_files(dir.path()).len() > 5, "small segments rotate");
    let b = Buffer::open(o.clone(), &dests(&["a"])).unwrap();
    assert_eq!(b.stats().next_seq, 100);
    append_n(&b, 100..110);
    assert_eq!(drain(&b, "a"), expected(0..110));
    drop(b);
    let b = Buffer::open(o, &dests(&["a"])).unwrap();
    assert!(b.read_batch("a", 1 << 20).unwrap().is_none());
    assert_eq!(b.cursor("a"), Some(110));
}

#[test]
fn batches_join_consecutive_records_of_one_kind_up_to_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let b = Buffer::open(opts(dir.path()), &dests(&["a"])).unwrap();
    for (k, p) in [
        (Kind::Metrics, "aa"),
        (Kind::Metrics, "bb"),
        (Kind::Metrics, "cc"),
        (Kind::Spans, "dd"),
        (Kind::Spans, "ee"),
        (Kind::Metrics, "ff"),
    ] {
        b.append(k, 2, p.as_bytes()).unwrap();
    }
    let first = b.read_batch("a", 1 << 20).unwrap().unwrap();
    assert_eq!(
        (first.kind, &first.payload[..], first.items),
        (Kind::Metrics, &b"aabbcc"[..], 6)
    );
    assert_eq!((first.first_seq, first.next_seq, first.records), (0, 3, 3));
    // Not committed: read again from the same place; a small limit splits.
    let small = b.read_batch("a", 50).unwrap().unwrap();
    assert_eq!(small.payload, b"aabb");
    b.commit("a", first.next_seq).unwrap();
    let spans = b.read_batch("a", 1 << 20).unwrap().unwrap();
    assert_eq!(
        (spans.kind, &spans.payload[..]),
        (Kind::Spans, &b"ddee"[..])
    );
    b.commit("a", spans.next_seq).unwrap();
    let last = b.read_batch("a", 1 << 20).unwrap().unwrap();
    assert_eq!((last.kind, &last.payload[..]), (Kind::Metrics, &b"ff"[..]));
    b.commit("a", last.next_seq).unwrap();
    assert!(b.read_batch("a", 1 << 20).unwrap().is_none());
    assert!(b.caught_up("a"));
}

#[test]
fn torn_tail_is_cut_on_reopen_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    {
        let b = Buffer::open(o.clone(), &dests(&["a"])).unwrap();
        append_n(&b, 0..10);
    }
    let last = segment_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap()
        .write_all(&[0x33, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 7, 7])
        .unwrap();
    {
        let b = Buffer::open(o.clone(), &dests(&["a"])).unwrap();
        assert_eq!(std::fs::metadata(&last).unwrap().len(), len, "garbage cut");
        append_n(&b, 10..12);
    }
    // A record cut in half: it is gone, the ones before stay.
    let last = segment_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let b = Buffer::open(o.clone(), &dests(&["a"])).unwrap();
    append_n(&b, 11..13);
    assert_eq!(drain(&b, "a"), expected(0..13));
    drop(b);
    let b = Buffer::open(o, &dests(&["a", "b"])).unwrap();
    assert_eq!(drain(&b, "b"), expected(0..13));
}

#[test]
fn corrupt_record_mid_segment_ends_that_segment_only() {
    let dir = tempfile::tempdir().unwrap();
    let o = BufferOptions {
        segment_bytes: 150,
        ..opts(dir.path())
    };
    {
        let b = Buffer::open(o.clone(), &dests(&["a"])).unwrap();
        append_n(&b, 0..30);
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 4);
    // The second record of the second segment gets a flipped payload byte.
    let victim = &files[1];
    let first: u64 = victim
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut bytes = std::fs::read(victim).unwrap();
    let first_len = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let at = 21 + first_len + 21 + 3;
    assert!(at < bytes.len(), "the segment holds two records");
    bytes[at] ^= 0xff;
    std::fs::write(victim, &bytes).unwrap();

    let b = Buffer::open(o, &dests(&["a"])).unwrap();
    let got = drain(&b, "a");
    let second_start = {
        let next: u64 = files[2]
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        next as usize
    };
    let mut want = expected(0..first as usize + 1);
    want.extend(expected(second_start..30));
    assert_eq!(got, want);
}

#[test]
fn cursors_are_independent_and_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    {
        let b = Buffer::open(o.clone(), &dests(&["http://a", "http://b"])).unwrap();
        append_n(&b, 0..10);
        let a = b.read_batch("http://a", 1 << 20).unwrap().unwrap();
        assert_eq!(a.first_seq, 0);
        b.commit("http://a", 6).unwrap();
        b.commit("http://b", 3).unwrap();
        assert_eq!(b.cursor("http://a"), Some(6));
        assert_eq!(b.cursor("http://b"), Some(3));
        // Never backwards.
        b.commit("http://a", 2).unwrap();
        assert_eq!(b.cursor("http://a"), Some(6));
        // Not persisted: only in memory.
        b.advance("http://b", 4).unwrap();
    }
    let b = Buffer::open(o, &dests(&["http://a", "http://b"])).unwrap();
    assert_eq!(b.cursor("http://a"), Some(6));
    assert_eq!(b.cursor("http://b"), Some(3));
    assert_eq!(drain(&b, "http://a"), expected(6..10));
    assert_eq!(drain(&b, "http://b"), expected(3..10));
    assert!(b.read_batch("http://c", 10).is_err(), "unknown destination");
}

#[test]
fn segments_are_deleted_only_when_every_cursor_passed_them() {
    let dir = tempfile::tempdir().unwrap();
    let o = BufferOptions {
        segment_bytes: 100,
        ..opts(dir.path())
    };
    let b = Buffer::open(o.clone(), &dests(&["a", "b"])).unwrap();
    append_n(&b, 0..20);
    let before = segment_files(dir.path()).len();
    assert!(before >= 5);
    drain(&b, "a");
    assert_eq!(
        segment_files(dir.path()).len(),
        before,
        "b has not read them"
    );
    b.commit("b", 10).unwrap();
    let mid = segment_files(dir.path());
    assert!(mid.len() < before);
    for f in &mid {
        let first: u64 = f.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let next = mid.iter().find(|g| *g > f);
        if let Some(g) = next {
            let end: u64 = g.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            assert!(
                end > 10 || first <= 10,
                "a segment wholly before 10 was kept"
            );
        }
    }
    let total_before = b.stats().total_bytes;
    drain(&b, "b");
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "only the active segment is left"
    );
    assert!(b.stats().total_bytes < total_before);
    // The numbering survives the deletions.
    drop(b);
    let b = Buffer::open(o, &dests(&["a", "b", "c"])).unwrap();
    b.append(Kind::Metrics, 1, b"x").unwrap();
    assert_eq!(b.stats().next_seq, 21);
    let c = drain(&b, "c");
    assert_eq!(c.last().unwrap().1, b"x");
}

#[test]
fn a_new_destination_starts_at_the_oldest_record_kept() {
    let dir = tempfile::tempdir().unwrap();
    let o = BufferOptions {
        segment_bytes: 100,
        ..opts(dir.path())
    };
    {
        let b = Buffer::open(o.clone(), &dests(&["a"])).unwrap();
        append_n(&b, 0..20);
        b.commit("a", 12).unwrap();
    }
    let b = Buffer::open(o, &dests(&["a", "new"])).unwrap();
    let oldest = b.cursor("new").unwrap();
    assert!(oldest <= 12 && oldest > 0, "oldest kept: {oldest}");
    assert_eq!(drain(&b, "new"), expected(oldest as usize..20));
    b.ensure_destination("later").unwrap();
    assert_eq!(b.cursor("later"), Some(b.cursor("a").unwrap().min(20)));
}

#[test]
fn full_buffer_refuses_appends_without_drop_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let o = BufferOptions {
        max_size_bytes: 2000,
        segment_bytes: 400,
        ..opts(dir.path())
    };
    let b = Buffer::open(o, &dests(&["a", "b"])).unwrap();
    let p = vec![7u8; 100];
    let mut accepted = 0;
    let err = loop {
        match b.append(Kind::Metrics, 1, &p) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100, "never full");
    };
    assert!(
        matches!(err, AppendError::Full { limit: 2000, .. }),
        "{err}"
    );
    assert!(b.stats().total_bytes <= 2000);
    assert!(b.append(Kind::Spans, 1, &p).is_err());
    assert_eq!(b.stats().refused_records, 2);
    // Once both hubs have it all, room is made again.
    assert_eq!(drain(&b, "a").len(), accepted);
    assert!(matches!(
        b.append(Kind::Metrics, 1, &p),
        Err(AppendError::Full { .. })
    ));
    assert_eq!(drain(&b, "b").len(), accepted);
    b.append(Kind::Metrics, 1, &p).unwrap();
    let s = b.stats();
    assert_eq!(s.destinations[0].dropped_full.records, 0);
    assert_eq!(s.appended_records, accepted as u64 + 1);
}

#[test]
fn drop_oldest_deletes_unsent_records_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let o = BufferOptions {
        max_size_bytes: 2000,
        segment_bytes: 400,
        drop_oldest: true,
        ..opts(dir.path())
    };
    let b = Buffer::open(o, &dests(&["a", "b"])).unwrap();
    let p = noise(100);
    for i in 0..60u32 {
        b.append(Kind::Metrics, 10, &[&i.to_le_bytes()[..], &p].concat())
            .unwrap();
        if i < 5 {
            // "a" keeps up at first.
            drain(&b, "a");
        }
    }
    let s = b.stats();
    assert!(s.total_bytes <= 2000);
    assert_eq!(s.refused_records, 0);
    let a = &s.destinations[0];
    let bd = &s.destinations[1];
    assert!(bd.dropped_full.records > 40, "{bd:?}");
    assert_eq!(bd.dropped_full.items, bd.dropped_full.records * 10);
    assert_eq!(a.dropped_full.records + 5, bd.dropped_full.records);
    // What is left is the newest, in order, and everything not dropped is there.
    let got = drain(&b, "b");
    assert_eq!(got.len() as u64 + bd.dropped_full.records, 60);
    let seqs: Vec<u32> = got
        .iter()
        .map(|(_, p, _)| u32::from_le_bytes(p[..4].try_into().unwrap()))
        .collect();
    let first = seqs[0];
    assert_eq!(seqs, (first..60).collect::<Vec<_>>());
}

#[test]
fn records_older_than_max_age_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let o = BufferOptions {
        max_age: Duration::from_millis(300),
        ..opts(dir.path())
    };
    let b = Buffer::open(o, &dests(&["a", "b"])).unwrap();
    for _ in 0..5 {
        b.append(Kind::Metrics, 3, b"old").unwrap();
    }
    // "a" is current; "b" lags.
    assert_eq!(drain(&b, "a").len(), 5);
    let lag = b.stats().destinations[1].lag_seconds;
    assert!(lag < 0.3, "{lag}");
    std::thread::sleep(Duration::from_millis(400));
    assert!(b.stats().destinations[1].lag_seconds >= 0.4);
    b.append(Kind::Spans, 2, b"new").unwrap();
    let got = drain(&b, "b");
    assert_eq!(got, vec![(Kind::Spans, b"new".to_vec(), 2)]);
    let s = b.stats();
    assert_eq!(s.destinations[1].dropped_max_age.records, 5);
    assert_eq!(s.destinations[1].dropped_max_age.items, 15);
    assert_eq!(s.destinations[0].dropped_max_age.records, 0);
    assert_eq!(s.destinations[1].lag_seconds, 0.0);
}

#[test]
fn concurrent_appends_are_all_durable_and_in_order_per_thread() {
    let dir = tempfile::tempdir().unwrap();
    let o = BufferOptions {
        segment_bytes: 8 << 10,
        ..opts(dir.path())
    };
    const THREADS: u32 = 8;
    const EACH: u32 = 200;
    {
        let b = Buffer::open(o.clone(), &dests(&["a"])).unwrap();
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        let mut p = vec![0u8; 8 + (i as usize % 50)];
                        p[..4].copy_from_slice(&t.to_le_bytes());
                        p[4..8].copy_from_slice(&i.to_le_bytes());
                        b.append(Kind::Metrics, 1, &p).unwrap();
                        // Acknowledged means durable: readable right away.
                        assert!(b.durable_end() > 0);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(b.durable_end(), (THREADS * EACH) as u64);
        let s = b.stats();
        assert_eq!(s.appended_records, (THREADS * EACH) as u64);
        assert!(s.fsyncs <= s.appended_records);
        eprintln!("{} appends, {} fsyncs", s.appended_records, s.fsyncs);
    }
    let b = Buffer::open(o, &dests(&["a"])).unwrap();
    let got = drain(&b, "a");
    assert_eq!(got.len(), (THREADS * EACH) as usize);
    let mut next = vec![0u32; THREADS as usize];
    for (_, p, _) in got {
        let t = u32::from_le_bytes(p[..4].try_into().unwrap()) as usize;
        let i = u32::from_le_bytes(p[4..8].try_into().unwrap());
        assert_eq!(i, next[t], "thread {t} out of order");
        next[t] += 1;
    }
}

#[test]
fn stats_show_what_each_destination_has_not_been_sent() {
    let dir = tempfile::tempdir().unwrap();
    let b = Buffer::open(opts(dir.path()), &dests(&["a", "b"])).unwrap();
    let (m, sp) = (noise(79), noise(29));
    b.append(Kind::Metrics, 4, &m).unwrap();
    b.append(Kind::Spans, 6, &sp).unwrap();
    b.commit("a", 1).unwrap();
    let s = b.stats();
    // Each record: a 21-byte header and the payload as snappy stores it.
    let stored = |p: &[u8]| 21 + snap::raw::Encoder::new().compress_vec(p).unwrap().len() as u64;
    let (m, sp) = (stored(&m), stored(&sp));
    assert_eq!(s.total_bytes, m + sp);
    assert_eq!(s.appended_metrics_records, 1);
    assert_eq!(s.appended_spans_records, 1);
    assert_eq!(
        (
            s.destinations[0].buffered_records,
            s.destinations[0].buffered_bytes
        ),
        (1, sp)
    );
    assert_eq!(
        (
            s.destinations[1].buffered_records,
            s.destinations[1].buffered_bytes
        ),
        (2, m + sp)
    );
    b.close();
    assert!(matches!(
        b.append(Kind::Metrics, 1, b"x"),
        Err(AppendError::Closed)
    ));
}

#[test]
fn without_fsync_records_are_readable_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = BufferOptions {
        fsync: false,
        ..opts(dir.path())
    };
    let b = Buffer::open(o, &dests(&["a"])).unwrap();
    append_n(&b, 0..5);
    assert_eq!(drain(&b, "a"), expected(0..5));
}
