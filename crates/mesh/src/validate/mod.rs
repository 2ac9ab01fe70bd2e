//! Istio config validation, as Kiali does it but from files: for CI (`meshlens validate`,
//! non-zero exit on errors) and for the server's `GET /api/v1/validations`.
//!
//! Inputs are Istio YAML (read by the crate's loader) plus, when given, the Kubernetes
//! Services and workloads and the Istio kinds the loader sets aside (Sidecar,
//! PeerAuthentication …), read as raw YAML in [`input`]. Checks live in one module per
//! family; each finding carries a Kiali code where the meaning matches ([`codes::CODES`]),
//! the object, the YAML path and its file line.
//!
//! Design decision: a check that needs the service registry only runs when Kubernetes
//! manifests are among the inputs, and says so in [`Report::not_applicable`] otherwise;
//! validating Istio YAML alone must not call every in-cluster host missing.

mod authorization;
pub mod codes;
mod destination_rule;
mod gateway;
pub mod input;
pub mod locate;
mod mtls;
mod ports;
pub mod registry;
pub mod report;
mod service_entry;
mod sidecar;
mod virtual_service;

use std::path::{Path, PathBuf};

use crate::resources::{Resource, Source};

use input::{Inputs, RawObject};
use locate::YamlPath;
use registry::Registry;
pub use report::{to_json, to_text, Finding, NotApplicable, ObjectRef, Report, Severity};

/// Settings the files may not state.
#[derive(Debug, Clone)]
pub struct Options {
    /// Istio's root namespace (mesh-wide policies live there).
    pub root_namespace: String,
    /// Whether Istio's auto mTLS is on. `None`: read `enableAutoMtls` from the `istio`
    /// ConfigMap in the root namespace when given, else on (Istio's default).
    pub auto_mtls: Option<bool>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            root_namespace: "istio-system".into(),
            auto_mtls: None,
        }
    }
}

/// Validates files and directories (recursively) with default options.
pub fn validate_paths(paths: &[PathBuf]) -> Report {
    validate_paths_with(paths, &Options::default())
}

/// Validates files and directories.
pub fn validate_paths_with(paths: &[PathBuf], opts: &Options) -> Report {
    validate_inputs(&Inputs::read(paths), opts)
}

/// Validates YAML text labelled as `file` (one stream of documents).
pub fn validate_str(text: &str, file: impl AsRef<Path>) -> Report {
    let mut inp = Inputs::default();
    inp.read_str(text, file.as_ref());
    validate_inputs(&inp, &Options::default())
}

/// Runs every check over what was read.
pub fn validate_inputs(inp: &Inputs, opts: &Options) -> Report {
    let reg = Registry::build(inp);
    let mut cx = Ctx {
        inp,
        reg: &reg,
        opts,
        report: Report {
            files: inp.files,
            objects: inp.object_count(),
            ..Report::default()
        },
    };
    for e in &inp.errors {
        let detail = strip_position(&e.reason);
        cx.push(
            "ML0007",
            None,
            ObjectRef::file(),
            String::new(),
            (e.file.clone(), e.line),
            detail,
        );
    }
    for (src, api, kind, name) in &inp.unknown {
        let detail = format!("{api} {kind} is an Istio kind meshlens does not check");
        let obj = ObjectRef {
            kind: kind.clone(),
            namespace: String::new(),
            name: name.clone(),
        };
        cx.push(
            "ML0008",
            None,
            obj,
            String::new(),
            (src.file.clone(), src.line),
            detail,
        );
    }
    virtual_service::check(&mut cx);
    destination_rule::check(&mut cx);
    gateway::check(&mut cx);
    service_entry::check(&mut cx);
    sidecar::check(&mut cx);
    mtls::check(&mut cx);
    authorization::check(&mut cx);
    ports::check(&mut cx);
    if !reg.known {
        for code in [
            "KIA0004", "KIA0101", "KIA0104", "KIA0106", "KIA0202", "KIA0203", "KIA0302", "KIA1004",
            "KIA1101", "ML0004",
        ] {
            cx.not_applicable(code, "no Kubernetes Service, Deployment or Pod manifests given: the service registry is unknown");
        }
    }
    let mut report = cx.report;
    report.finish();
    report
}

