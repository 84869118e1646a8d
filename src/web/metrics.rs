//! `/metrics` in Prometheus text format (the `metrics` facade and its Prometheus
//! exporter): HTTP request durations by route pattern and status, cache operation
//! latencies (recorded by the cache core as they happen), and, read at each scrape, the
//! cache's counters per family, hit ratios, memory, breaker and warming.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::web::AppState;

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

/// Records every request's duration by route pattern (never the raw path: the labels
/// stay bounded), method and status. Outermost, so cache hits are measured too.
pub async fn record_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
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
        let route = crate::web::routes::find(path).map_or("unmatched", |r| r.path);
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

/// `GET /metrics`.
pub async fn metrics(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, crate::web::error::ApiError> {
    if state.config.metrics_require_token {
        crate::web::api::cache::bearer(&req, &state)?;
    }
    // What costs a round trip (Redis INFO, database counts) at most once per
    // `Scrapes::EVERY`, shared by every scrape meanwhile (the gauges keep the values);
    // concurrent scrapes wait for one refresh.
    let mut refreshed = state.scrapes.last.lock().await;
    let dear = refreshed.is_none_or(|at| at.elapsed() >= Scrapes::EVERY);
    if dear {
        *refreshed = Some(std::time::Instant::now());
    }
    let handle = handle();
    let cache = &state.cache;
    let stats = cache.stats();
    let backend = cache.backend_name();
    for (name, value) in [
        ("folio_cache_hits_total", stats.totals.hits),
        ("folio_cache_misses_total", stats.totals.misses),
        ("folio_cache_sets_total", stats.totals.sets),
        ("folio_cache_deletes_total", stats.totals.deletes),
        ("folio_cache_errors_total", stats.totals.errors),
    ] {
        counter!(name, "backend" => backend).absolute(value);
    }
    for family in &stats.families {
        counter!("folio_cache_family_hits_total", "family" => family.name.clone())
            .absolute(family.hits);
        counter!("folio_cache_family_misses_total", "family" => family.name.clone())
            .absolute(family.misses);
    }
    gauge!("folio_cache_hit_ratio", "window" => "lifetime").set(stats.hit_ratio);
    for (window, seconds) in [("1m", 60), ("5m", 300), ("1h", 3600)] {
        if let Some(ratio) = cache.window(seconds).hit_ratio {
            gauge!("folio_cache_hit_ratio", "window" => window).set(ratio);
        }
    }
    if let Some((entries, bytes, max)) = cache.local_size() {
        gauge!("folio_cache_entries").set(entries as f64);
        gauge!("folio_cache_bytes").set(bytes as f64);
        gauge!("folio_cache_max_bytes").set(max as f64);
    }
    let health = cache.health();
    gauge!("folio_cache_breaker_open").set(if health.breaker == "closed" { 0.0 } else { 1.0 });
    counter!("folio_cache_breaker_trips_total").absolute(health.breaker_trips);
    if health.near_enabled {
        gauge!("folio_cache_near_entries").set(health.near_entries as f64);
        gauge!("folio_cache_near_bytes").set(health.near_bytes as f64);
    }
    let warming = &state.warming;
    counter!("folio_cache_warmed_total")
        .absolute(warming.stored.load(std::sync::atomic::Ordering::Relaxed));
    counter!("folio_cache_warmed_hit_total")
        .absolute(warming.hit.load(std::sync::atomic::Ordering::Relaxed));
    gauge!("folio_views_pending").set(state.views.pending() as f64);
    counter!("folio_log_lines_dropped_total").absolute(crate::telemetry::dropped_lines());
    if dear {
        refresh_dear(&state).await;
    }
    drop(refreshed);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        .body(handle.render()))
}

/// When `/metrics` last read what costs a round trip.
#[derive(Default)]
pub struct Scrapes {
    last: tokio::sync::Mutex<Option<std::time::Instant>>,
}

impl Scrapes {
    /// Prometheus scrapes every 15 s by default: one refresh per scrape, and 100
    /// scrapers hammering it cost one INFO every 5 s.
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(5);
}

/// The figures read from the database and Redis.
async fn refresh_dear(state: &AppState) {
    let cache = &state.cache;
    // Due outbox rows: a write's invalidation the cache has not taken yet (alerted on
    // when it stays above zero, deploy/prometheus/alerts.yml).
    if let Ok(pending) = state.repo.pending_invalidations().await {
        gauge!("folio_invalidations_pending").set(pending as f64);
    }
    // Edge caches: purges per edge (deploy/grafana/folio.json).
    if let Some(edges) = state.repo.edges() {
        for edge in edges.snapshot(&state.repo).await {
            let name = edge.edge;
            for (metric, value) in [
                ("folio_edge_purge_requests_total", edge.requests),
                ("folio_edge_purges_delivered_total", edge.delivered),
                ("folio_edge_purges_coalesced_total", edge.coalesced),
                ("folio_edge_purges_retried_total", edge.retried),
                ("folio_edge_purge_failures_total", edge.failed),
            ] {
                counter!(metric, "edge" => name.clone()).absolute(value);
            }
            gauge!("folio_edge_purges_pending", "edge" => name.clone()).set(edge.pending as f64);
            gauge!("folio_edge_purges_repeats_pending", "edge" => name)
                .set(edge.repeats_pending as f64);
        }
    }
    // The shared cache's own memory (Redis: summed over a cluster's masters).
    if let Some(memory) = cache.server_memory().await {
        gauge!("folio_cache_server_used_bytes").set(memory.used_bytes as f64);
        gauge!("folio_cache_server_max_bytes").set(memory.max_bytes as f64);
        counter!("folio_cache_server_evicted_keys_total").absolute(memory.evicted_keys);
    }
}
