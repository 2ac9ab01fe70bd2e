//! Remediation hooks: a `remediations:` file maps alerts and anomalies (by labels) to an
//! action — a webhook POST with the alert, the service's graph neighbourhood and links to its
//! traces, or an edit of the mesh directory (shift traffic away from a version, a fault-abort
//! kill switch, strict outlier detection). Actions can be dry runs, have a cooldown, are
//! recorded as events and kept on disk, and mesh actions can be undone.

pub mod config;
pub mod engine;
pub mod mesh;
pub mod store;

pub use config::{Action, ConfigError, Remediation, RemediationConfig};
pub use engine::{links, Engine, EngineOptions, Neighbourhood, Outcome, UndoError};
pub use store::{ActionRecord, Status, StoreError, Trigger, TriggerKind};
