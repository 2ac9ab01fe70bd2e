//! The generated rules judged by Prometheus itself: `promtool check rules` accepts them, and
//! `promtool test rules` over synthetic Istio series shows the alerts fire exactly where the
//! workbook's arithmetic says, the budget left and the status queries read as computed.
//! Skipped (with a message) when promtool is absent and `CI` is unset.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use meshlens_slo::{parse_slo_file, rules_yaml, status_queries, LatencySlo, Slo};

fn promtool() -> Option<PathBuf> {
    let found = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is required in CI (Debian package prometheus)"
        );
        eprintln!("skipped: promtool not installed");
    }
    found
}

fn run(promtool: &Path, args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn slo(service: &str, ns: Option<&str>, latency_ms: Option<u64>, window_days: u64) -> Slo {
    Slo {
        service: service.into(),
        namespace: ns.map(Into::into),
        objective: 99.5,
        latency: latency_ms.map(|ms| LatencySlo {
            threshold: Duration::from_millis(ms),
            objective: 95.0,
        }),
        window: Duration::from_secs(window_days * 86_400),
        reporter: Default::default(),
    }
}

#[test]
fn promtool_check_rules_accepts_every_shape() {
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let slos = vec![
        slo("reviews", Some("default"), Some(300), 30),
        slo("reviews", Some("other"), Some(250), 28),
        slo("reviews", None, Some(1), 7),
        slo("ratings", None, None, 3),
        slo("details", None, Some(1_800_000), 90),
        slo("httpbin.org", Some("istio-system"), None, 30),
    ];
    std::fs::write(dir.path().join("rules.yaml"), rules_yaml(&slos)).unwrap();
    let (ok, out) = run(&promtool, &["check", "rules", "rules.yaml"], dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    // And the empty file.
    std::fs::write(dir.path().join("empty.yaml"), rules_yaml(&[])).unwrap();
    let (ok, out) = run(&promtool, &["check", "rules", "empty.yaml"], dir.path());
    assert!(ok, "{out}");
}

const SLO_FILE: &str = "\
slos:
  - service: ok
    objective: 99.9
  - service: broken
    objective: 99.9
  - service: degraded
    objective: 99.9
  - service: slow
    namespace: shop
    objective: 99.9
    latency: {threshold: 300ms, objective: 99}
";

/// Counters at `per_minute` requests a minute for 5 hours.
fn series(labels: &str, per_minute: u32) -> String {
    format!("      - series: '{labels}'\n        values: '0+{per_minute}x300'\n")
}

fn requests(service: &str, ns: &str, code: u16, per_minute: u32) -> String {
    series(
        &format!(
            "istio_requests_total{{reporter=\"destination\",destination_service_name=\"{service}\",\
             destination_service_namespace=\"{ns}\",response_code=\"{code}\"}}"
        ),
        per_minute,
    )
}

fn bucket(ns: &str, le: &str, per_minute: u32) -> String {
    series(
        &format!(
            "istio_request_duration_milliseconds_bucket{{reporter=\"destination\",\
             destination_service_name=\"slow\",destination_service_namespace=\"{ns}\",le=\"{le}\"}}"
        ),
        per_minute,
    )
}

fn input_series() -> String {
    let mut s = String::new();
    // ok: no errors; the 5xx the *source* proxies report must not count.
    s += &requests("ok", "default", 200, 1000);
    s += &requests("ok", "default", 500, 0);
    s += &series(
        "istio_requests_total{reporter=\"source\",destination_service_name=\"ok\",response_code=\"500\"}",
        1000,
    );
    // broken: 2 % errors, over 14.4 × the 0.1 % budget.
    s += &requests("broken", "default", 200, 980);
    s += &requests("broken", "default", 500, 20);
    // degraded: 0.2 %, 2 × the budget: only the 3d/6h ticket (1×) is crossed.
    s += &requests("degraded", "default", 200, 998);
    s += &requests("degraded", "default", 503, 2);
    // slow (namespace shop): no errors; 80 % under 250ms, 90 % under 500ms, so 82 % under
    // 300ms by interpolation: 18 % slow against a 1 % budget.
    s += &requests("slow", "shop", 200, 1000);
    s += &bucket("shop", "250", 800);
    s += &bucket("shop", "500", 900);
    s += &bucket("shop", "+Inf", 1000);
    // The same service name in another namespace, all slow and failing: must not count.
    s += &bucket("other", "250", 0);
    s += &bucket("other", "500", 0);
    s += &bucket("other", "+Inf", 1000);
    s += &series(
        "istio_requests_total{reporter=\"destination\",destination_service_name=\"slow\",\
         destination_service_namespace=\"other\",response_code=\"500\"}",
        1000,
    );
    s
}

/// (long, short, severity, factor, budget lasts) of the four alerts for a 30d window.
const BURNS: [(&str, &str, &str, &str, &str); 4] = [
    ("1h", "5m", "page", "14.4", "2d2h"),
    ("6h", "30m", "page", "6", "5d"),
    ("1d", "2h", "ticket", "3", "10d"),
    ("3d", "6h", "ticket", "1", "30d"),
];

/// One expected firing alert, written out independently of the generator.
fn alert(service: &str, ns: Option<&str>, slo: &str, burn: usize, value: &str) -> String {
    let (long, short, severity, factor, lasts) = BURNS[burn];
    let (budget, what) = match slo {
        "latency" => (1.0, "took longer than 300ms"),
        _ => (0.1, "failed (5xx)"),
    };
    let threshold = format!(
        "{}",
        (factor.parse::<f64>().unwrap() * budget * 1e6).round() / 1e6
    );
    let mut labels = vec![("service", service.to_string())];
    if let Some(n) = ns {
        labels.push(("namespace", n.to_string()));
    }
    labels.extend([
        ("slo", slo.to_string()),
        ("severity", severity.to_string()),
        ("long_window", long.to_string()),
        ("short_window", short.to_string()),
    ]);
    let mut s = String::from("          - exp_labels:\n");
    for (k, v) in labels {
        s += &format!("              {k}: {v}\n");
    }
    s += "            exp_annotations:\n";
    s += &format!(
        "              summary: \"{service} is spending its {slo} error budget {factor}x too fast ({long}/{short})\"\n"
    );
    s += &format!(
        "              description: \"{value} of requests to {service} {what} over the last {long}, and the last {short} \
         is over the threshold too: {threshold}% ({factor}x the {budget}% error budget). At this rate the 30d budget lasts {lasts}.\"\n"
    );
    s
}

fn expr_test(expr: &str, at: &str, samples: &[(&str, &str)]) -> String {
    let mut s = format!(
        "      - expr: '{}'\n        eval_time: {at}\n        exp_samples:\n",
        expr.replace('\'', "''")
    );
    for (labels, value) in samples {
        s += &format!("          - labels: '{labels}'\n            value: {value}\n");
    }
    s
}

#[test]
fn promtool_test_rules_fires_the_computed_alerts() {
    let Some(promtool) = promtool() else { return };
    let slos = parse_slo_file(SLO_FILE, "slo.yaml").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rules_yaml(&slos)).unwrap();

    let mut t = String::from("rule_files: [rules.yaml]\nevaluation_interval: 30s\ntests:\n  - interval: 1m\n    input_series:\n");
    t += &input_series();
    t += "    alert_rule_test:\n";
    // At 2h: every alert whose conditions hold and whose `for` has passed; the 3d/6h ticket
    // (for: 3h) is still pending for everyone, so `degraded` has nothing firing yet.
    t += "      - eval_time: 2h\n        alertname: SLOErrorBudgetBurn\n        exp_alerts:\n";
    for burn in 0..3 {
        t += &alert("broken", None, "availability", burn, "2%");
        t += &alert("slow", Some("shop"), "latency", burn, "18%");
    }
    // At 4h: all four for the 2 % and 18 % cases; only the 3d/6h ticket for 0.2 %.
    t += "      - eval_time: 4h\n        alertname: SLOErrorBudgetBurn\n        exp_alerts:\n";
    for burn in 0..4 {
        t += &alert("broken", None, "availability", burn, "2%");
        t += &alert("slow", Some("shop"), "latency", burn, "18%");
    }
    t += &alert("degraded", None, "availability", 3, "0.2%");

    t += "    promql_expr_test:\n";
    // Budget left over the 30d window: 1 - ratio / budget.
    t += &expr_test(
        "round(slo:error_budget_remaining:ratio, 0.001)",
        "4h",
        &[
            ("{service=\"ok\",slo=\"availability\"}", "1"),
            ("{service=\"broken\",slo=\"availability\"}", "-19"),
            ("{service=\"degraded\",slo=\"availability\"}", "-1"),
            (
                "{service=\"slow\",namespace=\"shop\",slo=\"availability\"}",
                "1",
            ),
            (
                "{service=\"slow\",namespace=\"shop\",slo=\"latency\"}",
                "-17",
            ),
        ],
    );
    t += &expr_test(
        "slo:objective:ratio{service=\"slow\"}",
        "4h",
        &[
            (
                "slo:objective:ratio{service=\"slow\",namespace=\"shop\",slo=\"availability\"}",
                "0.999",
            ),
            (
                "slo:objective:ratio{service=\"slow\",namespace=\"shop\",slo=\"latency\"}",
                "0.99",
            ),
        ],
    );
    // The server's status queries, run by Prometheus over the recorded series.
    let broken = status_queries(&slos[1]);
    let slow = status_queries(&slos[3]);
    let q = |qs: &[(String, String)], key: &str| {
        qs.iter()
            .find(|(k, _)| k == key)
            .map(|(_, q)| format!("round({q}, 0.001)"))
            .unwrap_or_else(|| panic!("no {key}"))
    };
    for key in [
        "burn_rate_5m",
        "burn_rate_1h",
        "burn_rate_3d",
        "burn_rate_30d",
    ] {
        t += &expr_test(
            &q(&broken, key),
            "4h",
            &[("{service=\"broken\",slo=\"availability\"}", "20")],
        );
        t += &expr_test(
            &q(&slow, key),
            "4h",
            &[
                (
                    "{service=\"slow\",namespace=\"shop\",slo=\"availability\"}",
                    "0",
                ),
                (
                    "{service=\"slow\",namespace=\"shop\",slo=\"latency\"}",
                    "18",
                ),
            ],
        );
    }
    t += &expr_test(
        &q(&broken, "error_budget_remaining"),
        "4h",
        &[("{service=\"broken\",slo=\"availability\"}", "-19")],
    );
    std::fs::write(dir.path().join("test.yaml"), &t).unwrap();

    let (ok, out) = run(&promtool, &["test", "rules", "test.yaml"], dir.path());
    assert!(
        ok,
        "promtool test rules failed:\n{out}\n--- test file:\n{t}"
    );
    assert!(out.contains("SUCCESS"), "{out}");

    // The test can fail: the same file against rules for a looser objective does.
    let loose = SLO_FILE.replace(
        "objective: 99.9\n  - service: degraded",
        "objective: 99\n  - service: degraded",
    );
    let slos = parse_slo_file(&loose, "slo.yaml").unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rules_yaml(&slos)).unwrap();
    let (ok, out) = run(&promtool, &["test", "rules", "test.yaml"], dir.path());
    assert!(
        !ok,
        "a 99% objective for broken should change the alerts:\n{out}"
    );
}

#[test]
fn duration_buckets_match_the_proxy() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy/src/telemetry/metrics.rs");
    let text = std::fs::read_to_string(&src).expect("read the proxy's metrics.rs");
    let start = text
        .find("DURATION_BUCKETS_MS: &[f64] = &[")
        .expect("DURATION_BUCKETS_MS in the proxy");
    let list = &text[start..];
    let open = list.find("= &[").unwrap() + 4;
    let close = list[open..].find(']').unwrap() + open;
    let proxy: Vec<f64> = list[open..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(proxy, meshlens_slo::DURATION_BUCKETS_MS);
}
