use actix_web::{web, HttpResponse};

use super::{base_context, page_number, render, PER_PAGE};
use crate::web::canonical::Params;
use crate::web::error::PageError;
use crate::web::http_cache::ViewOf;
use crate::web::AppState;

pub async fn list(state: web::Data<AppState>, params: Params) -> Result<HttpResponse, PageError> {
    let page = state
        .repo
        .published_posts(page_number(&params)?, PER_PAGE, None)
        .await?;
    if page.is_out_of_range() {
        return Err(PageError::NotFound);
    }
    let mut ctx = base_context(&state, "blog").await?;
    ctx.insert("title", "Blog");
    ctx.insert("tag_slug", "");
    ctx.insert("base_path", "/blog/");
    ctx.insert("num_pages", &page.num_pages());
    ctx.insert("page", &page);
    render(&state, "blog/list.html", ctx).await
}

pub async fn tag(
    state: web::Data<AppState>,
    slug: web::Path<String>,
    params: Params,
) -> Result<HttpResponse, PageError> {
    let tag = state
        .repo
        .tag_by_slug(&slug)
        .await?
        .ok_or(PageError::NotFound)?;
    let page = state
        .repo
        .published_posts(page_number(&params)?, PER_PAGE, Some(tag.id))
        .await?;
    if page.is_out_of_range() {
        return Err(PageError::NotFound);
    }
    let mut ctx = base_context(&state, "blog").await?;
    ctx.insert("title", &format!("Posts tagged “{}”", tag.name));
    ctx.insert("tag", &tag);
    ctx.insert("tag_slug", &tag.slug);
    ctx.insert("base_path", &format!("/blog/tag/{}/", tag.slug));
    ctx.insert("num_pages", &page.num_pages());
    ctx.insert("page", &page);
    render(&state, "blog/list.html", ctx).await
}

/// A published post. Its views are counted by the response cache (`ViewOf`), also when
/// the page comes from the cache, and written in batches (`content::views`).
pub async fn detail(
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let post = state
        .repo
        .post_by_slug(&slug, false)
        .await?
        .ok_or(PageError::NotFound)?;
    let mut ctx = base_context(&state, "blog").await?;
    // The body is a cached fragment; the page around it needs only the summary.
    ctx.insert("view_count", &post.summary.view_count);
    ctx.insert("post", &post.summary);
    let mut res = render(&state, "blog/detail.html", ctx).await?;
    res.extensions_mut().insert(ViewOf(post.summary.id));
    Ok(res)
}
