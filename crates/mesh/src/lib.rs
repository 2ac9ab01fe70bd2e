//! meshlens-mesh: the Istio networking config model.
//!
//! Reads `networking.istio.io` (v1alpha3, v1beta1, v1) VirtualService, DestinationRule,
//! Gateway, ServiceEntry and WorkloadEntry objects, and `security.istio.io` (v1beta1, v1)
//! AuthorizationPolicy ([`security`]), from YAML files as `kubectl get -o yaml`
//! writes them ([`MeshConfig::load_dir`]). Every object keeps its [`Source`] (file and line)
//! so that the proxy's compile errors and later validations can point at it; kinds it does not
//! model are set aside in [`MeshConfig::ignored`] rather than failing the load. Multi-document
//! YAML is split by [`load::split_documents`], the one splitter the workspace uses.
//!
//! Design decision: the model is plain serde data, faithful to Istio's field names, with no
//! proxy semantics in it; the proxy compiles it into its own routing tables.

pub mod duration;
pub mod host;
pub mod load;
pub mod resources;
pub mod security;
pub mod validate;

pub use duration::{parse_duration, IstioDuration};
pub use load::{
    is_config_file, split_documents, ConfigError, Ignored, MeshConfig, ISTIO_NETWORKING_GROUP,
    SUPPORTED_VERSIONS,
};
pub use resources::*;
pub use security::AuthorizationPolicy;
