//! One `alerting.alertmanagers` entry as the notifier sees it: where its Alertmanagers are,
//! how to reach them (scheme, path prefix, timeout, credentials, TLS) and their push URLs.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::NotifierError;

/// A credential given inline or as a file that is read at each request, so a rotated token
/// needs no reload. Debug never prints an inline value.
#[derive(Clone, PartialEq, Eq)]
pub enum AmSecret {
    Inline(String),
    File(PathBuf),
}

impl AmSecret {
    /// The current value; a file's content is trimmed of surrounding whitespace, as
    /// Prometheus does.
    pub fn read(&self) -> std::io::Result<String> {
        match self {
            AmSecret::Inline(s) => Ok(s.clone()),
            AmSecret::File(p) => Ok(std::fs::read_to_string(p)?.trim().to_string()),
        }
    }
}

impl fmt::Debug for AmSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmSecret::Inline(_) => f.write_str("Inline(<secret>)"),
            AmSecret::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// How requests to a set authenticate: `basic_auth`, or an `Authorization` header
/// (`authorization` with its type, or the older `bearer_token(_file)` as type `Bearer`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AmAuth {
    #[default]
    None,
    Basic {
        username: String,
        password: AmSecret,
    },
    Authorization {
        kind: String,
        credentials: AmSecret,
    },
}

/// `tls_config` of a set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AmTls {
    /// Trust only these CAs; without it the system's roots.
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name to verify (and send as SNI) instead of the address's host.
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
    /// `min_version: TLS13`; anything lower allows TLS 1.2 and 1.3 (all rustls speaks).
    pub tls13_only: bool,
}

/// One group of Alertmanagers sharing a configuration; every batch goes to each of them.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertmanagerSet {
    /// `http` or `https`.
    pub scheme: String,
    pub path_prefix: String,
    /// The limit for one request to one Alertmanager.
    pub timeout: Duration,
    pub auth: AmAuth,
    pub tls: AmTls,
    /// Only `v2` is accepted (Alertmanager dropped v1 in 0.27; Prometheus 3 too).
    pub api_version: String,
    /// `host:port` of each Alertmanager.
    pub addresses: Vec<String>,
}

impl Default for AlertmanagerSet {
    /// Prometheus's defaults: http, no prefix, 10 s, v2, no Alertmanagers.
    fn default() -> Self {
        AlertmanagerSet {
            scheme: "http".into(),
            path_prefix: String::new(),
            timeout: Duration::from_secs(10),
            auth: AmAuth::None,
            tls: AmTls::default(),
            api_version: "v2".into(),
            addresses: Vec::new(),
        }
    }
}

impl AlertmanagerSet {
    /// The push URL of every valid address, duplicates removed, in the given order.
    /// Checks the scheme and API version; an address with a path or blank is skipped
    /// (returned in the second list) as Prometheus refuses it.
    pub fn urls(&self) -> Result<(Vec<String>, Vec<String>), NotifierError> {
        if self.api_version != "v2" {
            return Err(NotifierError::ApiVersion(self.api_version.clone()));
        }
        if self.scheme != "http" && self.scheme != "https" {
            return Err(NotifierError::Scheme(self.scheme.clone()));
        }
        let path = post_path(&self.path_prefix);
        let mut urls: Vec<String> = Vec::new();
        let mut bad = Vec::new();
        for addr in &self.addresses {
            if !valid_address(addr) {
                bad.push(addr.clone());
                continue;
            }
            let url = format!("{}://{addr}{path}", self.scheme);
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        Ok((urls, bad))
    }
}

/// `host:port` (or a bare host) with nothing that would change the URL's meaning.
fn valid_address(addr: &str) -> bool {
    !addr.is_empty()
        && !addr.chars().any(|c| {
            matches!(c, '/' | '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control()
        })
}

/// `/{prefix}/api/v2/alerts` with the prefix's path cleaned as Go's `path.Join` cleans it:
/// no empty or `.` segments, `..` removes the one before.
pub(crate) fn post_path(prefix: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for s in prefix.split('/').chain(["api", "v2", "alerts"]) {
        match s {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_path_joins_like_go() {
        assert_eq!(post_path(""), "/api/v2/alerts");
        assert_eq!(post_path("/"), "/api/v2/alerts");
        assert_eq!(post_path("am"), "/am/api/v2/alerts");
        assert_eq!(post_path("/a/b/"), "/a/b/api/v2/alerts");
        assert_eq!(post_path("a//./b/../c"), "/a/c/api/v2/alerts");
    }

    #[test]
    fn urls_dedup_skip_bad_and_check_version() {
        let set = AlertmanagerSet {
            scheme: "https".into(),
            path_prefix: "/am".into(),
            addresses: vec![
                "a:9093".into(),
                "b:9093/x".into(),
                "a:9093".into(),
                "".into(),
                "[::1]:9093".into(),
            ],
            ..Default::default()
        };
        let (urls, bad) = set.urls().unwrap();
        assert_eq!(
            urls,
            [
                "https://a:9093/am/api/v2/alerts",
                "https://[::1]:9093/am/api/v2/alerts"
            ]
        );
        assert_eq!(bad, ["b:9093/x", ""]);
        let v1 = AlertmanagerSet {
            api_version: "v1".into(),
            ..Default::default()
        };
        assert!(matches!(v1.urls(), Err(NotifierError::ApiVersion(v)) if v == "v1"));
        let ftp = AlertmanagerSet {
            scheme: "ftp".into(),
            ..Default::default()
        };
        assert!(ftp.urls().is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = AmSecret::Inline("hunter2".into());
        let auth = AmAuth::Basic {
            username: "u".into(),
            password: s,
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }
}
