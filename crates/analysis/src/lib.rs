//! meshlens-analysis: what meshlens learns from the stored data rather than what it stores.
//!
//! - [`graph`]: the service graph (Kiali's workload / app / versioned app / service graphs)
//!   from Istio's standard metrics through PromQL, from traces (Tempo's client/server
//!   pairing), or both merged; RED figures per edge and Kiali health per node.
//! - [`spanmetrics`]: Tempo's metrics generator (span metrics and service-graph metrics)
//!   run at ingest, writing cumulative counters and histograms into the TSDB.
//! - [`stats`]: OPNFV Clover-style traffic statistics (URLs, services, status codes, user
//!   agents, response times) computed by one scan of the span store, or by the store
//!   itself where it can aggregate where the spans are (ClickHouse's shards).
//! - [`params`]: the query-string form of a graph or statistics request.
//!
//! Design decision: every analysis reads through `MetricReader` / `SpanReader` only, so it
//! runs unchanged over the embedded engines or ClickHouse. The one materialised view is the
//! graph's per-edge aggregates (`graph::aggregates`), fed at ingest and rebuilt from storage,
//! which the PromQL path backs up and must agree with. This crate has no HTTP:
//! `meshlens-analysis-api` serves it.

pub mod graph;
pub mod params;
pub mod spanmetrics;
pub mod stats;

mod fx;
mod quantile;

pub use graph::{
    build_graph, build_graph_with_aggregates, AggregatesOptions, AggregatingWriter, ComputedFrom,
    Edge, EdgeAggregates, Graph, GraphQuery, GraphSource, GraphType, Health, Node, NodeKey,
};
pub use params::ParamError;
pub use spanmetrics::SpanMetrics;
pub use stats::{compute_stats, Stats, StatsQuery};

use meshlens_model::StorageError;
use meshlens_promql::PromqlError;

/// Why an analysis could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// A request parameter is wrong; the HTTP layer answers 400 with this text.
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("query {query:?}: {source}")]
    Promql {
        query: String,
        #[source]
        source: PromqlError,
    },
}

impl AnalysisError {
    /// The HTTP status this error maps to; storage failures keep the status every API
    /// gives them (`StorageError::http_status`).
    pub fn http_status(&self) -> u16 {
        match self {
            AnalysisError::Param(_) => 400,
            AnalysisError::Storage(e) => e.http_status(),
            AnalysisError::Promql { source, .. } => source.http_status(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_invalid_request_is_400() {
        let invalid = || StorageError::InvalidRequest { reason: "x".into() };
        assert_eq!(AnalysisError::Storage(invalid()).http_status(), 400);
        let via_promql = AnalysisError::Promql {
            query: "up".into(),
            source: PromqlError::Storage(invalid()),
        };
        assert_eq!(via_promql.http_status(), 400);
        assert_eq!(
            AnalysisError::Storage(StorageError::Closed).http_status(),
            503
        );
    }
}
