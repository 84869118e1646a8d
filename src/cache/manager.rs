//! The `CacheManager`'s plain operations: building it over its backend, keys and TTLs,
//! get/set/delete (counted, timed, a failing backend turned into a miss or a no-op),
//! raw content-addressed bytes, counters, health and the local statistics.

use super::*;

impl CacheManager {
    pub fn new(config: CacheConfig) -> Result<CacheManager, StoreError> {
        let server = match &config.url {
            CacheUrl::Redis(url) => Some(Server::Single(url.clone())),
            CacheUrl::RedisCluster(nodes) => Some(Server::Cluster(nodes.clone())),
            CacheUrl::Memory | CacheUrl::None => None,
        };
        let redis = match server {
            Some(server) => Some(Arc::new(RedisBackend::new(RedisOptions {
                server,
                prefix: config.key_prefix.clone(),
                timeout: config.timeout,
                near: config.near.clone(),
                tag_ttl: config.tag_ttl,
            })?)),
            None => None,
        };
        let backend: Arc<dyn Backend> = match (&redis, &config.url) {
            (Some(r), _) => r.clone(),
            (None, CacheUrl::None) => Arc::new(NoCache),
            (None, _) => Arc::new(MemoryStore::new(config.max_bytes)),
        };
        Ok(CacheManager {
            inner: Arc::new(Inner {
                backend,
                redis,
                keys: KeyMaker::new(&config.key_prefix, config.version),
                codec: Codec {
                    compress_over: config.compress_over,
                },
                config,
                stats: CacheStats::default(),
                op_seconds: Op::ALL.map(
                    |op| metrics::histogram!("folio_cache_operation_seconds", "op" => op.name()),
                ),
                errors: ErrorLog {
                    last: Mutex::new(None),
                    suppressed: AtomicU64::new(0),
                },
                flights: Flights::default(),
                write_epoch: AtomicU64::new(0),
                validated: moka::sync::Cache::builder()
                    .max_capacity(10_000)
                    .build_with_hasher(foldhash::fast::RandomState::default()),
                writes: tokio::sync::watch::channel(0).0,
                instance_id: format!(
                    "{}-{}-{:04x}",
                    std::env::var("HOSTNAME")
                        .ok()
                        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .unwrap_or_else(|| "host".into()),
                    std::process::id(),
                    rand::random::<u16>()
                ),
                history: history::History::new(Duration::from_secs(10)),
                stats_flushed: Mutex::new(HashMap::new()),
                stats_flush: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// A handle that does not keep the cache alive (for hooks the cache itself holds).
    pub fn downgrade(&self) -> WeakCacheManager {
        WeakCacheManager(Arc::downgrade(&self.inner))
    }

    /// A cache with the in-process backend and default settings (tests, tools).
    pub fn in_memory(prefix: &str) -> CacheManager {
        CacheManager::new(CacheConfig::new(CacheUrl::Memory, prefix)).expect("memory cache")
    }

    /// This process's name among the instances (host, pid, a random suffix).
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// Breaker state, near tier, and the like.
    pub fn health(&self) -> BackendHealth {
        self.inner.backend.health()
    }

    /// Installs what runs before a lost shared store serves again (see `RecoveryHook`).
    pub fn set_recovery_hook(&self, hook: RecoveryHook) {
        self.inner.backend.set_recovery_hook(hook);
    }

    /// Computations under way (single flight); tests check that none leak.
    pub fn flights_in_progress(&self) -> usize {
        self.inner.flights.in_flight()
    }

    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// Builds a key in this site's namespace.
    pub fn key<I, S>(&self, family: &'static str, parts: I) -> Key
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.inner.keys.key(family, parts)
    }

    pub fn ttl_for(&self, family: &str) -> Duration {
        self.inner
            .config
            .family_ttls
            .get(family)
            .copied()
            .unwrap_or(self.inner.config.default_ttl)
    }

    /// hits / (hits + misses): the counters only, cheap enough for every page.
    pub fn hit_ratio(&self) -> f64 {
        let t = self.inner.stats.totals();
        stats::ratio(t.hits, t.hits + t.misses)
    }

    pub fn stats(&self) -> StatsSnapshot {
        let mut snapshot = self.inner.stats.snapshot(self.backend_name());
        snapshot.health = Some(self.health());
        snapshot
    }

    /// Waits (up to `limit`) for the backend to serve, and checks that a Redis server
    /// has what the code needs. An unreachable Redis is not an error (the site runs on
    /// the database until it answers); a Redis older than 7 is.
    pub async fn check(&self, limit: Duration) -> Result<(), StoreError> {
        let Some(redis) = &self.inner.redis else {
            return Ok(());
        };
        if !redis.wait_until_serving(limit).await {
            return Err(StoreError::Unavailable);
        }
        let version = redis.server_version().await?;
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 7 {
            return Err(StoreError::Value(format!(
                "Redis {version} is too old: 7.0 or newer is needed (SET … NX GET, PEXPIRE … NX)"
            )));
        }
        if let Some((max, policy)) = redis.memory_policy().await {
            if max > 0 && policy == "noeviction" {
                tracing::warn!(
                    "Redis has maxmemory-policy noeviction: once full it refuses the tag bumps that invalidate entries (writes stay pending, other instances serve old entries until memory frees); use allkeys-lru or volatile-lru"
                );
            }
        }
        Ok(())
    }

    /// One round trip to the backend (none for in-process stores), timed.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        self.inner.backend.ping().await?;
        Ok(started.elapsed())
    }

    /// (entries, bytes, bound) of the in-process store, if this is one.
    pub fn local_size(&self) -> Option<(u64, u64, u64)> {
        let (entries, bytes) = self.inner.backend.local_size()?;
        Some((entries, bytes, self.inner.config.max_bytes))
    }

    /// Whether the backend serves now (Redis: breaker closed and heartbeat current).
    pub async fn wait_until_serving(&self, limit: Duration) -> bool {
        match &self.inner.redis {
            Some(redis) => redis.wait_until_serving(limit).await,
            None => true,
        }
    }

    /// `report`, counted against the key's family too.
    pub(super) fn report_for(&self, key: &Key, op: Op, error: StoreError) {
        if !matches!(error, StoreError::Off) {
            self.inner
                .stats
                .family_event(key.family(), FamilyEvent::Error);
        }
        self.report(op, error)
    }

    pub(super) fn report(&self, op: Op, error: StoreError) {
        if matches!(error, StoreError::Off) {
            return;
        }
        self.inner.stats.error();
        let log = &self.inner.errors;
        let mut last = log.last.lock();
        if last.is_none_or(|t| t.elapsed() >= BURST) {
            let suppressed = log.suppressed.swap(0, Relaxed);
            tracing::warn!(op = op.name(), %error, suppressed, "cache backend error; serving from the database");
            *last = Some(Instant::now());
        } else {
            log.suppressed.fetch_add(1, Relaxed);
        }
    }

    pub(super) fn timed(&self, op: Op, started: Instant) {
        let elapsed = started.elapsed();
        self.inner.stats.record_latency(op, elapsed);
        self.inner.op_seconds[op as usize].record(elapsed.as_secs_f64());
        crate::timing::add(crate::timing::Phase::Cache, elapsed);
    }

    /// A lookup's span in a trace (`cache.get`): the family (the first key's, for a
    /// batch), the backend, the result and, on Redis, the tier that answered (`near`, this
    /// process's copy, or `shared`; see `backend::note_tier`).
    pub(super) fn lookup_span(&self, family: &'static str, keys: usize) -> tracing::Span {
        tracing::debug_span!(
            "cache.get",
            cache.family = family,
            cache.keys = keys,
            cache.backend = self.backend_name(),
            cache.result = tracing::field::Empty,
            cache.tier = tracing::field::Empty,
        )
    }

    pub(super) fn decode<T: DeserializeOwned>(
        &self,
        key: &Key,
        bytes: Option<backend::Bytes>,
    ) -> Option<T> {
        let Some(bytes) = bytes else {
            self.inner.stats.miss(key.family());
            return None;
        };
        match self.inner.codec.decode(&bytes) {
            Ok(value) => {
                self.inner.stats.hit(key.family());
                Some(value)
            }
            Err(e) => {
                // A value from an older deploy, say: a miss, not an error page.
                self.report(Op::Get, e.into());
                self.inner.stats.miss(key.family());
                None
            }
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, key: &Key) -> Option<T> {
        self.get_shared(key, Sharing::Shared).await
    }

    /// `get` for an entry that never changes under its key (content-addressed, e.g. a
    /// response body keyed by its ETag): a near tier may keep a copy.
    pub async fn get_immutable<T: DeserializeOwned>(&self, key: &Key) -> Option<T> {
        self.get_shared(key, Sharing::Near).await
    }

    pub(super) async fn get_shared<T: DeserializeOwned>(
        &self,
        key: &Key,
        sharing: Sharing,
    ) -> Option<T> {
        let (span, read) = self.read_one(key, sharing).await;
        match read {
            Ok(bytes) => {
                let value = self.decode(key, bytes);
                record_result(&span, usize::from(value.is_some()), 1);
                value
            }
            Err(_) => {
                self.inner.stats.miss(key.family());
                record_error(&span);
                None
            }
        }
    }

    /// One key's bytes in its own `cache.get` span, timed; a failed read is reported
    /// here and returned. Counting it as a hit or a miss is the caller's (a value that
    /// does not decode is a miss).
    async fn read_one(
        &self,
        key: &Key,
        sharing: Sharing,
    ) -> (tracing::Span, StoreResult<Option<backend::Bytes>>) {
        let span = self.lookup_span(key.family(), 1);
        let started = Instant::now();
        let result = self
            .inner
            .backend
            .get_many(&[key.as_str()], sharing)
            .instrument(span.clone())
            .await;
        self.timed(Op::Get, started);
        let read = match result {
            Ok(mut values) => Ok(values.pop().flatten()),
            Err(e) => {
                let unreachable = StoreError::Redis(e.to_string());
                self.report_for(key, Op::Get, e);
                Err(unreachable)
            }
        };
        (span, read)
    }

    /// One round trip for all keys.
    pub async fn get_many<T: DeserializeOwned>(&self, keys: &[Key]) -> Vec<Option<T>> {
        let span = self.lookup_span(keys.first().map_or("", Key::family), keys.len());
        let started = Instant::now();
        let raw: Vec<&str> = keys.iter().map(Key::as_str).collect();
        let result = self
            .inner
            .backend
            .get_many(&raw, Sharing::Shared)
            .instrument(span.clone())
            .await;
        self.timed(Op::GetMany, started);
        match result {
            Ok(values) => {
                let values: Vec<Option<T>> = keys
                    .iter()
                    .zip(values)
                    .map(|(k, v)| self.decode(k, v))
                    .collect();
                record_result(&span, values.iter().flatten().count(), keys.len());
                values
            }
            Err(e) => {
                self.report(Op::GetMany, e);
                record_error(&span);
                keys.iter()
                    .map(|k| {
                        self.inner.stats.miss(k.family());
                        None
                    })
                    .collect()
            }
        }
    }

    /// Stores a value; `ttl` None takes the family's default. Failures are dropped.
    pub async fn set<T: Serialize + ?Sized>(&self, key: &Key, value: &T, ttl: Option<Duration>) {
        self.set_shared(key, value, ttl, Sharing::Shared).await
    }

    /// `set` for a content-addressed entry (see `get_immutable`).
    pub async fn set_immutable<T: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &T,
        ttl: Option<Duration>,
    ) {
        self.set_shared(key, value, ttl, Sharing::Near).await
    }

    pub(super) async fn set_shared<T: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &T,
        ttl: Option<Duration>,
        sharing: Sharing,
    ) {
        let ttl = ttl.unwrap_or_else(|| self.ttl_for(key.family()));
        let bytes = match self.inner.codec.encode(value) {
            Ok(b) => b,
            Err(e) => return self.report(Op::Set, e.into()),
        };
        self.store(key, bytes, ttl, sharing).await;
    }

    /// Writes encoded bytes, timed and counted; false when the store failed.
    pub(super) async fn store(
        &self,
        key: &Key,
        bytes: Vec<u8>,
        ttl: Duration,
        sharing: Sharing,
    ) -> bool {
        let started = Instant::now();
        let result = self
            .inner
            .backend
            .set_many(&[(key.as_str(), bytes)], ttl, sharing)
            .await;
        self.timed(Op::Set, started);
        match result {
            Ok(()) => {
                self.inner.stats.set(1);
                self.inner
                    .stats
                    .family_event(key.family(), FamilyEvent::Set);
                true
            }
            Err(e) => {
                self.report_for(key, Op::Set, e);
                false
            }
        }
    }

    /// Stores several values in one round trip (one TTL for all; None: each family's).
    pub async fn set_many<T: Serialize>(&self, items: &[(Key, T)], ttl: Option<Duration>) {
        let mut by_ttl: HashMap<Duration, Vec<(&str, Vec<u8>)>> = HashMap::new();
        for (key, value) in items {
            match self.inner.codec.encode(value) {
                Ok(bytes) => by_ttl
                    .entry(ttl.unwrap_or_else(|| self.ttl_for(key.family())))
                    .or_default()
                    .push((key.as_str(), bytes)),
                Err(e) => self.report(Op::SetMany, e.into()),
            }
        }
        let started = Instant::now();
        for (ttl, batch) in by_ttl {
            match self
                .inner
                .backend
                .set_many(&batch, ttl, Sharing::Shared)
                .await
            {
                Ok(()) => self.inner.stats.set(batch.len() as u64),
                Err(e) => self.report(Op::SetMany, e),
            }
        }
        self.timed(Op::SetMany, started);
    }

    pub async fn delete(&self, key: &Key) -> bool {
        self.delete_many(std::slice::from_ref(key)).await > 0
    }

    /// Returns how many keys existed.
    pub async fn delete_many(&self, keys: &[Key]) -> u64 {
        let raw: Vec<&str> = keys.iter().map(Key::as_str).collect();
        let started = Instant::now();
        let result = self.inner.backend.delete_many(&raw).await;
        self.deleted(Op::Delete, started, result)
    }

    /// Times and counts a deletion; a failure deleted nothing.
    pub(super) fn deleted(&self, op: Op, started: Instant, result: StoreResult<u64>) -> u64 {
        self.timed(op, started);
        match result {
            Ok(n) => {
                self.inner.stats.delete(n);
                n
            }
            Err(e) => {
                self.report(op, e);
                0
            }
        }
    }

    /// Deletes this site's keys matching a glob over what follows `{prefix}:{version}:`
    /// (`posts:*`, `blog_*`). Same semantics on both backends; returns the count.
    pub async fn delete_pattern(&self, pattern: &str) -> u64 {
        self.delete_full_pattern(&self.inner.keys.pattern(pattern))
            .await
    }

    /// Removes every key of this site (its prefix only; never FLUSHDB).
    pub async fn clear(&self) -> u64 {
        self.delete_full_pattern(&self.inner.keys.everything())
            .await
    }

    pub(super) async fn delete_full_pattern(&self, full: &str) -> u64 {
        let started = Instant::now();
        let result = self.inner.backend.delete_pattern(full).await;
        self.deleted(Op::DeletePattern, started, result)
    }

    /// Adds `delta` to a counter (created at 0 with the family's TTL); None when the
    /// backend fails or is off.
    pub async fn incr(&self, key: &Key, delta: i64) -> Option<i64> {
        let ttl = self.ttl_for(key.family());
        let started = Instant::now();
        let result = self.inner.backend.incr(key.as_str(), delta, ttl).await;
        self.timed(Op::Incr, started);
        result.map_err(|e| self.report(Op::Incr, e)).ok()
    }

    /// Reads a counter written by `incr`.
    pub async fn get_counter(&self, key: &Key) -> Option<i64> {
        let values = self
            .inner
            .backend
            .get_many(&[key.as_str()], Sharing::Shared)
            .await
            .map_err(|e| self.report(Op::Get, e))
            .ok()?;
        let bytes = values.into_iter().next().flatten()?;
        std::str::from_utf8(&bytes).ok()?.parse().ok()
    }

    /// The raw bytes of a content-addressed entry (a response body), copied nowhere.
    pub async fn get_raw_immutable(&self, key: &Key) -> Option<backend::Bytes> {
        self.get_raw(key, Sharing::Near).await.ok().flatten()
    }

    /// Raw bytes, timed and counted (a failed read counts as a miss too: the caller
    /// goes without).
    pub(super) async fn get_raw(
        &self,
        key: &Key,
        sharing: Sharing,
    ) -> StoreResult<Option<backend::Bytes>> {
        let (span, value) = self.read_one(key, sharing).await;
        match value {
            Ok(Some(_)) => self.inner.stats.hit(key.family()),
            _ => self.inner.stats.miss(key.family()),
        }
        match &value {
            Err(_) => record_error(&span),
            Ok(found) => record_result(&span, usize::from(found.is_some()), 1),
        }
        value
    }

    /// Stores raw bytes under a content address (see `get_raw_immutable`).
    pub async fn set_raw_immutable(&self, key: &Key, bytes: Vec<u8>, ttl: Option<Duration>) {
        let ttl = ttl.unwrap_or_else(|| self.ttl_for(key.family()));
        self.store(key, bytes, ttl, Sharing::Near).await;
    }

    /// Raw bytes from the shared store (never a near copy), telling an absent entry
    /// from an unreachable store: for sessions, which must not be taken for signed out
    /// when they are only out of reach.
    pub async fn get_raw_checked(&self, key: &Key) -> StoreResult<Option<backend::Bytes>> {
        self.get_raw(key, Sharing::Shared).await
    }

    /// Stores raw bytes in the shared store only; false when it failed.
    pub async fn set_raw_checked(&self, key: &Key, bytes: Vec<u8>, ttl: Duration) -> bool {
        self.store(key, bytes, ttl, Sharing::Shared).await
    }

    /// Where a session is kept (see `KeyMaker::session_key`).
    pub fn session_key(&self, id: &str) -> Key {
        self.inner.keys.session_key(id)
    }

    /// The name of the store this cache keeps entries in, as the database records its
    /// site's cache (`content::repository::cache_site`): instances agree on it exactly
    /// when they share entries and invalidations. None: it keeps nothing.
    pub fn site_name(&self) -> Option<String> {
        let prefix = &self.inner.config.key_prefix;
        match &self.inner.config.url {
            CacheUrl::None => None,
            CacheUrl::Memory => Some("memory".into()),
            CacheUrl::Redis(_) => Some(format!("redis:{prefix}")),
            CacheUrl::RedisCluster(_) => Some(format!("redis-cluster:{prefix}")),
        }
    }

    /// Whether the backend is shared by every instance (Redis or a Redis Cluster).
    pub fn is_shared(&self) -> bool {
        self.inner.redis.is_some()
    }

    /// Hit ratio and operations over the last `seconds` (this process).
    pub fn window(&self, seconds: u64) -> history::Window {
        self.inner
            .history
            .window(seconds, &self.inner.stats.totals())
    }

    /// The last hour, a point per sample (this process).
    pub fn chart(&self) -> Vec<history::Point> {
        self.inner.history.chart()
    }

    /// Samples the counters every 10 s (for `window` and `chart`) until dropped.
    pub fn spawn_history(&self) {
        let weak = self.downgrade();
        self.inner.history.record(&self.inner.stats.totals());
        let every = self.inner.history.every();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(manager) = weak.upgrade() else {
                    return;
                };
                manager.inner.history.record(&manager.inner.stats.totals());
            }
        });
    }

