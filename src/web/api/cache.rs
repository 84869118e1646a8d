//! The cache's own API, for admins — a signed-in admin's session, or
//! `Authorization: Bearer <CACHE_ADMIN_TOKEN>` for scripts (warming and clearing also
//! want the session's CSRF token in `X-CSRF-Token`). Anonymous callers of the
//! statistics get a coarse aggregate, computed at most once a second: the full figures
//! name keys and run Redis `INFO`, which no visitor should be able to make the site do
//! on every request.

use actix_session::Session;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::web::error::ApiError;
use crate::web::state::AppState;
use crate::web::warm::report::WarmOptions;

/// The windows the hit ratio is given over, in seconds.
const WINDOWS: [(&str, u64); 3] = [("1m", 60), ("5m", 300), ("1h", 3600)];

/// `GET /api/cache/stats/`: this instance's counters, ratios over 1 min / 5 min / 1 h,
/// per family, latency percentiles, memory, breaker and warming; with Redis, the
/// site-wide totals of every instance too.
pub async fn stats(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
) -> Result<HttpResponse, ApiError> {
    Ok(match reader(&req, &session, &state).await? {
        Reader::Admin => no_store(stats_json(&state).await),
        Reader::Anonymous => no_store(state.public_stats.get(&state.cache)),
    })
}

/// `GET /api/cache/history/?range=1h|24h|7d|90d` (admins): the site's cache and
/// request history from the database, every instance merged, per minute up to a day and
/// per hour beyond (see `web::analytics`).
pub async fn history(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    query: crate::web::canonical::Params,
) -> Result<HttpResponse, ApiError> {
    // A read: a signed-in session needs no CSRF token (as the statistics).
    if let Reader::Anonymous = reader(&req, &session, &state).await? {
        return Err(ApiError::Unauthorized(
            "sign in as an admin, or send Authorization: Bearer <CACHE_ADMIN_TOKEN>".into(),
        ));
    }
    let range = query.get("range").unwrap_or("1h");
    match crate::web::analytics::history(&state.repo, range).await {
        Some(Ok(history)) => Ok(no_store(json!(history))),
        Some(Err(e)) => Err(e.into()),
        None => Err(ApiError::bad(
            "range",
            format!("'{range}' is not one of 1h, 24h, 7d, 90d"),
        )),
    }
}

/// `GET /api/cache/monitor/`: the statistics, the key families ranked by what their
/// misses cost (misses × average time to compute one), and recommendations.
pub async fn monitor(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
) -> Result<HttpResponse, ApiError> {
    Ok(match reader(&req, &session, &state).await? {
        Reader::Admin => no_store(monitor_json(&state).await),
        Reader::Anonymous => no_store(state.public_stats.get(&state.cache)),
    })
}

enum Reader {
    Admin,
    Anonymous,
}

/// Who reads the statistics: an admin (token, or signed-in session: a read needs no
/// CSRF token), or anyone else; a wrong token is refused rather than taken for none.
async fn reader(
    req: &HttpRequest,
    session: &Session,
    state: &AppState,
) -> Result<Reader, ApiError> {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return crate::web::session::bearer(req, state).map(|()| Reader::Admin);
    }
    let lifetimes = crate::web::session::Lifetimes::of(&state.config);
    Ok(
        match crate::web::session::signed_in(session, &state.repo, lifetimes).await {
            Some(_) => Reader::Admin,
            None => Reader::Anonymous,
        },
    )
}

