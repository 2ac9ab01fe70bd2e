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
    ///
    /// Cheapest first: equality matchers are direct lookups, intersected smallest set
    /// first (a missing value ends the selection at once); then the other matchers that
    /// need the label (literal alternations looked up, regexes over the label's values);
    /// then the ones that also accept its absence, subtracted. Any empty intermediate
    /// result stops the work.
    pub fn select(&self, matchers: &[LabelMatcher]) -> RoaringBitmap {
        let mut equal: Vec<&RoaringBitmap> = Vec::new();
        let mut positive: Vec<&LabelMatcher> = Vec::new();
        let mut negative: Vec<&LabelMatcher> = Vec::new();
        for m in matchers {
            if m.matches_empty() {
                negative.push(m);
            } else if m.op == MatchOp::Equal {
                match self.by_name.get(&m.name).and_then(|v| v.get(&m.value)) {
                    Some(set) => equal.push(set),
                    None => return RoaringBitmap::new(),
                }
            } else {
                positive.push(m);
            }
        }
        equal.sort_by_key(|s| s.len());
        let mut result: Option<RoaringBitmap> = None;
        for set in equal {
            let r = match result.take() {
                None => set.clone(),
                Some(mut r) => {
                    r &= set;
                    r
                }
            };
            if r.is_empty() {
                return r;
            }
            result = Some(r);
        }
        // Literal alternations before regexes; regexes over fewer values first.
        positive.sort_by_key(|m| {
            let values = self.by_name.get(&m.name).map_or(0, |v| v.len());
            (m.set_matches().is_none(), values)
        });
        for m in positive {
            let include = self.matching(m);
            let r = match result.take() {
                None => include,
                Some(mut r) => {
                    r &= include;
                    r
                }
            };
            if r.is_empty() {
                return r;
            }
            result = Some(r);
        }
        let mut result = result.unwrap_or_else(|| self.all.clone());
        for m in negative {
            let Some(values) = self.by_name.get(&m.name) else {
                continue;
            };
            if m.op == MatchOp::NotEqual {
                if let Some(set) = values.get(&m.value) {
                    result -= set;
                }
            } else {
                for (v, set) in values {
                    if !m.matches(v) {
                        result -= set;
                    }
                }
            }
            if result.is_empty() {
                break;
            }
        }
        result
    }

    /// Series whose value of the matcher's label matches (never series without the label).
    fn matching(&self, m: &LabelMatcher) -> RoaringBitmap {
        let mut include = RoaringBitmap::new();
        let Some(values) = self.by_name.get(&m.name) else {
            return include;
        };
        if let Some(list) = m.set_matches() {
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
        include
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

    proptest::proptest! {
        /// Whatever order the matchers are applied in, the result is the brute-force one:
        /// each series' value (empty when absent) checked against every matcher.
        #[test]
        fn select_equals_checking_every_series(
            series in proptest::collection::vec(
                proptest::collection::vec((0usize..3, 0usize..4), 0..4), 1..40),
            matchers in proptest::collection::vec((0usize..3, 0usize..4, 0usize..7), 0..4),
        ) {
            const NAMES: [&str; 3] = ["job", "code", "pod"];
            const VALUES: [&str; 4] = ["a", "b", "ab", ""];
            let mut p = Postings::default();
            let sets: Vec<Labels> = series
                .iter()
                .map(|pairs| Labels::from_pairs(pairs.iter().map(|(n, v)| (NAMES[*n], VALUES[*v]))))
                .collect();
            for (id, l) in sets.iter().enumerate() {
                p.add(id as u32, l);
            }
            let ms: Vec<LabelMatcher> = matchers
                .iter()
                .map(|(n, v, op)| {
                    let (op, value) = match op {
                        0 => (MatchOp::Equal, VALUES[*v].to_string()),
                        1 => (MatchOp::NotEqual, VALUES[*v].to_string()),
                        2 => (MatchOp::RegexMatch, VALUES[*v].to_string()),
                        3 => (MatchOp::RegexNoMatch, VALUES[*v].to_string()),
                        4 => (MatchOp::RegexMatch, "a|b".to_string()),
                        5 => (MatchOp::RegexMatch, "a.*".to_string()),
                        _ => (MatchOp::RegexNoMatch, ".+".to_string()),
                    };
                    m(op, NAMES[*n], &value)
                })
                .collect();
            let want: Vec<u32> = sets
                .iter()
                .enumerate()
                .filter(|(_, l)| ms.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
                .map(|(id, _)| id as u32)
                .collect();
            proptest::prop_assert_eq!(p.select(&ms).iter().collect::<Vec<_>>(), want);
        }
    }
}
