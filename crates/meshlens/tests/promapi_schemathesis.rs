//! The Prometheus HTTP API against the OpenAPI description meshlens keeps of it
//! (`crates/prom-api/openapi.yaml`, written from Prometheus's API docs), with schemathesis
//! from PyPI generating requests from it and checking every answer.
//!
//! Where the answer is right but a schema cannot say so, or meshlens deliberately answers
//! otherwise than Prometheus, the finding is listed in `ACCEPTED` with the reason; any other
//! finding fails the test.

mod common;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{
    get_json, httpc, require_python_module, run_schemathesis, schemathesis_report, Server,
};
use meshlens_model::{Labels, Sample, TimeSeries};
use serde_json::Value;

/// (code, operation or `*`, text the finding's message or the answer must contain, why the
/// answer is right as it is).
const ACCEPTED: &[(&str, &str, &str, &str)] = &[
    // PromQL's grammar and the relations between parameters are beyond a JSON schema, so
    // schema-valid requests may still be wrong; Prometheus answers them with 400 bad_data too.
    ("ST202", "*", "parse error", "a string that is not PromQL is a 400"),
    ("ST202", "*", "is not a series selector", "match[] must be a series selector, not any expression"),
    ("ST202", "*", "end timestamp must not be before start time", "end before start is a 400"),
    ("ST202", "*", "exceeded maximum resolution", "more than 11,000 steps is a 400"),
    ("ST202", "*", "zero or negative query resolution step", "a step that rounds to 0 ms is a 400"),
    // In a form body one value and a one-element list are the same bytes.
    ("ST201", "*", "match[]: Incorrect type", "schemathesis's \"not a list\" is a valid one-selector list on the wire"),
    ("ST105", "GET /federate", "\"errorType\":\"bad_data\"", "a bad federate request gets the API's JSON error envelope; Prometheus writes the message as text/plain, and federating servers read only the status"),
];

#[test]
fn prometheus_api_conforms_to_its_description() {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../prom-api/openapi.yaml");
    if !require_python_module("schemathesis") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    write_samples(&server);
    // The samples are queryable before any generated request is made.
    let r = server.query("http_requests_total", None);
    assert_eq!(r["data"]["result"].as_array().map(Vec::len), Some(4), "{r}");

    let (findings, text) = schemathesis(&spec, &server.url(""), &dir.path().join("r1"));
    let unexpected: Vec<&Finding> = findings
        .iter()
        .filter(|f| {
            !ACCEPTED.iter().any(|(code, op, needle, _)| {
                f.code == *code
                    && (*op == "*" || f.operation == *op)
                    && (f.message.contains(needle) || f.answer.contains(needle))
            })
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected findings: {unexpected:#?}\n{text}"
    );
    // Still up and answering, with the samples still there.
    let v = get_json(&server.url("/api/v1/labels"));
    assert!(
        v["data"].as_array().unwrap().iter().any(|l| l == "job"),
        "{v}"
    );
}

/// A counter (four series), a gauge and a histogram's buckets, one sample a minute for the
/// last ten minutes, so that queries at the current time, series, labels and federate all find data.
fn write_samples(server: &Server) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let points = |f: &dyn Fn(i64) -> f64| -> Vec<Sample> {
        (0..10)
            .map(|i| Sample::new(now - (10 - i) * 60_000, f(i)))
            .collect()
    };
    let mut batch = Vec::new();
    for (code, k) in [("200", 10.0), ("500", 1.0)] {
        for instance in ["a:9090", "b:9090"] {
            batch.push(TimeSeries {
                labels: Labels::from_pairs([
                    ("__name__", "http_requests_total"),
                    ("job", "api"),
                    ("instance", instance),
                    ("code", code),
                ]),
                samples: points(&|i| k * i as f64),
            });
        }
    }
    batch.push(TimeSeries {
        labels: Labels::from_pairs([("__name__", "temperature_celsius"), ("job", "node")]),
        samples: points(&|i| 20.0 + i as f64 / 4.0),
    });
    for le in ["0.1", "0.5", "+Inf"] {
        batch.push(TimeSeries {
            labels: Labels::from_pairs([
                ("__name__", "request_seconds_bucket"),
                ("job", "api"),
                ("le", le),
            ]),
            samples: points(&|i| i as f64 * le.len() as f64),
        });
    }
    let mut conn = httpc::Conn::open(&server.addr).unwrap();
    let r = server.remote_write(&mut conn, batch).unwrap();
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
}

/// One failed check on one generated request.
#[derive(Debug)]
struct Finding {
    code: String,
    operation: String,
    message: String,
    /// The response body, as text.
    answer: String,
}

/// Runs schemathesis's examples, coverage and fuzzing phases with every check; returns every
/// failed check, one per request (its errors, too, as findings), and its printed output.
fn schemathesis(spec: &Path, url: &str, report: &Path) -> (Vec<Finding>, String) {
    let text = run_schemathesis(
        spec,
        url,
        report,
        &[
            "--phases",
            "examples,coverage,fuzzing",
            "--checks",
            "all",
            "--max-examples",
            "200",
            "--report",
            "json,ndjson",
        ],
    );
    let file = |ext: &str| schemathesis_report(report, ext, &text);
    let summary: Value = serde_json::from_slice(&std::fs::read(file("json")).unwrap()).unwrap();
    eprintln!(
        "schemathesis: {} test cases, {} with failures; findings: {}",
        summary["test_cases"]["generated"],
        summary["test_cases"]["with_failures"],
        summary["failures"]
    );
    assert!(
        summary["test_cases"]["generated"].as_u64().unwrap() > 500,
        "{text}"
    );
    let mut findings: Vec<Finding> = summary["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Finding {
            code: "error".into(),
            operation: String::new(),
            message: e.to_string(),
            answer: String::new(),
        })
        .collect();
    let events = std::fs::read_to_string(file("ndjson")).unwrap();
    for line in events.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        let recorder = &event["ScenarioFinished"]["recorder"];
        let Some(checks) = recorder["checks"].as_object() else {
            continue;
        };
        for (case, results) in checks {
            let answer = &recorder["interactions"][case]["response"];
            for failure in results.as_array().unwrap() {
                let f = &failure["failure_info"]["failure"];
                if failure["status"] == "success" || f.is_null() {
                    continue;
                }
                findings.push(Finding {
                    code: f["code"].as_str().unwrap_or_default().into(),
                    operation: f["operation"].as_str().unwrap_or_default().into(),
                    message: f["message"].as_str().unwrap_or_default().into(),
                    answer: body_text(&answer["content"]),
                });
            }
        }
    }
    // The summary's count and the per-request findings agree, so none were missed.
    let summarised: u64 = summary["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["count"].as_u64().unwrap())
        .sum();
    assert!(
        findings.len() as u64 >= summarised,
        "{} findings read, {summarised} summarised",
        findings.len()
    );
    (findings, text)
}

/// A recorded body (`{"$base64": …}` or plain text) as text.
fn body_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("$base64")
            .and_then(Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default(),
        _ => String::new(),
    }
}
