//! The canary judge on generated traffic with known answers: 20 intervals of 30 s per
//! version, per-request latencies and errors drawn from seeded generators, reduced per
//! interval to success rate, p50 and p99 latency and request count, as the collectors do.

use meshlens_verify::judge::{
    judge, to_text, Classification, Direction, JudgeOptions, Judgement, MetricSamples, MetricSpec,
    Verdict,
};

/// SplitMix64: a small, seeded, reproducible generator.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// One version's traffic.
#[derive(Clone, Copy)]
struct Traffic {
    /// Requests per 30 s interval.
    per_interval: usize,
    error_rate: f64,
    /// Median request latency (ms); latencies are log-normal with sigma 0.5.
    median_ms: f64,
}

const INTERVALS: usize = 20;

struct Series {
    success: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    requests: Vec<f64>,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

fn generate(t: Traffic, seed: u64) -> Series {
    let mut rng = Rng(seed);
    let mut s = Series {
        success: vec![],
        p50: vec![],
        p99: vec![],
        requests: vec![],
    };
    for _ in 0..INTERVALS {
        let mut lat = Vec::with_capacity(t.per_interval);
        let mut errors = 0;
        for _ in 0..t.per_interval {
            if rng.uniform() < t.error_rate {
                errors += 1;
            }
            lat.push(t.median_ms * (0.5 * rng.normal()).exp());
        }
        lat.sort_by(f64::total_cmp);
        let n = t.per_interval as f64;
        s.requests.push(n);
        if t.per_interval == 0 {
            s.success.push(f64::NAN);
            s.p50.push(f64::NAN);
            s.p99.push(f64::NAN);
        } else {
            s.success.push(1.0 - errors as f64 / n);
            s.p50.push(quantile(&lat, 0.5));
            s.p99.push(quantile(&lat, 0.99));
        }
    }
    s
}

fn spec(name: &str, direction: Direction, critical: bool, tolerance: f64) -> MetricSpec {
    MetricSpec {
        name: name.into(),
        direction,
        weight: 1.0,
        critical,
        tolerance,
        informational: false,
    }
}

fn metrics(base: &Series, can: &Series) -> Vec<MetricSamples> {
    let pair = |spec: MetricSpec, b: &Vec<f64>, c: &Vec<f64>| MetricSamples {
        spec,
        baseline: b.clone(),
        canary: c.clone(),
    };
    let mut requests = spec("requests", Direction::Either, false, 0.0);
    requests.informational = true;
    vec![
        pair(
            spec("success-rate", Direction::Decrease, true, 0.005),
            &base.success,
            &can.success,
        ),
        pair(
            spec("latency-p50", Direction::Increase, false, 0.1),
            &base.p50,
            &can.p50,
        ),
        pair(
            spec("latency-p99", Direction::Increase, false, 0.1),
            &base.p99,
            &can.p99,
        ),
        pair(requests, &base.requests, &can.requests),
    ]
}

const BASE: Traffic = Traffic {
    per_interval: 150,
    error_rate: 0.005,
    median_ms: 120.0,
};

fn run(name: &str, base: Traffic, can: Traffic) -> Judgement {
    let b = generate(base, 1);
    let c = generate(can, 2);
    let j = judge(&JudgeOptions::default(), &metrics(&b, &c));
    // The figures for the closing note (`cargo test -- --nocapture`).
    println!("== {name}\n{}", to_text(&j, "v1", "v2"));
    j
}

fn metric<'a>(j: &'a Judgement, name: &str) -> &'a meshlens_verify::judge::MetricResult {
    j.metrics.iter().find(|m| m.name == name).unwrap()
}

#[test]
fn identical_versions_pass() {
    let j = run("same traffic, different seeds", BASE, BASE);
    assert_eq!(j.verdict, Verdict::Pass, "{}", j.reason);
    assert_eq!(j.score, 100.0);
    for m in &j.metrics[..3] {
        assert_eq!(m.classification, Classification::Pass, "{}", m.reason);
    }
    // By chance these seeds give the baseline 6 errors and the canary 19 in 3000 requests
    // each: significant (p = 0.0092, SciPy agrees) but within the 0.5 % tolerance.
    let sr = metric(&j, "success-rate");
    assert!(
        sr.reason.contains("within the 0.5 % tolerance"),
        "{}",
        sr.reason
    );
    assert!(metric(&j, "latency-p50").p_value.unwrap() > 0.02);
    assert_eq!(metric(&j, "requests").classification, Classification::Info);

    // Literally the same values: U = n²/2 and p = 1.
    let b = generate(BASE, 7);
    let j = judge(&JudgeOptions::default(), &metrics(&b, &b));
    assert_eq!(j.verdict, Verdict::Pass);
    for m in &j.metrics[..3] {
        assert_eq!(m.u, Some(200.0));
        assert_eq!(m.p_value, Some(1.0));
        assert_eq!(m.effect, Some(1.0));
    }
}

