use actix_web::{web, HttpResponse};

use super::dto::{AiToolDto, AiToolList, PersonalInfoDto, SocialLinkDto, SocialLinkList};
use crate::content::models::ToolFilter;
use crate::web::canonical::Params;
use crate::web::error::{ApiError, ErrorBody};
use crate::web::http_cache::DoNotStore;
use crate::web::state::AppState;

/// The site owner's details.
#[utoipa::path(get, path = "/api/personal-info/",
    responses((status = 200, body = PersonalInfoDto), (status = 404, body = ErrorBody)))]
pub async fn personal_info(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let info = state
        .repo
        .personal_info()
        .await?
        .ok_or_else(|| ApiError::NotFound("no personal info has been set up".into()))?;
    Ok(HttpResponse::Ok().json(PersonalInfoDto::from(info)))
}

/// Visible social links in display order.
#[utoipa::path(get, path = "/api/social-links/", responses((status = 200, body = SocialLinkList)))]
pub async fn social_links(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let links = state.repo.social_links(false).await?;
    let mut res = HttpResponse::Ok();
    let links: Vec<SocialLinkDto> = links.into_iter().map(Into::into).collect();
    Ok(res.json(SocialLinkList {
        count: links.len(),
        results: links,
    }))
}

/// AI tools by category and display order.
#[utoipa::path(get, path = "/api/ai-tools/",
    responses((status = 200, body = AiToolList), (status = 400, body = ErrorBody)))]
pub async fn ai_tools(state: web::Data<AppState>, query: Params) -> Result<HttpResponse, ApiError> {
    let filter = ToolFilter {
        category: query.get("category").map(str::to_string),
        featured: query.flag("featured"),
    };
    let tools = state.repo.ai_tools(&filter).await?;
    let mut res = HttpResponse::Ok();
    let unknown_category = tools.is_empty() && filter.category.is_some();
    let tools: Vec<AiToolDto> = tools.into_iter().map(Into::into).collect();
    let mut res = res.json(AiToolList {
        count: tools.len(),
        results: tools,
    });
    if unknown_category {
        // Not stored: clients could invent categories without bound.
        res.extensions_mut().insert(DoNotStore);
    }
    Ok(res)
}
