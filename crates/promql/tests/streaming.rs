//! Selectors evaluated series by series, aggregations folded below decoding, series spread
//! over threads: each gives what evaluating the whole vector gives, and the sample limit
//! stops decoding at the series that crosses it.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use meshlens_model::{
    is_stale_nan, LabelMatcher, Labels, MaterializedCursor, MetricReader, Sample, SeriesCursor,
    SeriesSamples, StorageError,
};
use meshlens_promql::{Engine, EngineOptions, PromqlError, Value};
use support::series::add_series;
use support::MemStore;

const MIN: i64 = 60_000;
const START: i64 = 30 * MIN;
const END: i64 = 150 * MIN;

fn store(n: usize) -> MemStore {
    let mut s = MemStore::default();
    add_series(&mut s, n, 0, END, 15_000);
    s
}

fn engine() -> Engine {
    Engine::new(EngineOptions {
        disable_cache: true,
        ..Default::default()
    })
}

fn range(st: &dyn MetricReader, q: &str) -> Value {
    engine()
        .range_query(st, q, START, END, 45_000)
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .value
}

fn instant(st: &dyn MetricReader, q: &str, t: i64) -> Value {
    engine()
        .instant_query(st, q, t)
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .value
}

/// Every (labels, time, value) of a result, in order.
fn points(v: &Value) -> Vec<(Labels, i64, f64)> {
    match v {
        Value::Matrix(m) => m
            .iter()
            .flat_map(|s| s.samples.iter().map(|x| (s.labels.clone(), x.t, x.v)))
            .collect(),
        Value::Vector(v) => v.iter().map(|s| (s.labels.clone(), s.t, s.v)).collect(),
        other => panic!("not a vector or matrix: {other:?}"),
    }
}

/// Same labels and times; values equal to the bit, or within `rel` of each other.
fn assert_same(q: &str, got: &Value, want: &Value, rel: f64) {
    let (a, b) = (points(got), points(want));
    assert_eq!(a.len(), b.len(), "{q}: number of points");
    for ((la, ta, va), (lb, tb, vb)) in a.iter().zip(&b) {
        assert_eq!((la, ta), (lb, tb), "{q}");
        let same = va.to_bits() == vb.to_bits()
            || (va.is_nan() && vb.is_nan())
            || (va - vb).abs() <= rel * va.abs().max(vb.abs());
        assert!(same, "{q}: {la} at {ta}: {va} vs {vb}");
    }
    assert!(!a.is_empty(), "{q}: the comparison must see data");
}

const INNER: [&str; 8] = [
    "rate(req_total[5m])",
    "increase(req_total[10m] offset 2m)",
    "last_over_time(req_total[5m])",
    "temp",
    "max_over_time(temp[3m])",
    "avg_over_time(temp[7m])",
    "quantile_over_time(0.3, temp[4m])",
    "predict_linear(temp[5m], 60)",
];

/// Each aggregation of a selector or range function, folded series by series, against
/// the same aggregation of the whole vector (`or` on an absent metric keeps every series
/// and its labels, but is not folded).
fn compare_folded(n: usize, inners: &[&str], bys: &[&str], rel_sums: f64) {
    let st = store(n);
    for inner in inners {
        for op in ["sum", "count", "avg", "min", "max", "group"] {
            for by in bys {
                let fast = format!("{op}{by} ({inner})");
                let slow = format!("{op}{by} (({inner}) or absent_metric)");
                let rel = if matches!(op, "sum" | "avg") {
                    rel_sums
                } else {
                    0.0
                };
                assert_same(&fast, &range(&st, &fast), &range(&st, &slow), rel);
                let t = END - 7 * MIN;
                assert_same(&fast, &instant(&st, &fast, t), &instant(&st, &slow, t), rel);
            }
        }
    }
}

#[test]
fn folded_aggregations_equal_aggregating_the_whole_vector_bit_for_bit() {
    // Fewer series than one block: the fold is sequential and sums run in the same order.
    let bys = ["", " by (grp)", " without (i)", " by (__name__, grp)"];
    compare_folded(60, &INNER, &bys, 0.0);
}

