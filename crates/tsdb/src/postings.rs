//! Postings: for each label name and value, the set of series holding it. Used by the head
//! and by every block to resolve matchers without scanning series.

use std::collections::{BTreeMap, HashMap};

use meshlens_model::{LabelMatcher, Labels, MatchOp};
use roaring::RoaringBitmap;

#[derive(Default)]
pub struct Postings {
    by_name: HashMap<String, BTreeMap<String, RoaringBitmap>>,
    all: RoaringBitmap,
}

impl Postings {
    pub fn add(&mut self, id: u32, labels: &Labels) {
        self.all.insert(id);
        for l in labels {
            self.by_name
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_default()
                .insert(id);
        }
    }

    pub fn remove(&mut self, id: u32, labels: &Labels) {
        self.all.remove(id);
        for l in labels {
            if let Some(values) = self.by_name.get_mut(&l.name) {
                if let Some(set) = values.get_mut(&l.value) {
                    set.remove(id);
                    if set.is_empty() {
                        values.remove(&l.value);
                    }
                }
                if values.is_empty() {
                    self.by_name.remove(&l.name);
                }
            }
        }
    }

    pub fn insert_raw(&mut self, name: &str, value: &str, set: RoaringBitmap) {
        self.all |= &set;
        self.by_name
            .entry(name.to_string())
            .or_default()
            .insert(value.to_string(), set);
    }

    /// Series matching every matcher. A matcher that accepts the empty string also accepts
    /// series without the label, as in PromQL.
    pub fn select(&self, matchers: &[LabelMatcher]) -> RoaringBitmap {
        let mut result: Option<RoaringBitmap> = None;
        // Narrow with the most selective kind first: positive matchers.
        let mut ordered: Vec<&LabelMatcher> = matchers.iter().collect();
        ordered.sort_by_key(|m| (m.matches_empty(), m.op != MatchOp::Equal));
        for m in ordered {
            let values = self.by_name.get(&m.name);
            if m.matches_empty() {
                let mut exclude = RoaringBitmap::new();
                if let Some(values) = values {
                    for (v, set) in values {
                        if !m.matches(v) {
                            exclude |= set;
                        }
                    }
                }
                let base = result.take().unwrap_or_else(|| self.all.clone());
                result = Some(base - exclude);
            } else {
                let mut include = RoaringBitmap::new();
                if let Some(values) = values {
                    if m.op == MatchOp::Equal {
                        if let Some(set) = values.get(&m.value) {
                            include = set.clone();
                        }
                    } else if let Some(list) = m.set_matches() {
                        for v in list {
                            if let Some(set) = values.get(&v) {
                                include |= set;
                            }
                        }
                    } else {
                        for (v, set) in values {
                            if m.matches(v) {
                                include |= set;
                            }
                        }
                    }
                }
                result = Some(match result {
                    Some(r) => r & include,
                    None => include,
                });
            }
            if result.as_ref().is_some_and(|r| r.is_empty()) {
                break;
            }
        }
        result.unwrap_or_else(|| self.all.clone())
    }

    /// Distinct values of `name` among `ids`.
    pub fn values_within(&self, name: &str, ids: &RoaringBitmap) -> Vec<String> {
        self.by_name
            .get(name)
            .map(|vals| {
                vals.iter()
                    .filter(|(_, set)| !set.is_disjoint(ids))
                    .map(|(v, _)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Label names held by at least one of `ids`.
    pub fn names_within(&self, ids: &RoaringBitmap) -> Vec<String> {
        self.by_name
            .iter()
            .filter(|(_, vals)| vals.values().any(|set| !set.is_disjoint(ids)))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Calls `f(name, value, series)` for every label pair, for cardinality statistics.
    pub fn for_each_pair(&self, mut f: impl FnMut(&str, &str, u64)) {
        for (name, values) in &self.by_name {
            for (value, set) in values {
                f(name, value, set.len());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(op: MatchOp, n: &str, v: &str) -> LabelMatcher {
        LabelMatcher::new(op, n, v).unwrap()
    }

    #[test]
    fn matcher_semantics() {
        let mut p = Postings::default();
        p.add(0, &Labels::from_pairs([("__name__", "a"), ("job", "x")]));
        p.add(1, &Labels::from_pairs([("__name__", "a"), ("job", "y")]));
        p.add(2, &Labels::from_pairs([("__name__", "a")]));
        let ids = |ms: &[LabelMatcher]| p.select(ms).iter().collect::<Vec<_>>();
        assert_eq!(ids(&[m(MatchOp::Equal, "job", "x")]), vec![0]);
        assert_eq!(ids(&[m(MatchOp::NotEqual, "job", "x")]), vec![1, 2]);
        assert_eq!(ids(&[m(MatchOp::RegexMatch, "job", "x|y")]), vec![0, 1]);
        assert_eq!(ids(&[m(MatchOp::RegexMatch, "job", ".*")]), vec![0, 1, 2]);
        assert_eq!(ids(&[m(MatchOp::RegexNoMatch, "job", "x")]), vec![1, 2]);
        assert_eq!(ids(&[m(MatchOp::Equal, "job", "")]), vec![2]);
        assert_eq!(ids(&[m(MatchOp::RegexMatch, "job", ".+")]), vec![0, 1]);
        assert_eq!(
            ids(&[
                m(MatchOp::Equal, "__name__", "a"),
                m(MatchOp::NotEqual, "job", "")
            ]),
            vec![0, 1]
        );
        p.remove(0, &Labels::from_pairs([("__name__", "a"), ("job", "x")]));
        assert!(p.select(&[m(MatchOp::Equal, "job", "x")]).is_empty());
        assert_eq!(
            p.values_within("job", &p.all.clone()),
            vec!["y".to_string()]
        );
    }
}
