//! The `--storage` address: `clickhouse://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE[?cluster=CLUSTER]`.
//!
//! The port is ClickHouse's HTTP interface (8123 when omitted). Without `?cluster=` meshlens
//! talks to one server: plain MergeTree tables, no `ON CLUSTER`, no Distributed tables.
//! Database and cluster names are restricted to `[A-Za-z_][A-Za-z0-9_]*` so they can be
//! spliced into DDL without quoting rules that differ between ClickHouse versions.

use std::fmt;

use crate::ClickHouseError;

/// ClickHouse's default HTTP port.
pub const DEFAULT_HTTP_PORT: u16 = 8123;

/// A parsed `clickhouse://` storage address.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageUrl {
    pub host: String,
    pub port: u16,
    pub database: String,
    /// A cluster named in the servers' `remote_servers`; `None` for one server.
    pub cluster: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl StorageUrl {
    pub fn parse(s: &str) -> Result<StorageUrl, ClickHouseError> {
        let bad = |reason: String| ClickHouseError::InvalidUrl {
            url: redact(s),
            reason,
        };
        let u = url::Url::parse(s).map_err(|e| bad(e.to_string()))?;
        if u.scheme() != "clickhouse" {
            return Err(bad(format!(
                "scheme is {:?}, expected \"clickhouse\"",
                u.scheme()
            )));
        }
        let host = match u.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => format!("[{a}]"),
            _ => return Err(bad("no host".into())),
        };
        let port = u.port().unwrap_or(DEFAULT_HTTP_PORT);
        let path = u.path().trim_start_matches('/');
        if path.is_empty() {
            return Err(bad(
                "no database: expected clickhouse://HOST:PORT/DATABASE".into()
            ));
        }
        check_name("database", path).map_err(bad)?;
        let mut cluster = None;
        for (k, v) in u.query_pairs() {
            match k.as_ref() {
                "cluster" => {
                    check_name("cluster", &v).map_err(bad)?;
                    cluster = Some(v.into_owned());
                }
                other => return Err(bad(format!("unknown parameter {other:?} (known: cluster)"))),
            }
        }
        let user = (!u.username().is_empty()).then(|| decode(u.username()));
        let password = u.password().map(decode);
        Ok(StorageUrl {
            host,
            port,
            database: path.to_string(),
            cluster,
            user,
            password,
        })
    }

    /// The same server and cluster, with the database of `tenant` (see [`tenant_database`]).
    pub fn for_tenant(&self, tenant: &str) -> StorageUrl {
        StorageUrl {
            database: tenant_database(&self.database, tenant),
            ..self.clone()
        }
    }

    /// The HTTP interface's base address, e.g. `http://127.0.0.1:8123/`.
    pub fn http_base(&self) -> String {
        format!("http://{}:{}/", self.host, self.port)
    }
}

/// Shows the address without its password, so it can go into logs and errors.
impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "clickhouse://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write!(f, "{}:{}/{}", self.host, self.port, self.database)?;
        if let Some(c) = &self.cluster {
            write!(f, "?cluster={c}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageUrl({self})")
    }
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The address as given, minus any password.
fn redact(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => s.to_string(),
    }
}

/// Encoded tenant ids longer than this are cut and completed with a hash, so a database
/// name stays well within the 255 bytes a file name (its directory, `DB.sql`) may have.
const MAX_ENCODED_TENANT: usize = 120;

/// The database holding `tenant`'s data with `--multitenancy`: `BASE__` followed by the
/// tenant id with ASCII letters and digits kept and every other byte as `_` and two hex
/// digits (`team-1` → `BASE__team_2d1`). The name matches `[A-Za-z_][A-Za-z0-9_]*`, so it
/// needs no quoting, and distinct ids give distinct names; an id whose encoding is longer
/// than 120 bytes keeps its first 120 and gets `_h` and a 64-bit FNV-1a hash of the whole
/// id (`h` is no hex digit, so these cannot equal an unhashed name).
pub fn tenant_database(base: &str, tenant: &str) -> String {
    use std::fmt::Write;
    let mut enc = String::with_capacity(tenant.len());
    for b in tenant.bytes() {
        if b.is_ascii_alphanumeric() {
            enc.push(b as char);
        } else {
            let _ = write!(enc, "_{b:02x}");
        }
    }
    if enc.len() > MAX_ENCODED_TENANT {
        enc.truncate(MAX_ENCODED_TENANT);
        let _ = write!(
            enc,
            "_h{:016x}",
            meshlens_model::hash::fnv1a(tenant.as_bytes())
        );
    }
    format!("{base}__{enc}")
}

