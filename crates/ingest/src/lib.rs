//! meshlens-ingest (being built).
