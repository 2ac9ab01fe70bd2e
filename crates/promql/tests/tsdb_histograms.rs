//! PromQL over native histograms stored in the embedded TSDB: the engine reads them through
//! `select_lazy` (head, WAL replay and blocks alike). The histogram model's math is a stub
//! on this branch (addition adds count and sum), so only count- and sum-level results are
//! checked.

use std::sync::Arc;

use meshlens_model::{
    FloatHistogram, HistogramSample, Labels, MetricWriter, Sample, SeriesHistograms, TimeSeries,
};
use meshlens_promql::{Engine, EngineOptions, Value};
use meshlens_tsdb::{FsyncPolicy, Tsdb, TsdbOptions};

const SEC: i64 = 1000;

fn h(count: f64, sum: f64) -> Arc<FloatHistogram> {
    Arc::new(FloatHistogram {
        schema: 0,
        count,
        sum,
        zero_count: count,
        ..Default::default()
    })
}

fn opts() -> TsdbOptions {
    TsdbOptions {
        block_duration_ms: 3600 * SEC,
        retention_time_ms: None,
        wal_fsync: FsyncPolicy::EveryAppend,
        ..Default::default()
    }
}

fn fill(db: &Tsdb) {
    let series = |job: &str, scale: f64| SeriesHistograms {
        labels: Labels::from_pairs([("__name__", "x"), ("job", job)]),
        samples: (0..10)
            .map(|k| HistogramSample {
                t: k * 15 * SEC,
                h: h(scale * (k + 1) as f64, scale * k as f64 * 0.5),
            })
            .collect(),
    };
    let out = db
        .append_histograms(&[series("a", 1.0), series("b", 10.0)])
        .unwrap();
    assert_eq!(out.accepted, 20);
    // A float series beside them, under another name.
    db.append(&[TimeSeries {
        labels: Labels::from_pairs([("__name__", "y"), ("job", "a")]),
        samples: (0..10).map(|k| Sample::new(k * 15 * SEC, 1.0)).collect(),
    }])
    .unwrap();
}

/// `(job, value)` of an instant query's float vector, sorted.
fn floats(engine: &Engine, db: &Tsdb, q: &str, t: i64) -> Vec<(String, f64)> {
    let r = engine
        .instant_query(db, q, t)
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    let Value::Vector(v) = r.value else {
        panic!("{q}: not a vector: {:?}", r.value)
    };
    let mut out: Vec<(String, f64)> = v
        .iter()
        .map(|s| {
            assert!(s.h.is_none(), "{q}: a histogram");
            (s.labels.get("job").unwrap_or("").to_string(), s.v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn check(db: &Tsdb) {
    let engine = Engine::new(EngineOptions {
        disable_cache: true,
        ..Default::default()
    });
    // At 60 s the newest samples are the fifth (k = 4): counts 5 and 50, sums 2 and 20.
    let t = 60 * SEC;
    assert_eq!(
        floats(&engine, db, "histogram_count(x)", t),
        vec![("a".to_string(), 5.0), ("b".to_string(), 50.0)]
    );
    assert_eq!(
        floats(&engine, db, "histogram_sum(x)", t),
        vec![("a".to_string(), 2.0), ("b".to_string(), 20.0)]
    );
    assert_eq!(
        floats(&engine, db, "histogram_count(sum(x))", t),
        vec![(String::new(), 55.0)]
    );
    let r = engine.instant_query(db, "sum(x)", t).unwrap();
    let Value::Vector(v) = r.value else {
        panic!("sum(x): {:?}", r.value)
    };
    assert_eq!(v.len(), 1);
    let sum = v[0].h.as_ref().expect("sum(x) is a histogram");
    assert_eq!((sum.count, sum.sum), (55.0, 22.0));
    // Floats beside the histograms are unaffected.
    assert_eq!(floats(&engine, db, "sum(y)", t), vec![(String::new(), 1.0)]);
    // A range query sees every step's histograms.
    let r = engine
        .range_query(db, "histogram_count(x{job=\"a\"})", 0, 135 * SEC, 15 * SEC)
        .unwrap();
    let Value::Matrix(m) = r.value else {
        panic!("not a matrix")
    };
    let counts: Vec<f64> = m[0].samples.iter().map(|s| s.v).collect();
    assert_eq!(counts, (1..=10).map(f64::from).collect::<Vec<_>>());
}

#[test]
fn promql_reads_tsdb_histograms_from_head_wal_and_blocks() {
    // No tempfile crate here: a directory of our own under the system's temp dir.
    let path = std::env::temp_dir().join(format!(
        "meshlens-promql-tsdb-hist-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = Remove(path);
    {
        let db = Tsdb::open(dir.0.as_path(), opts()).unwrap();
        fill(&db);
        check(&db);
        // Dropped without close: a crash.
    }
    {
        let db = Tsdb::open(dir.0.as_path(), opts()).unwrap();
        check(&db);
        db.close().unwrap();
    }
    let db = Tsdb::open(dir.0.as_path(), opts()).unwrap();
    assert!(!db.block_metas().is_empty());
    check(&db);
}
