//! The route table: every route of the site, declared once with what it serves, the
//! query parameters it reads (with their type and bounds), how its answers are cached,
//! how long edges keep them and when warming visits it.
//!
//! Everything else is derived from it: the actix routes (`configure`), the canonical
//! request and the key (`web::canonical` reads `params`), the response-cache policies
//! (`web::response_cache` reads `cache`), the tags an API answer depends on, the warm
//! plan (`web::warm::plan` reads `warm`), the OpenAPI parameter schemas
//! (`api::openapi`) and the route label of `/metrics` (`find`). A route must say how it
//! is cached — `cache` has no default — and only the routes here are cached at all: a
//! handler registered anywhere else is never stored.

use actix_web::{web, Resource};

use crate::content::invalidation::CacheTag;
pub use crate::web::http_cache::matches_pattern;
use crate::web::{admin, api, health, media, metrics, pages};

/// How a route's answers are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// Stored whole for anonymous readers; what it depends on is traced as it renders.
    Page,
    /// Stored whole for every client (admins bypass it), depending on these tags besides
    /// the traced ones; clients may keep it `API_MAX_AGE`.
    Api(&'static [&'static str]),
    /// Never stored (forms, the admin, per-visitor or secret answers).
    Never,
}

/// How long edge caches (`EDGE_CACHE_URLS`) keep a stored answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// `EDGE_CACHE_TTL`: purges end it when its tags change.
    Site,
    /// At most this many seconds, even if `EDGE_CACHE_TTL` is longer.
    AtMost(u64),
}

/// What warming visits for a route, and at which priority (1 first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warm {
    /// The path itself.
    Path(u8),
    /// Every published post's page: the recent and popular ones at the first priority,
    /// the rest at the second.
    Posts(u8, u8),
    /// Every tag with a visible post.
    Tags(u8),
    /// The list's pages past the first.
    Pages(u8),
    /// The most searched queries lately (first page).
    Searches(u8),
}

/// A query parameter a route reads: every other one is ignored, and left out of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    /// Refused (400) without it.
    pub required: bool,
    /// Read only with this other parameter: without it the request is redirected (308)
    /// to its URL without this one, so it names one resource, not one per value.
    pub needs: Option<&'static str>,
    /// For the API's description (OpenAPI).
    pub doc: &'static str,
}

impl Param {
    pub const fn optional(name: &'static str, kind: Kind, doc: &'static str) -> Param {
        Param {
            name,
            kind,
            required: false,
            needs: None,
            doc,
        }
    }
    pub const fn required(self) -> Param {
        Param {
            required: true,
            ..self
        }
    }
    pub const fn needs(self, other: &'static str) -> Param {
        Param {
            needs: Some(other),
            ..self
        }
    }
}

/// A parameter's type and bounds. A value out of them is refused with a 400 naming the
/// parameter, before any handler or cache sees it (so it is never stored); bounds that
/// only the content knows (the last page, whether a tag has a visible post) are the
/// handler's, which answers 404 past them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A page number: an integer from 1 (`02` and `+2` are spellings of 2).
    Page,
    /// A slug: 1 to 100 lowercase letters, digits and hyphens.
    Slug,
    /// `true` or `false` (`1`/`0` and any case are spellings of them).
    Flag,
    /// Free text of 1 to `max_chars` characters.
    Text { max_chars: usize },
    /// A search query (`content::search::SearchQuery`): normalised here; one the parser
    /// refuses is left to the handler, which keeps the reader's text in its answer.
    Search,
    /// One of these values.
    OneOf(&'static [&'static str]),
}

pub const MAX_SLUG: usize = 100;

impl Kind {
    /// Why a required parameter of this kind that is absent is refused.
    pub fn missing(self) -> &'static str {
        match self {
            Kind::Search => "type a word to search for",
            _ => "is required",
        }
    }

    /// The value as it is written canonically, or why it is refused.
    pub fn canonical(self, value: &str) -> Result<String, String> {
        match self {
            Kind::Page => value
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .map(|n| n.to_string())
                .ok_or_else(|| format!("must be a positive integer, got '{value}'")),
            Kind::Slug if is_slug(value) => Ok(value.to_string()),
            Kind::Slug => Err(format!(
                "must be a slug (lowercase letters, digits, '-'; at most {MAX_SLUG}), got '{value}'"
            )),
            Kind::Flag => match value.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok("true".into()),
                "false" | "0" => Ok("false".into()),
                _ => Err(format!("must be true or false, got '{value}'")),
            },
            Kind::Text { max_chars } if value.chars().count() <= max_chars => Ok(value.to_string()),
            Kind::Text { max_chars } => Err(format!("must be at most {max_chars} characters")),
            Kind::Search => Ok(crate::content::search::SearchQuery::parse(value)
                .map(|q| q.canonical().to_string())
                .unwrap_or_else(|_| value.to_string())),
            Kind::OneOf(values) if values.contains(&value) => Ok(value.to_string()),
            Kind::OneOf(values) => Err(format!("'{value}' is not one of {}", values.join(", "))),
        }
    }
}

