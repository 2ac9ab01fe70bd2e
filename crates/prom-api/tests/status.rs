//! The status endpoints report live figures: the build's own version and revision, this
//! process's threads, the config load, and the head cardinality of a real TSDB as it grows.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{call, open_tsdb};
use meshlens_model::{HeadCardinality, Labels, MetricWriter, Sample, TimeSeries};
use meshlens_prom_api::{router, ConfigStatus, PromApiState, StatusSource};
use meshlens_promql::{Engine, EngineOptions};
use meshlens_tsdb::Tsdb;
use serde_json::Value;

/// The TSDB's own figures, as the server hands them over.
struct FromTsdb(Arc<Tsdb>);

impl StatusSource for FromTsdb {
    fn corruption_count(&self) -> u64 {
        self.0.corruption_count()
    }

    fn tsdb_status(&self, limit: usize) -> Option<HeadCardinality> {
        Some(self.0.head_cardinality(limit))
    }
}

fn app(db: &Arc<Tsdb>, with_status: bool, config: ConfigStatus) -> axum::Router {
    router(PromApiState {
        storage: db.clone(),
        engine: Arc::new(Engine::new(EngineOptions::default())),
        config_yaml: String::new(),
        flags: Default::default(),
        start_time: SystemTime::now(),
        storage_retention: "15d".into(),
        config_status: Arc::new(std::sync::RwLock::new(config)),
        status: with_status.then(|| Arc::new(FromTsdb(db.clone())) as Arc<dyn StatusSource>),
        exemplars: None,
    })
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    call(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

fn series(name: &str, job: &str, t: i64) -> TimeSeries {
    TimeSeries {
        labels: Labels::from_pairs([("__name__", name), ("job", job)]),
        samples: vec![Sample::new(t, 1.0)],
    }
}

#[tokio::test]
async fn buildinfo_is_this_build() {
    let (_dir, db) = open_tsdb();
    let (s, v) = get(
        &app(&db, true, ConfigStatus::default()),
        "/api/v1/status/buildinfo",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let d = &v["data"];
    assert_eq!(d["version"], env!("CARGO_PKG_VERSION"));
    let rev = d["revision"].as_str().unwrap();
    assert!(
        rev == "unknown" || (rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())),
        "{rev}"
    );
    // YYYYMMDD-HH:MM:SS
    let date = d["buildDate"].as_str().unwrap();
    assert_eq!(date.len(), 17, "{date}");
    assert!(date.starts_with("20"), "{date}");
    assert!(!d["branch"].as_str().unwrap().is_empty());
    assert!(d["goVersion"].as_str().unwrap().contains("rustc"), "{d}");
}

#[tokio::test]
async fn runtimeinfo_reports_this_process_and_the_config_load() {
    let (_dir, db) = open_tsdb();
    let loaded = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let config = ConfigStatus {
        success: false,
        last_load: loaded,
    };
    let (s, v) = get(&app(&db, true, config), "/api/v1/status/runtimeinfo").await;
    assert_eq!(s, StatusCode::OK);
    let d = &v["data"];
    assert_eq!(d["reloadConfigSuccess"], false);
    assert_eq!(d["lastConfigTime"], "2023-11-14T22:13:20.123Z");
    assert!(d["goroutineCount"].as_u64().unwrap() >= 1, "{d}");
    assert!(d["GOMAXPROCS"].as_u64().unwrap() >= 1);
    assert_eq!(d["corruptionCount"], 0);
    assert_eq!(d["storageRetention"], "15d");
    assert_eq!(
        d["CWD"],
        std::env::current_dir().unwrap().display().to_string()
    );
}

#[tokio::test]
async fn tsdb_status_follows_the_head() {
    let (_dir, db) = open_tsdb();
    let app = app(&db, true, ConfigStatus::default());
    let (s, v) = get(&app, "/api/v1/status/tsdb").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["headStats"]["numSeries"], 0);
    assert_eq!(v["data"]["seriesCountByMetricName"], serde_json::json!([]));

    let t0 = 1_700_000_000_000;
    let mut batch: Vec<TimeSeries> = (0..12)
        .map(|i| series("http_requests_total", &format!("job{i:02}"), t0))
        .collect();
    batch.push(series("up", "job00", t0 + 5000));
    db.append(&batch).unwrap();

    let (_, v) = get(&app, "/api/v1/status/tsdb").await;
    let d = &v["data"];
    assert_eq!(d["headStats"]["numSeries"], 13);
    // 2 metric names + 12 jobs.
    assert_eq!(d["headStats"]["numLabelPairs"], 14);
    assert_eq!(d["headStats"]["chunkCount"], 13);
    assert_eq!(d["headStats"]["minTime"], t0);
    assert_eq!(d["headStats"]["maxTime"], t0 + 5000);
    assert_eq!(
        d["seriesCountByMetricName"][0],
        serde_json::json!({"name": "http_requests_total", "value": 12})
    );
    assert_eq!(
        d["labelValueCountByLabelName"][0],
        serde_json::json!({"name": "job", "value": 12})
    );
    // "job00" has two series: 5 bytes x 2; the other 11 jobs 5 bytes x 1.
    assert_eq!(
        d["memoryInBytesByLabelName"][0],
        serde_json::json!({"name": "__name__", "value": 19 * 12 + 2})
    );
    assert_eq!(
        d["seriesCountByLabelValuePair"][0],
        serde_json::json!({"name": "__name__=http_requests_total", "value": 12})
    );
    assert_eq!(
        d["seriesCountByLabelValuePair"].as_array().unwrap().len(),
        10
    );

    let (_, v) = get(&app, "/api/v1/status/tsdb?limit=2").await;
    assert_eq!(
        v["data"]["seriesCountByLabelValuePair"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    for bad in ["0", "-1", "ten"] {
        let (s, v) = get(&app, &format!("/api/v1/status/tsdb?limit={bad}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(v["errorType"], "bad_data");
        assert!(v["error"].as_str().unwrap().contains("limit"), "{v}");
    }
}

#[tokio::test]
async fn tsdb_status_without_a_head_is_unavailable() {
    let (_dir, db) = open_tsdb();
    let (s, v) = get(
        &app(&db, false, ConfigStatus::default()),
        "/api/v1/status/tsdb",
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["status"], "error");
}
