//! The public JSON API under `/api/`. Field names and shapes are a contract with API
//! consumers: they live in `dto.rs`, separate from the content models, and the OpenAPI
//! description is generated from the same types so the two cannot drift.

pub mod cache;
pub mod dto;
pub(crate) mod posts;
pub mod public_stats;
pub mod replay;
pub(crate) mod search;
pub(crate) mod site;
pub mod webhook;

use utoipa::OpenApi;

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
