use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::{admin_context, csrf_refused, redirect, render, Admin};
use crate::web::csrf;
use crate::web::error::PageError;
use crate::web::state::AppState;

/// Messages per inbox page.
pub const PER_PAGE: i64 = 25;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PageQuery {
    page: Option<String>,
}

pub async fn list(
    state: web::Data<AppState>,
    admin: Admin,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, PageError> {
    // A made-up page number shows the first page rather than an error.
    let page = query
        .page
        .as_deref()
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|p| (1..=1_000_000).contains(p))
        .unwrap_or(1);
    let messages = state.repo.contact_messages(page, PER_PAGE).await?;
    if messages.is_out_of_range() {
        return Ok(redirect("/admin/messages/"));
    }
    let mut ctx = admin_context(&state, &admin, "messages");
    ctx.insert("num_pages", &messages.num_pages());
    ctx.insert("base_path", "/admin/messages/");
    ctx.insert("page", &messages);
    ctx.insert("messages", &messages.items);
    render(&state, "admin/messages.html", &ctx).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReadForm {
    csrf_token: String,
    /// "true" to mark read, anything else unread.
    read: String,
}

pub async fn mark_read(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<i32>,
    form: web::Form<ReadForm>,
) -> Result<HttpResponse, PageError> {
    if !csrf::verify(&admin.session, &form.csrf_token) {
        return Ok(csrf_refused());
    }
    if !state
        .repo
        .mark_message_read(*id, form.read == "true")
        .await?
    {
        return Err(PageError::NotFound);
    }
    Ok(redirect("/admin/messages/"))
}
