//! `alerting:`: the Alertmanagers alerts go to (`alertmanagers`, each found by
//! `static_configs` / `file_sd_configs` and reached with its scheme, path prefix, timeout,
//! credentials and TLS) and the relabeling applied to every alert (`alert_relabel_configs`).
//!
//! A key Prometheus does not know is refused (a typo must not silently disable alerting); a
//! key Prometheus knows but meshlens does not act on is warned about.

use std::time::Duration;

use serde_yaml_ng::Value;

use super::client::{self, FieldError};
use super::relabel::RelabelConfig;
use super::{dur, Auth, FileSdConfig, StaticConfig, TlsConfig};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertingConfig {
    pub alertmanagers: Vec<AlertmanagerConfig>,
    pub alert_relabel_configs: Vec<RelabelConfig>,
}

/// One `alerting.alertmanagers` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertmanagerConfig {
    pub static_configs: Vec<StaticConfig>,
    pub file_sd_configs: Vec<FileSdConfig>,
    /// `http` or `https`.
    pub scheme: String,
    pub path_prefix: String,
    /// Per request to one Alertmanager; 10 s by default.
    pub timeout: Duration,
    /// Always `v2`: the only version accepted.
    pub api_version: String,
    pub auth: Auth,
    pub tls: TlsConfig,
}

const ALERTING_KEYS: &[&str] = &["alertmanagers", "alert_relabel_configs"];

const ALERTMANAGER_KEYS: &[&str] = &[
    "static_configs",
    "file_sd_configs",
    "scheme",
    "path_prefix",
    "timeout",
    "api_version",
    "basic_auth",
    "authorization",
    "bearer_token",
    "bearer_token_file",
    "tls_config",
];

/// Prometheus's other Alertmanager fields (besides every `*_sd_configs`).
const ALERTMANAGER_UNSUPPORTED: &[&str] = &[
    "relabel_configs",
    "oauth2",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "proxy_connect_header",
    "follow_redirects",
    "enable_http2",
    "sigv4",
    "http_headers",
];

pub(super) fn parse(v: &Value, warnings: &mut Vec<String>) -> Result<AlertingConfig, FieldError> {
    let m = v
        .as_mapping()
        .ok_or(("alerting".to_string(), "must be a mapping".to_string()))?;
    refuse_unknown(m, "alerting", ALERTING_KEYS)?;
    let mut alertmanagers = Vec::new();
    match m.get("alertmanagers") {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(list)) => {
            for (i, item) in list.iter().enumerate() {
                let path = format!("alerting.alertmanagers[{i}]");
                let am = item
                    .as_mapping()
                    .ok_or((path.clone(), "must be a mapping".to_string()))?;
                alertmanagers.push(alertmanager(am, &path, warnings)?);
            }
        }
        Some(_) => return Err(("alerting.alertmanagers".into(), "must be a list".into())),
    }
    Ok(AlertingConfig {
        alertmanagers,
        alert_relabel_configs: client::relabel_list(m, "alerting", "alert_relabel_configs")?,
    })
}

fn alertmanager(
    m: &serde_yaml_ng::Mapping,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<AlertmanagerConfig, FieldError> {
    for (k, _) in m {
        let key = k.as_str().unwrap_or("?");
        if ALERTMANAGER_KEYS.contains(&key) {
            continue;
        }
        if ALERTMANAGER_UNSUPPORTED.contains(&key) || key.ends_with("_sd_configs") {
            warnings.push(format!(
                "{path}.{key}: not supported by meshlens yet; ignored"
            ));
        } else {
            return Err((format!("{path}.{key}"), format!("unknown field {key:?}")));
        }
    }
    let at = |f: &str| format!("{path}.{f}");
    let text = |f: &str, default: &str| -> Result<String, FieldError> {
        match m.get(f) {
            None | Some(Value::Null) => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err((at(f), "must be a string".into())),
        }
    };
    let scheme = text("scheme", "http")?;
    if scheme != "http" && scheme != "https" {
        return Err((at("scheme"), format!("unsupported scheme {scheme:?}")));
    }
    let api_version = text("api_version", "v2")?;
    match api_version.as_str() {
        "v2" => {}
        "v1" => {
            return Err((
                at("api_version"),
                "Alertmanager API v1 is not supported (Alertmanager 0.27 removed it); use v2"
                    .into(),
            ))
        }
        other => {
            return Err((
                at("api_version"),
                format!("expected Alertmanager api version to be one of [v2] but got {other:?}"),
            ))
        }
    }
    let timeout = match m.get("timeout") {
        None | Some(Value::Null) => Duration::from_secs(10),
        Some(v) => dur(v, "").map_err(|e| (at("timeout"), e))?,
    };
    Ok(AlertmanagerConfig {
        static_configs: client::static_configs(m, path)?,
        file_sd_configs: client::file_sd_configs(m, path)?,
        scheme,
        path_prefix: text("path_prefix", "")?,
        timeout,
        api_version,
        auth: client::auth(m, path)?,
        tls: client::tls_config(m, path, warnings)?,
    })
}

fn refuse_unknown(
    m: &serde_yaml_ng::Mapping,
    path: &str,
    known: &[&str],
) -> Result<(), FieldError> {
    for (k, _) in m {
        let key = k.as_str().unwrap_or("?");
        if !known.contains(&key) {
            return Err((format!("{path}.{key}"), format!("unknown field {key:?}")));
        }
    }
    Ok(())
}
