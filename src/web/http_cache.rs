//! HTTP caching, all in one place (as Django's `utils/cache.py`): whole-response caching
//! for GET/HEAD, strong ETags and Last-Modified, conditional responses (304), and the
//! Cache-Control / Vary / Age / X-Cache headers.
//!
//! A cached response is stored as two entries: small metadata (status, headers, ETag,
//! Last-Modified, tag versions) and the body, keyed by its ETag. A conditional request
//! that matches is answered from the metadata alone — the body is neither read nor
//! built, so a 304 costs one small lookup.

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::body::{self, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, HttpResponseBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cache::{CacheManager, Key};

/// How one route (or path prefix) is cached: the seed's
/// `@cache_api_response(timeout=300, vary_on=[…])`. Responses are shared by every
/// visitor (`public`); signed-in admins bypass the cache.
#[derive(Debug, Clone)]
pub struct ResponsePolicy {
    pub ttl: Duration,
    /// Request headers (`Accept-Language`, …) each value of which gets its own entry;
    /// listed in the `Vary` response header.
    pub vary_on: Vec<HeaderName>,
    /// Tags of the models the response shows: bumping one drops the response.
    pub depends_on: &'static [&'static str],
    /// `max-age` given to clients and shared caches (the server copy is always fresh).
    pub client_max_age: Duration,
    /// The query parameters the handler reads; only they are part of the key, so
    /// made-up parameters cannot multiply entries (None: the whole query string).
    pub params: Option<&'static [&'static str]>,
}

/// Put in a response's extensions by a handler whose answer must not be stored (e.g.
/// an empty result for a filter value a client made up: storing it would let clients
/// create entries without bound).
#[derive(Debug, Clone, Copy)]
pub struct DoNotStore;

impl ResponsePolicy {
    pub fn new(ttl: Duration, depends_on: &'static [&'static str]) -> Self {
        ResponsePolicy {
            ttl,
            vary_on: Vec::new(),
            depends_on,
            client_max_age: Duration::from_secs(60),
            params: None,
        }
    }
    pub fn vary_on(mut self, header: HeaderName) -> Self {
        self.vary_on.push(header);
        self
    }
}

/// Whether a request comes from a signed-in admin (the web layer knows how): their
/// requests are never served from or stored in the shared cache.
pub type IsAdmin = fn(&ServiceRequest) -> bool;

/// The stored metadata of a response.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ResponseMeta {
    status: u16,
    headers: Vec<(String, String)>,
    etag: String,
    last_modified: Option<u64>,
    stored_at: u64,
}

/// Headers that are kept with a cached body; the rest (cookies, timing) are per request.
const KEPT_HEADERS: &[&str] = &["content-type", "content-language", "last-modified", "link"];

#[derive(Clone)]
pub struct ResponseCache {
    cache: CacheManager,
    /// Path prefix → policy; the first match wins.
    policies: Rc<Vec<(String, ResponsePolicy)>>,
    is_admin: IsAdmin,
}

impl ResponseCache {
    pub fn new(
        cache: CacheManager,
        policies: Vec<(String, ResponsePolicy)>,
        is_admin: IsAdmin,
    ) -> Self {
        ResponseCache {
            cache,
            policies: Rc::new(policies),
            is_admin,
        }
    }

    /// One policy for everything this wraps (a resource or scope).
    pub fn route(cache: CacheManager, policy: ResponsePolicy, is_admin: IsAdmin) -> Self {
        Self::new(cache, vec![(String::new(), policy)], is_admin)
    }

