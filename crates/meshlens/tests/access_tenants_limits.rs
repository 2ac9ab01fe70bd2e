//! Tenants, limits and slow clients against a real server process, with curl as the client:
//! tenant isolation on every API family (PromQL, series, labels, metadata, Zipkin, Jaeger,
//! graph, stats, validations), `a|b` federated reads, each limit's status and message, and 600
//! half-sent requests that neither keep a real client out nor outlive the header timeout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{poll, require_binary, spawn_server, wait_ready, KillOnDrop};
use meshlens_ingest::remote_write::{encode, WriteRequest};
use meshlens_model::{Labels, MetricMetadata, Sample, TimeSeries};

struct Hub {
    _child: KillOnDrop,
    addr: String,
}

fn start(data: &Path, extra: &[&str]) -> Hub {
    let mut args = vec!["--otlp-grpc-listen", "off"];
    args.extend(extra);
    let (child, printed) = spawn_server(data, &args);
    let hub = Hub {
        _child: KillOnDrop(child),
        addr: printed.main,
    };
    wait_ready(&format!("http://{}", hub.addr), Duration::from_secs(60));
    hub
}

/// (status, body) of one request; `org` becomes X-Scope-OrgID.
fn curl(hub: &Hub, method: &str, path: &str, org: Option<&str>, extra: &[&str]) -> (u16, String) {
    let header = org.map(|o| format!("X-Scope-OrgID: {o}"));
    let url = format!("http://{}{path}", hub.addr);
    let mut args = vec!["-X", method];
    if let Some(h) = &header {
        args.extend(["-H", h]);
    }
    args.extend(extra);
    args.push(&url);
    let seen = common::curl(&args);
    (seen.status, seen.body)
}

fn get(hub: &Hub, path: &str, org: Option<&str>) -> (u16, String) {
    curl(hub, "GET", path, org, &[])
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn series(pairs: &[(&str, &str)], samples: usize) -> TimeSeries {
    let t = now_ms();
    TimeSeries {
        labels: Labels::from_pairs(pairs.iter().copied()),
        samples: (0..samples)
            .map(|i| Sample {
                t: t - (samples - i) as i64 * 10,
                v: i as f64,
            })
            .collect(),
    }
}

fn remote_write(
    hub: &Hub,
    dir: &Path,
    org: Option<&str>,
    ts: Vec<TimeSeries>,
    metadata: Vec<MetricMetadata>,
) -> (u16, String) {
    let body = encode(&WriteRequest {
        timeseries: ts,
        metadata,
        ..Default::default()
    });
    let f = dir.join(format!("rw-{}.bin", now_ms()));
    std::fs::write(&f, body).unwrap();
    let data = format!("@{}", f.display());
    curl(
        hub,
        "POST",
        "/api/v1/write",
        org,
        &[
            "-H",
            "Content-Type: application/x-protobuf",
            "-H",
            "Content-Encoding: snappy",
            "--data-binary",
            &data,
        ],
    )
}

/// A client span of `svc` calling `svc-db` and the server span answering it, in one trace.
fn zipkin_pair(svc: &str, trace: &str) -> String {
    let ts = now_ms() * 1000 - 1_000_000;
    format!(
        r#"[{{"traceId":"{trace}","id":"0000000000000001","kind":"CLIENT","name":"get /{svc}-url","timestamp":{ts},"duration":1500,"localEndpoint":{{"serviceName":"{svc}"}},"remoteEndpoint":{{"serviceName":"{svc}-db"}},"tags":{{"http.url":"http://{svc}-db/{svc}-url","http.status_code":"200","http.method":"GET"}}}},
            {{"traceId":"{trace}","id":"0000000000000002","parentId":"0000000000000001","kind":"SERVER","name":"get /{svc}-url","timestamp":{ts},"duration":1000,"localEndpoint":{{"serviceName":"{svc}-db"}},"tags":{{"http.url":"http://{svc}-db/{svc}-url","http.status_code":"200","http.method":"GET"}}}}]"#
    )
}

fn post_spans(hub: &Hub, org: Option<&str>, body: &str) -> (u16, String) {
    curl(
        hub,
        "POST",
        "/api/v2/spans",
        org,
        &["-H", "Content-Type: application/json", "--data", body],
    )
}

