//! The exemplar store: a fixed-size ring of exemplars shared by every series, with a
//! per-series index (oldest and newest slot, and a link from each slot to the series' next)
//! so a query by series walks only that series' exemplars.
//!
//! Prometheus's model (`--storage.exemplars.max-exemplars`): a new exemplar takes the
//! oldest slot of the whole ring, so memory is fixed and recent exemplars win. Per series,
//! an exemplar equal to the newest one is a duplicate (ignored: scrapes repeat them until
//! the exporter sees a new event) and one at or before the newest is out of order (refused).

use std::collections::HashMap;
use std::sync::Arc;

use meshlens_model::{Exemplar, ExemplarOutcome, LabelMatcher, Labels, SeriesExemplars};

const NONE: u32 = u32::MAX;

struct Slot {
    series: Arc<Labels>,
    exemplar: Exemplar,
    /// The series' next (newer) exemplar's slot, or NONE.
    next: u32,
}

#[derive(Clone, Copy)]
struct Ends {
    oldest: u32,
    newest: u32,
}

/// Why one exemplar was not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Disabled,
    Duplicate,
    OutOfOrder,
    InvalidLabels(String),
}

/// The ring. Not synchronised: the engine holds it under a lock.
pub(crate) struct ExemplarRing {
    /// The slots in use so far: grown as exemplars come, up to `capacity`, so a server
    /// that receives none holds none (the full ring is 100,000 slots by default).
    slots: Vec<Option<Slot>>,
    capacity: usize,
    /// The slot the next exemplar takes: `slots.len()` while the ring grows, then the
    /// oldest.
    next: usize,
    index: HashMap<Arc<Labels>, Ends>,
    in_storage: usize,
    pub(crate) appended: u64,
    pub(crate) out_of_order: u64,
    /// Newest timestamp stored, ms (Prometheus's `last_exemplars_timestamp_seconds`).
    pub(crate) last_t: i64,
}

