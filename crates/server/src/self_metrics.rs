//! The server's own metrics, served at `/metrics`. The registry is passed explicitly to the
//! parts that count (no global statics), so tests can read it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use meshlens_ingest::exposition::format_value;

/// A counter family keyed by a rendered label string (`a="b",c="d"`).
#[derive(Default)]
pub struct CounterVec {
    values: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
}

impl CounterVec {
    pub fn with(&self, labels: &[(&str, &str)]) -> Arc<AtomicU64> {
        let key = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join(",");
        self.values.lock().entry(key).or_default().clone()
    }

    pub fn add(&self, labels: &[(&str, &str)], n: u64) {
        self.with(labels).fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn render(&self, name: &str, out: &mut String) {
        for (k, v) in self.values.lock().iter() {
            let labels = if k.is_empty() {
                String::new()
            } else {
                format!("{{{k}}}")
            };
            out.push_str(&format!("{name}{labels} {}\n", v.load(Ordering::Relaxed)));
        }
    }
}

#[derive(Default)]
pub struct SelfMetrics {
    pub samples_ingested: CounterVec,
    pub samples_rejected: CounterVec,
    /// Exemplars refused by the store, by source and reason (duplicates are not refusals).
    pub exemplars_rejected: CounterVec,
    pub remote_write_requests: CounterVec,
    /// OTLP metrics export calls (HTTP and gRPC), by HTTP status code.
    pub otlp_metrics_requests: CounterVec,
    pub scrapes: CounterVec,
    pub http_requests: CounterVec,
    /// Requests refused before reaching a tenant: missing or invalid `X-Scope-OrgID`.
    pub tenant_refusals: CounterVec,
    /// DNS service discovery lookups and their failures (Prometheus's names, no labels).
    pub sd_dns_lookups: CounterVec,
    pub sd_dns_lookup_failures: CounterVec,
    /// Whether the latest config (re)load succeeded, and when (Prometheus's names).
    pub last_reload_successful: std::sync::atomic::AtomicBool,
    pub last_reload_success_ms: AtomicU64,
}

impl SelfMetrics {
    pub fn new() -> Arc<Self> {
        let m = SelfMetrics::default();
        m.config_reloads(true);
        Arc::new(m)
    }

    /// Records a config load's outcome.
    pub fn config_reloads(&self, ok: bool) {
        self.last_reload_successful.store(ok, Ordering::Relaxed);
        if ok {
            self.last_reload_success_ms.store(
                meshlens_model::time::now_ms().max(0) as u64,
                Ordering::Relaxed,
            );
        }
    }

