//! The route table: every route of the site, declared once with what it serves, the
//! query parameters it reads (with their type and bounds), how its answers are cached,
//! how long edges keep them and when warming visits it.
//!
//! Everything else is derived from it: the actix routes (`configure`), the canonical
//! request and the key (`web::canonical` is given `params_of`), the response-cache
//! policies (`web::cache_policies` reads `cache`), the tags an API answer depends on,
//! the warm plan (`web::warm::plan` reads `warm`), the OpenAPI parameter schemas
//! (`OPENAPI`) and the route label of `/metrics` (`pattern_of`). A route must say how
//! it is cached — `cache` has no default — and only the routes here are cached at all: a
//! handler registered anywhere else is never stored.

use actix_web::{web, Resource};

use crate::content::invalidation::CacheTag;
pub use crate::web::canonical::{Kind, Param, MAX_SLUG};
pub use crate::web::http_cache::matches_pattern;
use crate::web::{admin, api, files, health, media, pages, scrape};

/// How a route's answers are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// Stored whole for anonymous readers; what it depends on is traced as it renders.
    Page,
    /// Stored whole for every client (admins bypass it), depending on these tags besides
    /// the traced ones; clients may keep it `API_MAX_AGE` (never past the next scheduled
    /// publication).
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
}

/// The route `path` is answered by, if any.
pub fn find(path: &str) -> Option<&'static Route> {
    TABLE.iter().find(|r| r.matches(path))
}

/// The parameters the route at `path` reads (none for a path outside the table): what
/// `web::canonical::check` is given.
pub fn params_of(path: &str) -> &'static [Param] {
    find(path).map_or(&[], |r| r.params)
}

/// The route's pattern, as `/metrics` labels it (`web::metrics::record_requests`).
pub fn pattern_of(path: &str) -> Option<&'static str> {
    find(path).map(|r| r.path)
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
    route!("/api/openapi.json", |r| r.get(openapi), params: &[], cache: Never, warm: &[]),
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
            .get(admin::site::list::<admin::site::SocialLinks>)
            .post(admin::site::create::<admin::site::SocialLinks>),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/social-links/{id}/", |r| r.post(admin::site::update::<admin::site::SocialLinks>),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/social-links/{id}/delete/", |r| r.post(admin::site::delete::<admin::site::SocialLinks>),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/ai-tools/", |r| r
            .get(admin::site::list::<admin::site::AiTools>)
            .post(admin::site::create::<admin::site::AiTools>),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/ai-tools/{id}/", |r| r.post(admin::site::update::<admin::site::AiTools>),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/ai-tools/{id}/delete/", |r| r.post(admin::site::delete::<admin::site::AiTools>),
        params: &[], cache: Never, warm: &[]),
    route!("/admin/messages/", |r| r.get(admin::messages::list), params: &[], cache: Never, warm: &[]),
    route!("/admin/messages/{id}/read/", |r| r.post(admin::messages::mark_read),
        params: &[], cache: Never, warm: &[]),
    // Operations and files.
    route!("/healthz", |r| r.get(health::healthz), params: &[], cache: Never, warm: &[]),
    route!("/readyz", |r| r.get(health::readyz), params: &[], cache: Never, warm: &[]),
    route!("/metrics", |r| r.get(scrape::metrics), params: &[], cache: Never, warm: &[]),
    // Content-addressed and immutable: the edges' and browsers' to keep.
    route!("/static/{file}", |r| r.get(files::static_file), params: &[], cache: Never, warm: &[]),
    route!("/favicon.ico", |r| r.get(files::favicon), params: &[], cache: Never, warm: &[]),
    route!("/media/{name}", |r| r.get(media::media), params: &[], cache: Never, warm: &[]),
];

/// `GET /api/openapi.json`.
pub(crate) async fn openapi() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(&*OPENAPI)
}

