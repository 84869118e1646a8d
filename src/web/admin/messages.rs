use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::{admin_context, csrf_refused, redirect, render, Admin};
use crate::web::csrf;
use crate::web::error::PageError;
use crate::web::AppState;

pub async fn list(state: web::Data<AppState>, admin: Admin) -> Result<HttpResponse, PageError> {
    let mut ctx = admin_context(&state, &admin, "messages");
    ctx.insert("messages", &state.repo.contact_messages().await?);
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
