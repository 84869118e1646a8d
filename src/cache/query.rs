//! Query caching. Two forms:
//! - `CacheManager::cached_query(key_prefix, parts, depends_on, ttl, compute)`: the
//!   seed's `@cached_query(timeout=600, key_prefix='posts')` as a wrapper at the call
//!   site;
//! - `query_key(family, &query, suffix)`: a stable key derived from a diesel query's
//!   SQL text and binds, so the key changes whenever the query does.
//!
//! Either way the entry names the tags (models) it depends on, and `invalidate_tags`
//! drops it when they change.

use std::future::Future;
use std::time::Duration;

use diesel::query_builder::QueryFragment;
use diesel::sqlite::Sqlite;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{CacheManager, Key};

impl CacheManager {
    pub async fn cached_query<T, E, F, Fut, S>(
        &self,
        key_prefix: &'static str,
        parts: &[S],
        depends_on: &[&str],
        ttl: Option<Duration>,
        compute: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        S: AsRef<str>,
    {
        let key = self.key(key_prefix, parts);
        self.get_or_set_tagged(&key, depends_on, ttl, compute).await
    }

    /// `cached_query` for a lookup by a value from the request (a slug): a found row is
    /// cached, "not found" is not, so clients cannot fill the cache with made-up names.
    pub async fn cached_lookup<T, E, F, Fut, S>(
        &self,
        key_prefix: &'static str,
        parts: &[S],
        depends_on: &[&str],
        compute: F,
    ) -> Result<Option<T>, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
        S: AsRef<str>,
    {
        let key = self.key(key_prefix, parts);
        self.get_or_set_tagged_if(&key, depends_on, None, compute, Option::is_some)
            .await
    }

    /// A key for a diesel query: a hash of its SQL and bind values (as SQLite would
    /// see them: the text only has to be stable, not executable) and a suffix.
    pub fn query_key<Q: QueryFragment<Sqlite>>(
        &self,
        family: &'static str,
        query: &Q,
        suffix: &str,
    ) -> Key {
        let sql = diesel::debug_query::<Sqlite, _>(query).to_string();
        let digest = Sha256::digest(sql.as_bytes());
        self.key(family, [suffix, &hex::encode(&digest[..12])])
    }
}
