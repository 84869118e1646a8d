//! What the response cache keeps and sends back: a response's metadata (status, kept
//! headers, ETag, freshness) apart from its body, the headers a stored copy is sent
//! with, and what the cache did (`X-Cache`, `Cache-Status`).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::body::BoxBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::{Deserialize, Serialize};

use super::conditional::last_modified;
use super::policy::ResponsePolicy;
use crate::cache::Key;

/// The stored metadata of a response.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ResponseMeta {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    /// Quoted, as sent.
    pub(super) etag: String,
    pub(super) stored_at_ms: u64,
    pub(super) fresh_ms: u64,
    pub(super) view_of: Option<i32>,
    /// Stored by a warm request (see `WarmStats`).
    #[serde(default)]
    pub(super) warmed: bool,
    /// This decoded copy has been counted as a warmed entry's first hit.
    #[serde(skip)]
    pub(super) hit_counted: std::sync::atomic::AtomicBool,
    /// Header values built from this copy on its first hit (a decoded copy is shared
    /// by every hit until its entry changes), so a hit copies no strings.
    #[serde(skip)]
    pub(super) prepared: std::sync::OnceLock<Prepared>,
    /// Last-Modified, once it may be sent (see `last_modified`); it never changes then.
    #[serde(skip)]
    pub(super) last_modified: std::sync::OnceLock<HeaderValue>,
    /// Where the body is kept (see `ResponseCache::body_key`).
    #[serde(skip)]
    pub(super) body_key: std::sync::OnceLock<Key>,
    /// The tag keys it was built from, kept with edge caches only (their tag headers).
    #[serde(default)]
    pub(super) tags: Vec<String>,
    /// The edges' headers built from `tags` on first use (None: too many to list).
    #[serde(skip)]
    pub(super) edge_headers: std::sync::OnceLock<Option<Vec<(HeaderName, HeaderValue)>>>,
}

#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) etag: Option<HeaderValue>,
    pub(super) kept: Vec<(HeaderName, HeaderValue)>,
}

/// How well warming pays: of the entries warm requests stored, how many readers hit
/// before they expired or were evicted (this process's).
#[derive(Debug, Default)]
pub struct WarmStats {
    pub stored: std::sync::atomic::AtomicU64,
    pub hit: std::sync::atomic::AtomicU64,
    unhit: parking_lot::Mutex<std::collections::HashSet<String>>,
}

