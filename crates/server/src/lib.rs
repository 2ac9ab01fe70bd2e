//! meshlens-server (being built).
