//! Native-histogram samples in the embedded TSDB, end to end: append, reads (select,
//! select_limited, select_lazy, series and label lookups), restart, WAL replay after a
//! crash, WAL checkpoints, blocks (cut, compaction, retention) and damaged files.

use std::path::Path;
use std::sync::Arc;

use meshlens_model::histogram::{BucketSpan, CounterResetHint};
use meshlens_model::{
    FloatHistogram, HistogramSample, LabelMatcher, Labels, MatchOp, MetricReader, MetricWriter,
    Sample, SeriesHistograms, SeriesSamples, StorageError, TimeSeries,
};
use meshlens_tsdb::{FsyncPolicy, Tsdb, TsdbOptions};

const SEC: i64 = 1000;

fn opts() -> TsdbOptions {
    TsdbOptions {
        block_duration_ms: 100 * SEC,
        retention_time_ms: None,
        out_of_order_window_ms: 0,
        wal_fsync: FsyncPolicy::EveryAppend,
        ..Default::default()
    }
}

fn labels(name: &str, job: &str) -> Labels {
    Labels::from_pairs([("__name__", name), ("job", job)])
}

/// A histogram whose every field depends on `i` (and `k`, to tell series apart).
fn hist(i: i64, k: i64) -> Arc<FloatHistogram> {
    let f = (i + k) as f64;
    Arc::new(FloatHistogram {
        counter_reset_hint: if i % 10 == 0 {
            CounterResetHint::CounterReset
        } else {
            CounterResetHint::NotCounterReset
        },
        schema: 3,
        zero_threshold: 0.001,
        zero_count: f,
        count: 4.0 * f + 2.0,
        sum: 0.25 * f + 0.1,
        positive_spans: vec![
            BucketSpan {
                offset: -1,
                length: 2,
            },
            BucketSpan {
                offset: 2 + (i / 20) as i32,
                length: 1,
            },
        ],
        negative_spans: vec![BucketSpan {
            offset: 0,
            length: 1,
        }],
        positive_buckets: vec![f, f + 1.0, 0.5 * f],
        negative_buckets: vec![f + 0.3],
        custom_values: vec![],
    })
}

fn hseries(name: &str, job: &str, ts: impl IntoIterator<Item = i64>, k: i64) -> SeriesHistograms {
    SeriesHistograms {
        labels: labels(name, job),
        samples: ts
            .into_iter()
            .map(|t| HistogramSample {
                t,
                h: hist(t / SEC, k),
            })
            .collect(),
    }
}

fn fseries(name: &str, job: &str, ts: impl IntoIterator<Item = i64>) -> TimeSeries {
    TimeSeries {
        labels: labels(name, job),
        samples: ts
            .into_iter()
            .map(|t| Sample::new(t, t as f64 / 7.0))
            .collect(),
    }
}

/// What the data written by [`fill`] reads back as, sorted by labels.
fn expected(upto: i64) -> Vec<SeriesSamples> {
    let range = |step: usize, from: i64| (from..upto).step_by(step).map(|s| s * SEC);
    let h = |name, job, ts, k| {
        let s = hseries(name, job, ts, k);
        SeriesSamples {
            labels: s.labels,
            samples: vec![],
            histograms: s.samples,
        }
    };
    let mut v = vec![
        h("lat", "a", range(1, 0).collect::<Vec<_>>(), 0),
        h("lat", "b", range(3, 1).collect(), 5),
        // Floats at even seconds, histograms at odd ones.
        SeriesSamples {
            labels: labels("mixed", "a"),
            samples: fseries("mixed", "a", range(2, 0)).samples,
            histograms: hseries("mixed", "a", range(2, 1), 9).samples,
        },
        SeriesSamples {
            labels: labels("up", "a"),
            samples: fseries("up", "a", range(1, 0)).samples,
            histograms: vec![],
        },
    ];
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    v
}

