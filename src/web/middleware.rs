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

/// `Server-Timing: db;dur=…, cache;dur=…, render;dur=…, total;dur=…` on every response,
/// and the same numbers in the access log.
pub async fn server_timing(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let timing = Arc::new(RequestTiming::default());
    let started = Instant::now();
    let (method, path) = (req.method().clone(), req.path().to_string());
    let mut res = timing.clone().scope(next.call(req)).await?;
    let total = started.elapsed();
    if let Ok(value) = HeaderValue::from_str(&timing.server_timing(total)) {
        res.headers_mut()
            .insert(HeaderName::from_static("server-timing"), value);
    }
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    tracing::info!(
        %method,
        %path,
        status = res.status().as_u16(),
        total_ms = ms(total),
        db_ms = ms(timing.db()),
        db_queries = timing.db_queries(),
        cache_ms = ms(timing.cache()),
        render_ms = ms(timing.render()),
        "request served"
    );
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
