//! How the head keeps a series' labels: each distinct label *pair* once, in a table, and per
//! series one thin pointer per pair, so 10,000s of series sharing `job="node"`, a namespace
//! or a metric name do not each hold a copy, and a series costs 8 bytes per label (a
//! pointer per name and per value, as fat `Arc<str>`s, cost 32). A series' labels are
//! compared and hashed straight from the label pairs of a request, so a write to a series
//! the head already holds builds no `Labels` at all.

use std::sync::Arc;

use meshlens_model::hash::FxMap;
use meshlens_model::{Label, Labels};
use parking_lot::Mutex;

/// One label, name and value in one string (one allocation), split at `split`.
#[derive(Debug)]
pub struct Pair {
    text: Box<str>,
    split: usize,
}

impl Pair {
    fn new(name: &str, value: &str) -> Pair {
        let mut text = String::with_capacity(name.len() + value.len());
        text.push_str(name);
        text.push_str(value);
        Pair {
            text: text.into_boxed_str(),
            split: name.len(),
        }
    }

    #[inline]
    pub fn name(&self) -> &str {
        // `split` is the end of the name, a char boundary: this never panics.
        &self.text[..self.split]
    }

    #[inline]
    pub fn value(&self) -> &str {
        &self.text[self.split..]
    }

    /// Whether this is the pair `(name, value)`: lengths first, then the bytes of both.
    #[inline]
    fn is(&self, name: &str, value: &str) -> bool {
        let t = self.text.as_bytes();
        self.split == name.len()
            && t.len() == name.len() + value.len()
            && same(&t[..self.split], name.as_bytes())
            && same(&t[self.split..], value.as_bytes())
    }
}

/// One series' labels, sorted by name, each pair shared with every other series holding it.
#[derive(Debug)]
pub struct SeriesLabels(Box<[Arc<Pair>]>);

impl SeriesLabels {
    /// The labels as the model's owned type.
    pub fn to_labels(&self) -> Labels {
        Labels::from_sorted_unchecked(
            self.0
                .iter()
                .map(|p| Label::new(p.name(), p.value()))
                .collect(),
        )
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.0.iter().map(|p| (p.name(), p.value()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether these are exactly `labels`.
    pub fn eq_labels(&self, labels: &Labels) -> bool {
        self.len() == labels.len()
            && self
                .0
                .iter()
                .zip(labels.iter())
                .all(|(p, l)| p.is(&l.name, &l.value))
    }

    /// Whether these are exactly the normalised `pairs` (see `RawSeries::is_normalised`).
    pub fn eq_pairs(&self, pairs: &[(&str, &str)]) -> bool {
        self.len() == pairs.len() && self.0.iter().zip(pairs).all(|(p, (n, v))| p.is(n, v))
    }
}

/// String equality for label strings, which are mostly short: up to 16 bytes it is two
/// word comparisons instead of a call to `memcmp`.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        0 => true,
        1..=16 => head_word(a) == head_word(b) && tail_word(a) == tail_word(b),
        _ => a == b,
    }
}

/// The first (up to) 8 bytes as a number; with [`tail_word`] they cover strings of up to
/// 16 bytes whole, overlapping in the middle.
#[inline]
fn head_word(s: &[u8]) -> u64 {
    match s.len() {
        8.. => u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
        4.. => u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]])),
        n => {
            // 0..=3 bytes: first, middle and last (the same byte when n = 1).
            if n == 0 {
                0
            } else {
                u64::from(s[0]) | u64::from(s[n / 2]) << 8 | u64::from(s[n - 1]) << 16
            }
        }
    }
}

/// The last (up to) 8 bytes as a number (see [`head_word`]).
#[inline]
fn tail_word(s: &[u8]) -> u64 {
    let n = s.len();
    match n {
        8.. => u64::from_le_bytes([
            s[n - 8],
            s[n - 7],
            s[n - 6],
            s[n - 5],
            s[n - 4],
            s[n - 3],
            s[n - 2],
            s[n - 1],
        ]),
        4.. => u64::from(u32::from_le_bytes([s[n - 4], s[n - 3], s[n - 2], s[n - 1]])),
        _ => 0,
    }
}

