use actix_web::{web, HttpResponse};
use utoipa::IntoParams;

use super::dto::{PostDetailDto, PostList, PostListItem};
use super::{parse_page, parse_slug};
use crate::web::canonical::Params;
use crate::web::error::{ApiError, ErrorBody};
use crate::web::http_cache::DoNotStore;
use crate::web::pages::PER_PAGE;
use crate::web::AppState;

/// Query parameters of `GET /api/posts/` (documentation; parsing is in `list`).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PostListParams {
    /// Page number, from 1; 20 posts a page.
    page: Option<i64>,
    /// Only posts with this tag slug.
    tag: Option<String>,
}

/// Published posts, newest first.
#[utoipa::path(get, path = "/api/posts/", params(PostListParams),
    responses((status = 200, body = PostList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(state: web::Data<AppState>, query: Params) -> Result<HttpResponse, ApiError> {
    let page_number = parse_page(&query)?;
    let tag = parse_slug(&query, "tag")?;
    let tag_id = match &tag {
        Some(slug) => match state.repo.tag_by_slug(slug).await? {
            Some(tag) => Some(tag.id),
            // An unknown tag has no posts: an empty list, as any other filter.
            // Not stored: clients could invent tags without bound.
            None => {
                let mut res = HttpResponse::Ok().json(PostList {
                    count: 0,
                    next: None,
                    previous: None,
                    results: vec![],
                });
                res.extensions_mut().insert(DoNotStore);
                return Ok(res);
            }
        },
        None => None,
    };
    let page = state
        .repo
        .published_posts(page_number, PER_PAGE, tag_id)
        .await?;
    if page.is_out_of_range() {
        return Err(ApiError::NotFound(format!(
            "page {} does not exist (the last page is {})",
            page.page,
            page.num_pages()
        )));
    }
    let link = |n: i64| {
        // From SITE_URL, never the Host header: the response is cached and shared, and
        // a forged Host must not end up in everyone's links (cache poisoning).
        let mut url = format!("{}/api/posts/?page={n}", state.config.site_url);
        if let Some(tag) = &tag {
            url.push_str(&format!("&tag={tag}"));
        }
        url
    };
    let mut res = HttpResponse::Ok();
    Ok(res.json(PostList {
        count: page.total,
        next: page.has_next().then(|| link(page.page + 1)),
        previous: page.has_previous().then(|| link(page.page - 1)),
        results: page.items.into_iter().map(PostListItem::from).collect(),
    }))
}

/// One published post with its body.
#[utoipa::path(get, path = "/api/posts/{slug}/", params(("slug" = String, Path, description = "The post's slug")),
    responses((status = 200, body = PostDetailDto), (status = 404, body = ErrorBody)))]
pub async fn detail(
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let post = state
        .repo
        .post_by_slug(&slug, false)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no published post with slug '{slug}'")))?;
    Ok(HttpResponse::Ok().json(PostDetailDto::from(post)))
}