fn is_slug(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_SLUG
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

const PAGE: Param = Param::optional("page", Kind::Page, "Page number, from 1.");
const QUERY: Param = Param::optional(
    "q",
    Kind::Search,
    "What to look for: words (all must match), `\"exact phrases\"`, `this OR that`, `-excluded`. At most 200 characters and 12 words or phrases.",
);

/// One route. It cannot be declared without saying how it is cached (`cache` has no
/// default), so a new route cannot forget it:
///
/// ```compile_fail,E0063
/// use folio::web::routes::{Edge, Route};
/// let route = Route { path: "/x/", resource: |r| r, params: &[], edge: Edge::Site, warm: &[] };
/// ```
pub struct Route {
    /// The actix pattern: literal segments and `{name}` for one segment.
    pub path: &'static str,
    /// Its methods and handlers (and per-resource settings such as a form's size limit).
    pub resource: fn(Resource) -> Resource,
    /// The query parameters it reads, in canonical order.
    pub params: &'static [Param],
    pub cache: Caching,
    pub edge: Edge,
    pub warm: &'static [Warm],
}

impl Route {
    /// Whether `path` (canonical, without the query) is this route's.
    pub fn matches(&self, path: &str) -> bool {
        matches_pattern(self.path, path)
    }
    pub fn param(&self, name: &str) -> Option<&'static Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// The route `path` is answered by, if any.
pub fn find(path: &str) -> Option<&'static Route> {
    TABLE.iter().find(|r| r.matches(path))
}

/// Registers every route of the table with actix, in order.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for route in TABLE {
        cfg.service((route.resource)(web::resource(route.path)));
    }
}

