//! The lazy read path against the materialising one and against what was written: head
//! only, blocks only, head and blocks overlapping, late samples, stale markers, ranges that
//! cut chunks, and the parallel decode of many series.

use std::collections::BTreeMap;

use meshlens_model::{
    LabelMatcher, Labels, MatchOp, MetricReader, MetricWriter, Sample, SeriesSamples, StorageError,
    TimeSeries, STALE_NAN,
};

use crate::{FsyncPolicy, Tsdb, TsdbOptions};

/// Everything accepted so far, by series then time: what any read must give back.
#[derive(Default)]
struct Truth(BTreeMap<Labels, BTreeMap<i64, u64>>);

impl Truth {
    /// Appends to `db` and records what it accepted. Samples must not clash with stored
    /// ones (same time, other value): the tests keep to data whose truth is unambiguous.
    fn append(&mut self, db: &Tsdb, batch: &[TimeSeries]) {
        let out = db.append(batch).expect("append");
        assert_eq!(out.rejected(), 0, "{out:?}");
        for s in batch {
            let e = self.0.entry(s.labels.clone()).or_default();
            for x in &s.samples {
                e.insert(x.t, x.v.to_bits());
            }
        }
    }

    fn select(&self, name: &str, mint: i64, maxt: i64) -> Vec<SeriesSamples> {
        self.0
            .iter()
            .filter(|(l, _)| l.metric_name() == Some(name))
            .map(|(l, m)| SeriesSamples {
                labels: l.clone(),
                samples: m
                    .range(mint..=maxt.max(mint))
                    .filter(|(t, _)| mint <= maxt && **t <= maxt)
                    .map(|(t, v)| Sample::new(*t, f64::from_bits(*v)))
                    .collect(),
                histograms: Vec::new(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect()
    }
}

fn opts() -> TsdbOptions {
    TsdbOptions {
        block_duration_ms: 100_000,
        retention_time_ms: None,
        out_of_order_window_ms: 1_000_000,
        wal_fsync: FsyncPolicy::Never,
        ..Default::default()
    }
}

fn series(name: &str, i: usize, samples: Vec<Sample>) -> TimeSeries {
    TimeSeries {
        labels: Labels::from_pairs([
            ("__name__", name.to_string()),
            ("i", format!("{i:03}")),
            ("even", i.is_multiple_of(2).to_string()),
        ]),
        samples,
    }
}

/// `select_lazy` with one buffer reused across series, empty series dropped.
fn lazy(db: &Tsdb, m: &[LabelMatcher], mint: i64, maxt: i64) -> Vec<SeriesSamples> {
    let mut buf = vec![Sample::new(-7, 7.0)];
    let mut out = Vec::new();
    let cursors = db.select_lazy(m, mint, maxt).expect("select_lazy");
    let labels: Vec<&Labels> = cursors.iter().map(|c| c.labels()).collect();
    assert!(labels.windows(2).all(|w| w[0] < w[1]), "sorted, distinct");
    for c in &cursors {
        buf.truncate(1);
        let n = c.decode_into(&mut buf).expect("decode");
        assert_eq!(n, buf.len() - 1, "the count is what was appended");
        assert_eq!(buf[0], Sample::new(-7, 7.0), "the buffer's head is kept");
        if n > 0 {
            out.push(SeriesSamples {
                labels: c.labels().clone(),
                samples: buf[1..].to_vec(),
                histograms: Vec::new(),
            });
        }
    }
    out
}

fn same(a: &[SeriesSamples], b: &[SeriesSamples]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.labels == y.labels
                && x.samples.len() == y.samples.len()
                && x.samples
                    .iter()
                    .zip(&y.samples)
                    .all(|(p, q)| p.t == q.t && p.v.to_bits() == q.v.to_bits())
        })
}

/// Ranges that take everything, cut chunks at both ends, fall inside one chunk, fall
/// between samples, lie outside the data, or are empty.
const RANGES: [(i64, i64); 9] = [
    (i64::MIN, i64::MAX),
    (0, 1_000_000),
    (123_456, 377_777),
    (250_001, 250_999),
    (250_001, 251_001),
    (299_000, 299_000),
    (-50_000, -1),
    (10_000_000, 20_000_000),
    (300_000, 200_000),
];

/// Every read path equals the truth, for every range, for every name.
fn check(db: &Tsdb, truth: &Truth, names: &[&str]) {
    for name in names {
        let m = [LabelMatcher::equal("__name__", *name)];
        for (mint, maxt) in RANGES {
            let want = truth.select(name, mint, maxt);
            let got = db.select(&m, mint, maxt).expect("select");
            assert!(same(&got, &want), "select {name} [{mint}, {maxt}]");
            let got = lazy(db, &m, mint, maxt);
            assert!(same(&got, &want), "select_lazy {name} [{mint}, {maxt}]");
            let limited = db.select_limited(&m, mint, maxt, usize::MAX - 1).unwrap();
            assert!(same(&limited, &want));
            // `series` is chunk-level: it may name a series whose chunk spans the range
            // without a sample in it, as the cursors may; never one without such a chunk.
            let listed = db.series(&m, mint, maxt).unwrap();
            let cursors: Vec<Labels> = db
                .select_lazy(&m, mint, maxt)
                .unwrap()
                .iter()
                .map(|c| c.labels().clone())
                .collect();
            assert_eq!(listed, cursors, "series {name} [{mint}, {maxt}]");
            // One label asked of a fresh cursor (before, and without, its label set being
            // built) is the one in the set.
            for c in db.select_lazy(&m, mint, maxt).unwrap() {
                let asked: Vec<Option<String>> = ["__name__", "even", "i", "missing"]
                    .iter()
                    .map(|n| c.label_value(n).map(str::to_string))
                    .collect();
                let built: Vec<Option<String>> = ["__name__", "even", "i", "missing"]
                    .iter()
                    .map(|n| c.labels().get(n).map(str::to_string))
                    .collect();
                assert_eq!(asked, built, "label_value {name} [{mint}, {maxt}]");
                assert!(asked[0].is_some() && asked[3].is_none());
            }
            assert!(want.iter().all(|w| listed.contains(&w.labels)));
            if (mint, maxt) == (i64::MIN, i64::MAX) {
                assert_eq!(listed.len(), want.len());
            }
        }
    }
}

/// Samples at ~1 s with jitter, counters, gauges with fractions and stale markers.
fn samples(i: usize, from: i64, to: i64) -> Vec<Sample> {
    (from..to)
        .step_by(1_000)
        .enumerate()
        .map(|(k, t)| {
            let t = t + ((k * 7 + i) % 5) as i64;
            let v = match (i % 3, k % 17) {
                (_, 16) => STALE_NAN,
                (0, _) => (k * 3 + i) as f64,
                (1, _) => (k as f64 * 0.37).sin(),
                _ => {
                    if k % 5 == 0 {
                        f64::INFINITY
                    } else {
                        k as f64 / 4.0
                    }
                }
            };
            Sample::new(t, v)
        })
        .collect()
}

#[test]
fn head_only_reads_agree() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let mut truth = Truth::default();
    let batch: Vec<TimeSeries> = (0..12)
        .map(|i| series("m", i, samples(i, 0, 400_000)))
        .collect();
    truth.append(&db, &batch);
    assert!(db.block_metas().is_empty());
    check(&db, &truth, &["m", "absent"]);
}

