//! Where admin sessions are kept. Embedded (no shared cache): in the encrypted cookie.
//! With Redis: in Redis, under a random id that the (encrypted) cookie carries, so a
//! sign-out ends that session on every instance at once and the session's contents
//! never leave the servers. Stored through the cache's own connection, outside the key
//! version and outside what `clear` removes (`KeyMaker::session_key`).
//!
//! While Redis is out of reach a new or changed session is kept in the cookie instead
//! of failing the request: an admin can still sign in and write during a cache outage
//! (writes are durable then). A session kept in Redis can't be read during the outage,
//! so its admin is asked to sign in again. Either kind is also checked against the
//! account's session generation (`web::session`), so a sign-out or a password change
//! ends cookie-kept sessions too.

use std::collections::HashMap;

use actix_session::storage::{
    CookieSessionStore, LoadError, SaveError, SessionKey, SessionStore, UpdateError,
};
use actix_web::cookie::time::Duration;
use rand::distr::{Alphanumeric, SampleString};

use crate::cache::CacheManager;

type State = HashMap<String, String>;

/// A session id kept in Redis: `r:` and 64 random alphanumerics (as actix-session's
/// own Redis store); anything else is the state itself, kept in the cookie.
const SHARED: &str = "r:";

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

    fn shared_id(key: &SessionKey) -> Option<&str> {
        key.as_ref().strip_prefix(SHARED)
    }

    /// Stores `state` under `id` in the shared cache; false when it could not.
    async fn put(cache: &CacheManager, id: &str, state: &State, ttl: &Duration) -> bool {
        let Ok(bytes) = serde_json::to_vec(state) else {
            return false;
        };
        let ttl = std::time::Duration::from_secs(ttl.whole_seconds().max(1) as u64);
        cache
            .set_raw_checked(&cache.session_key(id), bytes, ttl)
            .await
    }

    fn in_cookie(state: &State) -> Result<SessionKey, SaveError> {
        let json = serde_json::to_string(state)
            .map_err(|e| SaveError::Serialization(anyhow::Error::new(e)))?;
        session_key(json)
    }
}

fn session_key(value: String) -> Result<SessionKey, SaveError> {
    SessionKey::try_from(value).map_err(|e| SaveError::Other(anyhow::Error::new(e)))
}

impl SessionStore for SessionStorage {
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        let Some(id) = Self::shared_id(key) else {
            return CookieSessionStore::default().load(key).await;
        };
        let SessionStorage::Shared(cache) = self else {
            // A Redis session presented to an instance without Redis: not ours to read.
            return Ok(None);
        };
        match cache.get_raw_checked(&cache.session_key(id)).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| LoadError::Deserialization(anyhow::Error::new(e))),
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "a session kept in Redis could not be read; its admin is signed out until Redis answers");
                Ok(None)
            }
        }
    }

    async fn save(&self, state: State, ttl: &Duration) -> Result<SessionKey, SaveError> {
        if let SessionStorage::Shared(cache) = self {
            let id = Alphanumeric.sample_string(&mut rand::rng(), 64);
            if Self::put(cache, &id, &state, ttl).await {
                return session_key(format!("{SHARED}{id}"));
            }
            tracing::warn!("Redis did not take a session; it is kept in the cookie");
        }
        Self::in_cookie(&state)
    }

    async fn update(
        &self,
        key: SessionKey,
        state: State,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        if let (Some(id), SessionStorage::Shared(cache)) = (Self::shared_id(&key), self) {
            if Self::put(cache, id, &state, ttl).await {
                return Ok(key);
            }
        }
        self.save(state, ttl).await.map_err(|e| match e {
            SaveError::Serialization(e) => UpdateError::Serialization(e),
            SaveError::Other(e) => UpdateError::Other(e),
        })
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> Result<(), anyhow::Error> {
        if let (Some(_), Some(state)) = (Self::shared_id(key), self.load(key).await?) {
            let same = session_key(key.as_ref().to_string())?;
            self.update(same, state, ttl).await?;
        }
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        if let (Some(id), SessionStorage::Shared(cache)) = (Self::shared_id(key), self) {
            cache.delete(&cache.session_key(id)).await;
        }
        Ok(())
    }
}
