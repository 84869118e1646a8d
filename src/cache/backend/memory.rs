//! The in-process backend: moka (TinyLFU admission and eviction, bounded by bytes
//! through a weigher, a TTL per entry). Lookups are synchronous and never leave the
//! thread; the near tier in front of Redis is one of these too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;
use parking_lot::Mutex;

use super::{fill_version, usable_for_fill, write_version, Backend, Bytes, Sharing, TaggedRead};
use crate::cache::key::glob_match;
use crate::cache::{StoreError, StoreResult};

#[derive(Clone)]
struct Entry {
    value: Bytes,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, entry: &Entry, _now: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Entry,
        _now: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Tag versions kept in process: far more than a site has tags (one per post, tag and
/// model), so only junk could reach it, and junk creates none.
const MAX_TAGS: u64 = 100_000;

#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<String, Entry, foldhash::fast::RandomState>,
    /// Tag versions, apart from the entries and bounded by count. Losing one is safe:
    /// versions are random and never repeat, so a tag that lost its version gets a new
    /// one at the next fill and every entry stored under the old one misses. Only
    /// tags of things that exist get one (see `Backend::create_tag_versions`).
    tags: Cache<String, u64, foldhash::fast::RandomState>,
    /// Orders bumps against the epoch (see `bump_tags_now`).
    bumping: Arc<Mutex<()>>,
    /// Counts bumps (see `Backend::tag_epoch`).
    epoch: Arc<std::sync::atomic::AtomicU64>,
    /// Entries evicted for room (size), not expired ones.
    evicted: Arc<std::sync::atomic::AtomicU64>,
}

impl MemoryStore {
    pub fn new(max_bytes: u64) -> Self {
        let evicted: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let counter = evicted.clone();
        let cache = Cache::builder()
            .eviction_listener(move |_, _, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
            .max_capacity(max_bytes)
            .weigher(|k: &String, e: &Entry| {
                (k.len() + e.value.len() + 64)
                    .try_into()
                    .unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            // Keys are hashed on every hit; foldhash is seeded per process like std's,
            // at a fraction of SipHash's cost.
            .build_with_hasher(foldhash::fast::RandomState::default());
        MemoryStore {
            cache,
            tags: Cache::builder()
                .max_capacity(MAX_TAGS)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            bumping: Arc::default(),
            epoch: Arc::default(),
            evicted,
        }
    }

    pub(super) fn get_many_now(&self, keys: &[&str]) -> StoreResult<Vec<Option<Bytes>>> {
        Ok(keys
            .iter()
            .map(|k| self.cache.get(*k).map(|e| e.value))
            .collect())
    }

    pub(super) fn set_many_now(&self, items: &[(&str, Vec<u8>)], ttl: Duration) -> StoreResult<()> {
        for (key, value) in items {
            self.cache.insert(
                key.to_string(),
                Entry {
                    value: Bytes::copy_from_slice(value),
                    ttl,
                },
            );
        }
        Ok(())
    }

    /// Keeps a value already shared (no copy).
    pub(super) fn keep(&self, key: &str, value: Bytes, ttl: Duration) {
        self.cache.insert(key.to_string(), Entry { value, ttl });
    }

    fn delete_many_now(&self, keys: &[&str]) -> StoreResult<u64> {
        Ok(keys
            .iter()
            .filter(|k| self.cache.remove(**k).is_some())
            .count() as u64)
    }

    /// Walks every entry: fine for an in-process cache of bounded size.
    pub(super) fn delete_pattern_now(&self, pattern: &str) -> StoreResult<u64> {
        let doomed: Vec<Arc<String>> = self
            .cache
            .iter()
            .filter(|(k, _)| glob_match(pattern, k))
            .map(|(k, _)| k)
            .collect();
        Ok(doomed
            .iter()
            .filter(|k| self.cache.remove(k.as_str()).is_some())
            .count() as u64)
    }

    /// (entries, weighted bytes).
    pub(super) fn size(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
    }

    /// Drops every entry.
    pub(super) fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Atomic per key (moka's compute), counters stored as decimal text as in Redis.
    fn incr_now(&self, key: &str, delta: i64, ttl: Duration) -> StoreResult<i64> {
        let mut result = Err(StoreError::Value("value is not an integer".into()));
        self.cache
            .entry(key.to_string())
            .and_compute_with(|current| {
                let (old, ttl) = match current {
                    Some(e) => {
                        let entry = e.into_value();
                        match std::str::from_utf8(&entry.value)
                            .ok()
                            .and_then(|s| s.parse::<i64>().ok())
                        {
                            Some(n) => (n, entry.ttl),
                            None => return moka::ops::compute::Op::Nop,
                        }
                    }
                    None => (0, ttl),
                };
                let new = old.saturating_add(delta);
                result = Ok(new);
                moka::ops::compute::Op::Put(Entry {
                    value: new.to_string().into_bytes().into(),
                    ttl,
                })
            });
        result
    }

    /// See `Backend::create_tag_versions`.
    fn create_tag_versions_now(&self, tag_keys: &[String]) -> Vec<Option<u64>> {
        tag_keys
            .iter()
            .map(|k| {
                let entry = self.tags.entry(k.clone()).or_insert_with(fill_version);
                match entry.is_fresh() {
                    true => Some(entry.into_value()),
                    false => usable_for_fill(entry.into_value()),
                }
            })
            .collect()
    }

    /// Current versions without creating missing ones.
    fn current_versions(&self, tag_keys: &[String]) -> Vec<Option<u64>> {
        tag_keys.iter().map(|k| self.tags.get(k)).collect()
    }

    fn bump_tags_now(&self, tag_keys: &[String]) -> StoreResult<()> {
        let _bumping = self.bumping.lock();
        for k in tag_keys {
            self.tags.insert(k.clone(), write_version());
        }
        // After the versions: whoever sees the old epoch read before.
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Backend for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }
    async fn get_many(&self, keys: &[&str], _: Sharing) -> StoreResult<Vec<Option<Bytes>>> {
        self.get_many_now(keys)
    }
    async fn get_many_tagged(&self, keys: &[&str], tag_keys: &[String]) -> StoreResult<TaggedRead> {
        Ok((self.get_many_now(keys)?, self.current_versions(tag_keys)))
    }
    async fn set_many(
        &self,
        items: &[(&str, Vec<u8>)],
        ttl: Duration,
        _: Sharing,
    ) -> StoreResult<()> {
        self.set_many_now(items, ttl)
    }
    async fn delete_many(&self, keys: &[&str]) -> StoreResult<u64> {
        self.delete_many_now(keys)
    }
    async fn delete_pattern(&self, pattern: &str) -> StoreResult<u64> {
        self.delete_pattern_now(pattern)
    }
    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> StoreResult<i64> {
        self.incr_now(key, delta, ttl)
    }
    async fn create_tag_versions(&self, tag_keys: &[String]) -> StoreResult<Vec<Option<u64>>> {
        Ok(self.create_tag_versions_now(tag_keys))
    }
    async fn bump_tags(&self, tag_keys: &[String]) -> StoreResult<()> {
        self.bump_tags_now(tag_keys)
    }
    fn local_size(&self) -> Option<(u64, u64)> {
        Some(self.size())
    }
    fn evictions(&self) -> u64 {
        self.evicted.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn tag_epoch(&self) -> Option<u64> {
        Some(self.epoch.load(std::sync::atomic::Ordering::SeqCst))
    }
}
