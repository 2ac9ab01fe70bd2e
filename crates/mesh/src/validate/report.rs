//! What a validation run found, in the shapes users read: grouped text for terminals and CI
//! logs, JSON for the HTTP API and scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::codes;

/// How bad a finding is; `Error` makes `meshlens validate` exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// The object a finding is about. Problems of a whole file (it does not parse) have an
/// empty kind and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind.is_empty() {
            f.write_str("(file)")
        } else {
            match self.namespace.as_str() {
                "" => write!(f, "{} {}", self.kind, self.name),
                ns => write!(f, "{} {ns}/{}", self.kind, self.name),
            }
        }
    }
}

/// One problem, with everything needed to find and fix it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Kiali's code (`KIA1101`) where the meaning matches, else a meshlens one (`ML0001`).
    pub code: &'static str,
    pub severity: Severity,
    /// The code's fixed message, then specifics.
    pub message: String,
    pub object: ObjectRef,
    /// YAML path inside the object, e.g. `spec.http[0].route[1].destination.subset`.
    pub path: String,
    pub file: PathBuf,
    /// 1-based line of `path` (the object's first line when the path could not be found).
    pub line: usize,
}

/// A check that could not run on the given files, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotApplicable {
    pub code: &'static str,
    pub reason: String,
}

/// The result of validating a set of files.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Ordered by file, line, then code.
    pub findings: Vec<Finding>,
    /// Config files read.
    pub files: usize,
    /// Objects read (Istio and Kubernetes).
    pub objects: usize,
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
    /// Checks skipped because the files lack what they need (e.g. no Kubernetes manifests).
    pub not_applicable: Vec<NotApplicable>,
}

impl Report {
    /// Sorts findings, drops exact duplicates and counts severities.
    pub(crate) fn finish(&mut self) {
        self.findings.sort_by(|a, b| {
            (&a.file, a.line, a.code, &a.object, &a.path)
                .cmp(&(&b.file, b.line, b.code, &b.object, &b.path))
        });
        self.findings.dedup();
        // A check that ran in part (KIA0203 on ServiceEntry endpoints with the Kubernetes
        // registry unknown) is not "not applicable": listing a code that has findings
        // contradicts the findings.
        let found: std::collections::BTreeSet<&str> =
            self.findings.iter().map(|f| f.code).collect();
        self.not_applicable.retain(|n| !found.contains(n.code));
        self.not_applicable.sort_by_key(|n| n.code);
        self.not_applicable.dedup_by_key(|n| n.code);
        self.errors = self.count(Severity::Error);
        self.warnings = self.count(Severity::Warning);
        self.infos = self.count(Severity::Info);
    }

    fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }

    /// Whether CI should fail.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// Whether some finding has this code.
    pub fn has(&self, code: &str) -> bool {
        self.findings.iter().any(|f| f.code == code)
    }

    /// Findings with this code.
    pub fn with_code<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings.iter().filter(move |f| f.code == code)
    }
}

/// The report as pretty JSON (the `--output json` and HTTP API body).
pub fn to_json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("report serializes")
}

/// The report as text: findings grouped by object, each with its severity, code, path and
/// line, then a one-line summary.
pub fn to_text(report: &Report) -> String {
    let mut groups: BTreeMap<(&PathBuf, &ObjectRef), Vec<&Finding>> = BTreeMap::new();
    let mut order: Vec<(&PathBuf, &ObjectRef)> = Vec::new();
    for f in &report.findings {
        let key = (&f.file, &f.object);
        if !groups.contains_key(&key) {
            order.push(key);
        }
        groups.entry(key).or_default().push(f);
    }
    let mut out = String::new();
    for key in order {
        let fs = &groups[&key];
        let first_line = fs.iter().map(|f| f.line).min().unwrap_or(0);
        let _ = writeln!(out, "{} ({}:{})", key.1, key.0.display(), first_line);
        for f in fs {
            let path = &f.path;
            let _ = writeln!(
                out,
                "  {:<7} {} {path} (line {}): {}",
                f.severity, f.code, f.line, f.message
            );
        }
    }
    for n in &report.not_applicable {
        let _ = writeln!(out, "not applicable: {} ({})", n.code, n.reason);
    }
    let _ = writeln!(
        out,
        "{} files, {} objects: {} errors, {} warnings, {} info",
        report.files, report.objects, report.errors, report.warnings, report.infos
    );
    out
}

/// The fixed message and severity of a code (see [`codes::CODES`]).
pub(crate) fn describe(code: &str) -> (Severity, &'static str) {
    codes::CODES
        .iter()
        .find(|c| c.code == code)
        .map(|c| (c.severity, c.message))
        .unwrap_or((Severity::Error, "unknown check"))
}
