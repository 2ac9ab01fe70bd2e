//! Every call Grafana's Prometheus data source makes, against the router over a real TSDB,
//! plus the bad-input answers (status codes and error envelopes).

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{call, open_tsdb};
use http_body_util::BodyExt;
use meshlens_model::{Labels, MetricWriter, Sample, TimeSeries};
use meshlens_prom_api::{router, PromApiState};
use meshlens_promql::{Engine, EngineOptions};
use tower::ServiceExt;

const T0: i64 = 1_700_000_000_000;

struct Fixture {
    app: axum::Router,
    _dir: tempfile::TempDir,
}

fn fixture(opts: EngineOptions) -> Fixture {
    let (dir, db) = open_tsdb();
    let mut batch = Vec::new();
    for (job, inst) in [("api", "a:1"), ("api", "b:1"), ("db", "c:1")] {
        for name in ["up", "http_requests_total"] {
            batch.push(TimeSeries {
                labels: Labels::from_pairs([("__name__", name), ("job", job), ("instance", inst)]),
                samples: (0..40)
                    .map(|i| {
                        Sample::new(
                            T0 + i * 15_000,
                            if name == "up" { 1.0 } else { (i * 10) as f64 },
                        )
                    })
                    .collect(),
            });
        }
    }
    batch.push(TimeSeries {
        labels: Labels::from_pairs([("__name__", "odd_labels"), ("service_name", "checkout")]),
        samples: vec![Sample::new(T0, 1.0)],
    });
    db.append(&batch).unwrap();
    db.append_metadata(&[meshlens_model::MetricMetadata {
        metric_family: "up".into(),
        kind: "gauge".into(),
        help: "Target up.".into(),
        unit: String::new(),
    }])
    .unwrap();
    let app = router(PromApiState {
        storage: db,
        engine: Arc::new(Engine::new(opts)),
        config_yaml: "global: {}\n".into(),
        flags: [("listen".to_string(), "127.0.0.1:9090".to_string())]
            .into_iter()
            .collect(),
        start_time: std::time::SystemTime::now(),
        storage_retention: "15d".into(),
        config_status: Default::default(),
        status: None,
        exemplars: None,
    });
    Fixture { app, _dir: dir }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post(uri: &str, form: &str) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .unwrap()
}

const START: &str = "1700000000";
const END: &str = "1700000600";

#[tokio::test]
async fn save_and_test_probe_get_and_post() {
    let f = fixture(EngineOptions::default());
    for req in [
        get("/api/v1/query?query=1%2B1&time=4"),
        post("/api/v1/query", "query=1%2B1&time=4"),
    ] {
        let (s, v) = call(&f.app, req).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["data"]["resultType"], "scalar");
        assert_eq!(v["data"]["result"], serde_json::json!([4.0, "2"]));
    }
}

#[tokio::test]
async fn buildinfo_has_no_features_field() {
    let f = fixture(EngineOptions::default());
    let (s, v) = call(&f.app, get("/api/v1/status/buildinfo")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["data"]["version"].is_string());
    assert!(v["data"].get("features").is_none());
}

#[tokio::test]
async fn instant_and_range_queries_get_and_form_post() {
    let f = fixture(EngineOptions::default());
    let (s, v) = call(
        &f.app,
        get(&format!(
            "/api/v1/query?query=sum%20by%20(job)%20(up)&time={END}"
        )),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 2);
    let q = format!("query=rate(http_requests_total%5B1m%5D)&start={START}&end={END}&step=60");
    for req in [
        get(&format!("/api/v1/query_range?{q}")),
        post("/api/v1/query_range", &q),
    ] {
        let (s, v) = call(&f.app, req).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["data"]["resultType"], "matrix");
        let series = v["data"]["result"].as_array().unwrap();
        assert_eq!(series.len(), 3);
        let first = &series[0]["values"][1];
        assert_eq!(first[1], "0.6666666666666666", "{first}");
    }
}

#[tokio::test]
async fn labels_and_label_values_with_match_and_limit() {
    let f = fixture(EngineOptions::default());
    let (_, v) = call(
        &f.app,
        get(&format!("/api/v1/labels?start={START}&end={END}")),
    )
    .await;
    assert_eq!(
        v["data"],
        serde_json::json!(["__name__", "instance", "job", "service_name"])
    );
    let (_, v) = call(
        &f.app,
        post(
            "/api/v1/labels",
            &format!("match%5B%5D=up&start={START}&end={END}"),
        ),
    )
    .await;
    assert_eq!(
        v["data"],
        serde_json::json!(["__name__", "instance", "job"])
    );
    let (_, v) = call(&f.app, get("/api/v1/labels?limit=2")).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["warnings"][0], "results truncated due to limit");
    let (_, v) = call(
        &f.app,
        get(&format!("/api/v1/label/job/values?start={START}&end={END}")),
    )
    .await;
    assert_eq!(v["data"], serde_json::json!(["api", "db"]));
    let (_, v) = call(
        &f.app,
        get("/api/v1/label/instance/values?match%5B%5D=up%7Bjob%3D%22db%22%7D"),
    )
    .await;
    assert_eq!(v["data"], serde_json::json!(["c:1"]));
    let (_, v) = call(&f.app, get("/api/v1/label/__name__/values?limit=1")).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    // A Prometheus 3 escaped name: U__ then `_` written as `__`.
    let (s, v) = call(&f.app, get("/api/v1/label/U__service__name/values")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"], serde_json::json!(["checkout"]));
}

