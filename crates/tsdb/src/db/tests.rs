use super::*;
use meshlens_model::{
    LabelMatcher, Labels, MatchOp, MetricReader, MetricWriter, RawSeries, Sample, SeriesSamples,
    TimeSeries, STALE_NAN,
};

fn opts() -> TsdbOptions {
    TsdbOptions {
        block_duration_ms: 10_000,
        retention_time_ms: None,
        ..Default::default()
    }
}

fn ts(name: &str, job: &str, samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: Labels::from_pairs([("__name__", name), ("job", job)]),
        samples: samples.iter().map(|(t, v)| Sample::new(*t, *v)).collect(),
    }
}

fn all(db: &Tsdb, name: &str) -> Vec<SeriesSamples> {
    db.select(&[LabelMatcher::equal("__name__", name)], i64::MIN, i64::MAX)
        .unwrap()
}

#[test]
fn wal_replay_after_crash_without_close() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        db.append(&[
            ts("a", "x", &[(1, 1.0), (2, 2.0)]),
            ts("b", "y", &[(1, STALE_NAN)]),
        ])
        .unwrap();
        // Dropped without close, as after a crash.
    }
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let a = all(&db, "a");
    assert_eq!(a[0].samples, vec![Sample::new(1, 1.0), Sample::new(2, 2.0)]);
    assert!(meshlens_model::is_stale_nan(all(&db, "b")[0].samples[0].v));
}

#[test]
fn reads_span_head_and_blocks_and_survive_close() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        for i in 0..100 {
            db.append(&[ts("a", "x", &[(i * 1000, i as f64)])]).unwrap();
        }
        db.maintain().unwrap();
        assert!(db.stats().blocks >= 1, "{:?}", db.stats());
        let got = all(&db, "a");
        assert_eq!(got[0].samples.len(), 100);
        db.close().unwrap();
        assert!(matches!(
            db.append(&[ts("a", "x", &[(1_000_000, 1.0)])]),
            Err(StorageError::Closed)
        ));
    }
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let got = all(&db, "a");
    assert_eq!(got[0].samples.len(), 100);
    assert_eq!(got[0].samples[99], Sample::new(99_000, 99.0));
    let r = db
        .select(&[LabelMatcher::equal("__name__", "a")], 10_000, 19_999)
        .unwrap();
    assert_eq!(r[0].samples.len(), 10);
}

#[test]
fn out_of_order_window_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(
        dir.path(),
        TsdbOptions {
            out_of_order_window_ms: 5_000,
            ..opts()
        },
    )
    .unwrap();
    db.append(&[ts("a", "x", &[(10_000, 1.0)])]).unwrap();
    let o = db
        .append(&[ts(
            "a",
            "x",
            &[(6_000, 2.0), (1_000, 3.0), (10_000, 1.0), (10_000, 9.0)],
        )])
        .unwrap();
    assert_eq!(o.accepted, 2);
    assert_eq!(o.out_of_order, 1);
    assert_eq!(o.duplicate, 1);
    let got = all(&db, "a");
    assert_eq!(
        got[0].samples,
        vec![Sample::new(6_000, 2.0), Sample::new(10_000, 1.0)]
    );
    assert_eq!(db.stats().rejected_out_of_order, 1);
}

#[test]
fn invalid_labels_are_counted_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let bad = TimeSeries {
        labels: Labels::from_pairs([("__name__", "ok"), ("bad-name", "v")]),
        samples: vec![Sample::new(1, 1.0)],
    };
    let o = db.append(&[bad, ts("a", "x", &[(1, 1.0)])]).unwrap();
    assert_eq!((o.accepted, o.invalid_labels), (1, 1));
}