    /// Renders everything in the text format, with storage figures read at the moment.
    pub fn render(&self, tsdb: &meshlens_tsdb::TsdbStats) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, c: &CounterVec| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            c.render(name, out);
        };
        counter(
            &mut out,
            "meshlens_samples_ingested_total",
            "Samples accepted into storage, by source.",
            &self.samples_ingested,
        );
        counter(
            &mut out,
            "meshlens_samples_rejected_total",
            "Samples refused by storage, by source and reason.",
            &self.samples_rejected,
        );
        counter(
            &mut out,
            "meshlens_exemplars_rejected_total",
            "Exemplars refused by the exemplar store, by source and reason.",
            &self.exemplars_rejected,
        );
        counter(
            &mut out,
            "meshlens_remote_write_requests_total",
            "Remote write requests, by HTTP status code.",
            &self.remote_write_requests,
        );
        counter(
            &mut out,
            "meshlens_otlp_metrics_requests_total",
            "OTLP metrics export requests (HTTP and gRPC), by HTTP status code.",
            &self.otlp_metrics_requests,
        );
        counter(
            &mut out,
            "meshlens_scrapes_total",
            "Scrapes, by job and result.",
            &self.scrapes,
        );
        counter(
            &mut out,
            "meshlens_tenant_refusals_total",
            "Requests refused for a missing or invalid X-Scope-OrgID, by HTTP status.",
            &self.tenant_refusals,
        );
        counter(
            &mut out,
            "prometheus_sd_dns_lookups_total",
            "The number of DNS-SD lookups.",
            &self.sd_dns_lookups,
        );
        counter(
            &mut out,
            "prometheus_sd_dns_lookup_failures_total",
            "The number of DNS-SD lookup failures.",
            &self.sd_dns_lookup_failures,
        );
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: f64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
                format_value(v)
            ));
        };
        gauge(
            &mut out,
            "prometheus_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            "gauge",
            f64::from(u8::from(
                self.last_reload_successful.load(Ordering::Relaxed),
            )),
        );
        gauge(
            &mut out,
            "prometheus_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            "gauge",
            self.last_reload_success_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        );
        gauge(
            &mut out,
            "meshlens_tsdb_head_series",
            "Series in the in-memory head.",
            "gauge",
            tsdb.head_series as f64,
        );
        gauge(
            &mut out,
            "meshlens_tsdb_head_chunks",
            "Chunks in the in-memory head.",
            "gauge",
            tsdb.head_chunks as f64,
        );
        gauge(
            &mut out,
            "meshlens_tsdb_head_histogram_samples",
            "Native-histogram samples in the in-memory head.",
            "gauge",
            tsdb.head_histogram_samples as f64,
        );
        gauge(
            &mut out,
            "meshlens_tsdb_samples_appended_total",
            "Samples appended to the TSDB.",
            "counter",
            tsdb.samples_appended as f64,
        );
        out.push_str("# HELP meshlens_tsdb_samples_rejected_total Samples the TSDB refused, by reason.\n# TYPE meshlens_tsdb_samples_rejected_total counter\n");
        for (reason, v) in [
            ("out_of_order", tsdb.rejected_out_of_order),
            ("out_of_bounds", tsdb.rejected_out_of_bounds),
            ("duplicate", tsdb.rejected_duplicate),
            ("invalid_labels", tsdb.rejected_invalid_labels),
        ] {
            out.push_str(&format!(
                "meshlens_tsdb_samples_rejected_total{{reason=\"{reason}\"}} {v}\n"
            ));
        }
        gauge(
            &mut out,
            "meshlens_tsdb_wal_bytes_total",
            "Bytes written to the WAL.",
            "counter",
            tsdb.wal_bytes as f64,
        );
        gauge(
            &mut out,
            "meshlens_tsdb_wal_fsyncs_total",
            "WAL fsync calls.",
            "counter",
            tsdb.wal_fsyncs as f64,
        );
        gauge(
            &mut out,
            "meshlens_tsdb_wal_fsync_duration_seconds_total",
            "Time spent in WAL fsync.",
            "counter",
            tsdb.wal_fsync_seconds_total,
        );
        gauge(
            &mut out,
            "meshlens_tsdb_compactions_total",
            "Compaction rounds that merged blocks.",
            "counter",
            tsdb.compactions as f64,
        );
        gauge(
            &mut out,
            "meshlens_tsdb_compaction_duration_seconds_total",
            "Time spent compacting.",
            "counter",
            tsdb.compaction_seconds_total,
        );
        gauge(
            &mut out,
            "meshlens_tsdb_blocks",
            "Persisted blocks.",
            "gauge",
            tsdb.blocks as f64,
        );
        gauge(
            &mut out,
            "meshlens_tsdb_block_bytes",
            "Bytes of persisted blocks.",
            "gauge",
            tsdb.block_bytes as f64,
        );
        gauge(
            &mut out,
            "meshlens_tsdb_wal_records_dropped_on_replay",
            "WAL records dropped at start-up because of a torn or corrupt tail.",
            "gauge",
            tsdb.wal_records_dropped_on_replay as f64,
        );
        out
    }
}