#[test]
fn block_only_reads_agree() {
    let dir = tempfile::tempdir().unwrap();
    let mut truth = Truth::default();
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        let batch: Vec<TimeSeries> = (0..12)
            .map(|i| series("m", i, samples(i, 0, 400_000)))
            .collect();
        truth.append(&db, &batch);
        db.close().unwrap();
    }
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert_eq!(db.head_series(), 0);
    assert!(!db.block_metas().is_empty());
    check(&db, &truth, &["m"]);
}

/// Blocks cut from the head, then more samples in the head (in order, and late ones
/// inside the blocks' time, some repeating stored samples), then the head closed into a
/// block that overlaps the others: every read merges them without duplicates.
#[test]
fn head_blocks_and_late_samples_overlapping_reads_agree() {
    let dir = tempfile::tempdir().unwrap();
    let mut truth = Truth::default();
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        let first: Vec<TimeSeries> = (0..12)
            .map(|i| series("m", i, samples(i, 0, 300_000)))
            .collect();
        truth.append(&db, &first);
        db.maintain().unwrap();
        assert!(!db.block_metas().is_empty(), "maintain cut a block");
        // In order after the cut.
        let more: Vec<TimeSeries> = (0..12)
            .map(|i| series("m", i, samples(i, 300_000, 400_000)))
            .collect();
        truth.append(&db, &more);
        // Late: between stored samples (which sit 0-4 ms past each second), and repeats
        // of stored samples with their stored values (accepted as late, or unchanged).
        let late: Vec<TimeSeries> = (0..12)
            .filter(|i| i % 2 == 0)
            .map(|i| {
                let mut s: Vec<Sample> = (1_000..250_000)
                    .step_by(20_011)
                    .map(|t| Sample::new(t - t % 1_000 + 777, -(t as f64)))
                    .collect();
                s.extend(samples(i, 0, 300_000).into_iter().step_by(50));
                s.sort_by_key(|x| x.t);
                s.dedup_by_key(|x| x.t);
                series("m", i, s)
            })
            .collect();
        truth.append(&db, &late);
        check(&db, &truth, &["m"]);
        db.close().unwrap();
    }
    // The head, late samples and all, is now a block overlapping the earlier ones.
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let metas = db.block_metas();
    assert!(
        metas.iter().any(|a| metas
            .iter()
            .any(|b| a.id != b.id && a.min_time <= b.max_time && b.min_time <= a.max_time)),
        "overlapping blocks: {metas:?}"
    );
    check(&db, &truth, &["m"]);
    // New head data beside the overlapping blocks.
    let newer: Vec<TimeSeries> = (0..12)
        .map(|i| series("m", i, samples(i, 400_000, 450_000)))
        .collect();
    truth.append(&db, &newer);
    check(&db, &truth, &["m"]);
}

