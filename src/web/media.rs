//! `/media/<hash>.<ext>` and `/media/<hash>-<width>w.<ext>`: uploaded images and their
//! resized copies. Named by the hash of the bytes, so browsers and edges keep them for
//! a year without asking again (`immutable`); a new image is a new URL.

use actix_web::http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::content::images::{Format, VARIANT_WIDTHS};
use crate::content::markdown::parse_media_url;
use crate::web::error::PageError;
use crate::web::state::AppState;

const FOREVER: &str = "public, max-age=31536000, immutable";

/// `<hash>.<ext>` or `<hash>-<width>w.<ext>` → (hash, format, width of a copy).
fn parse_name(name: &str) -> Option<(String, Format, Option<u32>)> {
    let (stem, ext) = name.rsplit_once('.')?;
    let (hash, width) = match stem.split_once('-') {
        None => (stem, None),
        Some((hash, w)) => {
            let width: u32 = w.strip_suffix('w')?.parse().ok()?;
            VARIANT_WIDTHS.contains(&width).then_some(())?;
            (hash, Some(width))
        }
    };
    if hash.len() != 32 {
        return None;
    }
    let (hash, format) = parse_media_url(&format!("/media/{hash}.{ext}"))?;
    // Exactly one spelling per image (no `.JPG`, no `.jpeg`).
    (format.ext() == ext).then_some((hash, format, width))
}

pub async fn media(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let (hash, format, width) = parse_name(&name).ok_or(PageError::NotFound)?;
    let found = state
        .repo
        .media(&hash, format, width)
        .await?
        .ok_or(PageError::NotFound)?;
    let etag = format!("\"{name}\"");
    let matches = req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = match matches {
        true => HttpResponse::NotModified(),
        false => HttpResponse::Ok(),
    };
    res.insert_header((CACHE_CONTROL, FOREVER))
        .insert_header((ETAG, etag));
    Ok(match matches {
        true => res.finish(),
        false => res.content_type(found.content_type).body(found.bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_per_image_and_copy() {
        let h = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            parse_name(&format!("{h}.jpg")),
            Some((h.into(), Format::Jpeg, None))
        );
        assert_eq!(
            parse_name(&format!("{h}-480w.png")),
            Some((h.into(), Format::Png, Some(480)))
        );
        for bad in [
            format!("{h}.JPG"),
            format!("{h}.jpeg"),
            format!("{h}-481w.png"),
            format!("{h}-480.png"),
            format!("{}.png", &h[1..]),
            format!("{h}.png.png"),
            "../etc/passwd".to_string(),
        ] {
            assert_eq!(parse_name(&bad), None, "{bad}");
        }
    }
}
