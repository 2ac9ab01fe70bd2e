//! `/api/v1/status/storage`: which backend holds the requesting tenant's data and what it
//! holds, for operators and the UI's Storage card.
//!
//! Embedded: the figures the TSDB and the span store already keep (the same ones `/metrics`
//! and `/api/v1/status/tsdb` show), read, not recomputed. ClickHouse: the address (never its
//! password), the schema version recorded in the database and each shard's rows and bytes
//! from ClickHouse's `system` tables; a ClickHouse that cannot answer is a 503 naming why.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use meshlens_clickhouse::{ClickHouseStorage, ShardStatus};
use meshlens_spanstore::SpanStore;
use meshlens_tsdb::Tsdb;
use serde_json::{json, Value};

/// Where one set of routes keeps its data.
pub enum StorageSource {
    Embedded {
        tsdb: Arc<Tsdb>,
        spans: Arc<SpanStore>,
    },
    ClickHouse {
        storage: Arc<ClickHouseStorage>,
        /// The tenant's write-ahead buffer in front of ClickHouse (None in a cross-tenant
        /// view: each tenant has its own).
        buffer: Option<Arc<crate::durable::ClickHouseBuffer>>,
    },
    /// A read across tenants, or of a tenant that has not written yet: no store of its own
    /// to report on, only the backend every tenant uses.
    NoStore { backend: &'static str },
}

impl StorageSource {
    /// The backend's name as the API reports it.
    pub fn backend(&self) -> &'static str {
        match self {
            StorageSource::Embedded { .. } => "embedded",
            StorageSource::ClickHouse { .. } => "clickhouse",
            StorageSource::NoStore { backend } => backend,
        }
    }

    /// The `data` of the answer. Blocking: reads disk figures or asks ClickHouse.
    pub fn report(&self) -> Result<Value, meshlens_clickhouse::ClickHouseError> {
        let mut data = match self {
            StorageSource::Embedded { tsdb, spans } => json!({
                "backend": self.backend(),
                "metrics": embedded_metrics(tsdb),
                "spans": embedded_spans(spans),
            }),
            StorageSource::ClickHouse { storage, .. } => clickhouse(storage)?,
            StorageSource::NoStore { backend } => json!({
                "backend": backend,
                "note": "figures are kept per tenant: ask for one tenant",
            }),
        };
        if let Some(buffer) = self.write_buffer() {
            data["write_buffer"] = buffer;
        }
        Ok(data)
    }

    /// The durable write-ahead buffer in front of ClickHouse: pending records and bytes, the
    /// oldest record's age and the last insert error. None (and no `write_buffer` field)
    /// without one.
    fn write_buffer(&self) -> Option<Value> {
        match self {
            StorageSource::ClickHouse {
                buffer: Some(b), ..
            } => serde_json::to_value(b.stats()).ok(),
            _ => None,
        }
    }
}

/// The TSDB's figures: head, blocks, WAL, and the time span of what it holds (null while
/// empty), from [`Tsdb::stats`], its head cardinality and its block metas.
pub fn embedded_metrics(tsdb: &Tsdb) -> Value {
    let st = tsdb.stats();
    let head = tsdb.head_cardinality(1);
    let metas = tsdb.block_metas();
    let head_range = (head.num_series > 0 && head.min_time <= head.max_time)
        .then_some((head.min_time, head.max_time));
    let oldest = metas
        .iter()
        .map(|m| m.min_time)
        .chain(head_range.map(|r| r.0))
        .min();
    let newest = metas
        .iter()
        .map(|m| m.max_time)
        .chain(head_range.map(|r| r.1))
        .max();
    json!({
        "head_series": st.head_series,
        "head_chunks": st.head_chunks,
        "head_histogram_samples": st.head_histogram_samples,
        "samples_appended": st.samples_appended,
        "blocks": st.blocks,
        "block_bytes": st.block_bytes,
        "wal_bytes_written": st.wal_bytes,
        "oldest_sample_ms": oldest,
        "newest_sample_ms": newest,
        "corruption_count": tsdb.corruption_count(),
    })
}