#[test]
fn eight_percent_errors_fail() {
    let can = Traffic {
        error_rate: 0.08,
        ..BASE
    };
    let j = run("8 % vs 0.5 % errors", BASE, can);
    assert_eq!(j.verdict, Verdict::Fail, "{}", j.reason);
    let m = metric(&j, "success-rate");
    assert_eq!(m.classification, Classification::Low, "{}", m.reason);
    assert!(m.p_value.unwrap() < 1e-6, "{}", m.reason);
    let e = m.effect.unwrap();
    assert!((0.90..0.95).contains(&e), "effect {e}");
    assert!(m.reason.contains("lower is worse"), "{}", m.reason);
    assert!(
        j.reason.contains("critical metric success-rate failed"),
        "{}",
        j.reason
    );
    // Latency did not change: those metrics pass.
    assert_eq!(
        metric(&j, "latency-p50").classification,
        Classification::Pass
    );
}

#[test]
fn triple_latency_fails() {
    let can = Traffic {
        median_ms: 3.0 * BASE.median_ms,
        ..BASE
    };
    let j = run("3x latency", BASE, can);
    assert_eq!(j.verdict, Verdict::Fail, "{}", j.reason);
    for name in ["latency-p50", "latency-p99"] {
        let m = metric(&j, name);
        assert_eq!(m.classification, Classification::High, "{}", m.reason);
        // Complete separation of 20 vs 20 values: z = 5.40, p = 6.8e-8.
        assert!(m.p_value.unwrap() < 1e-7, "{}", m.reason);
        assert_eq!(m.u, Some(400.0));
        let e = m.effect.unwrap();
        assert!((2.5..3.5).contains(&e), "effect {e}");
        assert!(m.reason.contains("higher is worse"), "{}", m.reason);
    }
    // Two of three judged metrics failed: score 33.3, below 95.
    assert!((j.score - 100.0 / 3.0).abs() < 1e-9, "{}", j.score);
    assert!(
        j.reason.starts_with("fail: score 33.3 < 95"),
        "{}",
        j.reason
    );
}

#[test]
fn slightly_better_canary_passes() {
    let can = Traffic {
        error_rate: 0.003,
        median_ms: 0.95 * BASE.median_ms,
        ..BASE
    };
    let j = run("slightly better canary", BASE, can);
    assert_eq!(j.verdict, Verdict::Pass, "{}", j.reason);
    assert_eq!(j.score, 100.0);
    let m = metric(&j, "latency-p50");
    assert!(m.effect.unwrap() < 1.0, "{}", m.reason);
}

#[test]
fn much_better_canary_passes_although_significant() {
    let can = Traffic {
        median_ms: 0.5 * BASE.median_ms,
        ..BASE
    };
    let j = run("2x faster canary", BASE, can);
    assert_eq!(j.verdict, Verdict::Pass, "{}", j.reason);
    let m = metric(&j, "latency-p50");
    assert!(m.p_value.unwrap() < 1e-6);
    assert_eq!(m.classification, Classification::Pass);
    assert!(m.reason.contains("lower is better"), "{}", m.reason);
}

/// Verdict counts over 100 independent seed pairs: how often each scenario passes.
fn pass_rate(can: Traffic) -> usize {
    (0..100u64)
        .filter(|i| {
            let b = generate(BASE, 1000 + 2 * i);
            let c = generate(can, 1001 + 2 * i);
            judge(&JudgeOptions::default(), &metrics(&b, &c)).verdict == Verdict::Pass
        })
        .count()
}

#[test]
fn verdicts_hold_over_100_seed_pairs() {
    let same = pass_rate(BASE);
    let errors = pass_rate(Traffic {
        error_rate: 0.08,
        ..BASE
    });
    let slow = pass_rate(Traffic {
        median_ms: 3.0 * BASE.median_ms,
        ..BASE
    });
    let better = pass_rate(Traffic {
        error_rate: 0.003,
        median_ms: 0.95 * BASE.median_ms,
        ..BASE
    });
    println!(
        "passes out of 100 seed pairs: identical {same}, 8 % errors {errors}, 3x latency {slow}, slightly better {better}"
    );
    // Three judged metrics at alpha 0.02 with tolerances: false failures must stay rare.
    assert!(same >= 95, "identical versions passed {same}/100");
    assert_eq!(errors, 0);
    assert_eq!(slow, 0);
    assert!(better >= 95, "slightly better canary passed {better}/100");
}

#[test]
fn nan_and_outliers_are_dropped() {
    let b = generate(BASE, 1);
    let mut c = generate(BASE, 2);
    // Three intervals without traffic and one wild interval (a GC pause) on the canary.
    c.p50[3] = f64::NAN;
    c.p50[9] = f64::NAN;
    c.p50[15] = f64::NAN;
    c.p50[5] = 50_000.0;
    let mut ms = metrics(&b, &c);
    ms.truncate(2);
    let j = judge(&JudgeOptions::default(), &ms);
    let m = metric(&j, "latency-p50");
    assert_eq!(m.canary.nan_removed, 3);
    assert_eq!(m.canary.outliers_removed, 1, "{:?}", m.canary);
    assert_eq!(m.canary.n, 16);
    assert_eq!(m.classification, Classification::Pass, "{}", m.reason);
    assert_eq!(j.verdict, Verdict::Pass, "{}", j.reason);

    // Without outlier removal the wild interval stays in the mean (but the rank test
    // is unmoved by it).
    let keep = JudgeOptions {
        outlier_iqr: None,
        ..JudgeOptions::default()
    };
    let j2 = judge(&keep, &ms);
    let m2 = metric(&j2, "latency-p50");
    assert_eq!(m2.canary.outliers_removed, 0);
    assert_eq!(m2.canary.n, 17);
    assert!(m2.canary.mean.unwrap() > 2_000.0);
}

