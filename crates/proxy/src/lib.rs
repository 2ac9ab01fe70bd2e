//! meshlens-proxy (being built).
