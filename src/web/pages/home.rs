use actix_web::{web, HttpResponse};

use super::{base_context, render};
use crate::content::models::ToolFilter;
use crate::startup::AppState;
use crate::web::error::PageError;

pub const RECENT_POSTS: i64 = 12;
pub const POPULAR_POSTS: i64 = 8;

pub async fn index(state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let mut ctx = base_context(&state, "home").await?;
    let repo = &state.repo;
    ctx.insert("recent_posts", &repo.recent_posts(RECENT_POSTS).await?);
    ctx.insert("popular_posts", &repo.popular_posts(POPULAR_POSTS).await?);
    ctx.insert(
        "featured_tools",
        &repo
            .ai_tools(&ToolFilter {
                featured: Some(true),
                category: None,
            })
            .await?,
    );
    ctx.insert("tag_cloud", &repo.tag_cloud().await?);
    render(&state, "home/index.html", &ctx)
}
