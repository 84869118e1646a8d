use actix_web::{web, HttpResponse};

use super::{base_context, render};
use crate::web::error::PageError;
use crate::web::AppState;

pub async fn index(state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let ctx = base_context(&state, "about").await?;
    render(&state, "about/index.html", ctx).await
}