    fn policy_for(&self, path: &str) -> Option<&ResponsePolicy> {
        self.policies
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, p)| p)
    }

    /// The middleware body; use with `actix_web::middleware::from_fn` (see `web`).
    pub async fn handle(
        self,
        mut req: ServiceRequest,
        next: Next<impl MessageBody + 'static>,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
        let method = req.method().clone();
        let Some(policy) = self.policy_for(req.path()).cloned() else {
            return Ok(next.call(req).await?.map_into_boxed_body());
        };
        let cacheable_method = method == Method::GET || method == Method::HEAD;
        if !cacheable_method || requests_no_store(req.headers()) || (self.is_admin)(&req) {
            let mut res = next.call(req).await?.map_into_boxed_body();
            if cacheable_method {
                set_x_cache(res.headers_mut(), "BYPASS");
            }
            return Ok(res);
        }
        let key = self.key_for(&req, &policy);
        let lookup = self
            .cache
            .get_tagged::<ResponseMeta>(&key, policy.depends_on)
            .await;
        if let Some(meta) = lookup.value {
            if not_modified(req.headers(), &meta.etag, meta.last_modified) {
                let res = respond_304(&meta, &policy);
                return Ok(req.into_response(res));
            }
            let body_key = self.body_key(&meta.etag);
            if let Some(body) = self
                .cache
                .get_immutable::<serde_bytes::ByteBuf>(&body_key)
                .await
            {
                let res = respond_cached(&meta, body.into_vec(), &policy);
                return Ok(req.into_response(res));
            }
            // The body was evicted before its metadata: rebuild.
        }

        // A miss: let the handler build it (HEAD is served by the GET handler).
        if method == Method::HEAD {
            req.head_mut().method = Method::GET;
        }
        let res = next.call(req).await?;
        let storable = res.status() == StatusCode::OK
            && !res.headers().contains_key(header::SET_COOKIE)
            && res.response().extensions().get::<DoNotStore>().is_none();
        if !storable {
            let mut res = res.map_into_boxed_body();
            set_x_cache(res.headers_mut(), "BYPASS");
            return Ok(res);
        }
        let (req, res) = res.into_parts();
        let (head, body) = res.into_parts();
        let bytes = body::to_bytes(body)
            .await
            .map_err(|e| actix_web::error::ErrorInternalServerError(e.into()))?;
        let meta = ResponseMeta {
            status: head.status().as_u16(),
            headers: head
                .headers()
                .iter()
                .filter(|(name, _)| KEPT_HEADERS.contains(&name.as_str()))
                .filter_map(|(name, value)| {
                    Some((name.to_string(), value.to_str().ok()?.to_string()))
                })
                .collect(),
            etag: strong_etag(&bytes),
            last_modified: head
                .headers()
                .get(header::LAST_MODIFIED)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<header::HttpDate>().ok())
                .map(|d| unix(SystemTime::from(d))),
            stored_at: unix(SystemTime::now()),
        };
        if let Some(versions) = &lookup.versions {
            // The body first: metadata must never point at a body that is not there.
            self.cache
                .set_immutable(
                    &self.body_key(&meta.etag),
                    &serde_bytes::Bytes::new(&bytes),
                    Some(policy.ttl),
                )
                .await;
            self.cache
                .set_tagged(&key, versions, &meta, Some(policy.ttl))
                .await;
        }
        let res = if not_modified(req.headers(), &meta.etag, meta.last_modified) {
            respond_304(&meta, &policy)
        } else {
            let mut res = respond_cached(&meta, bytes.to_vec(), &policy);
            set_x_cache(res.headers_mut(), "MISS");
            res.headers_mut()
                .insert(header::AGE, HeaderValue::from_static("0"));
            res
        };
        let mut res = ServiceResponse::new(req, res);
        set_x_cache(res.headers_mut(), "MISS");
        Ok(res)
    }

    /// Method-independent: path, sorted query string, then each vary value.
    fn key_for(&self, req: &ServiceRequest, policy: &ResponsePolicy) -> Key {
        let mut parts = vec![
            req.path().to_string(),
            sorted_query(req.query_string(), policy.params),
        ];
        for name in &policy.vary_on {
            parts.push(
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string(),
            );
        }
        self.cache.key("response", parts)
    }

    fn body_key(&self, etag: &str) -> Key {
        self.cache.key("response", ["body", etag.trim_matches('"')])
    }
}

fn requests_no_store(headers: &HeaderMap) -> bool {
    headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-store"))
        })
}

/// `a=1&b=2` in a canonical order, so `?b=2&a=1` shares the entry; only `known`
/// parameters when given.
pub fn sorted_query(query: &str, known: Option<&[&str]>) -> String {
    let mut pairs: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| known.is_none_or(|k| k.contains(&p.split('=').next().unwrap_or(""))))
        .collect();
    pairs.sort_unstable();
    pairs.join("&")
}

