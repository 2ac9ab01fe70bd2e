//! What the aggregates key on: which metrics they read, the three hashes of a series
//! (itself, its histogram family, its edge), and compact ids for the figures of an edge.

use meshlens_model::Labels;
use parking_lot::RwLock;

use crate::fx::FxMap;
use crate::graph::fold::IDENTITY;

/// The Istio metrics the graph reads, and which figure each feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Metric {
    Requests,
    Duration,
    TcpSent,
    TcpReceived,
}

impl Metric {
    pub const ALL: [(Metric, &'static str); 4] = [
        (Metric::Requests, "istio_requests_total"),
        (
            Metric::Duration,
            "istio_request_duration_milliseconds_bucket",
        ),
        (Metric::TcpSent, "istio_tcp_sent_bytes_total"),
        (Metric::TcpReceived, "istio_tcp_received_bytes_total"),
    ];

    pub fn of(labels: &Labels) -> Option<Metric> {
        Metric::named(labels.metric_name()?)
    }

    pub fn named(name: &str) -> Option<Metric> {
        Metric::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(m, _)| *m)
    }
}

/// A series' identity for the aggregates. The hash stands for the label set, with no
/// equality check behind it, so it must spread well: each label pair is digested once by
/// word-at-a-time folded multiplication (the wyhash / foldhash construction, which spreads
/// as well as SipHash on data not crafted against it at a fraction of the cost on the ingest
/// path), and the pair digests are folded into the three hashes. A collision among a million
/// series has odds of about 1 in 10^7. Never stored: the aggregates are rebuilt at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SeriesHashes {
    /// Every label.
    pub series: u64,
    /// Every label but `le`: the histogram a bucket series belongs to (one pod's).
    pub family: u64,
    /// The identity labels only: the edge the series adds to.
    pub edge: u64,
}

/// Hex digits of pi: fixed, high-entropy multipliers.
const K: [u64; 3] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
];

fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Absorbs a string, its length included, so that no string is a prefix of another.
fn absorb(mut h: u64, s: &[u8]) -> u64 {
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = fold_mul(h ^ u64::from_le_bytes(b), K[0]);
    }
    let rest = words.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    fold_mul(h ^ u64::from_le_bytes(last), K[1] ^ s.len() as u64)
}

/// One of the three running hashes: pair digests in label order, then their count.
#[derive(Clone, Copy)]
struct Fold {
    acc: u64,
    pairs: u64,
}

impl Fold {
    const NEW: Fold = Fold {
        acc: K[2],
        pairs: 0,
    };

    fn add(&mut self, pair: u64) {
        self.acc = fold_mul(self.acc ^ pair, K[0]);
        self.pairs += 1;
    }

    fn finish(self) -> u64 {
        fold_mul(self.acc ^ self.pairs, K[1])
    }
}

