//! HTTP basic auth against the web config's bcrypt hashes. bcrypt is slow on purpose, so a
//! successful (user, password) is remembered as an HMAC of the password under a random
//! per-config key: repeat requests cost one HMAC, and the plain password is never stored.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use http::HeaderValue;
use parking_lot::Mutex;
use ring::hmac;

use crate::source::ActiveWebConfig;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization header")]
    Missing,
    #[error("Authorization header is not Basic credentials")]
    NotBasic,
    #[error("Authorization header has malformed Basic credentials")]
    Malformed,
    #[error("wrong user name or password")]
    Denied,
}

/// Cached successful logins; cleared when full, and new with each reloaded config so a
/// changed hash takes effect at once.
pub(crate) struct AuthCache {
    key: Option<hmac::Key>,
    map: Mutex<HashMap<String, hmac::Tag>>,
}

const CACHE_CAP: usize = 1024;

impl AuthCache {
    pub(crate) fn new() -> Self {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new()).ok();
        AuthCache {
            key,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn hit(&self, user: &str, password: &[u8]) -> bool {
        let Some(key) = &self.key else { return false };
        let Some(tag) = self.map.lock().get(user).copied() else {
            return false;
        };
        hmac::verify(key, password, tag.as_ref()).is_ok()
    }

    fn remember(&self, user: &str, password: &[u8]) {
        let Some(key) = &self.key else { return };
        let tag = hmac::sign(key, password);
        let mut map = self.map.lock();
        if map.len() >= CACHE_CAP && !map.contains_key(user) {
            map.clear();
        }
        map.insert(user.to_string(), tag);
    }
}

/// The outcome of the cheap part of a check; `Slow` needs a bcrypt comparison, which a
/// server runs off the async threads.
pub(crate) enum Precheck {
    Allowed,
    Denied(AuthError),
    Slow(SlowCheck),
}

pub(crate) struct SlowCheck {
    user: String,
    password: Vec<u8>,
}

impl SlowCheck {
    pub(crate) fn run(self, active: &ActiveWebConfig) -> Result<(), AuthError> {
        match active.user_hash(&self.user) {
            Some(hash) => match bcrypt::verify(&self.password, hash.expose()) {
                Ok(true) => {
                    active.cache.remember(&self.user, &self.password);
                    Ok(())
                }
                _ => Err(AuthError::Denied),
            },
            None => {
                // Same work for an unknown user as for a wrong password, so timing does not
                // reveal which user names exist.
                if let Some(h) = dummy_hash() {
                    let _ = bcrypt::verify(&self.password, h);
                }
                Err(AuthError::Denied)
            }
        }
    }
}

fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| bcrypt::hash("meshlens-no-such-user", 10).ok())
        .as_deref()
}

pub(crate) fn precheck(active: &ActiveWebConfig, authorization: Option<&HeaderValue>) -> Precheck {
    if !active.auth_enabled() {
        return Precheck::Allowed;
    }
    let (user, password) = match parse_basic(authorization) {
        Ok(x) => x,
        Err(e) => return Precheck::Denied(e),
    };
    if active.user_hash(&user).is_some() && active.cache.hit(&user, &password) {
        return Precheck::Allowed;
    }
    Precheck::Slow(SlowCheck { user, password })
}

fn parse_basic(authorization: Option<&HeaderValue>) -> Result<(String, Vec<u8>), AuthError> {
    let value = authorization.ok_or(AuthError::Missing)?;
    let text = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, rest) = text.trim().split_once(' ').ok_or(AuthError::NotBasic)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::NotBasic);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| AuthError::Malformed)?;
    let colon = decoded
        .iter()
        .position(|b| *b == b':')
        .ok_or(AuthError::Malformed)?;
    let user = std::str::from_utf8(&decoded[..colon]).map_err(|_| AuthError::Malformed)?;
    Ok((user.to_string(), decoded[colon + 1..].to_vec()))
}

/// Checks `Authorization` against the configured users; `Ok` when no users are configured.
/// On `Err` the caller answers 401 with `WWW-Authenticate: Basic` and body `Unauthorized`.
/// May run bcrypt (tens of milliseconds): call it off the async threads, or use `serve`,
/// which does.
pub fn check_basic(
    active: &ActiveWebConfig,
    authorization: Option<&HeaderValue>,
) -> Result<(), AuthError> {
    match precheck(active, authorization) {
        Precheck::Allowed => Ok(()),
        Precheck::Denied(e) => Err(e),
        Precheck::Slow(job) => job.run(active),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webconfig::parse;
    use std::path::Path;

    fn active_with(user: &str, password: &str) -> ActiveWebConfig {
        let hash = bcrypt::hash(password, 4).unwrap();
        let cfg = parse(
            &format!("basic_auth_users:\n  {user}: '{hash}'\n"),
            Path::new("."),
        )
        .unwrap();
        ActiveWebConfig::build(&cfg).unwrap()
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {enc}")).unwrap()
    }

    #[test]
    fn no_users_means_no_auth() {
        assert_eq!(check_basic(&ActiveWebConfig::plain(), None), Ok(()));
    }

    #[test]
    fn right_wrong_and_missing_credentials() {
        let a = active_with("alice", "s3cret:with:colons");
        assert_eq!(check_basic(&a, None), Err(AuthError::Missing));
        assert_eq!(
            check_basic(&a, Some(&HeaderValue::from_static("Bearer abc"))),
            Err(AuthError::NotBasic)
        );
        assert_eq!(
            check_basic(&a, Some(&HeaderValue::from_static("Basic !!!"))),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            check_basic(&a, Some(&basic("alice", "nope"))),
            Err(AuthError::Denied)
        );
        assert_eq!(
            check_basic(&a, Some(&basic("mallory", "s3cret:with:colons"))),
            Err(AuthError::Denied)
        );
        assert_eq!(
            check_basic(&a, Some(&basic("alice", "s3cret:with:colons"))),
            Ok(())
        );
        // lower-case scheme is accepted, as Go's net/http does
        let enc = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:with:colons");
        let v = HeaderValue::from_str(&format!("basic {enc}")).unwrap();
        assert_eq!(check_basic(&a, Some(&v)), Ok(()));
    }

    #[test]
    fn cache_is_used_after_success_and_never_accepts_other_passwords() {
        let a = active_with("alice", "pw");
        assert!(matches!(
            precheck(&a, Some(&basic("alice", "pw"))),
            Precheck::Slow(_)
        ));
        assert_eq!(check_basic(&a, Some(&basic("alice", "pw"))), Ok(()));
        assert!(matches!(
            precheck(&a, Some(&basic("alice", "pw"))),
            Precheck::Allowed
        ));
        assert!(matches!(
            precheck(&a, Some(&basic("alice", "pw2"))),
            Precheck::Slow(_)
        ));
        assert_eq!(
            check_basic(&a, Some(&basic("alice", "pw2"))),
            Err(AuthError::Denied)
        );
    }
}