#[test]
fn folded_aggregations_over_many_blocks_agree_with_the_whole_vector() {
    // Several blocks, merged in series order: sums may differ in the last bits only.
    let inners = ["rate(req_total[5m])", "temp", "avg_over_time(temp[7m])"];
    compare_folded(700, &inners, &[" by (grp)", ""], 1e-12);
}

#[test]
fn parallel_results_are_the_same_on_every_run() {
    let st = store(700);
    for q in [
        "sum by (grp) (rate(req_total[5m]))",
        "avg(temp)",
        "rate(req_total[5m])",
    ] {
        let first = range(&st, q);
        for _ in 0..3 {
            assert_same(q, &range(&st, q), &first, 0.0);
        }
    }
}

#[test]
fn name_dropping_functions_are_not_folded_over_several_metrics() {
    // Two metrics whose series differ only by name: once `rate` drops the name they
    // collide, which must fail the query as Prometheus does, folded or not.
    let mut st = MemStore::default();
    for name in ["a_total", "b_total"] {
        let l = Labels::from_pairs([("__name__", name), ("x", "1")]);
        for k in 0..20 {
            st.add(l.clone(), k * 15_000, k as f64);
        }
    }
    let e = engine()
        .instant_query(
            &st,
            r#"sum(rate({__name__=~"a_total|b_total"}[5m]))"#,
            200_000,
        )
        .expect_err("labels collide");
    assert!(e.to_string().contains("same labelset"), "{e}");
}

/// The value of series `s` at `t` by the definition: the newest sample within the
/// lookback, unless it is a staleness marker.
fn reference_latest(s: &[Sample], t: i64) -> Option<f64> {
    let last = s.iter().rev().find(|x| x.t <= t)?;
    (last.t > t - 5 * MIN && !is_stale_nan(last.v)).then_some(last.v)
}

/// `count_over_time` and `last_over_time` by the definition: the window `(t - r, t]`.
fn reference_window(s: &[Sample], t: i64, r: i64) -> Vec<f64> {
    s.iter()
        .filter(|x| x.t > t - r && x.t <= t && !is_stale_nan(x.v))
        .map(|x| x.v)
        .collect()
}

/// What a query over the series named in `names` gives by definition: `f` of each
/// series' samples at each step, labels with or without the name.
fn reference(
    st: &MemStore,
    names: &[&str],
    keep_name: bool,
    f: &dyn Fn(&[Sample], i64) -> Option<f64>,
) -> Vec<(Labels, i64, f64)> {
    let mut want = Vec::new();
    for (labels, samples) in &st.series {
        if !names.contains(&labels.metric_name().unwrap_or("")) {
            continue;
        }
        let labels = if keep_name {
            labels.clone()
        } else {
            labels.without_metric_name()
        };
        let mut t = START;
        while t <= END {
            if let Some(v) = f(samples, t) {
                want.push((labels.clone(), t, v));
            }
            t += 45_000;
        }
    }
    want.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    want
}

fn assert_bits(q: &str, got: &[(Labels, i64, f64)], want: &[(Labels, i64, f64)]) {
    assert_eq!(got.len(), want.len(), "{q}");
    assert!(!got.is_empty(), "{q}: the comparison must see data");
    for (g, w) in got.iter().zip(want) {
        let same = g.2.to_bits() == w.2.to_bits() || (g.2.is_nan() && w.2.is_nan());
        assert!(g.0 == w.0 && g.1 == w.1 && same, "{q}: {g:?} vs {w:?}");
    }
}

