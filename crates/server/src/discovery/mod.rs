//! Target discovery: static target lists, file-based discovery (`file_sd_configs`, files
//! re-read when their modification time changes or the refresh interval passes) and DNS
//! discovery (`dns_sd_configs`, names re-resolved every refresh interval).

mod dns;
mod file;

use std::collections::BTreeMap;

use crate::config::ScrapeConfig;

pub use dns::{DnsSd, Nameserver};
pub use file::FileSd;

/// Targets sharing labels, from one source (a static list, a file entry, a DNS record).
#[derive(Clone, Debug, PartialEq)]
pub struct TargetGroup {
    /// Where the group came from (for logs and `__meta_filepath`).
    pub source: String,
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

pub fn static_groups(sc: &ScrapeConfig) -> Vec<TargetGroup> {
    sc.static_configs
        .iter()
        .enumerate()
        .map(|(i, s)| TargetGroup {
            source: format!("static/{i}"),
            targets: s.targets.clone(),
            labels: s.labels.clone(),
        })
        .collect()
}
