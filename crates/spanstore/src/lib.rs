//! meshlens-spanstore (being built).
