//! meshlens-verify: the closed loop. It judges a canary against its baseline (Kayenta's
//! Mann-Whitney method over per-interval values), steps a rollout by editing the
//! VirtualService weights that `meshlens proxy` follows (Flagger's model), flags anomalies in
//! every service's RED signals (k-nearest-neighbour distance), runs remediation actions, and
//! records all of it as one timeline of events.
//!
//! Design decision: every change to the mesh goes through [`meshedit::MeshDir`], which refuses
//! a change that would add a validation error and keeps the file's previous text, so each
//! change (a rollout step, a remediation, a wizard's edit) can be undone.

pub mod anomaly;
pub mod collect;
pub mod events;
pub mod http;
pub mod judge;
pub mod meshedit;
pub mod remediate;
pub mod rollout;
