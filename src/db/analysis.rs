//! The database's side of `folio analyze`, measured by the running server itself:
//!
//! - **Statements by shape**: every SQL statement's time, from diesel's
//!   instrumentation on each pooled connection, grouped by its text with the bound
//!   values and the length of `IN (…)` lists left out — calls, total, p99, slowest.
//!   (Rows returned are not known there: diesel's instrumentation reports statements,
//!   not results.)
//! - **Slow statements**: the latest ones over `SLOW_STATEMENT`, with their time.
//! - **Repetition within a request** (N+1): each `with_conn!` call site a request runs
//!   is noted in its timing; a site run `N_PLUS_ONE` times or more in one request is
//!   recorded against the request's route.
//!
//! All bounded (shapes, sites and routes come from the code, but are capped anyway).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use parking_lot::Mutex;
use serde::Serialize;

/// A statement slower than this is listed.
pub const SLOW_STATEMENT: Duration = Duration::from_millis(50);
/// A call site run this often in one request is an N+1 pattern.
pub const N_PLUS_ONE: usize = 5;
const MAX_SHAPES: usize = 500;
const MAX_SLOW: usize = 50;
/// Latency buckets: powers of two of microseconds, 1 µs to ~34 s.
const BUCKETS: usize = 26;

#[derive(Debug, Default)]
struct Shape {
    calls: u64,
    errors: u64,
    total_us: u64,
    max_us: u64,
    buckets: [u64; BUCKETS],
}

#[derive(Debug, Default)]
struct Repeat {
    requests: u64,
    most_in_one: usize,
    runs: u64,
}

/// What the statements and requests of this process did.
#[derive(Debug, Default)]
pub struct QueryLog {
    shapes: Mutex<HashMap<String, Shape>>,
    slow: Mutex<VecDeque<SlowStatement>>,
    repeats: Mutex<HashMap<(String, &'static str), Repeat>>,
}

/// A statement shape, as `analyze` reports it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShapeReport {
    pub statement: String,
    pub calls: u64,
    pub errors: u64,
    pub total_ms: f64,
    pub avg_ms: f64,
    /// The upper bound of the bucket holding the 99th percentile (at most `max_ms`).
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SlowStatement {
    pub statement: String,
    pub ms: f64,
    pub at: chrono::NaiveDateTime,
}

/// One call site repeated within requests of one route.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RepeatReport {
    pub route: String,
    /// `src/content/repository/….rs:line`: the repository read that was repeated.
    pub site: String,
    /// Requests in which it ran `N_PLUS_ONE` times or more.
    pub requests: u64,
    pub most_in_one_request: usize,
    pub runs: u64,
}

impl QueryLog {
    fn record(&self, shape: String, took: Duration, failed: bool) {
        let us = took.as_micros() as u64;
        {
            let mut shapes = self.shapes.lock();
            if shapes.len() >= MAX_SHAPES && !shapes.contains_key(&shape) {
                return;
            }
            let s = shapes.entry(shape.clone()).or_default();
            s.calls += 1;
            s.errors += u64::from(failed);
            s.total_us += us;
            s.max_us = s.max_us.max(us);
            s.buckets[bucket(us)] += 1;
        }
        if took >= SLOW_STATEMENT {
            let mut slow = self.slow.lock();
            if slow.len() >= MAX_SLOW {
                slow.pop_front();
            }
            slow.push_back(SlowStatement {
                statement: shape,
                ms: took.as_secs_f64() * 1000.0,
                at: crate::db::now(),
            });
        }
    }

    /// A finished request of `route` ran these call sites: those run `N_PLUS_ONE`
    /// times or more are recorded.
    pub fn note_request(&self, route: &str, sites: &[&'static str]) {
        if sites.len() < N_PLUS_ONE {
            return;
        }
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for site in sites {
            *counts.entry(site).or_default() += 1;
        }
        let mut repeats = self.repeats.lock();
        for (site, n) in counts.into_iter().filter(|(_, n)| *n >= N_PLUS_ONE) {
            if repeats.len() >= MAX_SHAPES && !repeats.contains_key(&(route.to_string(), site)) {
                continue;
            }
            let r = repeats.entry((route.to_string(), site)).or_default();
            r.requests += 1;
            r.most_in_one = r.most_in_one.max(n);
            r.runs += n as u64;
        }
    }

    /// Statement shapes, the costliest (total time) first.
    pub fn shapes(&self) -> Vec<ShapeReport> {
        let shapes = self.shapes.lock();
        let mut out: Vec<ShapeReport> = shapes
            .iter()
            .map(|(statement, s)| ShapeReport {
                statement: statement.clone(),
                calls: s.calls,
                errors: s.errors,
                total_ms: s.total_us as f64 / 1000.0,
                avg_ms: s.total_us as f64 / 1000.0 / s.calls.max(1) as f64,
                // The bucket's bound, but never past the slowest seen.
                p99_ms: percentile_us(&s.buckets, s.calls, 0.99).min(s.max_us) as f64 / 1000.0,
                max_ms: s.max_us as f64 / 1000.0,
            })
            .collect();
        out.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        out
    }

    /// The latest slow statements, the slowest first.
    pub fn slow(&self) -> Vec<SlowStatement> {
        let mut out: Vec<SlowStatement> = self.slow.lock().iter().cloned().collect();
        out.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        out
    }

    /// N+1 patterns, the most repeated first.
    pub fn repeats(&self) -> Vec<RepeatReport> {
        let mut out: Vec<RepeatReport> = self
            .repeats
            .lock()
            .iter()
            .map(|((route, site), r)| RepeatReport {
                route: route.clone(),
                site: site.to_string(),
                requests: r.requests,
                most_in_one_request: r.most_in_one,
                runs: r.runs,
            })
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.runs));
        out
    }
}