#[test]
fn matchers_labels_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    db.append(&[
        ts("a", "x", &[(1, 1.0)]),
        ts("a", "y", &[(1, 1.0)]),
        ts("b", "x", &[(50_000, 1.0)]),
    ])
    .unwrap();
    db.maintain().unwrap();
    let m = LabelMatcher::new(MatchOp::RegexMatch, "job", "x").unwrap();
    let got = db.select(&[m], i64::MIN, i64::MAX).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        db.label_values("job", &[], i64::MIN, i64::MAX).unwrap(),
        vec!["x", "y"]
    );
    assert_eq!(
        db.label_names(&[], i64::MIN, i64::MAX).unwrap(),
        vec!["__name__", "job"]
    );
    let only_a = [LabelMatcher::equal("__name__", "a")];
    assert_eq!(
        db.label_values("job", &only_a, i64::MIN, i64::MAX).unwrap(),
        vec!["x", "y"]
    );
    assert_eq!(db.series(&only_a, 0, 10).unwrap().len(), 2);
    assert!(db.series(&only_a, 100, 200).unwrap().is_empty());
}

#[test]
fn compaction_keeps_every_sample() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    for i in 0..400 {
        db.append(&[
            ts("a", "x", &[(i * 500, i as f64)]),
            ts("c", "z", &[(i * 500, (i * 3) as f64)]),
        ])
        .unwrap();
        if i % 40 == 0 {
            db.maintain().unwrap();
        }
    }
    db.maintain().unwrap();
    let stats = db.stats();
    assert!(stats.compactions >= 1, "{stats:?}");
    let got = all(&db, "a");
    assert_eq!(got[0].samples.len(), 400);
    assert!(got[0].samples.windows(2).all(|w| w[0].t < w[1].t));
    assert_eq!(all(&db, "c")[0].samples[399].v, 1197.0);
}

#[test]
fn retention_by_time_drops_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(
        dir.path(),
        TsdbOptions {
            retention_time_ms: Some(30_000),
            ..opts()
        },
    )
    .unwrap();
    for i in 0..200 {
        db.append(&[ts("a", "x", &[(i * 1000, 1.0)])]).unwrap();
    }
    db.maintain().unwrap();
    // Retention removes whole blocks whose newest sample is older than newest - 30 s.
    let cutoff = 199_000 - 30_000;
    assert!(
        db.block_metas().iter().all(|m| m.max_time >= cutoff),
        "{:?}",
        db.block_metas()
    );
    let got = all(&db, "a");
    assert!(got[0].samples[0].t > 0 && got[0].samples.len() < 200);
    let o = db.append(&[ts("a", "x", &[(1_000, 1.0)])]).unwrap();
    assert_eq!(o.out_of_bounds, 1);
}

#[test]
fn corrupt_block_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        db.append(&[ts("a", "x", &[(1, 1.0)])]).unwrap();
        db.close().unwrap();
    }
    let block = fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .find(|e| e.path().join("index").exists())
        .unwrap()
        .path();
    let index = block.join("index");
    let mut bytes = fs::read(&index).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&index, bytes).unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert!(all(&db, "a").is_empty());
    assert!(dir
        .path()
        .join("corrupted")
        .join(block.file_name().unwrap())
        .join("index")
        .exists());
}

#[test]
fn concurrent_appends_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Tsdb::open(dir.path(), opts()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    db.append(&[ts("a", &format!("w{w}"), &[(i, i as f64)])])
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(db);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let got = all(&db, "a");
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|s| s.samples.len() == 200));
}

#[test]
fn handles_append_and_survive_series_collection() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let labels = Labels::from_pairs([("__name__", "h"), ("job", "x")]);
    let h = db.series_handle(&labels).unwrap();
    let o = db
        .append_handles(&[(&h, Sample::new(1_000, 1.0)), (&h, Sample::new(2_000, 2.0))])
        .unwrap();
    assert_eq!(o.accepted, 2);
    // Another series moves time on, so the first series' data is cut into a block and the
    // now-empty series is collected from the head.
    db.append(&[ts("other", "y", &[(40_000, 1.0)])]).unwrap();
    db.maintain().unwrap();
    let o = db
        .append_handles(&[(&h, Sample::new(41_000, 3.0))])
        .unwrap();
    assert_eq!(o.accepted, 1);
    let got = all(&db, "h");
    assert_eq!(
        got[0].samples.iter().map(|s| s.v).collect::<Vec<_>>(),
        vec![1.0, 2.0, 3.0]
    );
    assert!(db
        .series_handle(&Labels::from_pairs([("bad-name", "x")]))
        .is_err());
}