/// The span store's figures, read at the moment of the scrape.
/// The exemplar store's figures (the scrape tenant's), under Prometheus's names.
pub fn render_exemplar_store(st: &meshlens_tsdb::ExemplarStats, out: &mut String) {
    for (name, kind, help, v) in [
        (
            "prometheus_tsdb_exemplar_exemplars_appended_total",
            "counter",
            "Total number of appended exemplars.",
            st.exemplars_appended as f64,
        ),
        (
            "prometheus_tsdb_exemplar_exemplars_in_storage",
            "gauge",
            "Number of exemplars currently in circular storage.",
            st.exemplars_in_storage as f64,
        ),
        (
            "prometheus_tsdb_exemplar_series_with_exemplars_in_storage",
            "gauge",
            "Number of series with exemplars currently in circular storage.",
            st.series_with_exemplars_in_storage as f64,
        ),
        (
            "prometheus_tsdb_exemplar_last_exemplars_timestamp_seconds",
            "gauge",
            "The timestamp of the newest exemplar stored in circular storage.",
            st.last_exemplar_timestamp_ms as f64 / 1000.0,
        ),
        (
            "prometheus_tsdb_exemplar_out_of_order_exemplars_total",
            "counter",
            "Total number of out of order exemplar ingestion failed attempts.",
            st.out_of_order_exemplars as f64,
        ),
        (
            "prometheus_tsdb_exemplar_max_exemplars",
            "gauge",
            "Total number of exemplars the exemplar storage can store, resizeable.",
            st.max_exemplars as f64,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
            format_value(v)
        ));
    }
}

/// Counts an exemplar append's refusals.
pub fn count_exemplar_refusals(m: &SelfMetrics, source: &str, o: &meshlens_model::ExemplarOutcome) {
    for (reason, n) in [
        ("out_of_order", o.out_of_order),
        ("invalid_labels", o.invalid_labels),
        ("disabled", o.disabled),
    ] {
        if n > 0 {
            m.exemplars_rejected
                .add(&[("source", source), ("reason", reason)], n);
        }
    }
}

pub fn render_span_store(st: &meshlens_spanstore::SpanStoreStats, out: &mut String) {
    for (name, help, kind, v) in [
        (
            "meshlens_spanstore_spans",
            "Spans stored.",
            "gauge",
            st.spans,
        ),
        (
            "meshlens_spanstore_segments",
            "Immutable span segments on disk.",
            "gauge",
            st.segments as u64,
        ),
        (
            "meshlens_spanstore_disk_bytes",
            "Bytes of segments and WAL on disk.",
            "gauge",
            st.disk_bytes,
        ),
        (
            "meshlens_spanstore_wal_bytes",
            "Bytes in the span WAL.",
            "gauge",
            st.wal_bytes,
        ),
        (
            "meshlens_spanstore_head_spans",
            "Spans not yet written as a segment.",
            "gauge",
            st.head_spans,
        ),
        (
            "meshlens_spanstore_wal_torn_tails_total",
            "Torn or corrupt WAL tails truncated at open.",
            "counter",
            st.wal_torn_tails,
        ),
        (
            "meshlens_spanstore_corrupt_segments_total",
            "Segments moved aside as corrupt.",
            "counter",
            st.corrupt_segments,
        ),
        (
            "meshlens_spanstore_retention_dropped_segments_total",
            "Segments dropped by retention.",
            "counter",
            st.retention_dropped_segments,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
        ));
    }
}

/// Which backend stores metrics and spans; with ClickHouse the embedded span store's gauges
/// are left out (it holds nothing then) and `/api/v1/status/storage` has the cluster's figures.
pub fn render_storage_backend(clickhouse: bool, out: &mut String) {
    let backend = if clickhouse { "clickhouse" } else { "embedded" };
    out.push_str(&format!(
        "# HELP meshlens_storage_backend_info Where metrics and spans are stored (figures: /api/v1/status/storage).\n\
         # TYPE meshlens_storage_backend_info gauge\n\
         meshlens_storage_backend_info{{backend=\"{backend}\"}} 1\n"
    ));
}

/// Per-tenant storage figures, with `--multitenancy`; tenants stored in ClickHouse are left
/// out, their embedded stores being empty.
pub fn render_tenants(stacks: &[Arc<crate::tenants::TenantStack>], out: &mut String) {
    use std::fmt::Write;
    type Figure = fn(&crate::tenants::TenantStack) -> u64;
    let gauges: [(&str, &str, Figure); 2] = [
        (
            "meshlens_tenant_head_series",
            "Series in a tenant's head.",
            |s| s.tsdb.head_series(),
        ),
        ("meshlens_tenant_spans", "Spans stored for a tenant.", |s| {
            s.spans.stats().spans
        }),
    ];
    for (name, help, figure) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for s in stacks.iter().filter(|s| s.clickhouse.is_none()) {
            let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {}", s.id, figure(s));
        }
    }
}
