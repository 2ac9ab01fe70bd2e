//! Reading Istio YAML: files of one or many documents (`---`), `kind: List` wrappers as
//! `kubectl get -o yaml` writes them, and directories of such files.
//!
//! Each document is parsed on its own so that an error's line can be offset to the file's
//! line, and so that one bad document does not hide the errors of the others.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::resources::*;
use crate::security::{AuthorizationPolicy, ISTIO_SECURITY_GROUP, SECURITY_VERSIONS};

/// The API group whose kinds this crate models.
pub const ISTIO_NETWORKING_GROUP: &str = "networking.istio.io";
/// Versions of the group that share one schema for the fields modelled here.
pub const SUPPORTED_VERSIONS: &[&str] = &["v1alpha3", "v1beta1", "v1"];

/// A problem in a config file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}:{line}: {reason}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is the file itself (unreadable).
    pub line: usize,
    pub reason: String,
}

/// An object that was read but not modelled (another kind or API group), kept so that a
/// caller can say what it skipped.
#[derive(Debug, Clone, Serialize)]
pub struct Ignored {
    pub source: Source,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub note: String,
}

/// All Istio networking (and authorization) objects found in some files.
#[derive(Debug, Clone, Default)]
pub struct MeshConfig {
    pub virtual_services: Vec<VirtualService>,
    pub destination_rules: Vec<DestinationRule>,
    pub gateways: Vec<Gateway>,
    pub service_entries: Vec<ServiceEntry>,
    pub workload_entries: Vec<WorkloadEntry>,
    pub authorization_policies: Vec<AuthorizationPolicy>,
    pub peer_authentications: Vec<PeerAuthentication>,
    pub ignored: Vec<Ignored>,
}

impl MeshConfig {
    /// Loads every `*.yaml`, `*.yml` and `*.json` file under `dir` (recursively, in path
    /// order). All errors of all files are returned together.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<MeshConfig, Vec<ConfigError>> {
        let dir = dir.as_ref();
        let files = config_files(dir).map_err(|e| {
            vec![ConfigError {
                file: dir.to_path_buf(),
                line: 0,
                reason: e.to_string(),
            }]
        })?;
        let mut cfg = MeshConfig::default();
        let mut errors = Vec::new();
        for f in files {
            match MeshConfig::load_file(&f) {
                Ok(c) => cfg.extend(c),
                Err(e) => errors.extend(e),
            }
        }
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }

    /// Loads one file.
    pub fn load_file(path: impl AsRef<Path>) -> Result<MeshConfig, Vec<ConfigError>> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError {
                file: path.to_path_buf(),
                line: 0,
                reason: e.to_string(),
            }]
        })?;
        MeshConfig::parse_str(&text, path)
    }

    /// Parses YAML text; `file` is only used to label sources and errors.
    pub fn parse_str(text: &str, file: impl AsRef<Path>) -> Result<MeshConfig, Vec<ConfigError>> {
        let file = file.as_ref();
        let mut cfg = MeshConfig::default();
        let mut errors = Vec::new();
        for doc in split_documents(text) {
            cfg.parse_document(file, &doc, &mut errors);
        }
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }

    /// Appends another config's objects to this one.
    pub fn extend(&mut self, other: MeshConfig) {
        self.virtual_services.extend(other.virtual_services);
        self.destination_rules.extend(other.destination_rules);
        self.gateways.extend(other.gateways);
        self.service_entries.extend(other.service_entries);
        self.workload_entries.extend(other.workload_entries);
        self.authorization_policies
            .extend(other.authorization_policies);
        self.peer_authentications.extend(other.peer_authentications);
        self.ignored.extend(other.ignored);
    }

    /// Number of modelled objects.
    pub fn len(&self) -> usize {
        self.virtual_services.len()
            + self.destination_rules.len()
            + self.gateways.len()
            + self.service_entries.len()
            + self.workload_entries.len()
            + self.authorization_policies.len()
            + self.peer_authentications.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn parse_document(&mut self, file: &Path, doc: &Document<'_>, errors: &mut Vec<ConfigError>) {
        let err = |line: usize, reason: String| ConfigError {
            file: file.to_path_buf(),
            line,
            reason,
        };
        let value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(doc.text) {
            Ok(v) => v,
            Err(e) => {
                errors.push(err(doc.line_of(&e), serde_reason(&e)));
                return;
            }
        };
        if value.is_null() {
            return; // empty document (comments only)
        }
        let Some(map) = value.as_mapping() else {
            errors.push(err(doc.start_line, "a document must be a mapping".into()));
            return;
        };
        let kind = map.get("kind").and_then(|v| v.as_str()).unwrap_or("");
        if kind == "List" || kind.ends_with("List") && map.contains_key("items") {
            let items = map
                .get("items")
                .and_then(|v| v.as_sequence())
                .cloned()
                .unwrap_or_default();
            let lines = list_item_lines(doc);
            for (i, item) in items.into_iter().enumerate() {
                let line = lines.get(i).copied().unwrap_or(doc.start_line);
                let source = Source {
                    file: file.to_path_buf(),
                    line,
                };
                if let Err((_, reason)) = self.add_object(ObjectInput::Value(item), source) {
                    errors.push(err(line, reason));
                }
            }
            return;
        }
        let source = Source {
            file: file.to_path_buf(),
            line: doc.start_line,
        };
        if let Err((line, reason)) = self.add_object(ObjectInput::Text(doc, map), source) {
            errors.push(err(line.unwrap_or(doc.start_line), reason));
        }
    }

    /// Adds one object. An error carries its own line when serde knows it.
    fn add_object(&mut self, input: ObjectInput<'_>, source: Source) -> Result<(), ObjError> {
        let (api_version, kind, name) = input.header();
        let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
        if group == ISTIO_SECURITY_GROUP
            && matches!(kind.as_str(), "AuthorizationPolicy" | "PeerAuthentication")
        {
            if !SECURITY_VERSIONS.contains(&version) {
                return Err((
                    None,
                    format!(
                        "unsupported version {api_version} for {kind} (want {ISTIO_SECURITY_GROUP}/{{{}}})",
                        SECURITY_VERSIONS.join(",")
                    ),
                ));
            }
            if kind == "AuthorizationPolicy" {
                self.authorization_policies.push(input.typed(source)?);
            } else {
                self.peer_authentications.push(input.typed(source)?);
            }
            return Ok(());
        }
        let known_kind = matches!(
            kind.as_str(),
            "VirtualService" | "DestinationRule" | "Gateway" | "ServiceEntry" | "WorkloadEntry"
        );
        if group != ISTIO_NETWORKING_GROUP || !known_kind {
            if kind.is_empty() {
                return Err((None, "missing `kind`".into()));
            }
            self.ignored.push(Ignored {
                source,
                note: format!(
                    "{api_version} {kind} is not an Istio networking kind meshlens models"
                ),
                api_version,
                kind,
                name,
            });
            return Ok(());
        }
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err((
                None,
                format!(
                    "unsupported version {api_version} for {kind} (want {ISTIO_NETWORKING_GROUP}/{{{}}})",
                    SUPPORTED_VERSIONS.join(",")
                ),
            ));
        }
        match kind.as_str() {
            "VirtualService" => self.virtual_services.push(input.typed(source)?),
            "DestinationRule" => self.destination_rules.push(input.typed(source)?),
            "Gateway" => self.gateways.push(input.typed(source)?),
            "ServiceEntry" => self.service_entries.push(input.typed(source)?),
            "WorkloadEntry" => self.workload_entries.push(input.typed(source)?),
            _ => unreachable!("kind checked above"),
        }
        Ok(())
    }
}

