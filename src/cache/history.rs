//! The counters over time: a sample every few seconds for the last hour, so hit ratios
//! can be given over 1 min, 5 min and 1 h (a lifetime ratio hides a regression) and a
//! dashboard can chart them.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;

use super::stats::Totals;

/// One sample: the totals at a moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub at_unix: u64,
    pub hits: u64,
    pub misses: u64,
    pub sets: u64,
    pub errors: u64,
}

/// Hit ratio and operation rate over a window (None: no traffic then).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Window {
    pub seconds: u64,
    pub hit_ratio: Option<f64>,
    pub lookups: u64,
    pub ops_per_second: f64,
}

/// A point of the last hour's chart: the window ending at `at_unix`.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub at_unix: u64,
    pub hit_ratio: Option<f64>,
    pub ops_per_second: f64,
}

pub struct History {
    every: Duration,
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    pub fn new(every: Duration) -> Self {
        History {
            every,
            samples: Mutex::new(VecDeque::new()),
        }
    }

    pub fn every(&self) -> Duration {
        self.every
    }

    /// Adds a sample, keeping one hour's.
    pub fn record(&self, totals: &Totals) {
        let keep = (3600 / self.every.as_secs().max(1)) as usize + 1;
        let mut samples = self.samples.lock();
        samples.push_back(Sample {
            at_unix: now_unix(),
            hits: totals.hits,
            misses: totals.misses,
            sets: totals.sets,
            errors: totals.errors,
        });
        while samples.len() > keep {
            samples.pop_front();
        }
    }

    /// The window of `seconds` ending now (`now` being the current totals).
    pub fn window(&self, seconds: u64, now: &Totals) -> Window {
        let samples = self.samples.lock();
        let cutoff = now_unix().saturating_sub(seconds);
        // The oldest sample inside the window (or the oldest there is).
        let then = samples
            .iter()
            .find(|s| s.at_unix >= cutoff)
            .or(samples.front())
            .copied();
        let Some(then) = then else {
            return Window {
                seconds,
                hit_ratio: None,
                lookups: 0,
                ops_per_second: 0.0,
            };
        };
        between(&then, &Sample::from_totals(now), seconds)
    }

    /// The last hour, one point per sample.
    pub fn chart(&self) -> Vec<Point> {
        let samples = self.samples.lock();
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|(a, b)| {
                let w = between(a, b, b.at_unix.saturating_sub(a.at_unix));
                Point {
                    at_unix: b.at_unix,
                    hit_ratio: w.hit_ratio,
                    ops_per_second: w.ops_per_second,
                }
            })
            .collect()
    }
}

impl Sample {
    fn from_totals(t: &Totals) -> Sample {
        Sample {
            at_unix: now_unix(),
            hits: t.hits,
            misses: t.misses,
            sets: t.sets,
            errors: t.errors,
        }
    }
}

fn between(then: &Sample, now: &Sample, seconds: u64) -> Window {
    let hits = now.hits.saturating_sub(then.hits);
    let misses = now.misses.saturating_sub(then.misses);
    let ops = hits + misses + now.sets.saturating_sub(then.sets);
    let elapsed = now.at_unix.saturating_sub(then.at_unix).max(1);
    Window {
        seconds,
        hit_ratio: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
        lookups: hits + misses,
        ops_per_second: ops as f64 / elapsed as f64,
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
