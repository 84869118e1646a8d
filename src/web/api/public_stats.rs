//! What anonymous callers of `/api/cache/stats/` get (see `api::cache`).

/// What anonymous callers of the statistics get: this instance's totals, computed at
/// most once a second whatever the request rate.
#[derive(Default)]
pub struct PublicStats {
    last: parking_lot::Mutex<Option<(std::time::Instant, serde_json::Value)>>,
}

impl PublicStats {
    pub fn get(&self, cache: &crate::cache::CacheManager) -> serde_json::Value {
        let mut last = self.last.lock();
        if let Some((at, body)) = last.as_ref() {
            if at.elapsed() < std::time::Duration::from_secs(1) {
                return body.clone();
            }
        }
        let stats = cache.stats();
        let body = serde_json::json!({
            "instance": {
                "backend": cache.backend_name(),
                "hits": stats.totals.hits,
                "misses": stats.totals.misses,
                "hit_ratio": stats.hit_ratio,
            },
            "health": { "breaker": cache.health().breaker },
            "detail": "sign in as an admin, or send Authorization: Bearer <CACHE_ADMIN_TOKEN>, for the full statistics",
        });
        *last = Some((std::time::Instant::now(), body.clone()));
        body
    }
}