impl ExemplarRing {
    pub(crate) fn new(capacity: usize) -> Self {
        // The index links slots by u32.
        let capacity = capacity.min(NONE as usize - 1);
        ExemplarRing {
            slots: Vec::new(),
            capacity,
            next: 0,
            index: HashMap::new(),
            in_storage: 0,
            appended: 0,
            out_of_order: 0,
            last_t: 0,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn len(&self) -> usize {
        self.in_storage
    }

    pub(crate) fn series_count(&self) -> usize {
        self.index.len()
    }

    /// Whether `add` would store `e`, without storing it.
    pub(crate) fn check(&self, series: &Labels, e: &Exemplar) -> Result<(), Refusal> {
        if self.capacity == 0 {
            return Err(Refusal::Disabled);
        }
        e.check_labels().map_err(Refusal::InvalidLabels)?;
        let Some(ends) = self.index.get(series) else {
            return Ok(());
        };
        let newest = &self.slots[ends.newest as usize]
            .as_ref()
            .expect("an indexed slot is filled")
            .exemplar;
        if newest.same_as(e) {
            return Err(Refusal::Duplicate);
        }
        if e.t <= newest.t {
            return Err(Refusal::OutOfOrder);
        }
        Ok(())
    }

    /// Stores `e` as the series' newest exemplar, evicting the ring's oldest.
    pub(crate) fn add(&mut self, series: &Labels, e: Exemplar) -> Result<(), Refusal> {
        if let Err(r) = self.check(series, &e) {
            if r == Refusal::OutOfOrder {
                self.out_of_order += 1;
            }
            return Err(r);
        }
        let slot = self.next;
        if slot == self.slots.len() {
            if self.slots.len() == self.slots.capacity() {
                // Doubling, but never past the ring's size.
                let more = self
                    .slots
                    .len()
                    .max(64)
                    .min(self.capacity - self.slots.len());
                self.slots.reserve_exact(more);
            }
            self.slots.push(None);
        } else {
            self.evict(slot);
        }
        let key = match self.index.get_key_value(series) {
            Some((k, _)) => k.clone(),
            None => Arc::new(series.clone()),
        };
        self.last_t = e.t;
        self.slots[slot] = Some(Slot {
            series: key.clone(),
            exemplar: e,
            next: NONE,
        });
        let slot32 = slot as u32;
        match self.index.get_mut(&key) {
            Some(ends) => {
                if let Some(prev) = self.slots[ends.newest as usize].as_mut() {
                    prev.next = slot32;
                }
                ends.newest = slot32;
            }
            None => {
                self.index.insert(
                    key,
                    Ends {
                        oldest: slot32,
                        newest: slot32,
                    },
                );
            }
        }
        self.in_storage += 1;
        self.appended += 1;
        self.next = (slot + 1) % self.capacity;
        Ok(())
    }

    /// Empties `slot`, the oldest of the ring and so the oldest of its series.
    fn evict(&mut self, slot: usize) {
        let Some(old) = self.slots[slot].take() else {
            return;
        };
        self.in_storage -= 1;
        if old.next == NONE {
            self.index.remove(&old.series);
        } else if let Some(ends) = self.index.get_mut(&old.series) {
            ends.oldest = old.next;
        }
    }

    /// Exemplars in `[mint, maxt]` of series matching any matcher set, sorted by series.
    pub(crate) fn select(
        &self,
        matcher_sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> Vec<SeriesExemplars> {
        let matches = |l: &Labels| {
            matcher_sets.iter().any(|set| {
                set.iter()
                    .all(|m| m.matches(l.get(&m.name).unwrap_or_default()))
            })
        };
        let mut out: Vec<SeriesExemplars> = self
            .index
            .iter()
            .filter(|(l, _)| matches(l))
            .filter_map(|(l, ends)| {
                let exemplars = self.walk(*ends, mint, maxt);
                (!exemplars.is_empty()).then(|| SeriesExemplars {
                    series: (**l).clone(),
                    exemplars,
                })
            })
            .collect();
        out.sort_by(|a, b| a.series.cmp(&b.series));
        out
    }

    fn walk(&self, ends: Ends, mint: i64, maxt: i64) -> Vec<Exemplar> {
        let mut out = Vec::new();
        let mut at = ends.oldest;
        // Bounded by the ring: a series' chain never holds more slots than there are.
        for _ in 0..self.slots.len() {
            let Some(s) = self.slots.get(at as usize).and_then(|s| s.as_ref()) else {
                break;
            };
            if s.exemplar.t > maxt {
                break;
            }
            if s.exemplar.t >= mint {
                out.push(s.exemplar.clone());
            }
            if at == ends.newest || s.next == NONE {
                break;
            }
            at = s.next;
        }
        out
    }

    /// Every stored exemplar, oldest first (for the WAL checkpoint).
    pub(crate) fn all_in_order(&self) -> Vec<SeriesExemplars> {
        let n = self.slots.len();
        (0..n)
            .filter_map(|i| self.slots[(self.next + i) % n].as_ref())
            .map(|s| SeriesExemplars {
                series: (*s.series).clone(),
                exemplars: vec![s.exemplar.clone()],
            })
            .collect()
    }
}

/// Adds each exemplar of `batch` to `ring`, counting what happened; returns what was stored.
pub(crate) fn add_batch(
    ring: &mut ExemplarRing,
    batch: &[SeriesExemplars],
    out: &mut ExemplarOutcome,
) -> Vec<SeriesExemplars> {
    let mut stored = Vec::new();
    for s in batch {
        let mut kept = Vec::new();
        for e in &s.exemplars {
            match ring.add(&s.series, e.clone()) {
                Ok(()) => {
                    out.accepted += 1;
                    kept.push(e.clone());
                }
                Err(Refusal::Disabled) => out.disabled += 1,
                Err(Refusal::Duplicate) => out.duplicate += 1,
                Err(Refusal::OutOfOrder) => out.out_of_order += 1,
                Err(Refusal::InvalidLabels(why)) => {
                    out.invalid_labels += 1;
                    out.first_invalid
                        .get_or_insert_with(|| format!("series {}: {why}", s.series));
                }
            }
        }
        if !kept.is_empty() {
            stored.push(SeriesExemplars {
                series: s.series.clone(),
                exemplars: kept,
            });
        }
    }
    stored
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlens_model::MatchOp;

    fn ex(trace: &str, v: f64, t: i64) -> Exemplar {
        Exemplar {
            labels: Labels::from_pairs([("trace_id", trace)]),
            value: v,
            t,
        }
    }

    fn series(name: &str) -> Labels {
        Labels::from_pairs([("__name__", name)])
    }

    fn all(r: &ExemplarRing) -> Vec<SeriesExemplars> {
        r.select(&[vec![]], i64::MIN, i64::MAX)
    }

    #[test]
    fn the_oldest_exemplar_of_the_ring_is_evicted_first() {
        let mut r = ExemplarRing::new(3);
        assert_eq!(
            (r.slots.capacity(), r.capacity()),
            (0, 3),
            "slots come with exemplars"
        );
        let (a, b) = (series("a"), series("b"));
        r.add(&a, ex("1", 1.0, 10)).unwrap();
        r.add(&b, ex("2", 2.0, 11)).unwrap();
        r.add(&a, ex("3", 3.0, 12)).unwrap();
        r.add(&b, ex("4", 4.0, 13)).unwrap(); // evicts a@10
        let got = all(&r);
        assert_eq!(got[0].exemplars, vec![ex("3", 3.0, 12)]);
        assert_eq!(got[1].exemplars, vec![ex("2", 2.0, 11), ex("4", 4.0, 13)]);
        r.add(&b, ex("5", 5.0, 14)).unwrap(); // evicts b@11
        r.add(&b, ex("6", 6.0, 15)).unwrap(); // evicts a@12: a leaves the index
        assert_eq!(r.series_count(), 1);
        assert_eq!(r.len(), 3);
        assert_eq!(all(&r)[0].exemplars.len(), 3);
        assert_eq!(r.all_in_order().len(), 3);
        assert_eq!(r.slots.capacity(), 3);
    }

    /// While the ring is still growing, the WAL checkpoint's order is the order of arrival.
    #[test]
    fn a_growing_ring_lists_exemplars_oldest_first() {
        let mut r = ExemplarRing::new(100_000);
        for t in 0..100 {
            r.add(&series(&format!("s{}", t % 7)), ex("x", 1.0, t))
                .unwrap();
        }
        let ts: Vec<i64> = r.all_in_order().iter().map(|s| s.exemplars[0].t).collect();
        assert_eq!(ts, (0..100).collect::<Vec<_>>());
        assert!(r.slots.capacity() < 1000);
    }

    #[test]
    fn a_ring_of_one_replaces_in_place() {
        let mut r = ExemplarRing::new(1);
        let a = series("a");
        for t in 0..5 {
            r.add(&a, ex("x", t as f64, t)).unwrap();
        }
        assert_eq!(all(&r)[0].exemplars, vec![ex("x", 4.0, 4)]);
    }

    #[test]
    fn duplicates_are_ignored_and_older_ones_refused() {
        let mut r = ExemplarRing::new(10);
        let a = series("a");
        r.add(&a, ex("1", 1.0, 10)).unwrap();
        assert_eq!(r.add(&a, ex("1", 1.0, 10)), Err(Refusal::Duplicate));
        assert_eq!(r.add(&a, ex("2", 1.0, 10)), Err(Refusal::OutOfOrder));
        assert_eq!(r.add(&a, ex("2", 1.0, 9)), Err(Refusal::OutOfOrder));
        assert_eq!(r.out_of_order, 2);
        // Another series has its own order.
        r.add(&series("b"), ex("2", 1.0, 5)).unwrap();
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn capacity_zero_stores_nothing() {
        let mut r = ExemplarRing::new(0);
        assert_eq!(r.add(&series("a"), ex("1", 1.0, 1)), Err(Refusal::Disabled));
        assert!(all(&r).is_empty());
    }

    #[test]
    fn select_filters_by_matcher_sets_and_time() {
        let mut r = ExemplarRing::new(10);
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            r.add(&series(n), ex("t", 1.0, 100 + i as i64)).unwrap();
            r.add(&series(n), ex("t", 2.0, 200 + i as i64)).unwrap();
        }
        let eq = |v: &str| vec![LabelMatcher::new(MatchOp::Equal, "__name__", v).unwrap()];
        let got = r.select(&[eq("c"), eq("a")], 150, 300);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].series, series("a"));
        assert_eq!(got[0].exemplars, vec![ex("t", 2.0, 200)]);
        assert!(r.select(&[eq("b")], 0, 50).is_empty());
    }
}
