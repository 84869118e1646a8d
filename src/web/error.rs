//! The web layer's two error types: `PageError` for HTML pages (rendered as the 404/500
//! templates by `render_error_page`) and `ApiError` for the JSON API (a JSON body that
//! names the bad parameter). Database errors become 500s in one `From` impl each.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::DbError;
use crate::web::fragments::FragmentError;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("page not found")]
    NotFound,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("template error: {0:?}")]
    Template(#[from] tera::Error),
    #[error(transparent)]
    Fragment(#[from] crate::web::fragments::FragmentError),
    #[error("session: {0}")]
    Session(String),
    /// A form body larger than its limit, refused before it was read.
    #[error("the form is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// A form body that is not a form (wrong content type, bad encoding).
    #[error("{0}")]
    BadForm(String),
    #[error("{0}")]
    Internal(String),
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::NotFound => StatusCode::NOT_FOUND,
            PageError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            PageError::BadForm(_) => StatusCode::BAD_REQUEST,
            PageError::Db(e) | PageError::Fragment(FragmentError::Load { source: e, .. })
                if e.is_unavailable() =>
            {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    /// An empty body: `render_error_page` fills in the template, where it can reach the
    /// app state (the limit of a refused form travels as an extension).
    fn error_response(&self) -> HttpResponse {
        if self.status_code().is_server_error() {
            tracing::error!(error = %self, "page failed");
        }
        let mut res = HttpResponse::build(self.status_code()).finish();
        res.extensions_mut()
            .insert(ErrorDetailText(self.to_string()));
        res
    }
}

/// What went wrong, for the error page of a 400 or 413.
#[derive(Debug, Clone)]
pub(crate) struct ErrorDetailText(pub(crate) String);

/// The form extractor's settings: a body limit, and errors as pages (a styled 413 that
/// says what the limit is), never actix's plain-text answer.
pub fn form_config(limit: usize) -> web::FormConfig {
    web::FormConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            let page = match err {
                actix_web::error::UrlencodedError::Overflow { .. } => PageError::TooLarge { limit },
                other => PageError::BadForm(format!("The form could not be read: {other}.")),
            };
            page.into()
        })
}

/// The JSON error body of every API error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status code, repeated for clients that only see the body.
    pub status: u16,
    /// A stable machine-readable code: `bad_parameter`, `not_found` or `internal`.
    pub code: &'static str,
    /// The query parameter that was rejected, for `bad_parameter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<&'static str>,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid parameter '{parameter}': {message}")]
    BadParameter {
        parameter: &'static str,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A 429 with `Retry-After: 1`.
    #[error("{0}")]
    TooMany(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl ApiError {
    pub fn bad(parameter: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadParameter {
            parameter,
            message: message.into(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Db(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (code, parameter, message) = match self {
            ApiError::BadParameter { parameter, message } => {
                ("bad_parameter", Some(*parameter), message.clone())
            }
            ApiError::NotFound(message) => ("not_found", None, message.clone()),
            ApiError::Unavailable(message) => ("unavailable", None, message.clone()),
            ApiError::Unauthorized(message) => ("unauthorized", None, message.clone()),
            ApiError::Forbidden(message) => ("forbidden", None, message.clone()),
            ApiError::TooMany(message) => ("too_many_requests", None, message.clone()),
            ApiError::Db(e) if e.is_unavailable() => {
                tracing::error!(error = %e, "api request failed");
                (
                    "unavailable",
                    None,
                    "the database is unavailable".to_string(),
                )
            }
            ApiError::Db(e) => {
                tracing::error!(error = %e, "api request failed");
                ("internal", None, "internal server error".to_string())
            }
        };
        let mut res = HttpResponse::build(status);
        if status == StatusCode::TOO_MANY_REQUESTS {
            res.insert_header((actix_web::http::header::RETRY_AFTER, "1"));
        }
        res.json(ErrorBody {
            error: ErrorDetail {
                status: status.as_u16(),
                code,
                parameter,
                message,
            },
        })
    }
}
