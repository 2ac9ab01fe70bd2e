//! `/api/v1/status/storage` of a running server: on the embedded engines it shows the TSDB's
//! and the span store's figures once data is written; on a 2-shard ClickHouse 18.16 cluster
//! it shows the address without a password, the schema version recorded there and rows on
//! each shard, a down shard as an error in its row and a down ClickHouse as a 503. `/metrics`
//! leaves out the empty embedded span store's gauges in ClickHouse mode.

mod common;

use common::{get_json, httpc, now_ms, Server};
use meshlens_clickhouse::testing::TestCluster;
use meshlens_model::{Labels, Sample, TimeSeries};
use serde_json::Value;

fn series(i: usize, t0: i64) -> TimeSeries {
    TimeSeries {
        labels: Labels::from_pairs([
            ("__name__", "storage_probe"),
            ("instance", &format!("10.0.0.{i}:80")),
        ]),
        samples: (0..3)
            .map(|k| Sample::new(t0 + k * 15_000, k as f64))
            .collect(),
    }
}

/// `n` one-span traces a minute ago, as Zipkin v2 JSON; trace ids spread over shards.
fn spans(n: u64) -> String {
    let ts = (now_ms() - 60_000) * 1000;
    let v: Vec<Value> = (0..n)
        .map(|t| {
            serde_json::json!({
                "traceId": format!("{:016x}", 0x5707_0000_0000_0000u64 + t * 0x1_0001),
                "id": format!("{:016x}", 0x100 + t),
                "name": "get /status", "kind": "SERVER", "timestamp": ts, "duration": 500,
                "localEndpoint": {"serviceName": "storage-probe"},
            })
        })
        .collect();
    Value::Array(v).to_string()
}

/// Writes 12 series of 3 samples and `n` spans through the server's ingest APIs.
fn write_data(server: &Server, n_spans: u64) {
    let mut conn = httpc::Conn::open(&server.addr).unwrap();
    let t0 = now_ms() - 60_000;
    let r = server
        .remote_write(&mut conn, (0..12).map(|i| series(i, t0)).collect())
        .unwrap();
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let r = conn
        .request(
            "POST",
            "/api/v2/spans",
            &[("Content-Type", "application/json")],
            spans(n_spans).as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
}

fn storage(server: &Server) -> Value {
    let v = get_json(&server.url("/api/v1/status/storage"));
    assert_eq!(v["status"], "success", "{v}");
    v["data"].clone()
}

fn self_metrics(server: &Server) -> String {
    let r = httpc::get(&server.url("/metrics")).unwrap();
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap()
}

#[test]
fn embedded_storage_status_shows_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    write_data(&server, 5);
    let d = storage(&server);
    assert_eq!(d["backend"], "embedded", "{d}");
    let m = &d["metrics"];
    assert!(m["head_series"].as_u64().unwrap() >= 12, "{d}");
    assert!(m["samples_appended"].as_u64().unwrap() >= 36, "{d}");
    assert!(m["wal_bytes_written"].as_u64().unwrap() > 0, "{d}");
    assert!(m["oldest_sample_ms"].as_i64().unwrap() <= m["newest_sample_ms"].as_i64().unwrap());
    let s = &d["spans"];
    assert!(s["spans"].as_u64().unwrap() >= 5, "{d}");
    assert!(s["bytes_on_disk"].as_u64().unwrap() > 0, "{d}");
    assert!(d.get("write_buffer").is_none(), "{d}");
    let metrics = self_metrics(&server);
    assert!(
        metrics.contains("meshlens_storage_backend_info{backend=\"embedded\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("\nmeshlens_spanstore_spans "), "{metrics}");
}

/// Rows of a shard's tables as the endpoint reports them.
fn shard_rows(d: &Value, shard: u64) -> u64 {
    d["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["shard"] == shard)
        .map(|s| {
            ["series_rows", "sample_rows", "span_rows"]
                .iter()
                .map(|k| s[*k].as_u64().unwrap_or(0))
                .sum::<u64>()
        })
        .sum()
}

#[test]
fn clickhouse_storage_status_shows_every_shard() {
    let mut cluster = match TestCluster::start() {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => panic!("the ClickHouse test cluster did not start: {e}"),
    };
    let url = cluster.storage_url(0, "status_e2e");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--storage", &url]);
    write_data(&server, 8);
    let d = common::poll(std::time::Duration::from_secs(60), || {
        let d = storage(&server);
        let spans = d["totals"]["span_rows"].as_u64().unwrap_or(0);
        (shard_rows(&d, 1) > 0 && shard_rows(&d, 2) > 0 && spans == 8).then_some(d)
    });
    assert_eq!(d["backend"], "clickhouse", "{d}");
    assert_eq!(d["url"], url.as_str(), "{d}");
    let shown = d["url"].as_str().unwrap();
    assert!(
        !shown.contains('@'),
        "no credentials in the address: {shown}"
    );
    assert_eq!(d["cluster"], meshlens_clickhouse::testing::CLUSTER, "{d}");
    assert_eq!(
        d["schema_version"],
        meshlens_clickhouse::SCHEMA_VERSION,
        "{d}"
    );
    let shards = d["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2, "{d}");
    for s in shards {
        assert!(s["bytes_on_disk"].as_u64().unwrap() > 0, "{d}");
        assert!(s["replica"].as_str().unwrap().contains(':'), "{d}");
        assert!(s.get("error").is_none(), "{d}");
    }
    // At least what was written: span metrics derived by the server are stored there too.
    assert!(d["totals"]["series_rows"].as_u64().unwrap() >= 12, "{d}");
    assert!(d["totals"]["sample_rows"].as_u64().unwrap() >= 36, "{d}");
    // The write-ahead buffer in front of ClickHouse: everything written went through it.
    let d = common::poll(std::time::Duration::from_secs(60), || {
        let d = storage(&server);
        let b = &d["write_buffer"];
        (b["inserted_spans"].as_u64() >= Some(8) && b["pending_records"].as_u64() == Some(0))
            .then_some(d)
    });
    assert_eq!(d["write_buffer"]["failing"], false, "{d}");

    // The empty embedded span store's zeros are not shown as if they were the spans.
    let metrics = self_metrics(&server);
    assert!(
        metrics.contains("meshlens_storage_backend_info{backend=\"clickhouse\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("meshlens_spanstore_spans"), "{metrics}");

    // A down shard is an error in its row; a down ClickHouse behind the address, a 503.
    cluster.nodes[1].kill();
    let d = storage(&server);
    let down = d["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["shard"] == 2)
        .unwrap();
    assert!(down["error"].as_str().is_some_and(|e| !e.is_empty()), "{d}");
    cluster.nodes[0].kill();
    let r = httpc::get(&server.url("/api/v1/status/storage")).unwrap();
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["status"], "error", "{v}");
    assert!(v["error"].as_str().unwrap().contains("unreachable"), "{v}");
}
