//! The Istio collector over the real PromQL engine and generated destination-proxy series
//! with known answers.

mod collect_support;

use collect_support::gen::Traffic;
use collect_support::{params, EngineQuery, MemMetrics, MemSpans};
use meshlens_verify::collect::{parse_request, verify, Report, VerifyError};
use meshlens_verify::judge::{JudgeOptions, Verdict};

const END: i64 = 1_700_000_100_000;
const WINDOW: i64 = 600_000;

fn store(traffic: &[Traffic]) -> EngineQuery {
    let mut m = MemMetrics::default();
    for t in traffic {
        m.add(t.series(END, WINDOW + 120_000));
    }
    EngineQuery::new(m)
}

fn run_with(q: &EngineQuery, extra: &[(&str, &str)]) -> Result<Report, VerifyError> {
    let end = (END / 1000).to_string();
    let mut p = vec![
        ("service", "reviews"),
        ("baseline", "v1"),
        ("canary", "v2"),
        ("end", end.as_str()),
    ];
    p.extend_from_slice(extra);
    let req = parse_request(&params(&p), 0)?;
    verify(&req, q, &MemSpans::default(), &JudgeOptions::default())
}

fn run(traffic: &[Traffic]) -> Report {
    run_with(&store(traffic), &[]).expect("verify")
}

fn metric<'a>(r: &'a Report, name: &str) -> &'a meshlens_verify::judge::MetricResult {
    r.metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name} in {r:#?}"))
}

#[test]
fn identical_versions_pass() {
    let r = run(&[
        Traffic::new("reviews", "v1", 1),
        Traffic::new("reviews", "v2", 2),
    ]);
    assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
    assert_eq!(r.source, "metrics");
    assert_eq!(r.window, "10m");
    assert_eq!(r.step, "30s");
    assert_eq!(r.end - r.start, WINDOW);
    // 20 req/s for 10 minutes, ± the scrape jitter.
    for side in [&r.baseline, &r.canary] {
        assert!(
            (10_000..14_000).contains(&side.requests),
            "requests {}",
            side.requests
        );
    }
    let names: Vec<&str> = r.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["success-rate", "latency-p50", "latency-p99", "requests"]
    );
    let p50 = metric(&r, "latency-p50");
    assert_eq!(p50.baseline.n, 20, "one value per 30 s step");
    let median = p50.baseline.median.unwrap();
    // The histogram quantile of a log-normal around 20 ms, within its 10-25 ms bucket.
    assert!((10.0..=25.0).contains(&median), "p50 {median}");
}

#[test]
fn eight_percent_errors_fail_on_the_critical_success_rate() {
    let mut bad = Traffic::new("reviews", "v2", 2);
    bad.error_share = 0.08;
    let r = run(&[Traffic::new("reviews", "v1", 1), bad]);
    assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
    let sr = metric(&r, "success-rate");
    assert_eq!(sr.verdict, Verdict::Fail);
    assert!(sr.critical);
    let (b, c) = (sr.baseline.mean.unwrap(), sr.canary.mean.unwrap());
    assert!((0.985..=1.0).contains(&b), "baseline success {b}");
    assert!((0.89..=0.95).contains(&c), "canary success {c}");
}

#[test]
fn triple_latency_fails() {
    let mut slow = Traffic::new("reviews", "v2", 2);
    slow.median_ms = 60.0;
    let r = run(&[Traffic::new("reviews", "v1", 1), slow]);
    assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
    assert_eq!(metric(&r, "latency-p50").verdict, Verdict::Fail);
    assert_eq!(metric(&r, "success-rate").verdict, Verdict::Pass);
}

#[test]
fn a_slightly_better_canary_passes() {
    let mut better = Traffic::new("reviews", "v2", 2);
    better.median_ms = 18.0;
    better.error_share = 0.003;
    let r = run(&[Traffic::new("reviews", "v1", 1), better]);
    assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
}

#[test]
fn ten_requests_are_inconclusive_naming_the_version_and_count() {
    let mut thin = Traffic::new("reviews", "v2", 2);
    thin.total = Some(10);
    let r = run(&[Traffic::new("reviews", "v1", 1), thin]);
    assert_eq!(r.verdict, Verdict::Inconclusive, "{r:#?}");
    assert!(r.canary.requests <= 10, "{}", r.canary.requests);
    assert!(r.reason.contains("canary \"v2\" has"), "{}", r.reason);
    assert!(r.reason.contains("min_requests 50"), "{}", r.reason);
    assert!(!r.reason.contains("baseline \"v1\""), "{}", r.reason);
}

#[test]
fn an_unknown_version_is_inconclusive_never_a_pass() {
    let q = store(&[Traffic::new("reviews", "v1", 1)]);
    let r = run_with(&q, &[]).unwrap();
    assert_eq!(r.verdict, Verdict::Inconclusive);
    assert_eq!(r.canary.requests, 0);
    assert!(
        r.reason
            .contains("canary \"v2\" has 0 requests (no data for it)"),
        "{}",
        r.reason
    );
}

