//! Cache statistics: lock-free counters and latency histograms on the hot path, and a
//! snapshot with ratios, a grade, percentiles and per-family hit ratios
//! (`CacheManager::stats`, and `site_stats` summed over every instance sharing Redis).
//! Nothing serves them over HTTP yet: the admin overview page shows the snapshot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

/// The operations whose latency is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    GetMany,
    Set,
    SetMany,
    Delete,
    DeletePattern,
    Incr,
    Other,
}

impl Op {
    pub const ALL: [Op; 8] = [
        Op::Get,
        Op::GetMany,
        Op::Set,
        Op::SetMany,
        Op::Delete,
        Op::DeletePattern,
        Op::Incr,
        Op::Other,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::GetMany => "get_many",
            Op::Set => "set",
            Op::SetMany => "set_many",
            Op::Delete => "delete",
            Op::DeletePattern => "delete_pattern",
            Op::Incr => "incr",
            Op::Other => "other",
        }
    }
}

/// Four buckets per doubling of microseconds, up to ~16 s: within ~19 % of the true
/// value, and recording is one atomic add.
const BUCKETS: usize = 4 * 24 + 1;

pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    fn bucket(micros: u64) -> usize {
        if micros <= 1 {
            return 0;
        }
        let log = (micros as f64).log2() * 4.0;
        (log.ceil() as usize).min(BUCKETS - 1)
    }
    fn upper_bound(bucket: usize) -> f64 {
        2f64.powf(bucket as f64 / 4.0)
    }
    pub fn record(&self, elapsed: Duration) {
        self.buckets[Self::bucket(elapsed.as_micros() as u64)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }
    /// The q-quantile (0..1) in microseconds, as the upper bound of its bucket.
    pub fn quantile_micros(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Relaxed);
            if seen >= rank {
                return Self::upper_bound(i);
            }
        }
        Self::upper_bound(BUCKETS - 1)
    }
}

#[derive(Default)]
pub struct FamilyCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Values computed after a miss, and the time that took (what a miss costs).
    pub fills: AtomicU64,
    pub fill_micros: AtomicU64,
    pub sets: AtomicU64,
    pub errors: AtomicU64,
    /// Misses that waited for another caller's computation instead of computing.
    pub coalesced: AtomicU64,
    /// Stale copies served because computing failed (stale-if-error).
    pub stale: AtomicU64,
}

#[derive(Default)]
pub struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub sets: AtomicU64,
    pub deletes: AtomicU64,
    pub errors: AtomicU64,
}

pub struct CacheStats {
    started: Instant,
    pub counters: Counters,
    latency: [Histogram; Op::ALL.len()],
    families: RwLock<HashMap<&'static str, Arc<FamilyCounters>>>,
}

impl Default for CacheStats {
    fn default() -> Self {
        CacheStats {
            started: Instant::now(),
            counters: Counters::default(),
            latency: std::array::from_fn(|_| Histogram::default()),
            families: RwLock::default(),
        }
    }
}

impl CacheStats {
    pub fn record_latency(&self, op: Op, elapsed: Duration) {
        self.latency[op as usize].record(elapsed);
    }

    /// Runs `f` on a family's counters, under the read lock (no reference count is
    /// touched: every hit passes here).
    fn family<R>(&self, name: &'static str, f: impl FnOnce(&FamilyCounters) -> R) -> R {
        if let Some(counters) = self.families.read().get(name) {
            return f(counters);
        }
        f(self.families.write().entry(name).or_default())
    }

    /// One more `what` (sets, errors, coalesced waits, stale copies served) in `family`.
    pub fn family_event(&self, family: &'static str, what: FamilyEvent) {
        self.family(family, |f| {
            match what {
                FamilyEvent::Set => &f.sets,
                FamilyEvent::Error => &f.errors,
                FamilyEvent::Coalesced => &f.coalesced,
                FamilyEvent::Stale => &f.stale,
            }
            .fetch_add(1, Relaxed);
        });
    }