#[test]
fn selectors_and_range_functions_match_their_definition() {
    let st = store(40);
    let q = r#"{__name__=~"temp|req_total"}"#;
    let want = reference(&st, &["temp", "req_total"], true, &|s, t| {
        reference_latest(s, t)
    });
    assert_bits(q, &points(&range(&st, q)), &want);

    let q = "timestamp(temp)";
    let want = reference(&st, &["temp"], false, &|s, t| {
        reference_latest(s, t)?;
        s.iter()
            .rev()
            .find(|x| x.t <= t)
            .map(|x| x.t as f64 / 1000.0)
    });
    assert_bits(q, &points(&range(&st, q)), &want);

    let q = "count_over_time(req_total[4m])";
    let want = reference(&st, &["req_total"], false, &|s, t| {
        let w = reference_window(s, t, 4 * MIN);
        (!w.is_empty()).then_some(w.len() as f64)
    });
    assert_bits(q, &points(&range(&st, q)), &want);

    let q = "last_over_time(temp[3m] offset 1m)";
    let want = reference(&st, &["temp"], true, &|s, t| {
        reference_window(s, t - MIN, 3 * MIN).last().copied()
    });
    assert_bits(q, &points(&range(&st, q)), &want);
}

/// A store that hands out cursors and counts what is decoded and what is selected whole.
struct Counting {
    inner: MemStore,
    decoded: AtomicUsize,
    selected: AtomicUsize,
}

struct CountingCursor<'a> {
    inner: MaterializedCursor,
    decoded: &'a AtomicUsize,
}

impl SeriesCursor for CountingCursor<'_> {
    fn labels(&self) -> &Labels {
        self.inner.labels()
    }

    fn decode_into(&self, buf: &mut Vec<Sample>) -> Result<usize, StorageError> {
        self.decoded.fetch_add(1, Ordering::SeqCst);
        self.inner.decode_into(buf)
    }
}

impl MetricReader for Counting {
    fn select_lazy<'a>(
        &'a self,
        m: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Box<dyn SeriesCursor + 'a>>, StorageError> {
        Ok(self
            .inner
            .select(m, mint, maxt)?
            .into_iter()
            .map(|s| {
                Box::new(CountingCursor {
                    inner: MaterializedCursor(s),
                    decoded: &self.decoded,
                }) as Box<dyn SeriesCursor + 'a>
            })
            .collect())
    }

    fn select(
        &self,
        m: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        self.selected.fetch_add(1, Ordering::SeqCst);
        self.inner.select(m, mint, maxt)
    }

    fn series(&self, m: &[LabelMatcher], a: i64, b: i64) -> Result<Vec<Labels>, StorageError> {
        self.inner.series(m, a, b)
    }

    fn label_names(&self, m: &[LabelMatcher], a: i64, b: i64) -> Result<Vec<String>, StorageError> {
        self.inner.label_names(m, a, b)
    }

    fn label_values(
        &self,
        n: &str,
        m: &[LabelMatcher],
        a: i64,
        b: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.inner.label_values(n, m, a, b)
    }
}

#[test]
fn the_sample_limit_stops_decoding_at_the_series_that_crosses_it() {
    let mut inner = MemStore::default();
    for i in 0..2000 {
        let l = Labels::from_pairs([("__name__", "up_total"), ("i", &i.to_string())]);
        for k in 0..100 {
            inner.add(l.clone(), k * 1000, k as f64);
        }
    }
    let st = Counting {
        inner,
        decoded: AtomicUsize::new(0),
        selected: AtomicUsize::new(0),
    };
    let limited = Engine::new(EngineOptions {
        max_samples: 1_000,
        disable_cache: true,
        ..Default::default()
    });
    for q in ["sum(rate(up_total[2m]))", "rate(up_total[2m])", "up_total"] {
        st.decoded.store(0, Ordering::SeqCst);
        let e = limited
            .range_query(&st, q, 90_000, 100_000, 1_000)
            .expect_err("over the limit");
        assert!(
            matches!(e, PromqlError::TooManySamples { limit: 1_000 }),
            "{q}: {e}"
        );
        assert_eq!(e.http_status(), 422);
        // Eleven series pass the limit; each thread may finish the series in hand.
        let decoded = st.decoded.load(Ordering::SeqCst);
        assert!(decoded <= 11 + 64, "{q}: decoded {decoded} of 2000 series");
    }
    // Series are read through cursors, never selected whole.
    assert_eq!(st.selected.load(Ordering::SeqCst), 0);
    // Under the limit: 10 series of 50 samples.
    let ok = limited.instant_query(&st, r#"sum(rate(up_total{i=~"1."}[2m]))"#, 49_000);
    assert!(ok.is_ok(), "{ok:?}");
}
