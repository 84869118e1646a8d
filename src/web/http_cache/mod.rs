//! HTTP caching, kept together (as Django's `utils/cache.py`): whole-response caching
//! for GET/HEAD, strong ETags and Last-Modified, conditional responses (304), and the
//! Cache-Control / Vary / Age / X-Cache headers. This file is the middleware (the
//! early and late layers, which talk through `LookedUp`); `policy` says what is
//! covered and storable, `stored` what is kept and sent, `conditional` the validators
//! and 304s, `collapse` how concurrent misses render once.
//!
//! A cached response is stored as two entries: small metadata (status, headers, ETag,
//! Last-Modified, tag versions) and the body, keyed by its ETag. A conditional request
//! that matches is answered from the metadata alone — the body is neither read nor
//! built, so a 304 costs one small lookup.

mod collapse;
mod conditional;
mod policy;
mod stored;

use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{self, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use tracing::Instrument as _;

pub use self::collapse::Collapsing;
use self::collapse::{Join, COLLAPSE_WAIT};
pub use self::conditional::{conditional_get, strong_etag};
use self::conditional::{last_modified, Conditions};
use self::policy::{
    has_directive, is_prefetch, is_public, is_stale_if_error_status, not_for_edges,
    requests_no_store,
};
pub use self::policy::{
    matches_pattern, DoNotStore, EdgePolicy, IsAdmin, PathMatch, ResponsePolicy, ViewOf,
};
pub use self::stored::WarmStats;
use self::stored::{
    cache_headers, now_ms, respond, with_outcome, Outcome, ResponseMeta, KEPT_HEADERS,
};
use crate::cache::{CacheManager, Key, TagTrace};
use crate::web::canonical::Params;

/// Header of a warm request (`web::warm`); its value is the process's warm token.
pub const WARM_HEADER: &str = "x-folio-warm";
/// With a valid `WARM_HEADER`: rebuild and store even if a fresh copy exists.
pub const FORCE_HEADER: &str = "x-folio-warm-force";

/// Whether a request is this process's warm request (it counts no view and no search).
pub fn is_warm_request(req: &actix_web::HttpRequest, token: &str) -> bool {
    !token.is_empty()
        && req
            .headers()
            .get(WARM_HEADER)
            .is_some_and(|v| v.as_bytes() == token.as_bytes())
}

/// Whether a request's query is spelled as its canonical one (`web::canonical`).
fn canonically_spelled(req: &actix_web::HttpRequest) -> bool {
    req.extensions()
        .get::<Params>()
        .is_some_and(|p| p.query_string() == req.query_string())
}

/// Told each post view the cache counts (see `ViewOf`): the site's view counter.
pub type ViewSink = Arc<dyn Fn(i32) + Send + Sync>;

#[derive(Clone)]
pub struct ResponseCache {
    cache: CacheManager,
    /// The first match wins.
    policies: Rc<Vec<(PathMatch, ResponsePolicy)>>,
    is_admin: IsAdmin,
    views: ViewSink,
    collapsing: Arc<Collapsing>,
    /// Marks warm requests (see `web::warm`).
    warm_token: Arc<str>,
    warming: Arc<WarmStats>,
    /// With edge caches: answers outside every policy are marked not for them.
    edges: bool,
    /// With a path edge (nginx, CloudFront): where a stored answer's path is recorded
    /// before it is first sent for the edges to keep (see `edge::paths`).
    paths: Option<PathEdges>,
    /// Counts what readers ask for (see `web::demand`).
    demand: Option<Arc<crate::web::demand::Demand>>,
}

/// The path edges' recorder, and the database it records in.
#[derive(Clone)]
pub struct PathEdges {
    pub edges: Arc<crate::edge::Edges>,
    pub repo: crate::content::Repository,
}

/// Left by `handle_early` on a request whose stored answer it could not send.
struct LookedUp {
    key: Key,
    /// An expired copy, for stale-if-error.
    stale: Option<Arc<ResponseMeta>>,
}

impl ResponseCache {
    pub fn new(
        cache: CacheManager,
        policies: Vec<(PathMatch, ResponsePolicy)>,
        is_admin: IsAdmin,
        views: ViewSink,
        collapsing: Arc<Collapsing>,
        warm_token: Arc<str>,
        warming: Arc<WarmStats>,
    ) -> Self {
        ResponseCache {
            edges: policies.iter().any(|(_, p)| p.edge.is_some()),
            cache,
            policies: Rc::new(policies),
            is_admin,
            views,
            collapsing,
            warm_token,
            warming,
            paths: None,
            demand: None,
        }
    }

    /// Counts each answer to a reader for the demand model warming follows.
    pub fn with_demand(mut self, demand: Arc<crate::web::demand::Demand>) -> Self {
        self.demand = Some(demand);
        self
    }

    /// Counts an answer to a reader (not to warming), under its canonical URL only: the
    /// one warming requests, and not one per parameter a visitor adds.
    fn observe(&self, req: &actix_web::HttpRequest, miss: Option<std::time::Duration>) {
        let Some(demand) = &self.demand else {
            return;
        };
        if req.headers().contains_key(WARM_HEADER)
            || (!req.query_string().is_empty() && !canonically_spelled(req))
        {
            return;
        }
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        demand.observe(path, miss);
    }

    /// Records the paths of answers sent for the path edges to keep, if any is configured.
    pub fn with_path_edges(mut self, paths: Option<PathEdges>) -> Self {
        self.paths = paths.filter(|p| p.edges.paths().is_some());
        self
    }

    /// With a path edge, an answer to a spelling of its URL other than the canonical
    /// one (an ignored parameter, another encoding) is not for the edges: they would
    /// keep it under that spelling, which no record names.
    fn spelled_for_path_edges(&self, res: &mut ServiceResponse<BoxBody>, policy: &ResponsePolicy) {
        let (Some(_), Some(edge)) = (&self.paths, &policy.edge) else {
            return;
        };
        if !canonically_spelled(res.request()) {
            res.headers_mut()
                .insert(header::CACHE_CONTROL, edge.untagged.clone());
            not_for_edges(res.headers_mut());
        }
    }

    /// Counts a post view if this response is one reader's full view of it.
    fn count_view(&self, head: bool, req: &HeaderMap, status: StatusCode, view_of: Option<i32>) {
        if let Some(id) = view_of.filter(|_| !head && status == StatusCode::OK && !is_prefetch(req))
        {
            (self.views)(id);
        }
    }

    /// The outer layer (see `web::app`): a request without a cookie has no session, so
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
            && !headers.contains_key(WARM_HEADER);
        let policies = self.policies.clone();
        let policy = match policies.iter().find(|(m, _)| m.matches(req.path())) {
            Some((_, policy)) if eligible => policy,
            _ => {
                let mut res = next.call(req).await?.map_into_boxed_body();
                // Static files (content-addressed, immutable) are the edges' to keep.
                if self.edges && !has_directive(res.headers(), &["immutable"]) {
                    not_for_edges(res.headers_mut());
                }
                return Ok(res);
            }
        };
        // While spans are exported every request gets its request span: the lookup is
        // then `handle`'s, inside the tracing layer.
        if crate::telemetry::exporting() {
            return Ok(next.call(req).await?.map_into_boxed_body());
        }
        let Some(key) = self.key_for(&req, policy) else {
            return Ok(next.call(req).await?.map_into_boxed_body());
        };
        let conditions = Conditions::of(req.headers());
        match self
            .stored_answer(req, &key, policy, &conditions, head, false)
            .await
        {
            // Outside the request-id layer: the access-log layer gives it its id.
            Ok(res) => Ok(res),
            Err((req, stale)) => {
                req.extensions_mut().insert(LookedUp { key, stale });
                Ok(next.call(req).await?.map_into_boxed_body())
            }
        }
    }

    /// The middleware body; use with `actix_web::middleware::from_fn` (see `web::app`).
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
        let span = tracing::debug_span!(
            "cache.response",
            cache.family = policy.family,
            cache.result = tracing::field::Empty,
        );
        self.answer(req, next, policy, head).instrument(span).await
    }

    /// `handle` for a request its `policy` covers.
    async fn answer(
        self: Rc<Self>,
        req: ServiceRequest,
        next: Next<impl MessageBody + 'static>,
        policy: &ResponsePolicy,
        head: bool,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
        if (self.is_admin)(&req) {
            let res = next.call(req).await?.map_into_boxed_body();
            let view_of = res.response().extensions().get::<ViewOf>().map(|v| v.0);
            self.count_view(head, res.request().headers(), res.status(), view_of);
            let mut res = res;
            if policy.edge.is_some() {
                not_for_edges(res.headers_mut());
            }
            return Ok(with_outcome(res, Outcome::Bypass));
        }
        let conditions = Conditions::of(req.headers());
        // Its own answer is not stored; it is still answered from the cache.
        let keep_miss =
            !requests_no_store(req.headers()) && !req.headers().contains_key(header::AUTHORIZATION);
        let looked_up = req.extensions_mut().remove::<LookedUp>();
        let key = match &looked_up {
            Some(l) => l.key.clone(),
            None => match self.key_for(&req, policy) {
                Some(key) => key,
                None => {
                    let res = next.call(req).await?.map_into_boxed_body();
                    return Ok(with_outcome(res, Outcome::Bypass));
                }
            },
        };
        let warm = !self.warm_token.is_empty()
            && req
                .headers()
                .get(WARM_HEADER)
                .is_some_and(|v| v.as_bytes() == self.warm_token.as_bytes());
        let force = warm && req.headers().contains_key(FORCE_HEADER);
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
            let mut res = res.map_into_boxed_body();
            if policy.edge.is_some() {
                not_for_edges(res.headers_mut());
            }
            return Ok(with_outcome(res, Outcome::Bypass));
        }
        if !keep_miss {
            let mut res = res.map_into_boxed_body();
            if policy.edge.is_some() {
                not_for_edges(res.headers_mut());
            }
            return Ok(with_outcome(res, Outcome::Miss { stored: false }));
        }
        let mut stored = trace.is_complete();
        // With edges, only an answer still current is stored and tagged: one built from
        // data a write changed meanwhile would reach them after that write's purge. (Its
        // entry here would never be served either: it is stored under old versions.)
        let mut for_edges =
            policy.edge.is_some() && stored && self.cache.trace_is_current(&trace).await;
        // The path edges find an answer again by its URL: recorded before it leaves.
        if let (true, Some(paths), Some(edge)) = (for_edges, &self.paths, &policy.edge) {
            let tags: Vec<String> = trace.tag_keys().map(|(key, _)| key.to_string()).collect();
            let lifetime = policy.ttl + policy.stale_if_error + edge.headers.kept_at_most();
            let path = res.request().uri().path_and_query().map(|p| p.as_str());
            for_edges = canonically_spelled(res.request())
                && match (path, paths.edges.paths()) {
                    (Some(path), Some(recorder)) => {
                        recorder.record(&paths.repo, path, &tags, lifetime).await
                    }
                    _ => false,
                };
        }
        if policy.edge.is_some() && !for_edges {
            stored = false;
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
            tags: match for_edges {
                true => trace.tag_keys().map(|(key, _)| key.to_string()).collect(),
                false => Vec::new(),
            },
            edge_headers: Default::default(),
        };
        self.cache
            .record_fill(policy.family, render_started.elapsed());
        self.observe(&req, Some(render_started.elapsed()));
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
            let mut res = with_outcome(req.into_response(res), hit);
            self.spelled_for_path_edges(&mut res, policy);
            self.observe(res.request(), None);
            return Ok(res);
        }
        match self.body(policy, &meta).await {
            Some(body) => {
                self.count_view(head, req.headers(), StatusCode::OK, meta.view_of);
                if meta.warmed
                    && !meta
                        .hit_counted
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                    && !req.headers().contains_key(WARM_HEADER)
                {
                    self.warming.hit(key.as_str());
                }
                let res = respond(&meta, Some(body), policy, now);
                let mut res = with_outcome(req.into_response(res), hit);
                self.spelled_for_path_edges(&mut res, policy);
                self.observe(res.request(), None);
                Ok(res)
            }
            // The body was evicted before its metadata: rebuild.
            None => Err((req, None)),
        }
    }

    async fn body(&self, policy: &ResponsePolicy, meta: &ResponseMeta) -> Option<bytes::Bytes> {
        let key = meta
            .body_key
            .get_or_init(|| self.body_key(policy, &meta.etag));
        self.cache.get_raw_immutable(key).await
    }

    /// Method-independent: the canonical path and parameters (see `web::canonical`:
    /// the handler reads exactly these), then each vary value.
    /// The key of a request's answer: its path, its canonical query and the `Vary`
    /// headers' values. None (nothing is stored) when no canonical `Params` were left on
    /// the request (`web::canonical::check` did not run before this layer).
    fn key_for(&self, req: &ServiceRequest, policy: &ResponsePolicy) -> Option<Key> {
        let query = req.extensions().get::<Params>().map(Params::query_string)?;
        let vary = policy.vary_on.iter().map(|name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        });
        let parts = [req.path(), query.as_str()].into_iter().chain(vary);
        Some(self.cache.key(policy.family, parts))
    }

    fn body_key(&self, policy: &ResponsePolicy, etag: &str) -> Key {
        self.cache
            .key(policy.family, ["body", etag.trim_matches('"')])
    }
}
