//! How the head keeps a series' labels: each distinct label string once, in a symbol table,
//! and per series only pointers to them, so 10,000s of series sharing `job`, `namespace` or
//! a metric name do not each hold a copy. A series' labels are compared and hashed straight
//! from the label pairs of a request, so a write to a series the head already holds builds
//! no `Labels` at all.

use std::hash::Hasher;
use std::sync::Arc;

use meshlens_model::hash::{FxHasher, FxSet};
use meshlens_model::{Label, Labels};
use parking_lot::Mutex;

/// One series' labels, sorted by name: names and values alternate, each shared with every
/// other series holding the same string.
#[derive(Debug)]
pub struct SeriesLabels(Box<[Arc<str>]>);

impl SeriesLabels {
    /// The labels as the model's owned type.
    pub fn to_labels(&self) -> Labels {
        Labels::from_sorted_unchecked(
            self.0
                .chunks_exact(2)
                .map(|p| Label::new(&*p[0], &*p[1]))
                .collect(),
        )
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.0.chunks_exact(2).map(|p| (&*p[0], &*p[1]))
    }

    pub fn len(&self) -> usize {
        self.0.len() / 2
    }

    /// Whether these are exactly `labels`.
    pub fn eq_labels(&self, labels: &Labels) -> bool {
        self.len() == labels.len()
            && self
                .pairs()
                .zip(labels.iter())
                .all(|((n, v), l)| n == l.name && v == l.value)
    }

    /// Whether these are exactly the normalised `pairs` (see `RawSeries::is_normalised`).
    pub fn eq_pairs(&self, pairs: &[(&str, &str)]) -> bool {
        self.len() == pairs.len()
            && self
                .pairs()
                .zip(pairs)
                .all(|((n, v), (pn, pv))| n == *pn && v == *pv)
    }
}

/// The head's hash of a label set, from its sorted pairs: word-at-a-time Fx with a final
/// mix, several times cheaper than the byte-wise FNV of `Labels::stable_hash` on the write
/// path. In memory only (never stored); equal hashes are always confirmed by comparing the
/// labels, so a collision costs a comparison, never a wrong series.
pub fn hash_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = FxHasher::default();
    for (n, v) in pairs {
        h.write(n.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xfe);
    }
    // Fx leaves the low bits weak; the shard is taken from them.
    let mut x = h.finish();
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

pub fn hash_labels(labels: &Labels) -> u64 {
    hash_pairs(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
}

/// Every label string some series of the head holds, once.
#[derive(Default)]
pub struct Symbols {
    set: Mutex<FxSet<Arc<str>>>,
}

impl Symbols {
    /// The labels of a new series, each string shared with the table.
    pub fn intern(&self, labels: &Labels) -> SeriesLabels {
        let mut set = self.set.lock();
        let mut get = |s: &str| -> Arc<str> {
            if let Some(a) = set.get(s) {
                return a.clone();
            }
            let a: Arc<str> = Arc::from(s);
            set.insert(a.clone());
            a
        };
        let mut v = Vec::with_capacity(labels.len() * 2);
        for l in labels {
            v.push(get(&l.name));
            v.push(get(&l.value));
        }
        SeriesLabels(v.into_boxed_slice())
    }

    /// Forgets strings no series holds any more (after garbage collection dropped series);
    /// returns how many.
    pub fn sweep(&self) -> usize {
        let mut set = self.set.lock();
        let before = set.len();
        set.retain(|s| Arc::strong_count(s) > 1);
        before - set.len()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_labels_share_strings_and_compare_like_labels() {
        let syms = Symbols::default();
        let a = Labels::from_pairs([("__name__", "up"), ("job", "node"), ("pod", "p1")]);
        let b = Labels::from_pairs([("__name__", "up"), ("job", "node"), ("pod", "p2")]);
        let (ia, ib) = (syms.intern(&a), syms.intern(&b));
        // __name__, up, job, node, pod, p1, p2.
        assert_eq!(syms.len(), 7);
        assert!(Arc::ptr_eq(&ia.0[1], &ib.0[1]));
        assert_eq!(ia.to_labels(), a);
        assert!(ia.eq_labels(&a) && !ia.eq_labels(&b));
        assert!(ia.eq_pairs(&[("__name__", "up"), ("job", "node"), ("pod", "p1")]));
        assert!(!ia.eq_pairs(&[("__name__", "up"), ("job", "node")]));
        assert_eq!(
            hash_labels(&a),
            hash_pairs([("__name__", "up"), ("job", "node"), ("pod", "p1")].into_iter())
        );
        assert_ne!(hash_labels(&a), hash_labels(&b));
        drop(ib);
        assert_eq!(syms.sweep(), 1, "p2 is held by no series any more");
        assert_eq!(syms.len(), 6);
    }

    #[test]
    fn hash_separates_names_from_values() {
        let h = |p: &[(&str, &str)]| hash_pairs(p.iter().copied());
        assert_ne!(h(&[("ab", "c")]), h(&[("a", "bc")]));
        assert_ne!(h(&[("a", "b"), ("c", "d")]), h(&[("a", "bc"), ("", "d")]));
        assert_ne!(h(&[]), h(&[("", "")]));
    }
}
