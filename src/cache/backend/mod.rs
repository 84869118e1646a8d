//! The `Backend` trait, one small interface every store implements (as Django's
//! `BaseCache`), and one file per backend: `memory` (moka), `redis` (with its near
//! tier and circuit breaker), `none`. Keys arrive fully built and values encoded: a
//! backend stores bytes and tag versions, nothing else.

pub mod breaker;
pub mod memory;
pub mod near;
pub mod none;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::StoreResult;

/// Which tier answered the running lookup (`near` or `shared`), on its `cache.get`
/// span; nothing unless spans are recorded.
pub(crate) fn note_tier(tier: &'static str) {
    if tracing::level_enabled!(tracing::Level::DEBUG) {
        tracing::Span::current().record("cache.tier", tier);
    }
}

/// Shared, immutable bytes: a hit hands out a reference-counted view (no copy), and a
/// value read from Redis keeps the buffer it was parsed into.
pub type Bytes = bytes::Bytes;

/// Entries and tag versions read in one round trip.
pub type TaggedRead = (Vec<Option<Bytes>>, Vec<Option<u64>>);

/// Whether an entry may be kept in a near (in-process) tier in front of a shared store:
/// only entries that cannot go stale there — tagged entries, checked against coherent
/// tag versions on every read, and content-addressed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Safe to copy into the near tier.
    Near,
    /// Always read from the shared store (counters, replay guards).
    Shared,
}

/// The memory of a shared cache server (all sites on it, not only this one's keys).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServerMemory {
    pub used_bytes: u64,
    /// 0: no limit.
    pub max_bytes: u64,
    pub policy: String,
    /// Keys the server evicted for room since it started.
    pub evicted_keys: u64,
}

/// What an operator needs to know about a backend's health; part of the statistics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BackendHealth {
    /// `closed` (serving), `open` (bypassed), `recovering` (applying pending
    /// invalidations before serving again); always `closed` for in-process stores.
    pub breaker: String,
    /// How often the breaker opened since start.
    pub breaker_trips: u64,
    /// The first error of the last burst that opened the breaker.
    pub last_trip_cause: Option<String>,
    /// Near tier: on, and its entries and bytes.
    pub near_enabled: bool,
    pub near_entries: u64,
    pub near_bytes: u64,
    pub near_hits: u64,
}

/// Called before a shared store serves again after it was lost: applies the
/// invalidations written while it was away. Returns how many it applied.
pub type RecoveryHook = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<usize, String>> + Send>>
        + Send
        + Sync,
>;

/// A version made for a fill (even). Random, so versions never repeat, even when a
/// store loses them.
pub fn fill_version() -> u64 {
    rand::random::<u64>() & !1
}

/// A version made by a write (odd): a fill that read the tag as absent must not be
/// stored under it, since it may have been computed from rows before the write.
pub fn write_version() -> u64 {
    rand::random::<u64>() | 1
}

/// A version found where a fill read none: usable if another fill made it.
pub fn usable_for_fill(version: u64) -> Option<u64> {
    (version & 1 == 0).then_some(version)
}

#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    fn name(&self) -> &'static str;

    async fn get_many(&self, keys: &[&str], sharing: Sharing) -> StoreResult<Vec<Option<Bytes>>>;

    /// Entries and the current versions of `tag_keys` (None where a tag has none yet).
    async fn get_many_tagged(&self, keys: &[&str], tag_keys: &[String]) -> StoreResult<TaggedRead>;

    async fn set_many(
        &self,
        items: &[(&str, Vec<u8>)],
        ttl: Duration,
        sharing: Sharing,
    ) -> StoreResult<()>;

    /// Returns how many keys existed.
    async fn delete_many(&self, keys: &[&str]) -> StoreResult<u64>;

    /// `pattern` is a glob over full keys; returns how many were deleted.
    async fn delete_pattern(&self, pattern: &str) -> StoreResult<u64>;

    /// Adds `delta` to a counter, giving a new one `ttl`.
    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> StoreResult<i64>;

    /// Gives each tag that has no version a fresh one (`fill_version`): for each,
    /// the version a fill read as absent may be stored under — the one made here or by
    /// a concurrent fill — or None where a write made one since (`write_version`), so
    /// the fill must not be stored. Called only when a fill is stored: a lookup of
    /// something that does not exist creates no version.
    async fn create_tag_versions(&self, tag_keys: &[String]) -> StoreResult<Vec<Option<u64>>>;

    /// Gives each tag a new version (kept at least `tag_ttl`); returns once no instance sharing this store can
    /// serve an entry stored under the old ones.
    async fn bump_tags(&self, tag_keys: &[String]) -> StoreResult<()>;

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Adds counter deltas to a hash shared by all instances (site-wide statistics).
    async fn add_to_hash(&self, _hash: &str, _fields: &[(String, u64)]) -> StoreResult<()> {
        Ok(())
    }

    /// Sets fields of a shared hash to absolute values and removes others.
    async fn set_in_hash(
        &self,
        _hash: &str,
        _set: &[(String, u64)],
        _remove: &[String],
    ) -> StoreResult<()> {
        Ok(())
    }

    /// None when the store is not shared.
    async fn read_hash(&self, _hash: &str) -> StoreResult<Option<Vec<(String, u64)>>> {
        Ok(None)
    }

    fn health(&self) -> BackendHealth {
        BackendHealth {
            breaker: "closed".into(),
            ..BackendHealth::default()
        }
    }

    /// Installs the hook run before serving again after the store was lost.
    fn set_recovery_hook(&self, _hook: RecoveryHook) {}

    /// A counter that moves whenever a tag version this process can see changes, if the
    /// store can tell (in-process, or Redis with a coherent near tier): an entry
    /// validated against its tags at epoch E is still valid while the epoch is E.
    fn tag_epoch(&self) -> Option<u64> {
        None
    }

    /// A shared server's memory: `INFO memory` and `evicted_keys` for Redis.
    async fn server_memory(&self) -> StoreResult<Option<ServerMemory>> {
        Ok(None)
    }

    /// Entries an in-process store evicted for room.
    fn evictions(&self) -> u64 {
        0
    }

    /// (entries, weighted bytes) of an in-process store.
    fn local_size(&self) -> Option<(u64, u64)> {
        None
    }
}
