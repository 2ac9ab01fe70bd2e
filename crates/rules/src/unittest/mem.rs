//! An in-memory metric store for rule unit tests: what Prometheus's test storage is to
//! promtool. Series are kept in label order, samples in time order; appends follow the
//! TSDB's rules (an older sample is out of order, a second value at the same time is a
//! duplicate, the same value again is accepted), so recording rules behave as they would.

use std::collections::BTreeMap;

use meshlens_model::{
    AppendOutcome, LabelMatcher, Labels, MetricReader, MetricWriter, Sample, SeriesSamples,
    StorageError, TimeSeries,
};
use parking_lot::RwLock;

#[derive(Default)]
pub struct MemStorage {
    series: RwLock<BTreeMap<Labels, Vec<Sample>>>,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Number of series held (with or without samples).
    pub fn num_series(&self) -> usize {
        self.series.read().len()
    }

    fn matching<'a>(
        map: &'a BTreeMap<Labels, Vec<Sample>>,
        matchers: &'a [LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> impl Iterator<Item = (&'a Labels, &'a [Sample])> + 'a {
        map.iter().filter_map(move |(labels, samples)| {
            if !matchers
                .iter()
                .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
            {
                return None;
            }
            let lo = samples.partition_point(|s| s.t < mint);
            let hi = samples.partition_point(|s| s.t <= maxt);
            (lo < hi).then(|| (labels, &samples[lo..hi]))
        })
    }
}

impl MetricWriter for MemStorage {
    fn append(&self, batch: &[TimeSeries]) -> Result<AppendOutcome, StorageError> {
        let mut out = AppendOutcome::default();
        let mut map = self.series.write();
        for ts in batch {
            if ts.labels.validate().is_err() || ts.labels.is_empty() {
                out.invalid_labels += ts.samples.len() as u64;
                continue;
            }
            let samples = match map.get_mut(&ts.labels) {
                Some(s) => s,
                None => {
                    out.series_created += 1;
                    map.entry(ts.labels.clone()).or_default()
                }
            };
            for s in &ts.samples {
                match samples.last() {
                    Some(last) if s.t < last.t => out.out_of_order += 1,
                    Some(last) if s.t == last.t => {
                        if last.v.to_bits() == s.v.to_bits() {
                            out.accepted += 1;
                        } else {
                            out.duplicate += 1;
                        }
                    }
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

impl MetricReader for MemStorage {
    fn select(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        let map = self.series.read();
        Ok(Self::matching(&map, matchers, mint, maxt)
            .map(|(labels, samples)| SeriesSamples {
                labels: labels.clone(),
                samples: samples.to_vec(),
                histograms: Vec::new(),
            })
            .collect())
    }

    fn series(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        let map = self.series.read();
        Ok(Self::matching(&map, matchers, mint, maxt)
            .map(|(l, _)| l.clone())
            .collect())
    }

    fn label_names(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let map = self.series.read();
        let mut names: Vec<String> = Self::matching(&map, matchers, mint, maxt)
            .flat_map(|(l, _)| l.iter().map(|x| x.name.clone()).collect::<Vec<_>>())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let map = self.series.read();
        let mut values: Vec<String> = Self::matching(&map, matchers, mint, maxt)
            .filter_map(|(l, _)| l.get(name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlens_model::{MatchOp, STALE_NAN};

    fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: Labels::from_pairs(labels.iter().copied()),
            samples: samples.iter().map(|(t, v)| Sample::new(*t, *v)).collect(),
        }
    }

    #[test]
    fn selects_by_matchers_over_an_inclusive_range_in_label_order() {
        let m = MemStorage::new();
        let out = m
            .append(&[
                ts(
                    &[("__name__", "up"), ("job", "b")],
                    &[(0, 1.0), (60, 2.0), (120, 3.0)],
                ),
                ts(&[("__name__", "up"), ("job", "a")], &[(0, 4.0)]),
                ts(&[("__name__", "down")], &[(60, 5.0)]),
            ])
            .unwrap();
        assert_eq!(out.accepted, 5);
        assert_eq!(out.series_created, 3);
        let up = [LabelMatcher::equal("__name__", "up")];
        let got = m.select(&up, 0, 60).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].labels.get("job"), Some("a"));
        assert_eq!(
            got[1].samples,
            vec![Sample::new(0, 1.0), Sample::new(60, 2.0)]
        );
        let got = m.select(&up, 60, 120).unwrap();
        assert_eq!(got.len(), 1, "series without samples in range are left out");
        let re = LabelMatcher::new(MatchOp::RegexMatch, "job", "a|").unwrap();
        let got = m.series(&[re], 0, 1000).unwrap();
        assert_eq!(got.len(), 2, "a missing label matches the empty string");
        assert_eq!(
            m.label_names(&[], 0, 1000).unwrap(),
            vec!["__name__", "job"]
        );
        assert_eq!(m.label_values("job", &[], 0, 1000).unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn appends_follow_the_tsdb_rules() {
        let m = MemStorage::new();
        let l = [("__name__", "x")];
        m.append(&[ts(&l, &[(10, 1.0)])]).unwrap();
        let out = m
            .append(&[ts(&l, &[(10, 1.0), (10, 2.0), (5, 0.0), (20, STALE_NAN)])])
            .unwrap();
        assert_eq!(out.accepted, 2);
        assert_eq!(out.duplicate, 1);
        assert_eq!(out.out_of_order, 1);
        let got = m
            .select(&[LabelMatcher::equal("__name__", "x")], 0, 100)
            .unwrap();
        assert_eq!(got[0].samples.len(), 2);
        assert!(meshlens_model::is_stale_nan(got[0].samples[1].v));
        let bad = m.append(&[ts(&[("0bad", "x")], &[(1, 1.0)])]).unwrap();
        assert_eq!(bad.invalid_labels, 1);
        assert_eq!(m.num_series(), 1);
    }
}