#[test]
fn tenants_see_only_their_own_data_through_every_api() {
    if !require_binary("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mesh_a, mesh_b) = (dir.path().join("mesh-a"), dir.path().join("mesh-b"));
    for (d, host) in [(&mesh_a, "alpha-only-host"), (&mesh_b, "beta-only-host")] {
        std::fs::create_dir_all(d).unwrap();
        // A VirtualService routing to a subset no DestinationRule defines: a finding that
        // names the object, so each tenant's validations are recognisable.
        std::fs::write(
            d.join("vs.yaml"),
            format!("apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata:\n  name: {host}\n  namespace: default\nspec:\n  hosts: [{host}]\n  http:\n  - route:\n    - destination:\n        host: {host}\n        subset: v9\n"),
        )
        .unwrap();
    }
    let hub = start(
        &dir.path().join("data"),
        &[
            "--multitenancy",
            "--mesh",
            &format!("team-a={}", mesh_a.display()),
            "--mesh",
            &format!("team-b={}", mesh_b.display()),
        ],
    );
    let q = "/api/v1/query?query=count%28%7B__name__%3D~%22.%2B_only%22%7D%29";

    // Without an org id every data API is a 401; invalid ids are a 400.
    assert_eq!(get(&hub, q, None).0, 401);
    assert_eq!(get(&hub, "/api/v2/services", None).0, 401);
    for bad in ["..", ".", "a/b", &"x".repeat(151)] {
        let (status, body) = get(&hub, q, Some(bad));
        assert_eq!(status, 400, "org id {bad:?}: {body}");
    }
    // Probes need no tenant.
    assert_eq!(get(&hub, "/-/healthy", None).0, 200);
    let (_, m) = get(&hub, "/metrics", None);
    assert!(
        m.contains("meshlens_tenant_refusals_total{code=\"401\"}")
            && m.contains("meshlens_tenant_refusals_total{code=\"400\"}"),
        "org id refusals are not counted"
    );

    let meta = |family: &str| MetricMetadata {
        metric_family: family.into(),
        kind: "gauge".into(),
        help: format!("{family} help"),
        unit: String::new(),
    };
    let w = remote_write(
        &hub,
        dir.path(),
        Some("team-a"),
        vec![series(
            &[("__name__", "alpha_only"), ("alpha_label", "1")],
            3,
        )],
        vec![meta("alpha_only")],
    );
    assert_eq!(w.0, 204, "{}", w.1);
    let w = remote_write(
        &hub,
        dir.path(),
        Some("team-b"),
        vec![series(&[("__name__", "beta_only"), ("beta_label", "1")], 3)],
        vec![meta("beta_only")],
    );
    assert_eq!(w.0, 204, "{}", w.1);
    for (org, svc, trace) in [
        ("team-a", "alpha", "00000000000000a1"),
        ("team-b", "beta", "00000000000000b1"),
    ] {
        let r = post_spans(&hub, Some(org), &zipkin_pair(svc, trace));
        assert_eq!(r.0, 202, "{}", r.1);
    }
    // A write must name one tenant.
    assert_eq!(
        post_spans(
            &hub,
            Some("team-a|team-b"),
            &zipkin_pair("gamma", "00000000000000c1")
        )
        .0,
        400
    );

    let sel = "%7B__name__%3D~%22.%2B_only%22%7D";
    let paths = [
        format!("/api/v1/query?query={sel}"),
        format!("/api/v1/series?match[]={sel}"),
        "/api/v1/labels".to_string(),
        "/api/v1/label/__name__/values".to_string(),
        "/api/v1/metadata".to_string(),
        "/api/v2/services".to_string(),
        "/api/v2/traces?limit=10".to_string(),
        "/api/services".to_string(),
        "/api/v3/services".to_string(),
        "/api/v1/graph?source=traces&window=1h&type=service".to_string(),
        "/api/v1/stats?window=1h".to_string(),
        "/api/v1/validations".to_string(),
    ];
    for path in &paths {
        for (org, mine, theirs) in [("team-a", "alpha", "beta"), ("team-b", "beta", "alpha")] {
            let body = poll(Duration::from_secs(30), || {
                let (status, body) = get(&hub, path, Some(org));
                (status == 200 && body.contains(mine)).then_some(body)
            });
            assert!(
                !body.contains(theirs),
                "{org} sees {theirs}'s data at {path}: {body}"
            );
        }
    }

    // `a|b` reads across both, each series labelled with its tenant.
    let (status, body) = get(
        &hub,
        &format!("/api/v1/query?query={sel}"),
        Some("team-a|team-b"),
    );
    assert_eq!(status, 200, "{body}");
    for want in [
        "alpha_only",
        "beta_only",
        "\"__tenant_id__\":\"team-a\"",
        "\"__tenant_id__\":\"team-b\"",
    ] {
        assert!(body.contains(want), "federated read lacks {want}: {body}");
    }
    let (_, body) = get(&hub, "/api/v2/services", Some("team-b|team-a"));
    assert!(body.contains("alpha") && body.contains("beta"), "{body}");

    // A tenant that never wrote reads as empty and is not created by reading.
    let (status, body) = get(&hub, &format!("/api/v1/query?query={sel}"), Some("nobody"));
    assert_eq!(status, 200);
    assert!(!body.contains("_only"), "{body}");
    assert!(!dir.path().join("data/tenants/nobody").exists());
}

#[test]
fn each_limit_answers_with_its_status_and_names_itself() {
    if !require_binary("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = start(
        &dir.path().join("data"),
        &[
            "--limits.max-label-names-per-series",
            "4",
            "--limits.max-label-value-length",
            "20",
            "--limits.max-label-name-length",
            "16",
            "--limits.max-series-per-tenant",
            "4",
            "--limits.ingestion-rate",
            "1",
            "--limits.ingestion-burst-size",
            "60",
            "--limits.spans-ingestion-rate",
            "1",
            "--limits.spans-ingestion-burst-size",
            "2",
        ],
    );
    // One valid series and one per label limit: 400 naming the limit and series; the valid
    // series is stored.
    let long = "v".repeat(21);
    let (status, body) = remote_write(
        &hub,
        dir.path(),
        None,
        vec![
            series(&[("__name__", "kept"), ("job", "a")], 1),
            series(&[("__name__", "too_long_value"), ("job", &long)], 1),
        ],
        vec![],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("--limits.max-label-value-length"), "{body}");
    assert!(body.contains("too_long_value"), "{body}");
    let (_, body2) = remote_write(
        &hub,
        dir.path(),
        None,
        vec![series(
            &[
                ("__name__", "many"),
                ("a", "1"),
                ("b", "1"),
                ("c", "1"),
                ("d", "1"),
            ],
            1,
        )],
        vec![],
    );
    assert!(
        body2.contains("--limits.max-label-names-per-series"),
        "{body2}"
    );
    let (_, body3) = remote_write(
        &hub,
        dir.path(),
        None,
        vec![series(
            &[("__name__", "x"), ("a_very_long_label_name", "1")],
            1,
        )],
        vec![],
    );
    assert!(body3.contains("--limits.max-label-name-length"), "{body3}");
    let (_, q) = get(&hub, "/api/v1/query?query=kept", None);
    assert!(
        q.contains("\"kept\""),
        "the valid series was not stored: {q}"
    );

    // Series limit: 4 series per tenant; `kept` is one, so three more fit and the fifth is a 429.
    let (status, body) = remote_write(
        &hub,
        dir.path(),
        None,
        (0..4)
            .map(|i| series(&[("__name__", "s"), ("i", &i.to_string())], 1))
            .collect(),
        vec![],
    );
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("--limits.max-series-per-tenant"), "{body}");
    let (_, q) = get(&hub, "/api/v1/query?query=count(s)", None);
    assert!(
        q.contains("\"3\""),
        "the series within the limit were not stored: {q}"
    );

    // Rate limit: a burst of 60 at 1 sample/s; 50 pass, the next 50 do not.
    let fifty = || vec![series(&[("__name__", "kept"), ("job", "a")], 50)];
    let (status, body) = remote_write(&hub, dir.path(), None, fifty(), vec![]);
    assert_ne!(status, 429, "{body}");
    let (status, body) = remote_write(&hub, dir.path(), None, fifty(), vec![]);
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("--limits.ingestion-rate"), "{body}");

    // Spans: a burst of 2 at 1 span/s, so a batch of 2 passes and the next is refused.
    assert_eq!(
        post_spans(&hub, None, &zipkin_pair("one", "00000000000000d1")).0,
        202
    );
    let (status, body) = post_spans(&hub, None, &zipkin_pair("two", "00000000000000d2"));
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("spans-ingestion-rate"), "{body}");

    let (_, metrics) = get(&hub, "/metrics", None);
    for reason in [
        "label_value_too_long",
        "rate_limited",
        "max_series_per_tenant",
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("meshlens_discarded_samples_total") && l.contains(reason)),
            "no discarded-samples counter for {reason}"
        );
    }
    assert!(
        metrics.contains("meshlens_discarded_spans_total"),
        "no discarded-spans counter"
    );
}

