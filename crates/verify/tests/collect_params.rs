//! `GET /api/v1/verify`'s parameters: defaults, and usage errors that name the parameter.

mod collect_support;

use collect_support::params;
use meshlens_verify::collect::{parse_request, Source, VerifyError};
use meshlens_verify::judge::Direction;

const NOW: i64 = 1_700_000_000_000;

fn base() -> Vec<(&'static str, &'static str)> {
    vec![("service", "reviews"), ("baseline", "v1"), ("canary", "v2")]
}

fn err(extra: &[(&str, &str)]) -> (String, String) {
    let mut p = base();
    p.extend_from_slice(extra);
    match parse_request(&params(&p), NOW) {
        Err(VerifyError::Usage { param, message }) => (param, message),
        other => panic!("expected a usage error for {extra:?}, got {other:?}"),
    }
}

#[test]
fn defaults() {
    let r = parse_request(&params(&base()), NOW).unwrap();
    assert_eq!(r.service, "reviews");
    assert_eq!((r.window_ms, r.step_ms, r.end_ms), (600_000, 30_000, NOW));
    assert_eq!(r.min_requests, 50);
    assert_eq!(r.source, Source::Auto);
    assert_eq!(r.namespace, None);
    assert!(r.custom.is_empty());
    let ends = r.interval_ends();
    assert_eq!(ends.len(), 20);
    assert_eq!(*ends.last().unwrap(), NOW);
    assert_eq!(r.start_ms(), NOW - 600_000);
}

#[test]
fn everything_set() {
    let mut p = base();
    p.extend([
        ("namespace", "bookinfo"),
        ("window", "1h"),
        ("step", "1m"),
        ("end", "2023-11-14T22:13:20Z"),
        ("min_requests", "7"),
        ("source", "traces"),
        ("metric", "errs=sum(x{v=\"$version\"})"),
        ("metric_direction", "errs:increase"),
        ("_", "123"),
    ]);
    let r = parse_request(&params(&p), 0).unwrap();
    assert_eq!(r.namespace.as_deref(), Some("bookinfo"));
    assert_eq!((r.window_ms, r.step_ms, r.end_ms), (3_600_000, 60_000, NOW));
    assert_eq!(r.min_requests, 7);
    assert_eq!(r.source, Source::Traces);
    assert_eq!(r.custom.len(), 1);
    assert_eq!(r.custom[0].name, "errs");
    assert_eq!(r.custom[0].expr, "sum(x{v=\"$version\"})");
    assert_eq!(r.custom[0].direction, Direction::Increase);
}

#[test]
fn missing_required_parameters_are_named() {
    for missing in ["service", "baseline", "canary"] {
        let p: Vec<_> = base().into_iter().filter(|(k, _)| *k != missing).collect();
        match parse_request(&params(&p), NOW) {
            Err(VerifyError::Usage { param, message }) => {
                assert_eq!(param, missing);
                assert!(message.contains("missing"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn bad_values_name_their_parameter() {
    for (k, v) in [
        ("window", "ten minutes"),
        ("step", "-1s"),
        ("window", "0"),
        ("end", "yesterday"),
        ("min_requests", "-3"),
        ("source", "logs"),
        ("metric", "no-equals-sign"),
        ("metric", "=sum(x)"),
        ("metric", "bad name=sum(x)"),
        ("metric", "success-rate=sum(x)"),
        ("metric", "e="),
        ("metric_direction", "e:sideways"),
        ("service", ""),
    ] {
        let (param, message) = err(&[(k, v)]);
        assert_eq!(param, k, "{k}={v}: {message}");
        assert!(!message.is_empty());
    }
}

#[test]
fn contradictions_are_refused() {
    let (p, m) = err(&[("step", "20m")]);
    assert_eq!(p, "step");
    assert!(m.contains("longer than the window"), "{m}");
    let (p, m) = err(&[("canary", "v1")]);
    assert_eq!(p, "canary");
    assert!(m.contains("same version"), "{m}");
    let (p, m) = err(&[("metric_direction", "nope:increase")]);
    assert_eq!(p, "metric_direction");
    assert!(m.contains("no metric named \"nope\""), "{m}");
    let (p, _) = err(&[("metric", "a=x"), ("metric", "a=y")]);
    assert_eq!(p, "metric");
    let (p, _) = err(&[("window", "100d"), ("step", "1ms")]);
    assert_eq!(p, "step");
}

#[test]
fn unknown_parameters_are_refused_by_name() {
    let (p, m) = err(&[("min_request", "10")]);
    assert_eq!(p, "min_request");
    assert!(m.contains("unknown parameter"), "{m}");
}

#[test]
fn usage_errors_are_400() {
    let e = parse_request(&params(&[]), NOW).unwrap_err();
    assert_eq!(e.http_status(), 400);
    assert!(e.to_string().contains("\"service\""), "{e}");
}
