//! The Prometheus HTTP API over the metrics storage trait and the PromQL engine (being built).