/// A strong validator: a hash of the exact bytes.
pub fn strong_etag(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(body)[..16]))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 9110 §13.1: If-None-Match wins over If-Modified-Since.
pub fn not_modified(headers: &HeaderMap, etag: &str, last_modified: Option<u64>) -> bool {
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        return inm
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.trim_start_matches("W/") == etag);
    }
    match (
        headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok()),
        last_modified,
    ) {
        (Some(since), Some(modified)) => since
            .parse::<header::HttpDate>()
            .map(|d| unix(SystemTime::from(d)) >= modified)
            .unwrap_or(false),
        _ => false,
    }
}

fn set_x_cache(headers: &mut HeaderMap, value: &'static str) {
    headers.insert(
        HeaderName::from_static("x-cache"),
        HeaderValue::from_static(value),
    );
}

fn cache_headers(builder: &mut HttpResponseBuilder, meta: &ResponseMeta, policy: &ResponsePolicy) {
    builder.insert_header((
        header::CACHE_CONTROL,
        format!("public, max-age={}", policy.client_max_age.as_secs()),
    ));
    builder.insert_header((header::ETAG, meta.etag.clone()));
    let vary: Vec<&str> = policy.vary_on.iter().map(HeaderName::as_str).collect();
    if !vary.is_empty() {
        builder.insert_header((header::VARY, vary.join(", ")));
    }
    let age = unix(SystemTime::now()).saturating_sub(meta.stored_at);
    builder.insert_header((header::AGE, age.to_string()));
    builder.insert_header((HeaderName::from_static("x-cache"), "HIT"));
}

fn respond_304(meta: &ResponseMeta, policy: &ResponsePolicy) -> HttpResponse {
    let mut builder = HttpResponse::NotModified();
    cache_headers(&mut builder, meta, policy);
    for (name, value) in &meta.headers {
        if name == "last-modified" {
            builder.insert_header((name.as_str(), value.as_str()));
        }
    }
    builder.finish()
}

fn respond_cached(meta: &ResponseMeta, body: Vec<u8>, policy: &ResponsePolicy) -> HttpResponse {
    let mut builder =
        HttpResponse::build(StatusCode::from_u16(meta.status).unwrap_or(StatusCode::OK));
    for (name, value) in &meta.headers {
        builder.insert_header((name.as_str(), value.as_str()));
    }
    cache_headers(&mut builder, meta, policy);
    // HEAD too: the HTTP layer sends a HEAD answer's headers (Content-Length of this
    // body included) and never its bytes.
    builder.body(body)
}

/// ETag and 304 for responses the response cache does not handle (HTML pages): the
/// body is hashed once on its way out. Pages get `Cache-Control: no-cache` unless they
/// set their own: browsers revalidate (cheap with the ETag) and never show a page older
/// than the last write.
pub async fn conditional_get(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let is_get = req.method() == Method::GET || req.method() == Method::HEAD;
    let res = next.call(req).await?;
    let applies = is_get
        && res.status() == StatusCode::OK
        && !res.headers().contains_key(header::ETAG)
        && res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/html") || ct.contains("xml"));
    if !applies {
        return Ok(res.map_into_boxed_body());
    }
    let (req, res) = res.into_parts();
    let (mut head, body) = res.into_parts();
    let bytes = body::to_bytes(body)
        .await
        .map_err(|e| actix_web::error::ErrorInternalServerError(e.into()))?;
    let etag = strong_etag(&bytes);
    let headers = head.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex etag"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if not_modified(req.headers(), &etag, None) {
        let mut not_modified = HttpResponse::NotModified();
        for (name, value) in head.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                not_modified.append_header((name.clone(), value.clone()));
            }
        }
        return Ok(ServiceResponse::new(req, not_modified.finish()));
    }
    Ok(ServiceResponse::new(
        req,
        head.set_body(bytes).map_into_boxed_body(),
    ))
}

/// `Last-Modified` for the newest of some timestamps (UTC).
pub fn last_modified_header(newest: chrono::NaiveDateTime) -> (HeaderName, String) {
    let time = SystemTime::from(newest.and_utc());
    (
        header::LAST_MODIFIED,
        header::HttpDate::from(time).to_string(),
    )
}
