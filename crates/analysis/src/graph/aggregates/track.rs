//! From samples to bucket sums: each series' last value, the increase between consecutive
//! samples (a drop is a counter reset: the new value is the increase, as PromQL's
//! `increase()` has it), and where the increase is added.
//!
//! Duration buckets are kept per bucket, not cumulatively: a request that took 8 ms adds to
//! the `le="10"` cell only, not to the fifteen larger bounds as well, so an edge allocates
//! rows only for the bounds its latencies fall in. The conversion telescopes across a
//! pod's histogram (its *family*): an increase of the cumulative series `le_i` adds to
//! `le_i`'s cell and subtracts from the next bound's. When the next bound's sample for the
//! same scrape has not arrived yet, the subtraction is *owed* and paid, into the bucket of
//! the scrape it belongs to, when that sample arrives; so the cells equal per-bucket counts
//! whatever order a batch lists the series in.

use std::sync::Arc;

use meshlens_model::{Labels, Sample};

use super::keys::{field_of, identity, Dict, FieldId, Metric, SeriesHashes};
use super::ring::{bucket_of, Ring};
use crate::fx::FxMap;

/// No sample yet.
const NONE: i64 = i64::MIN;

/// Owed subtractions kept per series before the oldest is paid where it belongs anyway
/// (a next bound that stopped reporting must not grow a list without end).
const OWED_CAP: usize = 64;

/// One resolution: bucket width, retention and the ring capacity that holds it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Res {
    pub step: i64,
    pub retention: i64,
    pub cap: usize,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Resolutions {
    pub fine: Res,
    pub coarse: Res,
}

/// One edge (a set of identity values, pods merged): its figures and their buckets.
pub(crate) struct Edge {
    pub identity: Arc<Labels>,
    /// Every figure seen on the edge; a figure's position indexes the rings' rows.
    pub fields: Vec<FieldId>,
    pub fine: Ring,
    pub coarse: Ring,
}

impl Edge {
    fn new(identity: Labels, res: &Resolutions) -> Edge {
        Edge {
            identity: Arc::new(identity),
            fields: Vec::new(),
            fine: Ring::new(res.fine.cap),
            coarse: Ring::new(res.coarse.cap),
        }
    }

    fn field(&mut self, f: FieldId) -> u32 {
        if let Some(i) = self.fields.iter().position(|&x| x == f) {
            return i as u32;
        }
        self.fields.push(f);
        self.fine.push_field();
        self.coarse.push_field();
        (self.fields.len() - 1) as u32
    }

    pub fn add(&mut self, res: &Resolutions, pos: u32, t: i64, x: f64) {
        if let Some(k) = bucket_of(t, res.fine.step) {
            self.fine.add(k, pos as usize, x);
        }
        if let Some(k) = bucket_of(t, res.coarse.step) {
            self.coarse.add(k, pos as usize, x);
        }
    }

    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Edge>()
            + self.fields.capacity() * 4
            + self.fine.bytes()
            + self.coarse.bytes()
            + self
                .identity
                .iter()
                .map(|l| 48 + l.name.capacity() + l.value.capacity())
                .sum::<usize>()
    }
}

/// A shard's edges, found by the hash of their identity labels.
#[derive(Default)]
pub(crate) struct Edges {
    pub list: Vec<Edge>,
    ids: FxMap<u64, u32>,
}

impl Edges {
    fn get_or_insert(&mut self, hash: u64, labels: &Labels, res: &Resolutions) -> u32 {
        if let Some(&i) = self.ids.get(&hash) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(Edge::new(identity(labels), res));
        self.ids.insert(hash, i);
        i
    }

    pub fn bytes(&self) -> usize {
        self.list.iter().map(Edge::bytes).sum::<usize>() + self.ids.capacity() * 13
    }
}

/// What the aggregates keep per series: 40 bytes, as every Istio series has one. What a
/// bucket series owes the next bound is kept aside ([`Table::owed`]): few series owe at
/// any time, so an empty list per series would cost more than all of them.
pub(crate) struct SeriesState {
    edge: u32,
    /// The figure's position in the edge.
    pos: u32,
    /// Bucket series: the pod histogram it belongs to.
    family: Option<u64>,
    pub last_t: i64,
    pub last_v: f64,
}

/// Per-series state, for the live feed or for a rebuild.
#[derive(Default)]
pub(crate) struct Table {
    pub series: FxMap<u64, SeriesState>,
    /// Pod histograms: their bucket series, by bound.
    families: FxMap<u64, Vec<(f64, u64)>>,
    /// Subtractions a bucket series owes the next bound: (sample time, amount), oldest
    /// first; only series that owe something have an entry.
    owed: FxMap<u64, Vec<(i64, f64)>>,
}

