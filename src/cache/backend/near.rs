//! The near tier: an in-process copy of hot entries and tag versions in front of Redis,
//! so a warm page is served without a round trip.
//!
//! Coherence: entries kept here are tagged (checked against tag versions on every read)
//! or content-addressed, so only the tag versions must be right. They are dropped when
//! an invalidation message arrives (see `redis`), and everything is dropped whenever
//! the invalidation channel is lost. A fill that read Redis before an invalidation was
//! applied and lands after it would bring an old version back: every fill carries the
//! epoch it started under and is refused if an invalidation came in between.
//!
//! Misses share reads: when a hot copy expires under load, every request in flight
//! misses at once, and each fetching the entry for itself cost hundreds of identical
//! reads of Redis, each holding its own copy of the value (measured: 446 MGETs and
//! 2.4 MiB more peak RSS on the first burst of 512 connections after a minute idle).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, WeakShared};
use parking_lot::{Mutex, RwLock};

use super::memory::MemoryStore;
use super::{Bytes, TaggedRead};
use crate::cache::{StoreError, StoreResult};

/// A read of the shared store that every concurrent miss on the same keys awaits. The
/// readers own it (`reads` holds it weakly): when the last one goes away (its client
/// left), the read is dropped.
type Read = BoxFuture<'static, Result<TaggedRead, Arc<StoreError>>>;

/// A read is joined only by readers that arrive under the epoch it started in, so none
/// gets a value read before an invalidation that was applied here when it arrived.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ReadKey {
    keys: Vec<String>,
    tag_keys: Vec<String>,
    epoch: u64,
}

pub struct NearTier {
    values: MemoryStore,
    state: RwLock<NearState>,
    reads: Mutex<HashMap<ReadKey, WeakShared<Read>>>,
    /// Longest a copy lives here (the shared store's remaining TTL is not known).
    max_ttl: Duration,
    pub hits: AtomicU64,
}

#[derive(Default)]
struct NearState {
    /// Changes with every invalidation applied here.
    epoch: u64,
    tags: HashMap<String, u64>,
}

impl NearTier {
    pub fn new(max_bytes: u64, max_ttl: Duration) -> Self {
        NearTier {
            values: MemoryStore::new(max_bytes),
            state: RwLock::default(),
            reads: Mutex::default(),
            max_ttl,
            hits: AtomicU64::new(0),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.state.read().epoch
    }

    /// The entries and versions if every one of them is here; the epoch either way.
    fn lookup(&self, keys: &[&str], tag_keys: &[String]) -> (Option<TaggedRead>, u64) {
        let state = self.state.read();
        let versions: Option<Vec<Option<u64>>> = tag_keys
            .iter()
            .map(|t| state.tags.get(t).map(|v| Some(*v)))
            .collect();
        let Some(versions) = versions else {
            return (None, state.epoch);
        };
        let values = self.get(keys);
        if values.iter().any(Option::is_none) {
            return (None, state.epoch);
        }
        self.hits.fetch_add(1, Relaxed);
        (Some((values, versions)), state.epoch)
    }

    fn get(&self, keys: &[&str]) -> Vec<Option<Bytes>> {
        self.values.get_many_now(keys).unwrap_or_default()
    }

    /// The entries and versions from here if all are here, else from `fetch` (a read of
    /// the shared store), which concurrent misses on the same keys share; its result is
    /// kept here once.
    pub async fn read_through(
        &self,
        keys: &[&str],
        tag_keys: &[String],
        fetch: impl FnOnce() -> BoxFuture<'static, StoreResult<TaggedRead>>,
    ) -> StoreResult<TaggedRead> {
        let (hit, epoch) = self.lookup(keys, tag_keys);
        if let Some(found) = hit {
            super::note_tier("near");
            return Ok(found);
        }
        super::note_tier("shared");
        let key = ReadKey {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            tag_keys: tag_keys.to_vec(),
            epoch,
        };
        let read = {
            let mut reads = self.reads.lock();
            match reads.get(&key).and_then(WeakShared::upgrade) {
                Some(read) => read,
                None => {
                    // Forget reads of earlier epochs (no longer joined) and reads whose
                    // readers all went away.
                    reads.retain(|k, r| k.epoch >= epoch && r.upgrade().is_some());
                    let read = fetch().map(|r| r.map_err(Arc::new)).boxed().shared();
                    let weak = read.downgrade().expect("a read not yet polled");
                    reads.insert(key.clone(), weak);
                    read
                }
            }
        };
        let result = read.clone().await;
        let mut reads = self.reads.lock();
        // The first reader back removes the read and keeps its result.
        let current = reads.get(&key).and_then(WeakShared::upgrade);
        if current.is_some_and(|r| r.ptr_eq(&read)) {
            reads.remove(&key);
            if let Ok((values, versions)) = &result {
                self.fill(epoch, keys, values, tag_keys, versions);
            }
        }
        drop(reads);
        result.map_err(|e| e.copy())
    }

    /// Keeps what a read of the shared store returned, unless an invalidation was
    /// applied since `epoch` was taken.
    pub fn fill(
        &self,
        epoch: u64,
        keys: &[&str],
        values: &[Option<Bytes>],
        tag_keys: &[String],
        versions: &[Option<u64>],
    ) {
        let mut state = self.state.write();
        if state.epoch != epoch {
            return;
        }
        for (tag, version) in tag_keys.iter().zip(versions) {
            if let Some(v) = version {
                state.tags.insert(tag.clone(), *v);
            }
        }
        for (key, value) in keys.iter().zip(values) {
            if let Some(value) = value {
                self.values.keep(key, value.clone(), self.max_ttl);
            }
        }
    }

    /// Keeps entries this instance just wrote (self-validating, so no epoch check).
    pub fn store(&self, items: &[(&str, Vec<u8>)], ttl: Duration) {
        let _ = self.values.set_many_now(items, ttl.min(self.max_ttl));
    }

    /// Forgets these tags' versions: the next read asks the shared store.
    pub fn drop_tags(&self, tag_keys: &[String]) {
        let mut state = self.state.write();
        state.epoch += 1;
        for tag in tag_keys {
            state.tags.remove(tag);
        }
    }

    /// Forgets everything (channel lost, pattern deleted, reconnected).
    pub fn clear(&self) {
        let mut state = self.state.write();
        state.epoch += 1;
        state.tags.clear();
        self.values.clear();
    }

    pub fn size(&self) -> (u64, u64) {
        self.values.size()
    }
}
