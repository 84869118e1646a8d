//! The cache core: one `CacheManager` over pluggable backends (`backend/`: in-process
//! moka, Redis with a near tier and a circuit breaker, none), with keys, the codec,
//! statistics, tag versions and single flight.
//!
//! What lives here: everything about caching bytes under keys. What must not: knowledge
//! of content models. Callers name the tags an entry depends on and bump them after
//! writes (`invalidate_tags`).
//!
//! A failing cache never fails a request: every backend error is counted, logged at
//! most once per burst, and turned into a miss (get) or a no-op (set).

pub mod advice;
pub mod backend;
pub mod codec;
pub mod flight;
pub mod history;
pub mod key;
pub mod query;
pub mod stats;
pub mod trace;
pub mod url;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use self::backend::memory::MemoryStore;
use self::backend::none::NoCache;
use self::backend::redis::{NearOptions, RedisBackend, RedisOptions, Server};
pub use self::backend::{Backend, BackendHealth, RecoveryHook, Sharing};
use self::codec::Codec;
use self::flight::{FlightKey, Flights};
pub use self::key::{Key, KeyMaker};
pub use self::stats::{CacheStats, FamilyEvent, Op, StatsSnapshot};
pub use self::trace::TagTrace;
pub use self::url::CacheUrl;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("bad value: {0}")]
    Value(String),
    #[error("Redis is bypassed until it answers again (circuit breaker open)")]
    Unavailable,
    /// `CACHE_URL=none`: not an error worth counting.
    #[error("the cache is off")]
    Off,
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
}