#[test]
fn too_few_values_are_inconclusive() {
    // Ten requests in the whole window: two intervals with data, the rest NaN.
    let b = generate(BASE, 1);
    let mut c = generate(BASE, 2);
    for i in 2..INTERVALS {
        c.success[i] = f64::NAN;
        c.p50[i] = f64::NAN;
        c.p99[i] = f64::NAN;
    }
    let j = judge(&JudgeOptions::default(), &metrics(&b, &c));
    assert_eq!(j.verdict, Verdict::Inconclusive, "{}", j.reason);
    assert_eq!(j.score, 0.0);
    for m in &j.metrics[..3] {
        assert_eq!(m.classification, Classification::NoData);
        assert_eq!(m.verdict, Verdict::Inconclusive);
        assert!(m.reason.contains("too few values"), "{}", m.reason);
    }
    assert!(j.reason.starts_with("inconclusive"), "{}", j.reason);
    assert_eq!(
        judge(&JudgeOptions::default(), &[]).verdict,
        Verdict::Inconclusive
    );

    // A critical metric without data keeps a run inconclusive even when the rest pass.
    let mut c2 = generate(BASE, 2);
    c2.success = vec![f64::NAN; INTERVALS];
    let j = judge(&JudgeOptions::default(), &metrics(&b, &c2));
    assert_eq!(j.verdict, Verdict::Inconclusive, "{}", j.reason);
    assert_eq!(j.score, 100.0);
}

#[test]
fn critical_failure_fails_at_high_score() {
    let b = generate(BASE, 1);
    let c = generate(
        Traffic {
            error_rate: 0.08,
            ..BASE
        },
        2,
    );
    let mut ms = metrics(&b, &c);
    ms[0].spec.weight = 0.01;
    let j = judge(&JudgeOptions::default(), &ms);
    println!(
        "== critical failure at high score\n{}",
        to_text(&j, "v1", "v2")
    );
    assert!(j.score > 99.0, "{}", j.score);
    assert_eq!(j.verdict, Verdict::Fail, "{}", j.reason);
    // The same failure on a non-critical metric passes at that score.
    ms[0].spec.critical = false;
    let j = judge(&JudgeOptions::default(), &ms);
    assert_eq!(j.verdict, Verdict::Pass, "{}", j.reason);
}

#[test]
fn zero_baseline_uses_absolute_difference() {
    let zero = MetricSamples {
        spec: spec("errors", Direction::Increase, false, 0.5),
        baseline: vec![0.0; 10],
        canary: vec![3.0, 4.0, 2.0, 5.0, 3.0, 4.0, 3.0, 2.0, 6.0, 3.0],
    };
    let j = judge(&JudgeOptions::default(), std::slice::from_ref(&zero));
    let m = &j.metrics[0];
    assert_eq!(m.effect, None);
    assert_eq!(m.classification, Classification::High, "{}", m.reason);
    assert!(m.reason.contains("means differ by +3.5"), "{}", m.reason);
    // Within an absolute tolerance of 5 it passes.
    let mut tolerant = zero.clone();
    tolerant.spec.tolerance = 5.0;
    let j = judge(&JudgeOptions::default(), &[tolerant]);
    assert_eq!(j.metrics[0].classification, Classification::Pass);
    assert!(
        j.metrics[0].reason.contains("absolute"),
        "{}",
        j.metrics[0].reason
    );
}

#[test]
fn either_direction_flags_both_ways() {
    let b: Vec<f64> = (0..20).map(|i| 100.0 + i as f64).collect();
    let lower: Vec<f64> = b.iter().map(|v| v * 0.5).collect();
    let m = MetricSamples {
        spec: spec("queue-depth", Direction::Either, false, 0.1),
        baseline: b,
        canary: lower,
    };
    let j = judge(&JudgeOptions::default(), &[m]);
    assert_eq!(j.metrics[0].classification, Classification::Low);
    assert_eq!(j.verdict, Verdict::Fail);
}

#[test]
fn report_serializes_as_the_contract_says() {
    let j = run("json shape", BASE, BASE);
    let v = serde_json::to_value(&j).unwrap();
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["metrics"][0]["classification"], "pass");
    assert_eq!(v["metrics"][0]["direction"], "decrease");
    assert_eq!(v["metrics"][3]["classification"], "info");
    assert!(v["metrics"][0]["p_value"].is_number());
    let text = to_text(&j, "v1", "v2");
    assert!(
        text.starts_with("PASS  score 100/100  baseline v1, canary v2"),
        "{text}"
    );
    assert!(text.contains("BASELINE v1"), "{text}");
    assert!(text.contains("success-rate"), "{text}");
}
