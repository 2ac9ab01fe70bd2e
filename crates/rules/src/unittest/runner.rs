//! One test group's run, as promtool 2.42 runs it: input series loaded lazily (only samples
//! up to the evaluation time are visible), every group evaluated each
//! `evaluation_interval` from 0 to the last `eval_time`, firing alerts compared at the
//! evaluation at or before each alert test's time, and PromQL tests queried afterwards over
//! what was loaded by then.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use meshlens_model::{Labels, MetricWriter, Sample, TimeSeries};
use meshlens_promql::{Engine, EngineOptions, Value};

use super::compare::{check_alerts, check_samples, expr_error, LabelsAndAnnotations, ParsedSample};
use super::duration::{go_duration_string, ModelDuration};
use super::file::{AlertTestCase, TestGroup};
use super::mem::MemStorage;
use super::series::{parse_metric, parse_series_desc};
use crate::{AlertState, AlertingRuleView, EvalContext, Group, GroupSpec, RuleView};

/// promtool's query limits for unit tests.
const MAX_SAMPLES: usize = 10_000;
const QUERY_TIMEOUT: Duration = Duration::from_secs(100);
const LOOKBACK_MS: i64 = 5 * 60 * 1000;
/// Most evaluation rounds one test group may ask for (promtool has no limit; a typo such
/// as `eval_time: 100y` with a 1s interval must not run for days). A year at 1m is 525,600.
pub const MAX_EVALUATIONS: i64 = 2_000_000;

/// Input samples not yet visible to the rules, per series, in time order.
struct LazyLoader {
    pending: Vec<(Labels, Vec<Sample>)>,
}

impl LazyLoader {
    /// Parses the input series the way promtool's `load` command reads them: one line per
    /// series; an empty or `#` line ends the block, and a later definition of the same
    /// series replaces the earlier one.
    fn new(tg: &TestGroup) -> Result<LazyLoader, String> {
        let step = tg.interval.millis();
        let mut by_labels: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        for s in &tg.input_series {
            let line = format!("{} {}", s.series, s.values);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                break;
            }
            let desc = parse_series_desc(line).map_err(|e| e.to_string())?;
            let samples = desc
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let t = (i as i64).checked_mul(step)?;
                    v.map(|v| Sample::new(t, v))
                })
                .collect();
            by_labels.insert(desc.labels, samples);
        }
        Ok(LazyLoader {
            pending: by_labels.into_iter().collect(),
        })
    }

    /// Moves every sample at or before `ts` into storage.
    fn load_until(&mut self, ts: i64, storage: &MemStorage) {
        let mut batch = Vec::new();
        for (labels, samples) in &mut self.pending {
            let n = samples.partition_point(|s| s.t <= ts);
            if n > 0 {
                batch.push(TimeSeries {
                    labels: labels.clone(),
                    samples: samples.drain(..n).collect(),
                });
            }
        }
        if !batch.is_empty() {
            // Refusals (a repeated timestamp) keep the first sample, as Prometheus's head.
            let _ = storage.append(&batch);
        }
    }
}

/// Everything a test group needs from its file.
pub struct Setup<'a> {
    pub eval_interval_ms: i64,
    /// The rule files' groups in evaluation order, or why they could not be loaded.
    pub groups: &'a Result<Vec<GroupSpec>, Vec<String>>,
    /// Prometheus 2's closed range windows ([`EngineOptions::closed_ranges`]).
    pub closed_ranges: bool,
    /// See [`Engine::with_delayed_name_removal`].
    pub delayed_name_removal: bool,
}

