//! Listener self-metrics, one set of counters per listener name, passed in explicitly so
//! tests can read them.

use meshlens_model::escape_label_value as escape;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// Counters of one listener.
#[derive(Debug, Default)]
pub struct ListenerCounters {
    pub accepted: AtomicU64,
    pub shed: AtomicU64,
    pub refused: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub auth_failures: AtomicU64,
    pub open: AtomicI64,
}

/// A plain copy of [`ListenerCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSnapshot {
    pub accepted: u64,
    pub shed: u64,
    pub refused: u64,
    pub header_timeouts: u64,
    pub tls_handshake_failures: u64,
    pub auth_failures: u64,
    pub open: i64,
}

impl ListenerCounters {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ListenerSnapshot {
        ListenerSnapshot {
            accepted: self.accepted.load(Ordering::Relaxed),
            shed: self.shed.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            header_timeouts: self.header_timeouts.load(Ordering::Relaxed),
            tls_handshake_failures: self.tls_handshake_failures.load(Ordering::Relaxed),
            auth_failures: self.auth_failures.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
        }
    }
}

/// All listeners' counters, rendered as `meshlens_http_*{listener="..."}`.
#[derive(Debug, Default)]
pub struct AccessMetrics {
    listeners: Mutex<Vec<(&'static str, Arc<ListenerCounters>)>>,
}

impl AccessMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters for `name`, created on first use.
    pub fn listener(&self, name: &'static str) -> Arc<ListenerCounters> {
        let mut ls = self.listeners.lock();
        if let Some((_, c)) = ls.iter().find(|(n, _)| *n == name) {
            return c.clone();
        }
        let c = Arc::new(ListenerCounters::default());
        ls.push((name, c.clone()));
        c
    }

    pub fn snapshot(&self, name: &str) -> Option<ListenerSnapshot> {
        self.listeners
            .lock()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| c.snapshot())
    }

    /// Appends the Prometheus text exposition of every listener's counters.
    pub fn render(&self, out: &mut String) {
        let ls: Vec<(&'static str, ListenerSnapshot)> = self
            .listeners
            .lock()
            .iter()
            .map(|(n, c)| (*n, c.snapshot()))
            .collect();
        if ls.is_empty() {
            return;
        }
        type Get = fn(&ListenerSnapshot) -> i64;
        let families: [(&str, &str, &str, Get); 7] = [
            ("meshlens_http_connections_accepted_total", "counter", "TCP connections accepted.", |s| s.accepted as i64),
            ("meshlens_http_connections_shed_total", "counter", "Connections closed at the connection cap because they had not sent a request head.", |s| s.shed as i64),
            ("meshlens_http_connections_refused_total", "counter", "Connections closed at the connection cap because no slot freed in time.", |s| s.refused as i64),
            ("meshlens_http_header_timeouts_total", "counter", "Connections closed for not sending a complete request head in time.", |s| s.header_timeouts as i64),
            ("meshlens_http_tls_handshake_failures_total", "counter", "TLS handshakes that failed or timed out.", |s| s.tls_handshake_failures as i64),
            ("meshlens_http_auth_failures_total", "counter", "Requests answered 401 by basic auth.", |s| s.auth_failures as i64),
            ("meshlens_http_open_connections", "gauge", "Connections currently open.", |s| s.open),
        ];
        for (name, kind, help, get) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (l, s) in &ls {
                let _ = writeln!(out, "{name}{{listener=\"{}\"}} {}", escape(l), get(s));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_per_listener() {
        let m = AccessMetrics::new();
        ListenerCounters::inc(&m.listener("main").accepted);
        ListenerCounters::inc(&m.listener("main").accepted);
        m.listener("otlp-grpc").open.store(3, Ordering::Relaxed);
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("meshlens_http_connections_accepted_total{listener=\"main\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("meshlens_http_open_connections{listener=\"otlp-grpc\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE meshlens_http_open_connections gauge\n"));
        assert_eq!(m.snapshot("main").unwrap().accepted, 2);
    }
}