#[test]
fn retention_by_size_drops_oldest_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(
        dir.path(),
        TsdbOptions {
            retention_size_bytes: Some(1),
            ..opts()
        },
    )
    .unwrap();
    for i in 0..200 {
        db.append(&[ts("a", "x", &[(i * 1000, i as f64 * 1.5)])])
            .unwrap();
    }
    db.maintain().unwrap();
    // A one-byte budget keeps no block; only what is still in the head remains.
    assert_eq!(db.stats().blocks, 0);
    let got = all(&db, "a");
    assert!(
        got[0].samples.len() < 200 && got[0].samples[0].t >= 180_000,
        "{:?}",
        got[0].samples.first()
    );
}

/// A mixed batch: sorted and unsorted pairs, a repeated name, an empty value, an invalid
/// name, duplicates and out-of-order samples, series new and already held.
type RawCase = (Vec<(&'static str, &'static str)>, Vec<Sample>);

fn raw_batch_cases() -> Vec<RawCase> {
    vec![
        (
            vec![("__name__", "r"), ("job", "a")],
            vec![Sample::new(1_000, 1.0), Sample::new(2_000, 2.5)],
        ),
        (
            vec![("job", "b"), ("__name__", "r")],
            vec![Sample::new(1_000, 3.0)],
        ),
        (
            vec![("__name__", "r"), ("job", "c"), ("job", "a"), ("zone", "")],
            vec![Sample::new(3_000, 4.0), Sample::new(3_000, 5.0)],
        ),
        (
            vec![("__name__", "r"), ("bad-name", "x")],
            vec![Sample::new(1, 1.0)],
        ),
        (
            vec![("__name__", "r"), ("job", "a")],
            vec![Sample::new(500, 9.0)],
        ),
        (vec![("__name__", "r"), ("job", "d")], vec![]),
    ]
}

#[test]
fn raw_appends_equal_owned_appends() {
    let (raw_dir, owned_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let raw_db = Tsdb::open(raw_dir.path(), opts()).unwrap();
    let owned_db = Tsdb::open(owned_dir.path(), opts()).unwrap();
    let cases = raw_batch_cases();
    // Twice: the first round creates the series, the second finds them from the pairs.
    for round in 0..2i64 {
        let shifted: Vec<Vec<Sample>> = cases
            .iter()
            .map(|(_, s)| {
                s.iter()
                    .map(|x| Sample::new(x.t + round * 10_000, x.v))
                    .collect()
            })
            .collect();
        let raw: Vec<RawSeries> = cases
            .iter()
            .zip(&shifted)
            .map(|((l, _), s)| RawSeries {
                labels: l,
                samples: s,
            })
            .collect();
        let owned: Vec<TimeSeries> = raw.iter().map(RawSeries::to_time_series).collect();
        let a = raw_db.append_raw(&raw).unwrap();
        let b = owned_db.append(&owned).unwrap();
        assert_eq!(a, b, "round {round}");
        assert!(a.accepted > 0 && a.rejected() > 0 && a.invalid_labels == 1);
        assert_eq!(a.series_created, if round == 0 { 2 } else { 0 });
    }
    assert_eq!(all(&raw_db, "r"), all(&owned_db, "r"));
    assert!(raw_db.contains_raw(&RawSeries {
        labels: &[("job", "b"), ("__name__", "r")],
        samples: &[],
    }));
    assert!(!raw_db.contains_raw(&RawSeries {
        labels: &[("__name__", "r"), ("job", "d")],
        samples: &[],
    }));
    // And the WAL replays to the same head after a crash.
    let want = all(&raw_db, "r");
    drop(raw_db);
    let reopened = Tsdb::open(raw_dir.path(), opts()).unwrap();
    assert_eq!(all(&reopened, "r"), want);
}

#[test]
fn replay_equals_appended_with_every_value_kind() {
    let dir = tempfile::tempdir().unwrap();
    let values = [
        0.0,
        -0.0,
        42.0,
        1.25,
        1e300,
        f64::NAN,
        f64::INFINITY,
        STALE_NAN,
        0.1 + 0.2,
    ];
    let want: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        for (i, v) in values.iter().enumerate() {
            db.append(&[ts("v", "x", &[(i as i64 * 1000, *v)])])
                .unwrap();
        }
    }
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let got: Vec<u64> = all(&db, "v")[0]
        .samples
        .iter()
        .map(|s| s.v.to_bits())
        .collect();
    assert_eq!(got, want);
}