#[tokio::test]
async fn series_get_post_and_limit() {
    let f = fixture(EngineOptions::default());
    let (s, v) = call(
        &f.app,
        get(&format!(
            "/api/v1/series?match%5B%5D=up&start={START}&end={END}"
        )),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    assert_eq!(v["data"][0]["__name__"], "up");
    let (_, v) = call(
        &f.app,
        post(
            "/api/v1/series",
            "match%5B%5D=up&match%5B%5D=odd_labels&limit=2",
        ),
    )
    .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let (s, v) = call(&f.app, get("/api/v1/series")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["errorType"], "bad_data");
}

#[tokio::test]
async fn metadata_exemplars_format_status() {
    let f = fixture(EngineOptions::default());
    let (_, v) = call(&f.app, get("/api/v1/metadata")).await;
    assert_eq!(v["data"]["up"][0]["type"], "gauge");
    let (_, v) = call(&f.app, get("/api/v1/metadata?metric=up")).await;
    assert_eq!(v["data"]["up"][0]["help"], "Target up.");
    let (s, v) = call(
        &f.app,
        post(
            "/api/v1/query_exemplars",
            &format!("query=up&start={START}&end={END}"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"], serde_json::json!([]));
    let (_, v) = call(&f.app, get("/api/v1/format_query?query=sum(up)by(job)")).await;
    assert_eq!(v["data"], "sum by (job) (up)");
    for path in [
        "/api/v1/status/runtimeinfo",
        "/api/v1/status/flags",
        "/api/v1/status/config",
        "/api/v1/rules",
        "/api/v1/alerts",
    ] {
        let (s, v) = call(&f.app, get(path)).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        assert_eq!(v["status"], "success", "{path}");
    }
    let (_, v) = call(&f.app, get("/api/v1/rules")).await;
    assert_eq!(v["data"]["groups"], serde_json::json!([]));
}

#[tokio::test]
async fn bad_queries_get_prometheus_errors() {
    let f = fixture(EngineOptions::default());
    let (s, v) = call(&f.app, get("/api/v1/query?query=sum(up")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["errorType"], "bad_data");
    assert!(
        v["error"].as_str().unwrap().contains("1:"),
        "error names a position: {v}"
    );
    let (s, v) = call(&f.app, get("/api/v1/query?query=up&time=yesterday")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"time\""),
        "{v}"
    );
    let (s, _) = call(
        &f.app,
        get(&format!(
            "/api/v1/query_range?query=up&start={START}&end={END}&step=0"
        )),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let small = fixture(EngineOptions {
        max_samples: 10,
        ..Default::default()
    });
    let (s, v) = call(
        &small.app,
        get(&format!("/api/v1/query?query=up%5B10m%5D&time={END}")),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["errorType"], "execution");

    let slow = fixture(EngineOptions {
        timeout: Duration::ZERO,
        ..Default::default()
    });
    let (s, v) = call(
        &slow.app,
        get(&format!("/api/v1/query?query=up&time={END}")),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["errorType"], "timeout");
}

#[tokio::test]
async fn federate_serves_latest_samples() {
    let f = fixture(EngineOptions::default());
    let resp = f
        .app
        .clone()
        .oneshot(get("/federate?match%5B%5D=up"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    // The fixture's samples are in 2023, far outside the lookback from now: nothing to federate.
    assert!(!body.contains("up{"), "{body}");
}

#[tokio::test]
async fn annotations_sit_beside_data() {
    let f = fixture(EngineOptions::default());
    let (s, v) = call(
        &f.app,
        get(&format!("/api/v1/query?query=rate(up%5B5m%5D)&time={END}")),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let info = v["infos"][0].as_str().unwrap_or_default();
    assert!(
        info.starts_with("PromQL info: metric might not be a counter"),
        "{v}"
    );
    let (_, v) = call(
        &f.app,
        get(&format!("/api/v1/query?query=quantile(2,%20up)&time={END}")),
    )
    .await;
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("quantile value should be between 0 and 1"),
        "{v}"
    );
    let (_, v) = call(&f.app, get(&format!("/api/v1/query?query=up&time={END}"))).await;
    assert!(
        v.get("warnings").is_none() && v.get("infos").is_none(),
        "{v}"
    );
}

/// Query answers are written without axum's `Json`, so the content type is set by hand.
#[tokio::test]
async fn query_answers_are_labelled_json() {
    let f = fixture(EngineOptions::default());
    for uri in [
        format!("/api/v1/query?query=up&time={END}"),
        format!("/api/v1/query_range?query=up&start={START}&end={END}&step=60"),
    ] {
        let resp = f.app.clone().oneshot(get(&uri)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers().get("content-type").unwrap(),
            "application/json",
            "{uri}"
        );
    }
}
