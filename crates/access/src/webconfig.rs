//! The web configuration file (`--web.config.file`) in Prometheus exporter-toolkit's format:
//! parsed raw with unknown fields refused, then validated into [`WebConfig`]. Files it names
//! (certificates, keys, CAs) are only read when [`crate::ActiveWebConfig`] is built from it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use http::{HeaderName, HeaderValue};
use rustls::crypto::{ring as ring_provider, SupportedKxGroup};
use rustls::SupportedCipherSuite;
use serde::Deserialize;

/// A value that must never appear in logs: Debug and Display print `<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; call sites are the only places it may leave this type.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Yaml {
        file: String,
        source: serde_yaml_ng::Error,
    },
    #[error("{file}: {field}: {msg}")]
    Invalid {
        file: String,
        field: String,
        msg: String,
    },
    #[error("{file}: tls_server_config: {msg}")]
    Tls { file: String, msg: String },
}

/// Where PEM text comes from: a file (relative paths resolved against the config's
/// directory) or inline in the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PemSource {
    File(PathBuf),
    Inline(Secret),
}

/// Go's `tls.ClientAuthType` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub cert: PemSource,
    pub key: PemSource,
    pub client_auth: ClientAuth,
    pub client_ca: Option<PemSource>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// Empty: the provider's defaults.
    pub cipher_suites: Vec<SupportedCipherSuite>,
    pub prefer_server_cipher_suites: bool,
    /// Empty: the provider's defaults.
    pub curve_preferences: Vec<&'static dyn SupportedKxGroup>,
}

/// A parsed and validated web config.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// The file name errors are reported against.
    pub file: String,
    pub tls: Option<TlsSettings>,
    pub http2: bool,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// User name to bcrypt hash.
    pub users: BTreeMap<String, Secret>,
}

impl fmt::Display for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "web config {} (tls: {}, http2: {}, {} header(s), {} user(s))",
            self.file,
            if self.tls.is_some() { "on" } else { "off" },
            self.http2,
            self.headers.len(),
            self.users.len()
        )
    }
}

impl WebConfig {
    /// Every file the config names, so a change to any of them can be noticed.
    pub fn referenced_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(t) = &self.tls {
            for src in [Some(&t.cert), Some(&t.key), t.client_ca.as_ref()]
                .into_iter()
                .flatten()
            {
                if let PemSource::File(p) = src {
                    out.push(p.clone());
                }
            }
        }
        out
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    rate_limit: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    client_ca_file: Option<String>,
    client_auth_type: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// Parses a web config; relative file names are resolved against `base_dir`.
pub fn parse(text: &str, base_dir: &Path) -> Result<WebConfig, WebConfigError> {
    parse_named(text, base_dir, "web config")
}

/// Reads and parses the file at `path`.
pub fn parse_file(path: &Path) -> Result<WebConfig, WebConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
        file: file.clone(),
        source,
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    parse_named(&text, base, &file)
}

pub(crate) fn parse_named(
    text: &str,
    base_dir: &Path,
    file: &str,
) -> Result<WebConfig, WebConfigError> {
    let raw: Option<RawFile> =
        serde_yaml_ng::from_str(text).map_err(|source| WebConfigError::Yaml {
            file: file.to_string(),
            source,
        })?;
    let raw = raw.unwrap_or_default();
    let invalid = |field: &str, msg: String| WebConfigError::Invalid {
        file: file.to_string(),
        field: field.to_string(),
        msg,
    };
    if raw.rate_limit.is_some() {
        return Err(invalid(
            "rate_limit",
            "not supported by meshlens; use the per-tenant --limits flags".into(),
        ));
    }
    let tls = match raw.tls_server_config {
        Some(t) => validate_tls(t, base_dir, &invalid)?,
        None => None,
    };
    let http = raw.http_server_config.unwrap_or_default();
    let mut headers = Vec::new();
    for (name, value) in http.headers.unwrap_or_default() {
        headers.push(validate_header(&name, &value, &invalid)?);
    }
    let mut users = BTreeMap::new();
    for (user, hash) in raw.basic_auth_users.unwrap_or_default() {
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(invalid(
                &format!("basic_auth_users.{user}"),
                "the password is not a bcrypt hash (expected e.g. $2y$10$...)".into(),
            ));
        }
        users.insert(user, Secret(hash));
    }
    Ok(WebConfig {
        file: file.to_string(),
        tls,
        http2: http.http2.unwrap_or(true),
        headers,
        users,
    })
}

const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

