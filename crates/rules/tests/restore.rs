//! `for` state survives a restart through ALERTS_FOR_STATE in the real TSDB: an alert
//! pending 40 s of its 60 s fires 20 s after the restart, not 60 s.

use std::collections::BTreeMap;
use std::time::Duration;

use meshlens_model::{Labels, MetricWriter, Sample, TimeSeries};
use meshlens_promql::{Engine, EngineOptions};
use meshlens_rules::{parse_rule_file, AlertState, EvalContext, Group};
use meshlens_tsdb::{Tsdb, TsdbOptions};

const S: i64 = 1000;
const T0: i64 = 1_700_000_000_000;
const RULES: &str = "groups:\n- name: restart\n  interval: 5s\n  rules:\n  - alert: AlwaysOn\n    expr: vector(1)\n    for: 60s\n    labels: {severity: ticket}\n";

fn new_group() -> Group {
    let spec = parse_rule_file("r.yml", RULES).unwrap().groups.remove(0);
    Group::new(spec, Duration::from_secs(5))
}

fn state(g: &Group) -> Option<AlertState> {
    g.alerting_rules()[0].alerts.first().map(|a| a.state)
}

struct Run<'a> {
    engine: Engine,
    db: &'a Tsdb,
    ext: BTreeMap<String, String>,
}

impl Run<'_> {
    fn ctx(&self) -> EvalContext<'_> {
        EvalContext {
            engine: &self.engine,
            reader: self.db,
            writer: self.db,
            external_labels: &self.ext,
            external_url: "",
        }
    }
}

#[test]
fn pending_alert_resumes_its_for_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tolerance = Duration::from_secs(3600);
    let grace = Duration::from_secs(5);
    {
        let db = Tsdb::open(dir.path(), TsdbOptions::default()).unwrap();
        // Something in storage before the rules start, as on a real server.
        db.append(&[TimeSeries {
            labels: Labels::from_pairs([("__name__", "up")]),
            samples: vec![Sample::new(T0 - 10 * S, 1.0)],
        }])
        .unwrap();
        let run = Run {
            engine: Engine::new(EngineOptions::default()),
            db: &db,
            ext: BTreeMap::new(),
        };
        let mut g = new_group();
        g.await_restore();
        g.eval(&run.ctx(), T0);
        g.restore_for_state(&run.ctx(), T0, tolerance, grace);
        let mut t = T0;
        while t < T0 + 40 * S {
            t += 5 * S;
            g.eval(&run.ctx(), t);
            assert_eq!(
                state(&g),
                Some(AlertState::Pending),
                "at {} s",
                (t - T0) / S
            );
        }
        db.close().unwrap();
    }
    // Down for 10 s; the new process starts evaluating at T0 + 50 s.
    let db = Tsdb::open(dir.path(), TsdbOptions::default()).unwrap();
    let run = Run {
        engine: Engine::new(EngineOptions::default()),
        db: &db,
        ext: BTreeMap::new(),
    };
    let restart = T0 + 50 * S;
    let mut g = new_group();
    g.await_restore();
    g.eval(&run.ctx(), restart);
    g.restore_for_state(&run.ctx(), restart, tolerance, grace);
    let active_at = g.alerting_rules()[0].alerts[0].active_at_ms;
    assert_eq!(
        active_at,
        T0 + 10 * S,
        "activeAt moved forward by the 10 s outage"
    );
    let mut fired_after = None;
    let mut t = restart;
    while t < restart + 70 * S {
        t += 5 * S;
        g.eval(&run.ctx(), t);
        if state(&g) == Some(AlertState::Firing) {
            fired_after = Some(t - restart);
            break;
        }
    }
    assert_eq!(
        fired_after,
        Some(20 * S),
        "fires when the 20 s left of `for` have passed"
    );
}

#[test]
fn without_restoring_the_whole_for_starts_again_and_short_for_is_not_restored() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), TsdbOptions::default()).unwrap();
    let run = Run {
        engine: Engine::new(EngineOptions::default()),
        db: &db,
        ext: BTreeMap::new(),
    };
    let mut g = new_group();
    for i in 0..=8 {
        g.eval(&run.ctx(), T0 + i * 5 * S);
    }
    // A grace period longer than `for`: nothing is restored, the alert starts over.
    let mut g2 = new_group();
    g2.await_restore();
    g2.eval(&run.ctx(), T0 + 50 * S);
    g2.restore_for_state(
        &run.ctx(),
        T0 + 50 * S,
        Duration::from_secs(3600),
        Duration::from_secs(120),
    );
    assert_eq!(g2.alerting_rules()[0].alerts[0].active_at_ms, T0 + 50 * S);
    // Outside the outage tolerance: nothing found, the alert starts over.
    let mut g3 = new_group();
    g3.await_restore();
    g3.eval(&run.ctx(), T0 + 50 * S);
    g3.restore_for_state(
        &run.ctx(),
        T0 + 50 * S,
        Duration::from_secs(5),
        Duration::from_secs(5),
    );
    assert_eq!(g3.alerting_rules()[0].alerts[0].active_at_ms, T0 + 50 * S);
    // Close to firing: at least the grace period from now.
    let mut g4 = new_group();
    g4.await_restore();
    g4.eval(&run.ctx(), T0 + 58 * S);
    g4.restore_for_state(
        &run.ctx(),
        T0 + 58 * S,
        Duration::from_secs(3600),
        Duration::from_secs(10),
    );
    // Pending 40 s, down 18 s: 20 s left >= 10 s grace, so shifted by the outage.
    assert_eq!(g4.alerting_rules()[0].alerts[0].active_at_ms, T0 + 18 * S);
    // 20 s left but a 30 s grace period: it fires 30 s from now.
    let mut g5 = new_group();
    g5.await_restore();
    g5.eval(&run.ctx(), T0 + 58 * S);
    g5.restore_for_state(
        &run.ctx(),
        T0 + 58 * S,
        Duration::from_secs(3600),
        Duration::from_secs(30),
    );
    assert_eq!(g5.alerting_rules()[0].alerts[0].active_at_ms, T0 + 28 * S);
    db.close().unwrap();
}
