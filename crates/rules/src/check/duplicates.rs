//! promtool's `duplicate-rules` lint: two rules with the same name and the same own labels
//! would write (or alert on) the same series.

use crate::file::{GroupSpec, RuleSpec};

type Key = (String, Vec<(String, String)>);

fn key(rule: &RuleSpec) -> Key {
    let labels = rule
        .labels()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (rule.name().to_string(), labels)
}

/// The duplicated (name, labels) pairs, each once, sorted.
pub fn find(groups: &[GroupSpec]) -> Vec<Key> {
    let mut keys: Vec<Key> = groups
        .iter()
        .flat_map(|g| g.rules.iter().map(key))
        .collect();
    keys.sort();
    let mut dups: Vec<Key> = Vec::new();
    for pair in keys.windows(2) {
        if pair[0] == pair[1] && dups.last() != Some(&pair[1]) {
            dups.push(pair[1].clone());
        }
    }
    dups
}

/// promtool's message for them (after its `lint error` prefix).
pub fn message(dups: &[Key]) -> String {
    let mut m = format!("lint error {} duplicate rule(s) found.\n", dups.len());
    for (metric, labels) in dups {
        m.push_str(&format!("Metric: {metric}\nLabel(s):\n"));
        for (k, v) in labels {
            m.push_str(&format!("\t{k}: {v}\n"));
        }
    }
    m.push_str("Might cause inconsistency while recording expressions");
    m
}
