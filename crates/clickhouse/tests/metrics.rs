//! The metric store on a real 2-shard ClickHouse 18.16 cluster and on a current release
//! (one server, through chDB), judged against the same
//! selection computed in memory over the data written.

#[macro_use]
mod common;

use common::Backend;

use std::collections::BTreeSet;

use meshlens_clickhouse::metrics::fingerprint;
use meshlens_clickhouse::StorageOptions;
use std::sync::Arc;

use meshlens_model::{
    BucketSpan, CounterResetHint, FloatHistogram, HistogramSample, LabelMatcher, Labels, MatchOp,
    MetricReader, MetricWriter, Sample, SeriesHistograms, SeriesSamples, StorageError, TimeSeries,
    STALE_NAN,
};

/// 2025-12-04 00:00 UTC: data spans the day before and this one.
const BASE: i64 = 1_764_806_400_000;
const STEP: i64 = 30 * 60 * 1000;

/// A deterministic data set: 320 series over three metrics, label values with regex
/// metacharacters, quotes, newlines and non-ASCII, some series without `path`; each has 20
/// samples every 30 minutes across midnight, one series ends in a staleness marker.
fn dataset() -> Vec<TimeSeries> {
    let metrics = ["http_requests_total", "up", "latency_seconds"];
    let jobs = ["api", "db", "web", "cache", "api-gw"];
    let paths = ["/a.b", "/a/b", "/b/a", "/x'y", "multi\nline", "/ü", "/a\\d"];
    let mut out = Vec::new();
    for i in 0..320usize {
        let mut pairs = vec![
            ("__name__".to_string(), metrics[i % 3].to_string()),
            ("job".to_string(), jobs[i % 5].to_string()),
            (
                "instance".to_string(),
                format!("10.0.{}.{}:9090", i / 100, i % 100),
            ),
        ];
        if i % 4 != 0 {
            pairs.push(("path".to_string(), paths[i % 7].to_string()));
        }
        let start = BASE - 10 * STEP + (i as i64 % 3) * 1000;
        let mut samples: Vec<Sample> = (0..20)
            .map(|k| Sample::new(start + k * STEP, (i * 100 + k as usize) as f64 / 8.0))
            .collect();
        if i == 7 {
            samples.last_mut().unwrap().v = STALE_NAN;
        }
        out.push(TimeSeries {
            labels: Labels::from_pairs(pairs),
            samples,
        });
    }
    out
}

