//! Test fixtures: an in-memory metric store (appends follow the TSDB's ordering rules) and
//! an evaluation context over it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use meshlens_model::{
    is_stale_nan, AppendOutcome, LabelMatcher, Labels, MetricReader, MetricWriter, Sample,
    SeriesSamples, StorageError, TimeSeries,
};
use meshlens_promql::{Engine, EngineOptions};
use meshlens_rules::{parse_rule_file, EvalContext, Group, GroupSpec};
use parking_lot::RwLock;

#[derive(Default)]
pub struct Mem {
    series: RwLock<BTreeMap<Labels, Vec<Sample>>>,
}

impl Mem {
    pub fn add(&self, labels: &[(&str, &str)], t: i64, v: f64) {
        let out = self
            .append(&[TimeSeries {
                labels: Labels::from_pairs(labels.iter().copied()),
                samples: vec![Sample::new(t, v)],
            }])
            .unwrap();
        assert_eq!(out.accepted, 1, "fixture sample refused");
    }

    /// Every series whose metric name is `name`, with all its samples.
    pub fn named(&self, name: &str) -> Vec<(Labels, Vec<Sample>)> {
        self.series
            .read()
            .iter()
            .filter(|(l, _)| l.metric_name() == Some(name))
            .map(|(l, s)| (l.clone(), s.clone()))
            .collect()
    }

    /// The samples of one exact series.
    pub fn samples(&self, labels: &[(&str, &str)]) -> Vec<Sample> {
        self.series
            .read()
            .get(&Labels::from_pairs(labels.iter().copied()))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether the series' last sample is a stale marker at `t`.
    pub fn stale_at(&self, labels: &[(&str, &str)], t: i64) -> bool {
        self.samples(labels)
            .last()
            .is_some_and(|s| s.t == t && is_stale_nan(s.v))
    }
}

impl MetricWriter for Mem {
    fn append(&self, batch: &[TimeSeries]) -> Result<AppendOutcome, StorageError> {
        let mut out = AppendOutcome::default();
        let mut map = self.series.write();
        for ts in batch {
            let samples = map.entry(ts.labels.clone()).or_default();
            for s in &ts.samples {
                match samples.last() {
                    Some(last) if s.t < last.t => out.out_of_order += 1,
                    Some(last) if s.t == last.t && last.v.to_bits() != s.v.to_bits() => {
                        out.duplicate += 1
                    }
                    Some(last) if s.t == last.t => out.accepted += 1,
                    _ => {
                        samples.push(*s);
                        out.accepted += 1;
                    }
                }
            }
        }
        Ok(out)
    }
}

fn matches(l: &Labels, ms: &[LabelMatcher]) -> bool {
    ms.iter().all(|m| m.matches(l.get(&m.name).unwrap_or("")))
}

impl MetricReader for Mem {
    fn select(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        Ok(self
            .series
            .read()
            .iter()
            .filter(|(l, _)| matches(l, matchers))
            .filter_map(|(l, s)| {
                let s: Vec<Sample> = s
                    .iter()
                    .filter(|s| s.t >= mint && s.t <= maxt)
                    .copied()
                    .collect();
                (!s.is_empty()).then(|| SeriesSamples {
                    labels: l.clone(),
                    samples: s,
                })
            })
            .collect())
    }

    fn series(
        &self,
        m: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        Ok(self
            .select(m, mint, maxt)?
            .into_iter()
            .map(|s| s.labels)
            .collect())
    }

    fn label_names(
        &self,
        m: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let names: BTreeSet<String> = self
            .series(m, mint, maxt)?
            .iter()
            .flat_map(|l| l.iter().map(|l| l.name.clone()).collect::<Vec<_>>())
            .collect();
        Ok(names.into_iter().collect())
    }

    fn label_values(
        &self,
        name: &str,
        m: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let vals: BTreeSet<String> = self
            .series(m, mint, maxt)?
            .iter()
            .filter_map(|l| l.get(name).map(str::to_string))
            .collect();
        Ok(vals.into_iter().collect())
    }
}

pub struct Fixture {
    pub engine: Engine,
    pub mem: Arc<Mem>,
    pub external_labels: BTreeMap<String, String>,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            engine: Engine::new(EngineOptions::default()),
            mem: Arc::new(Mem::default()),
            external_labels: [("cluster".to_string(), "eu1".to_string())].into(),
        }
    }

    pub fn ctx(&self) -> EvalContext<'_> {
        EvalContext {
            engine: &self.engine,
            reader: &*self.mem,
            writer: &*self.mem,
            external_labels: &self.external_labels,
            external_url: "http://meshlens.example:9090",
        }
    }
}

/// The groups of a rule file that must parse.
pub fn groups(yaml: &str) -> Vec<GroupSpec> {
    match parse_rule_file("test.yml", yaml) {
        Ok(f) => f.groups,
        Err(e) => panic!("rule file refused: {e:?}"),
    }
}

/// The first group of a rule file, ready to evaluate, 10 s default interval.
pub fn group(yaml: &str) -> Group {
    Group::new(groups(yaml).remove(0), Duration::from_secs(10))
}

pub const S: i64 = 1000;
pub const T0: i64 = 1_700_000_000_000;
