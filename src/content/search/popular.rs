//! Which searches are popular: a bounded count of queries with exponential decay (a
//! search's weight halves every `HALF_LIFE`). It decides which results are worth
//! storing — a query searched lately from at least two client addresses — so a stream
//! of made-up queries stores nothing, even each sent twice: one address repeating a
//! query counts once (popularity cannot be forged by repetition), and which are warmed
//! after a write and by `folio warm --type=search`.
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

/// Client addresses remembered per query (hashed): enough to tell one client
/// repeating itself from a second one.
const ADDRESSES: usize = 4;

pub struct Popular {
    start: Instant,
    scores: Mutex<HashMap<String, Score>>,
}

struct Score {
    score: f64,
    /// Hashes of the addresses that searched it lately, newest last.
    seen: Vec<u64>,
}

/// A client address as `record` takes it: IPv6 addresses by their /64, which one
/// client usually holds whole.
pub fn client_hash(ip: Option<std::net::IpAddr>) -> u64 {
    use std::hash::{BuildHasher as _, Hash as _, Hasher as _};
    let mut h = foldhash::fast::FixedState::with_seed(0x5eed).build_hasher();
    match ip {
        Some(std::net::IpAddr::V6(v6)) => v6.segments()[..4].hash(&mut h),
        Some(std::net::IpAddr::V4(v4)) => v4.octets().hash(&mut h),
        None => 0u8.hash(&mut h),
    }
    h.finish()
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

    /// Counts one search for `query` (canonical) from `client` (see `client_hash`);
    /// true when it is now popular enough for its results to be stored. A client that
    /// searched it lately adds nothing.
    pub fn record(&self, query: &str, client: u64) -> bool {
        self.record_at(query, client, Instant::now())
    }

    fn record_at(&self, query: &str, client: u64, at: Instant) -> bool {
        let weight = self.weight(at);
        let mut scores = self.scores.lock();
        if let Some(entry) = scores.get_mut(query) {
            if !entry.seen.contains(&client) {
                entry.score += weight;
                if entry.seen.len() >= ADDRESSES {
                    entry.seen.remove(0);
                }
                entry.seen.push(client);
            }
            return entry.score / weight >= ADMIT_AT;
        }
        if scores.len() >= CAPACITY {
            let lowest = scores
                .iter()
                .min_by(|a, b| a.1.score.total_cmp(&b.1.score))
                .map(|(q, _)| q.clone());
            if let Some(lowest) = lowest {
                scores.remove(&lowest);
            }
        }
        let entry = Score {
            score: weight,
            seen: vec![client],
        };
        scores.insert(query.to_string(), entry);
        1.0 >= ADMIT_AT
    }

    /// Whether `query` has been searched enough lately to store its results.
    pub fn is_popular(&self, query: &str) -> bool {
        let weight = self.weight(Instant::now());
        self.scores
            .lock()
            .get(query)
            .is_some_and(|s| s.score / weight >= ADMIT_AT)
    }

    /// The `n` most searched queries lately, most first, with their decayed counts.
    pub fn top(&self, n: usize) -> Vec<(String, f64)> {
        let weight = self.weight(Instant::now());
        let mut all: Vec<(String, f64)> = self
            .scores
            .lock()
            .iter()
            .map(|(q, s)| (q.clone(), s.score / weight))
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
        assert!(!p.record_at("rust", 1, t0));
        assert!(p.record_at("rust", 2, t0 + Duration::from_secs(1)));
        // Two hours later both searches weigh a quarter each: a third is not enough.
        assert!(!p.record_at("rust", 3, t0 + 2 * HALF_LIFE));
    }

    #[test]
    fn one_client_repeating_itself_is_one_search() {
        let p = Popular::default();
        for _ in 0..100 {
            assert!(!p.record("made up", 7));
        }
        assert!(p.record("made up", 8), "a second client makes it popular");
        let v6 = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        assert_eq!(
            client_hash(v6("2001:db8::1")),
            client_hash(v6("2001:db8::ffff:2"))
        );
        assert_ne!(
            client_hash(v6("2001:db8::1")),
            client_hash(v6("2001:db8:0:1::1"))
        );
    }

    #[test]
    fn bounded_and_keeps_the_popular() {
        let p = Popular::default();
        for client in 0..5 {
            p.record("cache", client);
        }
        for i in 0..10 * CAPACITY {
            p.record(&format!("junk{i}"), 0);
        }
        assert_eq!(p.len(), CAPACITY);
        assert_eq!(p.top(1)[0].0, "cache");
        assert!(p.is_popular("cache"));
    }
}