/// Enough series for `select` to decode on several threads: the result is still sorted,
/// complete, equal to the lazy path, and the budget still stops it.
#[test]
fn many_series_decode_in_parallel_and_stop_at_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut truth = Truth::default();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let n = super::PARALLEL_MIN_SERIES + 300;
    let batch: Vec<TimeSeries> = (0..n)
        .map(|i| series("big", i, samples(i, 0, 40_000)))
        .collect();
    truth.append(&db, &batch);
    let m = [LabelMatcher::equal("__name__", "big")];
    let want = truth.select("big", i64::MIN, i64::MAX);
    assert_eq!(want.len(), n);
    assert!(same(&db.select(&m, i64::MIN, i64::MAX).unwrap(), &want));
    assert!(same(&lazy(&db, &m, i64::MIN, i64::MAX), &want));
    let total: usize = want.iter().map(|s| s.samples.len()).sum();
    assert_eq!(
        db.select_limited(&m, i64::MIN, i64::MAX, total)
            .unwrap()
            .len(),
        n
    );
    assert!(matches!(
        db.select_limited(&m, i64::MIN, i64::MAX, total - 1),
        Err(StorageError::TooManySamples { .. })
    ));
    assert!(matches!(
        db.select_limited(&m, i64::MIN, i64::MAX, 10),
        Err(StorageError::TooManySamples { limit: 10 })
    ));
    // Matchers narrow before any series is read: every other series, by a regex.
    let even = [
        LabelMatcher::equal("__name__", "big"),
        LabelMatcher::new(MatchOp::RegexMatch, "even", "tr.e").unwrap(),
    ];
    let got = db.select(&even, i64::MIN, i64::MAX).unwrap();
    assert_eq!(got.len(), n.div_ceil(2));
    assert!(got.iter().all(|s| s.labels.get("even") == Some("true")));
}

/// Series created after the head's label order was built still come out in label order.
#[test]
fn series_created_between_reads_come_out_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let mut truth = Truth::default();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    // Descending creation order, so id order is never label order.
    for round in 0..4 {
        let batch: Vec<TimeSeries> = (0..400)
            .rev()
            .filter(|i| i % 4 == round)
            .map(|i| series("m", i, samples(i, 0, 5_000)))
            .collect();
        truth.append(&db, &batch);
        let want = truth.select("m", i64::MIN, i64::MAX);
        let m = [LabelMatcher::equal("__name__", "m")];
        assert!(
            same(&lazy(&db, &m, i64::MIN, i64::MAX), &want),
            "round {round}"
        );
        assert!(same(&db.select(&m, i64::MIN, i64::MAX).unwrap(), &want));
    }
}