#[test]
fn six_hundred_half_sent_requests_do_not_keep_a_real_client_out() {
    if !require_binary("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = start(
        &dir.path().join("data"),
        &["--web.read-header-timeout", "3s"],
    );
    let mut slow = Vec::new();
    for _ in 0..600 {
        let mut s = TcpStream::connect(&hub.addr).expect("connect");
        s.write_all(b"GET /api/v1/query?query=up HT").unwrap();
        slow.push(s);
    }
    // A real client is answered while the 600 hang on.
    let (status, body) = poll(Duration::from_secs(30), || {
        let r = get(&hub, "/api/v1/query?query=1%2B1", None);
        (r.0 == 200).then_some(r)
    });
    assert_eq!(status, 200, "{body}");
    // Every half-sent request is closed: shed at the cap, or by the header timeout.
    let deadline = Instant::now() + Duration::from_secs(60);
    for s in &mut slow {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(10));
        s.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 512];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue, // a 408 or similar before the close is fine
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    break false
                }
                Err(_) => break true,
            }
        };
        assert!(
            closed,
            "a half-sent request was still open after the header timeout"
        );
    }
    let (status, _) = get(&hub, "/api/v1/query?query=1%2B1", None);
    assert_eq!(
        status, 200,
        "the server stopped answering after the slow clients"
    );
    let (_, metrics) = get(&hub, "/metrics", None);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("meshlens_http_") && l.contains("timeout")),
        "no header-timeout counter in /metrics"
    );
}
