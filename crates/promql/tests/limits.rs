//! Query limits: text length and nesting depth before parsing, queries evaluating at once,
//! and the sample budget handed to storage.

mod support;

use std::sync::Arc;
use std::time::Duration;

use meshlens_model::Labels;
use meshlens_promql::{
    Engine, EngineOptions, PromqlError, Value, MAX_QUERY_BYTES, MAX_QUERY_DEPTH,
};
use support::held::Held;
use support::MemStore;

const T: i64 = 1_000_000;

fn store() -> MemStore {
    let mut s = MemStore::default();
    for i in 0..10 {
        let l = Labels::from_pairs([("__name__", "up"), ("i", &i.to_string())]);
        for k in 0..100 {
            s.add(l.clone(), T - k * 1000, 1.0);
        }
    }
    s
}

/// Runs `f` on a thread with a 2 MiB stack, as tokio's blocking pool has.
fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("query thread must not crash")
}

/// Shapes of deep queries, `n` levels deep.
fn shapes(n: usize) -> Vec<(&'static str, String)> {
    vec![
        ("open parens", "(".repeat(n)),
        (
            "nested parens",
            format!("{}1{}", "(".repeat(n), ")".repeat(n)),
        ),
        ("binary chain", format!("1{}", " + 1".repeat(n))),
        ("unary chain", format!("{}1", "-".repeat(n))),
        (
            "nested calls",
            format!("{}up{}", "abs(".repeat(n), ")".repeat(n)),
        ),
        (
            "nested aggregations",
            format!("{}up{}", "sum by (i) (".repeat(n), ")".repeat(n)),
        ),
        ("repeated matchers", format!("up{{{}", "a=\"b\",".repeat(n))),
    ]
}

#[test]
fn megabyte_queries_are_refused_not_a_stack_overflow() {
    on_small_stack(|| {
        let engine = Engine::new(EngineOptions::default());
        let st = store();
        for (name, q) in shapes(1 << 20) {
            let e = engine.instant_query(&st, &q, T).expect_err(name);
            assert_eq!(e.error_type(), "bad_data", "{name}: {e}");
            assert_eq!(e.http_status(), 400);
            assert!(
                e.to_string().contains(&q.len().to_string()),
                "{name}: the error names the length: {e}"
            );
        }
    });
}

#[test]
fn too_deep_queries_are_refused_at_the_position_where_the_limit_is_passed() {
    on_small_stack(|| {
        let engine = Engine::new(EngineOptions::default());
        let st = store();
        for (name, q) in shapes(10_000) {
            if name == "repeated matchers" {
                // Flat: not deep, only malformed.
                let e = engine.instant_query(&st, &q, T).expect_err(name);
                assert_eq!(e.error_type(), "bad_data", "{e}");
                continue;
            }
            assert!(q.len() <= MAX_QUERY_BYTES, "{name}");
            let e = engine.instant_query(&st, &q, T).expect_err(name);
            let msg = e.to_string();
            assert_eq!(e.error_type(), "bad_data", "{name}: {msg}");
            assert!(
                msg.starts_with("1:") && msg.contains("nests deeper"),
                "{name}: {msg}"
            );
            // The column is where the level past the limit opens, not the end of the text.
            let col: usize = msg[2..msg[2..].find(':').map_or(2, |i| i + 2)]
                .parse()
                .expect("column");
            assert!(col < q.len() / 10, "{name}: column {col}");
        }
    });
}

#[test]
fn queries_at_the_depth_limit_still_evaluate_on_a_small_stack() {
    let n = MAX_QUERY_DEPTH;
    on_small_stack(move || {
        let engine = Engine::new(EngineOptions::default());
        let st = store();
        let expect_ok = [
            format!("{}1{}", "(".repeat(n - 1), ")".repeat(n - 1)),
            format!("1{}", " + 1".repeat(n)),
            format!("{}1", "-".repeat(n)),
            format!("{}up{}", "abs(".repeat(n), ")".repeat(n)),
            format!("up{}", " * up".repeat(n)),
            format!("{}up{}", "sum by (i) (".repeat(n), ")".repeat(n)),
            format!(
                "{}up{}",
                "max_over_time((".repeat(n / 3),
                ")[2m:1m])".repeat(n / 3)
            ),
        ];
        for q in &expect_ok {
            let r = engine.instant_query(&st, q, T);
            assert!(r.is_ok(), "{}…: {:?}", &q[..40.min(q.len())], r.err());
            let r = engine.range_query(&st, q, T - 60_000, T, 15_000);
            assert!(r.is_ok(), "{}…: {:?}", &q[..40.min(q.len())], r.err());
        }
        let one_more = format!("1{}", " + 1".repeat(n + 1));
        assert!(engine.instant_query(&st, &one_more, T).is_err());
    });
}

#[test]
fn nested_binary_chain_evaluates_correctly() {
    let engine = Engine::new(EngineOptions::default());
    let q = format!("1{}", " + 1".repeat(MAX_QUERY_DEPTH));
    match engine.instant_query(&store(), &q, T).expect("valid").value {
        Value::Scalar { v, .. } => assert_eq!(v, (MAX_QUERY_DEPTH + 1) as f64),
        other => panic!("{other:?}"),
    }
}

#[test]
fn queries_past_max_concurrency_wait_and_time_out_in_the_queue() {
    let engine = Arc::new(Engine::new(EngineOptions {
        max_concurrency: 1,
        ..Default::default()
    }));
    let (held, entered, release) = Held::new(Arc::new(store()));
    let held = Arc::new(held);
    let running = {
        let (engine, held) = (engine.clone(), held.clone());
        std::thread::spawn(move || engine.instant_query(held.as_ref(), "up", T))
    };
    entered
        .recv_timeout(Duration::from_secs(60))
        .expect("first query reaches storage");
    assert_eq!(engine.active_queries(), 1);

    // A copy with a request's shorter timeout shares the limit, waits, and gives up.
    let short = engine.with_timeout(Duration::from_millis(100));
    let e = short
        .instant_query(&store(), "up", T)
        .expect_err("no slot frees in time");
    assert!(matches!(e, PromqlError::QueueTimeout { .. }), "{e}");
    assert_eq!((e.error_type(), e.http_status()), ("timeout", 503));
    assert!(e.to_string().contains("query queue"), "{e}");

    release.send(()).expect("release");
    let r = running.join().expect("join").expect("first query");
    assert!(matches!(r.value, Value::Vector(ref v) if v.len() == 10));
    assert_eq!(engine.active_queries(), 0);
    assert!(short.instant_query(&store(), "up", T).is_ok());
}

#[test]
fn too_many_samples_from_storage_is_an_execution_error() {
    let engine = Engine::new(EngineOptions {
        max_samples: 500,
        ..Default::default()
    });
    // 10 series x 100 samples in the range: storage's budget check refuses it.
    let e = engine
        .instant_query(&store(), "count_over_time(up[200s])", T)
        .expect_err("over the limit");
    assert!(
        matches!(e, PromqlError::TooManySamples { limit: 500 }),
        "{e}"
    );
    assert_eq!((e.error_type(), e.http_status()), ("execution", 422));
    assert!(engine
        .instant_query(&store(), "count_over_time(up[40s])", T)
        .is_ok());
}
