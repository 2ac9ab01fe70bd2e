//! The issue's fault test: one `meshlens agent` (cluster `east`) forwarding to two hubs while
//! a scrape target, Debian's Prometheus (remote write), a remote-write loop and a span loop
//! feed it. Hub A is SIGKILLed for 20 s; meanwhile the agent is SIGKILLed and restarted;
//! then hub B is stopped (SIGTERM) for 10 s. Afterwards both hubs must hold every
//! acknowledged sample and span, with the cluster label, and the same series and samples.

mod common;
#[path = "agent_fault/procs.rs"]
mod procs;
#[path = "agent_fault/verify.rs"]
mod verify;
#[path = "agent_fault/writers.rs"]
mod writers;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, httpc, poll, require_binary, start_prometheus_on};
use meshlens_model::time::now_ms;
use procs::Proc;
use verify::Matrix;
use writers::Ledger;

/// Every series the agent forwarded. `traces_*` are derived by each hub from the spans it
/// ingested (in memory, flushed on its own clock), so they are not part of the stream.
const FORWARDED: &str = r#"{cluster="east",__name__!~"traces_.*"}"#;

/// A generous bound for anything to settle; the test asserts outcomes, never durations.
const SETTLE: Duration = Duration::from_secs(120);

fn sleep(secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
}