    /// A value of `family` was computed after a miss, taking `took`.
    pub fn fill(&self, family: &'static str, took: Duration) {
        self.family(family, |f| {
            f.fills.fetch_add(1, Relaxed);
            f.fill_micros.fetch_add(took.as_micros() as u64, Relaxed);
        });
    }

    pub fn hit(&self, family: &'static str) {
        self.counters.hits.fetch_add(1, Relaxed);
        self.family(family, |f| f.hits.fetch_add(1, Relaxed));
    }
    pub fn miss(&self, family: &'static str) {
        self.counters.misses.fetch_add(1, Relaxed);
        self.family(family, |f| f.misses.fetch_add(1, Relaxed));
    }
    pub fn set(&self, n: u64) {
        self.counters.sets.fetch_add(n, Relaxed);
    }
    pub fn delete(&self, n: u64) {
        self.counters.deletes.fetch_add(n, Relaxed);
    }
    pub fn error(&self) {
        self.counters.errors.fetch_add(1, Relaxed);
    }

    pub fn totals(&self) -> Totals {
        let c = &self.counters;
        Totals {
            hits: c.hits.load(Relaxed),
            misses: c.misses.load(Relaxed),
            sets: c.sets.load(Relaxed),
            deletes: c.deletes.load(Relaxed),
            errors: c.errors.load(Relaxed),
        }
    }

    pub fn snapshot(&self, backend: &str) -> StatsSnapshot {
        let totals = self.totals();
        let uptime = self.started.elapsed();
        let mut families: Vec<FamilySnapshot> = self
            .families
            .read()
            .iter()
            .map(|(name, f)| {
                let mut s = FamilySnapshot::new(name, f.hits.load(Relaxed), f.misses.load(Relaxed));
                s.sets = f.sets.load(Relaxed);
                s.errors = f.errors.load(Relaxed);
                s.coalesced = f.coalesced.load(Relaxed);
                s.stale_served = f.stale.load(Relaxed);
                let fills = f.fills.load(Relaxed);
                s.fills = fills;
                s.fill_micros = f.fill_micros.load(Relaxed);
                if fills > 0 {
                    s.avg_fill_ms =
                        Some(f.fill_micros.load(Relaxed) as f64 / fills as f64 / 1000.0);
                }
                s
            })
            .collect();
        families.sort_by(|a, b| a.name.cmp(&b.name));
        let latency = Op::ALL
            .iter()
            .filter(|op| self.latency[**op as usize].count() > 0)
            .map(|op| {
                let h = &self.latency[*op as usize];
                LatencySnapshot {
                    op: op.name().to_string(),
                    count: h.count(),
                    p50_us: h.quantile_micros(0.50),
                    p95_us: h.quantile_micros(0.95),
                    p99_us: h.quantile_micros(0.99),
                }
            })
            .collect();
        StatsSnapshot::new(backend, totals, uptime, latency, families)
    }

