//! The traces collector: the same metrics from spans tagged `service.version`, for services
//! without Istio metrics.

mod collect_support;

use collect_support::gen::Traffic;
use collect_support::{params, EngineQuery, MemMetrics, MemSpans};
use meshlens_verify::collect::{parse_request, verify, Report};
use meshlens_verify::judge::{JudgeOptions, Verdict};

const END: i64 = 1_700_000_100_000;
const WINDOW: i64 = 600_000;

fn run(spans: &MemSpans, extra: &[(&str, &str)]) -> Report {
    let end = (END / 1000).to_string();
    let mut p = vec![
        ("service", "checkout"),
        ("baseline", "v1"),
        ("canary", "v2"),
        ("end", end.as_str()),
    ];
    p.extend_from_slice(extra);
    let req = parse_request(&params(&p), 0).unwrap();
    let q = EngineQuery::new(MemMetrics::default());
    verify(&req, &q, spans, &JudgeOptions::default()).unwrap()
}

fn spans(traffic: &[Traffic]) -> MemSpans {
    let mut s = MemSpans::default();
    for t in traffic {
        s.add_traffic(t, END, WINDOW + 60_000);
    }
    s
}

fn traffic(version: &str, seed: u64) -> Traffic {
    let mut t = Traffic::new("checkout", version, seed);
    t.rps = 5.0;
    t
}

#[test]
fn identical_versions_pass_from_traces() {
    let r = run(&spans(&[traffic("v1", 1), traffic("v2", 2)]), &[]);
    assert_eq!(r.source, "traces");
    assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
    for side in [&r.baseline, &r.canary] {
        assert!((2_500..3_500).contains(&side.requests), "{}", side.requests);
    }
    let p50 = r.metrics.iter().find(|m| m.name == "latency-p50").unwrap();
    assert_eq!(p50.baseline.n, 20);
    let m = p50.baseline.median.unwrap();
    assert!((15.0..25.0).contains(&m), "p50 {m}");
}

#[test]
fn errors_from_status_codes_fail() {
    let mut bad = traffic("v2", 2);
    bad.error_share = 0.08;
    let r = run(&spans(&[traffic("v1", 1), bad]), &[("source", "traces")]);
    assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
    let sr = r.metrics.iter().find(|m| m.name == "success-rate").unwrap();
    assert_eq!(sr.verdict, Verdict::Fail);
}

#[test]
fn error_tags_count_as_errors() {
    let mut s = spans(&[traffic("v1", 1), traffic("v2", 2)]);
    // Every 10th canary span carries an error tag and no status code.
    let mut k = 0;
    for span in s.0.iter_mut() {
        if span.tags.get("service.version").map(String::as_str) == Some("v2") {
            k += 1;
            if k % 10 == 0 {
                span.tags.remove("http.status_code");
                span.tags.insert("error".into(), "timeout".into());
            }
        }
    }
    let r = run(&s, &[]);
    assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
}

#[test]
fn client_spans_are_not_requests_served() {
    let mut s = spans(&[traffic("v1", 1), traffic("v2", 2)]);
    let before = run(&s, &[]).canary.requests;
    // The canary's outgoing calls, all failing: not its own requests.
    let calls: Vec<_> =
        s.0.iter()
            .filter(|x| x.tags.get("service.version").map(String::as_str) == Some("v2"))
            .cloned()
            .collect();
    for mut c in calls {
        c.kind = Some(meshlens_model::SpanKind::Client);
        c.id += 1_000_000;
        c.tags.insert("http.status_code".into(), "500".into());
        s.0.push(c);
    }
    let r = run(&s, &[]);
    assert_eq!(r.canary.requests, before);
    assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
}

#[test]
fn spans_without_the_version_tag_are_inconclusive() {
    let mut s = spans(&[traffic("v1", 1)]);
    s.push("checkout", (END as u64 - 1000) * 1000, 5.0, &[]);
    let r = run(&s, &[]);
    assert_eq!(r.verdict, Verdict::Inconclusive);
    assert!(
        r.reason.contains("canary \"v2\" has 0 requests"),
        "{}",
        r.reason
    );
}

#[test]
fn no_spans_for_the_service_is_inconclusive() {
    let r = run(
        &spans(&[traffic("v1", 1)]),
        &[("service", "payments"), ("source", "traces")],
    );
    assert_eq!(r.verdict, Verdict::Inconclusive);
    assert_eq!(r.source, "traces");
    assert!(
        r.reason.starts_with("no spans for service \"payments\""),
        "{}",
        r.reason
    );
}
