//! Cache analytics that outlive a restart: every `HISTORY_FLUSH_INTERVAL` each instance
//! adds what happened since the last flush — per cache family (hits, misses, stale
//! answers, fills and their time), per route (requests and their latency histogram),
//! and for itself (memory, breaker) — to its rows for the current minute and hour in
//! `cache_rollups`, and writes them. Minutes are kept 7 days, hours 90 days (pruned by
//! each instance). `GET /api/cache/history/?range=` merges the instances' rows:
//! counters add up, latency histograms add up bucket by bucket, so percentiles are
//! those of all the requests, not an average of each instance's.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DurationRound, NaiveDateTime, TimeDelta};
use serde::Serialize;

use crate::cache::CacheManager;
use crate::content::repository::rollups::Rollup;
use crate::content::Repository;
use crate::web::metrics::BUCKETS;

const MINUTE: i32 = 60;
const HOUR: i32 = 3600;
const KEEP_MINUTES: TimeDelta = TimeDelta::days(7);
const KEEP_HOURS: TimeDelta = TimeDelta::days(90);

/// What `?range=` takes: the span, and the resolution it is read at.
pub const RANGES: &[(&str, TimeDelta, i32)] = &[
    ("1h", TimeDelta::hours(1), MINUTE),
    ("24h", TimeDelta::hours(24), MINUTE),
    ("7d", TimeDelta::days(7), HOUR),
    ("90d", TimeDelta::days(90), HOUR),
];

/// Counters of one family or route over a period (or since start, when cumulative).
#[derive(Debug, Clone, Default, PartialEq)]
struct Counters {
    hits: i64,
    misses: i64,
    stale: i64,
    fills: i64,
    fill_ms: f64,
    requests: i64,
    /// Cumulative request counts per latency bound (`BUCKETS`, then +Inf).
    latency: Vec<i64>,
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.stale += other.stale;
        self.fills += other.fills;
        self.fill_ms += other.fill_ms;
        self.requests += other.requests;
        if self.latency.len() < other.latency.len() {
            self.latency.resize(other.latency.len(), 0);
        }
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            *mine += theirs;
        }
    }

    /// `self - before`, both cumulative (a counter that went back — a reset — counts
    /// from zero).
    fn since(&self, before: Option<&Counters>) -> Counters {
        let Some(b) = before else {
            return self.clone();
        };
        let d = |now: i64, then: i64| if now >= then { now - then } else { now };
        Counters {
            hits: d(self.hits, b.hits),
            misses: d(self.misses, b.misses),
            stale: d(self.stale, b.stale),
            fills: d(self.fills, b.fills),
            fill_ms: if self.fill_ms >= b.fill_ms {
                self.fill_ms - b.fill_ms
            } else {
                self.fill_ms
            },
            requests: d(self.requests, b.requests),
            latency: self
                .latency
                .iter()
                .enumerate()
                .map(|(i, now)| d(*now, b.latency.get(i).copied().unwrap_or(0)))
                .collect(),
        }
    }
}

/// One period's sums for this instance.
#[derive(Debug, Default)]
struct Period {
    start: Option<NaiveDateTime>,
    series: BTreeMap<(&'static str, String), Counters>,
}

/// This instance's analytics writer (see the module comment).
pub struct Analytics {
    state: parking_lot::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The cumulative counters at the last flush.
    last: HashMap<(&'static str, String), Counters>,
    minute: Period,
    hour: Period,
    last_prune: Option<NaiveDateTime>,
}

impl Analytics {
    pub fn new() -> Self {
        Analytics {
            state: Default::default(),
        }
    }

