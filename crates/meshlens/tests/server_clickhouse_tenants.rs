//! `meshlens server --storage clickhouse://…` in real deployments, on a real 2-shard
//! ClickHouse 18.16 cluster: `--multitenancy` keeps each tenant's metrics, spans and
//! metadata in a database of its own (each reads only its own, `a|b` reads both with
//! `__tenant_id__`, a restart and a second server with an empty data directory read them
//! back); `--storage.clickhouse.start-unreachable` starts without ClickHouse, buffers writes,
//! answers reads with 503 naming it, and creates the schema and drains once it answers;
//! `meshlens import openmetrics` keeps `# TYPE`/`# HELP` there; bad buffer and timeout flags
//! are refused naming the flag.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{httpc, now_ms, urlencode, Server};
use meshlens_clickhouse::testing::TestCluster;
use meshlens_ingest::remote_write::{encode, WriteRequest};
use meshlens_model::{Labels, MetricMetadata, Sample, TimeSeries};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(60);

fn cluster() -> Option<TestCluster> {
    match TestCluster::start() {
        Ok(c) => c,
        Err(e) => panic!("the ClickHouse test cluster did not start: {e}"),
    }
}

/// (status, body) of one request to `server`, as tenant `org` when given.
fn call(
    server: &Server,
    method: &str,
    path: &str,
    org: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let mut headers = vec![];
    if let Some(o) = org {
        headers.push(("X-Scope-OrgID", o));
    }
    if method == "POST" && path == "/api/v1/write" {
        headers.push(("Content-Type", "application/x-protobuf"));
        headers.push(("Content-Encoding", "snappy"));
    } else if method == "POST" {
        headers.push(("Content-Type", "application/json"));
    }
    let mut conn = httpc::Conn::open(&server.addr).unwrap();
    let r = conn
        .request(method, path, &headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

fn get(server: &Server, path: &str, org: Option<&str>) -> Value {
    let (status, body) = call(server, "GET", path, org, b"");
    assert_eq!(status, 200, "GET {path} as {org:?}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("GET {path}: not JSON: {body}"))
}

/// One series `mt_up{job=JOB}` with 4 samples from `t0`, and its metadata.
fn write_body(metric: &str, job: &str, t0: i64, help: &str) -> Vec<u8> {
    encode(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: Labels::from_pairs([("__name__", metric), ("job", job)]),
            samples: (0..4)
                .map(|k| Sample::new(t0 + k * 15_000, k as f64))
                .collect(),
        }],
        metadata: vec![MetricMetadata {
            metric_family: metric.into(),
            kind: "gauge".into(),
            help: help.into(),
            unit: String::new(),
        }],
        ..Default::default()
    })
}

/// A client span of `service` calling `backend`, a minute ago, in trace `trace`.
fn zipkin(service: &str, trace: u64) -> Vec<u8> {
    let ts = (now_ms() - 60_000) * 1000;
    json!([{
        "traceId": format!("{:016x}", 0xfeed_0000u64 + trace), "id": format!("{:016x}", trace + 1),
        "kind": "CLIENT", "name": "get /x", "timestamp": ts, "duration": 500,
        "localEndpoint": {"serviceName": service}, "remoteEndpoint": {"serviceName": "backend"},
    }])
    .to_string()
    .into_bytes()
}

/// `query` at `at` as `org`: each result's labels (as `job` or `job@tenant`), sorted; None
/// until the answer is a success.
fn jobs(server: &Server, query: &str, at: f64, org: &str) -> Option<Vec<String>> {
    let path = format!("/api/v1/query?query={}&time={at}", urlencode(query));
    let (status, body) = call(server, "GET", &path, Some(org), b"");
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    let mut out: Vec<String> = v["data"]["result"]
        .as_array()?
        .iter()
        .map(|r| {
            let m = &r["metric"];
            match m["__tenant_id__"].as_str() {
                Some(t) => format!("{}@{t}", m["job"].as_str().unwrap_or("")),
                None => m["job"].as_str().unwrap_or("").to_string(),
            }
        })
        .collect();
    out.sort();
    Some(out)
}

fn help_of(server: &Server, metric: &str, org: &str) -> Option<String> {
    let v = get(
        server,
        &format!("/api/v1/metadata?metric={metric}"),
        Some(org),
    );
    v["data"][metric][0]["help"].as_str().map(str::to_string)
}

