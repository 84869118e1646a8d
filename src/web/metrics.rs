//! `/metrics` in Prometheus text format (the `metrics` facade and its Prometheus
//! exporter): HTTP request durations by route pattern and status, cache operation
//! latencies (recorded by the cache core as they happen), and, read at each scrape, the
//! cache's counters per family, hit ratios, memory, breaker and warming.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use metrics::histogram;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets, in seconds: 50 µs to 10 s.
pub(crate) const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// The process's recorder (installed once, whatever the number of apps in it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("seconds".into()), BUCKETS)
            .expect("buckets are valid")
            .install_recorder()
            .expect("no other metrics recorder is installed");
        // Histograms keep their raw samples until drained into buckets: without this,
        // a server nobody scrapes would grow by 8 bytes per sample (measured: +35 MiB
        // after a few seconds at 60,000 requests/s). Drained every 250 ms rather than
        // every second, the samples waiting took 0.37 MiB at their peak instead of 1.55
        // (heaptrack, same load); draining more often costs no more in all.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_millis(250));
                upkeep.run_upkeep();
            })
            .expect("spawn the metrics upkeep thread");
        handle
    })
}

/// A path's route pattern, if it has one (`web::routes::pattern_of`).
pub type PatternOf = fn(&str) -> Option<&'static str>;

/// Records every request's duration by route pattern (never the raw path: the labels
/// stay bounded), method and status. Outermost, so cache hits are measured too.
pub async fn record_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
    pattern_of: PatternOf,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    // Made-up methods share one label: clients must not be able to add series.
    let method: &'static str = match *req.method() {
        actix_web::http::Method::GET => "GET",
        actix_web::http::Method::HEAD => "HEAD",
        actix_web::http::Method::POST => "POST",
        actix_web::http::Method::PUT => "PUT",
        actix_web::http::Method::DELETE => "DELETE",
        actix_web::http::Method::PATCH => "PATCH",
        actix_web::http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let res = next.call(req).await?;
    let status = res.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    // The histogram of each (path, method, status), kept per worker: finding the route
    // pattern and going through the registry with fresh label strings on every request
    // cost more than the record itself. Paths come from clients, so the map is bounded
    // (emptied when full); the labels use the route pattern, never the path.
    const MAX_PATHS: usize = 1024;
    type ByPath = std::collections::HashMap<
        Box<str>,
        Vec<(&'static str, u16, metrics::Histogram)>,
        foldhash::fast::RandomState,
    >;
    thread_local! {
        static HISTOGRAMS: std::cell::RefCell<ByPath> = Default::default();
    }
    HISTOGRAMS.with_borrow_mut(|by_path| {
        let path = res.request().path();
        if let Some(h) = by_path
            .get(path)
            .and_then(|hs| hs.iter().find(|(m, s, _)| *m == method && *s == status))
        {
            return h.2.record(elapsed);
        }
        if by_path.len() >= MAX_PATHS {
            by_path.clear();
        }
        // The route table's pattern: the same label whether the cache or a handler
        // answered (a cached answer never reaches actix's router).
        let route = pattern_of(path).unwrap_or("unmatched");
        let histogram = histogram!(
            "folio_http_request_duration_seconds",
            "route" => route,
            "method" => method,
            "status" => status.to_string()
        );
        histogram.record(elapsed);
        by_path
            .entry(path.into())
            .or_default()
            .push((method, status, histogram));
    });
    Ok(res)
}

/// When `/metrics` last read what costs a round trip.
#[derive(Default)]
pub struct Scrapes {
    pub(crate) last: tokio::sync::Mutex<Option<std::time::Instant>>,
}

impl Scrapes {
    /// Prometheus scrapes every 15 s by default: one refresh per scrape, and 100
    /// scrapers hammering it cost one INFO every 5 s.
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(5);
}
