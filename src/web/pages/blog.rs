use actix_web::http::header::{HeaderName, HeaderValue, CACHE_CONTROL};
use actix_web::{web, HttpResponse};

use super::{base_context, paged, render, PER_PAGE};
use crate::content::models::PostDetail;
use crate::web::canonical::Params;
use crate::web::error::PageError;
use crate::web::http_cache::ViewOf;
use crate::web::state::AppState;

pub async fn list(state: web::Data<AppState>, params: Params) -> Result<HttpResponse, PageError> {
    let number = params.page();
    let page = state.repo.published_posts(number, PER_PAGE, None).await?;
    if page.is_out_of_range() {
        return Err(PageError::NotFound);
    }
    let mut ctx = base_context(&state, "blog", &paged("/blog/", number)).await?;
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
    let number = params.page();
    let page = state
        .repo
        .published_posts(number, PER_PAGE, Some(tag.id))
        .await?;
    if page.is_out_of_range() {
        return Err(PageError::NotFound);
    }
    let path = paged(&format!("/blog/tag/{}/", tag.slug), number);
    let mut ctx = base_context(&state, "blog", &path).await?;
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
    let mut res = post_page(&state, &post, false).await?;
    res.extensions_mut().insert(ViewOf(post.summary.id));
    Ok(res)
}

/// A post's page as readers see it. `preview`: an admin's look at a draft or scheduled
/// post — its body rendered here, not through the post's cached fragment (which only
/// holds what readers may see), marked `noindex`, and stored by no cache.
pub async fn post_page(
    state: &AppState,
    post: &PostDetail,
    preview: bool,
) -> Result<HttpResponse, PageError> {
    let path = format!("/blog/{}/", post.summary.slug);
    let mut ctx = base_context(state, "blog", &path).await?;
    ctx.insert("view_count", &post.summary.view_count);
    // Published: the summary (the body is a cached fragment); a preview: all of it.
    match preview {
        true => ctx.insert("post", post),
        false => ctx.insert("post", &post.summary),
    }
    ctx.insert("preview", &preview);
    // Its cover is what a shared link shows, if it has one.
    if let Some(cover) = &post.summary.cover {
        ctx.insert(
            "share_image",
            &format!("{}{}", state.config.site_url, cover.url),
        );
    }
    let image = ctx
        .get("share_image")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let url = format!("{}{path}", state.config.site_url);
    let ld = super::structured::blog_posting(&post.summary, &url, &image, &state.config.site_url);
    ctx.insert("json_ld", &ld);
    let mut res = render(state, "blog/detail.html", ctx).await?;
    if preview {
        let headers = res.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            HeaderName::from_static("x-robots-tag"),
            HeaderValue::from_static("noindex"),
        );
    }
    Ok(res)
}