const A: &str = "team-a";
const B: &str = "team.b";

/// Everything each tenant wrote, seen by each and by both; polls while inserts land.
fn check_tenants(server: &Server, at: f64) {
    for (org, want) in [(A, "job-a"), (B, "job-b")] {
        common::poll(LIMIT, || {
            (jobs(server, "mt_up", at, org)? == [want]).then_some(())
        });
        let svc = format!("svc-{}", &org[5..]);
        common::poll(LIMIT, || {
            let v = get(server, "/api/v2/services", Some(org));
            (v == json!(["backend", svc]) || v == json!([svc, "backend"]) || v == json!([svc]))
                .then_some(())
        });
        common::poll(LIMIT, || {
            (help_of(server, "mt_up", org)? == format!("up, as {org} says")).then_some(())
        });
    }
    let both = format!("{A}|{B}");
    assert_eq!(
        jobs(server, "mt_up", at, &both).unwrap(),
        [format!("job-a@{A}"), format!("job-b@{B}")]
    );
    let v = get(server, "/api/v2/services", Some(&both));
    let services: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|s| s.starts_with("svc-"))
        .collect();
    assert_eq!(services, ["svc-a", "svc-b"], "{v}");
    // One entry per family (as Prometheus answers): either tenant's.
    let v = get(server, "/api/v1/metadata?metric=mt_up", Some(&both));
    let help = v["data"]["mt_up"][0]["help"].as_str();
    assert!(
        matches!(help, Some("up, as team-a says" | "up, as team.b says")),
        "{v}"
    );
}

#[test]
fn tenants_are_stored_apart_in_clickhouse_and_read_back_after_a_restart() {
    let Some(cluster) = cluster() else { return };
    let storage = cluster.storage_url(0, "mt");
    let dir = tempfile::tempdir().unwrap();
    let args = ["--multitenancy", "--storage", storage.as_str()];
    let server = Server::start(dir.path(), &args);
    let t0 = now_ms() - 120_000;
    let at = (t0 + 45_000) as f64 / 1000.0;
    for (org, job, trace) in [(A, "job-a", 1), (B, "job-b", 2)] {
        let body = write_body("mt_up", job, t0, &format!("up, as {org} says"));
        let (status, text) = call(&server, "POST", "/api/v1/write", Some(org), &body);
        assert_eq!(status, 204, "{org}: {text}");
        let svc = format!("svc-{}", &org[5..]);
        let (status, text) = call(
            &server,
            "POST",
            "/api/v2/spans",
            Some(org),
            &zipkin(&svc, trace),
        );
        assert_eq!(status, 202, "{org}: {text}");
    }
    check_tenants(&server, at);
    // A tenant that never wrote reads as empty, and gets no database.
    assert_eq!(
        jobs(&server, "mt_up", at, "nobody").unwrap(),
        Vec::<String>::new()
    );

    // One database per tenant, on both shards, each with its own rows.
    for node in &cluster.nodes {
        let dbs = node
            .sql("SELECT name FROM system.databases WHERE substring(name, 1, 4) = 'mt__' ORDER BY name")
            .unwrap();
        // `anonymous` is the scrape tenant, opened at start.
        assert_eq!(
            dbs.trim(),
            "mt__anonymous\nmt__team_2da\nmt__team_2eb",
            "on {}",
            node.http_base()
        );
    }
    for db in ["mt__team_2da", "mt__team_2eb"] {
        let n = cluster.nodes[1]
            .sql(&format!(
                "SELECT uniqExact(fingerprint) FROM {db}.series WHERE metric_name = 'mt_up'"
            ))
            .unwrap();
        assert_eq!(n.trim(), "1", "{db}");
    }

    // Each tenant's write buffer is in its own directory.
    for org in [A, B] {
        let buffer = dir
            .path()
            .join("tenants")
            .join(org)
            .join("clickhouse-buffer");
        assert!(buffer.is_dir(), "{}", buffer.display());
    }

    // A restart on the same data directory: both tenants are opened and read back.
    assert!(server.terminate().success());
    let server = Server::start(dir.path(), &args);
    check_tenants(&server, at);
    server.kill9();

    // Another server, empty data directory, the other node: the data is in ClickHouse.
    let dir2 = tempfile::tempdir().unwrap();
    let other = cluster.storage_url(1, "mt");
    let server = Server::start(dir2.path(), &["--multitenancy", "--storage", &other]);
    check_tenants(&server, at);
}