impl SeriesHashes {
    pub fn of(labels: &Labels) -> SeriesHashes {
        SeriesHashes::of_pairs(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }

    /// One pass over the labels feeds all three hashes. The pairs must be in `Labels`'
    /// normal form (sorted, names unique, no empty value), so that a series sent raw and
    /// the same series read back as `Labels` hash alike.
    pub fn of_pairs<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> SeriesHashes {
        let (mut series, mut family, mut edge) = (Fold::NEW, Fold::NEW, Fold::NEW);
        for (name, value) in labels {
            let pair = absorb(absorb(K[2], name.as_bytes()), value.as_bytes());
            series.add(pair);
            if name != "le" {
                family.add(pair);
            }
            if is_identity(name) {
                edge.add(pair);
            }
        }
        SeriesHashes {
            series: series.finish(),
            family: family.finish(),
            edge: edge.finish(),
        }
    }
}

/// Whether `name` is one of the graph's identity labels. Asked for every label of every
/// Istio series ingested; `str` equality compares lengths before bytes, so most names are
/// turned away without reading them.
pub(crate) fn is_identity(name: &str) -> bool {
    IDENTITY.contains(&name)
}

/// The identity labels of a series: what an edge is known by.
pub(crate) fn identity(labels: &Labels) -> Labels {
    Labels::from_pairs(
        labels
            .iter()
            .filter(|l| is_identity(&l.name))
            .map(|l| (l.name.clone(), l.value.clone())),
    )
}

/// One figure of an edge, packed in 32 bits: the kind in the top two, then for requests
/// the mTLS bit and the interned response code, for buckets the interned `le`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FieldId(u32);

const KIND_SHIFT: u32 = 30;
const MTLS_BIT: u32 = 1 << 29;
const ID_MASK: u32 = MTLS_BIT - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldKind {
    Requests { code: u32, mtls: bool },
    Bucket { le: u32 },
    TcpSent,
    TcpReceived,
}

impl FieldId {
    pub fn new(kind: FieldKind) -> FieldId {
        FieldId(match kind {
            FieldKind::Requests { code, mtls } => {
                (code & ID_MASK) | if mtls { MTLS_BIT } else { 0 }
            }
            FieldKind::Bucket { le } => (1 << KIND_SHIFT) | (le & ID_MASK),
            FieldKind::TcpSent => 2 << KIND_SHIFT,
            FieldKind::TcpReceived => 3 << KIND_SHIFT,
        })
    }

    pub fn kind(self) -> FieldKind {
        match self.0 >> KIND_SHIFT {
            0 => FieldKind::Requests {
                code: self.0 & ID_MASK,
                mtls: self.0 & MTLS_BIT != 0,
            },
            1 => FieldKind::Bucket {
                le: self.0 & ID_MASK,
            },
            2 => FieldKind::TcpSent,
            _ => FieldKind::TcpReceived,
        }
    }
}

/// Response codes and bucket bounds seen so far, as dense ids (a few dozen of each in a
/// mesh). Interned when a series is first seen, never per sample.
#[derive(Default)]
pub(crate) struct Dict {
    inner: RwLock<DictInner>,
}

#[derive(Default, Clone)]
pub(crate) struct DictInner {
    pub codes: Vec<Box<str>>,
    code_ids: FxMap<Box<str>, u32>,
    pub les: Vec<f64>,
    le_ids: FxMap<u64, u32>,
}

impl Dict {
    pub fn code(&self, code: &str) -> u32 {
        if let Some(&id) = self.inner.read().code_ids.get(code) {
            return id;
        }
        let mut d = self.inner.write();
        if let Some(&id) = d.code_ids.get(code) {
            return id;
        }
        let id = d.codes.len() as u32;
        d.codes.push(code.into());
        d.code_ids.insert(code.into(), id);
        id
    }

    pub fn le(&self, le: f64) -> u32 {
        if let Some(&id) = self.inner.read().le_ids.get(&le.to_bits()) {
            return id;
        }
        let mut d = self.inner.write();
        if let Some(&id) = d.le_ids.get(&le.to_bits()) {
            return id;
        }
        let id = d.les.len() as u32;
        d.les.push(le);
        d.le_ids.insert(le.to_bits(), id);
        id
    }

