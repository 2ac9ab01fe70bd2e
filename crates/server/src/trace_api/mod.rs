//! The trace half of the HTTP API (being built).
