//! Relabeling with Prometheus's semantics and defaults: separator `;`, regex `(.*)` fully
//! anchored, replacement `$1`, action `replace`.

use md5::{Digest, Md5};
use meshlens_model::{Labels, LabelsBuilder};
use regex::Regex;
use serde_yaml_ng::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

#[derive(Clone, Debug)]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub separator: String,
    pub target_label: String,
    pub regex: Regex,
    pub regex_src: String,
    pub modulus: u64,
    pub replacement: String,
    pub action: Action,
}

impl PartialEq for RelabelConfig {
    fn eq(&self, o: &Self) -> bool {
        self.source_labels == o.source_labels
            && self.separator == o.separator
            && self.target_label == o.target_label
            && self.regex_src == o.regex_src
            && self.modulus == o.modulus
            && self.replacement == o.replacement
            && self.action == o.action
    }
}

impl RelabelConfig {
    pub fn from_yaml(v: &Value) -> Result<Self, String> {
        let m = v.as_mapping().ok_or("a relabel config must be a mapping")?;
        for (k, _) in m {
            let k = k.as_str().unwrap_or("?");
            if ![
                "source_labels",
                "separator",
                "target_label",
                "regex",
                "modulus",
                "replacement",
                "action",
            ]
            .contains(&k)
            {
                return Err(format!("unknown relabel field {k:?}"));
            }
        }
        let s = |k: &str| {
            m.get(k).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        let action = match s("action")
            .unwrap_or_else(|| "replace".into())
            .to_lowercase()
            .as_str()
        {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            other => return Err(format!("unknown relabel action {other:?}")),
        };
        let source_labels = match m.get("source_labels") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(l)) => l
                .iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect(),
            Some(_) => return Err("source_labels must be a list".into()),
        };
        let regex_src = s("regex").unwrap_or_else(|| "(.*)".into());
        let regex = Regex::new(&format!("^(?s:{regex_src})$"))
            .map_err(|e| format!("invalid regex {regex_src:?}: {e}"))?;
        let target_label = s("target_label").unwrap_or_default();
        let modulus = m.get("modulus").and_then(Value::as_u64).unwrap_or(0);
        let needs_target = matches!(
            action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && target_label.is_empty() {
            return Err(format!(
                "relabel configuration for {action:?} action requires 'target_label' value"
            ));
        }
        if action == Action::HashMod && modulus == 0 {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        Ok(RelabelConfig {
            source_labels,
            separator: s("separator").unwrap_or_else(|| ";".into()),
            target_label,
            regex,
            regex_src,
            modulus,
            replacement: s("replacement").unwrap_or_else(|| "$1".into()),
            action,
        })
    }
}

/// Applies configs in order; `None` when the series (or target) is dropped.
pub fn process(labels: &Labels, configs: &[RelabelConfig]) -> Option<Labels> {
    if configs.is_empty() {
        return Some(labels.clone());
    }
    let mut b = labels.builder();
    for c in configs {
        if !apply(&mut b, c) {
            return None;
        }
    }
    Some(b.build())
}

fn apply(b: &mut LabelsBuilder, c: &RelabelConfig) -> bool {
    let val = c
        .source_labels
        .iter()
        .map(|n| b.get(n).unwrap_or(""))
        .collect::<Vec<_>>()
        .join(&c.separator);
    match c.action {
        Action::Drop => return !c.regex.is_match(&val),
        Action::Keep => return c.regex.is_match(&val),
        Action::KeepEqual => return b.get(&c.target_label).unwrap_or("") == val,
        Action::DropEqual => return b.get(&c.target_label).unwrap_or("") != val,
        Action::Replace => {
            let Some(caps) = c.regex.captures(&val) else {
                return true;
            };
            let mut target = String::new();
            caps.expand(&c.target_label, &mut target);
            if !meshlens_model::labels::is_valid_label_name(&target) {
                return true;
            }
            let mut res = String::new();
            caps.expand(&c.replacement, &mut res);
            if res.is_empty() {
                b.del(&target);
            } else {
                b.set(target, res);
            }
        }
        Action::Lowercase => {
            b.set(c.target_label.clone(), val.to_lowercase());
        }
        Action::Uppercase => {
            b.set(c.target_label.clone(), val.to_uppercase());
        }
        Action::HashMod => {
            let digest = Md5::digest(val.as_bytes());
            let mut last8 = [0u8; 8];
            last8.copy_from_slice(&digest[8..16]);
            let m = u64::from_be_bytes(last8) % c.modulus;
            b.set(c.target_label.clone(), m.to_string());
        }
        Action::LabelMap => {
            let current = b.build();
            for l in &current {
                if let Some(caps) = c.regex.captures(&l.name) {
                    let mut name = String::new();
                    caps.expand(&c.replacement, &mut name);
                    b.set(name, l.value.clone());
                }
            }
        }
        Action::LabelDrop => {
            b.retain(|l| !c.regex.is_match(&l.name));
        }
        Action::LabelKeep => {
            b.retain(|l| c.regex.is_match(&l.name));
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(y: &str) -> RelabelConfig {
        RelabelConfig::from_yaml(&serde_yaml_ng::from_str(y).unwrap()).unwrap()
    }

    fn l(p: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(p.iter().copied())
    }

    #[test]
    fn replace_with_defaults_and_groups() {
        let c = cfg("{source_labels: [__address__], regex: '(.*):\\d+', target_label: host}");
        let out = process(&l(&[("__address__", "web:8080")]), &[c]).unwrap();
        assert_eq!(out.get("host"), Some("web"));
        let c =
            cfg("{source_labels: [a, b], separator: '-', target_label: c, replacement: 'x-${1}'}");
        let out = process(&l(&[("a", "1"), ("b", "2")]), &[c]).unwrap();
        assert_eq!(out.get("c"), Some("x-1-2"));
        // Empty result deletes the target.
        let c = cfg("{source_labels: [missing], target_label: a}");
        assert_eq!(process(&l(&[("a", "1")]), &[c]).unwrap().get("a"), None);
    }

    #[test]
    fn keep_drop_and_equal() {
        let keep = cfg("{source_labels: [job], regex: 'api|web', action: keep}");
        assert!(process(&l(&[("job", "api")]), std::slice::from_ref(&keep)).is_some());
        assert!(process(&l(&[("job", "apix")]), &[keep]).is_none());
        let drop = cfg("{source_labels: [__name__], regex: 'go_.*', action: drop}");
        assert!(process(&l(&[("__name__", "go_gc")]), &[drop]).is_none());
        let ke = cfg("{source_labels: [a], target_label: b, action: keepequal}");
        assert!(process(&l(&[("a", "1"), ("b", "1")]), std::slice::from_ref(&ke)).is_some());
        assert!(process(&l(&[("a", "1"), ("b", "2")]), &[ke]).is_none());
    }

    #[test]
    fn labelmap_labeldrop_labelkeep() {
        let map = cfg("{regex: '__meta_kubernetes_pod_label_(.+)', action: labelmap}");
        let out = process(&l(&[("__meta_kubernetes_pod_label_app", "x")]), &[map]).unwrap();
        assert_eq!(out.get("app"), Some("x"));
        let drop = cfg("{regex: 'tmp_.*', action: labeldrop}");
        let out = process(&l(&[("tmp_a", "1"), ("b", "2")]), &[drop]).unwrap();
        assert_eq!(out.len(), 1);
        let keep = cfg("{regex: 'b|__name__', action: labelkeep}");
        let out = process(&l(&[("tmp_a", "1"), ("b", "2")]), &[keep]).unwrap();
        assert_eq!(out.get("b"), Some("2"));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // md5("foo") = acbd18db4cc2f85cedef654fccc4a4d8; last 8 bytes 0xedef654fccc4a4d8.
        let c = cfg("{source_labels: [a], target_label: shard, modulus: 1000, action: hashmod}");
        let out = process(&l(&[("a", "foo")]), &[c]).unwrap();
        assert_eq!(
            out.get("shard"),
            Some((0xedef_654f_ccc4_a4d8u64 % 1000).to_string().as_str())
        );
    }

    #[test]
    fn invalid_configs_are_errors() {
        assert!(
            RelabelConfig::from_yaml(&serde_yaml_ng::from_str("{action: bogus}").unwrap()).is_err()
        );
        assert!(
            RelabelConfig::from_yaml(&serde_yaml_ng::from_str("{regex: '('}").unwrap()).is_err()
        );
        assert!(RelabelConfig::from_yaml(
            &serde_yaml_ng::from_str("{action: hashmod, target_label: x}").unwrap()
        )
        .is_err());
    }
}
