//! `POST /api/cache/invalidate/`: lets external systems (a CMS, a deploy script) drop
//! cached data by cache tag, model or key pattern.
//!
//! Authentication: `X-Cache-Timestamp: <unix seconds>` and
//! `X-Cache-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` keyed with
//! `CACHE_WEBHOOK_SECRET`, compared in constant time. Requests more than five minutes
//! old (or ahead) are refused, and so is a signature already used for work that was
//! done (replay). Without a secret configured the endpoint does not exist (404).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::content::invalidation::{invalidated_by, Model, ALL_TAGS};
use crate::web::error::ApiError;
use crate::web::state::AppState;

/// How old a signed request may be.
pub const MAX_AGE: Duration = Duration::from_secs(300);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidateRequest {
    /// Cache tags (`post_lists`, see `content::invalidation::CacheTag`).
    #[serde(default)]
    tags: Vec<String>,
    /// Model names (`post`, `social_link`, …): drops what the invalidation rules list.
    #[serde(default)]
    models: Vec<String>,
    /// Key globs after `{prefix}:{version}:` (`fragment:*`).
    #[serde(default)]
    patterns: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct InvalidateResponse {
    /// Tags whose entries were dropped (given, and those of the models' rules).
    tags: Vec<String>,
    models: Vec<String>,
    /// Keys deleted per pattern.
    patterns: BTreeMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("not found")]
    Disabled,
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl ResponseError for WebhookError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebhookError::Disabled => StatusCode::NOT_FOUND,
            WebhookError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebhookError::Api(e) => e.status_code(),
        }
    }
    fn error_response(&self) -> HttpResponse {
        match self {
            WebhookError::Disabled => {
                ApiError::NotFound("no API route at /api/cache/invalidate/".into()).error_response()
            }
            WebhookError::Unauthorized(why) => {
                HttpResponse::Unauthorized().json(serde_json::json!({
                    "error": { "status": 401, "code": "unauthorized", "message": why }
                }))
            }
            WebhookError::Api(e) => e.error_response(),
        }
    }
}

/// `sha256=<hex>` for a timestamp and body.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks the timestamp and signature; returns the signature's bytes, the replay key
/// (whatever case or form its hex was sent in, it is the same signature).
fn verify(secret: &str, req: &HttpRequest, body: &[u8]) -> Result<Vec<u8>, WebhookError> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let timestamp = header("x-cache-timestamp")
        .ok_or(WebhookError::Unauthorized("missing X-Cache-Timestamp"))?;
    let signature = header("x-cache-signature")
        .ok_or(WebhookError::Unauthorized("missing X-Cache-Signature"))?;
    let sent: u64 = timestamp
        .parse()
        .map_err(|_| WebhookError::Unauthorized("X-Cache-Timestamp is not unix seconds"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if now.abs_diff(sent) > MAX_AGE.as_secs() {
        return Err(WebhookError::Unauthorized(
            "the request is too old (or from the future)",
        ));
    }
    let hex_sig = signature
        .strip_prefix("sha256=")
        .ok_or(WebhookError::Unauthorized(
            "X-Cache-Signature must be sha256=<hex>",
        ))?;
    let given = hex::decode(hex_sig)
        .map_err(|_| WebhookError::Unauthorized("X-Cache-Signature is not hex"))?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&given)
        .map_err(|_| WebhookError::Unauthorized("bad signature"))?;
    Ok(given)
}

pub async fn invalidate(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, WebhookError> {
    let Some(secret) = state.config.webhook_secret.as_ref() else {
        return Err(WebhookError::Disabled);
    };
    let signature = verify(secret.expose(), &req, &body)?;
    let guard = &state.webhook_replays;
    if !guard.claim(&state.cache, &signature).await {
        return Err(WebhookError::Unauthorized(
            "this signature was already used (replay)",
        ));
    }
    let answer = apply(&state, &body).await;
    if answer.is_err() {
        // Nothing was done: the sender's retry (after a 503, say) must not be taken
        // for a replay.
        guard.release(&state.cache, &signature).await;
    }
    answer
}

/// The work of a verified request.
async fn apply(state: &AppState, body: &[u8]) -> Result<HttpResponse, WebhookError> {
    let request: InvalidateRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad(
            "body",
            format!("expected {{\"tags\": [], \"models\": [], \"patterns\": []}}: {e}"),
        )
    })?;
    if request.tags.is_empty() && request.models.is_empty() && request.patterns.is_empty() {
        return Err(ApiError::bad("body", "name at least one tag, model or pattern").into());
    }
    let models: Vec<Model> = request
        .models
        .iter()
        .map(|name| {
            Model::parse(name)
                .ok_or_else(|| ApiError::bad("models", format!("unknown model '{name}'")))
        })
        .collect::<Result<_, _>>()?;
    // Only tags the site uses: made-up ones would each become a key in the cache.
    if let Some(unknown) = request
        .tags
        .iter()
        .find(|t| !ALL_TAGS.contains(&t.as_str()))
    {
        return Err(ApiError::bad("tags", format!("unknown tag '{unknown}'")).into());
    }
    let mut tags: Vec<String> = request.tags.clone();
    tags.extend(
        models
            .iter()
            .flat_map(|m| invalidated_by(*m))
            .map(|g| g.name().to_string()),
    );
    tags.sort();
    tags.dedup();
    if !tags.is_empty() {
        let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        if !state.cache.invalidate_tags(&refs).await {
            return Err(ApiError::Unavailable(
                "the cache did not accept the invalidation; retry".into(),
            )
            .into());
        }
        // Edge caches too, when configured (durably: rows in `edge_purges`).
        if let Err(e) = state.repo.owe_edge_purge(&refs).await {
            tracing::error!(error = %e, "the edges' purge could not be recorded");
            return Err(ApiError::Unavailable(
                "the edges' purge could not be recorded; retry".into(),
            )
            .into());
        }
    }
    let mut patterns = BTreeMap::new();
    for pattern in &request.patterns {
        patterns.insert(pattern.clone(), state.cache.delete_pattern(pattern).await);
    }
    tracing::info!(?tags, ?patterns, "cache invalidated by webhook");
    Ok(HttpResponse::Ok().json(InvalidateResponse {
        tags,
        models: request.models,
        patterns,
    }))
}
