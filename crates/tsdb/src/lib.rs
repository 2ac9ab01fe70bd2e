//! meshlens-tsdb (being built).