/// Fx's step: one multiply per 8 bytes.
#[inline]
fn mix(h: u64, w: u64) -> u64 {
    (h.rotate_left(5) ^ w).wrapping_mul(0xf135_7aea_2e62_a9c5)
}

/// Folds one string into `h`: its whole 8-byte words, then its last 8 bytes (overlapping
/// the words for lengths that are not a multiple of 8) and its length, so every byte and
/// the boundary between strings count, with no copying of partial words.
#[inline]
fn hash_str(mut h: u64, s: &[u8]) -> u64 {
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        h = mix(
            h,
            u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]),
        );
    }
    if !words.remainder().is_empty() {
        let last = if s.len() >= 8 {
            tail_word(s)
        } else {
            head_word(s) | tail_word(s) << 32
        };
        h = mix(h, last);
    }
    mix(h, s.len() as u64)
}

/// A fast hash of label pairs (word-at-a-time Fx with a final mix), for the pair table:
/// equal hashes there are always confirmed by comparing the pairs.
pub fn hash_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for (n, v) in pairs {
        h = hash_str(h, n.as_bytes());
        h = hash_str(h, v.as_bytes());
    }
    // Fx leaves the bits weakly mixed; the head takes its shard from the top bits and each
    // shard's map its slot from the bottom ones, so both must vary.
    let mut x = h;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

#[cfg(test)]
pub fn hash_labels(labels: &Labels) -> u64 {
    hash_pairs(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
}

/// A series' identity in the head's map: 128 bits of SipHash-1-3 under two random keys
/// drawn at start, over its label pairs, length-prefixed. The remote-write path finds a
/// series by this key alone, without reading its labels (which would cost a cache miss or
/// two per label at scale); a false match needs two label sets whose keyed 128-bit hashes
/// agree, which keys unknown to the sender make a 2^-128 coincidence. Paths holding owned
/// `Labels` still compare them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeriesKey(pub u64, pub u64);

/// Computes [`SeriesKey`]s with this head's keys.
pub struct Keyer {
    a: std::hash::RandomState,
    b: std::hash::RandomState,
}

impl Default for Keyer {
    fn default() -> Self {
        // Two `RandomState`s of one thread differ in their keys (std increments them).
        Keyer {
            a: std::hash::RandomState::new(),
            b: std::hash::RandomState::new(),
        }
    }
}

thread_local! {
    /// The pairs of one key, serialised: hashed in one `write` per hasher, not four per pair.
    static KEY_SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Keyer {
    pub fn key<'a>(&self, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> SeriesKey {
        use std::hash::{BuildHasher, Hasher};
        KEY_SCRATCH.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            for (n, v) in pairs {
                for part in [n, v] {
                    buf.extend_from_slice(&(part.len() as u32).to_le_bytes());
                    buf.extend_from_slice(part.as_bytes());
                }
            }
            let mut a = self.a.build_hasher();
            a.write(&buf);
            let mut b = self.b.build_hasher();
            b.write(&buf);
            SeriesKey(a.finish(), b.finish())
        })
    }

    pub fn key_labels(&self, labels: &Labels) -> SeriesKey {
        self.key(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }
}

/// Every label pair some series of the head holds, once, found by the hash of the pair.
#[derive(Default)]
pub struct Symbols {
    pairs: Mutex<FxMap<u64, Vec<Arc<Pair>>>>,
}

fn pair_hash(name: &str, value: &str) -> u64 {
    hash_pairs(std::iter::once((name, value)))
}

impl Symbols {
    /// The labels of a new series, each pair shared with the table.
    pub fn intern(&self, labels: &Labels) -> SeriesLabels {
        let mut table = self.pairs.lock();
        let v: Vec<Arc<Pair>> = labels
            .iter()
            .map(|l| {
                let same_hash = table.entry(pair_hash(&l.name, &l.value)).or_default();
                if let Some(p) = same_hash.iter().find(|p| p.is(&l.name, &l.value)) {
                    return p.clone();
                }
                let p = Arc::new(Pair::new(&l.name, &l.value));
                same_hash.push(p.clone());
                p
            })
            .collect();
        SeriesLabels(v.into_boxed_slice())
    }

