//! The `probes:` section: parsed by walking the YAML value ourselves, so that every unknown
//! field and every bad value is reported with its full path (`probes[2].http.tls_config.x`),
//! and validated up front (targets, regexes, headers, CA files) so a bad probe is refused at
//! load time rather than failing silently at every interval.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

use crate::duration::parse_duration;
use crate::target::{parse_host_port, parse_http_target};

/// One entry of `probes:`: a module run against each target on its own timer.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeConfig {
    /// Becomes the `job` label.
    pub name: String,
    pub module: ProbeModule,
    /// HTTP: URLs (`http://` is assumed without a scheme, as blackbox_exporter does);
    /// TCP and TLS: `host:port`. Each becomes an `instance` label as written.
    pub targets: Vec<String>,
    pub interval: Duration,
    /// The whole probe's deadline; always shorter than `interval`.
    pub timeout: Duration,
    /// Extra target labels on every series of this probe.
    pub labels: BTreeMap<String, String>,
}

/// Which prober runs, with its settings.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeModule {
    Http(HttpProbe),
    Tcp(TcpProbe),
    /// A TCP connection and a TLS handshake (blackbox's `tcp` prober with `tls: true`).
    Tls(TlsSettings),
}

/// blackbox_exporter's `http` prober fields that meshlens supports.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpProbe {
    pub method: http::Method,
    /// Sent on every request; `Host` replaces the request's host (and the TLS name).
    pub headers: BTreeMap<String, String>,
    /// Empty means any 2xx.
    pub valid_status_codes: Vec<u16>,
    pub fail_if_body_matches_regexp: Vec<BodyRegex>,
    pub fail_if_body_not_matches_regexp: Vec<BodyRegex>,
    pub fail_if_ssl: bool,
    pub fail_if_not_ssl: bool,
    pub no_follow_redirects: bool,
    pub tls_config: TlsSettings,
}

/// The `tcp` prober: connect, optionally with a TLS handshake.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TcpProbe {
    pub tls: bool,
    pub tls_config: TlsSettings,
}

/// How the peer's certificate is checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub insecure_skip_verify: bool,
    /// Resolved against the config file's directory; only these roots are trusted when set.
    pub ca_file: Option<PathBuf>,
    /// The name to verify (and send as SNI) instead of the target's host.
    pub server_name: Option<String>,
}

/// A body regex, unanchored as in blackbox_exporter; compared by its source text.
#[derive(Clone, Debug)]
pub struct BodyRegex(pub regex::bytes::Regex);

impl PartialEq for BodyRegex {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// Why a probes config was refused; every variant names the file and, past the YAML syntax,
/// the path of the offending field.
#[derive(Debug, thiserror::Error)]
pub enum ProbeConfigError {
    #[error("{file}: {reason}")]
    Yaml { file: String, reason: String },
    #[error("{file}: {path}: unknown field")]
    UnknownField { file: String, path: String },
    #[error("{file}: {path}: {reason}")]
    Invalid {
        file: String,
        path: String,
        reason: String,
    },
}

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A file whose top level is `probes:`.
pub fn parse_probes_file(text: &str, file: &str) -> Result<Vec<ProbeConfig>, ProbeConfigError> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| ProbeConfigError::Yaml {
        file: file.to_string(),
        reason: e.to_string(),
    })?;
    let ctx = Ctx::new(file);
    if doc.is_null() {
        return Ok(Vec::new());
    }
    let top = ctx.mapping(&doc, "", &["probes"])?;
    match top.get("probes") {
        Some(v) => parse_probes(v, file),
        None => Ok(Vec::new()),
    }
}

/// The value of a config's `probes:` key (a sequence; null means none). `file` names the
/// source in errors and anchors relative `ca_file` paths.
pub fn parse_probes(value: &Value, file: &str) -> Result<Vec<ProbeConfig>, ProbeConfigError> {
    let ctx = Ctx::new(file);
    if value.is_null() {
        return Ok(Vec::new());
    }
    let Some(items) = value.as_sequence() else {
        return Err(ctx.invalid("probes", "must be a list"));
    };
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("probes[{i}]");
        let probe = ctx.probe(item, &path)?;
        if !names.insert(probe.name.clone()) {
            return Err(ctx.invalid(
                &format!("{path}.name"),
                format!("duplicate probe name {:?}", probe.name),
            ));
        }
        out.push(probe);
    }
    Ok(out)
}