/// What a table may take, and where it writes.
pub(crate) struct Feed<'a> {
    pub res: &'a Resolutions,
    pub edges: &'a mut Edges,
    /// Samples in `(min_t, max_t]` are taken.
    pub min_t: i64,
    pub max_t: i64,
    /// Where a new series' first sample is noted (the live feed while a rebuild runs: the
    /// rebuild adds the increase up to it).
    pub firsts: Option<&'a mut FxMap<u64, (i64, f64)>>,
}

impl Table {
    /// Makes sure the series has state; false for a series the aggregates cannot use (a
    /// bucket without a numeric `le`). `labels` is called only for a series without state,
    /// so a caller holding raw pairs builds `Labels` once per new series, not per sample.
    pub fn ensure<L: std::ops::Deref<Target = Labels>>(
        &mut self,
        feed: &mut Feed<'_>,
        h: &SeriesHashes,
        metric: Metric,
        labels: impl FnOnce() -> L,
        dict: &Dict,
    ) -> bool {
        if self.series.contains_key(&h.series) {
            return true;
        }
        let labels = labels();
        let labels: &Labels = &labels;
        let Some(field) = field_of(metric, labels, dict) else {
            return false;
        };
        let edge = feed.edges.get_or_insert(h.edge, labels, feed.res);
        let pos = feed.edges.list[edge as usize].field(field);
        let family = if metric == Metric::Duration {
            let le = labels
                .get("le")
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(f64::INFINITY);
            self.join_family(h.family, le, h.series);
            Some(h.family)
        } else {
            None
        };
        self.series.insert(
            h.series,
            SeriesState {
                edge,
                pos,
                family,
                last_t: NONE,
                last_v: 0.0,
            },
        );
        true
    }

    fn join_family(&mut self, family: u64, le: f64, series: u64) {
        let members = self.families.entry(family).or_default();
        if !members.iter().any(|m| m.1 == series) {
            let at = members.partition_point(|m| m.0.total_cmp(&le).is_lt());
            members.insert(at, (le, series));
        }
    }

    /// Takes a series' samples (in time order); the series must have state.
    pub fn push_all(&mut self, feed: &mut Feed<'_>, series: u64, samples: &[Sample]) {
        for s in samples {
            self.push(feed, series, s.t, s.v);
        }
    }

    /// Takes the samples of several series at once: each pod histogram's bucket series
    /// scrape by scrape, bounds ascending, so that what a bound owes the next is paid
    /// within the same scrape (series by series, a long batch would owe a whole history
    /// and allocate rows for bounds that end up zero). `items`: (series, samples).
    pub fn push_batch(&mut self, feed: &mut Feed<'_>, items: &[(u64, &[Sample])]) {
        let mut families: FxMap<u64, Vec<(u64, &[Sample])>> = FxMap::default();
        for &(series, samples) in items {
            match self.series.get(&series).and_then(|s| s.family) {
                Some(f) if samples.len() > 1 => {
                    families.entry(f).or_default().push((series, samples))
                }
                _ => self.push_all(feed, series, samples),
            }
        }
        let mut merged: Vec<(i64, usize, u64, f64)> = Vec::new();
        for (family, members) in families {
            let order = self.families.get(&family);
            let rank = |series: u64| {
                order
                    .and_then(|m| m.iter().position(|x| x.1 == series))
                    .unwrap_or(usize::MAX)
            };
            merged.clear();
            for (series, samples) in members {
                let r = rank(series);
                merged.extend(samples.iter().map(|s| (s.t, r, series, s.v)));
            }
            merged.sort_by_key(|a| (a.0, a.1));
            for &(t, _, series, v) in &merged {
                self.push(feed, series, t, v);
            }
        }
    }

    /// Takes one sample: out-of-range, out-of-order, NaN (staleness markers included) and
    /// infinite values are skipped without touching the series' last value.
    pub fn push(&mut self, feed: &mut Feed<'_>, series: u64, t: i64, v: f64) {
        if t <= feed.min_t || t > feed.max_t || !v.is_finite() {
            return;
        }
        let Some(st) = self.series.get_mut(&series) else {
            return;
        };
        if t <= st.last_t {
            return;
        }
        if st.last_t == NONE {
            st.last_t = t;
            st.last_v = v;
            if let Some(f) = feed.firsts.as_deref_mut() {
                f.insert(series, (t, v));
            }
            return;
        }
        let inc = if v >= st.last_v { v - st.last_v } else { v };
        st.last_t = t;
        st.last_v = v;
        if st.family.is_none() {
            // Not a bucket series: its increase is its own, no second lookup needed.
            if inc != 0.0 {
                feed.edges.list[st.edge as usize].add(feed.res, st.pos, t, inc);
            }
            return;
        }
        self.credit(feed, series, t, inc);
    }