    /// Counter values and per-family hits/misses, for flushing to a shared store.
    pub fn totals_and_families(&self) -> (Totals, Vec<(&'static str, u64, u64)>) {
        let totals = self.totals();
        let families = self
            .families
            .read()
            .iter()
            .map(|(n, f)| (*n, f.hits.load(Relaxed), f.misses.load(Relaxed)))
            .collect();
        (totals, families)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub hits: u64,
    pub misses: u64,
    pub sets: u64,
    pub deletes: u64,
    pub errors: u64,
}

impl Totals {
    pub fn operations(&self) -> u64 {
        self.hits + self.misses + self.sets + self.deletes
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FamilySnapshot {
    pub name: String,
    pub hits: u64,
    pub misses: u64,
    pub hit_ratio: f64,
    /// Average time to compute a value after a miss (this process), if any was.
    #[serde(default)]
    pub avg_fill_ms: Option<f64>,
    #[serde(default)]
    pub sets: u64,
    #[serde(default)]
    pub errors: u64,
    /// Misses that waited for another caller's computation (single flight).
    #[serde(default)]
    pub coalesced: u64,
    #[serde(default)]
    pub stale_served: u64,
    /// Values computed after a miss, and the time they took in all (what history keeps).
    #[serde(default)]
    pub fills: u64,
    #[serde(default)]
    pub fill_micros: u64,
}

/// What `CacheStats::family_event` counts.
#[derive(Debug, Clone, Copy)]
pub enum FamilyEvent {
    Set,
    Error,
    Coalesced,
    Stale,
}

impl FamilySnapshot {
    pub fn new(name: &str, hits: u64, misses: u64) -> Self {
        FamilySnapshot {
            name: name.to_string(),
            hits,
            misses,
            hit_ratio: ratio(hits, hits + misses),
            avg_fill_ms: None,
            sets: 0,
            errors: 0,
            coalesced: 0,
            stale_served: 0,
            fills: 0,
            fill_micros: 0,
        }
    }

    /// What its misses cost: misses × the average time to compute one.
    pub fn miss_cost_ms(&self) -> f64 {
        self.misses as f64 * self.avg_fill_ms.unwrap_or(0.0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LatencySnapshot {
    pub op: String,
    pub count: u64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
}

/// A point-in-time view of the statistics.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatsSnapshot {
    pub backend: String,
    #[serde(flatten)]
    pub totals: Totals,
    /// hits / (hits + misses), 0..1.
    pub hit_ratio: f64,
    /// errors / all operations, 0..1.
    pub error_rate: f64,
    pub operations_per_hour: f64,
    pub uptime_seconds: u64,
    /// A+ ≥ 95 %, A ≥ 90 %, B ≥ 80 %, C ≥ 70 %, D below.
    pub grade: String,
    pub latency: Vec<LatencySnapshot>,
    pub families: Vec<FamilySnapshot>,
    /// The backend's breaker and near tier (filled in by the manager).
    #[serde(default)]
    pub health: Option<super::BackendHealth>,
}

impl StatsSnapshot {
    pub fn new(
        backend: &str,
        totals: Totals,
        uptime: Duration,
        latency: Vec<LatencySnapshot>,
        families: Vec<FamilySnapshot>,
    ) -> Self {
        let hit_ratio = ratio(totals.hits, totals.hits + totals.misses);
        let ops = totals.operations();
        StatsSnapshot {
            backend: backend.to_string(),
            totals,
            hit_ratio,
            error_rate: ratio(totals.errors, ops + totals.errors),
            operations_per_hour: ops as f64 * 3600.0 / uptime.as_secs_f64().max(1.0),
            uptime_seconds: uptime.as_secs(),
            grade: grade(hit_ratio).to_string(),
            latency,
            families,
            health: None,
        }
    }
}

pub(crate) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

pub fn grade(hit_ratio: f64) -> &'static str {
    match hit_ratio {
        r if r >= 0.95 => "A+",
        r if r >= 0.90 => "A",
        r if r >= 0.80 => "B",
        r if r >= 0.70 => "C",
        _ => "D",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grades_follow_the_thresholds() {
        assert_eq!(grade(0.95), "A+");
        assert_eq!(grade(0.949), "A");
        assert_eq!(grade(0.85), "B");
        assert_eq!(grade(0.70), "C");
        assert_eq!(grade(0.2), "D");
    }

    #[test]
    fn percentiles_land_near_the_recorded_values() {
        let h = Histogram::default();
        for _ in 0..90 {
            h.record(Duration::from_micros(100));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(10));
        }
        let p50 = h.quantile_micros(0.5);
        let p99 = h.quantile_micros(0.99);
        assert!((100.0..=120.0).contains(&p50), "p50 {p50}");
        assert!((10_000.0..=12_000.0).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn ratios_and_families() {
        let stats = CacheStats::default();
        for _ in 0..3 {
            stats.hit("posts");
        }
        stats.miss("posts");
        stats.miss("tools");
        let snap = stats.snapshot("memory");
        assert_eq!(snap.totals.hits, 3);
        assert!((snap.hit_ratio - 0.6).abs() < 1e-9);
        assert_eq!(snap.families[0], FamilySnapshot::new("posts", 3, 1));
        assert_eq!(snap.families[1].hit_ratio, 0.0);
    }
}
