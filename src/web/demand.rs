//! What readers ask for, per URL: a small model that warming follows
//! (`web::warm::plan`).
//!
//! **Counted** as the response cache answers readers. It counts every 200 it sends, hits
//! and misses alike (with each miss's render time), but not warm requests. Every
//! `HISTORY_FLUSH_INTERVAL` the counts go into `demand` (per URL and hour, summed over
//! every instance), so the model outlives restarts and every instance shares it.
//!
//! **Bounded.** An instance tracks at most `TRACKED` URLs between two flushes
//! (Space-Saving: a new URL replaces the least counted one and inherits its count, so
//! the most asked are kept, each over-counted by at most the smallest count). The table
//! holds at most `PER_HOUR` URLs an hour (the most asked of each flush first) and keeps
//! `KEPT_DAYS`.
//!
//! **Explainable.** Per URL it gives requests per hour over the last hour, over the last
//! day, and over the same two hours of the week (this one and the next) in the last
//! four weeks. These are blended half, a quarter and a quarter into one rate, plus what
//! its misses cost (their mean render time). A URL's value for warming is the chance
//! that it is asked before its entry expires, 1 − e^(−rate × TTL), times that cost. Only
//! the first request after a fill is a miss, so ten expected requests do not make warming
//! worth ten misses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DurationRound, NaiveDateTime, TimeDelta};

use crate::content::repository::demand::Counted;
use crate::content::Repository;
use crate::db::DbError;

/// URLs an instance tracks between two flushes.
pub const TRACKED: usize = 1024;
/// URLs the table holds per hour, every instance's together (see `add_demand`).
pub const PER_HOUR: i64 = 2048;
/// Days of counts kept: four weeks of the same hour of the week, and a day's margin.
const KEPT_DAYS: i64 = 29;

/// This instance's counts since the last flush.
#[derive(Default)]
pub struct Demand {
    tally: parking_lot::Mutex<HashMap<Box<str>, Counted>>,
}

impl Demand {
    /// Counts one answer to a reader (`miss`: what rendering it took).
    pub fn observe(&self, path: &str, miss: Option<Duration>) {
        let mut tally = self.tally.lock();
        let counted = match tally.get_mut(path) {
            Some(counted) => counted,
            None => {
                let inherited = match tally.len() >= TRACKED {
                    false => 0,
                    true => {
                        let least = tally
                            .iter()
                            .min_by_key(|(_, c)| c.requests)
                            .map(|(path, c)| (path.clone(), c.requests));
                        let (least, requests) = least.expect("a full map has a least");
                        tally.remove(&least);
                        requests
                    }
                };
                tally.entry(path.into()).or_insert(Counted {
                    requests: inherited,
                    ..Default::default()
                })
            }
        };
        counted.requests += 1;
        if let Some(took) = miss {
            counted.misses += 1;
            counted.miss_ms += took.as_secs_f64() * 1000.0;
        }
    }

    /// Writes every `every` until the cache is dropped (as `web::analytics` does).
    pub fn start(self: &Arc<Self>, repo: Repository, every: Duration) {
        let demand = self.clone();
        let cache = repo.cache().downgrade();
        let db = repo.db().clone();
        tokio::spawn(async move {
            let mut pruned: Option<NaiveDateTime> = None;
            loop {
                tokio::time::sleep(every).await;
                let Some(cache) = cache.upgrade() else { return };
                let repo = Repository::new(db.clone(), cache);
                if let Err(e) = demand.flush(&repo).await {
                    tracing::warn!(error = %e, "demand counts not written");
                }
                let now = crate::content::repository::now();
                if pruned.is_none_or(|at| now - at > TimeDelta::hours(1)) {
                    let _ = repo.prune_demand(now - TimeDelta::days(KEPT_DAYS)).await;
                    pruned = Some(now);
                }
            }
        });
    }

    /// Adds the counts since the last flush to this hour's rows. A failed write loses
    /// them: they are estimates, and a retry would double the ones that did land.
    pub async fn flush(&self, repo: &Repository) -> Result<(), DbError> {
        let counts: Vec<(String, Counted)> = std::mem::take(&mut *self.tally.lock())
            .into_iter()
            .map(|(path, c)| (path.into_string(), c))
            .collect();
        if counts.is_empty() {
            return Ok(());
        }
        let now = crate::content::repository::now();
        repo.add_demand(hour_of(now), &counts, PER_HOUR).await
    }
}

fn hour_of(at: NaiveDateTime) -> NaiveDateTime {
    at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at)
}

/// One URL as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicted {
    pub path: String,
    /// Requests per hour: over the last hour, the last day, and this hour and the next
    /// one of the week over the last four weeks.
    pub last_hour: f64,
    pub last_day: f64,
    pub same_hours: f64,
    /// What one miss costs, ms (its own misses' mean, else the site's).
    pub miss_ms: f64,
}

impl Predicted {
    /// The blended rate, requests per second.
    pub fn rate(&self) -> f64 {
        (0.5 * self.last_hour + 0.25 * self.last_day + 0.25 * self.same_hours) / 3600.0
    }

    /// Requests expected within `ttl`.
    pub fn expected(&self, ttl: Duration) -> f64 {
        self.rate() * ttl.as_secs_f64()
    }