/// `[A-Za-z_][A-Za-z0-9_]*`, at most 64 bytes.
pub(crate) fn check_name(what: &str, s: &str) -> Result<(), String> {
    let mut bytes = s.bytes();
    let ok = match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
            bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
        _ => false,
    };
    if ok && s.len() <= 64 {
        Ok(())
    } else {
        Err(format!(
            "{what} name {s:?} must match [A-Za-z_][A-Za-z0-9_]* (at most 64 bytes)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_issue_contract() {
        let u = StorageUrl::parse("clickhouse://ch-0.example:8123/meshlens?cluster=mesh").unwrap();
        assert_eq!(u.host, "ch-0.example");
        assert_eq!(u.port, 8123);
        assert_eq!(u.database, "meshlens");
        assert_eq!(u.cluster.as_deref(), Some("mesh"));
        assert_eq!(u.http_base(), "http://ch-0.example:8123/");
        assert_eq!(
            u.to_string(),
            "clickhouse://ch-0.example:8123/meshlens?cluster=mesh"
        );
    }

    #[test]
    fn one_server_without_cluster_and_default_port() {
        let u = StorageUrl::parse("clickhouse://127.0.0.1/db").unwrap();
        assert_eq!((u.port, u.cluster), (DEFAULT_HTTP_PORT, None));
    }

    #[test]
    fn credentials_are_kept_but_never_shown() {
        let u = StorageUrl::parse("clickhouse://bob:s%40cret@h:1/db").unwrap();
        assert_eq!(u.user.as_deref(), Some("bob"));
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert!(!u.to_string().contains("cret"));
        let e = StorageUrl::parse("clickhouse://bob:secret@h:1/").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn tenant_databases_are_plain_names_distinct_per_tenant() {
        let long_a = format!("{}a", "-".repeat(149));
        let long_b = format!("{}b", "-".repeat(149));
        let ids = [
            "anonymous",
            "team-1",
            "team_2d1",
            "team_1",
            "A.b",
            "x!*'()",
            "...",
            long_a.as_str(),
            long_b.as_str(),
        ];
        let names: Vec<String> = ids.iter().map(|t| tenant_database("mesh", t)).collect();
        assert_eq!(names[0], "mesh__anonymous");
        assert_eq!(names[1], "mesh__team_2d1");
        assert_eq!(names[2], "mesh__team_5f2d1");
        for (id, n) in ids.iter().zip(&names) {
            assert!(
                check_name("database", n).is_ok() || n.len() > 64,
                "{id}: {n}"
            );
            assert!(
                n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "{id}: {n}"
            );
            assert!(n.len() <= 64 + 2 + MAX_ENCODED_TENANT + 18, "{id}: {n}");
        }
        let distinct: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
        let u = StorageUrl::parse("clickhouse://h:1/mesh?cluster=c").unwrap();
        let t = u.for_tenant("team-1");
        assert_eq!(
            (t.database.as_str(), t.cluster.as_deref()),
            ("mesh__team_2d1", Some("c"))
        );
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (s, want) in [
            ("http://h:1/db", "scheme"),
            ("clickhouse://h:1/", "no database"),
            ("clickhouse://h:1/my-db", "database name"),
            ("clickhouse://h:1/db?cluster=a;drop", "cluster name"),
            ("clickhouse://h:1/db?shards=2", "unknown parameter"),
            ("clickhouse://h:99999/db", "port"),
            ("clickhouse:///db", "host"),
            ("not a url", "relative URL"),
        ] {
            let e = StorageUrl::parse(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
