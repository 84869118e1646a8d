//! The error pages: what the router and extractors answer without a body (404, 405,
//! refused forms, 5xx) rendered as the site's page, or as the API's JSON error under
//! `/api/` (the errors themselves are `web::error`'s).

use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::web;

use crate::web::error::{ErrorBody, ErrorDetail, ErrorDetailText};
use crate::web::state::AppState;

/// Replaces the body of an error response that has none of its own (404, 5xx, and
/// the 400/413 of a refused form or payload) with the error template — or, under
/// `/api/`, with the API's JSON error body. JSON responses are left as they are.
pub fn render_error_page<B: actix_web::body::MessageBody>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    use actix_web::body::BodySize;
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let status = res.status();
    let detail = res
        .response()
        .extensions()
        .get::<ErrorDetailText>()
        .cloned();
    // Extractors answer 400/413 with a plain-text error of their own.
    let refused_body = matches!(
        status,
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE
    ) && (detail.is_some()
        || matches!(res.response().body().size(), BodySize::Sized(_))
            && res
                .headers()
                .get(header::CONTENT_TYPE)
                .is_none_or(|v| v.as_bytes().starts_with(b"text/plain")));
    // A method a route does not take (the router's 405 has no body).
    let wrong_method = status == StatusCode::METHOD_NOT_ALLOWED;
    if is_json
        || !(status == StatusCode::NOT_FOUND
            || status.is_server_error()
            || refused_body
            || wrong_method)
    {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    if res.request().path().starts_with("/api/") {
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => {
                "the request body is larger than this endpoint accepts".to_string()
            }
            StatusCode::METHOD_NOT_ALLOWED => {
                format!("{} is not accepted at this path", res.request().method())
            }
            _ => detail
                .map(|d| d.0)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase()),
        };
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            s if s.is_server_error() => "internal",
            _ => "bad_request",
        };
        let body = serde_json::to_string(&ErrorBody {
            error: ErrorDetail {
                status: status.as_u16(),
                code,
                parameter: None,
                message,
            },
        })
        .unwrap_or_default();
        let (req, mut res) = res.into_parts();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(ErrorHandlerResponse::Response(
            ServiceResponse::new(req, res.set_body(body))
                .map_into_boxed_body()
                .map_into_right_body(),
        ));
    }
    let template = match status {
        StatusCode::NOT_FOUND => "errors/404.html",
        StatusCode::BAD_REQUEST
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::METHOD_NOT_ALLOWED => "errors/refused.html",
        _ => "errors/500.html",
    };
    let html = res
        .request()
        .app_data::<web::Data<AppState>>()
        .and_then(|state| {
            let mut ctx = tera::Context::new();
            ctx.insert("status", &status.as_u16());
            ctx.insert("path", res.request().path());
            ctx.insert("detail", &detail.as_ref().map(|d| d.0.as_str()));
            ctx.insert("max_post_kb", &(state.config.max_post_bytes / 1024));
            ctx.insert("assets", &state.assets);
            crate::web::templates::render(&state.tera, template, &ctx)
                .map_err(|e| tracing::error!(error = ?e, "error page failed"))
                .ok()
        })
        .unwrap_or_else(|| format!("<h1>{}</h1>", status));
    let (req, mut res) = res.into_parts();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    let res = res.set_body(html);
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, res)
            .map_into_boxed_body()
            .map_into_right_body(),
    ))
}
