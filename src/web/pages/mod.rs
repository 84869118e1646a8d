//! Server-rendered HTML pages, one module per resource.

pub(crate) mod about;
pub(crate) mod blog;
pub mod contact;
pub(crate) mod feeds;
pub(crate) mod home;
pub(crate) mod search;
mod structured;
pub(crate) mod tools;

use actix_web::HttpResponse;
use tera::Context;

use super::error::PageError;
use crate::web::state::AppState;

pub use crate::content::models::PER_PAGE;

/// The site's name and headline, from the owner's details ("Folio" before there are any).
pub fn insert_site_identity(
    ctx: &mut Context,
    info: Option<&crate::content::models::PersonalInfo>,
) {
    ctx.insert("site_name", info.map_or("Folio", |i| i.name.as_str()));
    ctx.insert("site_headline", info.map_or("", |i| i.headline.as_str()));
}

/// What the base layout needs on every page: the owner's name for the header and the
/// visible social links for the footer, plus asset URLs and the current section.
/// `path`: the page's canonical site-relative URL (its `<link rel="canonical">` and
/// OpenGraph URL).
pub async fn base_context(
    state: &AppState,
    section: &str,
    path: &str,
) -> Result<Context, PageError> {
    let mut ctx = Context::new();
    // Both from the query cache; concurrently, so a Redis cache costs one round trip.
    let (info, links) = tokio::join!(state.repo.personal_info(), state.repo.social_links(false));
    let info = info?;
    insert_site_identity(&mut ctx, info.as_ref());
    ctx.insert("canonical_url", &format!("{}{path}", state.config.site_url));
    // The image a shared link shows: the owner's picture if there is one.
    let image = info
        .as_ref()
        .map(|i| absolute_url(&state.config.site_url, &i.avatar_url))
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| format!("{}{}", state.config.site_url, state.assets.icon));
    ctx.insert("share_image", &image);
    ctx.insert("personal_info", &info);
    ctx.insert("social_links", &links?);
    ctx.insert("assets", &state.assets);
    ctx.insert("section", section);
    ctx.insert("debug", &state.config.debug);
    ctx.insert("year", &chrono::Utc::now().format("%Y").to_string());
    Ok(ctx)
}

/// Renders a page through the fragment cache (see `cache::fragments`).
pub async fn render(
    state: &AppState,
    template: &str,
    mut ctx: Context,
) -> Result<HttpResponse, PageError> {
    let started = std::time::Instant::now();
    let html = state
        .fragments
        .render_page(&state.tera, template, &mut ctx)
        .await?;
    crate::timing::add(crate::timing::Phase::Render, started.elapsed());
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

/// `url` as an absolute URL: as it is when it has a scheme, else under the site's URL.
pub fn absolute_url(site_url: &str, url: &str) -> String {
    let url = url.trim();
    match url {
        "" => String::new(),
        _ if url.starts_with("http://") || url.starts_with("https://") => url.to_string(),
        _ => format!("{site_url}/{}", url.trim_start_matches('/')),
    }
}

/// `path` with `?page=n` past the first page: a list page's canonical URL.
pub fn paged(path: &str, page: i64) -> String {
    match page {
        ..=1 => path.to_string(),
        n => format!("{path}?page={n}"),
    }
}
