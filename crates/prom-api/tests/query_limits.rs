//! Query limits through the HTTP API over a real TSDB: samples while reading (422),
//! oversized and too-deep queries (400), and queries queued past `max_concurrency` (503).

mod common;
#[path = "../../promql/tests/support/held.rs"]
mod held;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{call, open_tsdb};
use held::Held;
use meshlens_model::{Labels, MetricWriter, Sample, TimeSeries};
use meshlens_prom_api::{router, PromApiState};
use meshlens_promql::{Engine, EngineOptions, MAX_QUERY_BYTES};
use meshlens_tsdb::Tsdb;

const T0: i64 = 1_700_000_000_000;
const SERIES: usize = 300;
const PER_SERIES: i64 = 1_200;
/// Seconds, at the newest sample.
const AT: &str = "1700001199";

struct Fixture {
    app: axum::Router,
    db: Arc<Tsdb>,
    engine: Arc<Engine>,
    _dir: tempfile::TempDir,
}

fn fixture(opts: EngineOptions) -> Fixture {
    let (dir, db) = open_tsdb();
    let batch: Vec<TimeSeries> = (0..SERIES)
        .map(|i| TimeSeries {
            labels: Labels::from_pairs([("__name__", "load"), ("i", &i.to_string())]),
            samples: (0..PER_SERIES)
                .map(|k| Sample::new(T0 + k * 1000, (k % 5) as f64))
                .collect(),
        })
        .collect();
    db.append(&batch).unwrap();
    let engine = Arc::new(Engine::new(opts));
    let app = router(PromApiState {
        storage: db.clone(),
        engine: engine.clone(),
        config_yaml: String::new(),
        flags: Default::default(),
        start_time: std::time::SystemTime::now(),
        storage_retention: "15d".into(),
        config_status: Default::default(),
        status: None,
        exemplars: None,
    });
    Fixture {
        app,
        db,
        engine,
        _dir: dir,
    }
}

fn post_query(form: String) -> Request<Body> {
    Request::post("/api/v1/query")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap()
}

fn enc(q: &str) -> String {
    form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

#[tokio::test]
async fn max_samples_is_enforced_while_reading() {
    let f = fixture(EngineOptions {
        max_samples: 2_000,
        ..Default::default()
    });
    // 300 series x 1,200 samples match; the TSDB stops once 2,000 are read.
    let (s, v) = call(
        &f.app,
        post_query(format!(
            "query={}&time={AT}",
            enc("count_over_time(load[30m])")
        )),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["errorType"], "execution");
    assert!(v["error"].as_str().unwrap().contains("2000"), "{v}");

    // One series fits.
    let (s, v) = call(
        &f.app,
        post_query(format!(
            "query={}&time={AT}",
            enc("count_over_time(load{i=\"7\"}[30m])")
        )),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["result"][0]["value"][1], "1200");
}

#[tokio::test]
async fn oversized_and_too_deep_queries_are_bad_data() {
    let f = fixture(EngineOptions::default());
    let huge = "(".repeat(1 << 20);
    let (s, v) = call(
        &f.app,
        post_query(format!("query={}&time={AT}", enc(&huge))),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errorType"], "bad_data");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains(&MAX_QUERY_BYTES.to_string()));

    let deep = format!("{}load{}", "abs(".repeat(5_000), ")".repeat(5_000));
    for path in [
        "/api/v1/query",
        "/api/v1/query_range",
        "/api/v1/format_query",
    ] {
        let req = Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "query={}&time={AT}&start={AT}&end={AT}&step=15",
                enc(&deep)
            )))
            .unwrap();
        let (s, v) = call(&f.app, req).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["errorType"], "bad_data");
        assert!(
            v["error"].as_str().unwrap().contains("nests deeper"),
            "{path}: {v}"
        );
    }
}

#[tokio::test]
async fn a_query_queued_past_max_concurrency_times_out_with_503() {
    let f = fixture(EngineOptions {
        max_concurrency: 1,
        ..Default::default()
    });
    let (held, entered, release) = Held::new(f.db.clone());
    // Another user of the same engine (a rule, the graph) takes the only slot.
    let engine = f.engine.clone();
    let other = std::thread::spawn(move || {
        engine
            .instant_query(&held, "load", T0 + 1_199_000)
            .map(|r| r.value)
    });
    entered
        .recv_timeout(Duration::from_secs(60))
        .expect("the other query holds the slot");

    let (s, v) = call(
        &f.app,
        post_query(format!("query=load&time={AT}&timeout=100ms")),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["errorType"], "timeout");
    assert!(v["error"].as_str().unwrap().contains("queue"), "{v}");

    release.send(()).unwrap();
    other.join().unwrap().expect("the other query finishes");
    let (s, v) = call(
        &f.app,
        post_query(format!("query=load&time={AT}&timeout=100ms")),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}