impl WarmStats {
    pub(super) fn stored(&self, key: &str) {
        if self.unhit.lock().insert(key.to_string()) {
            self.stored
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    pub(super) fn hit(&self, key: &str) {
        if self.unhit.lock().remove(key) {
            self.hit.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    /// hit / stored; None before anything was warmed.
    pub fn effectiveness(&self) -> Option<f64> {
        let stored = self.stored.load(std::sync::atomic::Ordering::Relaxed);
        (stored > 0)
            .then(|| self.hit.load(std::sync::atomic::Ordering::Relaxed) as f64 / stored as f64)
    }
}

impl ResponseMeta {
    pub(super) fn prepared(&self) -> &Prepared {
        self.prepared.get_or_init(|| Prepared {
            etag: HeaderValue::from_str(&self.etag).ok(),
            kept: self
                .headers
                .iter()
                .filter_map(|(name, value)| {
                    Some((
                        HeaderName::try_from(name.as_str()).ok()?,
                        HeaderValue::from_str(value).ok()?,
                    ))
                })
                .collect(),
        })
    }

    pub(super) fn last_modified_value(&self, now_ms: u64) -> Option<HeaderValue> {
        if let Some(value) = self.last_modified.get() {
            return Some(value.clone());
        }
        let second = last_modified(self.stored_at_ms, now_ms)?;
        let date = header::HttpDate::from(UNIX_EPOCH + Duration::from_secs(second));
        let value = HeaderValue::from_str(&date.to_string()).ok()?;
        Some(self.last_modified.get_or_init(|| value).clone())
    }

    pub(super) fn fresh_left_ms(&self, now_ms: u64) -> Option<u64> {
        (self.stored_at_ms + self.fresh_ms)
            .checked_sub(now_ms)
            .filter(|left| *left > 0)
    }
}

/// Headers that are kept with a cached body; the rest (cookies, timing, the handler's
/// own validators) are per request or replaced by the cache's.
pub(super) const KEPT_HEADERS: &[&str] = &["content-type", "content-language", "link"];

/// What the response cache did, for `X-Cache` and `Cache-Status` (RFC 9211).
pub(super) enum Outcome {
    Hit { ttl_left_ms: u64, collapsed: bool },
    Miss { stored: bool },
    Stale { status: u16 },
    Bypass,
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(super) fn with_outcome(
    mut res: ServiceResponse<BoxBody>,
    outcome: Outcome,
) -> ServiceResponse<BoxBody> {
    // On the `cache.response` span, when spans are recorded.
    if tracing::level_enabled!(tracing::Level::DEBUG) {
        let result = match outcome {
            Outcome::Hit { .. } => "hit",
            Outcome::Miss { .. } => "miss",
            Outcome::Stale { .. } => "stale",
            Outcome::Bypass => "bypass",
        };
        tracing::Span::current().record("cache.result", result);
    }
    let (x_cache, status) = match outcome {
        Outcome::Hit {
            ttl_left_ms,
            collapsed,
        } => {
            let mut status = String::with_capacity(40);
            status.push_str("folio; hit; ttl=");
            let _ = write!(status, "{}", ttl_left_ms / 1000);
            if collapsed {
                status.push_str("; collapsed");
            }
            ("HIT", HeaderValue::try_from(status).ok())
        }
        Outcome::Miss { stored: true } => (
            "MISS",
            Some(HeaderValue::from_static("folio; fwd=miss; stored")),
        ),
        Outcome::Miss { stored: false } => {
            ("MISS", Some(HeaderValue::from_static("folio; fwd=miss")))
        }
        Outcome::Stale { status } => (
            "STALE",
            HeaderValue::try_from(format!("folio; fwd=stale; fwd-status={status}")).ok(),
        ),
        Outcome::Bypass => (
            "BYPASS",
            Some(HeaderValue::from_static("folio; fwd=bypass")),
        ),
    };
    let headers = res.headers_mut();
    headers.insert(
        HeaderName::from_static("x-cache"),
        HeaderValue::from_static(x_cache),
    );
    if let Some(value) = status {
        headers.insert(HeaderName::from_static("cache-status"), value);
    }
    res
}

/// A stored response: the body when given, else a 304 with the same validators.
pub(super) fn respond(
    meta: &ResponseMeta,
    body: Option<bytes::Bytes>,
    policy: &ResponsePolicy,
    now_ms: u64,
) -> HttpResponse {
    let mut res = match &body {
        Some(_) => HttpResponse::build(StatusCode::from_u16(meta.status).unwrap_or(StatusCode::OK)),
        None => HttpResponse::NotModified(),
    };
    if body.is_some() {
        for (name, value) in &meta.prepared().kept {
            res.insert_header((name.clone(), value.clone()));
        }
    }
    let mut res = match body {
        // HEAD too: the HTTP layer sends a HEAD answer's headers (Content-Length of
        // this body included) and never its bytes.
        Some(body) => res.body(body),
        None => res.finish(),
    };
    cache_headers(res.headers_mut(), meta, policy, now_ms);
    res
}

/// The validators and freshness headers of a response from (or into) the cache.
pub(super) fn cache_headers(
    headers: &mut HeaderMap,
    meta: &ResponseMeta,
    policy: &ResponsePolicy,
    now_ms: u64,
) {
    match &policy.edge {
        None => {
            headers.insert(header::CACHE_CONTROL, policy.cache_control.clone());
        }
        Some(edge) => {
            let tagged = meta.edge_headers.get_or_init(|| {
                (!meta.tags.is_empty())
                    .then(|| edge.headers.for_tags(meta.tags.iter().map(String::as_str)))
                    .flatten()
            });
            match tagged {
                Some(list) => {
                    headers.insert(header::CACHE_CONTROL, edge.tagged.clone());
                    for (name, value) in list {
                        headers.insert(name.clone(), value.clone());
                    }
                }
                None => {
                    headers.insert(header::CACHE_CONTROL, edge.untagged.clone());
                    super::policy::not_for_edges(headers);
                }
            }
        }
    }
    if let Some(etag) = &meta.prepared().etag {
        headers.insert(header::ETAG, etag.clone());
    }
    let _ = match meta.last_modified_value(now_ms) {
        Some(value) => headers.insert(header::LAST_MODIFIED, value),
        None => headers.remove(header::LAST_MODIFIED),
    };
    if !policy.vary_on.is_empty() {
        let vary: Vec<&str> = policy.vary_on.iter().map(HeaderName::as_str).collect();
        if let Ok(value) = HeaderValue::from_str(&vary.join(", ")) {
            headers.insert(header::VARY, value);
        }
    }
    let age = now_ms.saturating_sub(meta.stored_at_ms) / 1000;
    headers.insert(header::AGE, HeaderValue::from(age));
    // A scheduled change comes sooner than max-age would let clients keep this.
    if let Some(cut) = policy.max_age_cut(age, now_ms) {
        let cut = headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.replacen(
                    &format!("max-age={}", policy.max_age),
                    &format!("max-age={cut}"),
                    1,
                )
            })
            .and_then(|v| HeaderValue::try_from(v).ok());
        if let Some(value) = cut {
            headers.insert(header::CACHE_CONTROL, value);
        }
    }
}