/// A reason, and the line when serde located it.
type ObjError = (Option<usize>, String);

enum ObjectInput<'a> {
    Text(&'a Document<'a>, &'a serde_yaml_ng::Mapping),
    Value(serde_yaml_ng::Value),
}

impl ObjectInput<'_> {
    fn header(&self) -> (String, String, String) {
        let get = |m: Option<&serde_yaml_ng::Mapping>, k: &str| {
            m.and_then(|m| m.get(k))
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let map = match self {
            ObjectInput::Text(_, m) => Some(*m),
            ObjectInput::Value(v) => v.as_mapping(),
        };
        let meta = map
            .and_then(|m| m.get("metadata"))
            .and_then(|v| v.as_mapping());
        (get(map, "apiVersion"), get(map, "kind"), get(meta, "name"))
    }

    fn typed<S: DeserializeOwned + Default>(
        &self,
        source: Source,
    ) -> Result<Resource<S>, ObjError> {
        let mut r: Resource<S> = match self {
            ObjectInput::Text(doc, _) => serde_yaml_ng::from_str(doc.text)
                .map_err(|e| (Some(doc.line_of(&e)), serde_reason(&e)))?,
            ObjectInput::Value(v) => {
                serde_yaml_ng::from_value(v.clone()).map_err(|e| (None, e.to_string()))?
            }
        };
        r.source = source;
        Ok(r)
    }
}

/// The YAML parser's message without its "at line N column M" (relative to the document; the
/// error's own line field is the file's).
fn serde_reason(e: &serde_yaml_ng::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) if s[i..].contains(" column ") => s[..i].to_string(),
        _ => s,
    }
}

/// One YAML document of a stream and where it starts in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Document<'a> {
    /// The document's text, without its `---` line.
    pub text: &'a str,
    /// 1-based file line of the document's first line of text.
    pub first_line: usize,
    /// 1-based file line of the first line that is not blank or a comment.
    pub start_line: usize,
}

impl Document<'_> {
    fn line_of(&self, e: &serde_yaml_ng::Error) -> usize {
        match e.location() {
            Some(loc) => self.first_line + loc.line() - 1,
            None => self.start_line,
        }
    }
}

/// Whether a line (without its newline) separates YAML documents: `---` (optionally followed
/// by a space and a comment or tag) or the end marker `...`.
pub fn is_document_marker(line: &str) -> bool {
    let t = line.trim_end();
    t == "---" || t.starts_with("--- ") || t == "..."
}

