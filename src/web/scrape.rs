//! `GET /metrics`: what Prometheus scrapes — the request histograms `web::metrics`
//! records, and the cache's, warming's and the database's figures read at scrape time.

use actix_web::{web, HttpResponse};
use metrics::{counter, gauge};

use crate::web::metrics::{handle, Scrapes};
use crate::web::state::AppState;

/// `GET /metrics`.
pub async fn metrics(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, crate::web::error::ApiError> {
    if state.config.metrics_require_token {
        crate::web::session::bearer(&req, &state)?;
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
            // Path edges: the month's paths (CloudFront bills past 1,000 a month).
            if let Some(paths) = edge.paths_this_month {
                gauge!("folio_edge_paths_this_month", "edge" => name.clone()).set(paths as f64);
            }
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