/// Appends [`expected`]'s data for seconds `[from, upto)` in batches of 10 seconds.
fn fill(db: &Tsdb, from: i64, upto: i64) {
    let mut t = from;
    while t < upto {
        let end = (t + 10).min(upto);
        let secs = |step: i64, off: i64| {
            (t..end)
                .filter(move |s| (s - off).rem_euclid(step) == 0 && *s >= off)
                .map(|s| s * SEC)
        };
        let out = db
            .append_histograms(&[
                hseries("lat", "a", secs(1, 0), 0),
                hseries("lat", "b", secs(3, 1), 5),
                hseries("mixed", "a", secs(2, 1), 9),
            ])
            .unwrap();
        assert_eq!(out.rejected(), 0, "{out:?}");
        let out = db
            .append(&[
                fseries("mixed", "a", secs(2, 0)),
                fseries("up", "a", secs(1, 0)),
            ])
            .unwrap();
        assert_eq!(out.rejected(), 0, "{out:?}");
        t = end;
    }
}

fn everything(db: &Tsdb) -> Vec<SeriesSamples> {
    db.select(
        &[LabelMatcher::new(MatchOp::RegexMatch, "__name__", ".+").unwrap()],
        i64::MIN,
        i64::MAX,
    )
    .unwrap()
}

/// The same data through the lazy cursors.
fn everything_lazy(db: &Tsdb, mint: i64, maxt: i64) -> Vec<SeriesSamples> {
    db.select_lazy(
        &[LabelMatcher::new(MatchOp::RegexMatch, "__name__", ".+").unwrap()],
        mint,
        maxt,
    )
    .unwrap()
    .iter()
    .map(|c| {
        let mut samples = Vec::new();
        c.decode_into(&mut samples).unwrap();
        SeriesSamples {
            labels: c.labels().clone(),
            samples,
            histograms: c.histograms().to_vec(),
        }
    })
    .filter(|s| !s.samples.is_empty() || !s.histograms.is_empty())
    .collect()
}

fn clip(v: Vec<SeriesSamples>, mint: i64, maxt: i64) -> Vec<SeriesSamples> {
    v.into_iter()
        .map(|mut s| {
            s.samples.retain(|x| (mint..=maxt).contains(&x.t));
            s.histograms.retain(|x| (mint..=maxt).contains(&x.t));
            s
        })
        .filter(|s| !s.samples.is_empty() || !s.histograms.is_empty())
        .collect()
}

fn assert_reads(db: &Tsdb, upto: i64) {
    let want = expected(upto);
    assert_eq!(everything(db), want);
    assert_eq!(everything_lazy(db, i64::MIN, i64::MAX), want);
    for (mint, maxt) in [(5 * SEC, 47 * SEC), (0, 0), (upto * SEC / 2, upto * SEC)] {
        let got = db
            .select(
                &[LabelMatcher::new(MatchOp::RegexMatch, "__name__", ".+").unwrap()],
                mint,
                maxt,
            )
            .unwrap();
        assert_eq!(got, clip(want.clone(), mint, maxt), "[{mint}, {maxt}]");
        assert_eq!(
            everything_lazy(db, mint, maxt),
            clip(want.clone(), mint, maxt)
        );
    }
}

fn open(dir: &Path) -> Tsdb {
    Tsdb::open(dir, opts()).unwrap()
}

#[test]
fn floats_and_histograms_read_back_equal() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    fill(&db, 0, 60);
    assert_reads(&db, 60);
    let stats = db.stats();
    assert_eq!(stats.head_series, 4);
    assert_eq!(stats.head_histogram_samples, 60 + 20 + 30);
    assert_eq!(stats.samples_appended, 60 + 20 + 30 + 30 + 60);

    // Series holding only histograms are found by the series and label lookups.
    let lat = [LabelMatcher::equal("__name__", "lat")];
    assert_eq!(
        db.series(&lat, i64::MIN, i64::MAX).unwrap(),
        vec![labels("lat", "a"), labels("lat", "b")]
    );
    assert_eq!(
        db.label_values("job", &lat, i64::MIN, i64::MAX).unwrap(),
        vec!["a", "b"]
    );
    assert_eq!(
        db.label_values("__name__", &[], i64::MIN, i64::MAX)
            .unwrap(),
        vec!["lat", "mixed", "up"]
    );
    assert_eq!(
        db.label_names(&lat, i64::MIN, i64::MAX).unwrap(),
        vec!["__name__", "job"]
    );
    // lat{job="b"} has samples at 1s, 4s, 7s…: none in [2s, 3s].
    assert_eq!(
        db.series(&lat, 2 * SEC, 3 * SEC).unwrap(),
        vec![labels("lat", "a")]
    );
}

