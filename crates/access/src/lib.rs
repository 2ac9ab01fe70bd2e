//! meshlens-access: who may connect and what they may do, as a layer every listener uses.
//!
//! - [`webconfig`]: Prometheus exporter-toolkit's `--web.config.file` (TLS, HTTP headers,
//!   basic-auth users), parsed strictly; [`WebConfigSource`] re-checks the files on each new
//!   connection, so edits apply without a restart and a broken edit keeps the last good one.
//! - [`auth`]: basic auth against bcrypt hashes, with a cache of successful logins.
//! - [`serve`]: the hardened accept loop every HTTP/gRPC port runs, with a connection cap
//!   that sheds clients that never finished a request head before it refuses real ones.
//! - [`tenant`] and [`limits`]: Mimir's `X-Scope-OrgID` rules and per-tenant limits.
//! - [`pem`]: certificate chains and private keys from PEM, for listeners and clients alike.
//! - [`client_tls`]: the rustls client configuration of a `tls_config`, for every outgoing
//!   client (scrapes, Alertmanagers, probes).
//!
//! TLS is rustls on the *ring* provider only; no OpenSSL, no aws-lc.

pub mod auth;
pub mod client_tls;
pub mod limits;
pub mod metrics;
pub mod pem;
pub mod serve;
mod source;
pub mod tenant;
mod tls;
pub mod webconfig;

pub use auth::{check_basic, AuthError};
pub use client_tls::{ClientTls, ClientTlsError};
pub use limits::{LimitCounters, Limits, RateLimiters, SeriesLimitError, REASON_RATE_LIMITED};
pub use metrics::{AccessMetrics, ListenerCounters, ListenerSnapshot};
pub use pem::{parse_certs, parse_key, PemError};
pub use serve::{serve, BoxError, HyperService, ListenerBody, ListenerOptions, ListenerService};
pub use source::{ActiveWebConfig, WebConfigSource};
pub use tenant::{parse_org_ids, validate_org_id, TenantError, ORG_ID_HEADER};
pub use webconfig::{parse, parse_file, WebConfig, WebConfigError};