/// What `monitor` answers (the dashboard renders it too).
pub async fn monitor_json(state: &AppState) -> serde_json::Value {
    let cache = &state.cache;
    let instance = cache.stats();
    let mut ranked = instance.families.clone();
    ranked.sort_by(|a, b| b.miss_cost_ms().total_cmp(&a.miss_cost_ms()));
    let ranked: Vec<serde_json::Value> = ranked
        .iter()
        .map(|f| {
            json!({
                "name": f.name, "hits": f.hits, "misses": f.misses, "hit_ratio": f.hit_ratio,
                "avg_fill_ms": f.avg_fill_ms, "miss_cost_ms": f.miss_cost_ms(),
            })
        })
        .collect();
    let warming = &state.warming;
    let server = cache.server_memory().await;
    let advice = crate::cache::advice::recommendations(&crate::cache::advice::Inputs {
        stats: &instance,
        last_minute: &cache.window(60),
        last_hour: &cache.window(3600),
        evictions: cache.evictions(),
        max_bytes: cache.local_size().map(|(_, _, max)| max),
        warmed: warming.stored.load(std::sync::atomic::Ordering::Relaxed),
        warmed_hit: warming.hit.load(std::sync::atomic::Ordering::Relaxed),
        server: server.as_ref(),
    });
    let mut body = stats_json(state).await;
    body["families_by_miss_cost"] = json!(ranked);
    body["recommendations"] = json!(advice);
    body["analysis"] = analysis_json(state, &instance);
    body
}

/// Database and cache together (`folio analyze`, the dashboard): statements by what
/// they cost, the families that spare the database most and those whose misses cost
/// most, N+1 patterns, slow statements, and what to do about them.
fn analysis_json(state: &AppState, stats: &crate::cache::StatsSnapshot) -> serde_json::Value {
    let log = &state.repo.db().stats.analysis;
    let statements = log.shapes();
    let repeats = log.repeats();
    let slow = log.slow();
    let family = |f: &crate::cache::stats::FamilySnapshot, ms: f64| {
        json!({
            "name": f.name, "hits": f.hits, "misses": f.misses, "hit_ratio": f.hit_ratio,
            "avg_fill_ms": f.avg_fill_ms, "ms": ms,
        })
    };
    let mut saving: Vec<_> = stats
        .families
        .iter()
        .filter_map(|f| Some((f, f.hits as f64 * f.avg_fill_ms?)))
        .collect();
    saving.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut costing: Vec<_> = stats
        .families
        .iter()
        .map(|f| (f, f.miss_cost_ms()))
        .filter(|(_, ms)| *ms > 0.0)
        .collect();
    costing.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut advice = Vec::new();
    for r in repeats.iter().take(5) {
        advice.push(format!(
            "{} runs {} up to {} times in one request ({} requests so far): read them in one query (a join or an IN list) or cache the per-item read",
            r.route, r.site, r.most_in_one_request, r.requests
        ));
    }
    if let Some(s) = slow.first() {
        advice.push(format!(
            "the slowest recent statement took {:.1} ms: look at its plan (EXPLAIN ANALYZE) and indexes: {}",
            s.ms, s.statement
        ));
    }
    if let Some((f, ms)) = costing.first() {
        if f.hit_ratio < 0.8 {
            advice.push(format!(
                "misses of `{}` cost the most ({:.0} ms so far, hit ratio {:.0} %): a longer TTL for it (CACHE_TTLS) or warming it would spare the database",
                f.name, ms, f.hit_ratio * 100.0
            ));
        }
    }
    json!({
        "database": state.repo.db().backend_name(),
        "statements": statements.iter().take(25).collect::<Vec<_>>(),
        "statement_shapes": statements.len(),
        "families_saving_most": saving.iter().take(10).map(|(f, ms)| family(f, *ms)).collect::<Vec<_>>(),
        "families_costing_most": costing.iter().take(10).map(|(f, ms)| family(f, *ms)).collect::<Vec<_>>(),
        "n_plus_one": repeats,
        "slow_statements": slow,
        "slow_over_ms": crate::db::analysis::SLOW_STATEMENT.as_millis() as u64,
        "recommendations": advice,
    })
}