/// A serde message without its ` at line N column M` (relative to the document; the
/// finding's own line is the file's).
fn strip_position(reason: &str) -> String {
    match reason.find(" at line ") {
        Some(i) => {
            let rest = &reason[i + " at line ".len()..];
            let end = rest
                .find(", ")
                .map_or(reason.len(), |j| i + " at line ".len() + j);
            let tail = &reason[end..];
            if rest.contains(" column ") {
                format!("{}{tail}", &reason[..i])
            } else {
                reason.to_string()
            }
        }
        None => reason.to_string(),
    }
}

/// What a check needs, and where findings go.
pub(crate) struct Ctx<'a> {
    pub inp: &'a Inputs,
    pub reg: &'a Registry,
    pub opts: &'a Options,
    report: Report,
}

/// The object a finding is about, and where it starts.
pub(crate) struct Target<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub source: &'a Source,
}

impl<'a, S> From<&'a Resource<S>> for Target<'a> {
    fn from(r: &'a Resource<S>) -> Self {
        Target {
            kind: &r.kind,
            namespace: r.namespace(),
            name: r.name(),
            source: &r.source,
        }
    }
}

impl<'a> From<&'a RawObject> for Target<'a> {
    fn from(r: &'a RawObject) -> Self {
        Target {
            kind: &r.kind,
            namespace: &r.namespace,
            name: &r.name,
            source: &r.source,
        }
    }
}

impl ObjectRef {
    fn file() -> Self {
        ObjectRef {
            kind: String::new(),
            namespace: String::new(),
            name: String::new(),
        }
    }
}

impl Ctx<'_> {
    /// Reports `code` on a path of an object; `detail` follows the code's fixed message.
    pub fn emit<'t>(
        &mut self,
        code: &'static str,
        t: impl Into<Target<'t>>,
        path: YamlPath,
        detail: impl Into<String>,
    ) {
        let severity = report::describe(code).0;
        self.emit_as(code, severity, t, path, detail);
    }

    /// [`Ctx::emit`] with another severity than the code's own, for findings that matter less
    /// in context (as Kiali lowers some of its checks).
    pub fn emit_as<'t>(
        &mut self,
        code: &'static str,
        severity: Severity,
        t: impl Into<Target<'t>>,
        path: YamlPath,
        detail: impl Into<String>,
    ) {
        let t = t.into();
        let line = self.inp.line(t.source, &path);
        let obj = ObjectRef {
            kind: t.kind.to_string(),
            namespace: t.namespace.to_string(),
            name: t.name.to_string(),
        };
        self.push(
            code,
            Some(severity),
            obj,
            path.to_string(),
            (t.source.file.clone(), line),
            detail.into(),
        );
    }

    /// Records a finding at (file, line); `severity` overrides the code's own.
    fn push(
        &mut self,
        code: &'static str,
        severity: Option<Severity>,
        object: ObjectRef,
        path: String,
        (file, line): (PathBuf, usize),
        detail: String,
    ) {
        let (own, msg) = report::describe(code);
        let severity = severity.unwrap_or(own);
        let message = if detail.is_empty() {
            msg.to_string()
        } else {
            format!("{msg}: {detail}")
        };
        self.report.findings.push(Finding {
            code,
            severity,
            message,
            object,
            path,
            file,
            line,
        });
    }

    /// Records that a check could not run.
    pub fn not_applicable(&mut self, code: &'static str, reason: &str) {
        self.report.not_applicable.push(NotApplicable {
            code,
            reason: reason.to_string(),
        });
    }
}