mod exemplar_store {
    use super::*;
    use meshlens_model::{Exemplar, ExemplarReader, SeriesExemplars};

    fn batch(name: &str, from: i64, n: i64) -> Vec<SeriesExemplars> {
        vec![SeriesExemplars {
            series: Labels::from_pairs([("__name__", name)]),
            exemplars: (from..from + n)
                .map(|t| Exemplar {
                    labels: Labels::from_pairs([("trace_id", format!("{t:x}"))]),
                    value: t as f64 / 4.0,
                    t,
                })
                .collect(),
        }]
    }

    fn stored(db: &Tsdb) -> Vec<SeriesExemplars> {
        db.select_exemplars(&[vec![]], i64::MIN, i64::MAX).unwrap()
    }

    #[test]
    fn exemplars_replay_from_the_wal_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let want = {
            let db = Tsdb::open(dir.path(), opts()).unwrap();
            let out = db.append_exemplars(&batch("a", 100, 3)).unwrap();
            assert_eq!(out.accepted, 3);
            db.append_exemplars(&batch("b", 50, 1)).unwrap();
            stored(&db)
            // Dropped without close, as after a crash.
        };
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        assert_eq!(stored(&db), want);
        assert_eq!(db.exemplar_stats().exemplars_in_storage, 4);
        // The replayed newest exemplar (t=102) still decides order and duplicates.
        let again = db.append_exemplars(&batch("a", 101, 3)).unwrap();
        assert_eq!(
            (again.out_of_order, again.duplicate, again.accepted),
            (1, 1, 1)
        );
    }

    #[test]
    fn exemplars_survive_checkpoints_and_close() {
        let dir = tempfile::tempdir().unwrap();
        let want = {
            let db = Tsdb::open(dir.path(), opts()).unwrap();
            db.append(&[ts("a", "x", &[(1, 1.0), (50_000, 2.0)])])
                .unwrap();
            db.append_exemplars(&batch("a", 1, 5)).unwrap();
            // Cuts a block and checkpoints the WAL.
            db.maintain().unwrap();
            db.close().unwrap();
            stored(&db)
        };
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        assert_eq!(stored(&db), want);
        assert_eq!(want[0].exemplars.len(), 5);
    }

    #[test]
    fn a_smaller_ring_on_restart_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Tsdb::open(dir.path(), opts()).unwrap();
            db.append_exemplars(&batch("a", 1, 10)).unwrap();
        }
        let small = TsdbOptions {
            max_exemplars: 3,
            ..opts()
        };
        let db = Tsdb::open(dir.path(), small).unwrap();
        let got = stored(&db);
        let ts: Vec<i64> = got[0].exemplars.iter().map(|e| e.t).collect();
        assert_eq!(ts, vec![8, 9, 10]);
    }

    #[test]
    fn disabled_store_counts_and_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Tsdb::open(
            dir.path(),
            TsdbOptions {
                max_exemplars: 0,
                ..opts()
            },
        )
        .unwrap();
        let out = db.append_exemplars(&batch("a", 1, 2)).unwrap();
        assert_eq!((out.accepted, out.disabled), (0, 2));
        assert!(stored(&db).is_empty());
    }
}
