//! Start timestamps (Prometheus 3's per-sample "ST", `use-start-timestamps`): resets by
//! start time, measuring from a start time inside the window, the overlap warning and
//! `start_timestamp()`, in the promqltest format with cases of our own (the Prometheus
//! project's `start_timestamps.test` runs in `conformance.rs`), plus what the engine does
//! with the feature off and with a reader whose start times do not pair with its samples.

mod support;

use meshlens_model::{
    HistogramSample, LabelMatcher, Labels, MetricReader, Sample, SeriesCursor, SeriesSamples,
    StorageError,
};
use meshlens_promql::{Engine, EngineOptions, PromqlError, Value};
use support::MemStore;

fn assert_script_passes(script: &str) {
    let out = support::script::run_script(script);
    assert!(
        out.failures.is_empty() && out.counts.passed > 0,
        "{} passed, failures: {:#?}",
        out.counts.passed,
        out.failures
    );
}

/// A delta counter: every sample is 10 and starts where the previous one ended.
const DELTAS: &str = r#"
load 1m
    d_total@st  _ -1mx9
    d_total     _ 10x9
"#;

#[test]
fn delta_samples_reset_by_start_time_in_every_range_function() {
    assert_script_passes(&format!(
        r#"{DELTAS}
eval instant at 10m increase(d_total[5m])
    {{}} 50

eval instant at 10m rate(d_total[5m])
    {{}} 0.16666666666666666

eval instant at 10m irate(d_total[5m])
    {{}} 0.16666666666666666

eval instant at 10m resets(d_total[5m])
    {{}} 4

# Folded into an aggregation series by series: the same start times are read.
eval instant at 10m sum(increase(d_total[5m]))
    {{}} 50

# A subquery's values carry no start times.
eval instant at 10m increase(d_total[5m:1m])
    {{}} 0

# Functions that do not read start times are unchanged.
eval instant at 10m delta(d_total[5m])
    {{}} 0
"#
    ));
}

#[test]
fn start_times_stay_with_their_samples_when_staleness_markers_are_dropped() {
    // The counter starts at 30s, is marked stale at 2m and restarts at 2m30s: the restart
    // is told by its start time only (the value rose), and the window is measured from
    // the first start time: 5 then 7 more.
    assert_script_passes(
        r#"
load 1m
    c_total@st  _ -30s _     -30s
    c_total     _ 5    stale 7

eval instant at 3m resets(c_total[5m])
    {} 1

eval instant at 3m increase(c_total[5m])
    {} 12
"#,
    );
}

#[test]
fn overlapping_start_times_warn_once_per_metric_with_their_count() {
    // Each start time is two steps back: before the previous sample and not its start.
    assert_script_passes(
        r#"
load 1m
    o_total@st  _ _ _ -2mx3
    o_total     _ _ _ 60+60x3

eval range from 5m to 6m step 1m rate(o_total[3m])
    {} 1 1
    expect warn msg: PromQL warning: sample has start time that overlaps with previous sample timestamp for metric "o_total" (2 occurrences) (1:6)

eval instant at 6m irate(o_total[3m])
    {} 1
    expect no_warn
"#,
    );
}

#[test]
fn start_timestamp_reads_selectors_only() {
    assert_script_passes(
        r#"
load 10s
    m{k="plain"}     1   2
    m{k="timed"}@st  -1s -3s
    m{k="timed"}     1   2

eval instant at 5s start_timestamp(m)
    {k="plain"} 0
    {k="timed"} -1

eval instant at 25s start_timestamp(m offset 10s)
    {k="plain"} 0
    {k="timed"} 7

eval instant at 15s start_timestamp(m + 0)
"#,
    );
}

fn store_with_deltas() -> MemStore {
    let mut store = MemStore::default();
    let labels = Labels::from_pairs([("__name__", "d_total")]);
    for k in 1..=10 {
        let t = k * 60_000;
        store.add(labels.clone(), t, 10.0);
        store.set_start_time(labels.clone(), t, t - 60_000);
    }
    store
}

fn single_value(v: &Value) -> Option<f64> {
    match v {
        Value::Vector(s) if s.len() == 1 => Some(s[0].v),
        _ => None,
    }
}

#[test]
fn without_the_feature_start_times_are_ignored() {
    let store = store_with_deltas();
    let off = Engine::new(EngineOptions::default());
    let r = off
        .instant_query(&store, "increase(d_total[5m])", 600_000)
        .unwrap();
    assert_eq!(single_value(&r.value), Some(0.0));
    let r = off
        .instant_query(&store, "start_timestamp(d_total)", 600_000)
        .unwrap();
    assert_eq!(r.value, Value::Vector(Vec::new()));
    let on = Engine::new(EngineOptions::default()).with_start_timestamps(true);
    let r = on
        .instant_query(&store, "increase(d_total[5m])", 600_000)
        .unwrap();
    assert_eq!(single_value(&r.value), Some(50.0));
}

/// A reader whose one series has two samples but a single start time.
struct Mismatched(SeriesSamples);

struct MismatchedCursor<'a>(&'a SeriesSamples);

impl SeriesCursor for MismatchedCursor<'_> {
    fn labels(&self) -> &Labels {
        &self.0.labels
    }

    fn decode_into(&self, buf: &mut Vec<Sample>) -> Result<usize, StorageError> {
        buf.extend_from_slice(&self.0.samples);
        Ok(self.0.samples.len())
    }

    fn decode_start_times_into(&self, buf: &mut Vec<i64>) -> Result<usize, StorageError> {
        buf.push(1);
        Ok(1)
    }

    fn histograms(&self) -> &[HistogramSample] {
        &[]
    }
}

impl MetricReader for Mismatched {
    fn select_lazy<'a>(
        &'a self,
        _: &[LabelMatcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<Box<dyn SeriesCursor + 'a>>, StorageError> {
        Ok(vec![Box::new(MismatchedCursor(&self.0))])
    }

    fn select(
        &self,
        _: &[LabelMatcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        Ok(vec![self.0.clone()])
    }

    fn series(&self, _: &[LabelMatcher], _: i64, _: i64) -> Result<Vec<Labels>, StorageError> {
        Ok(vec![self.0.labels.clone()])
    }

    fn label_names(&self, _: &[LabelMatcher], _: i64, _: i64) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }

    fn label_values(
        &self,
        _: &str,
        _: &[LabelMatcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
}

#[test]
fn start_times_that_do_not_pair_with_samples_are_an_error_not_a_panic() {
    let store = Mismatched(SeriesSamples::floats(
        Labels::from_pairs([("__name__", "x_total")]),
        vec![Sample::new(60_000, 1.0), Sample::new(120_000, 2.0)],
    ));
    let engine = Engine::new(EngineOptions::default()).with_start_timestamps(true);
    for q in ["rate(x_total[5m])", "start_timestamp(x_total)"] {
        let err = engine.instant_query(&store, q, 120_000).unwrap_err();
        assert!(
            matches!(err, PromqlError::Storage(StorageError::Corruption { .. })),
            "{q}: {err}"
        );
    }
    // Functions that do not read start times never ask for them.
    let r = engine
        .instant_query(&store, "sum_over_time(x_total[5m])", 120_000)
        .unwrap();
    assert_eq!(single_value(&r.value), Some(3.0));
}
