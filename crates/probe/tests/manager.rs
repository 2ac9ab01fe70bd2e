//! The probe manager: series reach the writer per target, a removed target's series are
//! marked stale, unchanged targets survive a reload, nothing is written after stop.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshlens_model::{is_stale_nan, AppendOutcome, MetricWriter, StorageError, TimeSeries};
use meshlens_probe::{parse_probes_file, ProbeConfig, ProbeManager};

#[derive(Default)]
struct MemWriter {
    series: Mutex<Vec<TimeSeries>>,
}

impl MetricWriter for MemWriter {
    fn append(&self, batch: &[TimeSeries]) -> Result<AppendOutcome, StorageError> {
        self.series.lock().unwrap().extend(batch.iter().cloned());
        Ok(AppendOutcome::default())
    }
}

impl MemWriter {
    fn count(&self, pred: impl Fn(&TimeSeries) -> bool) -> usize {
        self.series
            .lock()
            .unwrap()
            .iter()
            .filter(|s| pred(s))
            .count()
    }
}

fn success_of(instance: &str, stale: bool) -> impl Fn(&TimeSeries) -> bool + '_ {
    move |s| {
        s.labels.metric_name() == Some("probe_success")
            && s.labels.get("instance") == Some(instance)
            && s.samples.iter().any(|x| is_stale_nan(x.v) == stale)
    }
}

fn config(targets: &[String]) -> Vec<ProbeConfig> {
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let yaml = format!(
        "probes:\n  - name: tcp\n    module: tcp\n    interval: 100ms\n    timeout: 50ms\n    targets: [{list}]\n"
    );
    parse_probes_file(&yaml, "probes.yml").unwrap()
}

/// Polls `cond` up to ~20 s.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..400 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_reloads_and_stops() {
    let t = common::start_targets().await;
    let open = t.http.to_string();
    let closed = t.closed.to_string();
    let writer = Arc::new(MemWriter::default());
    let manager = ProbeManager::start(config(&[open.clone(), closed.clone()]), writer.clone());

    eventually("both targets probed", || {
        writer.count(success_of(&open, false)) > 0 && writer.count(success_of(&closed, false)) > 0
    })
    .await;
    let values = |inst: &str| -> Vec<f64> {
        writer
            .series
            .lock()
            .unwrap()
            .iter()
            .filter(|s| success_of(inst, false)(s))
            .flat_map(|s| s.samples.iter().map(|x| x.v))
            .collect()
    };
    assert!(values(&open).iter().all(|v| *v == 1.0));
    assert!(values(&closed).iter().all(|v| *v == 0.0));

    // Drop the closed target: its series are marked stale, the open one keeps going.
    manager.update(config(std::slice::from_ref(&open)));
    eventually("stale markers for the removed target", || {
        writer.count(success_of(&closed, true)) > 0
    })
    .await;
    let before = writer.count(success_of(&open, false));
    eventually("the kept target still probed", || {
        writer.count(success_of(&open, false)) > before
    })
    .await;
    assert_eq!(writer.count(success_of(&open, true)), 0);

    manager.stop().await;
    let after_stop = writer.series.lock().unwrap().len();
    // Stopping writes no staleness markers (as Prometheus on shutdown) and nothing after.
    assert_eq!(writer.count(success_of(&open, true)), 0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(writer.series.lock().unwrap().len(), after_stop);
    // Updates after stop are ignored.
    manager.update(config(std::slice::from_ref(&open)));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(writer.series.lock().unwrap().len(), after_stop);
}
