//! The live web config: what a new connection uses, rebuilt when the file (or a file it
//! names) changes, and kept at the last good version when a change is broken.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderName, HeaderValue};
use parking_lot::Mutex;

use crate::auth::AuthCache;
use crate::tls::build_server_config;
use crate::webconfig::{parse_file, Secret, WebConfig, WebConfigError};

/// A web config ready for connections: the TLS server config, users and response headers.
pub struct ActiveWebConfig {
    /// `None`: plain TCP. ALPN offers h2 and http/1.1, or only http/1.1 with `http2: false`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub http2: bool,
    users: BTreeMap<String, Secret>,
    pub(crate) cache: AuthCache,
}

impl fmt::Debug for ActiveWebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveWebConfig")
            .field("tls", &self.tls.is_some())
            .field("headers", &self.headers)
            .field("http2", &self.http2)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for ActiveWebConfig {
    fn default() -> Self {
        Self::plain()
    }
}

impl ActiveWebConfig {
    /// Plain HTTP, no users, no extra headers: what a listener without a web config uses.
    pub fn plain() -> Self {
        ActiveWebConfig {
            tls: None,
            headers: Vec::new(),
            http2: true,
            users: BTreeMap::new(),
            cache: AuthCache::new(),
        }
    }

    /// Reads the certificate files `cfg` names and builds the rustls config.
    pub fn build(cfg: &WebConfig) -> Result<Self, WebConfigError> {
        let tls = match &cfg.tls {
            Some(t) => Some(build_server_config(t, cfg.http2, &cfg.file)?),
            None => None,
        };
        Ok(ActiveWebConfig {
            tls,
            headers: cfg.headers.clone(),
            http2: cfg.http2,
            users: cfg.users.clone(),
            cache: AuthCache::new(),
        })
    }

    /// Basic auth is required when at least one user is configured.
    pub fn auth_enabled(&self) -> bool {
        !self.users.is_empty()
    }

    pub(crate) fn user_hash(&self, user: &str) -> Option<&Secret> {
        self.users.get(user)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
    })
}

struct State {
    /// The config file first, then the files it names (as of the last successful parse).
    watched: Vec<PathBuf>,
    stamps: Vec<Option<Stamp>>,
    active: Arc<ActiveWebConfig>,
    last_error: Option<String>,
}

/// A web config file watched by cheap `stat` calls on each [`WebConfigSource::current`].
pub struct WebConfigSource {
    path: PathBuf,
    state: Mutex<State>,
}

impl fmt::Debug for WebConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfigSource")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl WebConfigSource {
    /// Loads and builds the config; any error here is fatal to the caller (start-up).
    pub fn load(path: &Path) -> Result<Arc<WebConfigSource>, WebConfigError> {
        // The config file's stamp from before reading, so a write racing the read is
        // seen as a change next time.
        let before = stamp(path);
        let cfg = parse_file(path)?;
        let active = ActiveWebConfig::build(&cfg)?;
        let (watched, mut stamps) = Self::stamps_for(path, &cfg.referenced_files());
        stamps[0] = before;
        Ok(Arc::new(WebConfigSource {
            path: path.to_path_buf(),
            state: Mutex::new(State {
                watched,
                stamps,
                active: Arc::new(active),
                last_error: None,
            }),
        }))
    }

    fn stamps_for(path: &Path, extra: &[PathBuf]) -> (Vec<PathBuf>, Vec<Option<Stamp>>) {
        let mut watched = vec![path.to_path_buf()];
        watched.extend(extra.iter().cloned());
        let stamps = watched.iter().map(|p| stamp(p)).collect();
        (watched, stamps)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config for a new connection; rebuilt first if any watched file changed. A broken
    /// change is logged once and the last good config stays in use.
    pub fn current(&self) -> Arc<ActiveWebConfig> {
        let mut st = self.state.lock();
        let now: Vec<Option<Stamp>> = st.watched.iter().map(|p| stamp(p)).collect();
        if now == st.stamps {
            return st.active.clone();
        }
        match parse_file(&self.path).and_then(|cfg| {
            let active = ActiveWebConfig::build(&cfg)?;
            Ok((cfg, active))
        }) {
            Ok((cfg, active)) => {
                let (watched, mut stamps) = Self::stamps_for(&self.path, &cfg.referenced_files());
                stamps[0] = now[0];
                st.watched = watched;
                st.stamps = stamps;
                st.active = Arc::new(active);
                st.last_error = None;
                tracing::info!(file = %self.path.display(), "web config reloaded");
            }
            Err(e) => {
                tracing::error!(file = %self.path.display(), error = %e, "web config reload failed; keeping the last good one");
                st.stamps = now;
                st.last_error = Some(e.to_string());
            }
        }
        st.active.clone()
    }

    /// The error of the last failed reload, cleared by a successful one.
    pub fn last_error(&self) -> Option<String> {
        self.state.lock().last_error.clone()
    }
}
