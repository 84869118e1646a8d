//! The web layer: HTML pages, the JSON API, static assets and the error pages. Handlers
//! read through the repository and render; they never touch the database directly.

pub mod admin;
pub mod analytics;
pub mod api;
pub mod canonical;
pub mod client;
pub mod csrf;
pub mod error;
pub mod fragments;
pub mod health;
pub mod http_cache;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod middleware;
pub mod pages;
pub mod session;
pub mod session_store;
pub mod state;
pub mod templates;
pub mod warm;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use self::error::{ApiError, PageError};
pub use self::state::AppState;
use crate::content::invalidation::response_tags;
use crate::web::http_cache::{PathMatch, ResponseCache, ResponsePolicy};

/// The response cache from configuration: one policy per API prefix, each depending on
/// the models the invalidation rules list for it, and, unless `PAGE_CACHE=false`, one
/// per public page (what a page depends on is traced as it is rendered).
pub fn response_cache(state: &AppState) -> ResponseCache {
    let config = &state.config;
    let edges = crate::edge::EdgeHeaders::new(&config.edge);
    let mut policies: Vec<(PathMatch, ResponsePolicy)> = config
        .response_cache_prefixes
        .iter()
        .map(|prefix| {
            let mut policy =
                ResponsePolicy::new("response", config.response_cache_ttl, response_tags(prefix))
                    .with_max_age(config.api_max_age.as_secs(), state.repo.next_publication());
            policy.stale_if_error = config.stale_if_error;
            let policy = policy.with_edges(edges.clone());
            (PathMatch::Prefix(prefix.clone()), policy)
        })
        .collect();
    if config.page_cache {
        let mut page = ResponsePolicy::new("page", config.page_cache_ttl, &[]);
        page.stale_if_error = config.stale_if_error;
        let page = page.with_edges(edges);
        policies.extend(pages::CACHED.iter().map(|m| (m.clone(), page.clone())));
    }
    ResponseCache::new(
        state.cache.clone(),
        policies,
        session::is_admin,
        state.views.clone(),
        state.collapsing.clone(),
        state.warm_token.as_str().into(),
        state.warming.clone(),
    )
}

/// The route table: each module registers its own routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(api::configure)
        .configure(pages::configure)
        .configure(admin::configure)
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/static/{file}", web::get().to(static_file))
        .route("/favicon.ico", web::get().to(favicon))
        .route("/media/{name}", web::get().to(media::media))
        .default_service(web::to(not_found));
}

/// Unknown paths: a JSON 404 under `/api/`, otherwise the 404 page. A GET for a page path
/// without its trailing slash is redirected to it, as Django's APPEND_SLASH does.
async fn not_found(req: HttpRequest) -> Result<HttpResponse, actix_web::Error> {
    let path = req.path();
    if path == "/api" {
        return Err(ApiError::NotFound(format!("no API route at {path}")).into());
    }
    let last = path.rsplit('/').next().unwrap_or("");
    if req.method() == actix_web::http::Method::GET && !path.ends_with('/') && !last.contains('.') {
        let mut target = format!("{path}/");
        if !req.query_string().is_empty() {
            target = format!("{target}?{}", req.query_string());
        }
        return Ok(HttpResponse::PermanentRedirect()
            .insert_header((header::LOCATION, target))
            .finish());
    }
    Err(PageError::NotFound.into())
}

/// `/favicon.ico`, which browsers and feed readers ask for whatever the page links: the
/// site's icon (SVG, which they accept under this name), rather than a 404 per visit.
/// Not content-addressed, so kept a day, not a year (pages link the hashed URL).
async fn favicon() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(include_str!("../../static/favicon.svg"))
}

async fn static_file(path: web::Path<String>) -> Result<HttpResponse, PageError> {
    let (_, content_type, body) = templates::STATIC_FILES
        .iter()
        .find(|(name, _, _)| *name == path.as_str())
        .ok_or(PageError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .body(*body))
}
