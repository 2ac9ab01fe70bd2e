//! The `remediations:` file. Parsed by hand from YAML values rather than with serde derive so
//! every refusal names the file, the remediation's index and name, and the field, and an
//! unknown field (a typo such as `colldown`) is an error rather than silently ignored.
//!
//! ```yaml
//! remediations:
//!   - name: drain-canary
//!     match: {alertname: CanaryErrors, service: http-lb}   # label equality, all must hold
//!     match_re: {severity: "page|critical"}                 # anchored regexes, as =~
//!     action: {type: shift-traffic, away_from: v2}          # service: the alert's `service`
//!     cooldown: 10m                                         # Prometheus duration; default 5m
//!   - name: anomaly-hook
//!     match: {alertname: anomaly, signal: errors}           # anomalies: alertname "anomaly"
//!     action: {type: webhook, url: "https://hooks.example/x", timeout: 5s}
//!     dry_run: true                                         # record what would happen only
//! ```
//!
//! Other actions: `{type: kill-switch, service?, namespace?}` (fault abort, 100 % HTTP 503)
//! and `{type: tighten-outlier, host?, namespace?}` (outlierDetection: consecutive5xxErrors 1,
//! interval 5s, baseEjectionTime 60s, maxEjectionPercent 100).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_yaml_ng::{Mapping, Value};

/// Cooldown when the file names none.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(300);
/// How long a webhook may take when the file names no `timeout`.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The parsed file.
#[derive(Clone, Debug, Default)]
pub struct RemediationConfig {
    pub remediations: Vec<Remediation>,
}

/// One mapping from alerts or anomalies (by labels) to an action.
#[derive(Clone, Debug)]
pub struct Remediation {
    pub name: String,
    /// All must hold.
    pub matchers: Vec<Matcher>,
    pub action: Action,
    pub dry_run: bool,
    pub cooldown: Duration,
}

#[derive(Clone, Debug)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
}

#[derive(Clone, Debug)]
pub enum MatchOp {
    Equal(String),
    /// Anchored, as Prometheus's `=~`.
    Regex(regex::Regex),
}

impl Matcher {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.label).map(String::as_str).unwrap_or("");
        match &self.op {
            MatchOp::Equal(want) => v == want,
            MatchOp::Regex(re) => re.is_match(v),
        }
    }
}

impl Remediation {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// What a remediation does. A `service` (or `host`) left out is taken from the trigger's
/// `service` label, so one remediation can cover every service.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Action {
    Webhook {
        /// Shown by its origin only (see [`crate::http::redact`]).
        #[serde(serialize_with = "redacted")]
        url: String,
        #[serde(skip)]
        timeout: Duration,
    },
    ShiftTraffic {
        #[serde(skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        away_from: String,
    },
    KillSwitch {
        #[serde(skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
    },
    TightenOutlier {
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
    },
}

fn redacted<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::http::redact(url))
}

impl Action {
    pub fn type_name(&self) -> &'static str {
        match self {
            Action::Webhook { .. } => "webhook",
            Action::ShiftTraffic { .. } => "shift-traffic",
            Action::KillSwitch { .. } => "kill-switch",
            Action::TightenOutlier { .. } => "tighten-outlier",
        }
    }

    /// Whether it edits the mesh directory (and so can be undone).
    pub fn is_mesh(&self) -> bool {
        !matches!(self, Action::Webhook { .. })
    }
}

/// A refusal: the file and what is wrong where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// Reads and parses the file.
pub fn load(path: &Path) -> Result<RemediationConfig, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    parse(&text, &file)
}

/// Parses the file's text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<RemediationConfig, ConfigError> {
    let err = |message: String| ConfigError::Invalid {
        file: file.to_string(),
        message,
    };
    let root: Value = serde_yaml_ng::from_str(text).map_err(|e| err(e.to_string()))?;
    let root = match root {
        Value::Null => return Ok(RemediationConfig::default()),
        Value::Mapping(m) => m,
        _ => return Err(err("expected a mapping with `remediations:`".into())),
    };
    check_keys(&root, &["remediations"], "the top level").map_err(err)?;
    let list = match root.get("remediations") {
        None | Some(Value::Null) => return Ok(RemediationConfig::default()),
        Some(Value::Sequence(s)) => s,
        Some(_) => return Err(err("remediations: expected a list".into())),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let r = remediation(item, i).map_err(err)?;
        if out.iter().any(|o: &Remediation| o.name == r.name) {
            return Err(err(format!(
                "remediations[{i}].name: {:?} is used twice; names must be unique",
                r.name
            )));
        }
        out.push(r);
    }
    Ok(RemediationConfig { remediations: out })
}

