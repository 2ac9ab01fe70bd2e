//! The fields every HTTP client of the config shares (scrape jobs and Alertmanager sets
//! alike): `static_configs`, `file_sd_configs`, `basic_auth` / `authorization` /
//! `bearer_token(_file)`, `tls_config`. One reading, so both accept and refuse the same.

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

use super::{
    dur, string_list, string_map, Auth, FileSdConfig, Secret, StaticConfig, TlsConfig, TlsVersion,
};

/// A field's path and what is wrong with it.
pub(super) type FieldError = (String, String);

const TLS_KEYS: &[&str] = &[
    "ca_file",
    "cert_file",
    "key_file",
    "server_name",
    "insecure_skip_verify",
    "min_version",
];

pub(super) fn static_configs(m: &Mapping, path: &str) -> Result<Vec<StaticConfig>, FieldError> {
    let mut out = Vec::new();
    let Some(v) = m.get("static_configs") else {
        return Ok(out);
    };
    for (i, sc) in v
        .as_sequence()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let p = format!("{path}.static_configs[{i}]");
        let targets = sc
            .get("targets")
            .map(string_list)
            .transpose()
            .map_err(|e| (p.clone(), e))?
            .unwrap_or_default();
        let labels = sc
            .get("labels")
            .map(string_map)
            .transpose()
            .map_err(|e| (p.clone(), e))?
            .unwrap_or_default();
        out.push(StaticConfig { targets, labels });
    }
    Ok(out)
}

pub(super) fn file_sd_configs(m: &Mapping, path: &str) -> Result<Vec<FileSdConfig>, FieldError> {
    let mut out = Vec::new();
    let Some(v) = m.get("file_sd_configs") else {
        return Ok(out);
    };
    for (i, fc) in v
        .as_sequence()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let p = format!("{path}.file_sd_configs[{i}]");
        let files = fc
            .get("files")
            .map(string_list)
            .transpose()
            .map_err(|e| (p.clone(), e))?
            .unwrap_or_default();
        let refresh_interval = match fc.get("refresh_interval") {
            Some(v) => dur(v, "").map_err(|e| (p.clone(), e))?,
            None => Duration::from_secs(300),
        };
        out.push(FileSdConfig {
            files,
            refresh_interval,
        });
    }
    Ok(out)
}

fn str_field(m: &Mapping, path: &str, f: &str) -> Result<Option<String>, FieldError> {
    match m.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err((format!("{path}.{f}"), "must be a string".into())),
    }
}

/// `basic_auth`, `authorization`, `bearer_token(_file)`: at most one kind.
pub(super) fn auth(m: &Mapping, path: &str) -> Result<Auth, FieldError> {
    let at = |f: &str| format!("{path}.{f}");
    let mut auth = Auth::None;
    if let Some(b) = m.get("basic_auth") {
        let username = b
            .get("username")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let password = match (
            b.get("password").and_then(Value::as_str),
            b.get("password_file").and_then(Value::as_str),
        ) {
            (Some(p), None) => Secret::inline(p),
            (None, Some(f)) => Secret::File(f.into()),
            (None, None) => Secret::inline(""),
            (Some(_), Some(_)) => {
                return Err((
                    at("basic_auth"),
                    "at most one of password and password_file must be configured".into(),
                ))
            }
        };
        auth = Auth::Basic { username, password };
    }
    let bearer = match (
        str_field(m, path, "bearer_token")?,
        str_field(m, path, "bearer_token_file")?,
    ) {
        (Some(t), _) => Some(Secret::inline(t)),
        (None, Some(f)) => Some(Secret::File(f.into())),
        _ => None,
    };
    if let Some(a) = m.get("authorization") {
        let kind = a
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("Bearer")
            .to_string();
        let credentials = match (
            a.get("credentials").and_then(Value::as_str),
            a.get("credentials_file").and_then(Value::as_str),
        ) {
            (Some(c), _) => Secret::inline(c),
            (None, Some(f)) => Secret::File(f.into()),
            (None, None) => Secret::inline(""),
        };
        if auth != Auth::None {
            return Err((
                at("authorization"),
                "at most one of basic_auth and authorization must be configured".into(),
            ));
        }
        auth = Auth::Authorization { kind, credentials };
    } else if let Some(b) = bearer {
        if auth != Auth::None {
            return Err((
                at("bearer_token"),
                "at most one of basic_auth and bearer_token must be configured".into(),
            ));
        }
        auth = Auth::Authorization {
            kind: "Bearer".into(),
            credentials: b,
        };
    }
    Ok(auth)
}

/// `tls_config`; its unsupported keys are warned about.
pub(super) fn tls_config(
    m: &Mapping,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<TlsConfig, FieldError> {
    let Some(t) = m.get("tls_config") else {
        return Ok(TlsConfig::default());
    };
    let at = |k: &str| format!("{path}.tls_config.{k}");
    let t = t
        .as_mapping()
        .ok_or((format!("{path}.tls_config"), "must be a mapping".into()))?;
    for (k, _) in t {
        let k = k.as_str().unwrap_or("?");
        if !TLS_KEYS.contains(&k) {
            warnings.push(format!("{}: not supported by meshlens yet; ignored", at(k)));
        }
    }
    let text = |k: &str| -> Result<Option<String>, FieldError> {
        match t.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err((at(k), "must be a string".into())),
        }
    };
    let file = |k: &str| text(k).map(|v| v.map(PathBuf::from));
    let min_version = match text("min_version")? {
        None => None,
        Some(v) => Some(TlsVersion::parse(&v).ok_or((
            at("min_version"),
            format!("unknown TLS version {v:?}; use TLS10, TLS11, TLS12 or TLS13"),
        ))?),
    };
    let tls = TlsConfig {
        ca_file: file("ca_file")?,
        cert_file: file("cert_file")?,
        key_file: file("key_file")?,
        server_name: text("server_name")?,
        insecure_skip_verify: match t.get("insecure_skip_verify") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err((at("insecure_skip_verify"), "must be true or false".into())),
        },
        min_version,
    };
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        return Err((
            format!("{path}.tls_config"),
            "cert_file and key_file must be configured together".into(),
        ));
    }
    Ok(tls)
}

/// A list of relabel configs under `f`, each checked.
pub(super) fn relabel_list(
    m: &Mapping,
    path: &str,
    f: &str,
) -> Result<Vec<super::relabel::RelabelConfig>, FieldError> {
    match m.get(f) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Sequence(s)) => s
            .iter()
            .enumerate()
            .map(|(i, r)| {
                super::relabel::RelabelConfig::from_yaml(r)
                    .map_err(|e| (format!("{path}.{f}[{i}]"), e))
            })
            .collect(),
        Some(_) => Err((format!("{path}.{f}"), "must be a list".into())),
    }
}
