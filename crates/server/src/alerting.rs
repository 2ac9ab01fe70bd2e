//! The `alerting:` config turned into what the notifier takes: Alertmanager sets with their
//! addresses resolved (static and file-discovered), the alert relabeling as a function,
//! the external labels. Relative paths (discovery files, TLS files, credential files) are
//! taken from the config file's directory, as Prometheus does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use meshlens_model::Labels;
use meshlens_notifier::{AlertmanagerSet, AmAuth, AmSecret, AmTls, NotifierOptions, RelabelFn};

use crate::config::{relabel, AlertingConfig, AlertmanagerConfig, Auth, Config, Secret};
use crate::config::{FileSdConfig, TlsConfig, TlsVersion};
use crate::discovery::FileSd;

/// Every set of the config with the addresses known now.
#[cfg(test)]
pub(crate) fn notifier_sets(cfg: &AlertingConfig, config_dir: &Path) -> Vec<AlertmanagerSet> {
    AlertmanagerWatch::new(cfg, config_dir).sets()
}

/// `alert_relabel_configs` as the notifier's relabel function; `None` when there are none.
pub(crate) fn alert_relabel(cfg: &AlertingConfig) -> Option<RelabelFn> {
    if cfg.alert_relabel_configs.is_empty() {
        return None;
    }
    let configs = cfg.alert_relabel_configs.clone();
    Some(Arc::new(move |l: Labels| relabel::process(&l, &configs)))
}

/// `global.external_labels` as a label set.
pub(crate) fn external_labels(cfg: &Config) -> Labels {
    Labels::from_pairs(
        cfg.global
            .external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    )
}

/// The notifier's options from a config, with the queue capacity from the command line.
pub(crate) fn notifier_options(cfg: &Config, queue_capacity: usize) -> NotifierOptions {
    NotifierOptions {
        queue_capacity,
        external_labels: external_labels(cfg),
        relabel: alert_relabel(&cfg.alerting),
    }
}

/// The sets of one config, kept current: [`AlertmanagerWatch::poll`] re-reads discovery
/// files when they change (or their refresh interval passes) and says whether the
/// addresses changed, so the caller replaces the notifier's sets only then.
pub(crate) struct AlertmanagerWatch {
    entries: Vec<Entry>,
}

struct Entry {
    /// The set with its static addresses only.
    base: AlertmanagerSet,
    file_sd: FileSd,
    discovered: Vec<String>,
}

impl AlertmanagerWatch {
    /// Reads every discovery file once.
    pub(crate) fn new(cfg: &AlertingConfig, config_dir: &Path) -> Self {
        let mut watch = AlertmanagerWatch {
            entries: cfg
                .alertmanagers
                .iter()
                .map(|am| Entry {
                    base: base_set(am, config_dir),
                    file_sd: FileSd::new(
                        am.file_sd_configs
                            .iter()
                            .map(|f| FileSdConfig {
                                files: f.files.iter().map(|p| resolve_str(config_dir, p)).collect(),
                                refresh_interval: f.refresh_interval,
                            })
                            .collect(),
                    ),
                    discovered: Vec::new(),
                })
                .collect(),
        };
        watch.poll();
        watch
    }

    /// The sets with the addresses found so far.
    pub(crate) fn sets(&self) -> Vec<AlertmanagerSet> {
        self.entries
            .iter()
            .map(|e| {
                let mut set = e.base.clone();
                set.addresses.extend(e.discovered.iter().cloned());
                set
            })
            .collect()
    }

    /// Re-reads changed discovery files; the new sets when any address list changed.
    pub(crate) fn poll(&mut self) -> Option<Vec<AlertmanagerSet>> {
        let mut changed = false;
        for e in &mut self.entries {
            if e.file_sd.is_empty() {
                continue;
            }
            if let Some(groups) = e.file_sd.poll() {
                let found: Vec<String> = groups.into_iter().flat_map(|g| g.targets).collect();
                if found != e.discovered {
                    e.discovered = found;
                    changed = true;
                }
            }
        }
        changed.then(|| self.sets())
    }
}

fn base_set(am: &AlertmanagerConfig, dir: &Path) -> AlertmanagerSet {
    AlertmanagerSet {
        scheme: am.scheme.clone(),
        path_prefix: am.path_prefix.clone(),
        timeout: am.timeout,
        auth: auth(&am.auth, dir),
        tls: tls(&am.tls, dir),
        api_version: am.api_version.clone(),
        addresses: am
            .static_configs
            .iter()
            .flat_map(|s| s.targets.iter().cloned())
            .collect(),
    }
}

fn auth(a: &Auth, dir: &Path) -> AmAuth {
    let secret = |s: &Secret| match s {
        Secret::Inline(v) => AmSecret::Inline(v.expose().to_string()),
        Secret::File(p) => AmSecret::File(resolve(dir, p)),
    };
    match a {
        Auth::None => AmAuth::None,
        Auth::Basic { username, password } => AmAuth::Basic {
            username: username.clone(),
            password: secret(password),
        },
        Auth::Authorization { kind, credentials } => AmAuth::Authorization {
            kind: kind.clone(),
            credentials: secret(credentials),
        },
    }
}