fn bucket(us: u64) -> usize {
    ((64 - us.max(1).leading_zeros()) as usize).min(BUCKETS - 1)
}

/// The upper bound (µs) of the bucket holding the `q` quantile.
fn percentile_us(buckets: &[u64; BUCKETS], total: u64, q: f64) -> u64 {
    let rank = (q * total as f64).ceil() as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank.max(1) {
            return 1u64 << i;
        }
    }
    1u64 << (BUCKETS - 1)
}

/// A statement without its bound values (`-- binds: […]`), placeholders spelled `?`
/// on both databases, and a list of them (`IN (?, ?, ?)`) written once.
fn shape_of(statement: &str) -> String {
    let sql = statement.split(" -- binds:").next().unwrap_or(statement);
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                chars.next();
            }
            out.push('?');
        } else {
            out.push(c);
        }
    }
    while out.contains("?, ?") {
        out = out.replace("?, ?", "?");
    }
    out = out.replace("(?)", "(…)");
    out.trim().chars().take(400).collect()
}

/// Times each statement on one connection (diesel's instrumentation), and traces it as a
/// `db.statement` span under the query that ran it.
pub struct Timer {
    log: std::sync::Arc<super::DbStats>,
    system: &'static str,
    started: Option<(Instant, tracing::Span)>,
}

impl Timer {
    pub fn new(log: std::sync::Arc<super::DbStats>, system: &'static str) -> Self {
        Timer {
            log,
            system,
            started: None,
        }
    }
}

impl Instrumentation for Timer {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => {
                let span = tracing::debug_span!(
                    "db.statement",
                    db.system.name = self.system,
                    db.query.text = tracing::field::Empty,
                    otel.status_code = tracing::field::Empty,
                    error.message = tracing::field::Empty,
                );
                self.started = Some((Instant::now(), span));
            }
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                if let Some((started, span)) = self.started.take() {
                    let statement = query.to_string();
                    let shape = shape_of(&statement);
                    if !span.is_disabled() {
                        span.record("db.query.text", shape.as_str());
                        if let Some(e) = error {
                            span.record("otel.status_code", "ERROR");
                            span.record("error.message", tracing::field::display(e));
                        }
                    }
                    self.log
                        .analysis
                        .record(shape, started.elapsed(), error.is_some());
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_leave_out_values_and_list_lengths() {
        assert_eq!(
            shape_of(
                r#"SELECT "posts"."id" FROM "posts" WHERE "posts"."id" IN ($1, $2, $3) AND "slug" = $4 -- binds: [1, 2, 3, "a"]"#
            ),
            r#"SELECT "posts"."id" FROM "posts" WHERE "posts"."id" IN (…) AND "slug" = ?"#
        );
        assert_eq!(
            shape_of("SELECT 1 FROM t WHERE id IN (?, ?) -- binds: [1, 2]"),
            shape_of("SELECT 1 FROM t WHERE id IN (?) -- binds: [1]")
        );
    }

    #[test]
    fn a_site_repeated_in_one_request_is_an_n_plus_one() {
        let log = QueryLog::default();
        let site: &'static str = "src/content/repository/posts.rs:10";
        log.note_request("/blog/", &[site; 3]);
        assert!(log.repeats().is_empty(), "three runs are not a pattern");
        log.note_request("/blog/", &[site; 12]);
        log.note_request("/blog/", &[site; 7]);
        let r = &log.repeats()[0];
        assert_eq!((r.requests, r.most_in_one_request, r.runs), (2, 12, 19));
    }

    #[test]
    fn p99_is_the_bucket_of_the_slow_tail() {
        let log = QueryLog::default();
        for _ in 0..99 {
            log.record("SELECT 1".into(), Duration::from_micros(100), false);
        }
        log.record("SELECT 1".into(), Duration::from_millis(80), false);
        log.record("SELECT 1".into(), Duration::from_millis(80), false);
        let s = &log.shapes()[0];
        assert_eq!(s.calls, 101);
        assert_eq!(s.p99_ms, 80.0, "the bucket's bound, capped at the slowest");
        assert_eq!(log.slow().len(), 2);
    }
}
