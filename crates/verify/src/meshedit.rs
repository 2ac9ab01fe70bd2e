//! Edits to the mesh directory that `meshlens proxy` watches, made safe: an edit is planned
//! (the new text of one file, its diff, and the validation findings it would add), refused if
//! it adds a validation error, written atomically (temporary file, then rename, so a proxy
//! never reads half a file), and returned as a [`Change`] that holds the previous text, so it
//! can be reverted as long as nobody has edited the file since.
//!
//! Only the edited document's text is replaced: the other documents of a multi-document file
//! keep their text, comments and order.

use std::path::{Path, PathBuf};

use meshlens_mesh::validate::{self, input::Inputs, Finding, Severity};
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

/// One Istio (or Kubernetes) object found in the directory.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshObject {
    pub kind: String,
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    /// The file, relative to the directory's root.
    pub file: PathBuf,
    /// Its document's position in the file (0-based).
    pub index: usize,
    /// 1-based line of the document's first line in the file.
    pub line: usize,
    /// The document's text as written.
    pub yaml: String,
    #[serde(skip)]
    pub value: Value,
}

impl MeshObject {
    /// The object's `spec`, or null.
    pub fn spec(&self) -> &Value {
        self.value.get("spec").unwrap_or(&Value::Null)
    }
}

/// A planned edit of one file, not yet written.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Relative to the directory's root.
    pub file: PathBuf,
    /// The file's text now; None: the file does not exist yet.
    pub before: Option<String>,
    pub after: String,
    /// Unified diff of before → after.
    pub diff: String,
    /// Error findings the edit would add (an edit with any is refused by [`MeshDir::apply`]).
    pub added_errors: Vec<Finding>,
    /// Warning findings the edit would add (shown, not refused).
    pub added_warnings: Vec<Finding>,
}

impl Plan {
    pub fn is_valid(&self) -> bool {
        self.added_errors.is_empty()
    }

    pub fn is_noop(&self) -> bool {
        self.before.as_deref() == Some(self.after.as_str())
    }
}

/// A written edit: enough to revert it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Relative to the directory's root.
    pub file: PathBuf,
    /// None: the edit created the file.
    pub before: Option<String>,
    pub after: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no {kind} {namespace}/{name} in {dir}")]
    NotFound {
        kind: String,
        namespace: String,
        name: String,
        dir: PathBuf,
    },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("the edit would make the mesh invalid: {}", summary(.0))]
    Invalid(Vec<Finding>),
    #[error("{0} changed since the edit was planned; plan again")]
    Conflict(PathBuf),
    #[error("{0} is outside the mesh directory")]
    Outside(PathBuf),
}