#[test]
fn a_server_started_without_clickhouse_buffers_and_drains_once_it_answers() {
    let Some(mut cluster) = cluster() else { return };
    let port = cluster.nodes[0].http_port;
    cluster.nodes[0].kill();
    let storage = cluster.storage_url(0, "late");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--storage",
            &storage,
            "--storage.clickhouse.start-unreachable",
        ],
    );
    let t0 = now_ms() - 120_000;
    let at = (t0 + 45_000) as f64 / 1000.0;
    let body = write_body("late_up", "early", t0, "written while ClickHouse was down");
    let (status, text) = call(&server, "POST", "/api/v1/write", None, &body);
    assert_eq!(status, 204, "acknowledged into the buffer: {text}");
    let (status, text) = call(
        &server,
        "POST",
        "/api/v2/spans",
        None,
        &zipkin("svc-late", 7),
    );
    assert_eq!(status, 202, "{text}");
    // Reads say ClickHouse is unreachable, naming it.
    let path = format!("/api/v1/query?query=late_up&time={at}");
    let (status, text) = call(&server, "GET", &path, None, b"");
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("unreachable") && text.contains(&format!("127.0.0.1:{port}")),
        "{text}"
    );
    let (status, text) = call(&server, "GET", "/api/v2/services", None, b"");
    assert_eq!(status, 503, "{text}");
    assert!(cluster.nodes[1]
        .sql("SELECT count() FROM system.databases WHERE name = 'late'")
        .unwrap()
        .trim()
        .eq("0"));

    cluster.nodes[0].restart().unwrap();
    common::poll(LIMIT, || {
        (jobs(&server, "late_up", at, "anonymous")? == ["early"]).then_some(())
    });
    common::poll(LIMIT, || {
        let v = get(&server, "/api/v2/services", None);
        (v == json!(["backend", "svc-late"]) || v == json!(["svc-late"])).then_some(())
    });
    common::poll(LIMIT, || {
        (help_of(&server, "late_up", "anonymous")? == "written while ClickHouse was down")
            .then_some(())
    });
    // The schema is on both shards now.
    for node in &cluster.nodes {
        let n = node
            .sql("SELECT count() FROM system.tables WHERE database = 'late' AND name = 'metadata_local'")
            .unwrap();
        assert_eq!(n.trim(), "1", "on {}", node.http_base());
    }

    // An import keeps `# TYPE` and `# HELP` in ClickHouse; the server serves them.
    let om = dir.path().join("data.om");
    let ts = (t0 / 1000) as f64;
    std::fs::write(
        &om,
        format!("# TYPE imported counter\n# HELP imported Requests, imported.\nimported_total{{job=\"i\"}} 3 {ts}\n# EOF\n"),
    )
    .unwrap();
    let out = Command::new(common::BIN)
        .args(["import", "openmetrics"])
        .arg(&om)
        .args(["--storage", &cluster.storage_url(1, "late")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = get(&server, "/api/v1/metadata?metric=imported", None);
    assert_eq!(
        v["data"]["imported"],
        json!([{"type": "counter", "help": "Requests, imported.", "unit": ""}]),
        "{v}"
    );
}

#[test]
fn bad_clickhouse_flags_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, want) in [
        ("--storage.clickhouse.buffer-max-size", "10KiB", "below"),
        ("--storage.clickhouse.buffer-max-size", "lots", "size"),
        ("--storage.clickhouse.insert-timeout", "0s", "longer than 0"),
        (
            "--storage.clickhouse.query-timeout",
            "soon",
            "query-timeout",
        ),
        (
            "--storage.clickhouse.connect-timeout",
            "0s",
            "longer than 0",
        ),
        (
            "--storage.clickhouse.shutdown-drain-timeout",
            "forever",
            "shutdown-drain-timeout",
        ),
    ] {
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
            .args(["--storage", "clickhouse://127.0.0.1:1/db", flag, value])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&flag[2..]) && err.contains(want),
            "{flag} {value}: {err}"
        );
    }
}
