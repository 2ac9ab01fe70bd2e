//! meshlens-promql (being built).
