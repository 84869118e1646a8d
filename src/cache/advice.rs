//! Recommendations from the statistics, in words an operator can act on: what the
//! monitor API and the dashboard show under the numbers.

use super::history::Window;
use super::stats::StatsSnapshot;

/// What the advice is read from.
pub struct Inputs<'a> {
    pub stats: &'a StatsSnapshot,
    pub last_minute: &'a Window,
    pub last_hour: &'a Window,
    /// Entries evicted for room, and the bound (in-process stores).
    pub evictions: u64,
    pub max_bytes: Option<u64>,
    /// Entries warming stored, and how many of them a reader hit.
    pub warmed: u64,
    pub warmed_hit: u64,
    /// The shared server's memory (Redis).
    pub server: Option<&'a super::backend::ServerMemory>,
}

/// Below this many lookups a ratio says nothing.
const ENOUGH: u64 = 50;

pub fn recommendations(i: &Inputs) -> Vec<String> {
    let mut advice = Vec::new();
    let pct = |r: f64| format!("{:.0} %", r * 100.0);
    if let (Some(now), Some(hour)) = (i.last_minute.hit_ratio, i.last_hour.hit_ratio) {
        if i.last_minute.lookups >= ENOUGH && now + 0.2 < hour {
            advice.push(format!(
                "the hit ratio fell to {} over the last minute ({} over the hour): a burst of writes or a cold deploy? `folio warm` refills it",
                pct(now),
                pct(hour)
            ));
        }
    }
    let mut families: Vec<_> = i
        .stats
        .families
        .iter()
        .filter(|f| f.hits + f.misses >= ENOUGH && f.hit_ratio < 0.8)
        .collect();
    families.sort_by(|a, b| b.miss_cost_ms().total_cmp(&a.miss_cost_ms()));
    for f in families.iter().take(3) {
        advice.push(format!(
            "{}: {} hits over {} lookups{}: warm it or raise its TTL (CACHE_TTLS={}=…)",
            f.name,
            pct(f.hit_ratio),
            f.hits + f.misses,
            f.avg_fill_ms
                .map(|ms| format!(", each miss costs {ms:.1} ms"))
                .unwrap_or_default(),
            f.name
        ));
    }
    if i.evictions > 0 {
        advice.push(format!(
            "{} entries were evicted to make room{}: raise CACHE_MAX_BYTES",
            i.evictions,
            i.max_bytes
                .map(|b| format!(" (bound {} MiB)", b / (1024 * 1024)))
                .unwrap_or_default()
        ));
    }
    if let Some(server) = i.server.filter(|s| s.evicted_keys > 0) {
        advice.push(format!(
            "Redis evicted {} keys for room (maxmemory {} MiB, policy {}): raise its maxmemory",
            server.evicted_keys,
            server.max_bytes / (1024 * 1024),
            server.policy
        ));
    }
    if let Some(health) = &i.stats.health {
        if health.breaker != "closed" {
            advice.push(format!(
                "the cache is bypassed (breaker {}): the site serves from the database; cause: {}",
                health.breaker,
                health.last_trip_cause.as_deref().unwrap_or("unknown")
            ));
        } else if health.breaker_trips > 0 {
            advice.push(format!(
                "the breaker opened {} time(s) since start (last cause: {}): check Redis and CACHE_TIMEOUT_MS",
                health.breaker_trips,
                health.last_trip_cause.as_deref().unwrap_or("unknown")
            ));
        }
    }
    if i.stats.error_rate > 0.01 {
        advice.push(format!(
            "{} of cache operations failed: check CACHE_URL and the server behind it",
            pct(i.stats.error_rate)
        ));
    }
    if i.warmed >= 20 && (i.warmed_hit as f64) < 0.3 * i.warmed as f64 {
        advice.push(format!(
            "only {} of {} warmed entries were read before they expired: warm fewer types (`--type`) or raise the page TTL",
            i.warmed_hit, i.warmed
        ));
    }
    if advice.is_empty() {
        advice.push("nothing to do: the cache is serving well".into());
    }
    advice
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::stats::{FamilySnapshot, Totals};

    fn window(ratio: Option<f64>, lookups: u64) -> Window {
        Window {
            seconds: 60,
            hit_ratio: ratio,
            lookups,
            ops_per_second: 1.0,
        }
    }

    #[test]
    fn a_cold_family_a_drop_and_evictions_are_named() {
        let mut stats = StatsSnapshot::new(
            "memory",
            Totals::default(),
            Default::default(),
            vec![],
            vec![],
        );
        let mut fragment = FamilySnapshot::new("fragment", 40, 60);
        fragment.avg_fill_ms = Some(3.0);
        stats.families = vec![fragment, FamilySnapshot::new("posts", 99, 1)];
        let advice = recommendations(&Inputs {
            stats: &stats,
            last_minute: &window(Some(0.4), 100),
            last_hour: &window(Some(0.92), 5000),
            evictions: 12,
            max_bytes: Some(64 << 20),
            warmed: 0,
            warmed_hit: 0,
            server: None,
        });
        assert!(
            advice[0].contains("fell to 40 %") && advice[0].contains("92 %"),
            "{advice:?}"
        );
        assert!(
            advice
                .iter()
                .any(|a| a.starts_with("fragment: 40 %") && a.contains("3.0 ms")),
            "{advice:?}"
        );
        assert!(
            !advice.iter().any(|a| a.starts_with("posts")),
            "a warm family is fine"
        );
        assert!(advice
            .iter()
            .any(|a| a.contains("12 entries were evicted") && a.contains("64 MiB")));
    }

    #[test]
    fn a_healthy_cache_gets_no_advice_but_that() {
        let stats = StatsSnapshot::new(
            "memory",
            Totals::default(),
            Default::default(),
            vec![],
            vec![],
        );
        let advice = recommendations(&Inputs {
            stats: &stats,
            last_minute: &window(None, 0),
            last_hour: &window(None, 0),
            evictions: 0,
            max_bytes: None,
            warmed: 0,
            warmed_hit: 0,
            server: None,
        });
        assert_eq!(
            advice,
            vec!["nothing to do: the cache is serving well".to_string()]
        );
    }
}
