//! The scrape configuration: Prometheus's own YAML (`global`, `scrape_configs`).
//!
//! Parsed in two steps, as a raw YAML tree then typed: every field the raw tree has that
//! meshlens does not act on is returned as a warning naming its path, never ignored silently.

pub mod alerting;
mod client;
mod dns_sd;
mod duration;
pub mod relabel;
mod secret;

pub use alerting::{AlertingConfig, AlertmanagerConfig};
pub use dns_sd::{DnsRecordType, DnsSdConfig};
pub use duration::{format_duration, parse_duration};
pub use secret::{redact_url, Secret, SecretString, REDACTED};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use relabel::RelabelConfig;
use serde_yaml_ng::Value;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {reason}")]
    Yaml { file: String, reason: String },
    #[error("{file}: {path}: {reason}")]
    Invalid {
        file: String,
        path: String,
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct GlobalConfig {
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub evaluation_interval: Duration,
    pub external_labels: BTreeMap<String, String>,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: Duration::from_secs(60),
            scrape_timeout: Duration::from_secs(10),
            evaluation_interval: Duration::from_secs(60),
            external_labels: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FileSdConfig {
    pub files: Vec<String>,
    pub refresh_interval: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Auth {
    None,
    Basic { username: String, password: Secret },
    Authorization { kind: String, credentials: Secret },
}

/// `tls_config` of a scrape job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name to verify the certificate against (and send as SNI) instead of the host.
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
    pub min_version: Option<TlsVersion>,
}

/// `tls_config.min_version`. rustls speaks TLS 1.2 and 1.3 only, so `TLS10` and `TLS11`
/// allow the same as `TLS12`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn parse(s: &str) -> Option<TlsVersion> {
        Some(match s {
            "TLS10" => TlsVersion::Tls10,
            "TLS11" => TlsVersion::Tls11,
            "TLS12" => TlsVersion::Tls12,
            "TLS13" => TlsVersion::Tls13,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub metrics_path: String,
    pub scheme: String,
    pub params: BTreeMap<String, Vec<String>>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub static_configs: Vec<StaticConfig>,
    pub file_sd_configs: Vec<FileSdConfig>,
    pub dns_sd_configs: Vec<DnsSdConfig>,
    pub auth: Auth,
    pub tls: TlsConfig,
    pub relabel_configs: Vec<RelabelConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
    pub sample_limit: usize,
    pub histograms: HistogramScrape,
}

/// How a scrape config takes native histograms (Prometheus's scrape-config fields of the
/// same names).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct HistogramScrape {
    /// `scrape_native_histograms`: ask for the protobuf format first and keep native
    /// histograms.
    pub native: bool,
    /// `always_scrape_classic_histograms` (Prometheus 2's `scrape_classic_histograms`): also
    /// keep the classic buckets of histograms that are native.
    pub classic: bool,
    /// `native_histogram_bucket_limit`: resolution is reduced until a histogram has at
    /// most this many buckets; 0 means no limit.
    pub bucket_limit: usize,
    /// `native_histogram_min_bucket_factor`: resolution is reduced until neighbouring
    /// bucket bounds grow by at least this factor; 0 or 1 means no reduction.
    pub min_bucket_factor: f64,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Config {
    pub global: GlobalConfig,
    pub scrape_configs: Vec<ScrapeConfig>,
    /// `rule_files` patterns as written (globs, relative to the config file's directory).
    pub rule_files: Vec<String>,
    pub alerting: AlertingConfig,
    /// `probes:` as raw YAML; the probe crate reads it.
    pub probes: Option<Value>,
    /// The file as loaded with every credential replaced by `<secret>`, for
    /// `/api/v1/status/config`; the raw text is never kept.
    pub redacted_yaml: String,
}

/// Top-level keys meshlens reads; any other is warned about.
const ROOT_KEYS: &[&str] = &[
    "global",
    "scrape_configs",
    "rule_files",
    "alerting",
    "probes",
];
const GLOBAL_KEYS: &[&str] = &[
    "scrape_interval",
    "scrape_timeout",
    "evaluation_interval",
    "external_labels",
];
const SCRAPE_KEYS: &[&str] = &[
    "job_name",
    "scrape_interval",
    "scrape_timeout",
    "metrics_path",
    "scheme",
    "params",
    "honor_labels",
    "honor_timestamps",
    "static_configs",
    "file_sd_configs",
    "dns_sd_configs",
    "basic_auth",
    "authorization",
    "bearer_token",
    "bearer_token_file",
    "relabel_configs",
    "metric_relabel_configs",
    "sample_limit",
    "tls_config",
    "scrape_native_histograms",
    "always_scrape_classic_histograms",
    "scrape_classic_histograms",
    "native_histogram_bucket_limit",
    "native_histogram_min_bucket_factor",
];

/// Parses a config file's text; returns the config and one warning per unsupported field.
pub fn parse(text: &str, file: &str) -> Result<(Config, Vec<String>), ConfigError> {
    let root: Value = if text.trim().is_empty() {
        Value::Mapping(Default::default())
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml {
            file: file.into(),
            reason: e.to_string(),
        })?
    };
    let mut warnings = Vec::new();
    let invalid = |path: &str, reason: String| ConfigError::Invalid {
        file: file.into(),
        path: path.into(),
        reason,
    };
    let root_map = match &root {
        Value::Mapping(m) => m.clone(),
        Value::Null => Default::default(),
        _ => return Err(invalid("", "the config must be a YAML mapping".into())),
    };
    for (k, _) in &root_map {
        let key = k.as_str().unwrap_or("?");
        if !ROOT_KEYS.contains(&key) {
            warnings.push(format!("{key}: not supported by meshlens yet; ignored"));
        }
    }
    let mut global = GlobalConfig::default();
    if let Some(g) = root_map.get("global") {
        let g = g
            .as_mapping()
            .ok_or_else(|| invalid("global", "must be a mapping".into()))?;
        warn_unknown(g, GLOBAL_KEYS, "global", &mut warnings);
        if let Some(v) = g.get("scrape_interval") {
            global.scrape_interval = dur(v, "global.scrape_interval")
                .map_err(|e| invalid("global.scrape_interval", e))?;
        }
        if let Some(v) = g.get("scrape_timeout") {
            global.scrape_timeout =
                dur(v, "global.scrape_timeout").map_err(|e| invalid("global.scrape_timeout", e))?;
        }
        if let Some(v) = g.get("evaluation_interval") {
            global.evaluation_interval =
                dur(v, "").map_err(|e| invalid("global.evaluation_interval", e))?;
        }
        if let Some(v) = g.get("external_labels") {
            global.external_labels =
                string_map(v).map_err(|e| invalid("global.external_labels", e))?;
        }
    }
    let mut scrape_configs = Vec::new();
    if let Some(sc) = root_map.get("scrape_configs") {
        let list = match sc {
            Value::Sequence(s) => s.clone(),
            Value::Null => Vec::new(),
            _ => return Err(invalid("scrape_configs", "must be a list".into())),
        };
        for (i, item) in list.iter().enumerate() {
            let path = format!("scrape_configs[{i}]");
            let m = item
                .as_mapping()
                .ok_or_else(|| invalid(&path, "must be a mapping".into()))?;
            warn_unknown(m, SCRAPE_KEYS, &path, &mut warnings);
            let job =
                scrape_config(m, &global, &path, &mut warnings).map_err(|(p, e)| invalid(&p, e))?;
            if scrape_configs
                .iter()
                .any(|c: &ScrapeConfig| c.job_name == job.job_name)
            {
                return Err(invalid(
                    &path,
                    format!(
                        "found multiple scrape configs with job name {:?}",
                        job.job_name
                    ),
                ));
            }
            scrape_configs.push(job);
        }
    }
    let rule_files = match root_map.get("rule_files") {
        None => Vec::new(),
        Some(v) => string_list(v).map_err(|e| invalid("rule_files", e))?,
    };
    let alerting = match root_map.get("alerting") {
        None | Some(Value::Null) => AlertingConfig::default(),
        Some(v) => alerting::parse(v, &mut warnings).map_err(|(p, e)| invalid(&p, e))?,
    };
    let probes = root_map.get("probes").filter(|v| !v.is_null()).cloned();
    Ok((
        Config {
            global,
            scrape_configs,
            rule_files,
            alerting,
            probes,
            redacted_yaml: redacted_yaml(&root, text.trim().is_empty()),
        },
        warnings,
    ))
}

/// The config as shown by the status API: the parsed tree with its secrets hidden.
fn redacted_yaml(root: &Value, empty: bool) -> String {
    if empty {
        return String::new();
    }
    let mut shown = root.clone();
    secret::redact(&mut shown);
    serde_yaml_ng::to_string(&shown).unwrap_or_default()
}

fn warn_unknown(
    m: &serde_yaml_ng::Mapping,
    known: &[&str],
    path: &str,
    warnings: &mut Vec<String>,
) {
    for (k, _) in m {
        let key = k.as_str().unwrap_or("?");
        if !known.contains(&key) {
            warnings.push(format!(
                "{path}.{key}: not supported by meshlens yet; ignored"
            ));
        }
    }
}

fn dur(v: &Value, _path: &str) -> Result<Duration, String> {
    v.as_str()
        .ok_or_else(|| "must be a duration string".to_string())
        .and_then(parse_duration)
}

fn string_map(v: &Value) -> Result<BTreeMap<String, String>, String> {
    match v {
        Value::Null => Ok(BTreeMap::new()),
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| {
                let k = k.as_str().ok_or("keys must be strings")?.to_string();
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(format!("value of {k:?} must be a string")),
                };
                Ok((k, v))
            })
            .collect(),
        _ => Err("must be a mapping of strings".into()),
    }
}

