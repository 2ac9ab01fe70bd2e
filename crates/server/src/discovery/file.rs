//! `file_sd_configs`: JSON or YAML target files, re-read when their modification time
//! changes (or one appears or vanishes) or the refresh interval passes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::TargetGroup;
use crate::config::FileSdConfig;

/// One job's file discovery state.
pub struct FileSd {
    configs: Vec<FileSdConfig>,
    seen: HashMap<PathBuf, SystemTime>,
    last_full_read: Option<Instant>,
    groups: Vec<TargetGroup>,
}

impl FileSd {
    pub fn new(configs: Vec<FileSdConfig>) -> Self {
        FileSd {
            configs,
            seen: HashMap::new(),
            last_full_read: None,
            groups: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.configs.is_empty()
    }

    /// Re-reads the files if any changed (or appeared, or vanished) or the refresh interval
    /// passed; returns the new groups when they differ from the last ones.
    pub fn poll(&mut self) -> Option<Vec<TargetGroup>> {
        let mut files = Vec::new();
        for c in &self.configs {
            for pattern in &c.files {
                files.extend(expand_glob(pattern));
            }
        }
        files.sort();
        files.dedup();
        let mtimes: HashMap<PathBuf, SystemTime> = files
            .iter()
            .filter_map(|f| Some((f.clone(), std::fs::metadata(f).ok()?.modified().ok()?)))
            .collect();
        let refresh = self
            .configs
            .iter()
            .map(|c| c.refresh_interval)
            .min()
            .unwrap_or_default();
        let due = self.last_full_read.is_none_or(|t| t.elapsed() >= refresh);
        if mtimes == self.seen && !due {
            return None;
        }
        self.seen = mtimes;
        self.last_full_read = Some(Instant::now());
        let mut groups = Vec::new();
        for f in &files {
            match read_file(f) {
                Ok(g) => groups.extend(g),
                Err(e) => {
                    tracing::warn!(file = %f.display(), error = %e, "file_sd: cannot read targets file")
                }
            }
        }
        if groups == self.groups {
            return None;
        }
        self.groups = groups.clone();
        Some(groups)
    }
}

fn read_file(path: &Path) -> Result<Vec<TargetGroup>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let value: serde_yaml_ng::Value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| e.to_string())
            .and_then(|v| serde_yaml_ng::to_value(v).map_err(|e| e.to_string()))?
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?
    };
    let list = value
        .as_sequence()
        .ok_or("a targets file must hold a list of groups")?;
    let mut out = Vec::new();
    for (i, g) in list.iter().enumerate() {
        let targets = g
            .get("targets")
            .and_then(|t| t.as_sequence())
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut labels: BTreeMap<String, String> = g
            .get("labels")
            .and_then(|l| l.as_mapping())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        labels.insert("__meta_filepath".into(), path.display().to_string());
        out.push(TargetGroup {
            source: format!("{}:{i}", path.display()),
            targets,
            labels,
        });
    }
    Ok(out)
}

/// Expands `*` and `?` in the last path component (as Prometheus allows).
fn expand_glob(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains(['*', '?']) {
        return vec![path.to_path_buf()];
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| glob_match(name.as_bytes(), n.as_bytes()))
        })
        .map(|e| e.path())
        .collect()
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob_match(&p[1..], s) || (!s.is_empty() && glob_match(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob_match(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob_match(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn globs() {
        assert!(glob_match(b"*.json", b"a.json"));
        assert!(!glob_match(b"*.json", b"a.yml"));
        assert!(glob_match(b"t?.yml", b"t1.yml"));
    }

    #[test]
    fn file_sd_rereads_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.json");
        std::fs::write(&f, r#"[{"targets": ["a:1"], "labels": {"env": "x"}}]"#).unwrap();
        let mut sd = FileSd::new(vec![FileSdConfig {
            files: vec![dir.path().join("*.json").display().to_string()],
            refresh_interval: Duration::from_secs(3600),
        }]);
        let g = sd.poll().unwrap();
        assert_eq!(g[0].targets, vec!["a:1"]);
        assert_eq!(g[0].labels["env"], "x");
        assert!(sd.poll().is_none());
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(dir.path().join("u.json"), r#"[{"targets": ["b:2"]}]"#).unwrap();
        std::fs::write(&f, r#"[{"targets": ["a:1", "c:3"]}]"#).unwrap();
        let g = sd.poll().unwrap();
        let all: Vec<&String> = g.iter().flat_map(|g| &g.targets).collect();
        assert_eq!(all.len(), 3);
    }
}