    /// Flushes every `every` until the cache is dropped.
    pub fn start(self: &std::sync::Arc<Self>, repo: Repository, every: Duration) {
        let analytics = self.clone();
        let cache = repo.cache().downgrade();
        let db = repo.db().clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(cache) = cache.upgrade() else { return };
                let repo = Repository::new(db.clone(), cache);
                if let Err(e) = analytics.flush(&repo).await {
                    tracing::warn!(error = %e, "cache history not written; retried at the next flush");
                }
            }
        });
    }

    /// Adds what happened since the last flush to this minute's and hour's rows, and
    /// writes them.
    pub async fn flush(&self, repo: &Repository) -> Result<(), crate::db::DbError> {
        let cache = repo.cache();
        let now = crate::content::repository::now();
        let current = cumulative(cache);
        let rows = {
            let mut guard = self.state.lock();
            let state = &mut *guard;
            let minute = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
            let hour = now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now);
            for (period, start) in [(&mut state.minute, minute), (&mut state.hour, hour)] {
                if period.start != Some(start) {
                    *period = Period {
                        start: Some(start),
                        series: BTreeMap::new(),
                    };
                }
            }
            for (key, now_counters) in &current {
                let delta = now_counters.since(state.last.get(key));
                for period in [&mut state.minute, &mut state.hour] {
                    period.series.entry(key.clone()).or_default().add(&delta);
                }
            }
            state.last = current;
            let health = cache.health();
            let memory = cache
                .local_size()
                .map(|(_, bytes, _)| bytes)
                .unwrap_or(health.near_bytes) as i64;
            let breaker_open = health.breaker != "closed";
            let mut rows = Vec::new();
            for (resolution, period) in [(MINUTE, &state.minute), (HOUR, &state.hour)] {
                let bucket = period.start.unwrap_or(now);
                for ((series, name), c) in &period.series {
                    rows.push(row(
                        resolution,
                        bucket,
                        cache.instance_id(),
                        series,
                        name,
                        c,
                    ));
                }
                let mut me = row(
                    resolution,
                    bucket,
                    cache.instance_id(),
                    "instance",
                    "",
                    &Counters::default(),
                );
                me.memory_bytes = Some(memory);
                me.breaker_open = Some(breaker_open);
                rows.push(me);
            }
            rows
        };
        repo.save_rollups(&rows).await?;
        let prune = {
            let mut state = self.state.lock();
            let due = state
                .last_prune
                .is_none_or(|at| now - at > TimeDelta::minutes(10));
            if due {
                state.last_prune = Some(now);
            }
            due
        };
        if prune {
            repo.prune_rollups(MINUTE, now - KEEP_MINUTES).await?;
            repo.prune_rollups(HOUR, now - KEEP_HOURS).await?;
        }
        Ok(())
    }
}

impl Default for Analytics {
    fn default() -> Self {
        Analytics::new()
    }
}

fn row(
    resolution: i32,
    bucket: NaiveDateTime,
    instance: &str,
    series: &str,
    name: &str,
    c: &Counters,
) -> Rollup {
    Rollup {
        resolution,
        bucket,
        instance: instance.to_string(),
        series: series.to_string(),
        name: name.to_string(),
        hits: c.hits,
        misses: c.misses,
        stale: c.stale,
        fills: c.fills,
        fill_ms: c.fill_ms,
        requests: c.requests,
        latency_buckets: c
            .latency
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(","),
        memory_bytes: None,
        breaker_open: None,
    }
}

/// The cumulative counters now: per family from the cache's statistics, per route from
/// the process's request histograms (`/metrics`).
fn cumulative(cache: &CacheManager) -> HashMap<(&'static str, String), Counters> {
    let mut out = HashMap::new();
    for f in cache.stats().families {
        out.insert(
            ("family", f.name.clone()),
            Counters {
                hits: f.hits as i64,
                misses: f.misses as i64,
                stale: f.stale_served as i64,
                fills: f.fills as i64,
                fill_ms: f.fill_micros as f64 / 1000.0,
                ..Default::default()
            },
        );
    }
    let text = crate::web::metrics::handle().render();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("folio_http_request_duration_seconds_bucket{") else {
            continue;
        };
        let (Some(route), Some(le), Some(count)) = (
            label(rest, "route"),
            label(rest, "le"),
            rest.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()),
        ) else {
            continue;
        };
        let index = match le {
            "+Inf" => BUCKETS.len(),
            le => match BUCKETS
                .iter()
                .position(|b| le.parse::<f64>().ok() == Some(*b))
            {
                Some(i) => i,
                None => continue,
            },
        };
        let c: &mut Counters = out.entry(("route", route.to_string())).or_default();
        c.latency.resize(BUCKETS.len() + 1, 0);
        c.latency[index] += count as i64;
        if index == BUCKETS.len() {
            c.requests += count as i64;
        }
    }
    out
}

