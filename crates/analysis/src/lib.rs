//! meshlens-analysis (being built).
