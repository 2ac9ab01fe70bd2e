// Several expected values are Prometheus's, one ulp off the `std` constants on purpose.
#![allow(clippy::approx_constant)]

use super::*;

fn h(s: &str) -> FloatHistogram {
    FloatHistogram::parse_notation(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn sp(spans: &[(i32, u32)]) -> Vec<BucketSpan> {
    spans
        .iter()
        .map(|&(offset, length)| BucketSpan { offset, length })
        .collect()
}

/// An exponential histogram from the fields the Prometheus Go tests set.
#[allow(clippy::too_many_arguments)]
fn exp(
    schema: i32,
    zero_threshold: f64,
    zero_count: f64,
    count: f64,
    sum: f64,
    pos: &[(i32, u32)],
    pos_buckets: &[f64],
    neg: &[(i32, u32)],
    neg_buckets: &[f64],
) -> FloatHistogram {
    FloatHistogram {
        schema,
        zero_threshold,
        zero_count,
        count,
        sum,
        positive_spans: sp(pos),
        positive_buckets: pos_buckets.to_vec(),
        negative_spans: sp(neg),
        negative_buckets: neg_buckets.to_vec(),
        ..Default::default()
    }
}

fn custom(
    count: f64,
    sum: f64,
    spans: &[(i32, u32)],
    buckets: &[f64],
    bounds: &[f64],
) -> FloatHistogram {
    FloatHistogram {
        schema: CUSTOM_BUCKETS_SCHEMA,
        count,
        sum,
        positive_spans: sp(spans),
        positive_buckets: buckets.to_vec(),
        custom_values: bounds.to_vec(),
        ..Default::default()
    }
}

fn compacted(mut x: FloatHistogram) -> FloatHistogram {
    x.compact(0);
    x
}

/// As Prometheus's `testHistogramAdd`: both orders, compared exactly after compaction,
/// the argument left unchanged.
fn check_add(a: &FloatHistogram, b: &FloatHistogram, expected: &FloatHistogram, reconciled: bool) {
    a.validate().unwrap();
    b.validate().unwrap();
    for (x, y) in [(a, b), (b, a)] {
        let mut res = x.clone();
        let y_before = y.clone();
        let info = res.add_with_info(y).unwrap();
        assert_eq!(compacted(res), compacted(expected.clone()), "{x:?} + {y:?}");
        assert_eq!(info.custom_bounds_reconciled, reconciled);
        assert!(!info.counter_reset_collision);
        assert_eq!(*y, y_before);
    }
}

fn check_sub(a: &FloatHistogram, b: &FloatHistogram, expected: &FloatHistogram) {
    let mut res = a.clone();
    res.sub(b).unwrap();
    assert_eq!(compacted(res), compacted(expected.clone()));
}

fn assert_close(got: f64, want: f64) {
    let ok = (got.is_nan() && want.is_nan())
        || got == want
        || ((got - want).abs() / (got.abs() + want.abs())) < 1e-6;
    assert!(ok, "got {got}, want {want}");
}

// ---- bounds ----

fn bounds_of(x: &FloatHistogram) -> Vec<(f64, f64)> {
    x.buckets().iter().map(|b| (b.lower, b.upper)).collect()
}

#[test]
fn histogram_bounds_schema_0() {
    let x = h("{{schema:0 offset:-1 buckets:[1 1 1 1]}}");
    assert_eq!(
        bounds_of(&x),
        vec![(0.25, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 4.0)]
    );
    let b = &x.buckets()[0];
    assert!(!b.lower_inclusive && b.upper_inclusive);
}

#[test]
fn histogram_bounds_schema_3() {
    let x = h("{{schema:3 buckets:[1 1 1 1 1 1 1 1 1]}}");
    let got = bounds_of(&x);
    // Upper bounds 2^(i/8), as Prometheus has them (2^(4/8) is one ulp below sqrt(2)).
    let uppers = [
        1.0,
        1.0905077326652577,
        1.189207115002721,
        1.2968395546510096,
        1.414213562373095,
        1.5422108254079407,
        1.6817928305074288,
        1.8340080864093422,
        2.0,
    ];
    for (i, (lower, upper)) in got.iter().enumerate() {
        assert_eq!(*upper, uppers[i], "bucket {i}");
        if i > 0 {
            assert_eq!(*lower, uppers[i - 1]);
        }
    }
    assert_eq!(got[0].0, 0.9170040432046711);
}

#[test]
fn histogram_bounds_schema_minus_2() {
    let x = h("{{schema:-2 offset:-1 buckets:[1 1 1]}}");
    assert_eq!(
        bounds_of(&x),
        vec![(1.0 / 256.0, 1.0 / 16.0), (1.0 / 16.0, 1.0), (1.0, 16.0)]
    );
    // Negative side mirrored, listed from the lowest value up.
    let n = h("{{schema:-2 n_buckets:[1 2]}}");
    assert_eq!(bounds_of(&n), vec![(-16.0, -1.0), (-1.0, -1.0 / 16.0)]);
    let b = &n.buckets()[0];
    assert!(b.lower_inclusive && !b.upper_inclusive);
}

#[test]
fn histogram_bounds_extremes() {
    assert_eq!(exponential_bound(1024, 0), f64::MAX);
    assert_eq!(exponential_bound(256, -2), f64::MAX);
    assert_eq!(exponential_bound(-1074, 0), 5e-324);
    assert_eq!(exponential_bound(-1075, 0), 0.0);
    assert_eq!(exponential_bound(1 << 8, 8), 2.0);
    assert_eq!(exponential_bound(1, 8), 1.0027112750502025);
    assert_eq!(exponential_bound(-1, 1), 0.7071067811865475);
    assert_eq!(exponential_bound(3, 4), 1.1387886347566916);
}

#[test]
fn histogram_bounds_custom() {
    let x = h("{{schema:-53 custom_values:[1 2.5 10] buckets:[1 2 3 4]}}");
    let b = x.buckets();
    assert_eq!(
        bounds_of(&x),
        vec![
            (f64::NEG_INFINITY, 1.0),
            (1.0, 2.5),
            (2.5, 10.0),
            (10.0, f64::INFINITY)
        ]
    );
    // Prometheus marks the first custom bucket as closed on both ends, the others (a,b].
    assert!(b[0].lower_inclusive && b[0].upper_inclusive);
    assert!(!b[1].lower_inclusive && b[1].upper_inclusive);
    assert!(!b[3].lower_inclusive && b[3].upper_inclusive);
}

#[test]
fn histogram_buckets_clamped_to_zero_threshold() {
    // Bucket -1 of schema 0 is (0.25, 0.5], reaching into a zero bucket of width 0.3.
    let x = h(
        "{{schema:0 z_bucket:2 z_bucket_w:0.3 offset:-1 buckets:[1 1] n_offset:-1 n_buckets:[1]}}",
    );
    assert_eq!(
        bounds_of(&x),
        vec![(-0.5, -0.3), (-0.3, 0.3), (0.3, 0.5), (0.5, 1.0)]
    );
    // Without observations the zero bucket is not listed.
    let y = h("{{schema:0 z_bucket_w:0.3 buckets:[1]}}");
    assert_eq!(bounds_of(&y), vec![(0.5, 1.0)]);
}

// ---- quantile, fraction, stddev, stdvar ----

#[test]
fn histogram_quantile_single() {
    let x = h("{{schema:0 sum:5 count:4 buckets:[1 2 1]}}");
    assert_eq!(quantile(0.5, &x), 1.414213562373095);
    assert_eq!(quantile(1.001, &x), f64::INFINITY);
    assert_eq!(quantile(-0.1, &x), f64::NEG_INFINITY);
    assert!(quantile(f64::NAN, &x).is_nan());
    assert!(quantile(0.5, &FloatHistogram::default()).is_nan());
    let neg = h("{{schema:0 sum:-5 count:4 n_buckets:[1 2 1]}}");
    assert_eq!(quantile(0.5, &neg), -1.414213562373095);
    let zero = h("{{schema:0 z_bucket:1 z_bucket_w:0.5 sum:0.25 count:1}}");
    assert_eq!(quantile(0.5, &zero), 0.0);
    // In a run of empty buckets: the lower bound of the next populated one.
    let mut balanced = h("{{schema:0 sum:4 count:4 buckets:[1 2 1]}}");
    balanced
        .add(&h("{{schema:0 sum:-4 count:4 n_buckets:[1 2 1]}}"))
        .unwrap();
    assert_eq!(quantile(0.5, &balanced), 0.5);
}

#[test]
fn histogram_quantile_script_cases() {
    // native_histograms.test, histogram_quantile_1/2/3.
    let q1 = h("{{schema:0 count:12 sum:100 z_bucket:2 z_bucket_w:0.001 buckets:[2 3 0 1 4]}}");
    for (q, want) in [
        (1.0, 16.0),
        (0.99, 15.67072476139083),
        (0.9, 12.99603834169977),
        (0.6, 4.594793419988138),
        (0.5, 1.5874010519681994),
        (0.1, 0.0006),
        (0.0, 0.0),
    ] {
        assert_close(quantile(q, &q1), want);
    }
    let q2 = h("{{schema:0 count:12 sum:100 z_bucket:2 z_bucket_w:0.001 n_buckets:[2 3 0 1 4]}}");
    for (q, want) in [
        (1.0, 0.0),
        (0.99, -0.00006),
        (0.9, -0.0006),
        (0.5, -1.5874010519681996),
        (0.1, -12.996038341699768),
        (0.0, -16.0),
    ] {
        assert_close(quantile(q, &q2), want);
    }
    let q3 = h("{{schema:0 count:24 sum:100 z_bucket:4 z_bucket_w:0.001 buckets:[2 3 0 1 4] n_buckets:[2 3 0 1 4]}}");
    for (q, want) in [
        (0.99, 15.34822590920423),
        (0.9, 10.556063286183155),
        (0.7, 1.2030250360821164),
        (0.55, 0.0006),
        (0.5, 0.0),
        (0.45, -0.0006),
        (0.3, -1.2030250360821169),
        (0.01, -15.34822590920423),
    ] {
        assert_close(quantile(q, &q3), want);
    }
    for (s, want) in [
        ("{{schema:-1 sum:6 count:5 buckets:[0 5]}}", 2.0),
        ("{{schema:1 sum:4 count:5 buckets:[0 5]}}", 1.189207),
        ("{{schema:-1 sum:6 count:5 buckets:[0 0 5]}}", 8.0),
        (
            "{{schema:0 sum:4 count:5 buckets:[0 0 5]}}",
            2.82842712474619,
        ),
        (
            "{{schema:1 sum:4 count:5 buckets:[0 0 5]}}",
            1.6817928305074292,
        ),
    ] {
        assert_close(quantile(0.5, &h(s)), want);
    }
}

#[test]
fn histogram_quantile_custom_buckets() {
    let x = h("{{schema:-53 sum:10 count:10 custom_values:[1 2 4] buckets:[2 4 2 2]}}");
    // Rank 5 of 10 lies in (1,2]: linear interpolation.
    assert_eq!(quantile(0.5, &x), 1.75);
    // The first bucket interpolates from 0, the +Inf bucket answers its lower bound.
    assert_eq!(quantile(0.1, &x), 0.5);
    assert_eq!(quantile(0.99, &x), 4.0);
    let neg = h("{{schema:-53 sum:-10 count:4 custom_values:[-1] buckets:[4]}}");
    assert_eq!(quantile(0.5, &neg), -1.0);
}

#[test]
fn histogram_quantile_nan_observations() {
    // Sum NaN: walked upwards, the missing observation is a NaN result at the top.
    let x = h("{{schema:0 sum:NaN count:5 buckets:[1 2 1]}}");
    assert!(quantile(0.99, &x).is_nan());
    assert_close(quantile(0.5, &x), 1.681792830507429);
}

#[test]
fn histogram_fraction_cases() {
    let x = h("{{schema:0 sum:5 count:4 buckets:[1 2 1]}}");
    assert_eq!(fraction(1.0, 2.0, &x), 0.5);
    assert_eq!(fraction(0.0, 8.0, &x), 1.0);
    assert_eq!(fraction(f64::NEG_INFINITY, f64::INFINITY, &x), 1.0);
    assert_eq!(fraction(2.0, 1.0, &x), 0.0);
    assert!(fraction(0.0, 1.0, &FloatHistogram::default()).is_nan());
    assert!(fraction(f64::NAN, 1.0, &x).is_nan());
    let neg = h("{{schema:0 sum:-5 count:4 n_buckets:[1 2 1]}}");
    assert_eq!(fraction(-2.0, -1.0, &neg), 0.5);
    let zero = h("{{schema:0 z_bucket:1 z_bucket_w:0.5 sum:0.25 count:1}}");
    assert_eq!(fraction(-0.5, 0.5, &zero), 1.0);
    let low_res = h("{{schema:-1 sum:8 count:5 buckets:[0 5]}}");
    assert_eq!(fraction(1.0, 4.0, &low_res), 1.0);
    assert_close(fraction(0.0, 2.0, &low_res), 0.5);
    let s1 = h("{{schema:1 sum:4 count:5 buckets:[0 5]}}");
    assert_close(fraction(0.0, 1.189207, &s1), 0.5);
    // Half of the (1,2] bucket on the log scale lies below sqrt(2).
    assert_close(fraction(1.0, std::f64::consts::SQRT_2, &x), 0.25);
    // Custom buckets: linear; the -Inf bucket contributes all or nothing.
    let c = h("{{schema:-53 sum:10 count:10 custom_values:[1 2 4] buckets:[2 4 2 2]}}");
    assert_eq!(fraction(1.0, 1.5, &c), 0.2);
    assert_eq!(fraction(0.0, 1.0, &c), 0.2);
    assert_eq!(fraction(4.0, 100.0, &c), 0.0);
}

#[test]
fn histogram_stddev_stdvar_script_cases() {
    // native_histograms.test, histogram_stddev_stdvar_1 .. _7.
    let cases = [
        (
            "{{schema:2 count:4 sum:10 buckets:[1 0 0 0 1 0 0 1 1]}}",
            1.0787993180043811,
            1.163807968526718,
        ),
        (
            "{{schema:8 count:10 sum:10 buckets:[1 2 3 4]}}",
            0.0048960313898237465,
            2.3971123370139447e-05,
        ),
        (
            "{{schema:3 count:7 sum:62 z_bucket:1 buckets:[0 0 0 0 0 0 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0 1 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 ] n_buckets:[0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 ]}}",
            42.94723640026,
            1844.4651144196398,
        ),
        (
            "{{schema:0 count:10 sum:-112946 z_bucket:0 n_buckets:[0 0 1 1 1 0 1 1 0 0 3 0 0 0 1 0 0 1]}}",
            27556.344499842,
            759352122.1939945,
        ),
        (
            "{{schema:0 count:10 sum:-100 z_bucket:0 n_buckets:[0 0 0 0 10]}}",
            1.3137084989848,
            1.725830020304794,
        ),
    ];
    for (s, want_dev, want_var) in cases {
        let x = h(s);
        assert_close(stddev(&x), want_dev);
        assert_close(stdvar(&x), want_var);
    }
    assert_eq!(stdvar(&h(cases[0].0)), 1.163807968526718);
    assert_eq!(stddev(&h(cases[0].0)), 1.0787993180043811);
    let nan = h("{{schema:3 count:7 sum:NaN z_bucket:1 buckets:[1] n_buckets:[1]}}");
    assert!(stdvar(&nan).is_nan() && stddev(&nan).is_nan());
    let inf = h("{{schema:3 count:7 sum:Inf z_bucket:1 buckets:[1] n_buckets:[1]}}");
    assert_eq!(stdvar(&inf), f64::INFINITY);
    assert_eq!(stddev(&inf), f64::INFINITY);
    // Custom buckets use the arithmetic midpoint.
    let c = h("{{schema:-53 count:2 sum:4 custom_values:[1 3] buckets:[0 2]}}");
    assert_eq!(stdvar(&c), 0.0);
    assert_eq!(h("{{schema:0 sum:5 count:4 buckets:[1 2 1]}}").avg(), 1.25);
}

// ---- add, sub (cases of Prometheus's float_histogram_test.go) ----

#[test]
fn histogram_add_same_layout() {
    check_add(
        &exp(
            0,
            0.01,
            11.0,
            30.0,
            2.345,
            &[(-2, 2), (1, 3)],
            &[1.0, 0.0, 3.0, 4.0, 7.0],
            &[(3, 2), (3, 2)],
            &[3.0, 1.0, 5.0, 6.0],
        ),
        &exp(
            0,
            0.01,
            8.0,
            21.0,
            1.234,
            &[(-2, 2), (1, 3)],
            &[0.0, 0.0, 2.0, 3.0, 6.0],
            &[(3, 2), (3, 2)],
            &[1.0, 1.0, 4.0, 4.0],
        ),
        &exp(
            0,
            0.01,
            19.0,
            51.0,
            3.579,
            &[(-2, 2), (1, 3)],
            &[1.0, 0.0, 5.0, 7.0, 13.0],
            &[(3, 2), (3, 2)],
            &[4.0, 2.0, 9.0, 10.0],
        ),
        false,
    );
}

#[test]
fn histogram_add_non_overlapping_and_overlapping_spans() {
    check_add(
        &exp(
            0,
            0.001,
            11.0,
            30.0,
            2.345,
            &[(-2, 2), (2, 3)],
            &[1.0, 0.0, 3.0, 4.0, 7.0],
            &[(3, 2), (3, 2)],
            &[3.0, 1.0, 5.0, 6.0],
        ),
        &exp(
            0,
            0.001,
            8.0,
            21.0,
            1.234,
            &[(0, 2), (3, 3)],
            &[5.0, 4.0, 2.0, 3.0, 6.0],
            &[(-9, 2), (3, 2)],
            &[1.0, 1.0, 4.0, 4.0],
        ),
        &exp(
            0,
            0.001,
            19.0,
            51.0,
            3.579,
            &[(-2, 4), (0, 6)],
            &[1.0, 0.0, 5.0, 4.0, 3.0, 4.0, 7.0, 2.0, 3.0, 6.0],
            &[(-9, 2), (3, 2), (5, 2), (3, 2)],
            &[1.0, 1.0, 4.0, 4.0, 3.0, 1.0, 5.0, 6.0],
        ),
        false,
    );
    check_add(
        &exp(
            0,
            0.01,
            11.0,
            30.0,
            2.345,
            &[(-2, 2), (2, 3)],
            &[1.0, 0.0, 3.0, 4.0, 7.0],
            &[(3, 2), (3, 2)],
            &[3.0, 1.0, 5.0, 6.0],
        ),
        &exp(
            0,
            0.01,
            8.0,
            21.0,
            1.234,
            &[(-1, 4), (0, 3)],
            &[5.0, 4.0, 2.0, 3.0, 6.0, 2.0, 5.0],
            &[(4, 2), (1, 2)],
            &[1.0, 1.0, 4.0, 4.0],
        ),
        &exp(
            0,
            0.01,
            19.0,
            51.0,
            3.579,
            &[(-2, 4), (0, 4)],
            &[1.0, 5.0, 4.0, 2.0, 6.0, 10.0, 9.0, 5.0],
            &[(3, 3), (1, 3)],
            &[3.0, 2.0, 1.0, 4.0, 9.0, 6.0],
        ),
        false,
    );
}

#[test]
fn histogram_add_schema_change() {
    check_add(
        &exp(
            0,
            0.01,
            8.0,
            21.0,
            1.234,
            &[(-1, 4), (0, 3)],
            &[5.0, 4.0, 2.0, 3.0, 6.0, 2.0, 5.0],
            &[(4, 2), (1, 2)],
            &[1.0, 1.0, 4.0, 4.0],
        ),
        &exp(
            1,
            0.01,
            11.0,
            30.0,
            2.345,
            &[(-4, 3), (5, 5)],
            &[1.0, 0.0, 0.0, 3.0, 2.0, 2.0, 3.0, 4.0],
            &[(6, 3), (6, 4)],
            &[3.0, 0.5, 0.5, 2.0, 3.0, 2.0, 4.0],
        ),
        &exp(
            0,
            0.01,
            19.0,
            51.0,
            3.579,
            &[(-2, 5), (0, 3)],
            &[1.0, 5.0, 4.0, 2.0, 6.0, 10.0, 9.0, 5.0],
            &[(3, 3), (1, 3)],
            &[3.0, 2.0, 1.0, 4.0, 9.0, 6.0],
        ),
        false,
    );
}

#[test]
fn histogram_add_zero_thresholds() {
    // Larger zero bucket in one histogram.
    check_add(
        &exp(
            0,
            1.0,
            17.0,
            21.0,
            1.234,
            &[(1, 2), (0, 3)],
            &[2.0, 3.0, 6.0, 2.0, 5.0],
            &[(4, 2), (1, 2)],
            &[1.0, 1.0, 4.0, 4.0],
        ),
        &exp(
            0,
            0.01,
            11.0,
            30.0,
            2.345,
            &[(-2, 2), (2, 3)],
            &[1.0, 0.0, 3.0, 4.0, 7.0],
            &[(3, 2), (3, 2)],
            &[3.0, 1.0, 5.0, 6.0],
        ),
        &exp(
            0,
            1.0,
            29.0,
            51.0,
            3.579,
            &[(1, 5)],
            &[2.0, 6.0, 10.0, 9.0, 5.0],
            &[(3, 3), (1, 3)],
            &[3.0, 2.0, 1.0, 4.0, 9.0, 6.0],
        ),
        false,
    );
    // The larger threshold ends up inside a populated bucket of the other histogram.
    check_add(
        &exp(
            0,
            0.2,
            17.0,
            21.0,
            1.234,
            &[(1, 2), (0, 3)],
            &[2.0, 3.0, 6.0, 2.0, 5.0],
            &[(4, 2), (1, 2)],
            &[1.0, 1.0, 4.0, 4.0],
        ),
        &exp(
            0,
            0.01,
            11.0,
            30.0,
            2.345,
            &[(-2, 2), (2, 3)],
            &[1.0, 0.0, 3.0, 4.0, 7.0],
            &[(3, 2), (3, 2)],
            &[3.0, 1.0, 5.0, 6.0],
        ),
        &exp(
            0,
            0.25,
            29.0,
            51.0,
            3.579,
            &[(-1, 1), (1, 5)],
            &[0.0, 2.0, 6.0, 10.0, 9.0, 5.0],
            &[(3, 3), (1, 3)],
            &[3.0, 2.0, 1.0, 4.0, 9.0, 6.0],
        ),
        false,
    );
}

#[test]
fn histogram_add_schema_and_zero_threshold_change() {
    check_add(
        &exp(
            0,
            0.01,
            8.0,
            21.0,
            1.234,
            &[(-2, 5), (0, 3)],
            &[2.0, 5.0, 4.0, 2.0, 3.0, 6.0, 2.0, 5.0],
            &[(4, 2), (1, 2)],
            &[1.0, 1.0, 4.0, 4.0],
        ),
        &exp(
            1,
            0.25,
            12.0,
            30.0,
            2.345,
            &[(-3, 2), (5, 5)],
            &[1.0, 0.0, 3.0, 2.0, 2.0, 3.0, 4.0],
            &[(6, 3), (6, 4)],
            &[3.0, 0.5, 0.5, 2.0, 3.0, 2.0, 4.0],
        ),
        &exp(
            0,
            0.25,
            22.0,
            51.0,
            3.579,
            &[(-1, 7)],
            &[6.0, 4.0, 2.0, 6.0, 10.0, 9.0, 5.0],
            &[(3, 3), (1, 3)],
            &[3.0, 2.0, 1.0, 4.0, 9.0, 6.0],
        ),
        false,
    );
    check_add(
        &exp(
            0,
            0.25,
            8.0,
            21.0,
            1.234,
            &[(-1, 4), (0, 3)],
            &[5.0, 4.0, 2.0, 3.0, 6.0, 2.0, 5.0],
            &[(4, 2), (1, 2)],
            &[1.0, 1.0, 4.0, 4.0],
        ),
        &exp(
            1,
            0.01,
            11.0,
            30.0,
            2.345,
            &[(-4, 3), (5, 5)],
            &[1.0, 0.0, 0.0, 3.0, 2.0, 2.0, 3.0, 4.0],
            &[(6, 3), (6, 4)],
            &[3.0, 0.5, 0.5, 2.0, 3.0, 2.0, 4.0],
        ),
        &exp(
            0,
            0.25,
            20.0,
            51.0,
            3.579,
            &[(-1, 4), (0, 3)],
            &[5.0, 4.0, 2.0, 6.0, 10.0, 9.0, 5.0],
            &[(3, 3), (1, 3)],
            &[3.0, 2.0, 1.0, 4.0, 9.0, 6.0],
        ),
        false,
    );
}

#[test]
fn histogram_add_custom_buckets() {
    let bounds = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
    check_add(
        &custom(
            15.0,
            2.345,
            &[(0, 2), (2, 3)],
            &[1.0, 0.0, 3.0, 4.0, 7.0],
            &bounds,
        ),
        &custom(
            20.0,
            1.234,
            &[(2, 2), (3, 3)],
            &[5.0, 4.0, 2.0, 3.0, 6.0],
            &bounds,
        ),
        &custom(
            35.0,
            3.579,
            &[(0, 4), (0, 6)],
            &[1.0, 0.0, 5.0, 4.0, 3.0, 4.0, 7.0, 2.0, 3.0, 6.0],
            &bounds,
        ),
        false,
    );
    // Different bounds: mapped onto the common ones.
    check_add(
        &custom(10.0, 100.0, &[(0, 3)], &[2.0, 3.0, 5.0], &[1.0, 2.5]),
        &custom(
            8.0,
            80.0,
            &[(0, 4)],
            &[1.0, 2.0, 3.0, 2.0],
            &[1.0, 2.0, 3.0],
        ),
        &custom(18.0, 180.0, &[(0, 2)], &[3.0, 15.0], &[1.0]),
        true,
    );
    check_add(
        &custom(6.0, 2.345, &[(0, 1), (1, 1)], &[1.0, 5.0], &[2.0, 4.0]),
        &custom(
            220.0,
            1.234,
            &[(0, 2), (1, 1), (0, 2)],
            &[10.0, 20.0, 40.0, 50.0, 100.0],
            &[1.0, 2.0, 3.0, 4.0, 5.0],
        ),
        &custom(226.0, 3.579, &[(0, 3)], &[31.0, 40.0, 155.0], &[2.0, 4.0]),
        true,
    );
    check_add(
        &custom(3.0, 50.0, &[(0, 2)], &[1.0, 2.0], &[1.5]),
        &custom(30.0, 40.0, &[(0, 2)], &[10.0, 20.0], &[2.5]),
        &custom(33.0, 90.0, &[(0, 1)], &[33.0], &[]),
        true,
    );
}

#[test]
fn histogram_add_errors_and_hints() {
    let mut e = exp(
        0,
        0.01,
        8.0,
        59.0,
        1.234,
        &[(-2, 5)],
        &[2.0, 5.0, 4.0, 2.0, 3.0],
        &[],
        &[],
    );
    let before = e.clone();
    let c = custom(11.0, 12.0, &[(0, 2)], &[1.0, 2.0], &[1.0, 2.0]);
    let err = e.add(&c).unwrap_err();
    assert_eq!(err, HistogramError::IncompatibleSchemas);
    assert_eq!(
        err.to_string(),
        "cannot apply this operation on histograms with a mix of exponential and custom bucket schemas"
    );
    assert_eq!(e, before);
    assert!(e.sub(&c).is_err());

    let mut a = FloatHistogram {
        schema: CUSTOM_BUCKETS_SCHEMA,
        counter_reset_hint: CounterResetHint::CounterReset,
        ..Default::default()
    };
    let b = FloatHistogram {
        schema: CUSTOM_BUCKETS_SCHEMA,
        counter_reset_hint: CounterResetHint::NotCounterReset,
        ..Default::default()
    };
    let info = a.add_with_info(&b).unwrap();
    assert!(info.counter_reset_collision);
    assert_eq!(a.counter_reset_hint, CounterResetHint::Unknown);

    use CounterResetHint::*;
    for (mine, theirs, want) in [
        (Unknown, Gauge, Gauge),
        (Gauge, CounterReset, Gauge),
        (CounterReset, Gauge, Gauge),
        (CounterReset, Unknown, Unknown),
        (Unknown, NotCounterReset, Unknown),
        (NotCounterReset, NotCounterReset, NotCounterReset),
    ] {
        let mut x = FloatHistogram {
            counter_reset_hint: mine,
            ..Default::default()
        };
        let y = FloatHistogram {
            counter_reset_hint: theirs,
            ..Default::default()
        };
        assert!(!x.add_with_info(&y).unwrap().counter_reset_collision);
        assert_eq!(x.counter_reset_hint, want, "{mine:?} + {theirs:?}");
    }
}

#[test]
fn histogram_sub_cases() {
    check_sub(
        &exp(
            0,
            0.01,
            11.0,
            30.0,
            23.0,
            &[(-2, 2), (1, 3)],
            &[1.0, 0.0, 3.0, 4.0, 7.0],
            &[(3, 2), (3, 2)],
            &[3.0, 1.0, 5.0, 6.0],
        ),
        &exp(
            0,
            0.01,
            8.0,
            21.0,
            12.0,
            &[(-2, 2), (1, 3)],
            &[0.0, 0.0, 2.0, 3.0, 6.0],
            &[(3, 2), (3, 2)],
            &[1.0, 1.0, 4.0, 4.0],
        ),
        &exp(
            0,
            0.01,
            3.0,
            9.0,
            11.0,
            &[(-2, 2), (1, 3)],
            &[1.0, 0.0, 1.0, 1.0, 1.0],
            &[(3, 2), (3, 2)],
            &[2.0, 0.0, 1.0, 2.0],
        ),
    );
    check_sub(
        &exp(
            0,
            0.01,
            8.0,
            59.0,
            1.234,
            &[(-2, 5), (0, 3)],
            &[2.0, 5.0, 4.0, 2.0, 3.0, 6.0, 7.0, 5.0],
            &[(3, 3), (1, 3)],
            &[4.0, 10.0, 1.0, 4.0, 14.0, 7.0],
        ),
        &exp(
            1,
            0.01,
            2.0,
            19.0,
            0.345,
            &[(-4, 3), (5, 5)],
            &[1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 3.0, 4.0],
            &[(6, 3), (6, 4)],
            &[3.0, 0.5, 0.5, 2.0, 3.0, 2.0, 4.0],
        ),
        &exp(
            0,
            0.01,
            6.0,
            40.0,
            0.889,
            &[(-2, 5), (0, 3)],
            &[1.0, 5.0, 4.0, 2.0, 2.0, 2.0, 0.0, 5.0],
            &[(3, 3), (1, 3)],
            &[1.0, 9.0, 1.0, 4.0, 9.0, 1.0],
        ),
    );
    check_sub(
        &custom(
            15.0,
            23.0,
            &[(0, 2), (1, 3)],
            &[1.0, 0.0, 3.0, 4.0, 7.0],
            &[1.0, 2.0, 3.0, 4.0, 5.0],
        ),
        &custom(
            11.0,
            12.0,
            &[(0, 2), (1, 3)],
            &[0.0, 0.0, 2.0, 3.0, 6.0],
            &[1.0, 2.0, 3.0, 4.0, 5.0],
        ),
        &custom(
            4.0,
            11.0,
            &[(0, 2), (1, 3)],
            &[1.0, 0.0, 1.0, 1.0, 1.0],
            &[1.0, 2.0, 3.0, 4.0, 5.0],
        ),
    );
    // A bucket only in the subtrahend becomes negative.
    let mut a = h("{{schema:0 count:3 sum:3 buckets:[3]}}");
    a.sub(&h("{{schema:0 count:1 sum:1 offset:2 buckets:[1]}}"))
        .unwrap();
    assert_eq!(a.positive_buckets, vec![3.0, -1.0]);
    assert_eq!(a.positive_spans, sp(&[(0, 1), (1, 1)]));
}

#[test]
fn histogram_mul_div() {
    let mut x = exp(
        0,
        0.01,
        11.0,
        30.0,
        23.0,
        &[(-2, 2)],
        &[1.0, 3.0],
        &[(3, 1)],
        &[5.0],
    );
    x.mul(2.0);
    assert_eq!((x.zero_count, x.count, x.sum), (22.0, 60.0, 46.0));
    assert_eq!(x.positive_buckets, vec![2.0, 6.0]);
    assert_eq!(x.negative_buckets, vec![10.0]);
    assert_eq!(x.counter_reset_hint, CounterResetHint::Unknown);
    x.div(4.0);
    assert_eq!((x.zero_count, x.count, x.sum), (5.5, 15.0, 11.5));
    assert_eq!(x.positive_buckets, vec![0.5, 1.5]);
    x.mul(-1.0);
    assert_eq!(x.counter_reset_hint, CounterResetHint::Gauge);
    assert_eq!(x.count, -15.0);

    let mut y = exp(
        0,
        0.01,
        11.0,
        30.0,
        -23.0,
        &[(-2, 2)],
        &[1.0, 3.0],
        &[(3, 1)],
        &[5.0],
    );
    y.div(0.0);
    assert_eq!(y.zero_count, f64::INFINITY);
    assert_eq!(y.count, f64::INFINITY);
    assert_eq!(y.sum, f64::NEG_INFINITY);
    assert!(y.positive_buckets.is_empty() && y.positive_spans.is_empty());
    assert!(y.negative_buckets.is_empty() && y.negative_spans.is_empty());
    assert_eq!(y.counter_reset_hint, CounterResetHint::Unknown);
    let mut z = FloatHistogram::default();
    z.div(0.0);
    assert!(z.count.is_nan());
}

// ---- compact, reduce_resolution ----

#[allow(clippy::too_many_arguments)]
fn check_compact(
    max_empty: usize,
    pos: &[(i32, u32)],
    pos_buckets: &[f64],
    neg: &[(i32, u32)],
    neg_buckets: &[f64],
    want_pos: &[(i32, u32)],
    want_pos_buckets: &[f64],
    want_neg: &[(i32, u32)],
    want_neg_buckets: &[f64],
) {
    let mut x = exp(
        0,
        0.01,
        5.5,
        3493.3,
        2349209.324,
        pos,
        pos_buckets,
        neg,
        neg_buckets,
    );
    x.compact(max_empty);
    assert_eq!(x.positive_spans, sp(want_pos), "positive spans");
    assert_eq!(x.positive_buckets, want_pos_buckets, "positive buckets");
    assert_eq!(x.negative_spans, sp(want_neg), "negative spans");
    assert_eq!(x.negative_buckets, want_neg_buckets, "negative buckets");
}

#[test]
fn histogram_compact_cases() {
    // Nothing to do.
    check_compact(
        0,
        &[(-2, 1), (2, 3)],
        &[1.0, 3.3, 4.2, 0.1],
        &[(3, 2), (3, 2)],
        &[3.1, 3.0, 1.234e5, 1000.0],
        &[(-2, 1), (2, 3)],
        &[1.0, 3.3, 4.2, 0.1],
        &[(3, 2), (3, 2)],
        &[3.1, 3.0, 1.234e5, 1000.0],
    );
    // Adjacent spans merged.
    check_compact(
        0,
        &[(-2, 1), (0, 3), (0, 1)],
        &[1.0, 3.3, 4.2, 0.1, 3.3],
        &[(0, 2), (0, 2), (2, 1), (0, 1)],
        &[3.1, 3.0, 1.234e5, 1000.0, 3.0, 4.0],
        &[(-2, 5)],
        &[1.0, 3.3, 4.2, 0.1, 3.3],
        &[(0, 4), (2, 2)],
        &[3.1, 3.0, 1.234e5, 1000.0, 3.0, 4.0],
    );
    // Zero-length spans dropped.
    check_compact(
        0,
        &[(-2, 2), (2, 0), (3, 3)],
        &[1.0, 3.3, 4.2, 0.1, 3.3],
        &[(0, 2), (0, 0), (2, 0), (1, 4)],
        &[3.1, 3.0, 1.234e5, 1000.0, 3.0, 4.0],
        &[(-2, 2), (5, 3)],
        &[1.0, 3.3, 4.2, 0.1, 3.3],
        &[(0, 2), (3, 4)],
        &[3.1, 3.0, 1.234e5, 1000.0, 3.0, 4.0],
    );
    // Empty buckets cut at start and end, and merging due to max_empty.
    check_compact(
        5,
        &[(-4, 4), (5, 3)],
        &[0.0, 0.0, 1.0, 3.3, 4.2, 0.1, 3.3],
        &[(0, 2), (3, 5)],
        &[3.1, 3.0, 1.234e5, 1000.0, 3.0, 4.0, 0.0],
        &[(-2, 10)],
        &[1.0, 3.3, 0.0, 0.0, 0.0, 0.0, 0.0, 4.2, 0.1, 3.3],
        &[(0, 9)],
        &[3.1, 3.0, 0.0, 0.0, 0.0, 1.234e5, 1000.0, 3.0, 4.0],
    );
    // Cutting empty buckets from the middle, avoiding some due to max_empty.
    check_compact(
        1,
        &[(-4, 6), (3, 3), (10, 2)],
        &[0.0, 0.0, 1.0, 0.0, 0.0, 3.3, 4.2, 0.1, 3.3, 2.0, 3.0],
        &[(0, 2), (3, 5)],
        &[3.1, 3.0, 1.234e5, 1000.0, 0.0, 3.0, 4.0],
        &[(-2, 1), (2, 1), (3, 3), (10, 2)],
        &[1.0, 3.3, 4.2, 0.1, 3.3, 2.0, 3.0],
        &[(0, 2), (3, 5)],
        &[3.1, 3.0, 1.234e5, 1000.0, 0.0, 3.0, 4.0],
    );
    // Everything merged into one span.
    check_compact(
        3,
        &[(-2, 2), (2, 2), (2, 2)],
        &[1.0, 3.3, 4.2, 0.1, 3.3, 2.0],
        &[(0, 1), (1, 1), (1, 1)],
        &[3.1, 1000.0, 4.0],
        &[(-2, 10)],
        &[1.0, 3.3, 0.0, 0.0, 4.2, 0.1, 0.0, 0.0, 3.3, 2.0],
        &[(0, 5)],
        &[3.1, 0.0, 1000.0, 0.0, 4.0],
    );
    // Only empty buckets.
    check_compact(
        3,
        &[(-4, 6), (3, 3)],
        &[0.0; 9],
        &[(0, 7)],
        &[0.0; 7],
        &[],
        &[],
        &[],
        &[],
    );
}

#[test]
fn histogram_reduce_resolution() {
    let mut x = exp(
        1,
        0.01,
        5.5,
        10.0,
        3.0,
        &[(-5, 4), (2, 6)],
        &[0.4, 0.6, 1.0, 0.23, 2.0, 1.3, 1.2, 3.0, 0.05, 0.05],
        &[(5, 4), (6, 4)],
        &[2.0, 1.1, 2.0, 1.0, 0.234e5, 1e5, 500.0, 500.0],
    );
    x.reduce_resolution(0).unwrap();
    assert_eq!(x.schema, 0);
    assert_eq!(x.positive_spans, sp(&[(-2, 2), (1, 3)]));
    assert_eq!(x.positive_buckets, vec![1.0, 1.23, 3.3, 4.2, 0.1]);
    assert_eq!(x.negative_spans, sp(&[(3, 2), (3, 2)]));
    assert_eq!(x.negative_buckets, vec![3.1, 3.0, 1.234e5, 1000.0]);
    assert!(x.reduce_resolution(0).is_err());
    assert!(x.reduce_resolution(CUSTOM_BUCKETS_SCHEMA).is_err());
    assert!(custom(1.0, 1.0, &[(0, 1)], &[1.0], &[1.0])
        .reduce_resolution(0)
        .is_err());
    let mut bad = exp(2, 0.0, 0.0, 1.0, 1.0, &[(0, 3)], &[1.0], &[], &[]);
    assert!(matches!(
        bad.reduce_resolution(0),
        Err(HistogramError::SpansBucketsMismatch { .. })
    ));
    // Schema 2 to -1: four buckets of schema 2 become one... or two, at the boundaries.
    let mut y = h("{{schema:2 offset:-3 buckets:[1 2 3 4 5 6]}}");
    y.reduce_resolution(-1).unwrap();
    assert_eq!(y.positive_spans, sp(&[(0, 2)]));
    assert_eq!(y.positive_buckets, vec![10.0, 11.0]);
}

// ---- detect_reset ----

fn base_previous() -> FloatHistogram {
    exp(
        0,
        0.01,
        5.5,
        3493.3,
        2349209.324,
        &[(-2, 2), (1, 3)],
        &[1.0, 1.23, 3.3, 4.2, 0.1],
        &[(3, 2), (3, 2)],
        &[3.1, 3.0, 1.234e5, 1000.0],
    )
}

fn high_res() -> FloatHistogram {
    exp(
        1,
        0.01,
        5.5,
        3493.3,
        2349209.324,
        &[(-5, 4), (2, 6)],
        &[0.4, 0.6, 1.0, 0.23, 2.0, 1.3, 1.2, 3.0, 0.05, 0.05],
        &[(5, 4), (6, 4)],
        &[2.0, 1.1, 2.0, 1.0, 0.234e5, 1e5, 500.0, 500.0],
    )
}

#[test]
fn histogram_detect_reset_exponential() {
    let prev = base_previous();
    assert!(!prev.detect_reset(&prev));
    // Zero threshold grows to cover existing buckets: no reset.
    let cur = exp(
        0,
        1.0,
        7.73,
        3493.3,
        2349209.324,
        &[(1, 3)],
        &[3.3, 4.2, 0.1],
        &[(3, 2), (3, 2)],
        &[3.1, 3.0, 1.234e5, 1000.0],
    );
    assert!(!cur.detect_reset(&prev));
    // Zero threshold into the middle of a populated bucket: reset.
    let mut cur = prev.clone();
    cur.zero_threshold = 0.3;
    assert!(cur.detect_reset(&prev));
    // Zero threshold decreases: reset.
    let mut cur = prev.clone();
    cur.zero_threshold = 0.009;
    assert!(cur.detect_reset(&prev));
    // Schema increases: reset; decreases: compared after merging.
    assert!(high_res().detect_reset(&prev));
    assert!(!prev.detect_reset(&high_res()));
    let mut up = prev.clone();
    up.positive_buckets[2] = 4.3;
    assert!(!up.detect_reset(&high_res()));
    let mut down = prev.clone();
    down.positive_buckets[2] = 2.3;
    assert!(down.detect_reset(&high_res()));
    // Count down, zero count down, a bucket down or gone: reset; the sum does not matter.
    let mut c = prev.clone();
    c.count -= 1.0;
    assert!(c.detect_reset(&prev));
    let mut c = prev.clone();
    c.zero_count -= 1.0;
    assert!(c.detect_reset(&prev));
    let mut c = prev.clone();
    c.negative_buckets[1] = 2.9;
    assert!(c.detect_reset(&prev));
    let mut c = prev.clone();
    c.sum = -1.0;
    assert!(!c.detect_reset(&prev));
    // Hints decide.
    let mut c = prev.clone();
    c.count -= 1.0;
    c.counter_reset_hint = CounterResetHint::NotCounterReset;
    assert!(!c.detect_reset(&prev));
    let mut c = prev.clone();
    c.counter_reset_hint = CounterResetHint::CounterReset;
    assert!(c.detect_reset(&prev));
    // A populated bucket behind an empty one disappears.
    let p = exp(
        0,
        0.001,
        0.0,
        10.0,
        0.0,
        &[(0, 1)],
        &[5.0],
        &[(1, 2)],
        &[0.0, 5.0],
    );
    let c = exp(0, 0.001, 0.0, 20.0, 0.0, &[(0, 1)], &[20.0], &[], &[]);
    assert!(c.detect_reset(&p));
    let p = exp(
        0,
        0.001,
        0.0,
        7.0,
        0.0,
        &[(0, 3)],
        &[2.0, 0.0, 5.0],
        &[],
        &[],
    );
    let c = exp(0, 0.001, 0.0, 100.0, 0.0, &[(0, 1)], &[100.0], &[], &[]);
    assert!(c.detect_reset(&p));
    // An unpopulated bucket disappearing is fine.
    let p = exp(
        0,
        0.001,
        0.0,
        7.0,
        0.0,
        &[(0, 3)],
        &[2.0, 0.0, 5.0],
        &[],
        &[],
    );
    let c = exp(
        0,
        0.001,
        0.0,
        7.0,
        0.0,
        &[(0, 1), (1, 1)],
        &[2.0, 5.0],
        &[],
        &[],
    );
    assert!(!c.detect_reset(&p));
}

#[test]
fn histogram_detect_reset_custom_bounds() {
    let prev = custom(
        200.0,
        0.0,
        &[(0, 4)],
        &[20.0, 35.0, 40.0, 50.0],
        &[0.0, 1.0, 2.0, 3.0],
    );
    let cur = custom(
        200.0,
        0.0,
        &[(0, 5)],
        &[25.0, 15.0, 40.0, 50.0, 70.0],
        &[0.0, 0.5, 1.0, 2.0, 3.0],
    );
    assert!(!cur.detect_reset(&prev));
    let prev = custom(
        100.0,
        0.0,
        &[(1, 4)],
        &[10.0, 15.0, 20.0, 25.0],
        &[0.0, 1.0, 3.0, 5.0],
    );
    let cur = custom(
        100.0,
        0.0,
        &[(1, 5)],
        &[10.0, 16.0, 10.0, 5.0, 25.0],
        &[0.0, 1.0, 2.0, 3.0, 5.0],
    );
    assert!(cur.detect_reset(&prev));
    let prev = custom(100.0, 0.0, &[(1, 3)], &[10.0, 20.0, 20.0], &[0.0, 1.0, 2.0]);
    let cur = custom(
        100.0,
        0.0,
        &[(1, 4)],
        &[100.0, 200.0, 8.0, 7.0],
        &[0.0, 1.0, 2.0, 3.0],
    );
    assert!(cur.detect_reset(&prev));
    let prev = custom(100.0, 0.0, &[(1, 3)], &[10.0, 20.0, 30.0], &[4.0, 5.0, 6.0]);
    let cur = custom(100.0, 0.0, &[(1, 3)], &[15.0, 25.0, 35.0], &[1.0, 2.0, 3.0]);
    assert!(!cur.detect_reset(&prev));
    let prev = custom(
        200.0,
        0.0,
        &[(0, 2), (1, 3)],
        &[10.0, 20.0, 30.0, 40.0, 50.0],
        &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
    );
    let cur = custom(
        200.0,
        0.0,
        &[(0, 3), (1, 2)],
        &[15.0, 25.0, 35.0, 25.0, 60.0],
        &[0.0, 1.0, 3.0, 4.0, 5.0, 7.0],
    );
    assert!(cur.detect_reset(&prev));
    let prev = custom(
        300.0,
        0.0,
        &[(0, 2), (2, 3)],
        &[10.0, 20.0, 30.0, 40.0, 50.0],
        &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    );
    let cur = custom(
        300.0,
        0.0,
        &[(0, 3), (1, 2)],
        &[12.0, 25.0, 45.0, 75.0, 95.0],
        &[0.0, 0.5, 1.0, 3.0, 5.0, 7.0],
    );
    assert!(!cur.detect_reset(&prev));
    // Same bounds: bucket by bucket; exponential before custom: reset.
    let p = custom(
        10.0,
        0.0,
        &[(0, 1), (2, 3)],
        &[1.0, 3.3, 4.2, 0.1],
        &[1.0, 2.0, 3.0],
    );
    let mut c = p.clone();
    c.positive_buckets[3] = 0.0;
    assert!(c.detect_reset(&p));
    assert!(p.detect_reset(&base_previous()));
}

// ---- validate ----

#[test]
fn histogram_validate() {
    assert!(base_previous().validate().is_ok());
    assert!(FloatHistogram::default().validate().is_ok());
    let mut x = base_previous();
    x.positive_buckets.pop();
    assert!(matches!(
        x.validate(),
        Err(HistogramError::SpansBucketsMismatch { .. })
    ));
    let mut x = base_previous();
    x.negative_buckets[0] = -1.0;
    let e = x.validate().unwrap_err();
    assert!(e.to_string().contains("negative side"), "{e}");
    let mut x = base_previous();
    x.positive_spans[1].offset = -1;
    assert!(matches!(
        x.validate(),
        Err(HistogramError::NegativeSpanOffset { .. })
    ));
    let mut x = base_previous();
    x.schema = 9;
    assert_eq!(x.validate(), Err(HistogramError::InvalidSchema(9)));
    let mut x = base_previous();
    x.custom_values = vec![1.0];
    assert_eq!(
        x.validate(),
        Err(HistogramError::ExponentialWithCustomBounds)
    );
    let mut x = base_previous();
    x.count = -1.0;
    assert_eq!(x.validate(), Err(HistogramError::NegativeCount(-1.0)));

    let c = custom(10.0, 1.0, &[(0, 3)], &[1.0, 2.0, 3.0], &[1.0, 2.0]);
    assert!(c.validate().is_ok());
    let mut x = c.clone();
    x.custom_values = vec![2.0, 1.0];
    assert!(matches!(
        x.validate(),
        Err(HistogramError::CustomBoundsNotIncreasing { .. })
    ));
    let mut x = c.clone();
    x.custom_values = vec![1.0, f64::INFINITY];
    assert_eq!(x.validate(), Err(HistogramError::CustomBoundInfinite));
    let mut x = c.clone();
    x.custom_values = vec![1.0];
    assert!(matches!(
        x.validate(),
        Err(HistogramError::CustomBoundsTooFew { .. })
    ));
    let mut x = c.clone();
    x.zero_count = 1.0;
    assert_eq!(x.validate(), Err(HistogramError::CustomBucketsZeroCount));
    let mut x = c.clone();
    x.negative_buckets = vec![1.0];
    x.negative_spans = sp(&[(0, 1)]);
    assert_eq!(
        x.validate(),
        Err(HistogramError::CustomBucketsNegativeSpans)
    );
    let mut x = c.clone();
    x.positive_buckets[1] = -2.0;
    assert!(matches!(
        x.validate(),
        Err(HistogramError::NegativeBucketCount { .. })
    ));
}

// ---- equals ----

#[test]
fn histogram_equals_as_test_scripts() {
    let a = exp(
        0,
        0.01,
        5.5,
        10.0,
        3.0,
        &[(0, 3)],
        &[1.0, 0.0, 2.0],
        &[],
        &[],
    );
    let b = exp(
        0,
        0.01,
        5.5,
        10.0000000001,
        3.0,
        &[(0, 1), (1, 1)],
        &[1.0, 2.0],
        &[(0, 1)],
        &[0.0],
    );
    assert!(a.equals(&b));
    assert_ne!(a, b);
    let mut c = b.clone();
    c.positive_buckets[1] = 2.1;
    assert!(!a.equals(&c));
    let mut c = b.clone();
    c.zero_threshold = 0.02;
    assert!(!a.equals(&c));
    let mut c = b.clone();
    c.schema = 1;
    assert!(!a.equals(&c));
    let mut c = b.clone();
    c.counter_reset_hint = CounterResetHint::Gauge;
    assert!(a.equals(&c));
    assert!(!a.equals_with_hint(&c, true));
    let mut nan = a.clone();
    nan.sum = f64::NAN;
    assert!(nan.equals(&nan.clone()));
    let x = h("{{schema:-53 custom_values:[1 2] buckets:[1]}}");
    let y = h("{{schema:-53 custom_values:[1 3] buckets:[1]}}");
    assert!(!x.equals(&y));
}

// ---- notation ----

#[test]
fn histogram_notation_parse() {
    let x = h("{{schema:1 count:10 sum:3.5 z_bucket:1 z_bucket_w:0.001 offset:-1 buckets:[1 0 2] n_offset:2 n_buckets:[3] counter_reset_hint:gauge}}");
    assert_eq!(x.schema, 1);
    assert_eq!(
        (x.count, x.sum, x.zero_count, x.zero_threshold),
        (10.0, 3.5, 1.0, 0.001)
    );
    assert_eq!(x.positive_spans, sp(&[(-1, 3)]));
    assert_eq!(x.positive_buckets, vec![1.0, 0.0, 2.0]);
    assert_eq!(x.negative_spans, sp(&[(2, 1)]));
    assert_eq!(x.negative_buckets, vec![3.0]);
    assert_eq!(x.counter_reset_hint, CounterResetHint::Gauge);

    assert_eq!(h("{{}}"), FloatHistogram::default());
    assert_eq!(h("{{ }}"), FloatHistogram::default());
    // Count is not derived from the buckets.
    assert_eq!(h("{{buckets:[1 2]}}").count, 0.0);
    let y = h("{{sum:-Inf count:NaN z_bucket:1e3 buckets:[1.5e-3 -2 Inf 0x10 010]}}");
    assert_eq!(y.sum, f64::NEG_INFINITY);
    assert!(y.count.is_nan());
    assert_eq!(y.zero_count, 1000.0);
    assert_eq!(y.positive_buckets[..2], [0.0015, -2.0]);
    assert_eq!(y.positive_buckets[2], f64::INFINITY);
    assert_eq!(y.positive_buckets[3..], [16.0, 8.0]);
    let z = h("{{schema:-53 sum:1 count:1 custom_values:[0.1 0.2 1] buckets:[1] counter_reset_hint:not_reset}}");
    assert!(z.uses_custom_buckets());
    assert_eq!(z.custom_values, vec![0.1, 0.2, 1.0]);
    let (_, hint_set) = FloatHistogram::parse_notation_with_hint_flag(&z.to_notation()).unwrap();
    assert!(hint_set);
    let (_, hint_set) = FloatHistogram::parse_notation_with_hint_flag("{{count:1}}").unwrap();
    assert!(!hint_set);

    for bad in [
        "{schema:1}",
        "{{schema:1.5}}",
        "{{schema:1 schema:2}}",
        "{{foo:1}}",
        "{{buckets:[1 2}}",
        "{{buckets:[]}}",
        "{{count 1}}",
        "{{counter_reset_hint:maybe}}",
        "{{sum:abc}}",
        "{{z_bucket_w:-1}}",
    ] {
        assert!(
            matches!(
                FloatHistogram::parse_notation(bad),
                Err(HistogramError::Notation(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn histogram_notation_round_trip() {
    for s in [
        "{{schema:1 count:10 sum:3.5 z_bucket:1 z_bucket_w:0.001 counter_reset_hint:gauge offset:-1 buckets:[1 0 2] n_offset:2 n_buckets:[3]}}",
        "{{count:4 sum:5 buckets:[1 2 1]}}",
        "{{schema:-53 count:3 sum:1e+06 custom_values:[0.5 1 2] counter_reset_hint:reset buckets:[1 2]}}",
        "{{}}",
        "{{schema:3 count:1.5e-07 sum:-Inf n_buckets:[NaN 1]}}",
    ] {
        let x = h(s);
        assert_eq!(x.to_notation(), s);
        let back = h(&x.to_notation());
        assert!(x.equals_with_hint(&back, true));
    }
    // Spans are compacted into one per side for writing.
    let x = exp(
        0,
        0.0,
        0.0,
        3.0,
        2.0,
        &[(1, 1), (2, 1)],
        &[1.0, 2.0],
        &[],
        &[],
    );
    assert_eq!(
        x.to_notation(),
        "{{count:3 sum:2 offset:1 buckets:[1 0 0 2]}}"
    );
    assert!(h(&x.to_notation()).equals(&x));
    // Go's %g switches to exponent form from 1e6 on and below 1e-4.
    let y = FloatHistogram {
        count: 123456.0,
        sum: 0.0001,
        zero_count: 1234567.0,
        zero_threshold: 0.00001,
        ..Default::default()
    };
    assert_eq!(
        y.to_notation(),
        "{{count:123456 sum:0.0001 z_bucket:1.234567e+06 z_bucket_w:1e-05}}"
    );
}

// ---- JSON ----

fn json(x: &FloatHistogram) -> String {
    let mut s = String::new();
    x.write_json(&mut s);
    s
}

#[test]
fn histogram_json() {
    assert_eq!(
        json(&h("{{schema:0 sum:5 count:4 buckets:[1 2 1]}}")),
        r#"{"count":"4","sum":"5","buckets":[[0,"0.5","1","1"],[0,"1","2","2"],[0,"2","4","1"]]}"#
    );
    assert_eq!(
        json(&h("{{schema:1 sum:5 count:4 buckets:[1 0 3]}}")),
        r#"{"count":"4","sum":"5","buckets":[[0,"0.7071067811865475","1","1"],[0,"1.414213562373095","2","3"]]}"#
    );
    assert_eq!(
        json(&h("{{schema:0 count:3.5 sum:-0.25 z_bucket:1.5 z_bucket_w:0.001 n_buckets:[1] buckets:[1]}}")),
        r#"{"count":"3.5","sum":"-0.25","buckets":[[1,"-1","-0.5","1"],[3,"-0.001","0.001","1.5"],[0,"0.5","1","1"]]}"#
    );
    assert_eq!(
        json(&FloatHistogram::default()),
        r#"{"count":"0","sum":"0"}"#
    );
    assert_eq!(
        json(&h("{{count:1e-07 sum:1e21 buckets:[0]}}")),
        r#"{"count":"1e-07","sum":"1e+21"}"#
    );
    assert_eq!(
        json(&h(
            "{{schema:-53 count:3 sum:NaN custom_values:[1] buckets:[1 2]}}"
        )),
        r#"{"count":"3","sum":"NaN","buckets":[[3,"-Inf","1","1"],[0,"1","+Inf","2"]]}"#
    );
}
