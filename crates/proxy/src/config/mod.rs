//! Mesh config for the proxy: compiling the model into a routing table, and keeping it
//! current as the config directory changes.

pub mod cluster;
pub mod compile;
pub mod matches;
pub mod policy;
pub mod reload;
pub mod table;
pub mod tcp;
