//! What the aggregates key on: which metrics they read, the three hashes of a series
//! (itself, its histogram family, its edge), and compact ids for the figures of an edge.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;

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

/// A series' identity for the aggregates. SipHash (fixed keys) rather than Fx: the hash
/// stands for the label set, with no equality check behind it, so it must spread well;
/// a collision among a million series has odds of about 1 in 10^7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SeriesHashes {
    /// Every label.
    pub series: u64,
    /// Every label but `le`: the histogram a bucket series belongs to (one pod's).
    pub family: u64,
    /// The identity labels only: the edge the series adds to.
    pub edge: u64,
}

impl SeriesHashes {
    pub fn of(labels: &Labels) -> SeriesHashes {
        SeriesHashes::of_pairs(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }

    /// One pass over the labels feeds all three hashes. The pairs must be in `Labels`'
    /// normal form (sorted, names unique, no empty value), so that a series sent raw and
    /// the same series read back as `Labels` hash alike.
    pub fn of_pairs<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> SeriesHashes {
        let mut series = DefaultHasher::new();
        let mut family = DefaultHasher::new();
        let mut edge = DefaultHasher::new();
        let write = |h: &mut DefaultHasher, name: &str, value: &str| {
            h.write(name.as_bytes());
            h.write_u8(0xff);
            h.write(value.as_bytes());
            h.write_u8(0xfe);
        };
        for (name, value) in labels {
            write(&mut series, name, value);
            if name != "le" {
                write(&mut family, name, value);
            }
            if is_identity(name) {
                write(&mut edge, name, value);
            }
        }
        SeriesHashes {
            series: series.finish(),
            family: family.finish(),
            edge: edge.finish(),
        }
    }
}

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
