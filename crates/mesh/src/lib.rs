//! meshlens-mesh (being built).