impl StoreError {
    /// The same error for another caller (a read shared by several, see
    /// `backend::near`); a codec error, which reads of raw bytes never give, keeps its
    /// message.
    pub fn copy(&self) -> StoreError {
        match self {
            StoreError::Redis(m) => StoreError::Redis(m.clone()),
            StoreError::Timeout(d) => StoreError::Timeout(*d),
            StoreError::Value(m) => StoreError::Value(m.clone()),
            StoreError::Unavailable => StoreError::Unavailable,
            StoreError::Off => StoreError::Off,
            StoreError::Codec(e) => StoreError::Value(e.to_string()),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Default TTL per key family, following the site's strategy: static content hours,
/// lists minutes, near-real-time under two minutes.
/// Overridden per family with `CACHE_TTLS=family=seconds,…`.
pub const DEFAULT_FAMILY_TTLS: &[(&str, u64)] = &[
    ("personal_info", 6 * 3600),
    ("social_links", 6 * 3600),
    ("tools", 6 * 3600),
    // Changes drop a post at once; the TTL only bounds how old its view count may be.
    ("post", 600),
    ("posts", 600),
    ("tags", 1800),
    ("fragment", 900),
    ("response", 300),
    ("popular", 60),
    // failed sign-ins are counted for this long
    ("login_attempts", 900),
    // used webhook signatures: longer than the ±5 minutes a signed request is accepted
    ("webhook", 660),
    // contact messages are counted per address for this long
    ("contact_sends", 3600),
];

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub url: CacheUrl,
    pub key_prefix: String,
    /// Bumping it orphans every old key at once (as Django's VERSION).
    pub version: u32,
    /// Per Redis command, measured on the Redis I/O thread.
    pub timeout: Duration,
    /// Bound of the in-process cache.
    pub max_bytes: u64,
    pub compress_over: usize,
    pub default_ttl: Duration,
    pub family_ttls: HashMap<String, Duration>,
    /// The near tier in front of Redis (None: off).
    pub near: Option<NearOptions>,
    /// How long Redis keeps a tag version after it was made or bumped: at least the
    /// longest entry TTL plus the stale window, so a version lapses only after what
    /// was stored under it (see `Backend::create_tag_versions`).
    pub tag_ttl: Duration,
}

impl CacheConfig {
    pub fn new(url: CacheUrl, key_prefix: &str) -> Self {
        CacheConfig {
            url,
            key_prefix: key_prefix.to_string(),
            version: 1,
            timeout: Duration::from_millis(100),
            max_bytes: 64 * 1024 * 1024,
            compress_over: 1024,
            default_ttl: Duration::from_secs(300),
            family_ttls: DEFAULT_FAMILY_TTLS
                .iter()
                .map(|(f, s)| (f.to_string(), Duration::from_secs(*s)))
                .collect(),
            near: Some(NearOptions {
                max_bytes: 32 * 1024 * 1024,
                max_ttl: Duration::from_secs(60),
            }),
            tag_ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// The longest TTL any entry gets from this configuration.
    pub fn longest_ttl(&self) -> Duration {
        self.family_ttls
            .values()
            .copied()
            .chain([self.default_ttl])
            .max()
            .unwrap_or(self.default_ttl)
    }
}

/// Logs a backend error at most once per `BURST`, with how many were suppressed.
struct ErrorLog {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

const BURST: Duration = Duration::from_secs(10);

/// See `CacheManager::downgrade`.
#[derive(Clone)]
pub struct WeakCacheManager(Weak<Inner>);

impl WeakCacheManager {
    pub fn upgrade(&self) -> Option<CacheManager> {
        self.0.upgrade().map(|inner| CacheManager { inner })
    }
}

/// The one cache API. Cheap to clone.
#[derive(Clone)]
pub struct CacheManager {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    /// The Redis backend again, for what only it has (version check, readiness).
    redis: Option<Arc<RedisBackend>>,
    keys: KeyMaker,
    codec: Codec,
    config: CacheConfig,
    stats: CacheStats,
    /// `folio_cache_operation_seconds` per operation, registered once: looking a
    /// histogram up by name and labels costs more than recording into it.
    op_seconds: [metrics::Histogram; Op::ALL.len()],
    errors: ErrorLog,
    flights: Flights,
    /// Bumped by every invalidation from this process (see `flight`).
    write_epoch: AtomicU64,
    /// Samples of the counters for the windowed ratios (see `history`).
    history: history::History,
    /// Names this process in the per-instance statistics: host, pid and a random part
    /// (several managers may live in one process).
    instance_id: String,
    /// Counts this process's invalidations, for whoever re-warms after them.
    writes: tokio::sync::watch::Sender<u64>,
    /// Traced entries already checked against their tags (see `get_traced`).
    validated: moka::sync::Cache<String, Validated, foldhash::fast::RandomState>,
    /// The counters as last added to the site-wide statistics.
    stats_flushed: Mutex<HashMap<String, u64>>,
    stats_flush: tokio::sync::Mutex<()>,
}

#[derive(Serialize)]
struct TaggedRef<'a, T> {
    versions: &'a [u64],
    value: &'a T,
}

#[derive(Serialize)]
struct TracedRef<'a, T> {
    tags: Vec<&'a str>,
    versions: Vec<u64>,
    value: &'a T,
}

#[derive(Deserialize)]
struct Traced<T> {
    tags: Vec<String>,
    versions: Vec<u64>,
    value: T,
}

/// A traced entry as last validated (see `get_traced`).
#[derive(Clone)]
struct Validated {
    /// Held, so the pointer cannot be reused by another value while this is kept.
    bytes: Arc<[u8]>,
    epoch: u64,
    value: Arc<dyn std::any::Any + Send + Sync>,
}

/// One instance's counters, as it last published them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InstanceRow {
    pub id: String,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub hit_ratio: f64,
    pub seen_unix: u64,
    pub this_process: bool,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The result of `get_tagged`.
pub struct TaggedLookup<T> {
    pub value: Option<T>,
    /// On a miss, what a fill must be stored under (`set_tagged`); None when the
    /// backend failed and nothing may be stored.
    pub versions: Option<FillVersions>,
}

/// The tag versions a fill was computed under, read before computing; a tag with no
/// version yet gets one only when the fill is stored (`CacheManager::set_tagged`), so
/// looking up something that does not exist leaves nothing behind.
#[derive(Debug, Clone)]
pub struct FillVersions {
    tag_keys: Vec<String>,
    versions: Vec<Option<u64>>,
}

impl FillVersions {
    /// Tells fills apart in single flight.
    pub fn versions(&self) -> &[Option<u64>] {
        &self.versions
    }
}

#[derive(Deserialize)]
struct Tagged<T> {
    versions: Vec<u64>,
    value: T,
}

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
    fn report_for(&self, key: &Key, op: Op, error: StoreError) {
        if !matches!(error, StoreError::Off) {
            self.inner
                .stats
                .family_event(key.family(), FamilyEvent::Error);
        }
        self.report(op, error)
    }

    fn report(&self, op: Op, error: StoreError) {
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

    fn timed(&self, op: Op, started: Instant) {
        let elapsed = started.elapsed();
        self.inner.stats.record_latency(op, elapsed);
        self.inner.op_seconds[op as usize].record(elapsed.as_secs_f64());
        crate::timing::add(crate::timing::Phase::Cache, elapsed);
    }

    fn decode<T: DeserializeOwned>(&self, key: &Key, bytes: Option<Arc<[u8]>>) -> Option<T> {
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

    async fn get_shared<T: DeserializeOwned>(&self, key: &Key, sharing: Sharing) -> Option<T> {
        let started = Instant::now();
        let result = self.inner.backend.get_many(&[key.as_str()], sharing).await;
        self.timed(Op::Get, started);
        match result {
            Ok(mut values) => self.decode(key, values.pop().flatten()),
            Err(e) => {
                self.report_for(key, Op::Get, e);
                self.inner.stats.miss(key.family());
                None
            }
        }
    }

    /// One round trip for all keys.
    pub async fn get_many<T: DeserializeOwned>(&self, keys: &[Key]) -> Vec<Option<T>> {
        let started = Instant::now();
        let raw: Vec<&str> = keys.iter().map(Key::as_str).collect();
        let result = self.inner.backend.get_many(&raw, Sharing::Shared).await;
        self.timed(Op::GetMany, started);
        match result {
            Ok(values) => keys
                .iter()
                .zip(values)
                .map(|(k, v)| self.decode(k, v))
                .collect(),
            Err(e) => {
                self.report(Op::GetMany, e);
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

    async fn set_shared<T: Serialize + ?Sized>(
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
    async fn store(&self, key: &Key, bytes: Vec<u8>, ttl: Duration, sharing: Sharing) -> bool {
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
    fn deleted(&self, op: Op, started: Instant, result: StoreResult<u64>) -> u64 {
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

    async fn delete_full_pattern(&self, full: &str) -> u64 {
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

    /// The cached value, or `compute`'s result stored under `key`, for an entry that
    /// depends on `tags` (none for a plain TTL entry): it is served only while every
    /// tag still has the version it was computed under, so `invalidate_tags` drops it
    /// everywhere at once. Concurrent misses compute once (see `flight`).
    ///
    /// The fill race (a reader computes from old rows, a writer commits and bumps, then
    /// the reader stores) is closed by reading the versions *before* computing and
    /// storing under those: a late fill lands under versions nobody asks for again.
    pub async fn get_or_set_tagged<T, E, F, Fut>(
        &self,
        key: &Key,
        tags: &[&str],
        ttl: Option<Duration>,
        compute: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.get_or_set_tagged_if(key, tags, ttl, compute, |_| true)
            .await
    }

    /// `get_or_set_tagged` that stores a computed value only if `keep` accepts it.
    pub async fn get_or_set_tagged_if<T, E, F, Fut>(
        &self,
        key: &Key,
        tags: &[&str],
        ttl: Option<Duration>,
        compute: F,
        keep: fn(&T) -> bool,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let epoch = self.inner.write_epoch.load(Relaxed);
        let lookup = self.get_tagged::<T>(key, tags).await;
        if let Some(value) = lookup.value {
            return Ok(value);
        }
        let versions = lookup.versions;
        // Readers that saw different versions (or this process's writes) must not share
        // a computation: one begun before a write must not answer a reader after it.
        let flight = FlightKey::new::<T, E>(
            key.as_str(),
            versions.as_ref().map(FillVersions::versions),
            epoch,
        );
        let led = std::sync::atomic::AtomicBool::new(false);
        let result = self
            .inner
            .flights
            .run(flight, || async {
                led.store(true, Relaxed);
                let started = Instant::now();
                let value = compute().await?;
                self.inner.stats.fill(key.family(), started.elapsed());
                if let Some(versions) = versions.as_ref().filter(|_| keep(&value)) {
                    self.set_tagged(key, versions, &value, ttl).await;
                }
                Ok(value)
            })
            .await;
        if !led.load(Relaxed) {
            self.inner
                .stats
                .family_event(key.family(), FamilyEvent::Coalesced);
        }
        result
    }

    /// Looks up a tagged entry: the value if it is still current, and on a miss the
    /// versions a fill must be stored under (`set_tagged`); None versions mean the
    /// backend failed and nothing should be stored. One round trip on Redis.
    pub async fn get_tagged<T: DeserializeOwned>(
        &self,
        key: &Key,
        tags: &[&str],
    ) -> TaggedLookup<T> {
        self.get_many_tagged(&[(key.clone(), tags)])
            .await
            .pop()
            .expect("one lookup per entry")
    }

    /// `get_tagged` for many entries in one round trip: their keys and the current
    /// versions of all their tags in one MGET (a second only when a tag has no version
    /// yet, which happens once per tag).
    pub async fn get_many_tagged<T: DeserializeOwned>(
        &self,
        entries: &[(Key, &[&str])],
    ) -> Vec<TaggedLookup<T>> {
        let mut tag_names: Vec<&str> = entries
            .iter()
            .flat_map(|(_, tags)| tags.iter().copied())
            .collect();
        tag_names.sort_unstable();
        tag_names.dedup();
        let tag_keys: Vec<String> = tag_names
            .iter()
            .map(|t| self.inner.keys.tag_key(t))
            .collect();
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        let started = Instant::now();
        let lookup = self.inner.backend.get_many_tagged(&keys, &tag_keys).await;
        self.timed(
            if entries.len() == 1 {
                Op::Get
            } else {
                Op::GetMany
            },
            started,
        );
        let (values, versions, failed) = match lookup {
            Ok((values, versions)) => (values, versions, false),
            Err(e) => {
                self.report(Op::Get, e);
                (vec![None; keys.len()], vec![None; tag_keys.len()], true)
            }
        };
        if TagTrace::active() {
            for (tag_key, version) in tag_keys.iter().zip(&versions) {
                match failed {
                    false => TagTrace::note(tag_key, *version),
                    true => TagTrace::failed(),
                }
            }
        }
        let index = |t: &&str| tag_names.binary_search(t).expect("tag in union");
        entries
            .iter()
            .zip(values)
            .map(|((key, tags), bytes)| {
                let current: Option<Vec<u64>> = tags.iter().map(|t| versions[index(t)]).collect();
                if let (Some(bytes), Some(current)) = (&bytes, current) {
                    match self.inner.codec.decode::<Tagged<T>>(bytes) {
                        Ok(tagged) if tagged.versions == current => {
                            self.inner.stats.hit(key.family());
                            return TaggedLookup {
                                value: Some(tagged.value),
                                versions: None,
                            };
                        }
                        Ok(_) => {} // invalidated since it was stored
                        Err(e) => self.report(Op::Get, e.into()),
                    }
                }
                self.inner.stats.miss(key.family());
                TaggedLookup {
                    value: None,
                    versions: (!failed).then(|| FillVersions {
                        tag_keys: tags.iter().map(|t| tag_keys[index(t)].clone()).collect(),
                        versions: tags.iter().map(|t| versions[index(t)]).collect(),
                    }),
                }
            })
            .collect()
    }

    /// Versions for every tag of a fill: those read before computing, and a new one for
    /// each tag that had none. None when the fill must not be stored: the backend
    /// failed, or a tag read as absent has a version now (a write or another fill made
    /// it meanwhile, and which came first cannot be told).
    async fn complete_versions(
        &self,
        tag_keys: &[&str],
        versions: &[Option<u64>],
    ) -> Option<Vec<u64>> {
        let missing: Vec<String> = tag_keys
            .iter()
            .zip(versions)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string())
            .collect();
        if missing.is_empty() {
            return versions.iter().copied().collect();
        }
        let created = self
            .inner
            .backend
            .create_tag_versions(&missing)
            .await
            .map_err(|e| self.report(Op::Set, e))
            .ok()?;
        let mut created = created.into_iter();
        versions
            .iter()
            .map(|v| v.or_else(|| created.next().flatten()))
            .collect()
    }

    /// Stores a fill under the tag versions `get_tagged` returned before it was computed
    /// (creating those that did not exist yet, see `complete_versions`).
    pub async fn set_tagged<T: Serialize>(
        &self,
        key: &Key,
        fill: &FillVersions,
        value: &T,
        ttl: Option<Duration>,
    ) {
        let tag_keys: Vec<&str> = fill.tag_keys.iter().map(String::as_str).collect();
        let Some(versions) = self.complete_versions(&tag_keys, &fill.versions).await else {
            return;
        };
        // Checked against the tag versions on every read: safe in a near tier.
        self.set_shared(
            key,
            &TaggedRef {
                versions: &versions,
                value,
            },
            ttl,
            Sharing::Near,
        )
        .await
    }

    /// Records the current versions of `tags` in the running trace (see `trace`), for a
    /// value that depends on them whatever its lookups read.
    pub async fn trace_tags(&self, tags: &[&str]) {
        let tag_keys: Vec<String> = tags.iter().map(|t| self.inner.keys.tag_key(t)).collect();
        match self.inner.backend.get_many_tagged(&[], &tag_keys).await {
            Ok((_, versions)) => {
                for (tag_key, version) in tag_keys.iter().zip(versions) {
                    TagTrace::note(tag_key, version);
                }
            }
            Err(e) => {
                self.report(Op::Get, e);
                TagTrace::failed();
            }
        }
    }

    /// A value stored by `set_traced`, if every tag its trace recorded still has the
    /// version it was built under. Two reads: the entry, then its tags' versions (both
    /// in-process with a near tier). Where the backend has a tag epoch, an entry already
    /// validated (the same bytes) under the current epoch is answered from its decoded
    /// copy, without decoding or checking its tags again: a warm page's lookup.
    pub async fn get_traced<T>(&self, key: &Key) -> Option<Arc<T>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let started = Instant::now();
        let result = self
            .inner
            .backend
            .get_many(&[key.as_str()], Sharing::Near)
            .await;
        let bytes = match result {
            Ok(mut values) => values.pop().flatten(),
            Err(e) => {
                self.report(Op::Get, e);
                None
            }
        };
        let epoch = self.inner.backend.tag_epoch();
        let memo = bytes.as_ref().zip(epoch).and_then(|(bytes, epoch)| {
            let v = self.inner.validated.get(key.as_str())?;
            (Arc::ptr_eq(&v.bytes, bytes) && v.epoch == epoch)
                .then(|| v.value.downcast::<T>().ok())
                .flatten()
        });
        let current = match (memo, bytes) {
            (Some(value), _) => Some(value),
            (None, Some(bytes)) => {
                let value = self.validate_traced::<T>(&bytes).await.map(Arc::new);
                if let (Some(value), Some(epoch)) = (&value, epoch) {
                    self.inner.validated.insert(
                        key.as_str().to_string(),
                        Validated {
                            bytes,
                            epoch,
                            value: value.clone(),
                        },
                    );
                }
                value
            }
            (None, None) => None,
        };
        self.timed(Op::Get, started);
        match current {
            Some(_) => self.inner.stats.hit(key.family()),
            None => self.inner.stats.miss(key.family()),
        }
        current
    }

    /// Decodes a traced entry and checks its tags' current versions.
    async fn validate_traced<T: DeserializeOwned>(&self, bytes: &[u8]) -> Option<T> {
        let traced = match self.inner.codec.decode::<Traced<T>>(bytes) {
            Ok(traced) => traced,
            Err(e) => {
                self.report(Op::Get, e.into());
                return None;
            }
        };
        if traced.tags.is_empty() {
            return Some(traced.value);
        }
        match self.inner.backend.get_many_tagged(&[], &traced.tags).await {
            Ok((_, versions)) => versions
                .iter()
                .zip(&traced.versions)
                .all(|(now, then)| *now == Some(*then))
                .then_some(traced.value),
            Err(e) => {
                self.report(Op::Get, e);
                None
            }
        }
    }

    /// Stores a value built while `trace` was recorded, under the versions it saw;
    /// nothing if the trace is incomplete (a lookup failed).
    pub async fn set_traced<T: Serialize>(
        &self,
        key: &Key,
        trace: &TagTrace,
        value: &T,
        ttl: Option<Duration>,
    ) -> bool {
        if !trace.is_complete() {
            return false;
        }
        let (tags, versions): (Vec<&str>, Vec<Option<u64>>) = trace.tag_keys().unzip();
        let Some(versions) = self.complete_versions(&tags, &versions).await else {
            return false;
        };
        // Checked against the tag versions on every read: safe in a near tier.
        self.set_shared(
            key,
            &TracedRef {
                tags,
                versions,
                value,
            },
            ttl,
            Sharing::Near,
        )
        .await;
        true
    }

    /// The raw bytes of a content-addressed entry (a response body), copied nowhere.
    pub async fn get_raw_immutable(&self, key: &Key) -> Option<backend::Bytes> {
        self.get_raw(key, Sharing::Near).await.ok().flatten()
    }

    /// Raw bytes, timed and counted (a failed read counts as a miss too: the caller
    /// goes without).
    async fn get_raw(&self, key: &Key, sharing: Sharing) -> StoreResult<Option<backend::Bytes>> {
        let started = Instant::now();
        let result = self.inner.backend.get_many(&[key.as_str()], sharing).await;
        self.timed(Op::Get, started);
        let value = match result {
            Ok(mut values) => Ok(values.pop().flatten()),
            Err(e) => {
                let unreachable = StoreError::Redis(e.to_string());
                self.report_for(key, Op::Get, e);
                Err(unreachable)
            }
        };
        match value {
            Ok(Some(_)) => self.inner.stats.hit(key.family()),
            _ => self.inner.stats.miss(key.family()),
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

    /// Drops every tagged entry that depends on any of `tags`, on every instance sharing
    /// this backend, by giving each tag a new version. O(tags), whatever the number of
    /// entries. Returns false if the backend could not be told (the caller may retry;
    /// entries then expire by TTL).
    pub async fn invalidate_tags(&self, tags: &[&str]) -> bool {
        let tag_keys: Vec<String> = tags.iter().map(|t| self.inner.keys.tag_key(t)).collect();
        let started = Instant::now();
        self.inner.write_epoch.fetch_add(1, Relaxed);
        let result = self.inner.backend.bump_tags(&tag_keys).await;
        self.timed(Op::Delete, started);
        self.inner.writes.send_modify(|n| *n += 1);
        match result {
            Ok(()) => {
                self.inner.stats.delete(tag_keys.len() as u64);
                true
            }
            Err(e) => {
                self.report(Op::Delete, e);
                false
            }
        }
    }

    /// Statistics summed over every process that shares this Redis (this process's
    /// latency percentiles); the local snapshot on the other backends.
    pub async fn site_stats(&self) -> StatsSnapshot {
        let local = self.stats();
        let Ok(Some(fields)) = self.inner.backend.read_hash(&self.stats_hash()).await else {
            return local;
        };
        let mut totals = stats::Totals::default();
        let mut families: HashMap<String, (u64, u64)> = HashMap::new();
        for (field, value) in fields {
            match field.as_str() {
                "hits" => totals.hits = value,
                "misses" => totals.misses = value,
                "sets" => totals.sets = value,
                "deletes" => totals.deletes = value,
                "errors" => totals.errors = value,
                other => {
                    if let Some(rest) = other.strip_prefix("family:") {
                        if let Some((name, kind)) = rest.rsplit_once(':') {
                            let entry = families.entry(name.to_string()).or_default();
                            if kind == "hits" {
                                entry.0 = value
                            } else {
                                entry.1 = value
                            }
                        }
                    }
                }
            }
        }
        let mut families: Vec<_> = families
            .into_iter()
            .map(|(n, (h, m))| stats::FamilySnapshot::new(&n, h, m))
            .collect();
        families.sort_by(|a, b| a.name.cmp(&b.name));
        StatsSnapshot::new(
            self.backend_name(),
            totals,
            Duration::from_secs(local.uptime_seconds),
            local.latency,
            families,
        )
    }

    /// One row per instance sharing this Redis (seen in the last 30 s): this process's
    /// counters are published with the site-wide ones. Empty on in-process stores.
    pub async fn instances(&self) -> Vec<InstanceRow> {
        let Ok(Some(fields)) = self.inner.backend.read_hash(&self.instances_hash()).await else {
            return Vec::new();
        };
        let mut rows: std::collections::BTreeMap<String, InstanceRow> = Default::default();
        for (field, value) in fields {
            let Some((id, what)) = field.rsplit_once(':') else {
                continue;
            };
            let row = rows.entry(id.to_string()).or_insert_with(|| InstanceRow {
                id: id.to_string(),
                ..Default::default()
            });
            match what {
                "hits" => row.hits = value,
                "misses" => row.misses = value,
                "errors" => row.errors = value,
                "seen" => row.seen_unix = value,
                _ => {}
            }
        }
        let now = unix_now();
        rows.into_values()
            .filter(|r| r.seen_unix + 30 >= now)
            .map(|mut r| {
                r.hit_ratio = stats::ratio(r.hits, r.hits + r.misses);
                r.this_process = r.id == self.inner.instance_id;
                r
            })
            .collect()
    }

    fn instances_hash(&self) -> String {
        format!("{}@instances", self.inner.keys.prefix())
    }

    /// Forgets the site-wide counters (tests clean up with it).
    pub async fn reset_site_stats(&self) {
        let _ = self
            .inner
            .backend
            .delete_many(&[&self.stats_hash(), &self.instances_hash()])
            .await;
    }

    fn stats_hash(&self) -> String {
        // Outside `{prefix}:*`, so `clear` keeps the statistics.
        format!("{}@stats", self.inner.keys.prefix())
    }

    /// With Redis, adds this process's counters to a site-wide hash every `every`, so
    /// all instances report one hit ratio. Stops when the manager is dropped.
    pub fn spawn_stats_flusher(&self, every: Duration) {
        if self.inner.redis.is_none() {
            return;
        }
        let weak = self.downgrade();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(manager) = weak.upgrade() else {
                    return;
                };
                manager.flush_stats().await;
            }
        });
    }

    /// Sends the counter deltas since the last flush; on failure they are sent next time.
    pub async fn flush_stats(&self) {
        let (totals, families) = self.inner.stats.totals_and_families();
        let mut now: Vec<(String, u64)> = vec![
            ("hits".into(), totals.hits),
            ("misses".into(), totals.misses),
            ("sets".into(), totals.sets),
            ("deletes".into(), totals.deletes),
            ("errors".into(), totals.errors),
        ];
        for (name, hits, misses) in families {
            now.push((format!("family:{name}:hits"), hits));
            now.push((format!("family:{name}:misses"), misses));
        }
        // One flush at a time: two would both send the same deltas.
        let _one = self.inner.stats_flush.lock().await;
        let deltas: Vec<(String, u64)> = {
            let flushed = self.inner.stats_flushed.lock();
            now.iter()
                .map(|(f, v)| (f.clone(), v - flushed.get(f).copied().unwrap_or(0)))
                .collect()
        };
        if self
            .inner
            .backend
            .add_to_hash(&self.stats_hash(), &deltas)
            .await
            .is_ok()
        {
            self.inner.stats_flushed.lock().extend(now);
        }
        // This instance's row (absolute values), and rows of instances gone a minute.
        let id = &self.inner.instance_id;
        let totals = self.inner.stats.totals();
        let row = [
            (format!("{id}:hits"), totals.hits),
            (format!("{id}:misses"), totals.misses),
            (format!("{id}:errors"), totals.errors),
            (format!("{id}:seen"), unix_now()),
        ];
        let gone: Vec<String> = match self.inner.backend.read_hash(&self.instances_hash()).await {
            Ok(Some(fields)) => {
                let stale: Vec<&str> = fields
                    .iter()
                    .filter(|(f, seen)| f.ends_with(":seen") && seen + 60 < unix_now())
                    .filter_map(|(f, _)| f.strip_suffix(":seen"))
                    .collect();
                fields
                    .iter()
                    .filter(|(f, _)| f.rsplit_once(':').is_some_and(|(i, _)| stale.contains(&i)))
                    .map(|(f, _)| f.clone())
                    .collect()
            }
            _ => Vec::new(),
        };
        let _ = self
            .inner
            .backend
            .set_in_hash(&self.instances_hash(), &row, &gone)
            .await;
    }
}
