//! `meshlens server --storage clickhouse://…` on a real 2-shard ClickHouse 18.16 cluster:
//! remote-written samples are queried back through PromQL and the label API, from a second
//! server with an empty data directory too (the data is in ClickHouse, not on local disk);
//! Zipkin spans posted to it are answered by trace id, search, services and dependencies, from
//! that second server too, and are rows in the cluster's span table; an unreachable ClickHouse
//! stops the start, and fails an import, with its address named. Native histograms (OTLP
//! exponential histograms) are stored in the cluster and answered by the histogram functions.

mod common;

use std::process::{Command, Stdio};

use common::{httpc, now_ms, Server};
use meshlens_clickhouse::testing::TestCluster;
use meshlens_model::{Labels, Sample, TimeSeries};

fn series(job: &str, i: usize, t0: i64) -> TimeSeries {
    TimeSeries {
        labels: Labels::from_pairs([
            ("__name__", "ch_requests_total"),
            ("job", job),
            ("instance", &format!("10.0.0.{i}:80")),
        ]),
        samples: (0..4)
            .map(|k| Sample::new(t0 + k * 15_000, (i * 10) as f64 + k as f64))
            .collect(),
    }
}

const TRACES: u64 = 6;

fn trace_id(t: u64) -> String {
    format!("{:016x}", 0xc1c1_0000_0000_0000u64 + t * 0x0101)
}

/// `TRACES` traces, each a `frontend` client span calling `backend` and the server span
/// answering it, timestamped a minute ago (microseconds).
fn zipkin_spans(t0_us: i64) -> String {
    let mut spans = Vec::new();
    for t in 0..TRACES {
        let ts = t0_us + t as i64 * 1_000;
        spans.push(serde_json::json!({
            "traceId": trace_id(t), "id": format!("{:016x}", 0x100 + t), "kind": "CLIENT",
            "name": "get /items", "timestamp": ts, "duration": 900,
            "localEndpoint": {"serviceName": "frontend"},
            "remoteEndpoint": {"serviceName": "backend"},
            "tags": {"http.path": "/items", "http.status_code": "200"},
        }));
        spans.push(serde_json::json!({
            "traceId": trace_id(t), "id": format!("{:016x}", 0x200 + t),
            "parentId": format!("{:016x}", 0x100 + t), "kind": "SERVER",
            "name": "get /items", "timestamp": ts + 100, "duration": 700,
            "localEndpoint": {"serviceName": "backend"},
        }));
    }
    serde_json::Value::Array(spans).to_string()
}

/// The posted spans, through the Zipkin read API: every trace by id, search by service, the
/// service names and the frontend -> backend link. Polls: the cluster's inserts may land a
/// moment after they are acknowledged.
fn check_spans(server: &Server) {
    let end = now_ms();
    common::poll(std::time::Duration::from_secs(30), || {
        let v = common::get_json(&server.url(&format!(
            "/api/v2/traces?serviceName=backend&endTs={end}&lookback=3600000&limit=100"
        )));
        (v.as_array().map(Vec::len) == Some(TRACES as usize)).then_some(())
    });
    let v = common::get_json(&server.url(&format!(
        "/api/v2/traces?serviceName=backend&endTs={end}&lookback=3600000&limit=100"
    )));
    for trace in v.as_array().unwrap() {
        assert_eq!(trace.as_array().unwrap().len(), 2, "{trace}");
    }
    for t in 0..TRACES {
        let v = common::get_json(&server.url(&format!("/api/v2/trace/{}", trace_id(t))));
        let spans = v.as_array().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(spans.len(), 2, "{v}");
        let mut services: Vec<&str> = spans
            .iter()
            .map(|s| s["localEndpoint"]["serviceName"].as_str().unwrap())
            .collect();
        services.sort();
        assert_eq!(services, ["backend", "frontend"], "{v}");
    }
    let v = common::get_json(&server.url("/api/v2/services"));
    assert_eq!(v, serde_json::json!(["backend", "frontend"]));
    let v = common::get_json(&server.url(&format!(
        "/api/v2/dependencies?endTs={end}&lookback=3600000"
    )));
    let links = v.as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(links.len(), 1, "{v}");
    assert_eq!(links[0]["parent"], "frontend", "{v}");
    assert_eq!(links[0]["child"], "backend", "{v}");
    assert_eq!(links[0]["callCount"], TRACES, "{v}");
}

