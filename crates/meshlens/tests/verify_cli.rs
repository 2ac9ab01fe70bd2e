//! `meshlens verify` against a real server fed with generated Istio series (remote write)
//! and Zipkin spans: the exit codes CI relies on (0 pass, 1 fail, 3 inconclusive, 2 usage
//! or unreachable), the text report and the JSON one, and `GET /api/v1/verify`'s errors.

mod common;
#[path = "../../verify/tests/collect_support/gen.rs"]
mod gen;

use std::process::{Command, Output};
use std::sync::{Arc, Mutex, Weak};

use common::{httpc, Server, BIN};
use gen::{Traffic, SCRAPE_MS};
use serde_json::Value;

const WINDOW_MS: i64 = 600_000;

/// The server the tests share, fed once: reviews (identical versions), ratings (canary with
/// 8 % 5xx), details (canary with 10 requests), checkout and payments (spans only). Held
/// through `Arc`s so that the last test to finish stops it (a static would outlive the
/// test process's exit and leave the server running).
struct Fixture {
    server: Server,
    _dir: tempfile::TempDir,
}

fn server() -> Arc<Fixture> {
    static S: Mutex<Weak<Fixture>> = Mutex::new(Weak::new());
    let mut held = S.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = held.upgrade() {
        return f;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    feed(&server);
    let f = Arc::new(Fixture { server, _dir: dir });
    *held = Arc::downgrade(&f);
    f
}

fn feed(s: &Server) {
    let now = meshlens_model::time::now_ms();
    let end = now - now % SCRAPE_MS;
    let mut ratings_v2 = Traffic::new("ratings", "v2", 4);
    ratings_v2.error_share = 0.08;
    let mut details_v2 = Traffic::new("details", "v2", 6);
    details_v2.total = Some(10);
    let metrics = [
        Traffic::new("reviews", "v1", 1),
        Traffic::new("reviews", "v2", 2),
        Traffic::new("ratings", "v1", 3),
        ratings_v2,
        Traffic::new("details", "v1", 5),
        details_v2,
    ];
    let mut conn = httpc::Conn::open(&s.addr).unwrap();
    for t in &metrics {
        // Data for the whole 10-minute window, all of it inside the last 10 minutes.
        let r = s
            .remote_write(&mut conn, t.series(end, WINDOW_MS - SCRAPE_MS))
            .unwrap();
        assert!(
            r.status / 100 == 2,
            "remote write: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    let mut payments_v2 = Traffic::new("payments", "v2", 8);
    payments_v2.error_share = 0.08;
    let spans = [
        Traffic::new("checkout", "v1", 11),
        Traffic::new("checkout", "v2", 12),
        Traffic::new("payments", "v1", 13),
        payments_v2,
    ];
    for mut t in spans {
        t.rps = 5.0;
        for body in t.zipkin_json(end, WINDOW_MS - SCRAPE_MS, 2000) {
            let r = conn
                .request(
                    "POST",
                    "/api/v2/spans",
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                )
                .unwrap();
            assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        }
    }
}

fn verify(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("verify")
        .args(args)
        .output()
        .expect("run meshlens verify")
}

fn verify_at(service: &str, extra: &[&str]) -> Output {
    let fixture = server();
    let url = fixture.server.url("");
    let mut args = vec![
        "--server",
        &url,
        "--service",
        service,
        "--baseline",
        "v1",
        "--canary",
        "v2",
    ];
    args.extend_from_slice(extra);
    verify(&args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

#[test]
fn identical_versions_pass_with_exit_0() {
    let o = verify_at("reviews", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = text(&o.stdout);
    assert!(out.contains("baseline v1 vs canary v2"), "{out}");
    for m in [
        "success-rate",
        "latency-p50",
        "latency-p99",
        "requests",
        "why:",
    ] {
        assert!(out.contains(m), "{m} missing: {out}");
    }
    assert!(out.contains("verdict: PASS"), "{out}");
    assert!(out.contains("from metrics"), "{out}");
}

#[test]
fn eight_percent_errors_fail_with_exit_1_and_json_as_the_server_says() {
    let fixture = server();
    let o = verify_at("ratings", &["--output", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    assert_eq!(v["verdict"], "fail");
    assert_eq!(v["source"], "metrics");
    assert!(v["score"].as_f64().unwrap() < 95.0);
    let sr = v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "success-rate")
        .expect("success-rate");
    assert_eq!(sr["verdict"], "fail");
    // Exactly what the API answers.
    let url = fixture
        .server
        .url("/api/v1/verify?service=ratings&baseline=v1&canary=v2&source=metrics");
    let api = common::get_json(&url);
    assert_eq!(api["verdict"], v["verdict"]);
    assert_eq!(api["baseline"]["version"], "v1");
    assert_eq!(api["canary"]["version"], "v2");
}

#[test]
fn ten_requests_are_inconclusive_with_exit_3() {
    let o = verify_at("details", &[]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let out = text(&o.stdout);
    assert!(out.contains("canary \"v2\" has"), "{out}");
    assert!(out.contains("min_requests 50"), "{out}");
    assert!(out.contains("verdict: INCONCLUSIVE"), "{out}");
    // With the gate lowered to what it has, the same data is judged.
    let o = verify_at("details", &["--min-requests", "1", "--output", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!(
        !v["reason"].as_str().unwrap().contains("too little traffic"),
        "{}",
        show(&o)
    );
}

#[test]
fn an_unknown_service_is_inconclusive_not_a_pass() {
    let o = verify_at("nosuch", &[]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        text(&o.stdout).contains("no Istio request metrics and no spans for service \"nosuch\""),
        "{}",
        show(&o)
    );
}

#[test]
fn traces_only_services_are_judged_from_spans() {
    let o = verify_at("checkout", &["--output", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["source"], "traces");
    assert_eq!(v["verdict"], "pass");
    let n = v["canary"]["requests"].as_u64().unwrap();
    assert!((2_000..3_600).contains(&n), "canary requests {n}");

    let o = verify_at("payments", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(text(&o.stdout).contains("from traces"), "{}", show(&o));
}

#[test]
fn an_unknown_flag_is_a_usage_error_naming_it() {
    let o = verify_at("reviews", &["--bogus-flag", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(text(&o.stderr).contains("--bogus-flag"), "{}", show(&o));
    let o = verify(&["--service", "x", "--baseline", "v1"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(text(&o.stderr).contains("--canary"), "{}", show(&o));
}

#[test]
fn an_unreachable_server_is_exit_2_naming_the_address() {
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let o = verify(&[
        "--server",
        &url,
        "--service",
        "reviews",
        "--baseline",
        "v1",
        "--canary",
        "v2",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = text(&o.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("cannot reach"), "{err}");
}

#[test]
fn server_side_usage_errors_are_exit_2_with_the_servers_message() {
    let o = verify_at("reviews", &["--metric", "errs=sum(rate(x[1m])"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = text(&o.stderr);
    assert!(err.contains("400"), "{err}");
    assert!(err.contains("errs"), "{err}");
    let o = verify_at("reviews", &["--window", "ten"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(text(&o.stderr).contains("\"window\""), "{}", show(&o));
}

#[test]
fn the_api_answers_bad_data_for_usage_errors() {
    let fixture = server();
    for (q, param) in [
        ("baseline=v1&canary=v2", "service"),
        ("service=a&baseline=v1&canary=v2&source=logs", "source"),
        ("service=a&baseline=v1&canary=v2&step=x", "step"),
        ("service=a&baseline=v1&canary=v2&metric=e%3Dsum(", "metric"),
    ] {
        let r = httpc::get(&fixture.server.url(&format!("/api/v1/verify?{q}"))).unwrap();
        assert_eq!(r.status, 400, "{q}: {}", text(&r.body));
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["status"], "error");
        assert_eq!(v["errorType"], "bad_data");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(&format!("\"{param}\"")), "{q}: {msg}");
    }
}