/// The description: the handlers' paths and schemas, with each route's query parameters
/// and their bounds from the route table (`web::routes`), where the request is checked.
pub static OPENAPI: std::sync::LazyLock<utoipa::openapi::OpenApi> =
    std::sync::LazyLock::new(|| {
        let mut doc = <api::ApiDoc as utoipa::OpenApi>::openapi();
        for route in TABLE {
            let Some(operation) = doc
                .paths
                .paths
                .get_mut(route.path)
                .and_then(|item| item.get.as_mut())
            else {
                continue;
            };
            let parameters = operation.parameters.get_or_insert_with(Vec::new);
            parameters.extend(route.params.iter().map(query_parameter));
        }
        doc
    });

fn query_parameter(param: &Param) -> utoipa::openapi::path::Parameter {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{ObjectBuilder, Required, Type};
    let schema = match param.kind {
        Kind::Page => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int64,
            )))
            .minimum(Some(1)),
        Kind::Slug => ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_SLUG))
            .pattern(Some("^[a-z0-9-]+$")),
        Kind::Flag => ObjectBuilder::new().schema_type(Type::Boolean),
        Kind::Text { max_chars } => ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(max_chars)),
        Kind::Search => ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(crate::content::search::MAX_QUERY_CHARS)),
        Kind::OneOf(values) => ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values.iter().copied())),
    };
    let mut doc = param.doc.to_string();
    if let Some(needed) = param.needs {
        doc.push_str(&format!(" Read only with `{needed}`."));
    }
    ParameterBuilder::new()
        .name(param.name)
        .parameter_in(ParameterIn::Query)
        .required(match param.required {
            true => Required::True,
            false => Required::False,
        })
        .description(Some(doc))
        .schema(Some(schema.build()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::canonical::{Params, Refusal};

    #[test]
    fn names_and_values_are_decoded_once_and_unread_parameters_dropped() {
        let p = Params::parse(
            params_of("/api/posts/"),
            "/api/posts/",
            "t%61g=ai%2Dtools&utm_source=x&P%41GE=3",
        )
        .unwrap();
        assert_eq!(p.get("tag"), Some("ai-tools"));
        assert_eq!(p.get("page"), None, "names are case-sensitive");
        assert_eq!(p.query_string(), "tag=ai-tools");
        let p = Params::parse(params_of("/api/posts/"), "/api/posts/", "tag=x&page=2").unwrap();
        let q = Params::parse(params_of("/api/posts/"), "/api/posts/", "page=2&tag=x").unwrap();
        assert_eq!(p, q);
        assert_eq!(p.query_string(), "page=2&tag=x");
        assert_eq!(
            Params::parse(params_of("/"), "/", "page=2").unwrap(),
            Params::default()
        );
        assert_eq!(
            Params::parse(params_of("/blog/x/"), "/blog/x/", "page=2").unwrap(),
            Params::default()
        );
    }

    #[test]
    fn duplicates_are_refused_and_respellings_redirected() {
        assert_eq!(
            Params::parse(params_of("/api/posts/"), "/api/posts/", "tag=a&t%61g=b"),
            Err(Refusal::Duplicate("tag"))
        );
        assert_eq!(
            Params::parse(params_of("/blog/"), "/blog/", "page=0002"),
            Err(Refusal::Redirect("/blog/?page=2".into()))
        );
        assert_eq!(
            Params::parse(
                params_of("/blog/tag/rust/"),
                "/blog/tag/rust/",
                "page=%2B2&x=1"
            ),
            Err(Refusal::Redirect("/blog/tag/rust/?page=2".into()))
        );
        assert_eq!(
            Params::parse(params_of("/api/ai-tools/"), "/api/ai-tools/", "featured=1"),
            Err(Refusal::Redirect("/api/ai-tools/?featured=true".into()))
        );
        // Out of bounds: refused, naming the parameter.
        assert!(matches!(
            Params::parse(params_of("/blog/"), "/blog/", "page=0"),
            Err(Refusal::Invalid("page", _))
        ));
        assert!(matches!(
            Params::parse(
                params_of("/api/ai-tools/"),
                "/api/ai-tools/",
                "featured=yes"
            ),
            Err(Refusal::Invalid("featured", _))
        ));
        assert_eq!(
            Params::parse(params_of("/blog/"), "/blog/", "page=").unwrap(),
            Params::default()
        );
    }

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
