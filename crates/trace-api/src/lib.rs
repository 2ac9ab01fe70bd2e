//! Trace ingest and the Zipkin v2 / Jaeger query APIs over the span storage traits (being built).
