//! The webhook's memory of the requests it has done (see `api::webhook`).

use std::time::Duration;

/// Signatures of requests whose work was done, remembered for longer than a signed
/// request is accepted (`webhook::MAX_AGE` either side of its timestamp, so up to twice that
/// after first use): in the shared cache (the `webhook` family's TTL), so any instance
/// refuses a replay, and in-process, for when the cache is down or off.
pub struct ReplayGuard {
    local: moka::sync::Cache<Vec<u8>, ()>,
}

impl ReplayGuard {
    /// For signed requests accepted `max_age` either side of their timestamp.
    pub fn new(max_age: Duration) -> Self {
        ReplayGuard {
            local: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(max_age * 2 + Duration::from_secs(60))
                .build(),
        }
    }
}

impl ReplayGuard {
    fn key(cache: &crate::cache::CacheManager, signature: &[u8]) -> crate::cache::Key {
        cache.key("webhook", ["seen", hex::encode(signature).as_str()])
    }

    /// Claims a signature for one request: false when another request has it (done, or
    /// being done). Atomic on each instance and across instances sharing a cache.
    pub async fn claim(&self, cache: &crate::cache::CacheManager, signature: &[u8]) -> bool {
        let locally_new = self
            .local
            .entry(signature.to_vec())
            .or_insert(())
            .is_fresh();
        if !locally_new {
            return false;
        }
        match cache.incr(&Self::key(cache, signature), 1).await {
            Some(count) => count == 1,
            None => true,
        }
    }

    /// Gives a claimed signature back: its request did nothing.
    pub async fn release(&self, cache: &crate::cache::CacheManager, signature: &[u8]) {
        cache.delete(&Self::key(cache, signature)).await;
        self.local.invalidate(signature);
    }
}
