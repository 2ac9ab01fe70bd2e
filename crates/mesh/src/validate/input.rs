//! Reading the files to validate: Istio networking kinds through the crate's loader, and the
//! kinds the loader sets aside but validation needs (Kubernetes Service and workloads,
//! Sidecar, PeerAuthentication, the mesh ConfigMap …) as raw YAML here.
//!
//! Files are fed to the loader one document at a time, so that a bad document costs only
//! itself: the loader drops a whole file's objects when any of its documents fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use crate::{ConfigError, Ignored, MeshConfig, Source};

use super::locate::YamlPath;

/// An object of a kind the loader does not model, kept as YAML.
#[derive(Debug, Clone)]
pub struct RawObject {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub value: Value,
    pub source: Source,
}

impl RawObject {
    /// The value at a path of plain keys (`spec.selector.matchLabels`).
    pub fn get(&self, keys: &[&str]) -> Option<&Value> {
        keys.iter().try_fold(&self.value, |v, k| v.get(*k))
    }

    /// A string → string map at a path (labels, selectors); empty when absent.
    pub fn labels(&self, keys: &[&str]) -> Vec<(String, String)> {
        string_map(self.get(keys))
    }
}

/// A string → string mapping as pairs, skipping non-string entries.
pub fn string_map(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => return None,
                    };
                    Some((k.as_str()?.to_string(), v))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Kinds read here rather than by the loader, with their API group (`""` is the core group).
const RAW_KINDS: &[(&str, &str)] = &[
    ("", "Service"),
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"),
    ("", "Pod"),
    ("", "Namespace"),
    ("", "ServiceAccount"),
    ("", "ConfigMap"),
    ("networking.istio.io", "Sidecar"),
    ("security.istio.io", "PeerAuthentication"),
    ("security.istio.io", "RequestAuthentication"),
];

