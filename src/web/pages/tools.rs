use actix_web::{web, HttpResponse};

use super::{base_context, render};
use crate::web::error::PageError;
use crate::web::state::AppState;

pub async fn index(state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let mut ctx = base_context(&state, "tools", "/tools/").await?;
    ctx.insert("categories", &state.repo.tools_by_category().await?);
    render(&state, "tools/index.html", ctx).await
}
