//! Regressions: times, offsets and ranges at the ends of i64 milliseconds. The HTTP API
//! accepts any float as a time and PromQL any duration, so evaluation must saturate rather
//! than overflow (a panic in debug builds, wrapped nonsense in release ones).

mod support;

use meshlens_model::Labels;
use meshlens_promql::{Engine, EngineOptions, PromqlError};
use support::MemStore;

fn store() -> MemStore {
    let mut s = MemStore::default();
    let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
    for k in 0..10 {
        s.add(l.clone(), k * 15_000, 1.0);
    }
    s
}

fn engine() -> Engine {
    Engine::new(EngineOptions::default())
}

#[test]
fn at_modifier_near_the_ends_of_i64_does_not_overflow() {
    let s = store();
    for q in [
        "up @ 9223372036854775",
        "up @ -9223372036854775",
        "rate(up[5m] @ 9223372036854775)",
        "rate(up[5m] @ -9223372036854775)",
        "up[5m:1m] @ -9223372036854775",
    ] {
        let r = engine().instant_query(&s, q, 100_000);
        assert!(r.is_ok(), "{q}: {r:?}");
    }
}

#[test]
fn offsets_and_ranges_beyond_i64_millis_saturate() {
    let s = store();
    for q in [
        "up offset -292277025y",
        "rate(up[292277025y])",
        "rate(up[292277025y] offset -292277025y)",
        "max_over_time(up[292277025y:1y])",
    ] {
        let r = engine().instant_query(&s, q, i64::MIN + 1);
        assert!(
            r.is_ok() || matches!(r, Err(PromqlError::Execution { .. })),
            "{q}: {r:?}"
        );
    }
}

#[test]
fn range_query_between_the_ends_of_i64_is_refused_not_overflowed() {
    let r = engine().range_query(&store(), "up", i64::MIN, i64::MAX, 1_000);
    assert!(matches!(r, Err(PromqlError::BadData { .. })), "{r:?}");
    let r = engine().range_query(&store(), "up", i64::MIN, i64::MAX, i64::MAX / 4);
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn subquery_with_too_many_steps_is_refused_before_they_are_made() {
    // 100 years at 1 ms would be 3e12 steps: refused at once, not after filling memory.
    let r = engine().instant_query(&store(), "max_over_time(up[100y:1ms])", 100_000);
    assert!(matches!(r, Err(PromqlError::Execution { .. })), "{r:?}");
}
