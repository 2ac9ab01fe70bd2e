//! `dns_sd_configs` of a scrape job, read as Prometheus reads them: `names`, `type` (SRV by
//! default), `port` (required unless SRV), `refresh_interval` (30s by default). Unlike most of
//! the file, an unknown key here is an error, as in Prometheus: a misspelt `port` would
//! otherwise silently produce targets on the wrong port.

use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

use super::client::FieldError;
use super::{dur, string_list};

const DNS_SD_KEYS: &[&str] = &["names", "type", "port", "refresh_interval"];

/// One `dns_sd_configs` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsSdConfig {
    pub names: Vec<String>,
    pub record_type: DnsRecordType,
    /// The port of A and AAAA targets; 0 (unset) for SRV, whose records carry their own.
    pub port: u16,
    pub refresh_interval: Duration,
}

/// The record types meshlens queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsRecordType {
    Srv,
    A,
    Aaaa,
}

impl DnsRecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            DnsRecordType::Srv => "SRV",
            DnsRecordType::A => "A",
            DnsRecordType::Aaaa => "AAAA",
        }
    }
}

pub(super) fn dns_sd_configs(m: &Mapping, path: &str) -> Result<Vec<DnsSdConfig>, FieldError> {
    let list = match m.get("dns_sd_configs") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Sequence(s)) => s,
        Some(_) => return Err((format!("{path}.dns_sd_configs"), "must be a list".into())),
    };
    list.iter()
        .enumerate()
        .map(|(i, v)| one(v, &format!("{path}.dns_sd_configs[{i}]")))
        .collect()
}

fn one(v: &Value, path: &str) -> Result<DnsSdConfig, FieldError> {
    let at = |k: &str| format!("{path}.{k}");
    let m = v
        .as_mapping()
        .ok_or_else(|| (path.to_string(), "must be a mapping".to_string()))?;
    for (k, _) in m {
        let key = k.as_str().unwrap_or("?");
        if !DNS_SD_KEYS.contains(&key) {
            return Err((at(key), "unknown field in a DNS-SD config".into()));
        }
    }
    let names = match m.get("names") {
        None => Vec::new(),
        Some(v) => string_list(v).map_err(|e| (at("names"), e))?,
    };
    if names.is_empty() {
        return Err((
            at("names"),
            "DNS-SD config must contain at least one SRV record name".into(),
        ));
    }
    if let Some(i) = names.iter().position(|n| n.trim().is_empty()) {
        return Err((format!("{path}.names[{i}]"), "must not be empty".into()));
    }
    let record_type = match m.get("type") {
        None | Some(Value::Null) => DnsRecordType::Srv,
        Some(Value::String(t)) => match t.to_ascii_uppercase().as_str() {
            "SRV" => DnsRecordType::Srv,
            "A" => DnsRecordType::A,
            "AAAA" => DnsRecordType::Aaaa,
            "MX" | "NS" => {
                return Err((
                    at("type"),
                    format!(
                        "DNS-SD records type {t} is not supported by meshlens; use SRV, A or AAAA"
                    ),
                ))
            }
            _ => return Err((at("type"), format!("invalid DNS-SD records type {t}"))),
        },
        Some(_) => return Err((at("type"), "must be a string".into())),
    };
    let port = match m.get("port") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| (at("port"), format!("port {n} out of range 0-65535")))?,
        Some(_) => return Err((at("port"), "must be a number".into())),
    };
    if port == 0 && record_type != DnsRecordType::Srv {
        return Err((
            at("port"),
            "a port is required in DNS-SD configs for all record types except SRV".into(),
        ));
    }
    let refresh_interval = match m.get("refresh_interval") {
        None | Some(Value::Null) => Duration::from_secs(30),
        Some(v) => dur(v, "").map_err(|e| (at("refresh_interval"), e))?,
    };
    if refresh_interval.is_zero() {
        return Err((at("refresh_interval"), "must be greater than 0".into()));
    }
    Ok(DnsSdConfig {
        names,
        record_type,
        port,
        refresh_interval,
    })
}