struct Ctx<'a> {
    file: &'a str,
    base_dir: Option<&'a Path>,
}

impl<'a> Ctx<'a> {
    fn new(file: &'a str) -> Self {
        let base_dir = Path::new(file)
            .parent()
            .filter(|p| !p.as_os_str().is_empty());
        Ctx { file, base_dir }
    }

    fn invalid(&self, path: &str, reason: impl Into<String>) -> ProbeConfigError {
        ProbeConfigError::Invalid {
            file: self.file.to_string(),
            path: path.to_string(),
            reason: reason.into(),
        }
    }

    /// The value as a mapping whose keys are all in `allowed`.
    fn mapping<'v>(
        &self,
        v: &'v Value,
        path: &str,
        allowed: &[&str],
    ) -> Result<&'v Mapping, ProbeConfigError> {
        let shown = if path.is_empty() { "top level" } else { path };
        let m = v
            .as_mapping()
            .ok_or_else(|| self.invalid(shown, "must be a mapping"))?;
        for key in m.keys() {
            let Some(k) = key.as_str() else {
                return Err(self.invalid(shown, "keys must be strings"));
            };
            if !allowed.contains(&k) {
                let field = if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}.{k}")
                };
                return Err(ProbeConfigError::UnknownField {
                    file: self.file.to_string(),
                    path: field,
                });
            }
        }
        Ok(m)
    }

    fn probe(&self, v: &Value, path: &str) -> Result<ProbeConfig, ProbeConfigError> {
        let m = self.mapping(
            v,
            path,
            &[
                "name", "module", "targets", "interval", "timeout", "labels", "http", "tcp", "tls",
            ],
        )?;
        let name = self
            .string(m, path, "name")?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| self.invalid(&format!("{path}.name"), "is required"))?;
        let module_name = self
            .string(m, path, "module")?
            .ok_or_else(|| self.invalid(&format!("{path}.module"), "is required"))?;
        let module = match module_name.as_str() {
            "http" => {
                self.only_for(m, path, &["tcp", "tls"], "http")?;
                ProbeModule::Http(self.http(field(m, "http"), &format!("{path}.http"))?)
            }
            "tcp" => {
                self.only_for(m, path, &["http"], "tcp")?;
                let tls_config = self.tls(field(m, "tls"), &format!("{path}.tls"))?;
                let tcp_path = format!("{path}.tcp");
                let tls = match field(m, "tcp") {
                    Some(t) => {
                        let tm = self.mapping(t, &tcp_path, &["tls"])?;
                        self.boolean(tm, &tcp_path, "tls")?
                    }
                    None => false,
                };
                ProbeModule::Tcp(TcpProbe { tls, tls_config })
            }
            "tls" => {
                self.only_for(m, path, &["http", "tcp"], "tls")?;
                ProbeModule::Tls(self.tls(field(m, "tls"), &format!("{path}.tls"))?)
            }
            other => {
                return Err(self.invalid(
                    &format!("{path}.module"),
                    format!("unknown module {other:?} (want http, tcp or tls)"),
                ))
            }
        };
        let targets = self.strings(m, path, "targets")?;
        if targets.is_empty() {
            return Err(self.invalid(&format!("{path}.targets"), "needs at least one target"));
        }
        for (i, t) in targets.iter().enumerate() {
            let checked = match module {
                ProbeModule::Http(_) => parse_http_target(t).map(|_| ()),
                _ => parse_host_port(t).map(|_| ()),
            };
            checked.map_err(|e| self.invalid(&format!("{path}.targets[{i}]"), e))?;
        }
        let interval = self
            .duration(m, path, "interval")?
            .unwrap_or(DEFAULT_INTERVAL);
        // Without one, the timeout is the default cut to the interval, as Prometheus cuts
        // scrape_timeout to scrape_interval.
        let timeout = self
            .duration(m, path, "timeout")?
            .unwrap_or(DEFAULT_TIMEOUT.min(interval));
        if interval.is_zero() {
            return Err(self.invalid(&format!("{path}.interval"), "must be positive"));
        }
        if timeout.is_zero() || timeout > interval {
            return Err(self.invalid(
                &format!("{path}.timeout"),
                format!("must be positive and at most the interval ({interval:?})"),
            ));
        }
        let labels = self.string_map(m, path, "labels")?;
        for name in labels.keys() {
            let bad = !meshlens_model::labels::is_valid_label_name(name)
                || name.starts_with("__")
                || name == "job"
                || name == "instance";
            if bad {
                return Err(self.invalid(
                    &format!("{path}.labels.{name}"),
                    "not a usable label name (job, instance and __* are set by the probe)",
                ));
            }
        }
        Ok(ProbeConfig {
            name,
            module,
            targets,
            interval,
            timeout,
            labels,
        })
    }

    /// Refuses sections that belong to another module.
    fn only_for(
        &self,
        m: &Mapping,
        path: &str,
        foreign: &[&str],
        module: &str,
    ) -> Result<(), ProbeConfigError> {
        match foreign.iter().find(|k| field(m, k).is_some()) {
            Some(k) => Err(self.invalid(
                &format!("{path}.{k}"),
                format!("not used by module {module}"),
            )),
            None => Ok(()),
        }
    }

    fn http(&self, v: Option<&Value>, path: &str) -> Result<HttpProbe, ProbeConfigError> {
        let empty = Mapping::new();
        let m = match v {
            Some(v) => self.mapping(
                v,
                path,
                &[
                    "method",
                    "headers",
                    "valid_status_codes",
                    "fail_if_body_matches_regexp",
                    "fail_if_body_not_matches_regexp",
                    "fail_if_ssl",
                    "fail_if_not_ssl",
                    "no_follow_redirects",
                    "tls_config",
                ],
            )?,
            None => &empty,
        };
        let method = match self.string(m, path, "method")? {
            Some(s) => http::Method::from_bytes(s.as_bytes())
                .map_err(|_| self.invalid(&format!("{path}.method"), "not an HTTP method"))?,
            None => http::Method::GET,
        };
        let headers = self.string_map(m, path, "headers")?;
        for (k, val) in &headers {
            let ok = http::HeaderName::from_bytes(k.as_bytes()).is_ok()
                && http::HeaderValue::from_str(val).is_ok();
            if !ok {
                return Err(self.invalid(&format!("{path}.headers.{k}"), "not a valid header"));
            }
        }
        let mut valid_status_codes = Vec::new();
        if let Some(list) = field(m, "valid_status_codes") {
            let p = format!("{path}.valid_status_codes");
            let items = list
                .as_sequence()
                .ok_or_else(|| self.invalid(&p, "must be a list of status codes"))?;
            for (i, code) in items.iter().enumerate() {
                let c = code
                    .as_u64()
                    .filter(|c| (100..=599).contains(c))
                    .and_then(|c| u16::try_from(c).ok())
                    .ok_or_else(|| self.invalid(&format!("{p}[{i}]"), "not a status code"))?;
                valid_status_codes.push(c);
            }
        }
        Ok(HttpProbe {
            method,
            headers,
            valid_status_codes,
            fail_if_body_matches_regexp: self.regexes(m, path, "fail_if_body_matches_regexp")?,
            fail_if_body_not_matches_regexp: self.regexes(
                m,
                path,
                "fail_if_body_not_matches_regexp",
            )?,
            fail_if_ssl: self.boolean(m, path, "fail_if_ssl")?,
            fail_if_not_ssl: self.boolean(m, path, "fail_if_not_ssl")?,
            no_follow_redirects: self.boolean(m, path, "no_follow_redirects")?,
            tls_config: self.tls(field(m, "tls_config"), &format!("{path}.tls_config"))?,
        })
    }

    fn tls(&self, v: Option<&Value>, path: &str) -> Result<TlsSettings, ProbeConfigError> {
        let Some(v) = v else {
            return Ok(TlsSettings::default());
        };
        let m = self.mapping(v, path, &["insecure_skip_verify", "ca_file", "server_name"])?;
        let ca_file = match self.string(m, path, "ca_file")? {
            Some(f) => {
                let p = match self.base_dir {
                    Some(dir) if Path::new(&f).is_relative() => dir.join(&f),
                    _ => PathBuf::from(&f),
                };
                crate::tls::read_ca_file(&p)
                    .map_err(|e| self.invalid(&format!("{path}.ca_file"), e.to_string()))?;
                Some(p)
            }
            None => None,
        };
        let server_name = self.string(m, path, "server_name")?;
        if let Some(n) = &server_name {
            crate::tls::server_name(n)
                .map_err(|e| self.invalid(&format!("{path}.server_name"), e.to_string()))?;
        }
        Ok(TlsSettings {
            insecure_skip_verify: self.boolean(m, path, "insecure_skip_verify")?,
            ca_file,
            server_name,
        })
    }

    fn string(
        &self,
        m: &Mapping,
        path: &str,
        key: &str,
    ) -> Result<Option<String>, ProbeConfigError> {
        match field(m, key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.invalid(&format!("{path}.{key}"), "must be a string")),
        }
    }

    fn boolean(&self, m: &Mapping, path: &str, key: &str) -> Result<bool, ProbeConfigError> {
        match field(m, key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.invalid(&format!("{path}.{key}"), "must be true or false")),
        }
    }

    fn duration(
        &self,
        m: &Mapping,
        path: &str,
        key: &str,
    ) -> Result<Option<Duration>, ProbeConfigError> {
        self.string(m, path, key)?
            .map(|s| parse_duration(&s).map_err(|e| self.invalid(&format!("{path}.{key}"), e)))
            .transpose()
    }

    fn strings(&self, m: &Mapping, path: &str, key: &str) -> Result<Vec<String>, ProbeConfigError> {
        let Some(v) = field(m, key) else {
            return Ok(Vec::new());
        };
        let p = format!("{path}.{key}");
        let items = v
            .as_sequence()
            .ok_or_else(|| self.invalid(&p, "must be a list of strings"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.invalid(&format!("{p}[{i}]"), "must be a string"))
            })
            .collect()
    }

    fn string_map(
        &self,
        m: &Mapping,
        path: &str,
        key: &str,
    ) -> Result<BTreeMap<String, String>, ProbeConfigError> {
        let Some(v) = field(m, key) else {
            return Ok(BTreeMap::new());
        };
        let p = format!("{path}.{key}");
        let map = v
            .as_mapping()
            .ok_or_else(|| self.invalid(&p, "must be a mapping of strings"))?;
        let mut out = BTreeMap::new();
        for (k, val) in map {
            let (Some(k), Some(val)) = (k.as_str(), val.as_str()) else {
                return Err(self.invalid(&p, "keys and values must be strings"));
            };
            out.insert(k.to_string(), val.to_string());
        }
        Ok(out)
    }

    fn regexes(
        &self,
        m: &Mapping,
        path: &str,
        key: &str,
    ) -> Result<Vec<BodyRegex>, ProbeConfigError> {
        let p = format!("{path}.{key}");
        self.strings(m, path, key)?
            .iter()
            .enumerate()
            .map(|(i, s)| {
                regex::bytes::Regex::new(s)
                    .map(BodyRegex)
                    .map_err(|e| self.invalid(&format!("{p}[{i}]"), e.to_string()))
            })
            .collect()
    }
}

/// A key's value, with an explicit YAML null treated as absent.
fn field<'m>(m: &'m Mapping, key: &str) -> Option<&'m Value> {
    m.get(key).filter(|v| !v.is_null())
}