fn validate_header(
    name: &str,
    value: &str,
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<(HeaderName, HeaderValue), WebConfigError> {
    let field = format!("http_server_config.headers.{name}");
    if !ALLOWED_HEADERS.contains(&name) {
        return Err(invalid(
            &field,
            format!(
                "header not allowed; allowed are {}",
                ALLOWED_HEADERS.join(", ")
            ),
        ));
    }
    match name {
        "X-Frame-Options"
            if !value.eq_ignore_ascii_case("deny") && !value.eq_ignore_ascii_case("sameorigin") =>
        {
            return Err(invalid(
                &field,
                format!("{value:?} is not one of deny, sameorigin"),
            ));
        }
        "X-Content-Type-Options" if !value.eq_ignore_ascii_case("nosniff") => {
            return Err(invalid(&field, format!("{value:?} is not nosniff")));
        }
        _ => {}
    }
    let v = HeaderValue::from_str(value)
        .map_err(|_| invalid(&field, "value is not a valid header value".into()))?;
    Ok((HeaderName::from_static(lower(name)), v))
}

fn lower(name: &str) -> &'static str {
    match name {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Frame-Options" => "x-frame-options",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

fn pem_source(
    inline: Option<String>,
    file: Option<String>,
    inline_name: &str,
    file_name: &str,
    base_dir: &Path,
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<Option<PemSource>, WebConfigError> {
    let field = format!("tls_server_config.{file_name}");
    match (
        inline.filter(|s| !s.is_empty()),
        file.filter(|s| !s.is_empty()),
    ) {
        (Some(_), Some(_)) => Err(invalid(
            &field,
            format!("{inline_name} and {file_name} are both set; use one"),
        )),
        (Some(text), None) => Ok(Some(PemSource::Inline(Secret(text)))),
        (None, Some(f)) => Ok(Some(PemSource::File(base_dir.join(f)))),
        (None, None) => Ok(None),
    }
}

fn validate_tls(
    t: RawTls,
    base_dir: &Path,
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<Option<TlsSettings>, WebConfigError> {
    let cert = pem_source(t.cert, t.cert_file, "cert", "cert_file", base_dir, invalid)?;
    let key = pem_source(t.key, t.key_file, "key", "key_file", base_dir, invalid)?;
    let client_ca = pem_source(
        t.client_ca,
        t.client_ca_file,
        "client_ca",
        "client_ca_file",
        base_dir,
        invalid,
    )?;
    if t.client_allowed_sans.is_some_and(|v| !v.is_empty()) {
        return Err(invalid(
            "tls_server_config.client_allowed_sans",
            "not supported by meshlens yet".into(),
        ));
    }
    let client_auth = match t.client_auth_type.as_deref().unwrap_or("") {
        "" | "NoClientCert" => ClientAuth::NoClientCert,
        "RequestClientCert" => ClientAuth::RequestClientCert,
        "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
        other => {
            return Err(invalid(
                "tls_server_config.client_auth_type",
                format!("unknown value {other:?}; one of NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"),
            ))
        }
    };
    let (cert, key) = match (cert, key) {
        (Some(c), Some(k)) => (c, k),
        (None, None) => {
            if client_ca.is_some() || client_auth != ClientAuth::NoClientCert {
                return Err(invalid(
                    "tls_server_config.cert_file",
                    "client authentication is configured but cert_file and key_file are missing"
                        .into(),
                ));
            }
            return Ok(None);
        }
        (Some(_), None) => {
            return Err(invalid(
                "tls_server_config.key_file",
                "missing (cert_file is set; both or neither)".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                "tls_server_config.cert_file",
                "missing (key_file is set; both or neither)".into(),
            ))
        }
    };
    if client_auth.verifies() && client_ca.is_none() {
        return Err(invalid(
            "tls_server_config.client_ca_file",
            format!("required when client_auth_type is {client_auth:?}"),
        ));
    }
    if client_ca.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err(invalid(
            "tls_server_config.client_ca_file",
            "set but client_auth_type is NoClientCert; set client_auth_type: RequireAndVerifyClientCert".into(),
        ));
    }
    let min_version = tls_version(
        t.min_version.as_deref(),
        "min_version",
        TlsVersion::Tls12,
        invalid,
    )?;
    let max_version = tls_version(
        t.max_version.as_deref(),
        "max_version",
        TlsVersion::Tls13,
        invalid,
    )?;
    if min_version > max_version {
        return Err(invalid(
            "tls_server_config.min_version",
            "greater than max_version".into(),
        ));
    }
    let mut cipher_suites = Vec::new();
    for name in t.cipher_suites.unwrap_or_default() {
        cipher_suites.push(
            cipher_suite(&name).map_err(|msg| {
                invalid("tls_server_config.cipher_suites", format!("{name}: {msg}"))
            })?,
        );
    }
    let mut curve_preferences = Vec::new();
    for name in t.curve_preferences.unwrap_or_default() {
        curve_preferences.push(curve(&name).map_err(|msg| {
            invalid(
                "tls_server_config.curve_preferences",
                format!("{name}: {msg}"),
            )
        })?);
    }
    Ok(Some(TlsSettings {
        cert,
        key,
        client_auth,
        client_ca,
        min_version,
        max_version,
        cipher_suites,
        prefer_server_cipher_suites: t.prefer_server_cipher_suites.unwrap_or(true),
        curve_preferences,
    }))
}

fn tls_version(
    v: Option<&str>,
    field: &str,
    default: TlsVersion,
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<TlsVersion, WebConfigError> {
    let field = format!("tls_server_config.{field}");
    match v.unwrap_or("") {
        "" => Ok(default),
        "TLS12" => Ok(TlsVersion::Tls12),
        "TLS13" => Ok(TlsVersion::Tls13),
        old @ ("TLS10" | "TLS11") => Err(invalid(
            &field,
            format!("{old} is not supported: rustls supports TLS12 and TLS13 only"),
        )),
        other => Err(invalid(
            &field,
            format!("unknown TLS version {other:?}; one of TLS12, TLS13"),
        )),
    }
}

/// Go's cipher suite names that Go knows but the rustls *ring* provider does not offer
/// (CBC, RC4, 3DES, static RSA key exchange).
const GO_ONLY_SUITES: [&str; 16] = [
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

fn cipher_suite(name: &str) -> Result<SupportedCipherSuite, String> {
    use ring_provider::cipher_suite as cs;
    Ok(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_AES_128_GCM_SHA256" => cs::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => cs::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => cs::TLS13_CHACHA20_POLY1305_SHA256,
        n if GO_ONLY_SUITES.contains(&n) => {
            return Err(
                "not offered by rustls (only ECDHE with AES-GCM or ChaCha20-Poly1305)".into(),
            )
        }
        _ => return Err("unknown cipher suite".into()),
    })
}

fn curve(name: &str) -> Result<&'static dyn SupportedKxGroup, String> {
    use ring_provider::kx_group;
    match name {
        "X25519" => Ok(kx_group::X25519),
        "CurveP256" => Ok(kx_group::SECP256R1),
        "CurveP384" => Ok(kx_group::SECP384R1),
        "CurveP521" | "X25519MLKEM768" => {
            Err("not offered by rustls with ring; use X25519, CurveP256 or CurveP384".into())
        }
        _ => Err("unknown curve; one of X25519, CurveP256, CurveP384".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<WebConfig, WebConfigError> {
        parse(text, Path::new("/etc/meshlens"))
    }

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        let c = p("").unwrap();
        assert!(c.tls.is_none() && c.users.is_empty() && c.http2);
        let c = p("# only a comment\n").unwrap();
        assert!(c.tls.is_none());
    }

    #[test]
    fn full_config_parses_and_resolves_relative_paths() {
        let c = p(r#"
tls_server_config:
  cert_file: server.crt
  key_file: /abs/server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  min_version: TLS13
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  prefer_server_cipher_suites: false
  curve_preferences: [X25519, CurveP256]
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  alice: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG
"#)
        .unwrap();
        let t = c.tls.as_ref().unwrap();
        assert_eq!(t.cert, PemSource::File("/etc/meshlens/server.crt".into()));
        assert_eq!(t.key, PemSource::File("/abs/server.key".into()));
        assert_eq!(t.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(t.min_version, TlsVersion::Tls13);
        assert_eq!(t.cipher_suites.len(), 2);
        assert_eq!(t.curve_preferences.len(), 2);
        assert!(!t.prefer_server_cipher_suites);
        assert!(!c.http2);
        assert_eq!(c.headers.len(), 2);
        assert_eq!(c.users.len(), 1);
        assert_eq!(c.referenced_files().len(), 3);
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = p("tls_server_config:\n  cert_fil: x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cert_fil"), "{e}");
        let e = p("basic_auth: {}\n").unwrap_err().to_string();
        assert!(
            e.contains("basic_auth") && e.starts_with("web config"),
            "{e}"
        );
        let e = p("http_server_config:\n  headers:\n    X-Powered-By: me\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("X-Powered-By"), "{e}");
    }

    #[test]
    fn invalid_values_say_what_is_wrong() {
        let cases = [
            ("tls_server_config:\n  cert_file: a\n", "key_file"),
            ("tls_server_config:\n  key_file: a\n", "cert_file"),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
                "client_ca_file",
            ),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n", "rustls supports TLS12 and TLS13 only"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_FOO]\n", "TLS_FOO"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n", "not offered by rustls"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [CurveP521]\n", "CurveP521"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n", "Sometimes"),
            ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "deny, sameorigin"),
            ("basic_auth_users:\n  bob: plaintext\n", "basic_auth_users.bob"),
            ("rate_limit:\n  interval: 1s\n", "rate_limit"),
        ];
        for (text, want) in cases {
            let e = p(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let c = p("tls_server_config:\n  cert: CERTTEXT\n  key: KEYTEXT\nbasic_auth_users:\n  alice: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG\n").unwrap();
        let shown = format!("{c:?} {c}");
        assert!(!shown.contains("KEYTEXT"), "{shown}");
        assert!(!shown.contains("X0h1g"), "{shown}");
        assert!(shown.contains("<secret>"));
    }
}
