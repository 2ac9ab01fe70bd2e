//! The range-query result cache: a repeated query with a later end reuses its past steps
//! and gives what evaluating every step gives, sees samples that arrive within the safety
//! offset (and, for `smoothed` selectors, that affect steps up to a lookback delta before
//! them), and is never used for `@`, negative offsets, old data or when disabled.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use meshlens_model::{Labels, MetricReader};
use meshlens_promql::{CacheStats, Engine, EngineOptions, QueryResult, Value};
use support::series::add_series;
use support::MemStore;

const MIN: i64 = 60_000;
const STEP: i64 = MIN;

fn now() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    ms / STEP * STEP
}

fn uncached() -> Engine {
    Engine::new(EngineOptions {
        disable_cache: true,
        ..Default::default()
    })
}

fn query(e: &Engine, st: &dyn MetricReader, q: &str, start: i64, end: i64) -> QueryResult {
    e.range_query(st, q, start, end, STEP)
        .unwrap_or_else(|err| panic!("{q}: {err}"))
}

fn assert_same_as_uncached(e: &Engine, st: &dyn MetricReader, q: &str, start: i64, end: i64) {
    let got = query(e, st, q, start, end);
    let want = query(&uncached(), st, q, start, end);
    // Equal to the bit (NaN included: `==` would say NaN differs from itself).
    let bits = |r: &QueryResult| match &r.value {
        Value::Matrix(m) => m
            .iter()
            .map(|s| {
                let v: Vec<(i64, u64)> = s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect();
                (s.labels.clone(), v)
            })
            .collect::<Vec<_>>(),
        other => panic!("{q}: not a matrix: {other:?}"),
    };
    assert_eq!(bits(&got), bits(&want), "{q} over [{start}, {end}]");
    assert!(!bits(&want).is_empty(), "{q}: the comparison must see data");
    assert_eq!(
        (&got.warnings, &got.infos),
        (&want.warnings, &want.infos),
        "{q}"
    );
}

#[test]
fn a_later_window_reuses_past_steps_and_equals_evaluating_all() {
    let now = now();
    let mut st = MemStore::default();
    add_series(&mut st, 30, now - 4 * 60 * MIN, now, 15_000);
    let e = Engine::new(EngineOptions::default());
    let queries = [
        "sum by (grp) (rate(req_total[5m]))",
        "rate(req_total[5m] offset 10m)",
        "max_over_time(sum(rate(req_total[1m]))[30m:1m])",
        "temp > 20",
        "time() - 1",
    ];
    for (k, q) in queries.iter().enumerate() {
        let (start, end) = (now - 3 * 60 * MIN, now - 60 * MIN);
        assert_same_as_uncached(&e, &st, q, start, end);
        assert_eq!(e.cache_stats().entries, k + 1, "{q}: kept");
        let hits = e.cache_stats().hits;
        // A refreshing dashboard: the window moves on, then reaches the present.
        assert_same_as_uncached(&e, &st, q, start + 10 * MIN, end + 20 * MIN);
        assert_same_as_uncached(&e, &st, q, start + 20 * MIN, now);
        // Zoomed into the cached past: answered from the cache alone.
        assert_same_as_uncached(&e, &st, q, start + 30 * MIN, start + 40 * MIN);
        assert_eq!(e.cache_stats().hits, hits + 3, "{q}");
    }

    // A sample arriving now, inside the safety offset, is seen by the next query.
    let l = Labels::from_pairs([("__name__", "req_total"), ("grp", "0"), ("i", "0")]);
    st.add(l, now - MIN / 2, 1e9);
    for q in queries {
        assert_same_as_uncached(&e, &st, q, now - 2 * 60 * MIN, now);
    }
}

#[test]
fn at_negative_offsets_old_data_and_disabled_are_not_cached() {
    let now = now();
    let mut st = MemStore::default();
    add_series(&mut st, 10, now - 2 * 60 * MIN, now, 15_000);
    let e = Engine::new(EngineOptions::default());
    for q in [
        "sum(rate(req_total[5m] @ end()))",
        "sum(temp offset -10m)",
        "max_over_time(temp[10m:1m] @ start())",
    ] {
        assert_same_as_uncached(&e, &st, q, now - 60 * MIN, now - 10 * MIN);
        assert_same_as_uncached(&e, &st, q, now - 60 * MIN, now);
    }
    assert_eq!(e.cache_stats(), CacheStats::default());

    // Data far in the past (imports, backfills, tests) is evaluated every time.
    let mut old = MemStore::default();
    add_series(&mut old, 10, 0, 4 * 60 * MIN, 15_000);
    assert_same_as_uncached(&e, &old, "sum(rate(req_total[5m]))", 60 * MIN, 120 * MIN);
    let l = Labels::from_pairs([("__name__", "req_total"), ("grp", "0"), ("i", "0")]);
    old.add(l, 90 * MIN + 1, 1e9);
    assert_same_as_uncached(&e, &old, "sum(rate(req_total[5m]))", 60 * MIN, 120 * MIN);
    assert_eq!(e.cache_stats().entries, 0);

    let off = uncached();
    query(&off, &st, "sum(temp)", now - 60 * MIN, now);
    query(&off, &st, "sum(temp)", now - 60 * MIN, now);
    assert_eq!(off.cache_stats(), CacheStats::default());

    // Copies made for a request's timeout share the cache; reset empties it.
    query(&e, &st, "sum(temp)", now - 60 * MIN, now);
    let copy = e.with_timeout(std::time::Duration::from_secs(5));
    query(&copy, &st, "sum(temp)", now - 60 * MIN, now);
    assert_eq!(e.cache_stats().hits, 1);
    e.reset_cache();
    assert_eq!(copy.cache_stats().entries, 0);
}

#[test]
fn smoothed_steps_are_kept_only_once_the_samples_after_them_are_final() {
    let now = now();
    let mut st = MemStore::default();
    // Data up to just before the safety offset: the steps after it extrapolate the last
    // sample for now.
    add_series(&mut st, 10, now - 2 * 60 * MIN, now - 6 * MIN, 15_000);
    let e = Engine::new(EngineOptions::default());
    let queries = [
        "temp smoothed",
        "sum by (grp) (rate(req_total[5m] smoothed))",
        "increase(req_total[10m] anchored)",
    ];
    let (start, end) = (now - 60 * MIN, now);
    for q in queries {
        assert_same_as_uncached(&e, &st, q, start, end);
    }
    // Samples arriving within the safety offset, as they may: smoothed steps up to one
    // lookback delta before them interpolate towards them now.
    for i in 0..10 {
        let id = i.to_string();
        let grp = (i % 7).to_string();
        for (name, v) in [("temp", 1e6), ("req_total", 1e9)] {
            let l = Labels::from_pairs([("__name__", name), ("grp", &grp), ("i", &id)]);
            st.add(l, now - 4 * MIN, v);
        }
    }
    let hits = e.cache_stats().hits;
    for q in queries {
        assert_same_as_uncached(&e, &st, q, start, end);
    }
    assert_eq!(
        e.cache_stats().hits,
        hits + 3,
        "the past steps are still reused"
    );
}