#[test]
fn histogram_appends_create_series_like_float_appends() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let out = db
        .append_histograms(&[hseries("lat", "a", [1000, 2000], 0)])
        .unwrap();
    assert_eq!((out.accepted, out.series_created), (2, 1));
    // A float append to the same labels finds the same series.
    let out = db.append(&[fseries("lat", "a", [1500])]).unwrap();
    assert_eq!((out.accepted, out.series_created), (1, 0));
    assert_eq!(db.stats().head_series, 1);
    // Invalid and empty label sets are refused per sample, as for floats.
    let bad = SeriesHistograms {
        labels: Labels::from_pairs([("__name__", "0bad")]),
        samples: hseries("x", "y", [1000, 2000, 3000], 0).samples,
    };
    let empty = SeriesHistograms {
        labels: Labels::empty(),
        samples: hseries("x", "y", [1000], 0).samples,
    };
    let out = db.append_histograms(&[bad, empty]).unwrap();
    assert_eq!((out.accepted, out.invalid_labels), (0, 4));
    assert_eq!(db.stats().head_series, 1);
    assert_eq!(db.stats().rejected_invalid_labels, 4);
}

#[test]
fn histograms_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        fill(&db, 0, 60);
        db.close().unwrap();
        assert!(matches!(
            db.append_histograms(&[hseries("lat", "a", [100_000], 0)]),
            Err(StorageError::Closed)
        ));
    }
    let db = open(dir.path());
    // close wrote the head into a block: the histograms are read from there.
    let metas = db.block_metas();
    assert!(!metas.is_empty());
    assert_eq!(
        metas
            .iter()
            .map(|m| m.stats.num_histogram_samples)
            .sum::<u64>(),
        110
    );
    assert_eq!(db.stats().head_histogram_samples, 0);
    assert_reads(&db, 60);
    // Appends continue after the reopened data.
    fill(&db, 60, 80);
    assert_reads(&db, 80);
}

#[test]
fn histograms_replay_from_the_wal_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        fill(&db, 0, 60);
        // Dropped without close, as after a SIGKILL: only the WAL holds the data.
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .path()
        .join("meta.json")
        .exists()));
    {
        let db = open(dir.path());
        assert_eq!(db.stats().head_histogram_samples, 110);
        assert_eq!(db.stats().wal_records_dropped_on_replay, 0);
        assert_reads(&db, 60);
        fill(&db, 60, 70);
    }
    // A second crash after more appends: replays the first log and the new one.
    let db = open(dir.path());
    assert_reads(&db, 70);
}

