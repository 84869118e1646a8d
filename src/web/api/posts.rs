use actix_web::{web, HttpResponse};

use super::dto::{PostDetailDto, PostList, PostListItem};
use crate::content::models::PER_PAGE;
use crate::web::canonical::Params;
use crate::web::error::{ApiError, ErrorBody};
use crate::web::state::AppState;

/// Published posts, newest first, 20 a page (parameters: `web::routes`).
#[utoipa::path(get, path = "/api/posts/",
    responses((status = 200, body = PostList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(state: web::Data<AppState>, query: Params) -> Result<HttpResponse, ApiError> {
    let page_number = query.page();
    let tag = query.get("tag");
    let tag_id = match tag {
        Some(slug) => match state.repo.tag_by_slug(slug).await? {
            Some(tag) => Some(tag.id),
            // As its page: a tag without a visible post is unknown (an error is never
            // stored, so clients cannot make entries up).
            None => return Err(ApiError::NotFound(format!("no tag '{slug}'"))),
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
