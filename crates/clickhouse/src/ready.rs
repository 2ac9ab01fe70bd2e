//! The gate every store operation passes: the schema must be in place first.
//!
//! Why: a server may start while ClickHouse is down (`--storage.clickhouse.start-unreachable`)
//! and must then create the schema once it answers, before the first read or insert. The
//! gate is open from the start after an eager [`Gate::ensure`]; otherwise the first
//! operation that finds it closed tries to connect and create the schema, at most once per
//! [`RETRY_EVERY`], and every other caller meanwhile fails at once with the latest reason
//! (a 503 naming ClickHouse), instead of queueing behind a connect timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::client::Client;
use crate::schema::Schema;
use crate::ClickHouseError;

/// Least time between two attempts to reach a ClickHouse that was not ready.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Attempt {
    at: Option<Instant>,
    error: Option<String>,
}

/// Whether a database's schema is known to be in place.
pub struct Gate {
    client: Arc<Client>,
    schema: Schema,
    open: AtomicBool,
    attempt: Mutex<Attempt>,
    /// `SELECT version()` from the first contact.
    server_version: OnceLock<String>,
}

impl Gate {
    pub(crate) fn new(client: Arc<Client>, schema: Schema) -> Gate {
        Gate {
            client,
            schema,
            open: AtomicBool::new(false),
            attempt: Mutex::new(Attempt::default()),
            server_version: OnceLock::new(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// The server's version as it answered at the first contact; empty before.
    pub fn server_version(&self) -> &str {
        self.server_version.get().map_or("", String::as_str)
    }

    /// Reads the server's version once, warning when it is older than any tested release.
    fn learn_version(&self) -> Result<(), ClickHouseError> {
        if self.server_version.get().is_some() {
            return Ok(());
        }
        let version = crate::read_strings_raw(&self.client, "SELECT version() FORMAT RowBinary")?
            .into_iter()
            .next()
            .unwrap_or_default();
        if !crate::is_supported(&version) {
            tracing::warn!(
                storage = %self.client.base_url(),
                server_version = %version,
                "this ClickHouse is older than 18.16, the oldest release meshlens is tested on"
            );
        }
        let _ = self.server_version.set(version);
        Ok(())
    }

    /// Pings, then creates or upgrades the schema, now. Returns the version found before
    /// (see [`Schema::ensure`]).
    pub fn ensure(&self) -> Result<u32, ClickHouseError> {
        let mut a = self.attempt.lock();
        self.try_locked(&mut a)
    }

    fn try_locked(&self, a: &mut Attempt) -> Result<u32, ClickHouseError> {
        a.at = Some(Instant::now());
        let r = self
            .client
            .ping()
            .and_then(|()| self.learn_version())
            .and_then(|()| self.schema.ensure(&self.client));
        match &r {
            Ok(_) => {
                a.error = None;
                self.open.store(true, Ordering::Release);
            }
            Err(e) => a.error = Some(e.to_string()),
        }
        r
    }

    /// Ok once the schema is in place; until then tries to put it there (at most once per
    /// [`RETRY_EVERY`], one caller at a time) and otherwise fails with the latest reason.
    pub fn check(&self) -> Result<(), ClickHouseError> {
        if self.is_open() {
            return Ok(());
        }
        let pending = |error: Option<&String>| ClickHouseError::NotReady {
            reason: match error {
                Some(e) => e.clone(),
                None => format!(
                    "ClickHouse at {} is unreachable: connecting",
                    self.client.base_url()
                ),
            },
        };
        let Some(mut a) = self.attempt.try_lock() else {
            return Err(pending(None));
        };
        if self.is_open() {
            return Ok(());
        }
        if a.at.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
            return Err(pending(a.error.as_ref()));
        }
        match self.try_locked(&mut a) {
            Ok(before) => {
                tracing::info!(database = %self.schema.database, found = before,
                    schema_version = crate::SCHEMA_VERSION,
                    "clickhouse answers; schema in place");
                Ok(())
            }
            Err(e) => Err(ClickHouseError::NotReady {
                reason: e.to_string(),
            }),
        }
    }
}