    /// Counts an event of a family the core does not see happen (a collapsed page
    /// miss, a stale page served).
    pub fn record_event(&self, family: &'static str, what: FamilyEvent) {
        self.inner.stats.family_event(family, what);
    }

    /// A value of `family` was computed after a miss outside `get_or_set_tagged` (a
    /// fragment, a page), taking `took`: what the monitor ranks misses by.
    pub fn record_fill(&self, family: &'static str, took: Duration) {
        self.inner.stats.fill(family, took);
    }

    /// The shared server's memory and evictions (Redis `INFO`); None in process.
    pub async fn server_memory(&self) -> Option<backend::ServerMemory> {
        self.inner
            .backend
            .server_memory()
            .await
            .map_err(|e| self.report(Op::Other, e))
            .ok()
            .flatten()
    }

    /// Entries an in-process store evicted to make room (not expired ones).
    pub fn evictions(&self) -> u64 {
        self.inner.backend.evictions()
    }

    /// Changes after each of this process's invalidations (see `web::warm`).
    pub fn subscribe_writes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.writes.subscribe()
    }
}

/// `cache.result` on a lookup's span: `hit`, `miss`, or `partial` for a batch.
pub(super) fn record_result(span: &tracing::Span, hits: usize, keys: usize) {
    if span.is_disabled() {
        return;
    }
    let result = match hits {
        0 => "miss",
        n if n == keys => "hit",
        _ => "partial",
    };
    span.record("cache.result", result);
}

/// A lookup the backend could not answer (counted as a miss).
pub(super) fn record_error(span: &tracing::Span) {
    span.record("cache.result", "error");
}
