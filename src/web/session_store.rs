//! Where admin sessions are kept. Embedded (no shared cache): in the encrypted cookie.
//! With Redis: in Redis, under a random id that the (encrypted) cookie carries, so a
//! sign-out ends that session on every instance at once and the session's contents
//! never leave the servers. Stored through the cache's own connection, outside the key
//! version and outside what `clear` removes (`KeyMaker::session_key`).
//!
//! The admin must keep working while Redis is down (writes are durable then, and the
//! dashboard shows what the cache has not taken yet), so the cookie also carries a copy
//! of the state: Redis is the authority while it answers (a session it does not have
//! is over), and the copy is read only while Redis is out of reach. A new or changed
//! session that Redis does not take is kept in the cookie alone, and moves to Redis at
//! its next change. Every kind is also checked against the account's session
//! generation (`web::session`), so a sign-out or a password change ends them all, on
//! every instance, whether Redis is up or not.

use std::collections::HashMap;

use actix_session::storage::{
    CookieSessionStore, LoadError, SaveError, SessionKey, SessionStore, UpdateError,
};
use actix_web::cookie::time::Duration;
use rand::distr::{Alphanumeric, SampleString};

use crate::cache::CacheManager;

type State = HashMap<String, String>;

/// A session kept in Redis: `r:{id}:{state}`, the id 64 random alphanumerics (as
/// actix-session's own Redis store) and the state the copy for outages; anything else
/// is the state alone, kept in the cookie.
const SHARED: &str = "r:";
const ID_LEN: usize = 64;

pub enum SessionStorage {
    Cookie(CookieSessionStore),
    /// In the shared cache, in the cookie while the cache is out of reach.
    Shared(CacheManager),
}

impl SessionStorage {
    /// The shared store when the cache is shared by every instance, else the cookie.
    pub fn for_cache(cache: &CacheManager) -> Self {
        if cache.is_shared() {
            SessionStorage::Shared(cache.clone())
        } else {
            SessionStorage::Cookie(CookieSessionStore::default())
        }
    }

    /// The id and the state's copy of a session kept in Redis.
    fn shared_parts(key: &SessionKey) -> Option<(&str, &str)> {
        let rest = key.as_ref().strip_prefix(SHARED)?;
        let (id, copy) = (rest.get(..ID_LEN)?, rest.get(ID_LEN..)?);
        Some((id, copy.strip_prefix(':')?))
    }

    /// Stores the state under `id` in Redis and gives the cookie's key; None when Redis
    /// did not take it.
    async fn put(cache: &CacheManager, id: &str, json: &str, ttl: &Duration) -> Option<String> {
        let ttl = std::time::Duration::from_secs(ttl.whole_seconds().max(1) as u64);
        cache
            .set_raw_checked(&cache.session_key(id), json.as_bytes().to_vec(), ttl)
            .await
            .then(|| format!("{SHARED}{id}:{json}"))
    }

    /// Kept in Redis when it takes it, else in the cookie alone.
    async fn keep(
        &self,
        id: Option<&str>,
        state: &State,
        ttl: &Duration,
    ) -> Result<SessionKey, SaveError> {
        let json = serde_json::to_string(state)
            .map_err(|e| SaveError::Serialization(anyhow::Error::new(e)))?;
        if let SessionStorage::Shared(cache) = self {
            let fresh;
            let id = match id {
                Some(id) => id,
                None => {
                    fresh = Alphanumeric.sample_string(&mut rand::rng(), ID_LEN);
                    &fresh
                }
            };
            match Self::put(cache, id, &json, ttl).await {
                Some(key) => return session_key(key),
                None => tracing::warn!("Redis did not take a session; it is kept in the cookie"),
            }
        }
        session_key(json)
    }
}

fn session_key(value: String) -> Result<SessionKey, SaveError> {
    SessionKey::try_from(value).map_err(|e| SaveError::Other(anyhow::Error::new(e)))
}

impl SessionStore for SessionStorage {
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        let parse = |json: &[u8]| {
            serde_json::from_slice(json)
                .map(Some)
                .map_err(|e| LoadError::Deserialization(anyhow::Error::new(e)))
        };
        let Some((id, copy)) = Self::shared_parts(key) else {
            return CookieSessionStore::default().load(key).await;
        };
        let SessionStorage::Shared(cache) = self else {
            // A Redis session presented to an instance without Redis: not ours to read.
            return Ok(None);
        };
        match cache.get_raw_checked(&cache.session_key(id)).await {
            Ok(Some(bytes)) => parse(&bytes),
            // Signed out, or expired.
            Ok(None) => Ok(None),
            Err(_) => parse(copy.as_bytes()),
        }
    }

    async fn save(&self, state: State, ttl: &Duration) -> Result<SessionKey, SaveError> {
        self.keep(None, &state, ttl).await
    }

    async fn update(
        &self,
        key: SessionKey,
        state: State,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let id = Self::shared_parts(&key).map(|(id, _)| id);
        self.keep(id, &state, ttl).await.map_err(|e| match e {
            SaveError::Serialization(e) => UpdateError::Serialization(e),
            SaveError::Other(e) => UpdateError::Other(e),
        })
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> Result<(), anyhow::Error> {
        if let (Some(_), Some(state)) = (Self::shared_parts(key), self.load(key).await?) {
            let same = session_key(key.as_ref().to_string())?;
            self.update(same, state, ttl).await?;
        }
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        if let (Some((id, _)), SessionStorage::Shared(cache)) = (Self::shared_parts(key), self) {
            cache.delete(&cache.session_key(id)).await;
        }
        Ok(())
    }
}