fn check_keys(m: &Mapping, known: &[&str], at: &str) -> Result<(), String> {
    for k in m.keys() {
        let name = k.as_str().unwrap_or("");
        if !known.contains(&name) {
            return Err(format!(
                "{at}: unknown field {:?} (known: {})",
                yaml_key(k),
                known.join(", ")
            ));
        }
    }
    Ok(())
}

fn yaml_key(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

fn string(m: &Mapping, key: &str, at: &str) -> Result<Option<String>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(format!("{at}.{key}: must not be empty")),
        Some(_) => Err(format!("{at}.{key}: expected a string")),
    }
}

fn remediation(item: &Value, i: usize) -> Result<Remediation, String> {
    let at = format!("remediations[{i}]");
    let Value::Mapping(m) = item else {
        return Err(format!("{at}: expected a mapping"));
    };
    let name = string(m, "name", &at)?.ok_or_else(|| format!("{at}: name is required"))?;
    let at = format!("remediations[{i}] ({name})");
    check_keys(
        m,
        &["name", "match", "match_re", "action", "dry_run", "cooldown"],
        &at,
    )?;
    let mut matchers = Vec::new();
    for (key, regex) in [("match", false), ("match_re", true)] {
        let labels = match m.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::Mapping(l)) => l,
            Some(_) => return Err(format!("{at}.{key}: expected a mapping of label: value")),
        };
        // `match: {labels: {...}}` is accepted as well as `match: {...}`.
        let labels = match (labels.len(), labels.get("labels")) {
            (1, Some(Value::Mapping(inner))) => inner,
            _ => labels,
        };
        for (k, v) in labels {
            let label = yaml_key(k);
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return Err(format!("{at}.{key}.{label}: expected a string")),
            };
            let op = if regex {
                let re = regex::Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("{at}.{key}.{label}: bad regular expression: {e}"))?;
                MatchOp::Regex(re)
            } else {
                MatchOp::Equal(value)
            };
            matchers.push(Matcher { label, op });
        }
    }
    if matchers.is_empty() {
        return Err(format!(
            "{at}: match (or match_re) is required: a remediation matching every alert is refused"
        ));
    }
    let dry_run = match m.get("dry_run") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(format!("{at}.dry_run: expected true or false")),
    };
    let cooldown = match m.get("cooldown") {
        None | Some(Value::Null) => DEFAULT_COOLDOWN,
        Some(Value::String(s)) => meshlens_model::parse_duration(s)
            .map_err(|e| format!("{at}.cooldown: {e} (use a duration such as 5m)"))?,
        Some(_) => return Err(format!("{at}.cooldown: expected a duration such as 5m")),
    };
    let action = match m.get("action") {
        Some(Value::Mapping(a)) => action(a, &format!("{at}.action"))?,
        None | Some(Value::Null) => return Err(format!("{at}: action is required")),
        Some(_) => return Err(format!("{at}.action: expected a mapping with a type")),
    };
    Ok(Remediation {
        name,
        matchers,
        action,
        dry_run,
        cooldown,
    })
}

fn action(a: &Mapping, at: &str) -> Result<Action, String> {
    let ty = string(a, "type", at)?.ok_or_else(|| {
        format!("{at}.type: required (webhook, shift-traffic, kill-switch or tighten-outlier)")
    })?;
    let opt = |k: &str| string(a, k, at);
    Ok(match ty.as_str() {
        "webhook" => {
            check_keys(a, &["type", "url", "timeout"], at)?;
            let url = opt("url")?.ok_or_else(|| format!("{at}.url: required"))?;
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.parse::<http::Uri>().is_err()
            {
                return Err(format!(
                    "{at}.url: {url:?} is not an http:// or https:// URL"
                ));
            }
            let timeout = match opt("timeout")? {
                None => DEFAULT_WEBHOOK_TIMEOUT,
                Some(t) => meshlens_model::parse_duration(&t)
                    .map_err(|e| format!("{at}.timeout: {e}"))?,
            };
            Action::Webhook { url, timeout }
        }
        "shift-traffic" => {
            check_keys(a, &["type", "service", "namespace", "away_from"], at)?;
            Action::ShiftTraffic {
                service: opt("service")?,
                namespace: opt("namespace")?,
                away_from: opt("away_from")?
                    .ok_or_else(|| format!("{at}.away_from: required (the version to drain)"))?,
            }
        }
        "kill-switch" => {
            check_keys(a, &["type", "service", "namespace"], at)?;
            Action::KillSwitch {
                service: opt("service")?,
                namespace: opt("namespace")?,
            }
        }
        "tighten-outlier" => {
            check_keys(a, &["type", "host", "namespace"], at)?;
            Action::TightenOutlier {
                host: opt("host")?,
                namespace: opt("namespace")?,
            }
        }
        other => {
            return Err(format!(
                "{at}.type: unknown action {other:?} (webhook, shift-traffic, kill-switch or tighten-outlier)"
            ))
        }
    })
}