fn string_list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(s) => s
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "list items must be strings".to_string())
            })
            .collect(),
        _ => Err("must be a list of strings".into()),
    }
}

fn scrape_config(
    m: &serde_yaml_ng::Mapping,
    g: &GlobalConfig,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<ScrapeConfig, (String, String)> {
    let at = |f: &str| format!("{path}.{f}");
    let str_field = |f: &str| -> Result<Option<String>, (String, String)> {
        match m.get(f) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err((at(f), "must be a string".into())),
        }
    };
    let bool_field = |f: &str, default: bool| -> Result<bool, (String, String)> {
        match m.get(f) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err((at(f), "must be true or false".into())),
        }
    };
    let job_name = str_field("job_name")?
        .filter(|s| !s.is_empty())
        .ok_or((at("job_name"), "is required".into()))?;
    let scrape_interval = match m.get("scrape_interval") {
        Some(v) => dur(v, "").map_err(|e| (at("scrape_interval"), e))?,
        None => g.scrape_interval,
    };
    let mut scrape_timeout = match m.get("scrape_timeout") {
        Some(v) => dur(v, "").map_err(|e| (at("scrape_timeout"), e))?,
        None => g.scrape_timeout,
    };
    if m.get("scrape_timeout").is_none() && scrape_timeout > scrape_interval {
        scrape_timeout = scrape_interval;
    }
    if scrape_timeout > scrape_interval {
        return Err((at("scrape_timeout"), format!("scrape timeout greater than scrape interval for scrape config with job name {job_name:?}")));
    }
    let scheme = str_field("scheme")?.unwrap_or_else(|| "http".into());
    if scheme != "http" && scheme != "https" {
        return Err((at("scheme"), format!("unsupported scheme {scheme:?}")));
    }
    let tls = client::tls_config(m, path, warnings)?;
    let mut params = BTreeMap::new();
    if let Some(Value::Mapping(p)) = m.get("params") {
        for (k, v) in p {
            let k = k
                .as_str()
                .ok_or((at("params"), "keys must be strings".into()))?;
            params.insert(
                k.to_string(),
                string_list(v).map_err(|e| (at("params"), e))?,
            );
        }
    }
    let static_configs = client::static_configs(m, path)?;
    let file_sd_configs = client::file_sd_configs(m, path)?;
    let dns_sd_configs = dns_sd::dns_sd_configs(m, path)?;
    let auth = client::auth(m, path)?;
    let sample_limit = match m.get("sample_limit") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as usize,
        _ => 0,
    };
    let number = |key: &str| -> Result<f64, (String, String)> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(0.0),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|v| *v >= 0.0)
                .ok_or_else(|| (at(key), format!("{key} must be a number of at least 0"))),
            Some(_) => Err((at(key), format!("{key} must be a number"))),
        }
    };
    let histograms = HistogramScrape {
        native: bool_field("scrape_native_histograms", false)?,
        classic: bool_field("always_scrape_classic_histograms", false)?
            || bool_field("scrape_classic_histograms", false)?,
        bucket_limit: number("native_histogram_bucket_limit")? as usize,
        min_bucket_factor: number("native_histogram_min_bucket_factor")?,
    };
    Ok(ScrapeConfig {
        histograms,
        scrape_interval,
        scrape_timeout,
        metrics_path: str_field("metrics_path")?.unwrap_or_else(|| "/metrics".into()),
        scheme,
        params,
        honor_labels: bool_field("honor_labels", false)?,
        honor_timestamps: bool_field("honor_timestamps", true)?,
        static_configs,
        file_sd_configs,
        dns_sd_configs,
        auth,
        tls,
        relabel_configs: client::relabel_list(m, path, "relabel_configs")?,
        metric_relabel_configs: client::relabel_list(m, path, "metric_relabel_configs")?,
        sample_limit,
        job_name,
    })
}

#[cfg(test)]
mod tests;