    /// Forgets pairs no series holds any more (after garbage collection dropped series);
    /// returns how many.
    pub fn sweep(&self) -> usize {
        let mut table = self.pairs.lock();
        let mut dropped = 0;
        table.retain(|_, v| {
            let before = v.len();
            v.retain(|p| Arc::strong_count(p) > 1);
            dropped += before - v.len();
            !v.is_empty()
        });
        dropped
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pairs.lock().values().map(Vec::len).sum()
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
        // __name__=up, job=node, pod=p1, pod=p2.
        assert_eq!(syms.len(), 4);
        assert!(Arc::ptr_eq(&ia.0[1], &ib.0[1]));
        assert!(!Arc::ptr_eq(&ia.0[2], &ib.0[2]));
        assert_eq!(ia.to_labels(), a);
        assert!(ia.eq_labels(&a) && !ia.eq_labels(&b));
        assert!(ia.eq_pairs(&[("__name__", "up"), ("job", "node"), ("pod", "p1")]));
        assert!(!ia.eq_pairs(&[("__name__", "up"), ("job", "node")]));
        // A pair keeps where its name ends: `ab="c"` is not `a="bc"`.
        let ab = syms.intern(&Labels::from_pairs([("ab", "c")]));
        assert!(ab.eq_pairs(&[("ab", "c")]) && !ab.eq_pairs(&[("a", "bc")]));
        assert_eq!(ab.pairs().collect::<Vec<_>>(), [("ab", "c")]);
        drop(ab);
        assert_eq!(
            hash_labels(&a),
            hash_pairs([("__name__", "up"), ("job", "node"), ("pod", "p1")].into_iter())
        );
        assert_ne!(hash_labels(&a), hash_labels(&b));
        drop(ib);
        assert_eq!(
            syms.sweep(),
            2,
            "pod=p2 and ab=c are held by no series any more"
        );
        assert_eq!(syms.len(), 3);
    }

    #[test]
    fn short_string_equality_is_exact() {
        let words = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "abc",
            "acc",
            "abcd",
            "abce",
            "abcdefg",
            "abcdefh",
            "abcdefgh",
            "abcdefgi",
            "xbcdefgh",
            "abcdefghijklmnop",
            "abcdefghijklmnoq",
            "abcdefghXjklmnop",
            "abcdefghijklmnopq",
            "abcdefghijklmnopr",
        ];
        for a in words {
            for b in words {
                assert_eq!(same(a.as_bytes(), b.as_bytes()), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn hash_spreads_similar_label_sets() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..50_000u32 {
            let (a, b) = (
                format!("10.0.{}.{}:9100", i % 250, i / 250),
                (i % 17).to_string(),
            );
            let h =
                hash_pairs([("__name__", "up"), ("instance", a.as_str()), ("le", &b)].into_iter());
            assert!(seen.insert(h), "collision at {i}");
        }
    }

    #[test]
    fn keys_separate_names_from_values_and_spread() {
        let k = Keyer::default();
        let key = |p: &[(&str, &str)]| k.key(p.iter().copied());
        assert_ne!(key(&[("ab", "c")]), key(&[("a", "bc")]));
        assert_ne!(
            key(&[("a", "b"), ("c", "d")]),
            key(&[("a", "bc"), ("", "d")])
        );
        assert_ne!(key(&[]), key(&[("", "")]));
        let l = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
        assert_eq!(
            k.key_labels(&l),
            key(&[("__name__", "up"), ("job", "node")])
        );
        // Another head keys the same labels differently: the keys are its own.
        assert_ne!(Keyer::default().key_labels(&l), k.key_labels(&l));
        let mut seen = std::collections::HashSet::new();
        for i in 0..50_000u32 {
            let a = format!("10.0.{}.{}:9100", i % 250, i / 250);
            let SeriesKey(x, y) = key(&[("__name__", "up"), ("instance", &a)]);
            assert!(seen.insert(x) && seen.insert(y), "collision at {i}");
        }
    }

    #[test]
    fn hash_separates_names_from_values() {
        let h = |p: &[(&str, &str)]| hash_pairs(p.iter().copied());
        assert_ne!(h(&[("ab", "c")]), h(&[("a", "bc")]));
        assert_ne!(h(&[("a", "b"), ("c", "d")]), h(&[("a", "bc"), ("", "d")]));
        assert_ne!(h(&[]), h(&[("", "")]));
    }
}
