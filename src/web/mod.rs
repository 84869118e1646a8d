//! The web layer: HTML pages, the JSON API, static assets and the error pages. Handlers
//! read through the repository and render; they never touch the database directly.

pub mod admin;
pub mod analytics;
pub mod api;
pub mod app;
pub mod canonical;
pub mod client;
pub mod csrf;
pub mod demand;
pub mod error;
pub mod error_page;
pub mod files;
pub mod fragments;
pub mod health;
pub mod http_cache;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod middleware;
pub mod pages;
pub mod routes;
pub mod scrape;
pub mod session;
pub mod session_store;
pub mod state;
pub mod templates;
pub mod warm;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use self::error::{ApiError, PageError};
pub use self::state::AppState;
use crate::web::http_cache::{PathMatch, ResponseCache, ResponsePolicy};
use crate::web::routes::{Caching, Edge};

/// The response cache's policies, one per route of the table that declares one: API
/// routes (under a `RESPONSE_CACHE_PREFIXES` prefix) depending on the tags they list,
/// pages (unless `PAGE_CACHE=false`) on what is traced as they render. No other path is
/// ever stored.
pub fn cache_policies(state: &AppState) -> Vec<(PathMatch, ResponsePolicy)> {
    let config = &state.config;
    let edges = crate::edge::EdgeHeaders::new(&config.edge);
    routes::TABLE
        .iter()
        .filter_map(|route| {
            let mut policy = match route.cache {
                Caching::Never => return None,
                Caching::Page if !config.page_cache => return None,
                Caching::Page => ResponsePolicy::new("page", config.page_cache_ttl, &[]),
                Caching::Api(tags) => {
                    let configured = config
                        .response_cache_prefixes
                        .iter()
                        .any(|prefix| route.path.starts_with(prefix.as_str()));
                    if !configured {
                        return None;
                    }
                    ResponsePolicy::new("response", config.response_cache_ttl, tags)
                        .with_max_age(config.api_max_age.as_secs(), state.repo.next_publication())
                }
            };
            policy.stale_if_error = config.stale_if_error;
            let edges = match route.edge {
                Edge::Site => edges.clone(),
                Edge::AtMost(secs) => edges.as_ref().map(|e| e.at_most(secs)),
            };
            Some((PathMatch::Pattern(route.path), policy.with_edges(edges)))
        })
        .collect()
}

/// The response cache from configuration (see `cache_policies`).
pub fn response_cache(state: &AppState) -> ResponseCache {
    let policies = cache_policies(state);
    ResponseCache::new(
        state.cache.clone(),
        policies,
        session::is_admin,
        {
            let views = state.views.clone();
            std::sync::Arc::new(move |post| views.record(post))
        },
        state.collapsing.clone(),
        state.warm_token.as_str().into(),
        state.warming.clone(),
    )
    .with_demand(state.demand.clone())
    .with_path_edges(
        state
            .repo
            .edges()
            .map(|edges| crate::web::http_cache::PathEdges {
                edges: edges.clone(),
                repo: state.repo.clone(),
            }),
    )
}

/// The routes: the table's (`routes`), and the answer to any other path.
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
    cfg.default_service(web::to(not_found));
}

/// Unknown paths: a JSON 404 under `/api/`, otherwise the 404 page. A GET for a page path
/// without its trailing slash is redirected to it, as Django's APPEND_SLASH does.
async fn not_found(req: HttpRequest) -> Result<HttpResponse, actix_web::Error> {
    let path = req.path();
    if path == "/api" || path.starts_with("/api/") {
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
