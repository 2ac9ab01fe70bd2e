//! Credentials in the config: a value type that never prints itself, and the redaction of
//! the YAML shown at `/api/v1/status/config` (every secret field becomes `<secret>`, as
//! Prometheus shows it; `*_file` fields stay paths).

use std::fmt;
use std::path::PathBuf;

use super::Value;

/// What Prometheus prints in place of a secret.
pub const REDACTED: &str = "<secret>";

/// A credential's value. Debug and Display print `<secret>`, so a log line, an error or a
/// `{:?}` of a config struct cannot leak it; [`SecretString::expose`] is the one way out.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    /// The value itself, for the one place that sends it (a request header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A secret given inline or as a file read at each use (so rotation needs no reload).
#[derive(Clone, Debug, PartialEq)]
pub enum Secret {
    Inline(SecretString),
    File(PathBuf),
}

impl Secret {
    pub fn inline(value: impl Into<String>) -> Self {
        Secret::Inline(SecretString::new(value))
    }

    /// The current value; a file's content is trimmed of surrounding whitespace.
    pub fn read(&self) -> std::io::Result<SecretString> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(p) => Ok(SecretString::new(std::fs::read_to_string(p)?.trim())),
        }
    }
}

/// Keys whose value is a credential wherever they appear (scrape jobs, remote_write,
/// alertmanagers, service discovery, oauth2, sigv4, azuread ...).
const SECRET_KEYS: &[&str] = &[
    "password",
    "bearer_token",
    "credentials",
    "client_secret",
    "secret_key",
    "token",
    "auth_token",
    "application_credential_secret",
];

/// Maps whose keys are label names, not config fields: never redacted.
const LABEL_MAPS: &[&str] = &["labels", "external_labels"];

fn is_secret_key(parent: Option<&str>, key: &str) -> bool {
    if key.ends_with("_file") {
        return false;
    }
    SECRET_KEYS.contains(&key)
        || key.ends_with("_password")
        || key.ends_with("_secret")
        || (key == "key" && parent == Some("tls_config"))
}

/// Replaces every credential in a parsed config tree by `<secret>`; empty values stay empty
/// (Prometheus omits them).
pub fn redact(v: &mut Value) {
    redact_under(None, v);
}

fn redact_under(parent: Option<&str>, v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m.iter_mut() {
                let Some(key) = k.as_str() else { continue };
                if LABEL_MAPS.contains(&key) {
                    continue;
                }
                if is_secret_key(parent, key) {
                    hide(child);
                } else if key == "secrets" || parent == Some("proxy_connect_header") {
                    // `http_headers.<name>.secrets` and proxy header values: lists of secrets.
                    hide_all(child);
                } else {
                    redact_under(Some(key), child);
                }
            }
        }
        Value::Sequence(s) => {
            for child in s {
                redact_under(parent, child);
            }
        }
        Value::Tagged(t) => redact_under(parent, &mut t.value),
        _ => {}
    }
}

fn hide(v: &mut Value) {
    let empty = match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    };
    if !empty {
        *v = Value::String(REDACTED.into());
    }
}

fn hide_all(v: &mut Value) {
    match v {
        Value::Sequence(s) => s.iter_mut().for_each(hide),
        Value::Mapping(m) => m.iter_mut().for_each(|(_, x)| hide_all(x)),
        other => hide(other),
    }
}

/// `url` with the password of any `user:password@` replaced by `<secret>`, for logs and
/// errors.
pub fn redact_url(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    // `user:password` keeps the user; a lone userinfo may itself be a token.
    let shown = match rest[..at].split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None => REDACTED.to_string(),
    };
    format!("{}{shown}{}", &url[..authority_start], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::inline("hunter2");
        assert_eq!(format!("{s:?}"), "Inline(<secret>)");
        let v = s.read().unwrap();
        assert_eq!(format!("{v} {v:?}"), "<secret> <secret>");
        assert_eq!(v.expose(), "hunter2");
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("https://bob:pw@h:1/metrics?a=b@c"),
            "https://bob:<secret>@h:1/metrics?a=b@c"
        );
        assert_eq!(redact_url("http://h:1/m?x=@"), "http://h:1/m?x=@");
        assert_eq!(redact_url("http://tok@h/"), "http://<secret>@h/");
    }

    #[test]
    fn files_and_labels_are_not_secrets() {
        let mut v: Value = serde_yaml_ng::from_str(
            "basic_auth: {username: u, password: p, password_file: /f}\n\
             labels: {token: t}\ntls_config: {key: k, key_file: /k, ca: c}\n\
             authorization: {credentials: ''}\n\
             http_headers: {X: {values: [v], secrets: [s]}}\n",
        )
        .unwrap();
        redact(&mut v);
        let out = serde_yaml_ng::to_string(&v).unwrap();
        for kept in [
            "username: u",
            "password_file: /f",
            "token: t",
            "key_file: /k",
            "ca: c",
            "- v",
        ] {
            assert!(out.contains(kept), "{kept} in {out}");
        }
        assert!(
            !out.contains(": p\n") && !out.contains("key: k") && !out.contains("- s"),
            "{out}"
        );
        assert_eq!(out.matches(REDACTED).count(), 3, "{out}");
    }
}