#[test]
fn head_compaction_moves_histograms_into_blocks_and_checkpoints_keep_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        // 430 s with 100 s blocks: the head is cut until at most 1.5 blocks remain.
        fill(&db, 0, 430);
        let before = db.stats().head_histogram_samples;
        db.maintain().unwrap();
        let metas = db.block_metas();
        assert!(metas.len() >= 2, "{metas:?}");
        let in_blocks: u64 = metas.iter().map(|m| m.stats.num_histogram_samples).sum();
        assert!(in_blocks > 0);
        assert_eq!(in_blocks + db.stats().head_histogram_samples, before);
        assert!(std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .path()
            .join("histograms")
            .exists()));
        assert_reads(&db, 430);
        // Read from the blocks alone: the head holds nothing before 300 s.
        let old = db
            .select(&[LabelMatcher::equal("job", "b")], 0, 99 * SEC)
            .unwrap();
        assert_eq!(old[0].histograms.len(), 33);
        // The cut checkpointed the WAL; a crash now replays the checkpoint for the head.
    }
    let db = open(dir.path());
    assert_reads(&db, 430);
    // More blocks, then compaction folds them (3 x 100 s windows) and keeps every sample.
    fill(&db, 430, 1000);
    db.maintain().unwrap();
    assert!(db.stats().compactions > 0, "{:?}", db.stats());
    assert!(db
        .block_metas()
        .iter()
        .any(|m| m.compaction.level > 1 && m.stats.num_histogram_samples > 0));
    assert_reads(&db, 1000);
}

#[test]
fn out_of_order_duplicate_and_out_of_bounds_histograms_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(
        dir.path(),
        TsdbOptions {
            out_of_order_window_ms: 5 * SEC,
            ..opts()
        },
    )
    .unwrap();
    let one = |t: i64, k: i64| SeriesHistograms {
        labels: labels("lat", "a"),
        samples: vec![HistogramSample { t, h: hist(t, k) }],
    };
    assert_eq!(
        db.append_histograms(&[one(20 * SEC, 0)]).unwrap().accepted,
        1
    );
    // Same timestamp, same histogram: accepted, unchanged.
    assert_eq!(
        db.append_histograms(&[one(20 * SEC, 0)]).unwrap().accepted,
        1
    );
    // Same timestamp, another histogram.
    assert_eq!(
        db.append_histograms(&[one(20 * SEC, 1)]).unwrap().duplicate,
        1
    );
    // Older than the window.
    assert_eq!(
        db.append_histograms(&[one(10 * SEC, 0)])
            .unwrap()
            .out_of_order,
        1
    );
    // Within the window: inserted in order.
    assert_eq!(
        db.append_histograms(&[one(17 * SEC, 0)]).unwrap().accepted,
        1
    );
    // A batch mixes outcomes per sample and keeps the accepted ones.
    let out = db
        .append_histograms(&[SeriesHistograms {
            labels: labels("lat", "a"),
            samples: vec![
                HistogramSample {
                    t: 30 * SEC,
                    h: hist(1, 1),
                },
                HistogramSample {
                    t: 12 * SEC,
                    h: hist(1, 1),
                },
                HistogramSample {
                    t: 30 * SEC,
                    h: hist(2, 2),
                },
            ],
        }])
        .unwrap();
    assert_eq!(
        (out.accepted, out.out_of_order, out.duplicate),
        (1, 1, 1),
        "{out:?}"
    );
    // Floats in the same series keep their own order.
    assert_eq!(
        db.append(&[fseries("lat", "a", [1000])]).unwrap().accepted,
        1
    );
    let got = &everything(&db)[0];
    assert_eq!(
        got.histograms.iter().map(|s| s.t).collect::<Vec<_>>(),
        vec![17 * SEC, 20 * SEC, 30 * SEC]
    );
    assert_eq!(got.samples.len(), 1);
    let stats = db.stats();
    assert_eq!(stats.rejected_out_of_order, 2);
    assert_eq!(stats.rejected_duplicate, 2);

    // Out of bounds: older than retention allows.
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(
        dir.path(),
        TsdbOptions {
            retention_time_ms: Some(60 * SEC),
            ..opts()
        },
    )
    .unwrap();
    db.append(&[fseries("up", "a", [1000 * SEC])]).unwrap();
    let out = db
        .append_histograms(&[hseries("lat", "a", [100 * SEC, 999 * SEC], 0)])
        .unwrap();
    assert_eq!((out.accepted, out.out_of_bounds), (1, 1));
    assert_eq!(db.stats().rejected_out_of_bounds, 1);
}