    /// A copy for a query: codes and bounds by id.
    pub fn snapshot(&self) -> DictInner {
        self.inner.read().clone()
    }
}

/// The figure a new series feeds, or None for a bucket series without a numeric `le`.
pub(crate) fn field_of(metric: Metric, labels: &Labels, dict: &Dict) -> Option<FieldId> {
    Some(FieldId::new(match metric {
        Metric::Requests => FieldKind::Requests {
            code: dict.code(labels.get("response_code").unwrap_or("0")),
            mtls: labels.get("connection_security_policy") == Some("mutual_tls"),
        },
        Metric::Duration => {
            let le = labels
                .get("le")?
                .parse::<f64>()
                .ok()
                .filter(|v| !v.is_nan())?;
            FieldKind::Bucket { le: dict.le(le) }
        }
        Metric::TcpSent => FieldKind::TcpSent,
        Metric::TcpReceived => FieldKind::TcpReceived,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    /// Series that differ in one value, in where a string ends, or in a label's presence
    /// all hash apart; 300,000 Istio-like series have no collision in any of the hashes.
    #[test]
    fn hashes_spread_and_respect_boundaries() {
        let h = |p: &[(&str, &str)]| SeriesHashes::of_pairs(p.iter().copied());
        assert_ne!(h(&[("ab", "c")]), h(&[("a", "bc")]));
        assert_ne!(h(&[("a", "12345678")]), h(&[("a", "1234567"), ("b", "8")]));
        assert_ne!(h(&[("a", "x")]), h(&[("a", "x"), ("b", "y")]));
        assert_ne!(h(&[]).series, h(&[("a", "")]).series);
        let mut seen = [(); 3].map(|_| std::collections::HashSet::new());
        for i in 0..300_000u32 {
            let (pod, code, le) = (format!("pod-{}", i / 600), (i / 20) % 30, i % 20);
            let (code, le) = (code.to_string(), le.to_string());
            let x = h(&[
                ("__name__", "istio_request_duration_milliseconds_bucket"),
                ("destination_workload", &format!("w{}", i / 6000)),
                ("le", &le),
                ("pod", &pod),
                ("response_code", &code),
            ]);
            assert!(seen[0].insert(x.series), "series collision at {i}");
            if le == "0" {
                assert!(seen[1].insert(x.family), "family collision at {i}");
            }
            if i % 6000 == 0 {
                assert!(seen[2].insert(x.edge), "edge collision at {i}");
            }
        }
    }

    #[test]
    fn identity_names_are_exactly_the_graphs() {
        for n in IDENTITY {
            assert!(is_identity(n), "{n}");
            for other in [
                &n[1..],
                &n[..n.len() - 1],
                &format!("{n}_"),
                &n.to_uppercase(),
            ] {
                assert_eq!(is_identity(other), IDENTITY.contains(&other), "{other}");
            }
        }
        for n in [
            "",
            "le",
            "pod",
            "instance",
            "__name__",
            "response_code",
            "namespace",
        ] {
            assert!(!is_identity(n), "{n}");
        }
    }

    #[test]
    fn pods_share_an_edge_and_buckets_a_family() {
        let a = labels(&[
            ("__name__", "istio_request_duration_milliseconds_bucket"),
            ("destination_app", "reviews"),
            ("le", "10"),
            ("pod", "reviews-1"),
        ]);
        let b = labels(&[
            ("__name__", "istio_request_duration_milliseconds_bucket"),
            ("destination_app", "reviews"),
            ("le", "25"),
            ("pod", "reviews-1"),
        ]);
        let c = labels(&[
            ("__name__", "istio_request_duration_milliseconds_bucket"),
            ("destination_app", "reviews"),
            ("le", "10"),
            ("pod", "reviews-2"),
        ]);
        let (ha, hb, hc) = (
            SeriesHashes::of(&a),
            SeriesHashes::of(&b),
            SeriesHashes::of(&c),
        );
        assert_ne!(ha.series, hb.series);
        assert_eq!(ha.family, hb.family);
        assert_ne!(ha.family, hc.family);
        assert_eq!(ha.edge, hc.edge);
        assert_eq!(identity(&a), labels(&[("destination_app", "reviews")]));
    }

    #[test]
    fn field_ids_round_trip() {
        for k in [
            FieldKind::Requests {
                code: 7,
                mtls: true,
            },
            FieldKind::Requests {
                code: 0,
                mtls: false,
            },
            FieldKind::Bucket { le: 19 },
            FieldKind::TcpSent,
            FieldKind::TcpReceived,
        ] {
            assert_eq!(FieldId::new(k).kind(), k);
        }
        let d = Dict::default();
        let l = labels(&[("le", "+Inf")]);
        let f = field_of(Metric::Duration, &l, &d).unwrap();
        assert_eq!(f.kind(), FieldKind::Bucket { le: 0 });
        assert_eq!(d.snapshot().les, vec![f64::INFINITY]);
        assert!(field_of(Metric::Duration, &labels(&[("le", "x")]), &d).is_none());
    }
}