fn tls(t: &TlsConfig, dir: &Path) -> AmTls {
    let file = |p: &Option<PathBuf>| p.as_ref().map(|p| resolve(dir, p));
    AmTls {
        ca_file: file(&t.ca_file),
        cert_file: file(&t.cert_file),
        key_file: file(&t.key_file),
        server_name: t.server_name.clone(),
        insecure_skip_verify: t.insecure_skip_verify,
        tls13_only: t.min_version == Some(TlsVersion::Tls13),
    }
}

fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

fn resolve_str(dir: &Path, p: &str) -> String {
    resolve(dir, Path::new(p)).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        crate::config::parse(yaml, "t.yml").unwrap().0
    }

    #[test]
    fn static_and_file_discovered_sets_with_paths_from_the_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sd")).unwrap();
        std::fs::write(
            dir.path().join("sd/am.json"),
            r#"[{"targets": ["am-2:9093", "am-3:9093"], "labels": {"x": "y"}}]"#,
        )
        .unwrap();
        let cfg = config(
            "global: {external_labels: {cluster: eu}}\n\
             alerting:\n  alertmanagers:\n\
             \x20   - static_configs: [{targets: ['am-1:9093']}]\n\
             \x20     file_sd_configs: [{files: ['sd/*.json']}]\n\
             \x20     scheme: https\n      path_prefix: /am\n      timeout: 3s\n\
             \x20     basic_auth: {username: u, password_file: secrets/pw}\n\
             \x20     tls_config: {ca_file: ca.pem, cert_file: /abs/c.pem, key_file: k.pem, \
             server_name: am.example, min_version: TLS13}\n\
             \x20   - bearer_token: tok\n      static_configs: [{targets: ['other:1']}]\n",
        );
        let sets = notifier_sets(&cfg.alerting, dir.path());
        assert_eq!(sets.len(), 2);
        let s = &sets[0];
        assert_eq!(s.addresses, ["am-1:9093", "am-2:9093", "am-3:9093"]);
        assert_eq!(
            (s.scheme.as_str(), s.path_prefix.as_str(), s.timeout),
            ("https", "/am", std::time::Duration::from_secs(3))
        );
        assert_eq!(
            s.auth,
            AmAuth::Basic {
                username: "u".into(),
                password: AmSecret::File(dir.path().join("secrets/pw")),
            }
        );
        assert_eq!(s.tls.ca_file, Some(dir.path().join("ca.pem")));
        assert_eq!(s.tls.cert_file, Some(PathBuf::from("/abs/c.pem")));
        assert_eq!(s.tls.server_name.as_deref(), Some("am.example"));
        assert!(s.tls.tls13_only);
        assert_eq!(
            sets[1].auth,
            AmAuth::Authorization {
                kind: "Bearer".into(),
                credentials: AmSecret::Inline("tok".into()),
            }
        );
        assert_eq!(sets[1].addresses, ["other:1"]);
        let opts = notifier_options(&cfg, 100);
        assert_eq!(
            opts.external_labels,
            Labels::from_pairs([("cluster", "eu")])
        );
        assert!(opts.relabel.is_none());
    }

    #[test]
    fn the_watch_reports_changed_discovery_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("am.yml");
        std::fs::write(&f, "- targets: ['a:1']\n").unwrap();
        let cfg = config(
            "alerting:\n  alertmanagers:\n    - file_sd_configs: [{files: [am.yml], refresh_interval: 1h}]\n",
        );
        let mut watch = AlertmanagerWatch::new(&cfg.alerting, dir.path());
        assert_eq!(watch.sets()[0].addresses, ["a:1"]);
        assert!(watch.poll().is_none());
        // A later modification time, whatever the file system's clock granularity.
        std::fs::write(&f, "- targets: ['a:1', 'b:2']\n").unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .and_then(|h| h.set_modified(later))
            .unwrap();
        let sets = watch.poll().expect("the change is seen");
        assert_eq!(sets[0].addresses, ["a:1", "b:2"]);
    }

    #[test]
    fn alert_relabeling_drops_and_rewrites() {
        let cfg = config(
            "alerting:\n  alert_relabel_configs:\n\
             \x20   - {source_labels: [severity], regex: debug, action: drop}\n\
             \x20   - {regex: replica, action: labeldrop}\n",
        );
        let f = alert_relabel(&cfg.alerting).expect("a relabel function");
        assert_eq!(
            f(Labels::from_pairs([
                ("alertname", "A"),
                ("severity", "debug")
            ])),
            None
        );
        assert_eq!(
            f(Labels::from_pairs([("alertname", "A"), ("replica", "1")])),
            Some(Labels::from_pairs([("alertname", "A")]))
        );
    }
}