#[test]
fn an_unknown_service_is_inconclusive_with_a_reason() {
    let q = store(&[
        Traffic::new("reviews", "v1", 1),
        Traffic::new("reviews", "v2", 2),
    ]);
    let r = run_with(&q, &[("service", "ratings")]).unwrap();
    assert_eq!(r.verdict, Verdict::Inconclusive);
    assert!(
        r.reason
            .contains("no Istio request metrics and no spans for service \"ratings\""),
        "{}",
        r.reason
    );
    let r = run_with(&q, &[("service", "ratings"), ("source", "metrics")]).unwrap();
    assert_eq!(r.verdict, Verdict::Inconclusive);
    assert!(
        r.reason.starts_with("no Istio request metrics"),
        "{}",
        r.reason
    );
}

#[test]
fn a_namespace_that_does_not_match_finds_nothing() {
    let q = store(&[
        Traffic::new("reviews", "v1", 1),
        Traffic::new("reviews", "v2", 2),
    ]);
    let r = run_with(&q, &[("namespace", "prod")]).unwrap();
    assert_eq!(r.verdict, Verdict::Inconclusive);
    assert!(r.reason.contains("in namespace \"prod\""), "{}", r.reason);
    let r = run_with(&q, &[("namespace", "default")]).unwrap();
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.reason);
}

#[test]
fn the_service_is_also_found_by_its_app_label() {
    let q = store(&[
        Traffic::new("reviews", "v1", 1),
        Traffic::new("reviews", "v2", 2),
    ]);
    // Drop destination_service_name: only destination_app names the service.
    let mut m = MemMetrics::default();
    for (l, s) in &q.store.series {
        let pairs: Vec<(String, String)> = l
            .iter()
            .filter(|x| x.name != "destination_service_name")
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect();
        m.series
            .insert(meshlens_model::Labels::from_pairs(pairs), s.clone());
    }
    let q = EngineQuery::new(m);
    let r = run_with(&q, &[]).unwrap();
    assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
    assert!(q
        .seen
        .lock()
        .iter()
        .any(|s| s.contains("destination_app=\"reviews\"")));
}

#[test]
fn custom_metrics_substitute_the_version() {
    let mut bad = Traffic::new("reviews", "v2", 2);
    bad.error_share = 0.08;
    let q = store(&[Traffic::new("reviews", "v1", 1), bad]);
    let expr = "errors=sum(rate(istio_requests_total{destination_version=\"$version\",response_code=~\"5..\"}[30s]))";
    let r = run_with(
        &q,
        &[("metric", expr), ("metric_direction", "errors:increase")],
    )
    .unwrap();
    let m = metric(&r, "errors");
    assert_eq!(m.verdict, Verdict::Fail, "{m:#?}");
    let seen = q.seen.lock();
    assert!(seen
        .iter()
        .any(|s| s.contains("destination_version=\"v1\",response_code")));
    assert!(seen
        .iter()
        .any(|s| s.contains("destination_version=\"v2\",response_code")));
}

#[test]
fn bad_promql_in_a_metric_is_a_usage_error() {
    let q = store(&[Traffic::new("reviews", "v1", 1)]);
    let e = run_with(&q, &[("metric", "errors=sum(rate(x[1m])")]).unwrap_err();
    assert_eq!(e.http_status(), 400);
    let msg = e.to_string();
    assert!(msg.contains("\"metric\""), "{msg}");
    assert!(msg.contains("errors"), "{msg}");
    assert!(q.seen.lock().is_empty(), "nothing runs before the check");
}

#[test]
fn a_metric_with_many_series_must_be_aggregated() {
    let q = store(&[
        Traffic::new("reviews", "v1", 1),
        Traffic::new("reviews", "v2", 2),
    ]);
    let e = run_with(
        &q,
        &[(
            "metric",
            "codes=rate(istio_requests_total{destination_version=\"$version\"}[30s])",
        )],
    )
    .unwrap_err();
    assert_eq!(e.http_status(), 400);
    assert!(e.to_string().contains("aggregate it"), "{e}");
}

#[test]
fn the_text_report_names_both_versions_and_every_metric() {
    let mut bad = Traffic::new("reviews", "v2", 2);
    bad.error_share = 0.08;
    let r = run(&[Traffic::new("reviews", "v1", 1), bad]);
    let text = meshlens_verify::collect::render_text(&r);
    println!("{text}");
    assert!(text.contains("baseline v1 vs canary v2"), "{text}");
    for m in &r.metrics {
        assert!(text.contains(&m.name), "{text}");
        assert!(text.contains(&m.reason), "{text}");
    }
    assert!(text.contains("verdict: FAIL"), "{text}");
    // The JSON form round-trips, as the CLI reads it.
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["verdict"], "fail");
    assert_eq!(json["baseline"]["version"], "v1");
    let back: Report = serde_json::from_value(json).unwrap();
    assert_eq!(back.verdict, r.verdict);
}
