//! Health for load balancers and operators: `/healthz` (the process answers),
//! `/readyz` (the database answers; the cache's state is reported, not required: a site
//! without its cache is slower, not down) and `/api/cache/health/` (the cache itself:
//! 200 when it serves, 503 when it does not).

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::web::state::AppState;

fn no_store(status: actix_web::http::StatusCode) -> actix_web::HttpResponseBuilder {
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CACHE_CONTROL, "no-store"));
    res
}

pub async fn healthz() -> HttpResponse {
    no_store(actix_web::http::StatusCode::OK)
        .content_type("text/plain; charset=utf-8")
        .body("ok\n")
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = state.repo.db().ping().await;
    let health = state.cache.health();
    let status = if database.is_ok() {
        actix_web::http::StatusCode::OK
    } else {
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE
    };
    no_store(status).json(json!({
        "ready": database.is_ok(),
        "database": match &database {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        },
        "cache": {
            "backend": state.cache.backend_name(),
            "breaker": health.breaker,
        },
    }))
}

pub async fn cache_health(state: web::Data<AppState>) -> HttpResponse {
    let cache = &state.cache;
    let ping = cache.ping().await;
    let health = cache.health();
    let stats = cache.stats();
    let healthy = ping.is_ok() && health.breaker == "closed";
    let status = if healthy {
        actix_web::http::StatusCode::OK
    } else {
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE
    };
    let memory = cache.local_size().map(|(entries, bytes, max_bytes)| {
        json!({ "entries": entries, "bytes": bytes, "max_bytes": max_bytes })
    });
    no_store(status).json(json!({
        "healthy": healthy,
        "backend": cache.backend_name(),
        "reachable": ping.is_ok(),
        "round_trip_ms": ping.as_ref().ok().map(|d| d.as_secs_f64() * 1000.0),
        "error": ping.as_ref().err().map(|e| e.to_string()),
        "error_rate": stats.error_rate,
        "breaker": health.breaker,
        "breaker_trips": health.breaker_trips,
        "last_trip_cause": health.last_trip_cause,
        "near": health.near_enabled.then(|| json!({
            "entries": health.near_entries,
            "bytes": health.near_bytes,
            "hits": health.near_hits,
        })),
        "memory": memory,
    }))
}
