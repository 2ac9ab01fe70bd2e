//! The trace half of the HTTP API: span ingest (Zipkin v2, OTLP/HTTP, OTLP/gRPC) and the
//! query APIs that Zipkin's UI and Grafana's Zipkin and Jaeger data sources call.
//!
//! Design decision: handlers see spans only through the `SpanWriter` / `SpanReader` traits,
//! so the embedded span store and a ClickHouse backend serve the same API.

pub mod body;
mod counters;
mod grpc;
mod ingest;
mod jaeger;
mod otlp_json;
mod params;
mod zipkin_api;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use meshlens_model::{SpanReader, SpanRef, SpanWriter};

pub use counters::TraceCounters;
pub use grpc::{
    handle as otlp_grpc_export, read_unary as read_grpc_unary, serve_otlp_grpc,
    status_only as grpc_status, unary_reply as grpc_unary_reply, unframe as unframe_grpc_message,
    GrpcBody,
};
pub use ingest::otlp_status_response;

/// Called with every batch after it is stored (span metrics, live graphs); spans borrow the
/// request body.
pub type SpanObserver = Arc<dyn Fn(&[SpanRef<'_>]) + Send + Sync>;

pub struct TraceApiState {
    pub writer: Arc<dyn SpanWriter>,
    pub reader: Arc<dyn SpanReader>,
    /// Largest request body accepted as sent (compressed or not); larger is a 413.
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression; larger is a 413.
    pub max_decompressed_bytes: usize,
    pub counters: Arc<TraceCounters>,
    pub observers: Vec<SpanObserver>,
    /// Widest time range one trace search or dependency query scans (ms); wider requests
    /// search the newest part of their range. Set it to the span retention when shorter.
    pub max_search_window_ms: i64,
    /// Most traces one search returns; larger limits are clamped to it.
    pub max_search_limit: usize,
}

impl TraceApiState {
    pub fn new(writer: Arc<dyn SpanWriter>, reader: Arc<dyn SpanReader>) -> TraceApiState {
        TraceApiState {
            writer,
            reader,
            max_body_bytes: 16 << 20,
            max_decompressed_bytes: 64 << 20,
            counters: Arc::new(TraceCounters::default()),
            observers: Vec::new(),
            max_search_window_ms: params::DEFAULT_MAX_SEARCH_WINDOW_MS,
            max_search_limit: params::DEFAULT_MAX_SEARCH_LIMIT,
        }
    }
}

/// Every trace route for the main listener: ingest and both query APIs.
pub fn router(state: Arc<TraceApiState>) -> Router {
    let limit = DefaultBodyLimit::max(state.max_body_bytes);
    Router::new()
        .route(
            "/api/v2/spans",
            post(ingest::zipkin_spans)
                .layer(limit)
                .get(zipkin_api::span_names),
        )
        .route("/api/v2/services", get(zipkin_api::services))
        .route("/api/v2/remoteServices", get(zipkin_api::remote_services))
        .route("/api/v2/traces", get(zipkin_api::traces))
        .route("/api/v2/trace/{id}", get(zipkin_api::trace))
        .route("/api/v2/traceMany", get(zipkin_api::trace_many))
        .route("/api/v2/dependencies", get(zipkin_api::dependencies))
        .route(
            "/api/v2/autocompleteKeys",
            get(zipkin_api::autocomplete_keys),
        )
        .route(
            "/api/v2/autocompleteValues",
            get(zipkin_api::autocomplete_values),
        )
        .route("/api/services", get(jaeger::services))
        .route("/api/operations", get(jaeger::operations))
        .route(
            "/api/services/{service}/operations",
            get(jaeger::service_operations),
        )
        .route("/api/traces", get(jaeger::traces))
        .route("/api/traces/{id}", get(jaeger::trace))
        .route("/api/dependencies", get(jaeger::dependencies))
        .route("/api/v3/services", get(jaeger::v3_services))
        .route("/api/v3/operations", get(jaeger::v3_operations))
        .route("/api/v3/traces", get(jaeger::v3_traces))
        .route("/api/v3/traces/{id}", get(jaeger::v3_trace))
        .merge(otlp_http_router(state.clone()))
        .with_state(state)
}

/// Only OTLP/HTTP's `POST /v1/traces`: what the separate OTLP/HTTP listener (4318) serves.
pub fn otlp_http_router(state: Arc<TraceApiState>) -> Router<Arc<TraceApiState>> {
    let limit = DefaultBodyLimit::max(state.max_body_bytes);
    Router::new().route("/v1/traces", post(ingest::otlp_http).layer(limit))
}

/// The OTLP/HTTP listener's whole app.
pub fn otlp_http_app(state: Arc<TraceApiState>) -> Router {
    otlp_http_router(state.clone()).with_state(state)
}
