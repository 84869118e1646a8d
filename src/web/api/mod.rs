//! The public JSON API under `/api/`. Field names and shapes are a contract with API
//! consumers: they live in `dto.rs`, separate from the content models, and the OpenAPI
//! description is generated from the same types so the two cannot drift.

pub mod cache;
pub mod dto;
mod posts;
mod search;
mod site;
pub mod webhook;

use actix_web::{web, HttpRequest, HttpResponse};

use utoipa::OpenApi;

use super::error::ApiError;
use crate::web::canonical::Params;

/// The API routes (the response cache in front of them is configured by
/// `RESPONSE_CACHE_*`, see `web::response_cache`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            // Resources, not bare routes: another method on a known path is a 405.
            .service(web::resource("/posts/").get(posts::list))
            .service(web::resource("/posts/{slug}/").get(posts::detail))
            .service(web::resource("/personal-info/").get(site::personal_info))
            .service(web::resource("/social-links/").get(site::social_links))
            .service(web::resource("/ai-tools/").get(site::ai_tools))
            .service(web::resource("/search/").get(search::search))
            .service(web::resource("/openapi.json").get(openapi))
            .service(web::resource("/cache/invalidate/").post(webhook::invalidate))
            .service(web::resource("/cache/health/").get(crate::web::health::cache_health))
            .service(web::resource("/cache/stats/").get(cache::stats))
            .service(web::resource("/cache/monitor/").get(cache::monitor))
            .service(web::resource("/cache/history/").get(cache::history))
            .service(web::resource("/cache/warm/").post(cache::warm))
            .service(web::resource("/cache/clear/").post(cache::clear))
            .default_service(web::to(not_found)),
    );
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no API route at {}",
        req.path()
    )))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Folio public API",
        description = "Read-only access to the blog's posts (and their full-text search), personal info, social links and AI tools."
    ),
    paths(
        posts::list,
        posts::detail,
        site::personal_info,
        site::social_links,
        site::ai_tools,
        search::search
    ),
    components(schemas(
        dto::PostListItem,
        dto::PostDetailDto,
        dto::PostList,
        dto::AuthorDto,
        dto::TagDto,
        dto::PersonalInfoDto,
        dto::SocialLinkDto,
        dto::SocialLinkList,
        dto::AiToolDto,
        dto::AiToolList,
        search::SearchResult,
        search::SearchResults,
        super::error::ErrorBody,
        super::error::ErrorDetail
    ))
)]
pub struct ApiDoc;

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// Each handler parses the parameters it reads (decoded once, see `web::canonical`) and
/// names the one that is wrong.
pub(crate) fn parse_page(query: &Params) -> Result<i64, ApiError> {
    match query.get("page") {
        None => Ok(1),
        Some(raw) => raw.parse::<i64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            ApiError::bad("page", format!("must be a positive integer, got '{raw}'"))
        }),
    }
}

pub(crate) fn parse_bool(query: &Params, name: &'static str) -> Result<Option<bool>, ApiError> {
    match query.get(name) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(v) => Err(ApiError::bad(
            name,
            format!("must be true or false, got '{v}'"),
        )),
    }
}

/// A slug parameter: lowercase letters, digits and hyphens.
pub(crate) fn parse_slug(query: &Params, name: &'static str) -> Result<Option<String>, ApiError> {
    match query.get(name) {
        None => Ok(None),
        Some(v)
            if !v.is_empty()
                && v.len() <= 100
                && v.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') =>
        {
            Ok(Some(v.to_string()))
        }
        Some(v) => Err(ApiError::bad(
            name,
            format!("must be a slug (lowercase letters, digits, '-'), got '{v}'"),
        )),
    }
}
