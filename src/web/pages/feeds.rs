//! The Atom feed and the sitemap: absolute URLs from `SITE_URL`.

use actix_web::{web, HttpResponse};
use tera::Context;

use crate::web::error::PageError;
use crate::web::state::AppState;

const FEED_ENTRIES: i64 = 20;

pub async fn atom(state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let posts = state.repo.latest_posts_with_body(FEED_ENTRIES).await?;
    let info = state.repo.personal_info().await?;
    let mut ctx = Context::new();
    ctx.insert("site_url", &state.config.site_url);
    super::insert_site_identity(&mut ctx, info.as_ref());
    let updated = posts
        .iter()
        .map(|p| p.summary.updated_at)
        .max()
        .unwrap_or_default();
    ctx.insert("updated", &updated);
    ctx.insert("posts", &posts);
    let xml = crate::web::templates::render(&state.tera, "feeds/atom.xml", &ctx)?;
    Ok(HttpResponse::Ok()
        .content_type("application/atom+xml; charset=utf-8")
        .body(xml))
}

pub async fn sitemap(state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let (posts, tags) = state.repo.sitemap().await?;
    let mut ctx = Context::new();
    ctx.insert("site_url", &state.config.site_url);
    ctx.insert("posts", &posts);
    ctx.insert("tags", &tags);
    ctx.insert(
        "static_pages",
        &["/", "/blog/", "/about/", "/tools/", "/contact/"],
    );
    let xml = crate::web::templates::render(&state.tera, "feeds/sitemap.xml", &ctx)?;
    Ok(HttpResponse::Ok()
        .content_type("application/xml; charset=utf-8")
        .body(xml))
}
