//! Counting limits: sign-in failures and contact messages. Counts live in the shared
//! cache, so every instance sees the same ones; when the cache is off or does not
//! answer, each instance counts in process, so a limit never silently stops applying.
//! A count starts at the first hit and lasts its window.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cache::CacheManager;

/// One counter per key within a fixed window.
pub struct Counter {
    /// Key family in the shared cache; its TTL is the window (see `DEFAULT_FAMILY_TTLS`).
    family: &'static str,
    /// First part of the key, so counters of one family do not collide.
    kind: &'static str,
    local: moka::sync::Cache<String, Arc<AtomicI64>>,
}

impl Counter {
    pub fn new(family: &'static str, kind: &'static str, window: Duration) -> Self {
        Counter {
            family,
            kind,
            local: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(window)
                .build(),
        }
    }

    fn key(&self, cache: &CacheManager, parts: &[&str]) -> crate::cache::Key {
        cache.key(
            self.family,
            std::iter::once(self.kind).chain(parts.iter().copied()),
        )
    }

    /// Adds `delta` and returns the new count (atomically, on every backend).
    pub async fn add(&self, cache: &CacheManager, parts: &[&str], delta: i64) -> i64 {
        let key = self.key(cache, parts);
        match cache.incr(&key, delta).await {
            Some(count) => count,
            None => self
                .local
                .get_with(key.as_str().to_string(), Default::default)
                .fetch_add(delta, Ordering::SeqCst)
                .saturating_add(delta),
        }
    }

    /// The current count.
    pub async fn get(&self, cache: &CacheManager, parts: &[&str]) -> i64 {
        let key = self.key(cache, parts);
        match cache.get_counter(&key).await {
            Some(count) => count,
            None => self
                .local
                .get(key.as_str())
                .map_or(0, |c| c.load(Ordering::SeqCst)),
        }
    }

    pub async fn reset(&self, cache: &CacheManager, parts: &[&str]) {
        let key = self.key(cache, parts);
        cache.delete(&key).await;
        self.local.invalidate(key.as_str());
    }
}

/// Sign-in attempts allowed per address and account within the window (15 minutes).
pub const LOGIN_PER_ACCOUNT: i64 = 10;
/// Sign-in attempts allowed per address, whatever the accounts.
pub const LOGIN_PER_ADDRESS: i64 = 50;
/// Failures on one account, from any address, after which each attempt on it waits
/// (it is slowed down, never locked: the real admin must still get in).
pub const LOGIN_SLOW_AFTER: i64 = 10;

/// The site's limits, shared by the workers.
pub struct Limits {
    /// Attempts per address + account.
    pub login: Counter,
    /// Attempts per address.
    pub login_address: Counter,
    /// Failures per account, from any address.
    pub login_account: Counter,
    /// Contact messages per address (the window is an hour).
    pub contact: Counter,
    /// Password hashes running at once (argon2 takes 19 MiB and ~50 ms of a core each).
    pub hashing: tokio::sync::Semaphore,
    /// Image uploads decoded at once: one (a 40-megapixel image takes a few hundred MB
    /// and seconds of a core while it is decoded and resized).
    pub decoding: tokio::sync::Semaphore,
}

impl Limits {
    pub fn new(workers: usize) -> Self {
        let login_window = Duration::from_secs(900);
        Limits {
            login: Counter::new("login_attempts", "pair", login_window),
            login_address: Counter::new("login_attempts", "address", login_window),
            login_account: Counter::new("login_attempts", "account", login_window),
            contact: Counter::new("contact_sends", "address", Duration::from_secs(3600)),
            hashing: tokio::sync::Semaphore::new(workers.max(2)),
            decoding: tokio::sync::Semaphore::new(1),
        }
    }

    /// How long an attempt on an account with `failures` recent failures waits: a
    /// quarter second per failure past `LOGIN_SLOW_AFTER`, at most 5 s.
    pub fn login_delay(failures: i64) -> Duration {
        let over = (failures - LOGIN_SLOW_AFTER).clamp(0, 20) as u64;
        Duration::from_millis(250 * over)
    }
}
