use actix_web::{web, HttpResponse};

use super::{base_context, render};
use crate::web::error::PageError;
use crate::web::state::AppState;

/// Everything on the home page is a cached fragment: nothing is loaded here, and a warm
/// page runs no query at all.
pub async fn index(state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let ctx = base_context(&state, "home", "/").await?;
    render(&state, "home/index.html", ctx).await
}