/// The selection as the storage contract defines it, computed in memory.
fn expected(
    data: &[TimeSeries],
    matchers: &[LabelMatcher],
    mint: i64,
    maxt: i64,
) -> Vec<SeriesSamples> {
    let mut out: Vec<SeriesSamples> = data
        .iter()
        .filter(|ts| {
            matchers
                .iter()
                .all(|m| m.matches(ts.labels.get(&m.name).unwrap_or("")))
        })
        .map(|ts| SeriesSamples {
            labels: ts.labels.clone(),
            samples: ts
                .samples
                .iter()
                .copied()
                .filter(|s| s.t >= mint && s.t <= maxt)
                .collect(),
            histograms: Vec::new(),
        })
        .filter(|s| !s.samples.is_empty())
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// Comparable form: values by bits, so NaNs (the staleness marker) compare.
fn bits(v: &[SeriesSamples]) -> Vec<(Labels, Vec<(i64, u64)>)> {
    v.iter()
        .map(|s| {
            (
                s.labels.clone(),
                s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect(),
            )
        })
        .collect()
}

/// Equality with a short message: which series differs first, not both whole selections.
#[track_caller]
fn assert_same(got: &[SeriesSamples], want: &[SeriesSamples], what: &str) {
    let (got, want) = (bits(got), bits(want));
    if got == want {
        return;
    }
    let first = got.iter().zip(&want).position(|(a, b)| a != b);
    let show = |v: &Vec<(Labels, Vec<(i64, u64)>)>, i: Option<usize>| {
        i.and_then(|i| v.get(i))
            .map(|(l, s)| format!("{l:?} with {} samples {:?}", s.len(), &s[..s.len().min(3)]))
    };
    panic!(
        "{what}: got {} series, want {}; first difference at {first:?}: got {:?}, want {:?}",
        got.len(),
        want.len(),
        show(&got, first),
        show(&want, first)
    );
}

fn m(op: MatchOp, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher::new(op, name, value).unwrap()
}

fn cases() -> Vec<(&'static str, Vec<LabelMatcher>, i64, i64)> {
    use MatchOp::*;
    let all = (i64::MIN, i64::MAX);
    vec![
        ("name =", vec![m(Equal, "__name__", "up")], all.0, all.1),
        (
            "name = and !=",
            vec![m(Equal, "__name__", "up"), m(NotEqual, "job", "api")],
            all.0,
            all.1,
        ),
        ("!= alone", vec![m(NotEqual, "job", "db")], all.0, all.1),
        (
            "=~ literal set",
            vec![m(RegexMatch, "job", "api|db")],
            all.0,
            all.1,
        ),
        (
            "=~ is anchored",
            vec![m(RegexMatch, "job", "api")],
            all.0,
            all.1,
        ),
        (
            "=~ prefix",
            vec![m(RegexMatch, "job", "api.*")],
            all.0,
            all.1,
        ),
        (
            "=~ metachar value",
            vec![m(RegexMatch, "path", "/a\\.b")],
            all.0,
            all.1,
        ),
        (
            "=~ dot matches newline",
            vec![m(RegexMatch, "path", "multi.line")],
            all.0,
            all.1,
        ),
        (
            "=~ class",
            vec![m(RegexMatch, "instance", "10\\.0\\.[12]\\.1[0-9]:9090")],
            all.0,
            all.1,
        ),
        (
            "!~ includes absent",
            vec![m(RegexNoMatch, "path", ".*a.*")],
            all.0,
            all.1,
        ),
        (
            "= empty is absent",
            vec![
                m(Equal, "path", ""),
                m(Equal, "__name__", "latency_seconds"),
            ],
            all.0,
            all.1,
        ),
        (
            "=~ can match empty",
            vec![m(RegexMatch, "path", "/x'y|"), m(Equal, "job", "web")],
            all.0,
            all.1,
        ),
        (
            "quote in value",
            vec![m(Equal, "path", "/x'y")],
            all.0,
            all.1,
        ),
        (
            "backslash in value",
            vec![m(Equal, "path", "/a\\d")],
            all.0,
            all.1,
        ),
        (
            "non-ascii regex",
            vec![m(RegexMatch, "path", "/.")],
            all.0,
            all.1,
        ),
        (
            "!~ name",
            vec![m(RegexNoMatch, "__name__", "up|http_.*")],
            all.0,
            all.1,
        ),
        ("no match", vec![m(Equal, "job", "nope")], all.0, all.1),
        (
            "time window inside one day",
            vec![m(RegexMatch, "job", "web|cache")],
            BASE + STEP,
            BASE + 4 * STEP,
        ),
        (
            "time window across midnight, inclusive bounds",
            vec![m(Equal, "__name__", "http_requests_total")],
            BASE - 2 * STEP,
            BASE + 2 * STEP + 1000,
        ),
        (
            "time window before the data",
            vec![m(Equal, "__name__", "up")],
            0,
            BASE - 11 * STEP,
        ),
        ("one millisecond", vec![m(NotEqual, "job", "")], BASE, BASE),
    ]
}

fn select_equals_the_in_memory_selection_for_every_matcher_kind(b: &Backend) {
    let s = common::open(&b.url(0, "metrics_select"));
    let data = dataset();
    let out = s.metrics().append(&data).unwrap();
    assert_eq!(out.accepted, 320 * 20);
    assert_eq!(out.rejected(), 0);
    assert_eq!(out.series_created, 320);
    // Read through the other server: the data is the cluster's, not the writer node's.
    let r = common::open(&b.url(1, "metrics_select"));
    for (name, matchers, mint, maxt) in cases() {
        let want = expected(&data, &matchers, mint, maxt);
        let got = r.metrics().select(&matchers, mint, maxt).unwrap();
        assert_same(&got, &want, name);
        // series: the label sets (day-granular time filter; these windows cover whole days
        // of data or fall outside it).
        if mint == i64::MIN {
            let labels: Vec<Labels> = want.iter().map(|s| s.labels.clone()).collect();
            assert_eq!(
                r.metrics().series(&matchers, mint, maxt).unwrap(),
                labels,
                "series {name:?}"
            );
        }
    }
    let stale = r
        .metrics()
        .select(
            &[m(MatchOp::Equal, "instance", "10.0.0.7:9090")],
            i64::MIN,
            i64::MAX,
        )
        .unwrap();
    assert!(meshlens_model::is_stale_nan(
        stale[0].samples.last().unwrap().v
    ));
}

fn label_names_and_values_are_sql_and_match_memory(b: &Backend) {
    let s = common::open(&b.url(1, "metrics_labels"));
    let data = dataset();
    s.metrics().append(&data).unwrap();
    let (lo, hi) = (i64::MIN, i64::MAX);
    let filters = [
        vec![],
        vec![m(MatchOp::Equal, "__name__", "up")],
        vec![m(MatchOp::Equal, "path", "")],
        vec![m(MatchOp::RegexMatch, "job", "db|web")],
    ];
    for matchers in filters {
        let sel = expected(&data, &matchers, lo, hi);
        let names: BTreeSet<String> = sel
            .iter()
            .flat_map(|s| s.labels.iter().map(|l| l.name.clone()))
            .collect();
        assert_eq!(
            s.metrics().label_names(&matchers, lo, hi).unwrap(),
            names.into_iter().collect::<Vec<_>>(),
            "names for {matchers:?}"
        );
        for name in ["__name__", "job", "path", "nope"] {
            let values: BTreeSet<String> = sel
                .iter()
                .filter_map(|s| s.labels.get(name).map(str::to_string))
                .collect();
            assert_eq!(
                s.metrics().label_values(name, &matchers, lo, hi).unwrap(),
                values.into_iter().collect::<Vec<_>>(),
                "values of {name} for {matchers:?}"
            );
        }
    }
    // A range without data has no labels.
    assert!(s.metrics().label_names(&[], 0, 1000).unwrap().is_empty());
}

#[test]
fn rows_are_on_both_shards_and_no_series_is_split() {
    let Some(c) = common::cluster() else { return };
    let s = common::open(&c.storage_url(0, "metrics_shards"));
    let data = dataset();
    s.metrics().append(&data).unwrap();
    let mut per_node: Vec<BTreeSet<u64>> = Vec::new();
    for node in &c.nodes {
        let mut fps = BTreeSet::new();
        for table in ["series_local", "samples_local"] {
            let out = node
                .sql(&format!(
                    "SELECT DISTINCT fingerprint FROM metrics_shards.{table}"
                ))
                .unwrap();
            let these: BTreeSet<u64> = out.lines().map(|l| l.parse().unwrap()).collect();
            assert!(
                these.len() > 100,
                "{table} on {} has {} series",
                node.http_base(),
                these.len()
            );
            fps.extend(these);
        }
        // The shard holds exactly the series the sharding rule sends it.
        let shard = per_node.len() as u64;
        assert!(
            fps.iter().all(|fp| fp % 2 == shard),
            "foreign series on shard {shard}"
        );
        per_node.push(fps);
    }
    assert!(
        per_node[0].is_disjoint(&per_node[1]),
        "a series is on both shards"
    );
    let all: BTreeSet<u64> = data.iter().map(|ts| fingerprint(&ts.labels)).collect();
    let union: BTreeSet<u64> = per_node[0].union(&per_node[1]).copied().collect();
    assert_eq!(union, all);
    // Every sample of a series is with its series row.
    for node in &c.nodes {
        let orphans = node
            .sql("SELECT count() FROM metrics_shards.samples_local WHERE fingerprint NOT IN (SELECT fingerprint FROM metrics_shards.series_local)")
            .unwrap();
        assert_eq!(orphans.trim(), "0", "on {}", node.http_base());
    }
}

fn a_retried_batch_does_not_duplicate_results(b: &Backend) {
    let data = dataset();
    let s = common::open(&b.url(0, "metrics_retry"));
    s.metrics().append(&data).unwrap();
    // The same batch again, as a sender retrying after a lost answer would, from a fresh
    // process (so its series rows are sent again too).
    let s2 = common::open(&b.url(1, "metrics_retry"));
    s2.metrics().append(&data).unwrap();
    s2.metrics().append(&data[..50]).unwrap();
    let stored = b.sql(0, "SELECT count() FROM metrics_retry.samples");
    // Merges may already have folded some duplicates; none were lost.
    assert!(stored.trim().parse::<usize>().unwrap() >= 320 * 20);
    let all = [m(MatchOp::NotEqual, "__name__", "")];
    let got = s.metrics().select(&all, i64::MIN, i64::MAX).unwrap();
    assert_same(
        &got,
        &expected(&data, &all, i64::MIN, i64::MAX),
        "after retries",
    );
    assert_eq!(
        s.metrics().series(&all, i64::MIN, i64::MAX).unwrap().len(),
        320
    );
    // Fold everything, as merges eventually do: the same answer.
    for node in 0..b.nodes() {
        for table in ["samples", "series"] {
            b.sql(
                node,
                &format!("OPTIMIZE TABLE metrics_retry.{} FINAL", b.local(table)),
            );
        }
    }
    let stored = b.sql(0, "SELECT count() FROM metrics_retry.samples");
    assert_eq!(stored.trim(), (320 * 20).to_string());
    let got = s.metrics().select(&all, i64::MIN, i64::MAX).unwrap();
    assert_same(
        &got,
        &expected(&data, &all, i64::MIN, i64::MAX),
        "after retries",
    );
}

fn limits_refuse_oversized_selections_with_422(b: &Backend) {
    let s = common::open(&b.url(0, "metrics_limits"));
    let data = dataset();
    s.metrics().append(&data).unwrap();
    let sel = [m(MatchOp::Equal, "__name__", "up")];
    let n: usize = expected(&data, &sel, i64::MIN, i64::MAX)
        .iter()
        .map(|s| s.samples.len())
        .sum();
    let ok = s
        .metrics()
        .select_limited(&sel, i64::MIN, i64::MAX, n)
        .unwrap();
    assert_eq!(ok.iter().map(|s| s.samples.len()).sum::<usize>(), n);
    let err = s
        .metrics()
        .select_limited(&sel, i64::MIN, i64::MAX, n - 1)
        .unwrap_err();
    assert!(
        matches!(err, StorageError::TooManySamples { limit } if limit == n - 1),
        "{err:?}"
    );
    assert_eq!(err.http_status(), 422);
    // The scan guard: ClickHouse's max_rows_to_read, reported with its limit.
    let guarded = common::open_with(
        &b.url(0, "metrics_limits"),
        StorageOptions {
            max_rows_to_read: 100,
            ..Default::default()
        },
    );
    let err = guarded
        .metrics()
        .select(&sel, i64::MIN, i64::MAX)
        .unwrap_err();
    assert!(
        matches!(err, StorageError::TooManySamples { limit: 100 }),
        "{err:?}"
    );
    assert_eq!(err.http_status(), 422);
}

fn bad_input_is_counted_or_refused_never_stored_wrong(b: &Backend) {
    let s = common::open(&b.url(1, "metrics_bad"));
    let batch = vec![
        TimeSeries {
            labels: Labels::from_pairs([("__name__", "ok")]),
            samples: vec![
                Sample::new(BASE, 1.0),
                Sample::new(-5, 1.0),
                Sample::new(i64::MAX, 1.0),
            ],
        },
        TimeSeries {
            labels: Labels::from_pairs([("__name__", "bad-name")]),
            samples: vec![Sample::new(BASE, 1.0)],
        },
        TimeSeries {
            labels: Labels::empty(),
            samples: vec![Sample::new(BASE, 1.0)],
        },
    ];
    let out = s.metrics().append(&batch).unwrap();
    assert_eq!(
        (out.accepted, out.out_of_bounds, out.invalid_labels),
        (1, 2, 2)
    );
    // A regex re2 cannot compile (no re2 takes the `x` flag) is the caller's error (400),
    // not an outage.
    let err = s
        .metrics()
        .select(
            &[m(MatchOp::RegexMatch, "job", "(?x) x")],
            i64::MIN,
            i64::MAX,
        )
        .unwrap_err();
    assert_eq!(err.http_status(), 400, "{err}");
    // A named group as the model's matcher writes it, `(?<name>…)`, matches on every
    // version (18.16's re2 knows only `(?P<name>…)`).
    let named = [m(MatchOp::RegexMatch, "__name__", "(?<n>o)k")];
    assert_eq!(
        s.metrics()
            .select(&named, i64::MIN, i64::MAX)
            .unwrap()
            .len(),
        1
    );
    // An inverted range is empty, not an error.
    let all = [m(MatchOp::Equal, "__name__", "ok")];
    assert!(s.metrics().select(&all, 10, 5).unwrap().is_empty());
    assert_eq!(
        s.metrics().select(&all, i64::MIN, i64::MAX).unwrap().len(),
        1
    );
}

/// Native histogram `k` of a series: exponential buckets on both sides, growing with `k`;
/// odd `k` with custom bounds instead (NHCB), every fifth a gauge.
fn histogram(k: usize) -> FloatHistogram {
    let f = k as f64;
    let span = |offset, length| BucketSpan { offset, length };
    if k % 2 == 1 {
        return FloatHistogram {
            schema: meshlens_model::histogram::CUSTOM_BUCKETS_SCHEMA,
            count: 3.0 + f,
            sum: 0.25 * f,
            positive_spans: vec![span(0, 3)],
            positive_buckets: vec![1.0, 2.0, f],
            custom_values: vec![0.1, 0.5, 1.0],
            ..FloatHistogram::default()
        };
    }
    FloatHistogram {
        counter_reset_hint: if k.is_multiple_of(5) {
            CounterResetHint::Gauge
        } else {
            CounterResetHint::NotCounterReset
        },
        schema: 3,
        zero_threshold: 1e-128,
        zero_count: 1.0,
        count: 6.0 + 2.0 * f,
        sum: -1.5 + f,
        positive_spans: vec![span(-2, 2), span(5, 1)],
        positive_buckets: vec![1.0, 2.0 + f, 0.5],
        negative_spans: vec![span(1, 1)],
        negative_buckets: vec![1.5 + f],
        custom_values: Vec::new(),
    }
}

/// Native histograms beside float samples: a series with histograms only, one switching from
/// floats to histograms, across midnight; stored, deduplicated after a retry, read back
/// exactly, counted against the selection's sample limit, and refused for bad labels or
/// times as float samples are.
fn native_histograms_are_stored_and_read_back(b: &Backend) {
    let s = common::open(&b.url(0, "metrics_histograms"));
    let labels = |name: &str| Labels::from_pairs([("__name__", name), ("job", "api")]);
    let hs = |from: usize, to: usize| -> Vec<HistogramSample> {
        (from..to)
            .map(|k| HistogramSample {
                t: BASE - 5 * STEP + k as i64 * STEP,
                h: Arc::new(histogram(k)),
            })
            .collect()
    };
    let only = SeriesHistograms {
        labels: labels("latency_seconds"),
        samples: hs(0, 10),
    };
    let switching = SeriesHistograms {
        labels: labels("mixed"),
        samples: hs(5, 10),
    };
    let floats = TimeSeries {
        labels: labels("mixed"),
        samples: (0..5)
            .map(|k| Sample::new(BASE - 5 * STEP + k * STEP, k as f64))
            .collect(),
    };
    s.metrics().append(std::slice::from_ref(&floats)).unwrap();
    let batch = [only.clone(), switching.clone()];
    let out = s.metrics().append_histograms(&batch).unwrap();
    assert_eq!((out.accepted, out.rejected()), (15, 0));
    // A retried batch, from a fresh process: read back once.
    let again = common::open(&b.url(1 % b.nodes(), "metrics_histograms"));
    again.metrics().append_histograms(&batch).unwrap();

    let all = [m(MatchOp::Equal, "job", "api")];
    let got = s.metrics().select(&all, i64::MIN, i64::MAX).unwrap();
    let want = vec![
        SeriesSamples {
            labels: only.labels.clone(),
            samples: Vec::new(),
            histograms: only.samples.clone(),
        },
        SeriesSamples {
            labels: floats.labels.clone(),
            samples: floats.samples.clone(),
            histograms: switching.samples.clone(),
        },
    ];
    assert_eq!(got, want);
    // A window: the histograms inside it only.
    let (lo, hi) = (BASE - 3 * STEP, BASE + STEP);
    let got = s.metrics().select(&all, lo, hi).unwrap();
    let inside = |v: &[HistogramSample]| -> Vec<HistogramSample> {
        v.iter()
            .filter(|h| h.t >= lo && h.t <= hi)
            .cloned()
            .collect()
    };
    assert_eq!(got[0].histograms, inside(&only.samples));
    assert_eq!(got[1].histograms, inside(&switching.samples));
    // The limit counts float and histogram samples together.
    let total = 5 + 10 + 5;
    assert_eq!(
        s.metrics()
            .select_limited(&all, i64::MIN, i64::MAX, total)
            .unwrap()
            .len(),
        2
    );
    let err = s
        .metrics()
        .select_limited(&all, i64::MIN, i64::MAX, total - 1)
        .unwrap_err();
    assert!(
        matches!(err, StorageError::TooManySamples { limit } if limit == total - 1),
        "{err:?}"
    );
    // Bad labels and times outside the storable days are refused and counted, the rest kept.
    let bad = [
        SeriesHistograms {
            labels: Labels::from_pairs([("__name__", "bad-name")]),
            samples: hs(0, 1),
        },
        SeriesHistograms {
            labels: labels("late"),
            samples: vec![
                HistogramSample {
                    t: -5,
                    h: Arc::new(histogram(0)),
                },
                HistogramSample {
                    t: BASE,
                    h: Arc::new(histogram(2)),
                },
            ],
        },
    ];
    let out = s.metrics().append_histograms(&bad).unwrap();
    assert_eq!(
        (out.accepted, out.invalid_labels, out.out_of_bounds),
        (1, 1, 1)
    );
    let late = s
        .metrics()
        .select(&[m(MatchOp::Equal, "__name__", "late")], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].histograms.len(), 1);
}

on_both!(
    native_histograms_are_stored_and_read_back,
    select_equals_the_in_memory_selection_for_every_matcher_kind,
    label_names_and_values_are_sql_and_match_memory,
    a_retried_batch_does_not_duplicate_results,
    limits_refuse_oversized_selections_with_422,
    bad_input_is_counted_or_refused_never_stored_wrong,
);