    /// What warming it is worth, ms of rendering readers are spared: the chance it is
    /// asked within `ttl`, times its miss's cost.
    pub fn value(&self, ttl: Duration) -> f64 {
        (1.0 - (-self.expected(ttl)).exp()) * self.miss_ms
    }
}

/// The model at `now`, from every instance's counts; empty for a new site.
pub async fn model(repo: &Repository, now: NaiveDateTime) -> Result<Vec<Predicted>, DbError> {
    let hour = hour_of(now);
    let into_hour = (now - hour).num_seconds().max(60) as f64;
    // No counts at all: a new site.
    let Some(oldest) = repo.demand_oldest().await? else {
        return Ok(Vec::new());
    };
    let last_hour = repo.demand_since(hour - TimeDelta::hours(1), None).await?;
    let last_day = repo.demand_since(now - TimeDelta::hours(24), None).await?;
    let kept = now - TimeDelta::days(KEPT_DAYS);
    // This hour and the next, one to four weeks ago: as many weeks as there are counts.
    let weeks: Vec<NaiveDateTime> = (1..=4)
        .map(|week| hour - TimeDelta::weeks(week))
        .filter(|then| *then >= oldest)
        .collect();
    let same: Vec<NaiveDateTime> = weeks
        .iter()
        .flat_map(|then| [*then, *then + TimeDelta::hours(1)])
        .collect();
    let same_hours = match same.is_empty() {
        true => Vec::new(),
        false => repo.demand_since(kept, Some(&same)).await?,
    };
    let mut by_path: HashMap<String, Predicted> = HashMap::new();
    fn slot<'a>(map: &'a mut HashMap<String, Predicted>, path: &str) -> &'a mut Predicted {
        map.entry(path.to_string()).or_insert_with(|| Predicted {
            path: path.to_string(),
            last_hour: 0.0,
            last_day: 0.0,
            same_hours: 0.0,
            miss_ms: 0.0,
        })
    }
    let mut costs: HashMap<&str, (i64, f64)> = HashMap::new();
    for (path, c) in &last_hour {
        // The previous hour whole, and this one so far.
        slot(&mut by_path, path).last_hour = c.requests as f64 * 3600.0 / (3600.0 + into_hour);
    }
    for (path, c) in &last_day {
        slot(&mut by_path, path).last_day = c.requests as f64 / 24.0;
        let cost = costs.entry(path).or_default();
        cost.0 += c.misses;
        cost.1 += c.miss_ms;
    }
    for (path, c) in &same_hours {
        slot(&mut by_path, path).same_hours = c.requests as f64 / (2.0 * weeks.len() as f64);
        let cost = costs.entry(path).or_default();
        cost.0 += c.misses;
        cost.1 += c.miss_ms;
    }
    let (all_misses, all_ms) = costs
        .values()
        .fold((0i64, 0.0f64), |(m, ms), (cm, cms)| (m + cm, ms + cms));
    let site_cost = match all_misses {
        0 => 1.0,
        n => all_ms / n as f64,
    };
    let mut model: Vec<Predicted> = by_path
        .into_values()
        .map(|mut p| {
            p.miss_ms = match costs.get(p.path.as_str()) {
                Some((misses, ms)) if *misses > 0 => ms / *misses as f64,
                _ => site_cost,
            };
            p
        })
        .collect();
    model.sort_by(|a, b| b.rate().total_cmp(&a.rate()).then(a.path.cmp(&b.path)));
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_asked_urls_are_kept_within_the_bound() {
        let demand = Demand::default();
        // A few popular URLs, then more distinct ones than the bound, each asked once.
        for round in 0..50 {
            for hot in ["/", "/blog/", "/blog/a/"] {
                demand.observe(hot, (round == 0).then(|| Duration::from_millis(4)));
            }
        }
        for i in 0..(TRACKED * 3) {
            demand.observe(&format!("/search/?q=junk{i}"), None);
        }
        let tally = demand.tally.lock();
        assert!(tally.len() <= TRACKED);
        for hot in ["/", "/blog/", "/blog/a/"] {
            let c = tally.get(hot).expect("a popular URL is kept");
            assert_eq!(c.requests, 50);
            assert_eq!(c.misses, 1);
            assert!((c.miss_ms - 4.0).abs() < 0.01);
        }
    }

    #[test]
    fn value_is_the_chance_of_a_read_times_its_cost() {
        let p = Predicted {
            path: "/".into(),
            last_hour: 3600.0,
            last_day: 3600.0,
            same_hours: 3600.0,
            miss_ms: 5.0,
        };
        assert!((p.rate() - 1.0).abs() < 1e-9);
        let ttl = Duration::from_secs(300);
        assert!((p.expected(ttl) - 300.0).abs() < 1e-6);
        assert!(
            (p.value(ttl) - 5.0).abs() < 1e-6,
            "read for sure: one miss spared"
        );
        let rare = Predicted {
            last_hour: 0.0,
            last_day: 1.0,
            same_hours: 0.0,
            ..p
        };
        // A quarter of one request an hour: ~2 % chance within five minutes.
        assert!(rare.value(ttl) < 0.15 && rare.value(ttl) > 0.05);
    }
}