/// The span store's figures, from [`SpanStore::stats`].
pub fn embedded_spans(spans: &SpanStore) -> Value {
    let st = spans.stats();
    json!({
        "spans": st.spans,
        "traces": st.traces,
        "segments": st.segments,
        "segment_bytes": st.segment_bytes,
        "wal_bytes": st.wal_bytes,
        "bytes_on_disk": st.disk_bytes,
        "head_spans": st.head_spans,
        "corrupt_segments": st.corrupt_segments,
        "retention_dropped_segments": st.retention_dropped_segments,
    })
}

fn shard_json(s: &ShardStatus) -> Value {
    let mut v = json!({
        "shard": s.shard,
        "replica": s.replica,
        "replica_num": s.replica_num,
        "series_rows": s.series_rows,
        "sample_rows": s.sample_rows,
        "span_rows": s.span_rows,
        "bytes_on_disk": s.bytes_on_disk,
    });
    if let Some(e) = &s.error {
        v["error"] = json!(e);
    }
    v
}

fn clickhouse(ch: &ClickHouseStorage) -> Result<Value, meshlens_clickhouse::ClickHouseError> {
    let st = ch.storage_status()?;
    let totals = st.totals();
    Ok(json!({
        "backend": "clickhouse",
        // Display leaves the password out.
        "url": ch.url().to_string(),
        "cluster": ch.url().cluster,
        "schema_version": st.schema_version,
        "shards": st.shards.iter().map(shard_json).collect::<Vec<_>>(),
        "totals": {
            "series_rows": totals.series_rows,
            "sample_rows": totals.sample_rows,
            "span_rows": totals.span_rows,
            "bytes_on_disk": totals.bytes_on_disk,
        },
    }))
}

/// The route, over one tenant's (or one view's) storage.
pub fn router(source: Arc<StorageSource>) -> Router {
    Router::new()
        .route("/api/v1/status/storage", get(status))
        .with_state(source)
}

/// A ClickHouse that cannot answer is 503 `unavailable`, with the reason.
async fn status(State(source): State<Arc<StorageSource>>) -> Response {
    use meshlens_analysis_api::error_envelope;
    match tokio::task::spawn_blocking(move || source.report()).await {
        Ok(Ok(data)) => super::success(data),
        Ok(Err(e)) => error_envelope(503, &format!("reading the storage status: {e}")),
        Err(e) => error_envelope(503, &format!("reading the storage status failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlens_model::{Labels, MetricWriter, Sample, TimeSeries};

    #[test]
    fn embedded_figures_follow_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let tsdb = Arc::new(Tsdb::open(dir.path(), Default::default()).unwrap());
        let spans =
            Arc::new(SpanStore::open(&dir.path().join("spans"), Default::default()).unwrap());
        let src = StorageSource::Embedded {
            tsdb: tsdb.clone(),
            spans,
        };
        let v = src.report().unwrap();
        assert_eq!(v["backend"], "embedded");
        assert_eq!(v["metrics"]["head_series"], 0);
        assert!(v["metrics"]["oldest_sample_ms"].is_null(), "{v}");
        assert!(v.get("write_buffer").is_none());
        tsdb.append(&[TimeSeries {
            labels: Labels::from_pairs([("__name__", "up")]),
            samples: vec![Sample::new(1_000, 1.0), Sample::new(2_000, 1.0)],
        }])
        .unwrap();
        let v = src.report().unwrap();
        assert_eq!(v["metrics"]["head_series"], 1);
        assert_eq!(v["metrics"]["oldest_sample_ms"], 1_000);
        assert_eq!(v["metrics"]["newest_sample_ms"], 2_000);
        assert_eq!(v["spans"]["spans"], 0);
    }

    #[test]
    fn a_view_names_only_the_backend() {
        let v = StorageSource::NoStore {
            backend: "clickhouse",
        }
        .report()
        .unwrap();
        assert_eq!(v["backend"], "clickhouse");
        assert!(v.get("shards").is_none());
    }
}