/// Splits a YAML stream into its documents, dropping empty ones, each with the file line it
/// starts on; parsing them one by one keeps a bad document from hiding the others' errors.
/// The one splitter of the workspace: the loader, validation and line lookup all use it.
pub fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start_byte = 0;
    let mut start_lineno = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if is_document_marker(line) {
            docs.push(make_doc(&text[start_byte..offset], start_lineno));
            start_byte = offset + line.len();
            start_lineno = i + 2;
        }
        offset += line.len();
    }
    docs.push(make_doc(&text[start_byte..], start_lineno));
    docs.retain(|d| !d.text.trim().is_empty());
    docs
}

fn make_doc(text: &str, first_line: usize) -> Document<'_> {
    let skip = text
        .lines()
        .position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .unwrap_or(0);
    Document {
        text,
        first_line,
        start_line: first_line + skip,
    }
}

/// Lines of the items of a `kind: List` document: each `- ` at the indentation of the first
/// item under `items:`. A heuristic over text, because serde values carry no positions.
fn list_item_lines(doc: &Document<'_>) -> Vec<usize> {
    let mut out = Vec::new();
    let mut in_items = false;
    let mut indent: Option<usize> = None;
    for (i, line) in doc.text.lines().enumerate() {
        if !in_items {
            if line.starts_with("items:") {
                in_items = true;
            }
            continue;
        }
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let ind = line.len() - t.len();
        if ind == 0 && !t.starts_with('-') {
            break; // next top-level key
        }
        if t.starts_with("- ") || t == "-" {
            match indent {
                None => {
                    indent = Some(ind);
                    out.push(doc.first_line + i);
                }
                Some(n) if n == ind => out.push(doc.first_line + i),
                _ => {}
            }
        }
    }
    out
}

/// The config files below `dir` (hidden entries skipped), sorted.
pub fn config_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if is_config_file(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a path is one that [`MeshConfig::load_dir`] reads.
pub fn is_config_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

#[cfg(test)]
mod tests {

    #[test]
    fn peer_authentication_is_modelled_with_port_keys_of_either_form() {
        let text = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: shop}\nspec:\n  selector: {matchLabels: {app: cart}}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n    \"9090\": {mode: PERMISSIVE}\n---\napiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {}\n";
        let cfg = MeshConfig::parse_str(text, "pa.yaml").unwrap();
        assert_eq!(cfg.peer_authentications.len(), 2);
        assert!(cfg.ignored.is_empty());
        let pa = &cfg.peer_authentications[0];
        assert_eq!(pa.namespace(), "shop");
        assert_eq!(
            pa.spec.selector.as_ref().unwrap().match_labels["app"],
            "cart"
        );
        assert_eq!(
            pa.spec.mtls.as_ref().unwrap().mode.as_deref(),
            Some("STRICT")
        );
        assert_eq!(
            pa.spec.port_level_mtls[&8080].mode.as_deref(),
            Some("DISABLE")
        );
        assert_eq!(
            pa.spec.port_level_mtls[&9090].mode.as_deref(),
            Some("PERMISSIVE")
        );
        assert!(cfg.peer_authentications[1].spec.mtls.is_none());

        let bad = "apiVersion: security.istio.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: pa}\nspec: {}\n";
        assert!(MeshConfig::parse_str(bad, "pa.yaml").is_err());
        let bad = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa}\nspec:\n  portLevelMtls: {http: {mode: STRICT}}\n";
        assert!(MeshConfig::parse_str(bad, "pa.yaml").is_err());
    }
    use super::*;

    #[test]
    fn split_documents_keeps_file_lines() {
        let text = "# head\n---\na: 1\n--- # second\n\n# note\nb: 2\n...\n---\n\n---\nc: 3";
        let docs = split_documents(text);
        let got: Vec<_> = docs
            .iter()
            .map(|d| (d.text.trim(), d.first_line, d.start_line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("# head", 1, 1),
                ("a: 1", 3, 3),
                ("# note\nb: 2", 5, 7),
                ("c: 3", 12, 12),
            ]
        );
        assert!(is_document_marker("---\r\n"));
        assert!(!is_document_marker("----"));
        assert!(!is_document_marker("  ---"));
    }

    proptest::proptest! {
        /// Every document is a slice of the input starting on the line it claims.
        #[test]
        fn split_documents_first_lines_match(lines in proptest::collection::vec(
            proptest::prop_oneof!["---", "...", "--- x", "", "# c", "a: 1", "  - b"], 0..40)) {
            let text = lines.join("\n");
            for d in split_documents(&text) {
                let offset = d.text.as_ptr() as usize - text.as_ptr() as usize;
                let line = text[..offset].matches('\n').count() + 1;
                proptest::prop_assert_eq!(line, d.first_line);
                proptest::prop_assert!(d.start_line >= d.first_line);
                proptest::prop_assert!(!d.text.trim().is_empty());
            }
        }
    }
}
