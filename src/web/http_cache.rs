//! HTTP caching, all in one place (as Django's `utils/cache.py`): whole-response caching
//! for GET/HEAD, strong ETags and Last-Modified, conditional responses (304), and the
//! Cache-Control / Vary / Age / X-Cache headers.
//!
//! A cached response is stored as two entries: small metadata (status, headers, ETag,
//! Last-Modified, tag versions) and the body, keyed by its ETag. A conditional request
//! that matches is answered from the metadata alone — the body is neither read nor
//! built, so a 304 costs one small lookup.

use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::body::{self, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue, IfNoneMatch};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cache::{CacheManager, Key, TagTrace};
use crate::content::views::ViewCounter;
use crate::web::canonical::Params;

/// Which request paths a policy covers.
#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

/// How the responses under one path are cached: the seed's
/// `@cache_api_response(timeout=300, vary_on=[…])`, and the page cache. Responses are
/// shared by every visitor; signed-in admins bypass the cache.
#[derive(Debug, Clone)]
pub struct ResponsePolicy {
    /// Key family (`page`, `response`): statistics and patterns are per family.
    pub family: &'static str,
    /// How long a stored response is served without asking the handler.
    pub ttl: Duration,
    /// How much longer it is kept to be served stale when the handler fails (5xx).
    pub stale_if_error: Duration,
    /// Request headers (`Accept-Language`, …) each value of which gets its own entry;
    /// listed in the `Vary` response header.
    pub vary_on: Vec<HeaderName>,
    /// Tags the response depends on besides those its lookups read (which are traced,
    /// see `cache::trace`).
    pub depends_on: &'static [&'static str],
    /// `Cache-Control` sent to clients.
    pub cache_control: HeaderValue,
}

/// Put in a response's extensions by a handler whose answer must not be stored (e.g.
/// an empty result for a filter value a client made up: storing it would let clients
/// create entries without bound).
#[derive(Debug, Clone, Copy)]
pub struct DoNotStore;

/// Put in a response's extensions by a handler whose page is a reader's view of a post
/// (its id): the response cache counts one view each time the page is sent in full to
/// a reader, from the cache or not — never for HEAD, a 304 or a prefetch.
#[derive(Debug, Clone, Copy)]
pub struct ViewOf(pub i32);

