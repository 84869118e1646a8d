//! Server-rendered HTML pages, one module per resource.

mod about;
pub(crate) mod blog;
pub mod contact;
mod feeds;
mod home;
pub(crate) mod search;
mod structured;
mod tools;

use actix_web::{web, HttpResponse};
use tera::Context;

use super::error::PageError;
use crate::web::canonical::Params;
use crate::web::http_cache::PathMatch;
use crate::web::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home::index))
        .route("/blog/", web::get().to(blog::list))
        .route("/blog/tag/{slug}/", web::get().to(blog::tag))
        .route("/blog/{slug}/", web::get().to(blog::detail))
        .route("/about/", web::get().to(about::index))
        .route("/tools/", web::get().to(tools::index))
        .route("/search/", web::get().to(search::index))
        .route("/opensearch.xml", web::get().to(search::opensearch))
        .service(
            web::resource("/contact/")
                .app_data(crate::web::error::form_config(contact::MAX_BODY))
                .route(web::get().to(contact::form))
                .route(web::post().to(contact::submit)),
        )
        .route("/contact/thanks/", web::get().to(contact::thanks))
        .route("/feed.xml", web::get().to(feeds::atom))
        .route("/sitemap.xml", web::get().to(feeds::sitemap));
}

/// The pages cached whole for anonymous readers: every public GET page but the contact
/// form, whose CSRF token is per visitor.
pub static CACHED: std::sync::LazyLock<Vec<PathMatch>> = std::sync::LazyLock::new(|| {
    vec![
        PathMatch::Exact("/".into()),
        PathMatch::Prefix("/blog/".into()),
        PathMatch::Exact("/about/".into()),
        PathMatch::Exact("/tools/".into()),
        PathMatch::Exact("/feed.xml".into()),
        PathMatch::Exact("/sitemap.xml".into()),
        // The search form only: answers to a query are never stored whole (see `search`).
        PathMatch::Exact("/search/".into()),
        PathMatch::Exact("/opensearch.xml".into()),
    ]
});

/// Posts per page on the blog and tag pages.
pub const PER_PAGE: i64 = 20;

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

/// The requested page number (`?page=`, see `web::canonical`); anything but a positive
/// integer is a 404, as an out-of-range page is (there is no such page to show).
pub fn page_number(params: &Params) -> Result<i64, PageError> {
    match params.get("page") {
        None => Ok(1),
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or(PageError::NotFound),
    }
}