#[test]
fn select_limited_counts_histograms_as_samples() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.append_histograms(&[hseries("lat", "a", (0..50).map(|s| s * SEC), 0)])
        .unwrap();
    db.append(&[fseries("lat", "a", (0..50).map(|s| s * SEC + 500))])
        .unwrap();
    let m = [LabelMatcher::equal("__name__", "lat")];
    let got = db.select_limited(&m, i64::MIN, i64::MAX, 100).unwrap();
    assert_eq!((got[0].samples.len(), got[0].histograms.len()), (50, 50));
    assert!(matches!(
        db.select_limited(&m, i64::MIN, i64::MAX, 99),
        Err(StorageError::TooManySamples { limit: 99 })
    ));
    // Histograms alone count too.
    db.append_histograms(&[hseries("h", "a", (0..10).map(|s| s * SEC), 0)])
        .unwrap();
    let h = [LabelMatcher::equal("__name__", "h")];
    assert!(db.select_limited(&h, i64::MIN, i64::MAX, 10).is_ok());
    assert!(db.select_limited(&h, i64::MIN, i64::MAX, 9).is_err());
    // And the same from a block.
    db.close().unwrap();
    let db = open(dir.path());
    assert!(db.select_limited(&m, i64::MIN, i64::MAX, 100).is_ok());
    assert!(db.select_limited(&m, i64::MIN, i64::MAX, 99).is_err());
    assert!(db.select_limited(&h, i64::MIN, i64::MAX, 9).is_err());
}

#[test]
fn retention_drops_histograms_with_their_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(
        dir.path(),
        TsdbOptions {
            retention_time_ms: Some(250 * SEC),
            ..opts()
        },
    )
    .unwrap();
    fill(&db, 0, 600);
    db.maintain().unwrap();
    let got = everything(&db);
    let oldest = got
        .iter()
        .flat_map(|s| s.histograms.iter().map(|h| h.t))
        .min()
        .unwrap();
    assert!(oldest >= 200 * SEC, "oldest histogram at {oldest}");
    assert!(db.block_metas().iter().all(|m| m.min_time >= 200 * SEC));
    // What is left is what was written.
    assert_eq!(got, clip(expected(600), oldest, i64::MAX));
}

#[test]
fn a_damaged_histogram_chunk_is_reported_as_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        fill(&db, 0, 60);
        db.close().unwrap();
    }
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path().join("histograms"))
        .find(|p| p.exists())
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[40] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    let db = open(dir.path());
    let m = [LabelMatcher::equal("__name__", "lat")];
    match db.select(&m, i64::MIN, i64::MAX) {
        Err(StorageError::Corruption { location, reason }) => {
            assert!(location.ends_with("histograms"), "{location}");
            assert!(reason.contains("chunk at"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        db.select_lazy(&m, i64::MIN, i64::MAX),
        Err(StorageError::Corruption { .. })
    ));
    // Float-only series in the same block still read.
    assert_eq!(
        db.select(&[LabelMatcher::equal("__name__", "up")], i64::MIN, i64::MAX)
            .unwrap()[0]
            .samples
            .len(),
        60
    );
    drop(db);
    // A damaged index is caught on open: the block is moved aside.
    let n = bytes.len();
    bytes[n - 1] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    let db = open(dir.path());
    assert!(db.block_metas().is_empty());
    assert!(dir.path().join("corrupted").exists());
}

#[test]
fn a_torn_histogram_wal_record_is_dropped_on_replay() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        fill(&db, 0, 20);
        db.append_histograms(&[hseries("lat", "z", [100 * SEC], 0)])
            .unwrap();
    }
    // Cut the last record (the histogram of lat{job="z"}) short.
    let wal = dir.path().join("wal");
    let mut segs: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);
    let db = open(dir.path());
    assert_eq!(db.stats().wal_records_dropped_on_replay, 1);
    assert_reads(&db, 20);
    let z = db
        .select(&[LabelMatcher::equal("job", "z")], i64::MIN, i64::MAX)
        .unwrap();
    assert!(z.is_empty());
}
