//! Test support: an in-memory `MetricReader` and the PromQL test-script runner.
#![allow(dead_code)]

pub mod held;
pub mod script;
pub mod series;

use std::collections::BTreeMap;

use meshlens_model::{
    LabelMatcher, Labels, MetricMetadata, MetricReader, Sample, SeriesSamples, StorageError,
};

/// Series held in memory, sorted by labels; samples sorted by time.
#[derive(Default)]
pub struct MemStore {
    pub series: BTreeMap<Labels, Vec<Sample>>,
}

impl MemStore {
    pub fn add(&mut self, labels: Labels, t: i64, v: f64) {
        let s = self.series.entry(labels).or_default();
        match s.binary_search_by_key(&t, |x| x.t) {
            Ok(i) => s[i].v = v,
            Err(i) => s.insert(i, Sample::new(t, v)),
        }
    }

    fn matching(&self, m: &[LabelMatcher]) -> impl Iterator<Item = (&Labels, &Vec<Sample>)> {
        let m = m.to_vec();
        self.series
            .iter()
            .filter(move |(l, _)| m.iter().all(|x| x.matches(l.get(&x.name).unwrap_or(""))))
    }
}

impl MetricReader for MemStore {
    fn select(
        &self,
        m: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        Ok(self
            .matching(m)
            .map(|(l, s)| SeriesSamples {
                labels: l.clone(),
                samples: s
                    .iter()
                    .filter(|x| x.t >= mint && x.t <= maxt)
                    .copied()
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
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

    fn label_names(&self, m: &[LabelMatcher], _: i64, _: i64) -> Result<Vec<String>, StorageError> {
        let mut v: Vec<String> = self
            .matching(m)
            .flat_map(|(l, _)| l.iter().map(|x| x.name.clone()))
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    fn label_values(
        &self,
        name: &str,
        m: &[LabelMatcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut v: Vec<String> = self
            .matching(m)
            .filter_map(|(l, _)| l.get(name).map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    fn metadata(&self, _: Option<&str>) -> Result<Vec<MetricMetadata>, StorageError> {
        Ok(Vec::new())
    }
}
