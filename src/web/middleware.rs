//! Small middleware shared by every route.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use std::sync::Arc;
use std::time::Instant;

use crate::timing::RequestTiming;
use tracing_actix_web::RequestId;

/// Echoes tracing-actix-web's request id as `X-Request-Id`, so a user's bug report can
/// be matched to the log line.
pub async fn request_id_header(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req.extensions().get::<RequestId>().map(|id| id.to_string());
    let mut res = next.call(req).await?;
    if let Some(value) = id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(res)
}

/// `Server-Timing` on every response, and the full numbers in the access log. The
/// details (`db;dur=…;desc="N queries", cache;dur=…, render;dur=…`) tell whether a
/// request was a cache hit, so only signed-in admins (and `APP_DEBUG`) get them;
/// everyone else gets `total;dur=…`.
pub async fn server_timing(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let timing = Arc::new(RequestTiming::default());
    let started = Instant::now();
    let path = req.path().to_string();
    let state = req
        .app_data::<actix_web::web::Data<crate::web::state::AppState>>()
        .cloned();
    let detailed = crate::web::session::is_admin(&req)
        || state.as_ref().is_some_and(|state| state.config.debug);
    let mut res = timing.clone().scope(next.call(req)).await?;
    if let Some(state) =
        state.filter(|_| timing.db_queries() as usize >= crate::db::analysis::N_PLUS_ONE)
    {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| path.clone());
        state
            .repo
            .db()
            .stats
            .analysis
            .note_request(&route, &timing.db_sites());
    }
    let total = started.elapsed();
    let header = if detailed {
        timing.server_timing(total)
    } else {
        RequestTiming::total_only(total)
    };
    if let Ok(value) = HeaderValue::from_str(&header) {
        res.headers_mut()
            .insert(HeaderName::from_static("server-timing"), value);
    }
    if crate::telemetry::access_log() {
        res.response_mut().extensions_mut().insert(Spent {
            db: timing.db(),
            db_queries: timing.db_queries(),
            cache: timing.cache(),
            render: timing.render(),
        });
    }
    Ok(res)
}

/// Where a rendered response's time went, for its access line (see `access_log`).
struct Spent {
    db: std::time::Duration,
    db_queries: u64,
    cache: std::time::Duration,
    render: std::time::Duration,
}

/// The one access line of each request (`ACCESS_LOG=off`: none), written outermost so
/// a response-cache hit, a redirect and an error each get theirs (and an `X-Request-Id`
/// if the request-id layer, inside the response cache, did not give one): request id, method,
/// path, status, cache outcome (`X-Cache`), duration, and for a rendered answer the
/// database, cache and render times. The line goes to the log's own thread (see
/// `telemetry`); the worker only formats it.
pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // The site's own warm requests are not clients' (warming logs its summary).
    if req
        .headers()
        .contains_key(crate::web::http_cache::WARM_HEADER)
    {
        return next.call(req).await;
    }
    let started = Instant::now();
    let mut res = next.call(req).await?;
    // An answer sent before the request-id layer (a stored one) gets its id here.
    if !res.headers().contains_key("x-request-id") {
        let id = uuid::Uuid::new_v4();
        let mut text = uuid::Uuid::encode_buffer();
        let text = id.hyphenated().encode_lower(&mut text);
        if let Ok(value) = HeaderValue::from_str(text) {
            res.headers_mut()
                .insert(HeaderName::from_static("x-request-id"), value);
        }
    }
    if !crate::telemetry::access_log() {
        return Ok(res);
    }
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    };
    let (request, status) = (res.request(), res.status().as_u16());
    let total_ms = ms(started.elapsed());
    // A field whose value is None is left out of the line.
    let extensions = res.response().extensions();
    let spent = extensions.get::<Spent>();
    tracing::info!(
        request_id = header("x-request-id"),
        method = %request.method(),
        path = request.path(),
        status,
        cache = header("x-cache"),
        total_ms,
        db_ms = spent.map(|s| ms(s.db)),
        db_queries = spent.map(|s| s.db_queries),
        cache_ms = spent.map(|s| ms(s.cache)),
        render_ms = spent.map(|s| ms(s.render)),
        "request"
    );
    drop(extensions);
    Ok(res)
}

/// Put in the extensions of a request that arrived as HEAD (see `head_as_get`), so a
/// handler can skip what only a reader's GET should do (counting a view).
#[derive(Debug, Clone, Copy)]
pub struct Head;

/// Every GET route answers HEAD too: routing sees GET, and the HTTP layer, which knows
/// the request was HEAD, sends the headers (Content-Length of the body included) and
/// never the body.
pub async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
        req.extensions_mut().insert(Head);
    }
    next.call(req).await
}

/// Security headers on every response (pages, API, errors, cache hits): a strict
/// Content-Security-Policy (the templates have no inline script or style), no MIME
/// sniffing, no framing, a conservative referrer and permissions policy, and HSTS
/// when the site is served over https. A handler's own value wins.
pub fn security_headers(site_url: &str) -> actix_web::middleware::DefaultHeaders {
    let headers = actix_web::middleware::DefaultHeaders::new()
        .add((
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; \
             connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; \
             form-action 'self'; frame-ancestors 'none'",
        ))
        .add(("x-content-type-options", "nosniff"))
        .add(("x-frame-options", "DENY"))
        .add(("referrer-policy", "strict-origin-when-cross-origin"))
        .add((
            "permissions-policy",
            "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
        ))
        .add(("cross-origin-opener-policy", "same-origin"));
    if site_url.starts_with("https://") {
        headers.add((
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ))
    } else {
        headers
    }
}
