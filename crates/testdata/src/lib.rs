//! meshlens-testdata: deterministic synthetic mesh data — Istio-like traces as Envoy's
//! Zipkin tracer records them — for tests, examples and the `meshlens bench` load
//! generators.
//!
//! Design decision: this is the one home of generated data, so the engines' public APIs
//! carry no benchmark code and every user replays the same traces for the same seed. Only
//! tests, examples and the binary's bench commands depend on it.

pub mod traces;

pub use traces::generate_spans_at;