/// The value of `name="…"` in a Prometheus label set.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let end = labels[start..].find('"')?;
    Some(&labels[start..start + end])
}

/// A percentile (0..1) of a cumulative histogram over `BUCKETS`, in milliseconds,
/// interpolated within its bucket as Prometheus does; None without requests.
fn percentile_ms(latency: &[i64], q: f64) -> Option<f64> {
    let total = *latency.last()?;
    if total <= 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0i64;
    let mut lower = 0.0;
    for (i, &cum) in latency.iter().enumerate() {
        let upper = BUCKETS.get(i).copied().unwrap_or(lower);
        if cum as f64 >= rank {
            let inside = (cum - below).max(1) as f64;
            let at = lower + (upper - lower) * ((rank - below as f64) / inside);
            return Some(at * 1000.0);
        }
        below = cum;
        lower = upper;
    }
    Some(lower * 1000.0)
}

/// A point of a family's history.
#[derive(Debug, Serialize)]
pub struct FamilyPoint {
    pub at: NaiveDateTime,
    pub hits: i64,
    pub misses: i64,
    pub stale: i64,
    pub hit_ratio: Option<f64>,
    /// Average time to compute a value after a miss.
    pub fill_ms: Option<f64>,
    /// What the misses cost: misses × the average fill time.
    pub miss_cost_ms: f64,
}

