//! Test fixtures: the unit-test in-memory metric store (appends follow the TSDB's ordering
//! rules), read helpers over it, and an evaluation context.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use meshlens_model::{
    is_stale_nan, LabelMatcher, Labels, MetricReader, MetricWriter, Sample, TimeSeries,
};
use meshlens_promql::{Engine, EngineOptions};
pub use meshlens_rules::unittest::MemStorage as Mem;
use meshlens_rules::{parse_rule_file, EvalContext, Group, GroupSpec};

/// What the tests add to and read from the store, beyond the storage traits.
pub trait MemExt {
    /// Appends one sample, which must be accepted.
    fn add(&self, labels: &[(&str, &str)], t: i64, v: f64);
    /// Every series whose metric name is `name`, with all its samples.
    fn named(&self, name: &str) -> Vec<(Labels, Vec<Sample>)>;
    /// The samples of one exact series.
    fn samples(&self, labels: &[(&str, &str)]) -> Vec<Sample>;
    /// Whether the series' last sample is a stale marker at `t`.
    fn stale_at(&self, labels: &[(&str, &str)], t: i64) -> bool;
}

/// Every sample the store holds for the matched series.
fn all(mem: &Mem, matchers: &[LabelMatcher]) -> Vec<(Labels, Vec<Sample>)> {
    mem.select(matchers, i64::MIN, i64::MAX)
        .expect("in-memory select")
        .into_iter()
        .map(|s| (s.labels, s.samples))
        .collect()
}

impl MemExt for Mem {
    fn add(&self, labels: &[(&str, &str)], t: i64, v: f64) {
        let out = self
            .append(&[TimeSeries {
                labels: Labels::from_pairs(labels.iter().copied()),
                samples: vec![Sample::new(t, v)],
            }])
            .unwrap();
        assert_eq!(out.accepted, 1, "fixture sample refused");
    }

    fn named(&self, name: &str) -> Vec<(Labels, Vec<Sample>)> {
        all(self, &[LabelMatcher::equal("__name__", name)])
    }

    fn samples(&self, labels: &[(&str, &str)]) -> Vec<Sample> {
        let want = Labels::from_pairs(labels.iter().copied());
        let matchers: Vec<LabelMatcher> = labels
            .iter()
            .map(|(n, v)| LabelMatcher::equal(*n, *v))
            .collect();
        all(self, &matchers)
            .into_iter()
            .find(|(l, _)| *l == want)
            .map(|(_, s)| s)
            .unwrap_or_default()
    }

    fn stale_at(&self, labels: &[(&str, &str)], t: i64) -> bool {
        self.samples(labels)
            .last()
            .is_some_and(|s| s.t == t && is_stale_nan(s.v))
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
