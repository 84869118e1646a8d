//! Sign-in with argon2-hashed passwords. A wrong username and a wrong password get the
//! same answer, and the session id is renewed on sign-in (no session fixation).

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};
use tera::Context;

use super::{csrf_refused, redirect, render_signed_out, CsrfOnly};
use crate::web::csrf;
use crate::web::error::PageError;
use crate::web::session::ADMIN_KEY;
use crate::web::AppState;

pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf_token: String,
    next: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NextQuery {
    next: String,
}

/// Only local paths: never an open redirect.
fn safe_next(next: &str) -> &str {
    if next.starts_with("/admin/") && !next.starts_with("//") {
        next
    } else {
        "/admin/"
    }
}

fn login_page(
    state: &AppState,
    session: &Session,
    username: &str,
    next: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let mut ctx = Context::new();
    ctx.insert("assets", &state.assets);
    ctx.insert("username", username);
    ctx.insert("next", safe_next(next));
    ctx.insert("error", &error);
    ctx.insert("csrf_field", csrf::FIELD);
    ctx.insert("csrf_token", &csrf::token(session));
    let mut res = render_signed_out(state, "admin/login.html", &ctx)?;
    *res.status_mut() = status;
    Ok(res)
}

pub async fn login_form(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, PageError> {
    login_page(&state, &session, "", &query.next, None, StatusCode::OK)
}

/// Failed sign-ins allowed per address and username within the `login_attempts` TTL
/// (15 minutes); counted in the shared cache, so every instance sees them.
pub const MAX_FAILURES: i64 = 10;

pub async fn login(
    state: web::Data<AppState>,
    session: Session,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, PageError> {
    if !csrf::verify(&session, &form.csrf_token) {
        return Ok(csrf_refused());
    }
    let ip = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let account = state.repo.admin_by_username(form.username.trim()).await?;
    // Made-up usernames share one counter per address: a client must not be able to
    // create cache entries by inventing names.
    let counted_name = match &account {
        Some(admin) => admin.username.to_lowercase(),
        None => "?".to_string(),
    };
    let attempts = state
        .cache
        .key("login_attempts", [ip.as_str(), counted_name.as_str()]);
    if state.cache.get_counter(&attempts).await.unwrap_or(0) >= MAX_FAILURES {
        return login_page(
            &state,
            &session,
            &form.username,
            &form.next,
            Some("Too many failed sign-ins. Try again in 15 minutes."),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let password = form.password.clone();
    // argon2 is deliberately slow: run it on the blocking pool, not the worker's loop.
    let ok = web::block(move || match account {
        Some(admin) => verify_password(&password, &admin.password_hash),
        None => {
            // Same work either way, so timing does not reveal which usernames exist.
            let _ = hash_password(&password);
            false
        }
    })
    .await
    .map_err(|e| PageError::Internal(format!("password check: {e}")))?;
    if !ok {
        state.cache.incr(&attempts, 1).await;
        return login_page(
            &state,
            &session,
            &form.username,
            &form.next,
            Some("Wrong username or password."),
            StatusCode::UNAUTHORIZED,
        );
    }
    state.cache.delete(&attempts).await;
    session.renew();
    session
        .insert(ADMIN_KEY, form.username.trim())
        .map_err(|e| PageError::Session(e.to_string()))?;
    Ok(redirect(safe_next(&form.next)))
}

pub async fn logout(session: Session, form: web::Form<CsrfOnly>) -> HttpResponse {
    if !csrf::verify(&session, &form.csrf_token) {
        return csrf_refused();
    }
    session.purge();
    redirect("/admin/login/")
}