fn summary(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "{} {} {}/{}: {}",
                f.code, f.object.kind, f.object.namespace, f.object.name, f.message
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The mesh directory.
#[derive(Clone, Debug)]
pub struct MeshDir {
    root: PathBuf,
}

impl MeshDir {
    pub fn new(root: impl Into<PathBuf>) -> MeshDir {
        MeshDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> EditError {
        let path = path.to_path_buf();
        move |source| EditError::Io { path, source }
    }

    fn files(&self) -> Result<Vec<PathBuf>, EditError> {
        if self.root.is_file() {
            return Ok(vec![self.root.clone()]);
        }
        meshlens_mesh::load::config_files(&self.root).map_err(self.io(&self.root))
    }

    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| path.file_name().map(PathBuf::from).unwrap_or_default())
    }

    fn absolute(&self, rel: &Path) -> Result<PathBuf, EditError> {
        let bad = rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)));
        if bad {
            return Err(EditError::Outside(rel.to_path_buf()));
        }
        if self.root.is_file() {
            return Ok(self.root.clone());
        }
        Ok(self.root.join(rel))
    }

    /// Every object with a kind and a name, in file order.
    pub fn objects(&self) -> Result<Vec<MeshObject>, EditError> {
        let mut out = Vec::new();
        for path in self.files()? {
            let text = std::fs::read_to_string(&path).map_err(self.io(&path))?;
            out.extend(objects_in(&text, &self.relative(&path)));
        }
        Ok(out)
    }

    /// The object of this kind, namespace (empty: `default`) and name.
    pub fn find(&self, kind: &str, namespace: &str, name: &str) -> Result<MeshObject, EditError> {
        let ns = if namespace.is_empty() {
            "default"
        } else {
            namespace
        };
        self.objects()?
            .into_iter()
            .find(|o| o.kind == kind && o.namespace == ns && o.name == name)
            .ok_or_else(|| EditError::NotFound {
                kind: kind.into(),
                namespace: ns.into(),
                name: name.into(),
                dir: self.root.clone(),
            })
    }

    /// Plans replacing `obj`'s document with `yaml` (one document).
    pub fn plan_replace(&self, obj: &MeshObject, yaml: &str) -> Result<Plan, EditError> {
        let path = self.absolute(&obj.file)?;
        let before = std::fs::read_to_string(&path).map_err(self.io(&path))?;
        let docs = meshlens_mesh::load::split_documents(&before);
        let doc = docs
            .iter()
            .filter(|d| parses_as_object(d.text))
            .nth(obj.index)
            .filter(|d| d.text == obj.yaml)
            .ok_or_else(|| EditError::Conflict(obj.file.clone()))?;
        let start = doc.text.as_ptr() as usize - before.as_ptr() as usize;
        let end = start + doc.text.len();
        let mut after = String::with_capacity(before.len() + yaml.len());
        after.push_str(&before[..start]);
        after.push_str(yaml.trim_end_matches('\n'));
        after.push('\n');
        after.push_str(&before[end..]);
        self.plan_file(&obj.file, Some(before), after)
    }

    /// Plans writing one object: replacing the object of the same kind, namespace and name
    /// where it is, or, when there is none, adding it as the file `new_file` (relative).
    pub fn plan_upsert(&self, yaml: &str, new_file: &Path) -> Result<Plan, EditError> {
        let parsed = objects_in(yaml, new_file);
        let [obj] = parsed.as_slice() else {
            return Err(EditError::Parse {
                file: new_file.to_path_buf(),
                message: format!(
                    "expected one object with kind and metadata.name, found {}",
                    parsed.len()
                ),
            });
        };
        match self.find(&obj.kind, &obj.namespace, &obj.name) {
            Ok(existing) => self.plan_replace(&existing, yaml),
            Err(EditError::NotFound { .. }) => {
                let path = self.absolute(new_file)?;
                let before = match std::fs::read_to_string(&path) {
                    Ok(t) => Some(t),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(self.io(&path)(e)),
                };
                let mut after = before.clone().unwrap_or_default();
                if !after.is_empty() {
                    if !after.ends_with('\n') {
                        after.push('\n');
                    }
                    after.push_str("---\n");
                }
                after.push_str(yaml.trim_end_matches('\n'));
                after.push('\n');
                self.plan_file(new_file, before, after)
            }
            Err(e) => Err(e),
        }
    }

    /// Plans setting one file's whole text.
    pub fn plan_file(
        &self,
        rel: &Path,
        before: Option<String>,
        after: String,
    ) -> Result<Plan, EditError> {
        let path = self.absolute(rel)?;
        for d in meshlens_mesh::load::split_documents(&after) {
            if let Err(e) = serde_yaml_ng::from_str::<Value>(d.text) {
                return Err(EditError::Parse {
                    file: rel.to_path_buf(),
                    message: e.to_string(),
                });
            }
        }
        let others: Vec<PathBuf> = self.files()?.into_iter().filter(|f| *f != path).collect();
        let findings = |text: Option<&str>| {
            let mut inp = Inputs::read(&others);
            if let Some(t) = text {
                inp.read_str(t, &path);
            }
            validate::validate_inputs(&inp, &validate::Options::default()).findings
        };
        let old = findings(before.as_deref());
        let new = findings(Some(&after));
        let added = |sev: Severity| -> Vec<Finding> {
            new.iter()
                .filter(|f| f.severity == sev)
                .filter(|f| !old.iter().any(|o| same_finding(o, f)))
                .cloned()
                .collect()
        };
        let diff = similar::TextDiff::from_lines(before.as_deref().unwrap_or(""), &after)
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("a/{}", rel.display()),
                &format!("b/{}", rel.display()),
            )
            .to_string();
        Ok(Plan {
            file: rel.to_path_buf(),
            added_errors: added(Severity::Error),
            added_warnings: added(Severity::Warning),
            before,
            after,
            diff,
        })
    }

    /// Writes a plan: refused if it adds errors or the file changed since it was planned.
    pub fn apply(&self, plan: &Plan) -> Result<Change, EditError> {
        if !plan.is_valid() {
            return Err(EditError::Invalid(plan.added_errors.clone()));
        }
        self.write_if(&plan.file, plan.before.as_deref(), &plan.after)?;
        Ok(Change {
            file: plan.file.clone(),
            before: plan.before.clone(),
            after: plan.after.clone(),
        })
    }

    /// Puts back the text a change replaced (a created file is removed), if the file still
    /// holds what the change wrote. Returns the reverting change.
    pub fn revert(&self, change: &Change) -> Result<Change, EditError> {
        let path = self.absolute(&change.file)?;
        match &change.before {
            Some(before) => {
                self.write_if(&change.file, Some(&change.after), before)?;
                Ok(Change {
                    file: change.file.clone(),
                    before: Some(change.after.clone()),
                    after: before.clone(),
                })
            }
            None => {
                let now = std::fs::read_to_string(&path).map_err(self.io(&path))?;
                if now != change.after {
                    return Err(EditError::Conflict(change.file.clone()));
                }
                std::fs::remove_file(&path).map_err(self.io(&path))?;
                Ok(Change {
                    file: change.file.clone(),
                    before: Some(change.after.clone()),
                    after: String::new(),
                })
            }
        }
    }

    fn write_if(&self, rel: &Path, expect: Option<&str>, text: &str) -> Result<(), EditError> {
        let path = self.absolute(rel)?;
        let now = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.io(&path)(e)),
        };
        if now.as_deref() != expect {
            return Err(EditError::Conflict(rel.to_path_buf()));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(self.io(dir))?;
        // Hidden, so the proxy's watcher and the loader never read it half written.
        let tmp = dir.join(format!(
            ".{}.meshlens-tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("mesh")
        ));
        std::fs::write(&tmp, text).map_err(self.io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(self.io(&path))
    }
}