macro_rules! route {
    ($path:literal, $resource:expr, params: $params:expr, cache: $cache:expr, warm: $warm:expr $(, edge: $edge:expr)? $(,)?) => {
        Route {
            path: $path,
            resource: $resource,
            params: $params,
            cache: $cache,
            edge: { #[allow(unused_variables)] let edge = Edge::Site; $(let edge = $edge;)? edge },
            warm: $warm,
        }
    };
}

use CacheTag as T;
use Caching::{Api, Never, Page};

/// Every route. Order matters only where two patterns could match one path (none do).
pub static TABLE: &[Route] = &[
    // Public pages, cached whole for anonymous readers.
    route!("/", |r| r.get(pages::home::index), params: &[], cache: Page, warm: &[Warm::Path(1)]),
    route!("/blog/", |r| r.get(pages::blog::list), params: &[PAGE], cache: Page,
        warm: &[Warm::Path(2), Warm::Pages(3)]),
    route!("/blog/tag/{slug}/", |r| r.get(pages::blog::tag), params: &[PAGE], cache: Page,
        warm: &[Warm::Tags(3)]),
    route!("/blog/{slug}/", |r| r.get(pages::blog::detail), params: &[], cache: Page,
        warm: &[Warm::Posts(2, 4)]),
    route!("/about/", |r| r.get(pages::about::index), params: &[], cache: Page, warm: &[Warm::Path(2)]),
    route!("/tools/", |r| r.get(pages::tools::index), params: &[], cache: Page, warm: &[Warm::Path(2)]),
    // The form is stored; answers to a query never are whole (see `pages::search`).
    // Without a query it is the search form: one URL, never one per page number.
    route!("/search/", |r| r.get(pages::search::index), params: &[QUERY, PAGE.needs("q")], cache: Page,
        warm: &[Warm::Searches(2)]),
    route!("/opensearch.xml", |r| r.get(pages::search::opensearch), params: &[], cache: Page, warm: &[],
        edge: Edge::AtMost(86_400)),
    route!("/feed.xml", |r| r.get(pages::feeds::atom), params: &[], cache: Page, warm: &[Warm::Path(3)]),
    route!("/sitemap.xml", |r| r.get(pages::feeds::sitemap), params: &[], cache: Page, warm: &[Warm::Path(3)]),
    // Its CSRF token is per visitor.
    route!("/contact/", |r| r
            .app_data(crate::web::error::form_config(pages::contact::MAX_BODY))
            .get(pages::contact::form)
            .post(pages::contact::submit),
        params: &[], cache: Never, warm: &[]),
    route!("/contact/thanks/", |r| r.get(pages::contact::thanks), params: &[], cache: Never, warm: &[]),
    // The public API.
    route!("/api/posts/", |r| r.get(api::posts::list),
        params: &[PAGE, Param::optional("tag", Kind::Slug, "Only posts with this tag (its slug).")],
        cache: Api(&[T::ApiPosts.name()]), warm: &[Warm::Path(2)]),
    route!("/api/posts/{slug}/", |r| r.get(api::posts::detail), params: &[],
        cache: Api(&[T::ApiPosts.name()]), warm: &[]),
    route!("/api/personal-info/", |r| r.get(api::site::personal_info), params: &[],
        cache: Api(&[T::ApiPersonalInfo.name()]), warm: &[Warm::Path(2)]),
    route!("/api/social-links/", |r| r.get(api::site::social_links), params: &[],
        cache: Api(&[T::ApiSocialLinks.name()]), warm: &[Warm::Path(2)]),
    route!("/api/ai-tools/", |r| r.get(api::site::ai_tools),
        params: &[
            Param::optional("category", Kind::Text { max_chars: 100 }, "Only tools of this category (its exact name, e.g. `Coding`)."),
            Param::optional("featured", Kind::Flag, "`true` for featured tools only, `false` for the others."),
        ],
        cache: Api(&[T::ApiAiTools.name()]), warm: &[Warm::Path(2)]),
    route!("/api/search/", |r| r.get(api::search::search), params: &[QUERY.required(), PAGE],
        cache: Api(&[T::SearchResults.name()]), warm: &[Warm::Searches(2)]),
    route!("/api/openapi.json", |r| r.get(api::openapi), params: &[], cache: Never, warm: &[]),
    // Operations (admins or CACHE_ADMIN_TOKEN): never stored.
    route!("/api/cache/invalidate/", |r| r.post(api::webhook::invalidate), params: &[], cache: Never, warm: &[]),
    route!("/api/cache/health/", |r| r.get(health::cache_health), params: &[], cache: Never, warm: &[]),
    route!("/api/cache/stats/", |r| r.get(api::cache::stats), params: &[], cache: Never, warm: &[]),
    route!("/api/cache/monitor/", |r| r.get(api::cache::monitor), params: &[], cache: Never, warm: &[]),
    route!("/api/cache/history/", |r| r.get(api::cache::history),
        params: &[Param::optional("range", Kind::OneOf(&["1h", "24h", "7d", "90d"]), "How far back (1h by default).")],
        cache: Never, warm: &[]),
    route!("/api/cache/warm/", |r| r.post(api::cache::warm), params: &[], cache: Never, warm: &[]),
    route!("/api/cache/clear/", |r| r.post(api::cache::clear), params: &[], cache: Never, warm: &[]),
    // The admin: never stored, and an admin's requests bypass the shared cache.
    route!("/admin/", |r| r.get(admin::overview), params: &[], cache: Never, warm: &[]),
    route!("/admin/cache/", |r| r.get(admin::cache_dashboard), params: &[], cache: Never, warm: &[]),
    route!("/admin/login/", |r| r
            // A login form, not the post editor: refused before the CSRF check.
            .app_data(crate::web::error::form_config(admin::auth::MAX_BODY))
            .get(admin::auth::login_form)
            .post(admin::auth::login),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/logout/", |r| r.post(admin::auth::logout), params: &[], cache: Never, warm: &[]),
    route!("/admin/posts/", |r| r.get(admin::posts::list), params: &[], cache: Never, warm: &[]),
    route!("/admin/posts/new/", |r| r.get(admin::posts::new_form).post(admin::posts::create),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/posts/{id}/edit/", |r| r.get(admin::posts::edit_form).post(admin::posts::update),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/posts/{id}/preview/", |r| r.get(admin::posts::preview), params: &[], cache: Never, warm: &[]),
    route!("/admin/posts/{id}/delete/", |r| r.get(admin::posts::delete_form).post(admin::posts::delete),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/images/", |r| r.post(admin::images::upload), params: &[], cache: Never, warm: &[]),
    route!("/admin/personal-info/", |r| r
            .get(admin::site::personal_info_form)
            .post(admin::site::save_personal_info),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/social-links/", |r| r
            .get(admin::site::list::<admin::SocialLinks>)
            .post(admin::site::create::<admin::SocialLinks>),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/social-links/{id}/", |r| r.post(admin::site::update::<admin::SocialLinks>),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/social-links/{id}/delete/", |r| r.post(admin::site::delete::<admin::SocialLinks>),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/ai-tools/", |r| r
            .get(admin::site::list::<admin::AiTools>)
            .post(admin::site::create::<admin::AiTools>),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/ai-tools/{id}/", |r| r.post(admin::site::update::<admin::AiTools>),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/ai-tools/{id}/delete/", |r| r.post(admin::site::delete::<admin::AiTools>),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/messages/", |r| r.get(admin::messages::list), params: &[], cache: Never, warm: &[]),
    route!("/admin/messages/{id}/read/", |r| r.post(admin::messages::mark_read),
        params: &[], cache: Never, warm: &[]),
    // Operations and files.
    route!("/healthz", |r| r.get(health::healthz), params: &[], cache: Never, warm: &[]),
    route!("/readyz", |r| r.get(health::readyz), params: &[], cache: Never, warm: &[]),
    route!("/metrics", |r| r.get(metrics::metrics), params: &[], cache: Never, warm: &[]),
    // Content-addressed and immutable: the edges' and browsers' to keep.
    route!("/static/{file}", |r| r.get(super::static_file), params: &[], cache: Never, warm: &[]),
    route!("/favicon.ico", |r| r.get(super::favicon), params: &[], cache: Never, warm: &[]),
    route!("/media/{name}", |r| r.get(media::media), params: &[], cache: Never, warm: &[]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_one_segment_per_placeholder() {
        assert!(matches_pattern("/blog/{slug}/", "/blog/x/"));
        assert!(!matches_pattern("/blog/{slug}/", "/blog//"));
        assert!(!matches_pattern("/blog/{slug}/", "/blog/tag/x/"));
        assert!(!matches_pattern("/blog/{slug}/", "/blog/x"));
        assert!(matches_pattern("/blog/tag/{slug}/", "/blog/tag/x/"));
        assert!(matches_pattern("/", "/"));
        assert!(!matches_pattern("/", "/x"));
    }

    #[test]
    fn one_route_per_path_and_every_cached_route_reads_get() {
        for (i, route) in TABLE.iter().enumerate() {
            let example = route.path.replace("{slug}", "x").replace("{id}", "1");
            let found = find(&example).map(|r| r.path);
            assert_eq!(
                found,
                Some(route.path),
                "{example} is answered by another route"
            );
            assert!(
                TABLE[..i].iter().all(|r| r.path != route.path),
                "{} declared twice",
                route.path
            );
            let mut names: Vec<&str> = route.params.iter().map(|p| p.name).collect();
            names.dedup();
            assert_eq!(
                names.len(),
                route.params.len(),
                "{}: a parameter twice",
                route.path
            );
            if route.cache == Caching::Never {
                assert!(
                    route.warm.is_empty(),
                    "{}: warmed but never stored",
                    route.path
                );
            }
        }
        assert!(find("/not/a/route/").is_none());
    }

    #[test]
    fn values_out_of_bounds_are_refused_with_a_reason() {
        assert_eq!(Kind::Page.canonical("0002"), Ok("2".into()));
        assert!(Kind::Page.canonical("0").is_err());
        assert!(Kind::Page.canonical("9223372036854775808").is_err());
        assert_eq!(Kind::Flag.canonical("1"), Ok("true".into()));
        assert!(Kind::Flag.canonical("yes").is_err());
        assert!(Kind::Slug.canonical("Not A Slug").is_err());
        assert!(Kind::Slug.canonical(&"a".repeat(MAX_SLUG + 1)).is_err());
        assert!(Kind::Text { max_chars: 3 }.canonical("abcd").is_err());
        assert!(Kind::OneOf(&["1h"])
            .canonical("2h")
            .unwrap_err()
            .contains("1h"));
    }
}
