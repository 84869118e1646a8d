//! Which responses the cache covers and which it may keep: the policies per path, the
//! markers handlers leave (`DoNotStore`, `ViewOf`), and the storability rules — only a
//! public answer (not `private` or `no-store`, no cookie set, no session changed, no
//! `Authorization` on the request) is stored. The request side of the key is canonical
//! by the time it gets here (`web::canonical`).

use std::time::Duration;

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;

/// Which request paths a policy covers.
#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    /// Literal segments and `{name}` for any one non-empty segment (`/blog/{slug}/`).
    Pattern(&'static str),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Pattern(p) => matches_pattern(p, path),
        }
    }
}

/// `pattern`'s literal segments equal, each `{…}` one non-empty segment.
pub fn matches_pattern(pattern: &str, path: &str) -> bool {
    if !pattern.contains('{') {
        return pattern == path;
    }
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
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
    /// The `max-age` in `cache_control`, in seconds (0: clients revalidate each time).
    pub max_age: u64,
    /// When the content is next known to change (Unix ms; 0: not known), such as a
    /// scheduled publication: `max-age` is cut so that no client keeps an answer past
    /// it (see `with_max_age`).
    pub next_change: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// With edge caches (`EDGE_CACHE_URLS`): their headers (see `with_edges`).
    pub edge: Option<EdgePolicy>,
}

/// What a policy sends edge caches: the tag headers, and `Cache-Control` with the edge
/// lifetime when the answer's tags are known (stored here) or `s-maxage=0` when not.
#[derive(Debug, Clone)]
pub struct EdgePolicy {
    pub headers: std::sync::Arc<crate::edge::EdgeHeaders>,
    pub tagged: HeaderValue,
    pub untagged: HeaderValue,
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
            max_age: 0,
            next_change: None,
            edge: None,
        }
    }
    /// Clients may keep answers `seconds` (`public, max-age=…`), never past the moment
    /// `next_change` holds.
    pub fn with_max_age(
        mut self,
        seconds: u64,
        next_change: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        self.cache_control =
            HeaderValue::from_str(&format!("public, max-age={seconds}")).expect("digits");
        self.max_age = seconds;
        self.next_change = Some(next_change);
        self
    }
    /// The `max-age` for an answer `age` seconds old sent at `now_ms`, if the next
    /// known change comes before the policy's own `max-age` runs out: what is left until
    /// then, plus `age` (clients count freshness from the answer's `Age`).
    pub(super) fn max_age_cut(&self, age: u64, now_ms: u64) -> Option<u64> {
        let next = self
            .next_change
            .as_ref()?
            .load(std::sync::atomic::Ordering::Relaxed);
        if next == 0 || self.max_age == 0 {
            return None;
        }
        let cut = age + next.saturating_sub(now_ms) / 1000;
        (cut < self.max_age).then_some(cut)
    }
    /// Adds the edges' headers; call after `cache_control` is final.
    pub fn with_edges(mut self, headers: Option<std::sync::Arc<crate::edge::EdgeHeaders>>) -> Self {
        self.edge = headers.map(|headers| EdgePolicy {
            tagged: headers.cache_control(&self.cache_control),
            untagged: crate::edge::EdgeHeaders::untagged_cache_control(&self.cache_control),
            headers,
        });
        self
    }
    pub fn vary_on(mut self, header: HeaderName) -> Self {
        self.vary_on.push(header);
        self
    }
}

/// Whether a request comes from a signed-in admin (the web layer knows how): their
/// requests are never served from or stored in the shared cache.
pub type IsAdmin = fn(&ServiceRequest) -> bool;

pub(super) fn requests_no_store(headers: &HeaderMap) -> bool {
    has_directive(headers, &["no-store"])
}

/// Whether a `Cache-Control` header carries one of `directives` (names only).
pub(super) fn has_directive(headers: &HeaderMap, directives: &[&str]) -> bool {
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
pub(super) fn is_public<B>(res: &ServiceResponse<B>) -> bool {
    use actix_session::SessionExt;
    !has_directive(res.headers(), &["private", "no-store"])
        && !res.headers().contains_key(header::SET_COOKIE)
        && res.response().extensions().get::<DoNotStore>().is_none()
        && res.request().get_session().status() == actix_session::SessionStatus::Unchanged
}

/// Marks an answer edge caches must not keep: theirs are kept only when tagged.
pub(super) fn not_for_edges(headers: &mut HeaderMap) {
    if !headers.contains_key("surrogate-control") {
        headers.insert(
            HeaderName::from_static("surrogate-control"),
            HeaderValue::from_static("no-store"),
        );
        headers.insert(
            HeaderName::from_static("cdn-cache-control"),
            HeaderValue::from_static("no-store"),
        );
    }
}

/// RFC 5861's stale-if-error statuses.
pub(super) fn is_stale_if_error_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// A browser's speculative load (link prefetch, prerender): not a reader's view.
pub(super) fn is_prefetch(headers: &HeaderMap) -> bool {
    ["sec-purpose", "purpose", "x-purpose", "x-moz"]
        .iter()
        .filter_map(|name| headers.get(*name))
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("prefetch") || v.contains("preview"))
}