    /// Adds an increase at `t` to the series' cell, telescoped for bucket series.
    fn credit(&mut self, feed: &mut Feed<'_>, series: u64, t: i64, inc: f64) {
        let Some(st) = self.series.get(&series) else {
            return;
        };
        let (edge, pos) = (st.edge as usize, st.pos);
        let Some(family) = st.family else {
            if inc != 0.0 {
                feed.edges.list[edge].add(feed.res, pos, t, inc);
            }
            return;
        };
        let (prev, next) = self.neighbours(family, series);
        let mut own = inc;
        // What the bound below owes this one, up to this scrape.
        if let Some(p) = prev {
            if let Some(list) = self.owed.get_mut(&p) {
                let n = list.partition_point(|e| e.0 <= t);
                for (to, x) in list.drain(..n) {
                    if to == t {
                        own -= x;
                    } else {
                        feed.edges.list[edge].add(feed.res, pos, to, -x);
                    }
                }
                if list.is_empty() {
                    self.owed.remove(&p);
                }
            }
        }
        if inc != 0.0 {
            if let Some((next_last, next_pos)) =
                next.and_then(|n| self.series.get(&n).map(|s| (s.last_t, s.pos)))
            {
                if next_last >= t {
                    // The next bound has taken this scrape already: pay now.
                    feed.edges.list[edge].add(feed.res, next_pos, t, -inc);
                } else {
                    let list = self.owed.entry(series).or_default();
                    list.push((t, inc));
                    if list.len() > OWED_CAP {
                        let (to, x) = list.remove(0);
                        feed.edges.list[edge].add(feed.res, next_pos, to, -x);
                    }
                }
            }
        }
        if own != 0.0 {
            feed.edges.list[edge].add(feed.res, pos, t, own);
        }
    }

    fn neighbours(&self, family: u64, series: u64) -> (Option<u64>, Option<u64>) {
        let Some(members) = self.families.get(&family) else {
            return (None, None);
        };
        let Some(i) = members.iter().position(|m| m.1 == series) else {
            return (None, None);
        };
        let prev = i.checked_sub(1).map(|j| members[j].1);
        let next = members.get(i + 1).map(|m| m.1);
        (prev, next)
    }

    /// Pays every owed subtraction into the bucket it belongs to (the end of a rebuild).
    pub fn settle(&mut self, feed: &mut Feed<'_>) {
        for (series, owed) in std::mem::take(&mut self.owed) {
            let Some(st) = self.series.get(&series) else {
                continue;
            };
            let (edge, family) = (st.edge as usize, st.family);
            let next = family.and_then(|f| self.neighbours(f, series).1);
            if let Some(next_pos) = next.and_then(|n| self.series.get(&n)).map(|s| s.pos) {
                for (to, x) in owed {
                    feed.edges.list[edge].add(feed.res, next_pos, to, -x);
                }
            }
        }
    }

    /// Series in the order a rebuild should bridge them: bucket series by pod histogram and
    /// bound, so each pays what the one below owes at once.
    pub fn bridge_order(&self) -> Vec<u64> {
        let mut v: Vec<(u64, f64, u64)> = Vec::with_capacity(self.series.len());
        for (fam, members) in &self.families {
            v.extend(members.iter().map(|m| (*fam, m.0, m.1)));
        }
        let in_family: crate::fx::FxSet<u64> = v.iter().map(|x| x.2).collect();
        v.extend(
            self.series
                .keys()
                .filter(|h| !in_family.contains(h))
                .map(|h| (0, 0.0, *h)),
        );
        v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        v.into_iter().map(|x| x.2).collect()
    }

    /// Moves the series `into` lacks into it (a rebuild's state becoming the live one),
    /// with nothing owed.
    pub fn hand_over(mut self, into: &mut Table) {
        let les: FxMap<u64, (u64, f64)> = self
            .families
            .iter()
            .flat_map(|(f, m)| m.iter().map(move |x| (x.1, (*f, x.0))))
            .collect();
        for (h, st) in self.series.drain() {
            if into.series.contains_key(&h) {
                continue;
            }
            if let Some((fam, le)) = les.get(&h) {
                into.join_family(*fam, *le, h);
            }
            into.series.insert(h, st);
        }
    }