fn scalar(v: &serde_json::Value) -> f64 {
    assert_eq!(v["status"], "success", "{v}");
    let r = &v["data"]["result"];
    r[0]["value"][1]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_round_trip_through_clickhouse_and_survive_the_server() {
    let cluster = match TestCluster::start() {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => panic!("the ClickHouse test cluster did not start: {e}"),
    };
    let storage = cluster.storage_url(0, "server_e2e");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--storage", &storage]);
    let t0 = now_ms() - 60_000;
    let batch: Vec<TimeSeries> = (0..12)
        .map(|i| series(["api", "db", "web"][i % 3], i, t0))
        .collect();
    let mut conn = httpc::Conn::open(&server.addr).unwrap();
    let r = server.remote_write(&mut conn, batch).unwrap();
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let at = (t0 + 45_000) as f64 / 1000.0;
    // The last samples: i * 10 + 3 for i in 0..12.
    let want: f64 = (0..12).map(|i| (i * 10 + 3) as f64).sum();
    // Acknowledged once in the server's write buffer; in ClickHouse a moment later.
    common::poll(std::time::Duration::from_secs(30), || {
        let v = server.query("sum(ch_requests_total)", Some(at));
        (v["data"]["result"][0]["value"][1].as_str() == Some(&want.to_string())).then_some(())
    });
    assert_eq!(
        scalar(&server.query("sum(ch_requests_total)", Some(at))),
        want
    );
    let api_db: f64 = (0..12)
        .filter(|i| i % 3 != 2)
        .map(|i| (i * 10 + 3) as f64)
        .sum();
    assert_eq!(
        scalar(&server.query(r#"sum(ch_requests_total{job=~"api|db"})"#, Some(at))),
        api_db
    );
    let v = common::get_json(&server.url("/api/v1/label/job/values"));
    assert_eq!(v["data"], serde_json::json!(["api", "db", "web"]));
    // A month-old sample: stored, and out of the default 15-day retention.
    let old = TimeSeries {
        labels: Labels::from_pairs([("__name__", "ch_old"), ("job", "api")]),
        samples: vec![Sample::new(t0 - 30 * 86_400_000, 1.0)],
    };
    let r = server.remote_write(&mut conn, vec![old]).unwrap();
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let old_stored = || {
        cluster.nodes[0]
            .sql("SELECT count() FROM server_e2e.samples WHERE fingerprint IN (SELECT fingerprint FROM server_e2e.series_local WHERE metric_name = 'ch_old')")
            .unwrap()
    };
    common::poll(std::time::Duration::from_secs(30), || {
        (old_stored().trim() == "1").then_some(())
    });
    assert_eq!(
        old_stored().trim(),
        "1",
        "the old sample is stored before the retention pass"
    );

    // Spans: posted as Zipkin v2 JSON, answered from ClickHouse, stored there.
    let t0_us = (now_ms() - 60_000) * 1000;
    let r = conn
        .request(
            "POST",
            "/api/v2/spans",
            &[("Content-Type", "application/json")],
            zipkin_spans(t0_us).as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    check_spans(&server);
    let span_rows: u64 = cluster
        .nodes
        .iter()
        .map(|n| {
            n.sql("SELECT count() FROM server_e2e.spans_local")
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(span_rows, 2 * TRACES, "span rows in the cluster");
    let in_dist = cluster.nodes[1]
        .sql("SELECT count() FROM server_e2e.spans WHERE local_service IN ('frontend', 'backend')")
        .unwrap();
    assert_eq!(in_dist.trim(), (2 * TRACES).to_string());
    server.kill9();

    // Another server, empty data directory, the other ClickHouse node: the same answers.
    let dir2 = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir2.path(),
        &["--storage", &cluster.storage_url(1, "server_e2e")],
    );
    assert_eq!(
        scalar(&server.query("sum(ch_requests_total)", Some(at))),
        want
    );
    check_spans(&server);
    let rows = cluster.nodes[0]
        .sql("SELECT count() FROM server_e2e.samples_local")
        .unwrap();
    let rows1 = cluster.nodes[1]
        .sql("SELECT count() FROM server_e2e.samples_local")
        .unwrap();
    let (a, b): (u64, u64) = (rows.trim().parse().unwrap(), rows1.trim().parse().unwrap());
    assert!(a > 0 && b > 0, "samples on both shards: {a} and {b}");
    // The new server's first retention pass drops the month-old day on its shard.
    let old_rows = || -> u64 {
        cluster
            .nodes
            .iter()
            .map(|n| {
                let sql = format!(
                    "SELECT count() FROM server_e2e.samples WHERE t < {}",
                    t0 - 20 * 86_400_000
                );
                n.sql(&sql).unwrap().trim().parse::<u64>().unwrap()
            })
            .sum()
    };
    common::poll(std::time::Duration::from_secs(60), || {
        (old_rows() == 0).then_some(())
    });
    assert_eq!(
        scalar(&server.query("sum(ch_requests_total)", Some(at))),
        want
    );
}

#[test]
fn an_unreachable_clickhouse_stops_the_start_naming_it() {
    let port = meshlens_clickhouse::testing::free_ports(1).unwrap()[0];
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::BIN)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--otlp-grpc-listen",
            "off",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--storage", &format!("clickhouse://127.0.0.1:{port}/db")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("unreachable"), "{err}");

    let out = Command::new(common::BIN)
        .args(["server", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--storage", "clickhouse://h:1/bad-db"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--storage") && err.contains("database name"),
        "{err}"
    );
}

#[test]
fn an_import_to_an_unreachable_clickhouse_fails_naming_it() {
    let port = meshlens_clickhouse::testing::free_ports(1).unwrap()[0];
    let dir = tempfile::tempdir().unwrap();
    let om = dir.path().join("data.om");
    std::fs::write(&om, "# TYPE up gauge\nup{job=\"a\"} 1 1700000000\n# EOF\n").unwrap();
    let url = format!("clickhouse://127.0.0.1:{port}/db");
    let out = Command::new(common::BIN)
        .args(["import", "openmetrics"])
        .arg(&om)
        .args(["--storage", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("unreachable"), "{err}");

    let out = Command::new(common::BIN)
        .args(["import", "openmetrics"])
        .arg(&om)
        .args(["--storage", "clickhouse://h:1/bad-db"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--storage") && err.contains("database name"),
        "{err}"
    );
}

/// With ClickHouse storage, exemplars go to the server's local ring (logged to its local
/// WAL) while their samples go to the cluster: both answer, and the exemplars outlive a
/// crash of the server.
#[test]
fn exemplars_beside_clickhouse_stay_in_the_local_ring() {
    let cluster = match TestCluster::start() {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => panic!("the ClickHouse test cluster did not start: {e}"),
    };
    let storage = cluster.storage_url(0, "server_exemplars");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--storage", &storage]);
    let t0 = now_ms() - 10_000;
    let labels = Labels::from_pairs([("__name__", "ch_ex_total"), ("job", "api")]);
    let body =
        meshlens_ingest::remote_write::encode(&meshlens_ingest::remote_write::WriteRequest {
            timeseries: vec![TimeSeries {
                labels: labels.clone(),
                samples: vec![Sample::new(t0, 3.0)],
            }],
            exemplars: vec![meshlens_model::SeriesExemplars {
                series: labels,
                exemplars: vec![meshlens_model::Exemplar {
                    labels: Labels::from_pairs([("trace_id", "c0ffee")]),
                    value: 0.75,
                    t: t0,
                }],
            }],
            ..Default::default()
        });
    let mut conn = httpc::Conn::open(&server.addr).unwrap();
    let r = conn
        .request(
            "POST",
            "/api/v1/write",
            &[
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "snappy"),
            ],
            &body,
        )
        .unwrap();
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let url = |s: &Server| s.url("/api/v1/query_exemplars?query=ch_ex_total");
    let check = |s: &Server| {
        let v = common::get_json(&url(s));
        assert_eq!(
            v["data"][0]["exemplars"][0]["labels"]["trace_id"], "c0ffee",
            "{v}"
        );
        assert_eq!(v["data"][0]["exemplars"][0]["value"], "0.75", "{v}");
        assert_eq!(v["data"][0]["seriesLabels"]["job"], "api", "{v}");
    };
    check(&server);
    let at = t0 as f64 / 1000.0;
    common::poll(std::time::Duration::from_secs(30), || {
        let v = server.query("ch_ex_total", Some(at));
        (v["data"]["result"][0]["value"][1].as_str() == Some("3")).then_some(())
    });
    server.kill9();
    let server = Server::start(dir.path(), &["--storage", &storage]);
    check(&server);
}

/// Native histograms in ClickHouse: an OTLP exponential histogram is taken whole (no refused
/// data points), buffered, inserted into the `histograms` table and answered by PromQL's
/// histogram functions.
#[test]
fn native_histograms_round_trip_through_clickhouse() {
    let cluster = match TestCluster::start() {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => panic!("the ClickHouse test cluster did not start: {e}"),
    };
    let storage = cluster.storage_url(1, "server_histograms");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--storage", &storage]);
    let now_ns = (now_ms() as u64 - 30_000) * 1_000_000;
    // Scale 0: buckets (1, 2] and (2, 4] with 2 and 3 observations, 1 in the zero bucket.
    let body = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"shop"}}}}]}},
        "scopeMetrics":[{{"metrics":[{{"name":"payload","unit":"By","exponentialHistogram":{{"aggregationTemporality":2,
          "dataPoints":[{{"timeUnixNano":"{now_ns}","count":"6","sum":14.5,"zeroCount":"1","scale":0,
            "positive":{{"offset":0,"bucketCounts":["2","3"]}}}}]}}}}]}}]}}]}}"#
    );
    let r = common::post_otlp_metrics_json(&server.addr, &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v, serde_json::json!({}), "stored whole: {v}");
    let count = common::poll(std::time::Duration::from_secs(30), || {
        let v = server.query(r#"histogram_count(payload_bytes{job="shop"})"#, None);
        v["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_string)
    });
    assert_eq!(count, "6");
    let sum = server.query(r#"histogram_sum(payload_bytes{job="shop"})"#, None);
    assert_eq!(sum["data"]["result"][0]["value"][1], "14.5", "{sum}");
    let rows: u64 = cluster
        .nodes
        .iter()
        .map(|n| {
            n.sql("SELECT count() FROM server_histograms.histograms_local")
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(rows, 1, "one histogram row in the cluster");
}
