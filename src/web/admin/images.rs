//! Image upload from the post editor: the file's bytes are the request body (sent by
//! `static/editor.js`); the answer is JSON — the image's address and the Markdown that
//! shows it — or a 4xx with a message. The post's text stays in the page, untouched.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::Admin;
use crate::content::images::{self, ImageError};
use crate::content::markdown::media_url;
use crate::web::csrf;
use crate::web::error::PageError;
use crate::web::state::AppState;

#[derive(Deserialize)]
pub struct UploadQuery {
    /// The file's name: its stem becomes the image's alt text.
    #[serde(default)]
    name: String,
}

fn refused(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

pub async fn upload(
    state: web::Data<AppState>,
    admin: Admin,
    req: HttpRequest,
    query: web::Query<UploadQuery>,
    mut body: web::Payload,
) -> Result<HttpResponse, PageError> {
    let token = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !csrf::verify(&admin.session, token) {
        return Ok(refused(
            StatusCode::FORBIDDEN,
            "The form has expired; reload the page (your text is kept in this one).",
        ));
    }
    let max = state.config.max_image_bytes;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return Ok(refused(
                StatusCode::BAD_REQUEST,
                "The upload was interrupted.",
            ));
        };
        if bytes.len() + chunk.len() > max {
            let declared = req
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
                .unwrap_or(bytes.len() + chunk.len());
            let e = ImageError::TooLarge {
                size_kb: declared.div_ceil(1024),
                max_kb: max / 1024,
            };
            return Ok(refused(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string()));
        }
        bytes.extend_from_slice(&chunk);
    }
    // One decode at a time, off the async workers; a second upload waits its turn.
    let Ok(_decoding) = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        state.limits.decoding.acquire(),
    )
    .await
    else {
        return Ok(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is busy with another image; please try again in a moment.",
        ));
    };
    let upload = match web::block(move || images::process(bytes, max)).await {
        Ok(Ok(upload)) => upload,
        Ok(Err(e)) => return Ok(refused(StatusCode::BAD_REQUEST, &e.to_string())),
        Err(_) => {
            return Ok(refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The image could not be processed.",
            ))
        }
    };
    state.repo.save_image(&upload).await?;
    let url = media_url(&upload.hash, upload.format);
    let stem = query
        .name
        .rsplit_once('.')
        .map_or(query.name.as_str(), |(s, _)| s);
    let alt: String = stem
        .chars()
        .map(|c| {
            if "[]()\\".contains(c) || c.is_control() {
                ' '
            } else {
                c
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "url": url,
        "markdown": format!("![{}]({url})", alt.trim()),
        "width": upload.width,
        "height": upload.height,
    })))
}
