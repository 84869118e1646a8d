//! Which searches are popular: a bounded count of queries with exponential decay (a
//! search's weight halves every `HALF_LIFE`). It decides which results are worth
//! storing — a query seen at least twice lately — so a stream of made-up queries stores
//! nothing, and which are warmed after a write and by `folio warm --type=search`.
//!
//! Forward decay: a search at time t adds 2^(t / HALF_LIFE) to its query's score, so
//! scores compare without being recomputed; a score now is that over 2^(now / HALF_LIFE).
//! At most `CAPACITY` queries are kept; a new one replaces the lowest scored.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub const CAPACITY: usize = 1_000;
pub const HALF_LIFE: Duration = Duration::from_secs(3_600);
/// Searches (decayed) after which a query's results are stored.
pub const ADMIT_AT: f64 = 1.9;

pub struct Popular {
    start: Instant,
    scores: Mutex<HashMap<String, f64>>,
}

impl Default for Popular {
    fn default() -> Self {
        Popular {
            start: Instant::now(),
            scores: Mutex::new(HashMap::new()),
        }
    }
}

impl Popular {
    fn weight(&self, at: Instant) -> f64 {
        let halvings = at.duration_since(self.start).as_secs_f64() / HALF_LIFE.as_secs_f64();
        // Past ~1,000 half-lives (six weeks) 2^x would overflow: start over.
        2f64.powf(halvings.min(1_000.0))
    }

    /// Counts one search for `query` (canonical); true when it is now popular enough
    /// for its results to be stored.
    pub fn record(&self, query: &str) -> bool {
        self.record_at(query, Instant::now())
    }

    fn record_at(&self, query: &str, at: Instant) -> bool {
        let weight = self.weight(at);
        let mut scores = self.scores.lock();
        if let Some(score) = scores.get_mut(query) {
            *score += weight;
            return *score / weight >= ADMIT_AT;
        }
        if scores.len() >= CAPACITY {
            let lowest = scores
                .iter()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map(|(q, _)| q.clone());
            if let Some(lowest) = lowest {
                scores.remove(&lowest);
            }
        }
        scores.insert(query.to_string(), weight);
        1.0 >= ADMIT_AT
    }

    /// Whether `query` has been searched enough lately to store its results.
    pub fn is_popular(&self, query: &str) -> bool {
        let weight = self.weight(Instant::now());
        self.scores
            .lock()
            .get(query)
            .is_some_and(|s| s / weight >= ADMIT_AT)
    }

    /// The `n` most searched queries lately, most first, with their decayed counts.
    pub fn top(&self, n: usize) -> Vec<(String, f64)> {
        let weight = self.weight(Instant::now());
        let mut all: Vec<(String, f64)> = self
            .scores
            .lock()
            .iter()
            .map(|(q, s)| (q.clone(), s / weight))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    pub fn len(&self) -> usize {
        self.scores.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_on_the_second_search_and_decays() {
        let p = Popular::default();
        let t0 = p.start;
        assert!(!p.record_at("rust", t0));
        assert!(p.record_at("rust", t0 + Duration::from_secs(1)));
        // Two hours later both searches weigh a quarter each: a third is not enough.
        assert!(!p.record_at("rust", t0 + 2 * HALF_LIFE));
    }

    #[test]
    fn bounded_and_keeps_the_popular() {
        let p = Popular::default();
        for _ in 0..5 {
            p.record("cache");
        }
        for i in 0..10 * CAPACITY {
            p.record(&format!("junk{i}"));
        }
        assert_eq!(p.len(), CAPACITY);
        assert_eq!(p.top(1)[0].0, "cache");
        assert!(p.is_popular("cache"));
    }
}