impl ResponsePolicy {
    pub fn new(family: &'static str, ttl: Duration, depends_on: &'static [&'static str]) -> Self {
        ResponsePolicy {
            family,
            ttl,
            stale_if_error: Duration::ZERO,
            vary_on: Vec::new(),
            depends_on,
            cache_control: HeaderValue::from_static("no-cache"),
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
#[derive(Debug, Serialize, Deserialize)]
struct ResponseMeta {
    status: u16,
    headers: Vec<(String, String)>,
    /// Quoted, as sent.
    etag: String,
    stored_at_ms: u64,
    fresh_ms: u64,
    view_of: Option<i32>,
    /// Stored by a warm request (see `WarmStats`).
    #[serde(default)]
    warmed: bool,
    /// This decoded copy has been counted as a warmed entry's first hit.
    #[serde(skip)]
    hit_counted: std::sync::atomic::AtomicBool,
    /// Header values built from this copy on its first hit (a decoded copy is shared
    /// by every hit until its entry changes), so a hit copies no strings.
    #[serde(skip)]
    prepared: std::sync::OnceLock<Prepared>,
    /// Last-Modified, once it may be sent (see `last_modified`); it never changes then.
    #[serde(skip)]
    last_modified: std::sync::OnceLock<HeaderValue>,
    /// Where the body is kept (see `ResponseCache::body_key`).
    #[serde(skip)]
    body_key: std::sync::OnceLock<Key>,
}

#[derive(Debug)]
struct Prepared {
    etag: Option<HeaderValue>,
    kept: Vec<(HeaderName, HeaderValue)>,
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
    fn stored(&self, key: &str) {
        if self.unhit.lock().insert(key.to_string()) {
            self.stored
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    fn hit(&self, key: &str) {
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
    fn prepared(&self) -> &Prepared {
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

    fn last_modified_value(&self, now_ms: u64) -> Option<HeaderValue> {
        if let Some(value) = self.last_modified.get() {
            return Some(value.clone());
        }
        let second = last_modified(self.stored_at_ms, now_ms)?;
        let date = header::HttpDate::from(UNIX_EPOCH + Duration::from_secs(second));
        let value = HeaderValue::from_str(&date.to_string()).ok()?;
        Some(self.last_modified.get_or_init(|| value).clone())
    }

    fn fresh_left_ms(&self, now_ms: u64) -> Option<u64> {
        (self.stored_at_ms + self.fresh_ms)
            .checked_sub(now_ms)
            .filter(|left| *left > 0)
    }
}

/// Headers that are kept with a cached body; the rest (cookies, timing, the handler's
/// own validators) are per request or replaced by the cache's.
const KEPT_HEADERS: &[&str] = &["content-type", "content-language", "link"];

/// The request's conditions, read before anything else sees the request.
#[derive(Default)]
struct Conditions {
    none_match: Option<NoneMatch>,
    modified_since: Option<u64>,
}

/// If-None-Match: one value is kept as sent and parsed only if it is not simply the
/// ETag being compared (what a client revalidating its copy sends); several header
/// lines are parsed at once.
enum NoneMatch {
    Raw(HeaderValue),
    Parsed(IfNoneMatch),
}

impl Conditions {
    fn of(headers: &HeaderMap) -> Conditions {
        let mut none_match = headers.get_all(header::IF_NONE_MATCH);
        let none_match = match (none_match.next(), none_match.next()) {
            (None, _) => None,
            (Some(one), None) => Some(NoneMatch::Raw(one.clone())),
            // As `IfNoneMatch::parse`: at least one tag.
            (Some(_), Some(_)) => {
                header::from_comma_delimited(headers.get_all(header::IF_NONE_MATCH))
                    .ok()
                    .filter(|tags: &Vec<header::EntityTag>| !tags.is_empty())
                    .map(|tags| NoneMatch::Parsed(IfNoneMatch::Items(tags)))
            }
        };
        Conditions {
            none_match,
            modified_since: headers
                .get(header::IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<header::HttpDate>().ok())
                .map(|d| unix(SystemTime::from(d))),
        }
    }

    fn any(&self) -> bool {
        self.none_match.is_some() || self.modified_since.is_some()
    }

    /// RFC 9110 §13.1: If-None-Match (weak comparison) wins over If-Modified-Since; an
    /// If-None-Match that does not parse is ignored.
    fn not_modified(&self, etag: &str, last_modified: Option<u64>) -> bool {
        let parsed;
        let none_match = match &self.none_match {
            Some(NoneMatch::Raw(raw)) if raw.as_bytes() == etag.as_bytes() => return true,
            Some(NoneMatch::Raw(raw)) => {
                parsed = if raw.as_bytes() == b"*" {
                    Some(IfNoneMatch::Any)
                } else {
                    // As `IfNoneMatch::parse`: at least one tag.
                    header::from_comma_delimited(std::iter::once(raw))
                        .ok()
                        .filter(|tags: &Vec<header::EntityTag>| !tags.is_empty())
                        .map(IfNoneMatch::Items)
                };
                parsed.as_ref()
            }
            Some(NoneMatch::Parsed(parsed)) => Some(parsed),
            None => None,
        };
        match none_match {
            Some(IfNoneMatch::Any) => true,
            // Weak comparison: the opaque tags alone.
            Some(IfNoneMatch::Items(tags)) => {
                let ours = etag.trim_matches('"');
                tags.iter().any(|t| t.tag() == ours)
            }
            None => {
                matches!((self.modified_since, last_modified), (Some(since), Some(modified)) if since >= modified)
            }
        }
    }
}

/// The Last-Modified of a response stored at `stored_at_ms`: the second it was made,
/// sent only once that second is over. Two versions made within one second then never
/// share a Last-Modified a client has seen, so If-Modified-Since cannot get a wrong
/// 304 — not for edits in the same second, nor for deletes and renames, which
/// timestamps of the rows shown would miss.
fn last_modified(stored_at_ms: u64, now_ms: u64) -> Option<u64> {
    let second = stored_at_ms / 1000;
    (now_ms / 1000 > second).then_some(second)
}

#[derive(Clone)]
pub struct ResponseCache {
    cache: CacheManager,
    /// The first match wins.
    policies: Rc<Vec<(PathMatch, ResponsePolicy)>>,
    is_admin: IsAdmin,
    views: Arc<ViewCounter>,
    collapsing: Arc<Collapsing>,
    /// Marks warm requests (see `web::warm`).
    warm_token: Arc<str>,
    warming: Arc<WarmStats>,
}

/// How long a request waits for a concurrent miss of the same key before rendering
/// itself.
const COLLAPSE_WAIT: Duration = Duration::from_secs(10);

/// The misses being rendered, by key, shared by every worker: a later request for the
/// same key waits for the first (request collapsing).
#[derive(Default)]
pub struct Collapsing {
    rendering:
        parking_lot::Mutex<std::collections::HashMap<String, tokio::sync::watch::Sender<()>>>,
}

enum Join<'a> {
    Leader(Rendering<'a>),
    /// Resolves (with an error) when the leader is done, stored or not.
    Follower(tokio::sync::watch::Receiver<()>),
}

/// The first miss of a key; dropping it (done, failed or cancelled) releases the others.
struct Rendering<'a> {
    collapsing: &'a Collapsing,
    key: String,
}

impl Drop for Rendering<'_> {
    fn drop(&mut self) {
        self.collapsing.rendering.lock().remove(&self.key);
    }
}

impl Collapsing {
    fn join(&self, key: &str) -> Join<'_> {
        let mut rendering = self.rendering.lock();
        if let Some(leader) = rendering.get(key) {
            return Join::Follower(leader.subscribe());
        }
        rendering.insert(key.to_string(), tokio::sync::watch::channel(()).0);
        Join::Leader(Rendering {
            collapsing: self,
            key: key.to_string(),
        })
    }
}

/// Left by `handle_early` on a request whose stored answer it could not send.
struct LookedUp {
    key: Key,
    /// An expired copy, for stale-if-error.
    stale: Option<Arc<ResponseMeta>>,
}

/// What the response cache did, for `X-Cache` and `Cache-Status` (RFC 9211).
enum Outcome {
    Hit { ttl_left_ms: u64, collapsed: bool },
    Miss { stored: bool },
    Stale { status: u16 },
    Bypass,
}

impl ResponseCache {
    pub fn new(
        cache: CacheManager,
        policies: Vec<(PathMatch, ResponsePolicy)>,
        is_admin: IsAdmin,
        views: Arc<ViewCounter>,
        collapsing: Arc<Collapsing>,
        warm_token: Arc<str>,
        warming: Arc<WarmStats>,
    ) -> Self {
        ResponseCache {
            cache,
            policies: Rc::new(policies),
            is_admin,
            views,
            collapsing,
            warm_token,
            warming,
        }
    }

    /// Counts a post view if this response is one reader's full view of it.
    fn count_view(&self, head: bool, req: &HeaderMap, status: StatusCode, view_of: Option<i32>) {
        if let Some(id) = view_of.filter(|_| !head && status == StatusCode::OK && !is_prefetch(req))
        {
            self.views.record(id);
        }
    }

    /// The outer layer (see `startup`): a request without a cookie has no session, so
    /// it is no admin's, and a stored answer for it is sent from here, before the
    /// session, tracing and request-id layers — as a cache in front of the app would.
    /// Anything else, and every miss, goes on to `handle`, which does not look the key
    /// up again.
    pub async fn handle_early(
        self: Rc<Self>,
        req: ServiceRequest,
        next: Next<impl MessageBody + 'static>,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
        let head = req.method() == Method::HEAD;
        let headers = req.headers();
        // A client's Cache-Control does not bypass the cache (as Varnish by default):
        // `no-store` only keeps its own miss from being stored (see `handle`).
        let eligible = (head || req.method() == Method::GET)
            && !headers.contains_key(header::COOKIE)
            && !headers.contains_key(crate::web::warm::WARM_HEADER);
        let policies = self.policies.clone();
        let policy = match policies.iter().find(|(m, _)| m.matches(req.path())) {
            Some((_, policy)) if eligible => policy,
            _ => return Ok(next.call(req).await?.map_into_boxed_body()),
        };
        let key = self.key_for(&req, policy);
        let conditions = Conditions::of(req.headers());
        match self
            .stored_answer(req, &key, policy, &conditions, head, false)
            .await
        {
            Ok(mut res) => {
                // What the request-id and tracing layers would have given it.
                let id = uuid::Uuid::new_v4();
                let mut text = uuid::Uuid::encode_buffer();
                let text = id.hyphenated().encode_lower(&mut text);
                if let Ok(value) = HeaderValue::from_str(text) {
                    res.headers_mut()
                        .insert(HeaderName::from_static("x-request-id"), value);
                }
                if tracing::enabled!(tracing::Level::INFO) {
                    let (req, status) = (res.request(), res.status().as_u16());
                    tracing::info!(request_id = text, method = %req.method(), path = req.path(), status, "request served from the cache");
                }
                Ok(res)
            }
            Err((req, stale)) => {
                req.extensions_mut().insert(LookedUp { key, stale });
                Ok(next.call(req).await?.map_into_boxed_body())
            }
        }
    }

    /// The middleware body; use with `actix_web::middleware::from_fn` (see `startup`).
    pub async fn handle(
        self: Rc<Self>,
        req: ServiceRequest,
        next: Next<impl MessageBody + 'static>,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
        let head = req.method() == Method::HEAD;
        let cacheable_method = head || req.method() == Method::GET;
        let policies = self.policies.clone();
        let policy = match policies.iter().find(|(m, _)| m.matches(req.path())) {
            Some((_, policy)) if cacheable_method => policy,
            _ => return Ok(next.call(req).await?.map_into_boxed_body()),
        };
        if (self.is_admin)(&req) {
            let res = next.call(req).await?.map_into_boxed_body();
            let view_of = res.response().extensions().get::<ViewOf>().map(|v| v.0);
            self.count_view(head, res.request().headers(), res.status(), view_of);
            return Ok(with_outcome(res, Outcome::Bypass));
        }
        let conditions = Conditions::of(req.headers());
        // Its own answer is not stored; it is still answered from the cache.
        let keep_miss =
            !requests_no_store(req.headers()) && !req.headers().contains_key(header::AUTHORIZATION);
        let looked_up = req.extensions_mut().remove::<LookedUp>();
        let key = match &looked_up {
            Some(l) => l.key.clone(),
            None => self.key_for(&req, policy),
        };
        let warm = !self.warm_token.is_empty()
            && req
                .headers()
                .get(crate::web::warm::WARM_HEADER)
                .is_some_and(|v| v.as_bytes() == self.warm_token.as_bytes());
        let force = warm && req.headers().contains_key(crate::web::warm::FORCE_HEADER);
        let (mut req, mut stale) = if force {
            (req, None)
        } else if let Some(looked_up) = looked_up {
            (req, looked_up.stale)
        } else {
            match self
                .stored_answer(req, &key, policy, &conditions, head, false)
                .await
            {
                Ok(res) => return Ok(res),
                Err(missed) => missed,
            }
        };
        // Concurrent misses of one key render once: the others wait for that copy (a
        // stampede of renders is what an invalidated hot page would otherwise cost).
        let _leader = match self.collapsing.join(key.as_str()) {
            Join::Leader(guard) => Some(guard),
            Join::Follower(mut done) => {
                let _ = tokio::time::timeout(COLLAPSE_WAIT, done.changed()).await;
                match self
                    .stored_answer(req, &key, policy, &conditions, head, true)
                    .await
                {
                    Ok(res) => {
                        self.cache
                            .record_event(policy.family, crate::cache::FamilyEvent::Coalesced);
                        return Ok(res);
                    }
                    // Not stored (an error, a response that must not be): render.
                    Err((r, s)) => {
                        req = r;
                        stale = s.or(stale);
                    }
                }
                None
            }
        };
        let now = now_ms();

        // A miss: the handler builds it, and the conditions are answered here, from
        // what it built (the layers inside must not answer 304 to a response this
        // cache is about to store).
        if conditions.any() {
            let headers = req.headers_mut();
            headers.remove(header::IF_NONE_MATCH);
            headers.remove(header::IF_MODIFIED_SINCE);
        }
        let render_started = std::time::Instant::now();
        let (res, trace) = TagTrace::record(async {
            self.cache.trace_tags(policy.depends_on).await;
            next.call(req).await
        })
        .await;
        let res = res?;
        let view_of = res.response().extensions().get::<ViewOf>().map(|v| v.0);
        if is_stale_if_error_status(res.status()) {
            let grace = policy.ttl + policy.stale_if_error;
            if let Some(meta) = stale.filter(|m| m.stored_at_ms + grace.as_millis() as u64 > now) {
                if let Some(body) = self.body(policy, &meta).await {
                    let status = res.status().as_u16();
                    tracing::warn!(path = res.request().path(), status, "serving a stale copy");
                    self.cache
                        .record_event(policy.family, crate::cache::FamilyEvent::Stale);
                    self.count_view(head, res.request().headers(), StatusCode::OK, meta.view_of);
                    let (req, _) = res.into_parts();
                    let res = respond(&meta, Some(body), policy, now);
                    return Ok(with_outcome(
                        ServiceResponse::new(req, res),
                        Outcome::Stale { status },
                    ));
                }
            }
        }
        self.count_view(head, res.request().headers(), res.status(), view_of);
        if res.status() != StatusCode::OK || !is_public(&res) {
            return Ok(with_outcome(res.map_into_boxed_body(), Outcome::Bypass));
        }
        if !keep_miss {
            let res = res.map_into_boxed_body();
            return Ok(with_outcome(res, Outcome::Miss { stored: false }));
        }
        let (req, res) = res.into_parts();
        let (head_part, body) = res.into_parts();
        let bytes = body::to_bytes(body)
            .await
            .map_err(|e| actix_web::error::ErrorInternalServerError(e.into()))?;
        let meta = ResponseMeta {
            status: head_part.status().as_u16(),
            headers: head_part
                .headers()
                .iter()
                .filter(|(name, _)| KEPT_HEADERS.contains(&name.as_str()))
                .filter_map(|(name, value)| {
                    Some((name.to_string(), value.to_str().ok()?.to_string()))
                })
                .collect(),
            etag: head_part
                .headers()
                .get(header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
                .unwrap_or_else(|| strong_etag(&bytes)),
            stored_at_ms: now,
            fresh_ms: policy.ttl.as_millis() as u64,
            view_of,
            warmed: warm,
            hit_counted: Default::default(),
            prepared: Default::default(),
            last_modified: Default::default(),
            body_key: Default::default(),
        };
        self.cache
            .record_fill(policy.family, render_started.elapsed());
        let stored = trace.is_complete();
        if stored {
            // The body first: metadata must never point at a body that is not there.
            let keep = Some(policy.ttl + policy.stale_if_error);
            self.cache
                .set_raw_immutable(&self.body_key(policy, &meta.etag), bytes.to_vec(), keep)
                .await;
            self.cache.set_traced(&key, &trace, &meta, keep).await;
            if warm {
                self.warming.stored(key.as_str());
            }
        }
        let res = if conditions.not_modified(&meta.etag, None) {
            respond(&meta, None, policy, now)
        } else {
            // The handler's own response (its timing headers too), with the cache's
            // validators.
            let mut res = head_part.set_body(bytes).map_into_boxed_body();
            cache_headers(res.headers_mut(), &meta, policy, now);
            res
        };
        Ok(with_outcome(
            ServiceResponse::new(req, res),
            Outcome::Miss { stored },
        ))
    }

    /// Answers from the stored copy if it is fresh, or gives the request back with the
    /// expired copy, if any (for stale-if-error).
    async fn stored_answer(
        &self,
        req: ServiceRequest,
        key: &Key,
        policy: &ResponsePolicy,
        conditions: &Conditions,
        head: bool,
        collapsed: bool,
    ) -> Result<ServiceResponse<BoxBody>, (ServiceRequest, Option<Arc<ResponseMeta>>)> {
        let now = now_ms();
        let Some(meta) = self.cache.get_traced::<ResponseMeta>(key).await else {
            return Err((req, None));
        };
        let Some(ttl_left_ms) = meta.fresh_left_ms(now) else {
            return Err((req, Some(meta)));
        };
        let hit = Outcome::Hit {
            ttl_left_ms,
            collapsed,
        };
        let modified = last_modified(meta.stored_at_ms, now);
        if conditions.not_modified(&meta.etag, modified) {
            let res = respond(&meta, None, policy, now);
            return Ok(with_outcome(req.into_response(res), hit));
        }
        match self.body(policy, &meta).await {
            Some(body) => {
                self.count_view(head, req.headers(), StatusCode::OK, meta.view_of);
                if meta.warmed
                    && !meta
                        .hit_counted
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                    && !req.headers().contains_key(crate::web::warm::WARM_HEADER)
                {
                    self.warming.hit(key.as_str());
                }
                let res = respond(&meta, Some(body), policy, now);
                Ok(with_outcome(req.into_response(res), hit))
            }
            // The body was evicted before its metadata: rebuild.
            None => Err((req, None)),
        }
    }

    async fn body(&self, policy: &ResponsePolicy, meta: &ResponseMeta) -> Option<bytes::Bytes> {
        let key = meta
            .body_key
            .get_or_init(|| self.body_key(policy, &meta.etag));
        self.cache
            .get_raw_immutable(key)
            .await
            .map(bytes::Bytes::from_owner)
    }

    /// Method-independent: the canonical path and parameters (see `web::canonical`:
    /// the handler reads exactly these), then each vary value.
    fn key_for(&self, req: &ServiceRequest, policy: &ResponsePolicy) -> Key {
        let query = match req.query_string() {
            "" => String::new(),
            _ => Params::of(req.request()).query_string(),
        };
        let vary = policy.vary_on.iter().map(|name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        });
        let parts = [req.path(), query.as_str()].into_iter().chain(vary);
        self.cache.key(policy.family, parts)
    }

    fn body_key(&self, policy: &ResponsePolicy, etag: &str) -> Key {
        self.cache
            .key(policy.family, ["body", etag.trim_matches('"')])
    }
}

fn requests_no_store(headers: &HeaderMap) -> bool {
    has_directive(headers, &["no-store"])
}

/// Whether a `Cache-Control` header carries one of `directives` (names only).
fn has_directive(headers: &HeaderMap, directives: &[&str]) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.split('=').next().unwrap_or("").trim())
        .any(|d| directives.iter().any(|n| d.eq_ignore_ascii_case(n)))
}

/// Whether an answer may be shared with every reader: it is not marked `private` or
/// `no-store`, sets no cookie — the session layer's included, which adds its
/// `Set-Cookie` only after this layer (so its session is checked instead) — and its
/// handler did not ask (`DoNotStore`).
fn is_public<B>(res: &ServiceResponse<B>) -> bool {
    use actix_session::SessionExt;
    !has_directive(res.headers(), &["private", "no-store"])
        && !res.headers().contains_key(header::SET_COOKIE)
        && res.response().extensions().get::<DoNotStore>().is_none()
        && res.request().get_session().status() == actix_session::SessionStatus::Unchanged
}

/// RFC 5861's stale-if-error statuses.
fn is_stale_if_error_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// A browser's speculative load (link prefetch, prerender): not a reader's view.
fn is_prefetch(headers: &HeaderMap) -> bool {
    ["sec-purpose", "purpose", "x-purpose", "x-moz"]
        .iter()
        .filter_map(|name| headers.get(*name))
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("prefetch") || v.contains("preview"))
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn with_outcome(mut res: ServiceResponse<BoxBody>, outcome: Outcome) -> ServiceResponse<BoxBody> {
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
fn respond(
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
fn cache_headers(
    headers: &mut HeaderMap,
    meta: &ResponseMeta,
    policy: &ResponsePolicy,
    now_ms: u64,
) {
    headers.insert(header::CACHE_CONTROL, policy.cache_control.clone());
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
    let conditions = Conditions::of(req.headers());
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
    if conditions.not_modified(&etag, None) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conditions(headers: &[(&'static str, &str)]) -> Conditions {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        Conditions::of(&map)
    }

    #[test]
    fn if_none_match_is_compared_weakly_whatever_its_form() {
        let etag = "\"abc\"";
        for (sent, matches) in [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", W/\"abc\"", true),
            ("*", true),
            ("\"abcd\"", false),
            ("\"x\", \"y\"", false),
        ] {
            assert_eq!(
                conditions(&[("if-none-match", sent)]).not_modified(etag, Some(0)),
                matches,
                "{sent}"
            );
        }
        let two_lines = conditions(&[("if-none-match", "\"x\""), ("if-none-match", "\"abc\"")]);
        assert!(two_lines.not_modified(etag, None));
    }

    #[test]
    fn if_none_match_wins_over_if_modified_since_unless_it_does_not_parse() {
        let since = "Thu, 01 Jan 2026 00:00:00 GMT";
        let modified = Some(1_700_000_000); // before `since`
        let other = conditions(&[("if-none-match", "\"x\""), ("if-modified-since", since)]);
        assert!(!other.not_modified("\"abc\"", modified));
        let garbage = conditions(&[("if-none-match", "not a tag"), ("if-modified-since", since)]);
        assert!(garbage.not_modified("\"abc\"", modified));
        assert!(!garbage.not_modified("\"abc\"", Some(1_800_000_000)));
    }
}
