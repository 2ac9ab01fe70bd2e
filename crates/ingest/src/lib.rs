//! Protocol codecs, bytes in and model out, with no I/O: the Prometheus exposition formats
//! (text 0.0.4 and OpenMetrics 1.0), remote write 1.0, Zipkin v2 (JSON and proto3) and OTLP
//! traces (protobuf and JSON); and [`created`], the zero samples Prometheus's
//! `created-timestamp-zero-ingestion` writes at a counter's created timestamp.
//!
//! Design decision: every decoder reports where the input is wrong (line, field, byte offset)
//! in a typed error, and never panics on any input; fuzz targets in `fuzz/` hold it to that.

pub mod created;
pub mod exposition;
pub mod otlp;
pub mod remote_write;
pub mod zipkin;
