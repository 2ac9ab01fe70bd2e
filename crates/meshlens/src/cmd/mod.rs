//! One module per subcommand.

pub mod agent;
pub mod bench;
pub mod ca;
pub mod demo;
pub mod graph;
pub mod import;
pub mod proxy;
pub mod query;
pub mod remediation;
pub mod rollout;
pub mod rules;
pub mod server;
pub mod slo;
pub mod stats;
pub mod traces;
pub mod validate;
pub mod verify;
