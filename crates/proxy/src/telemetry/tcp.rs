//! Istio's TCP metrics: `istio_tcp_sent_bytes_total` (upstream → downstream),
//! `istio_tcp_received_bytes_total` (downstream → upstream),
//! `istio_tcp_connections_opened_total` and `istio_tcp_connections_closed_total`, with the
//! HTTP metrics' source and destination labels, `request_protocol="tcp"` and the connection's
//! response flags (no response code: TCP has none). Bytes are counted as they pass, so a
//! long-lived connection shows its traffic while open.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use meshlens_model::hash::FxMap;
use parking_lot::RwLock;

use super::flags::Flags;
use super::metrics::{render_dest, render_source, security_policy, DestLabels, PeerLabels};
use crate::conn::Security;

/// Key of one TCP series (see [`super::metrics::SeriesKey`] for `source`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpKey {
    pub source: Option<Arc<PeerLabels>>,
    pub dest: Arc<DestLabels>,
    pub flags: Flags,
    /// Whether the connection came (inbound) or went (outbound) over the mesh's mTLS.
    pub security: Security,
}

/// The counters of one label set.
#[derive(Default)]
pub struct TcpSeries {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub opened: AtomicU64,
    pub closed: AtomicU64,
}

#[derive(Default)]
pub struct TcpMetrics {
    series: RwLock<FxMap<TcpKey, Arc<TcpSeries>>>,
}

impl TcpMetrics {
    /// The series handle for a label set, created on first use (once per connection, not
    /// per read).
    pub fn series(&self, key: &TcpKey) -> Arc<TcpSeries> {
        if let Some(s) = self.series.read().get(key) {
            return s.clone();
        }
        self.series.write().entry(key.clone()).or_default().clone()
    }

    /// Sum of one counter over series matching a predicate (tests, admin).
    pub fn sum_where(
        &self,
        pick: impl Fn(&TcpSeries) -> &AtomicU64,
        f: impl Fn(&TcpKey) -> bool,
    ) -> u64 {
        self.series
            .read()
            .iter()
            .filter(|(k, _)| f(k))
            .map(|(_, s)| pick(s).load(Ordering::Relaxed))
            .sum()
    }

    /// Appends the four families (nothing when no TCP connection was seen).
    pub(crate) fn render(&self, out: &mut String, reporter: &str, own_source: &str) {
        let mut series: Vec<(String, Arc<TcpSeries>)> = self
            .series
            .read()
            .iter()
            .map(|(k, s)| (labels(k, reporter, own_source), s.clone()))
            .collect();
        if series.is_empty() {
            return;
        }
        series.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, pick) in [
            (
                "istio_tcp_sent_bytes_total",
                (|s: &TcpSeries| &s.sent) as fn(&TcpSeries) -> &AtomicU64,
            ),
            ("istio_tcp_received_bytes_total", |s: &TcpSeries| {
                &s.received
            }),
            ("istio_tcp_connections_opened_total", |s: &TcpSeries| {
                &s.opened
            }),
            ("istio_tcp_connections_closed_total", |s: &TcpSeries| {
                &s.closed
            }),
        ] {
            let _ = writeln!(out, "# TYPE {name} counter");
            for (l, s) in &series {
                let _ = writeln!(out, "{name}{{{l}}} {}", pick(s).load(Ordering::Relaxed));
            }
        }
    }
}

fn labels(k: &TcpKey, reporter: &str, own_source: &str) -> String {
    let policy = security_policy(k.security, reporter);
    let source = match &k.source {
        Some(src) => std::borrow::Cow::Owned(render_source(reporter, src)),
        None => std::borrow::Cow::Borrowed(own_source),
    };
    format!(
        "{},{},request_protocol=\"tcp\",response_flags=\"{}\",connection_security_policy=\"{}\"",
        source,
        render_dest(&k.dest),
        k.flags,
        policy,
    )
}