/// Polls the agent's /metrics until its buffer holds nothing for the hubs at `hub_addrs`
/// (every `meshlens_forward_buffered_bytes` line naming one of them reads 0); returns how
/// long that took.
fn wait_caught_up(agent: &Proc, hub_addrs: &[&str]) -> Duration {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < SETTLE {
        if let Ok(r) = httpc::get(&agent.url("/metrics")) {
            last = String::from_utf8_lossy(&r.body).to_string();
            let lines = verify::samples_of(&last, "meshlens_forward_buffered_bytes");
            let caught_up = hub_addrs.iter().all(|h| {
                let mine: Vec<_> = lines.iter().filter(|(l, _)| l.contains(h)).collect();
                !mine.is_empty() && mine.iter().all(|(_, v)| *v == 0.0)
            });
            if caught_up {
                return start.elapsed();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the agent did not catch up with {hub_addrs:?} within {SETTLE:?}; its forward metrics:\n{}\nlog: {}",
        last.lines()
            .filter(|l| l.starts_with("meshlens_forward_"))
            .collect::<Vec<_>>()
            .join("\n"),
        agent.log.display()
    );
}

fn print_agent_view(agent: &Proc, hub: &Proc, when: &str) {
    if let Ok(r) = httpc::get(&agent.url("/metrics")) {
        let text = String::from_utf8_lossy(&r.body);
        for l in verify::agent_lines_for(&text, &hub.addr) {
            println!("  agent {when}: {l}");
        }
    }
}

fn has_series(hub: &Proc, matcher: &str, since_ms: i64) -> bool {
    !verify::series(&hub.url(""), matcher, since_ms, now_ms()).is_empty()
}

/// Polls `f` until it succeeds; fails with its last complaint.
fn settle<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > SETTLE => panic!("{what}: after {SETTLE:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Polls until `want()` and `got()` answer the same, then returns that; fails with the
/// difference.
fn converge(
    what: &str,
    mut want: impl FnMut() -> Matrix,
    mut got: impl FnMut() -> Matrix,
) -> Matrix {
    let start = Instant::now();
    loop {
        let (w, g) = (want(), got());
        if w == g {
            return g;
        }
        if start.elapsed() > SETTLE {
            panic!(
                "{what}: not equal after {SETTLE:?}:\n{}",
                verify::diff(&w, &g)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn agent_with_two_hubs_loses_nothing_through_faults() {
    if !require_binary("prometheus") {
        return;
    }
    // Kept after a failure (logs of every process); removed when the test passes.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("agent_fault");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    println!("data and logs: {}", dir.display());
    let t0 = now_ms();

    let mut hub_a = procs::hub("hub-a", &dir);
    let mut hub_b = procs::hub("hub-b", &dir);
    let target = writers::start_target();
    let agent_cfg = dir.join("agent.yml");
    std::fs::write(&agent_cfg, writers::agent_config(&target)).unwrap();
    let mut agent = procs::agent(&dir, &[&hub_a.addr, &hub_b.addr], &agent_cfg);
    println!(
        "hub A {}, hub B {}, agent {}, target {target}",
        hub_a.addr, hub_b.addr, agent.addr
    );

    let prom_port = free_port();
    let (prom, prom_url) = start_prometheus_on(
        prom_port,
        &writers::prometheus_config(prom_port, &agent.addr),
        &dir.join("prometheus"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Ledger::default());
    let sample_writer = writers::sample_writer(agent.addr.clone(), stop.clone(), ledger.clone());
    let span_writer = writers::span_writer(agent.addr.clone(), stop.clone(), ledger.clone());

    // Every writer's data reaches both hubs before the first fault.
    poll(SETTLE, || {
        let flowing = ledger.samples.lock().unwrap().len() >= 30
            && ledger.traces.lock().unwrap().len() >= 10
            && [&hub_a, &hub_b].iter().all(|h| {
                has_series(h, r#"up{job="prometheus",cluster="east"}"#, t0)
                    && has_series(h, r#"up{job="target",cluster="east"}"#, t0)
                    && has_series(h, r#"fault_test_samples{cluster="east"}"#, t0)
            });
        flowing.then_some(())
    });

    // Fault 1: hub A SIGKILLed, down 20 s. Fault 2, within that: the agent SIGKILLed while it
    // holds a backlog for A, restarted on the same port and data dir.
    let a_down = Instant::now();
    hub_a.kill9();
    println!("hub A SIGKILLed");
    sleep(8);
    print_agent_view(&agent, &hub_a, "before its SIGKILL, for hub A");
    agent.kill9();
    println!("agent SIGKILLed");
    sleep(2);
    agent.restart();
    println!("agent restarted after {:?} down", Duration::from_secs(2));
    std::thread::sleep(
        (a_down + Duration::from_secs(20)).saturating_duration_since(Instant::now()),
    );
    print_agent_view(&agent, &hub_a, "after 20 s of hub A down");
    let a_outage = a_down.elapsed();
    hub_a.restart();
    let a_catch_up = wait_caught_up(&agent, &[&hub_a.addr]);
    println!(
        "hub A restarted after {a_outage:?} down; the agent caught up with it in {a_catch_up:?}"
    );
    sleep(3);

    // Fault 3: hub B stopped for 10 s.
    hub_b.terminate();
    println!("hub B stopped (SIGTERM)");
    sleep(10);
    print_agent_view(&agent, &hub_b, "after 10 s of hub B down");
    hub_b.restart();
    let b_catch_up = wait_caught_up(&agent, &[&hub_b.addr]);
    println!("hub B restarted; the agent caught up with it in {b_catch_up:?}");
    sleep(3);

    stop.store(true, Ordering::Relaxed);
    sample_writer.join().unwrap();
    span_writer.join().unwrap();
    let t_end = now_ms();
    let stopped = Instant::now();
    let final_catch_up = wait_caught_up(&agent, &[&hub_a.addr, &hub_b.addr]);
    println!("writers stopped; the agent showed both hubs caught up {final_catch_up:?} later");
    // Everything Prometheus scraped up to t_end is in its own TSDB once a scrape timeout passed.
    std::thread::sleep(
        (stopped + Duration::from_secs(3)).saturating_duration_since(Instant::now()),
    );
    let window = format!("[{}s]", (t_end - t0) / 1000 + 60);
    let prom_own = verify::matrix(
        &prom_url,
        &format!("{{job=\"prometheus\"}}{window}"),
        t_end,
        None,
    );

    let acked = ledger.samples.lock().unwrap().clone();
    let traces = ledger.traces.lock().unwrap().clone();
    let otlp = traces.iter().filter(|(_, p)| *p == "otlp").count();
    println!(
        "acknowledged: {} samples ({} retried requests), {} traces = {} spans ({} over OTLP, {} retried posts)",
        acked.len(),
        ledger.sample_retries.load(Ordering::Relaxed),
        traces.len(),
        traces.len() * writers::SPANS_PER_TRACE,
        otlp,
        ledger.span_retries.load(Ordering::Relaxed)
    );
    assert!(
        ledger.sample_retries.load(Ordering::Relaxed) > 0,
        "the remote-write loop never saw the agent down: the faults did not happen"
    );

    let mut forwarded = Vec::new();
    for (name, hub) in [("A", &hub_a), ("B", &hub_b)] {
        let base = hub.url("");
        // Every acknowledged test sample, in one series carrying the cluster label.
        let q = format!("fault_test_samples{window}");
        let stored = settle(&format!("hub {name}: acknowledged samples"), || {
            let m = verify::matrix(&base, &q, t_end, None);
            let ts: BTreeSet<i64> = m.values().flatten().map(|(t, _)| *t).collect();
            let missing: Vec<_> = acked.keys().filter(|t| !ts.contains(t)).collect();
            match missing.first() {
                None => Ok(m),
                Some(first) => Err(format!(
                    "{} of {} missing, the first at {first}",
                    missing.len(),
                    acked.len()
                )),
            }
        });
        assert_eq!(stored.len(), 1, "hub {name}: {:?}", stored.keys());
        let (labels, points) = stored.iter().next().unwrap();
        assert!(
            labels.contains(r#""cluster": "east""#),
            "hub {name}: {labels}"
        );
        for (t, v) in points {
            if let Some(want) = acked.get(t) {
                assert_eq!(v.parse::<f64>().ok(), Some(*want), "hub {name} at {t}");
            }
        }
        println!(
            "hub {name}: {} of {} acknowledged samples found ({} stored)",
            acked.len(),
            acked.len(),
            points.len()
        );

        // Every acknowledged trace, whole, each span tagged with the cluster.
        let found =
            settle(
                &format!("hub {name}: acknowledged traces"),
                || match verify::traces_found(&base, &traces, writers::SPANS_PER_TRACE) {
                    (found, bad) if bad.is_empty() => Ok(found),
                    (found, bad) => Err(format!("{found} of {} whole; {bad:?}", traces.len())),
                },
            );
        println!(
            "hub {name}: {found} of {} acknowledged traces found whole, all tagged cluster east",
            traces.len()
        );

        // Every series carries cluster="east", except the hub's own span-derived ones.
        let all = verify::series(&base, r#"{__name__=~".+"}"#, t0 - 60_000, t_end);
        let unlabelled: Vec<_> = all
            .iter()
            .filter(|s| s.get("cluster").map(String::as_str) != Some("east"))
            .filter(|s| !s["__name__"].starts_with("traces_"))
            .take(5)
            .collect();
        assert!(
            unlabelled.is_empty(),
            "hub {name}: series without cluster east: {unlabelled:?}"
        );
        let set: BTreeSet<_> = verify::series(&base, FORWARDED, t0 - 60_000, t_end)
            .into_iter()
            .collect();
        println!(
            "hub {name}: {} forwarded series (cluster east), {} span-derived traces_* series",
            set.len(),
            all.len() - set.len()
        );

        // Debian's Prometheus: each hub holds every sample it holds itself.
        let q = format!("{{job=\"prometheus\",cluster=\"east\"}}{window}");
        converge(
            &format!("Prometheus' own samples vs hub {name}"),
            || prom_own.clone(),
            || verify::matrix(&base, &q, t_end, Some("cluster")),
        );
        println!(
            "hub {name}: all {} samples of Prometheus' {} series present",
            verify::sample_count(&prom_own),
            prom_own.len()
        );
        forwarded.push(set);
    }
    assert!(!prom_own.is_empty(), "Prometheus holds nothing of its own");
    assert_eq!(
        forwarded[0].len(),
        forwarded[1].len(),
        "series counts differ: A {} vs B {}",
        forwarded[0].len(),
        forwarded[1].len()
    );
    assert_eq!(forwarded[0], forwarded[1], "the hubs' series differ");

    // The whole forwarded stream, sample for sample, is the same on both hubs.
    let q = format!("{FORWARDED}{window}");
    let on_b = converge(
        "hub A vs hub B",
        || verify::matrix(&hub_a.url(""), &q, t_end, None),
        || verify::matrix(&hub_b.url(""), &q, t_end, None),
    );
    let target_samples: usize = on_b
        .iter()
        .filter(|(k, _)| k.contains(r#""job": "target""#))
        .map(|(_, p)| p.len())
        .sum();
    assert!(target_samples > 0, "no scraped target samples on the hubs");
    println!(
        "both hubs: {} series, {} samples identical ({} from the agent's scrape of the target)",
        on_b.len(),
        verify::sample_count(&on_b),
        target_samples
    );

    // Nothing was refused by a hub, deleted from the buffer or unreadable.
    let r = httpc::get(&agent.url("/metrics")).expect("agent /metrics");
    let text = String::from_utf8_lossy(&r.body);
    for name in [
        "meshlens_forward_sent_samples_total",
        "meshlens_forward_sent_spans_total",
        "meshlens_forward_retries_total",
    ] {
        for (labels, v) in verify::samples_of(&text, name) {
            println!("agent: {name}{labels} {v}");
        }
    }
    let dropped = verify::samples_of(&text, "meshlens_forward_dropped_total");
    assert!(
        !dropped.is_empty(),
        "the agent exports no meshlens_forward_dropped_total"
    );
    let nonzero: Vec<_> = dropped.iter().filter(|(_, v)| *v != 0.0).collect();
    assert!(nonzero.is_empty(), "the agent dropped data: {nonzero:?}");

    drop(prom);
    drop((agent, hub_a, hub_b));
    let _ = std::fs::remove_dir_all(&dir);
}