/// A point of a route's history.
#[derive(Debug, Serialize)]
pub struct RoutePoint {
    pub at: NaiveDateTime,
    pub requests: i64,
    pub per_second: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// A point of the whole site's history.
#[derive(Debug, Serialize)]
pub struct SitePoint {
    pub at: NaiveDateTime,
    pub hits: i64,
    pub misses: i64,
    pub stale: i64,
    pub hit_ratio: Option<f64>,
    pub requests: i64,
    /// The instances' memory, added up.
    pub memory_bytes: i64,
    pub instances: usize,
    pub breaker_open_instances: usize,
}

/// `/api/cache/history/`: the site, each family and each route over a range.
#[derive(Debug, Serialize)]
pub struct History {
    pub range: String,
    pub resolution_seconds: i32,
    pub site: Vec<SitePoint>,
    pub families: BTreeMap<String, Vec<FamilyPoint>>,
    pub routes: BTreeMap<String, Vec<RoutePoint>>,
}

/// Reads `range` (`1h`, `24h`, `7d`, `90d`) merged over the instances; None for any
/// other range.
pub async fn history(
    repo: &Repository,
    range: &str,
) -> Option<Result<History, crate::db::DbError>> {
    let (_, span, resolution) = RANGES.iter().find(|(name, _, _)| *name == range)?;
    let since = crate::content::repository::now() - *span;
    let rows = match repo.rollups_since(*resolution, since).await {
        Ok(rows) => rows,
        Err(e) => return Some(Err(e)),
    };
    Some(Ok(merge(range, *resolution, &rows)))
}

fn merge(range: &str, resolution: i32, rows: &[Rollup]) -> History {
    let mut merged: BTreeMap<(NaiveDateTime, String, String), Counters> = BTreeMap::new();
    let mut instances: BTreeMap<NaiveDateTime, (i64, usize, usize)> = BTreeMap::new();
    for r in rows {
        if r.series == "instance" {
            let e = instances.entry(r.bucket).or_default();
            e.0 += r.memory_bytes.unwrap_or(0);
            e.1 += 1;
            e.2 += usize::from(r.breaker_open == Some(true));
            continue;
        }
        let c = Counters {
            hits: r.hits,
            misses: r.misses,
            stale: r.stale,
            fills: r.fills,
            fill_ms: r.fill_ms,
            requests: r.requests,
            latency: r
                .latency_buckets
                .split(',')
                .filter_map(|n| n.parse().ok())
                .collect(),
        };
        merged
            .entry((r.bucket, r.series.clone(), r.name.clone()))
            .or_default()
            .add(&c);
    }
    let ratio =
        |hits: i64, misses: i64| (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64);
    let mut families: BTreeMap<String, Vec<FamilyPoint>> = BTreeMap::new();
    let mut routes: BTreeMap<String, Vec<RoutePoint>> = BTreeMap::new();
    let mut site: BTreeMap<NaiveDateTime, Counters> = BTreeMap::new();
    for ((at, series, name), c) in merged {
        match series.as_str() {
            "family" => {
                let fill = (c.fills > 0).then(|| c.fill_ms / c.fills as f64);
                families.entry(name).or_default().push(FamilyPoint {
                    at,
                    hits: c.hits,
                    misses: c.misses,
                    stale: c.stale,
                    hit_ratio: ratio(c.hits, c.misses),
                    fill_ms: fill,
                    miss_cost_ms: c.misses as f64 * fill.unwrap_or(0.0),
                });
                site.entry(at).or_default().add(&Counters {
                    hits: c.hits,
                    misses: c.misses,
                    stale: c.stale,
                    ..Default::default()
                });
            }
            _ => {
                routes.entry(name).or_default().push(RoutePoint {
                    at,
                    requests: c.requests,
                    per_second: c.requests as f64 / resolution as f64,
                    p50_ms: percentile_ms(&c.latency, 0.5),
                    p99_ms: percentile_ms(&c.latency, 0.99),
                });
                site.entry(at).or_default().requests += c.requests;
            }
        }
    }
    for at in instances.keys() {
        site.entry(*at).or_default();
    }
    History {
        range: range.to_string(),
        resolution_seconds: resolution,
        site: site
            .into_iter()
            .map(|(at, c)| {
                let (memory, n, open) = instances.get(&at).copied().unwrap_or_default();
                SitePoint {
                    at,
                    hits: c.hits,
                    misses: c.misses,
                    stale: c.stale,
                    hit_ratio: ratio(c.hits, c.misses),
                    requests: c.requests,
                    memory_bytes: memory,
                    instances: n,
                    breaker_open_instances: open,
                }
            })
            .collect(),
        families,
        routes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_merged_buckets() {
        // 100 requests: 90 under 1 ms, 10 between 5 and 10 ms.
        let mut latency = vec![0i64; BUCKETS.len() + 1];
        for (i, bound) in BUCKETS.iter().enumerate() {
            latency[i] = if *bound >= 0.01 {
                100
            } else if *bound >= 0.001 {
                90
            } else {
                0
            };
        }
        latency[BUCKETS.len()] = 100;
        let p50 = percentile_ms(&latency, 0.5).unwrap();
        assert!(p50 > 0.5 && p50 <= 1.0, "{p50}");
        let p99 = percentile_ms(&latency, 0.99).unwrap();
        assert!(p99 > 5.0 && p99 <= 10.0, "{p99}");
        assert_eq!(percentile_ms(&vec![0; BUCKETS.len() + 1], 0.5), None);
    }

    #[test]
    fn deltas_survive_a_counter_reset() {
        let then = Counters {
            hits: 10,
            latency: vec![1, 5],
            ..Default::default()
        };
        let now = Counters {
            hits: 14,
            latency: vec![2, 9],
            ..Default::default()
        };
        assert_eq!(now.since(Some(&then)).hits, 4);
        assert_eq!(now.since(Some(&then)).latency, vec![1, 4]);
        let reset = Counters {
            hits: 3,
            ..Default::default()
        };
        assert_eq!(reset.since(Some(&then)).hits, 3);
    }

    #[test]
    fn the_prometheus_labels_are_read() {
        let line = r#"route="/blog/{slug}/",method="GET",status="200",le="0.005"} 12"#;
        assert_eq!(label(line, "route"), Some("/blog/{slug}/"));
        assert_eq!(label(line, "le"), Some("0.005"));
    }
}
