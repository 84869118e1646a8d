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
//!
//! The manager's methods are grouped by what they guarantee: `manager` (plain
//! operations), `tagged` (versions, tagged reads, invalidation), `traced` (pages stored
//! under the tags they read), `site` (statistics summed over instances). This file holds
//! the types they share.

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

mod manager;
mod site;
mod tagged;
mod traced;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use self::backend::memory::MemoryStore;
use self::backend::none::NoCache;
use self::backend::redis::{NearOptions, RedisBackend, RedisOptions, Server};
pub use self::backend::{Backend, BackendHealth, RecoveryHook, Sharing};
use self::codec::Codec;
use self::flight::{FlightKey, Flights};
pub use self::key::{Key, KeyMaker};
use self::manager::{record_error, record_result};
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
    // search results of popular queries, and the one entry of queries that found nothing
    ("search", 600),
    ("search_none", 600),
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
    bytes: bytes::Bytes,
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
    /// On a miss (and on a hit, from `get_tagged_for_update`), what a fill must be
    /// stored under (`set_tagged`); None when the backend failed and nothing may be
    /// stored.
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
