//! The web layer: HTML pages, the JSON API, static assets and the error pages. Handlers
//! read through the repository and render; they never touch the database directly.

pub mod admin;
pub mod api;
pub mod csrf;
pub mod error;
pub mod fragments;
pub mod health;
pub mod http_cache;
pub mod middleware;
pub mod pages;
pub mod session;
pub mod state;
pub mod templates;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use self::error::{ApiError, PageError};
pub use self::state::AppState;
use crate::content::invalidation::response_tags;
use crate::web::http_cache::{ResponseCache, ResponsePolicy};

/// The API response cache from configuration: one policy per configured prefix, each
/// depending on the models the invalidation rules list for it.
fn response_cache(state: &AppState) -> ResponseCache {
    let config = &state.config;
    let policies = config
        .response_cache_prefixes
        .iter()
        .map(|prefix| {
            let mut policy = ResponsePolicy::new(config.response_cache_ttl, response_tags(prefix));
            policy.client_max_age = config.api_max_age;
            policy.params = Some(api::QUERY_PARAMS);
            (prefix.clone(), policy)
        })
        .collect();
    ResponseCache::new(state.cache.clone(), policies, session::is_admin)
}

/// The route table: each module registers its own routes.
pub fn configure(cfg: &mut web::ServiceConfig, state: &AppState) {
    cfg.configure(|cfg| api::configure(cfg, response_cache(state)))
        .configure(pages::configure)
        .configure(admin::configure)
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/static/{file}", web::get().to(static_file))
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
