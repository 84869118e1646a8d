//! Query caching: `CacheManager::cached_query(key_prefix, parts, depends_on, ttl,
//! compute)`, the seed's `@cached_query(timeout=600, key_prefix='posts')` as a wrapper
//! at the call site, and `cached_lookup` for lookups by a client's value. The entry
//! names the tags it depends on, and `invalidate_tags` drops it when they change. (Keys
//! derived from a diesel query's SQL live with the queries: `content::query_key`.)

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::CacheManager;

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
}
