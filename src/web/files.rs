//! The site's own files: its static assets (content-addressed, kept a year) and the icon.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::web::error::PageError;
use crate::web::templates;

/// `/favicon.ico`, which browsers and feed readers ask for whatever the page links: the
/// site's icon (SVG, which they accept under this name), rather than a 404 per visit.
/// Not content-addressed, so kept a day, not a year (pages link the hashed URL).
pub async fn favicon() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(include_str!("../../static/favicon.svg"))
}

pub async fn static_file(path: web::Path<String>) -> Result<HttpResponse, PageError> {
    let (_, content_type, body) = templates::STATIC_FILES
        .iter()
        .find(|(name, _, _)| *name == path.as_str())
        .ok_or(PageError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .body(*body))
}