/// The API group of an `apiVersion` (`apps/v1` → `apps`, `v1` → the core group `""`).
fn api_group(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

/// Whether a group is one of Istio's (`networking.istio.io`, `telemetry.istio.io` …): only
/// there is an unvalidated kind worth a warning. Everything else (ServiceAccounts, RBAC,
/// other projects' resources) is ordinary manifest content that Istio validation has no
/// opinion on.
fn is_istio_group(group: &str) -> bool {
    group == "istio.io" || group.ends_with(".istio.io")
}

/// Everything read from the paths.
#[derive(Debug, Default)]
pub struct Inputs {
    pub mesh: MeshConfig,
    pub raw: Vec<RawObject>,
    pub errors: Vec<ConfigError>,
    /// Objects of Istio kinds nobody here reads: (source, apiVersion, kind, name).
    pub unknown: Vec<(Source, String, String, String)>,
    /// Objects of other kinds, skipped silently (ServiceAccount, Role, CRDs of other
    /// projects …).
    pub skipped: usize,
    pub texts: HashMap<PathBuf, String>,
    pub files: usize,
}

impl Inputs {
    /// Reads files and directories (recursively: `*.yaml`, `*.yml`, `*.json`).
    pub fn read(paths: &[PathBuf]) -> Inputs {
        let mut inp = Inputs::default();
        for p in paths {
            match files_under(p) {
                Ok(files) => files.iter().for_each(|f| inp.read_file(f)),
                Err(e) => inp.errors.push(ConfigError {
                    file: p.clone(),
                    line: 0,
                    reason: e.to_string(),
                }),
            }
        }
        inp
    }

    /// Reads YAML text as if it were `file` (for tests and the HTTP API).
    pub fn read_str(&mut self, text: &str, file: &Path) {
        self.files += 1;
        for doc in crate::load::split_documents(text) {
            self.read_document(file, doc.text, doc.first_line);
        }
        self.texts.insert(file.to_path_buf(), text.to_string());
    }

    fn read_file(&mut self, file: &Path) {
        match std::fs::read_to_string(file) {
            Ok(text) => self.read_str(&text, file),
            Err(e) => self.errors.push(ConfigError {
                file: file.to_path_buf(),
                line: 0,
                reason: e.to_string(),
            }),
        }
    }

    fn read_document(&mut self, file: &Path, doc: &str, first_line: usize) {
        let shift = first_line - 1;
        match MeshConfig::parse_str(doc, file) {
            Ok(mut cfg) => {
                shift_sources(&mut cfg, shift);
                let mut ignored = std::mem::take(&mut cfg.ignored);
                // The validations read PeerAuthentications as raw objects.
                ignored.extend(cfg.peer_authentications.drain(..).map(|pa| Ignored {
                    source: pa.source,
                    api_version: pa.api_version,
                    kind: pa.kind,
                    name: pa.metadata.name,
                    note: String::new(),
                }));
                self.mesh.extend(cfg);
                let Ok(value) = serde_yaml_ng::from_str::<Value>(doc) else {
                    return;
                };
                let lists = list_items(&value);
                for ig in ignored {
                    // The loader's item lines are heuristics too; use the item's value here.
                    let item = lists
                        .iter()
                        .find(|(_, v)| header(v) == (&*ig.kind, &*ig.name, &*ig.api_version))
                        .map(|(_, v)| (*v).clone())
                        .unwrap_or_else(|| value.clone());
                    self.add_raw(ig.source, ig.api_version, ig.kind, ig.name, item);
                }
            }
            Err(errs) => self.errors.extend(errs.into_iter().map(|mut e| {
                e.line += shift;
                e
            })),
        }
    }

    fn add_raw(&mut self, mut source: Source, api: String, kind: String, name: String, v: Value) {
        source.line = source.line.max(1);
        let group = api_group(&api);
        if !RAW_KINDS.contains(&(group, kind.as_str())) {
            if is_istio_group(group) {
                self.unknown.push((source, api, kind, name));
            } else {
                self.skipped += 1;
            }
            return;
        }
        let namespace = v
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string();
        self.raw.push(RawObject {
            api_version: api,
            kind,
            name,
            namespace,
            value: v,
            source,
        });
    }

    /// Raw objects of one kind.
    pub fn raw_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a RawObject> + 'a {
        self.raw.iter().filter(move |o| o.kind == kind)
    }

    /// Line of a path inside an object.
    pub fn line(&self, source: &Source, path: &YamlPath) -> usize {
        match self.texts.get(&source.file) {
            Some(t) => super::locate::line_of(t, source.line, path),
            None => source.line,
        }
    }

    /// Number of objects read.
    pub fn object_count(&self) -> usize {
        self.mesh.len() + self.raw.len() + self.unknown.len() + self.skipped
    }
}

/// (kind, name, apiVersion) of a YAML object.
fn header(v: &Value) -> (&str, &str, &str) {
    fn s(v: Option<&Value>) -> &str {
        v.and_then(Value::as_str).unwrap_or("")
    }
    (
        s(v.get("kind")),
        s(v.get("metadata").and_then(|m| m.get("name"))),
        s(v.get("apiVersion")),
    )
}

/// Items of a `kind: List` document (with their index), else nothing.
fn list_items(v: &Value) -> Vec<(usize, &Value)> {
    let is_list = v
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"));
    match v.get("items").and_then(Value::as_sequence) {
        Some(items) if is_list => items.iter().enumerate().collect(),
        _ => Vec::new(),
    }
}

fn shift_sources(cfg: &mut MeshConfig, shift: usize) {
    cfg.virtual_services
        .iter_mut()
        .for_each(|o| o.source.line += shift);
    cfg.destination_rules
        .iter_mut()
        .for_each(|o| o.source.line += shift);
    cfg.gateways.iter_mut().for_each(|o| o.source.line += shift);
    cfg.service_entries
        .iter_mut()
        .for_each(|o| o.source.line += shift);
    cfg.peer_authentications
        .iter_mut()
        .for_each(|o| o.source.line += shift);
    cfg.workload_entries
        .iter_mut()
        .for_each(|o| o.source.line += shift);
    cfg.authorization_policies
        .iter_mut()
        .for_each(|o| o.source.line += shift);
    cfg.ignored.iter_mut().for_each(|o| o.source.line += shift);
}

fn files_under(p: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !p.is_dir() {
        // A missing file is reported by the read.
        return Ok(vec![p.to_path_buf()]);
    }
    crate::load::config_files(p)
}