fn no_store(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

async fn stats_json(state: &AppState) -> serde_json::Value {
    let cache = &state.cache;
    let instance = cache.stats();
    let windows: serde_json::Map<String, serde_json::Value> = WINDOWS
        .iter()
        .map(|(name, secs)| (name.to_string(), json!(cache.window(*secs))))
        .collect();
    let site = match cache.backend_name() {
        "memory" | "none" => None,
        _ => Some(cache.site_stats().await),
    };
    let warming = &state.warming;
    let edges = match state.repo.edges() {
        Some(edges) => Some(edges.snapshot(&state.repo).await),
        None => None,
    };
    json!({
            "instance": instance,
            "windows": windows,
            "site": site,
            "instances": cache.instances().await,
            "memory": cache.local_size().map(|(entries, bytes, max_bytes)| json!({
                "entries": entries, "bytes": bytes, "max_bytes": max_bytes,
            })),
            "warming": {
                "stored": warming.stored.load(std::sync::atomic::Ordering::Relaxed),
                "hit_before_expiry": warming.hit.load(std::sync::atomic::Ordering::Relaxed),
                "effectiveness": warming.effectiveness(),
            },
            "views_pending": state.views.pending(),
            "evictions": cache.evictions(),
            "server_memory": cache.server_memory().await,
            "history": cache.chart(),
            "edges": edges,
    })
}

/// Admins only (see the module comment): 401 without credentials, 403 with wrong ones.
async fn authorize(req: &HttpRequest, session: &Session, state: &AppState) -> Result<(), ApiError> {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return crate::web::session::bearer(req, state);
    }
    let lifetimes = crate::web::session::Lifetimes::of(&state.config);
    if crate::web::session::signed_in(session, &state.repo, lifetimes)
        .await
        .is_some()
    {
        let csrf = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        return if crate::web::csrf::verify(session, csrf) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "missing or wrong X-CSRF-Token header".into(),
            ))
        };
    }
    Err(ApiError::Unauthorized(
        "sign in as an admin, or send Authorization: Bearer <CACHE_ADMIN_TOKEN>".into(),
    ))
}

/// A JSON body, or the defaults when there is none; a clear 400 otherwise.
fn json_body<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad("body", format!("not valid JSON for this call: {e}")))
}

/// `POST /api/cache/warm/` with `{"type": "all|main|blog|api", "force": false,
/// "timeout_secs": 120}` (all optional): warms and returns the report.
pub async fn warm(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &session, &state).await?;
    let options: WarmOptions = json_body(&body)?;
    let report = (state.warm)(state.clone(), options).await;
    Ok(HttpResponse::Ok().json(report))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClearRequest {
    pattern: Option<String>,
    #[serde(default)]
    all: bool,
}

/// `POST /api/cache/clear/` with `{"pattern": "fragment:*"}` (a glob over this site's
/// keys after `{prefix}:{version}:`) or `{"all": true}`. A pattern that would match
/// everything must say `all`.
pub async fn clear(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Session,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &session, &state).await?;
    let request: ClearRequest = json_body(&body)?;
    let deleted = match (request.pattern.as_deref().map(str::trim), request.all) {
        (_, true) => state.cache.clear().await,
        (None, false) => {
            return Err(ApiError::bad(
                "pattern",
                "give a pattern such as \"fragment:*\", or {\"all\": true} to clear everything",
            ))
        }
        (Some(pattern), false) if matches_everything(pattern) => {
            return Err(ApiError::bad(
                "pattern",
                format!(
                    "'{pattern}' matches every key: send {{\"all\": true}} to clear everything"
                ),
            ))
        }
        (Some(pattern), false) => state.cache.delete_pattern(pattern).await,
    };
    Ok(HttpResponse::Ok().json(json!({ "deleted": deleted })))
}

/// Empty, or wildcards only with a `*` (`*`, `**`, `*?*`): every key.
pub fn matches_everything(pattern: &str) -> bool {
    pattern.is_empty() || (pattern.contains('*') && pattern.chars().all(|c| c == '*' || c == '?'))
}
