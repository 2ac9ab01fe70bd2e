//! meshlens-server (being built).

pub mod trace_api;
