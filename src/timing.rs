//! Per-request accounting of time spent in the database, the cache and rendering, for
//! the `Server-Timing` header and the access log. A task-local set by the timing
//! middleware: the handler runs in the same task, so the database and cache layers can
//! add to it without the request being passed down to them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct RequestTiming {
    db_us: AtomicU64,
    db_queries: AtomicU64,
    cache_us: AtomicU64,
    render_us: AtomicU64,
    /// Where each database access came from (`file:line`), for N+1 detection.
    db_sites: parking_lot::Mutex<Vec<&'static str>>,
}

tokio::task_local! {
    static CURRENT: Arc<RequestTiming>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Db,
    Cache,
    Render,
}

/// A database access from `site` took `elapsed` (outside a request: nothing).
/// Returns whether a request was being answered (background tasks have no timing).
pub fn add_db(elapsed: Duration, site: &'static str) -> bool {
    CURRENT
        .try_with(|t| {
            t.db_us.fetch_add(elapsed.as_micros() as u64, Relaxed);
            t.db_queries.fetch_add(1, Relaxed);
            t.db_sites.lock().push(site);
        })
        .is_ok()
}

/// Adds to the current request's timing; outside a request it does nothing.
pub fn add(phase: Phase, elapsed: Duration) {
    let _ = CURRENT.try_with(|t| {
        let us = elapsed.as_micros() as u64;
        match phase {
            Phase::Db => {
                t.db_us.fetch_add(us, Relaxed);
                t.db_queries.fetch_add(1, Relaxed);
            }
            Phase::Cache => {
                t.cache_us.fetch_add(us, Relaxed);
            }
            Phase::Render => {
                t.render_us.fetch_add(us, Relaxed);
            }
        }
    });
}

impl RequestTiming {
    /// Runs `fut` with this timing as the current one.
    pub async fn scope<F: std::future::Future>(self: Arc<Self>, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }

    pub fn db(&self) -> Duration {
        Duration::from_micros(self.db_us.load(Relaxed))
    }
    pub fn db_queries(&self) -> u64 {
        self.db_queries.load(Relaxed)
    }
    /// The call sites of this request's database accesses, in order.
    pub fn db_sites(&self) -> Vec<&'static str> {
        self.db_sites.lock().clone()
    }
    pub fn cache(&self) -> Duration {
        Duration::from_micros(self.cache_us.load(Relaxed))
    }
    pub fn render(&self) -> Duration {
        Duration::from_micros(self.render_us.load(Relaxed))
    }

    /// `total;dur=2.0` (milliseconds): what any visitor may see.
    pub fn total_only(total: Duration) -> String {
        format!("total;dur={:.3}", total.as_secs_f64() * 1000.0)
    }

    /// `db;dur=1.2, cache;dur=0.1, render;dur=0.4, total;dur=2.0` (milliseconds).
    pub fn server_timing(&self, total: Duration) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "db;dur={:.3};desc=\"{} queries\", cache;dur={:.3}, render;dur={:.3}, total;dur={:.3}",
            ms(self.db()),
            self.db_queries(),
            ms(self.cache()),
            ms(self.render()),
            ms(total)
        )
    }
}