    pub fn bytes(&self) -> usize {
        let per = 8 + std::mem::size_of::<SeriesState>() + 1;
        self.series.capacity() * per
            + self.owed.capacity() * (8 + 24 + 1)
            + self.owed.values().map(|o| o.capacity() * 16).sum::<usize>()
            + self
                .families
                .values()
                .map(|m| 8 + 24 + 1 + m.capacity() * 16)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::aggregates::keys::FieldKind;

    fn res() -> Resolutions {
        Resolutions {
            fine: Res {
                step: 15_000,
                retention: 3_600_000,
                cap: 262,
            },
            coarse: Res {
                step: 300_000,
                retention: 86_400_000,
                cap: 290,
            },
        }
    }

    fn bucket(le: &str, pod: &str) -> Labels {
        Labels::from_pairs([
            ("__name__", "istio_request_duration_milliseconds_bucket"),
            ("destination_app", "reviews"),
            ("le", le),
            ("pod", pod),
        ])
    }

    const T0: i64 = 1_700_000_000_000;

    /// Per-figure sums over the fine buckets from T0 on, by `le` (or code for requests).
    fn sums(edges: &Edges, dict: &Dict) -> Vec<(String, f64)> {
        let d = dict.snapshot();
        let e = &edges.list[0];
        let mut out = vec![0.0; e.fields.len()];
        let lo = bucket_of(T0, 15_000).unwrap() - 1;
        e.fine.sum(lo, lo + 200, &mut out);
        let mut v: Vec<(String, f64)> = e
            .fields
            .iter()
            .zip(out)
            .map(|(f, x)| match f.kind() {
                FieldKind::Bucket { le } => (format!("le={}", d.les[le as usize]), x),
                FieldKind::Requests { code, .. } => (d.codes[code as usize].to_string(), x),
                k => (format!("{k:?}"), x),
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn feed<'a>(res: &'a Resolutions, edges: &'a mut Edges) -> Feed<'a> {
        Feed {
            res,
            edges,
            min_t: i64::MIN,
            max_t: i64::MAX,
            firsts: None,
        }
    }

    #[test]
    fn buckets_are_per_bound_in_any_arrival_order() {
        let res = res();
        let t0 = T0;
        // Cumulative counts per scrape for le=10, 25, +Inf: every request takes 8 ms, so
        // only the le=10 cell should ever hold anything.
        for order in [[0usize, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let (dict, mut edges, mut table) =
                (Dict::default(), Edges::default(), Table::default());
            let les = ["10", "25", "+Inf"];
            let series: Vec<(Labels, SeriesHashes)> = les
                .iter()
                .map(|le| {
                    let l = bucket(le, "p1");
                    let h = SeriesHashes::of(&l);
                    (l, h)
                })
                .collect();
            let mut f = feed(&res, &mut edges);
            for (l, h) in &series {
                assert!(table.ensure(&mut f, h, Metric::Duration, || l, &dict));
            }
            for i in 0..5i64 {
                let t = t0 + i * 15_000;
                for &j in &order {
                    table.push(&mut f, series[j].1.series, t, 10.0 * i as f64);
                }
            }
            let got = sums(&edges, &dict);
            assert_eq!(
                got,
                vec![
                    ("le=10".to_string(), 40.0),
                    ("le=25".to_string(), 0.0),
                    ("le=inf".to_string(), 0.0)
                ],
                "order {order:?}"
            );
            // Fed in ascending order (as exposition lists them), only le=10 holds a row.
            table.settle(&mut feed(&res, &mut edges));
            if order == [0, 1, 2] {
                assert_eq!(edges.list[0].fine.allocated_rows(), 1);
            }
        }
    }

    #[test]
    fn resets_stale_markers_and_pods() {
        let res = res();
        let (dict, mut edges, mut table) = (Dict::default(), Edges::default(), Table::default());
        let t0 = T0;
        let pod = |p: &str| {
            Labels::from_pairs([
                ("__name__", "istio_requests_total"),
                ("destination_app", "reviews"),
                ("pod", p),
                ("response_code", "200"),
            ])
        };
        let (a, b) = (pod("a"), pod("b"));
        let (ha, hb) = (SeriesHashes::of(&a), SeriesHashes::of(&b));
        let mut f = feed(&res, &mut edges);
        assert!(table.ensure(&mut f, &ha, Metric::Requests, || &a, &dict));
        assert!(table.ensure(&mut f, &hb, Metric::Requests, || &b, &dict));
        let stale = meshlens_model::STALE_NAN;
        // a: 0, 10, 20, reset to 5, stale, NaN, 15 -> 10 + 10 + 5 + 10 = 35.
        for (i, v) in [0.0, 10.0, 20.0, 5.0, stale, f64::NAN, 15.0]
            .into_iter()
            .enumerate()
        {
            table.push(&mut f, ha.series, t0 + i as i64 * 15_000, v);
        }
        // b: 100, 101 (out of order 90 is skipped) -> 1.
        table.push(&mut f, hb.series, t0, 100.0);
        table.push(&mut f, hb.series, t0 + 15_000, 101.0);
        table.push(&mut f, hb.series, t0 + 10_000, 90.0);
        assert_eq!(edges.list.len(), 1, "two pods, one edge");
        assert_eq!(sums(&edges, &dict), vec![("200".to_string(), 36.0)]);
    }
}