fn same_finding(a: &Finding, b: &Finding) -> bool {
    a.code == b.code && a.object == b.object && a.path == b.path && a.message == b.message
}

fn parses_as_object(text: &str) -> bool {
    serde_yaml_ng::from_str::<Value>(text)
        .ok()
        .is_some_and(|v| object_key(&v).is_some())
}

fn object_key(v: &Value) -> Option<(String, String, String, String)> {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let kind = s(v.get("kind"))?;
    let meta = v.get("metadata")?;
    let name = s(meta.get("name"))?;
    let ns = s(meta.get("namespace")).unwrap_or_else(|| "default".into());
    let api = s(v.get("apiVersion")).unwrap_or_default();
    Some((kind, api, ns, name))
}

/// The objects of one file's text.
fn objects_in(text: &str, rel: &Path) -> Vec<MeshObject> {
    let mut out = Vec::new();
    for d in meshlens_mesh::load::split_documents(text) {
        let Ok(value) = serde_yaml_ng::from_str::<Value>(d.text) else {
            continue;
        };
        let Some((kind, api_version, namespace, name)) = object_key(&value) else {
            continue;
        };
        out.push(MeshObject {
            kind,
            api_version,
            namespace,
            name,
            file: rel.to_path_buf(),
            index: out.len(),
            line: d.first_line,
            yaml: d.text.to_string(),
            value,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESH: &str = "# the rules\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: lb, namespace: default}\nspec:\n  host: lb\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: lb, namespace: default}\nspec:\n  hosts: [lb]\n  http:\n  - route:\n    - {destination: {host: lb, subset: v1}, weight: 90}\n    - {destination: {host: lb, subset: v2}, weight: 10}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: lb, namespace: default}\nspec: {hosts: [lb], location: MESH_INTERNAL, resolution: STATIC, ports: [{number: 80, name: http, protocol: HTTP}], endpoints: [{address: 127.0.0.1, labels: {version: v1}}, {address: 127.0.0.2, labels: {version: v2}}]}\n";

    fn mesh() -> (tempfile::TempDir, MeshDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mesh.yaml"), MESH).unwrap();
        let m = MeshDir::new(dir.path());
        (dir, m)
    }

    fn with_weights(obj: &MeshObject, w1: i64, w2: i64) -> String {
        let mut v = obj.value.clone();
        let route = &mut v["spec"]["http"][0]["route"];
        route[0]["weight"] = Value::from(w1);
        route[1]["weight"] = Value::from(w2);
        serde_yaml_ng::to_string(&v).unwrap()
    }

    #[test]
    fn a_replaced_document_keeps_the_rest_of_the_file_and_reverts() {
        let (dir, m) = mesh();
        let vs = m.find("VirtualService", "", "lb").unwrap();
        assert_eq!(vs.index, 1);
        let plan = m.plan_replace(&vs, &with_weights(&vs, 50, 50)).unwrap();
        assert!(plan.is_valid(), "{:?}", plan.added_errors);
        assert!(plan.diff.contains("+"), "{}", plan.diff);
        let change = m.apply(&plan).unwrap();
        let text = std::fs::read_to_string(dir.path().join("mesh.yaml")).unwrap();
        assert!(text.starts_with("# the rules\n"), "{text}");
        assert!(text.contains("kind: DestinationRule"));
        let vs = m.find("VirtualService", "default", "lb").unwrap();
        assert_eq!(vs.spec()["http"][0]["route"][1]["weight"], Value::from(50));
        m.revert(&change).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("mesh.yaml")).unwrap(),
            MESH
        );
    }

    #[test]
    fn an_edit_that_adds_an_error_is_refused_and_nothing_is_written() {
        let (dir, m) = mesh();
        let vs = m.find("VirtualService", "default", "lb").unwrap();
        // A fault percentage above 100 is an error (ML0005).
        let mut v = vs.value.clone();
        let fault: Value =
            serde_yaml_ng::from_str("{abort: {httpStatus: 503, percentage: {value: 150}}}")
                .unwrap();
        v["spec"]["http"][0]["fault"] = fault;
        let plan = m
            .plan_replace(&vs, &serde_yaml_ng::to_string(&v).unwrap())
            .unwrap();
        assert!(plan.added_errors.iter().all(|f| f.code == "ML0005"));
        assert!(!plan.is_valid());
        assert!(matches!(m.apply(&plan), Err(EditError::Invalid(_))));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("mesh.yaml")).unwrap(),
            MESH
        );
    }

    #[test]
    fn a_stale_plan_is_a_conflict_and_upsert_adds_a_new_file() {
        let (dir, m) = mesh();
        let vs = m.find("VirtualService", "default", "lb").unwrap();
        let plan = m.plan_replace(&vs, &with_weights(&vs, 60, 40)).unwrap();
        std::fs::write(
            dir.path().join("mesh.yaml"),
            MESH.replace("90", "80").replace("10}", "20}"),
        )
        .unwrap();
        assert!(matches!(m.apply(&plan), Err(EditError::Conflict(_))));

        let se = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: default}\nspec: {hosts: [ext.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS}\n";
        let plan = m.plan_upsert(se, Path::new("ext.yaml")).unwrap();
        assert!(plan.before.is_none());
        let change = m.apply(&plan).unwrap();
        assert!(m.find("ServiceEntry", "default", "ext").is_ok());
        m.revert(&change).unwrap();
        assert!(!dir.path().join("ext.yaml").exists());
        assert!(matches!(
            m.plan_upsert(se, Path::new("../x.yaml")),
            Err(EditError::Outside(_))
        ));
    }
}