/// Runs one test group; the failure messages, empty when it passed.
pub fn run_group(tg: &TestGroup, setup: &Setup<'_>) -> Vec<String> {
    let mut loader = match LazyLoader::new(tg) {
        Ok(l) => l,
        Err(e) => return vec![e],
    };
    let specs = match setup.groups {
        Ok(g) => g,
        Err(errs) => return errs.clone(),
    };
    let storage = MemStorage::new();
    let engine = Engine::new(EngineOptions {
        lookback_delta_ms: LOOKBACK_MS,
        max_samples: MAX_SAMPLES,
        timeout: QUERY_TIMEOUT,
        default_subquery_step_ms: setup.eval_interval_ms.max(1),
        max_concurrency: 0,
        closed_ranges: setup.closed_ranges,
        // Series are written at made-up past times as the test runs: nothing to cache.
        disable_cache: true,
    })
    .with_delayed_name_removal(setup.delayed_name_removal);
    let default_interval = Duration::from_millis(tg.interval.millis().max(0).unsigned_abs());
    let mut groups: Vec<Group> = specs
        .iter()
        .map(|g| {
            let mut group = Group::new(g.clone(), default_interval);
            group.mark_restored();
            group
        })
        .collect();
    let external_labels: BTreeMap<String, String> = tg
        .external_labels
        .iter()
        .map(|(k, v)| (k.0.clone(), v.0.clone()))
        .collect();

    for a in &tg.alert_rule_test {
        if a.alertname.as_str().is_empty() {
            let in_group = if tg.name.as_str().is_empty() {
                String::new()
            } else {
                format!(" (in TestGroup {})", tg.name)
            };
            return vec![format!(
                "an item under alert_rule_test misses required attribute alertname at eval_time {}{in_group}",
                a.eval_time
            )];
        }
    }
    let mut alert_tests: BTreeMap<ModelDuration, Vec<&AlertTestCase>> = BTreeMap::new();
    for a in &tg.alert_rule_test {
        alert_tests.entry(a.eval_time).or_default().push(a);
    }
    let max_eval = tg
        .alert_rule_test
        .iter()
        .map(|a| a.eval_time)
        .chain(tg.promql_expr_test.iter().map(|p| p.eval_time))
        .max()
        .unwrap_or_default()
        .millis();

    let mut errs = Vec::new();
    let step = setup.eval_interval_ms.max(1);
    if max_eval / step >= MAX_EVALUATIONS {
        return vec![format!(
            "evaluating every {} up to {} takes more than {MAX_EVALUATIONS} rounds (meshlens's limit)",
            ModelDuration(step),
            ModelDuration(max_eval)
        )];
    }
    let mut pending_checks = alert_tests.iter().peekable();
    let mut ts = 0i64;
    while ts <= max_eval {
        loader.load_until(ts, &storage);
        let ctx = EvalContext {
            engine: &engine,
            reader: &storage,
            writer: &storage,
            external_labels: &external_labels,
            external_url: tg.external_url.as_str(),
        };
        let mut eval_errs = Vec::new();
        for g in &mut groups {
            g.eval(&ctx, ts);
            for r in g.rule_views() {
                let (name, err) = match &r {
                    RuleView::Alerting(a) => (&a.name, &a.last_error),
                    RuleView::Recording(rec) => (&rec.name, &rec.last_error),
                };
                if let Some(e) = err {
                    let at = go_duration_string(ts);
                    eval_errs.push(format!("    rule: {name}, time: {at}, err: {e}"));
                }
            }
        }
        if !eval_errs.is_empty() {
            errs.extend(eval_errs);
            return errs;
        }
        // Alert tests whose time falls in [ts, ts + interval) are checked against this
        // evaluation.
        while let Some((t, cases)) = pending_checks.next_if(|(t, _)| t.millis() < ts + step) {
            if t.millis() < ts {
                continue;
            }
            let names: BTreeSet<&str> = cases.iter().map(|c| c.alertname.as_str()).collect();
            let got = firing_alerts(&groups, &names);
            for case in cases {
                let exp = expected_alerts(case);
                let got = got
                    .get(case.alertname.as_str())
                    .cloned()
                    .unwrap_or_default();
                if let Some(msg) =
                    check_alerts(tg.name.as_str(), case.alertname.as_str(), *t, exp, got)
                {
                    errs.push(msg);
                }
            }
        }
        match ts.checked_add(step) {
            Some(next) => ts = next,
            None => break,
        }
    }

    for case in &tg.promql_expr_test {
        let expr = case.expr.as_str();
        let got = match engine.instant_query(&storage, expr, case.eval_time.millis()) {
            Err(e) => {
                errs.push(expr_error(expr, case.eval_time, &e.to_string()));
                continue;
            }
            Ok(res) => match res.value {
                Value::Vector(v) => v
                    .into_iter()
                    .map(|s| ParsedSample {
                        labels: s.labels,
                        value: s.v,
                    })
                    .collect(),
                Value::Scalar { v, .. } => vec![ParsedSample {
                    labels: Labels::empty(),
                    value: v,
                }],
                _ => {
                    let msg = "rule result is not a vector or scalar";
                    errs.push(expr_error(expr, case.eval_time, msg));
                    continue;
                }
            },
        };
        let mut exp = Vec::with_capacity(case.exp_samples.len());
        let mut bad_labels = None;
        for s in &case.exp_samples {
            match parse_metric(s.labels.as_str()) {
                Ok(labels) => exp.push(ParsedSample {
                    labels,
                    value: s.value.0,
                }),
                Err(e) => {
                    bad_labels = Some(format!(
                        "labels {}: {e}",
                        super::gofmt::go_quote(s.labels.as_str())
                    ));
                    break;
                }
            }
        }
        if let Some(e) = bad_labels {
            errs.push(expr_error(expr, case.eval_time, &e));
            continue;
        }
        if let Some(msg) = check_samples(expr, case.eval_time, exp, got) {
            errs.push(msg);
        }
    }
    errs
}

fn expected_alerts(case: &AlertTestCase) -> Vec<LabelsAndAnnotations> {
    case.exp_alerts
        .iter()
        .map(|a| {
            let mut labels: BTreeMap<String, String> = a
                .exp_labels
                .iter()
                .map(|(k, v)| (k.0.clone(), v.0.clone()))
                .collect();
            labels.insert("alertname".into(), case.alertname.0.clone());
            let annotations = a
                .exp_annotations
                .iter()
                .map(|(k, v)| (k.0.clone(), v.0.clone()))
                .collect();
            LabelsAndAnnotations::new(labels.into_iter().collect(), annotations)
        })
        .collect()
}

/// Firing alerts of the named rules, over every group (one name may be in several).
fn firing_alerts(
    groups: &[Group],
    names: &BTreeSet<&str>,
) -> BTreeMap<String, Vec<LabelsAndAnnotations>> {
    let mut got: BTreeMap<String, Vec<LabelsAndAnnotations>> = BTreeMap::new();
    for g in groups {
        for rule in g.alerting_rules() {
            if !names.contains(rule.name.as_str()) {
                continue;
            }
            let alerts = firing(&rule);
            got.entry(rule.name.clone()).or_default().extend(alerts);
        }
    }
    got
}

fn firing(rule: &AlertingRuleView) -> Vec<LabelsAndAnnotations> {
    rule.alerts
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .map(|a| {
            let labels = a
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            // Annotations that expanded to "" are listed, as promtool lists them.
            let annotations = a
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            LabelsAndAnnotations::new(labels, annotations)
        })
        .collect()
}
