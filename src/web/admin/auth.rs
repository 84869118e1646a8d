//! Sign-in with argon2-hashed passwords. A wrong username and a wrong password get the
//! same answer; the session and its CSRF token are renewed on sign-in (no session
//! fixation). Attempts are limited per client address and account (`web::limits`),
//! counted before the password is checked, so parallel guesses cannot slip through
//! together; an account attacked from many addresses is slowed down, never locked.

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
use crate::web::limits::{Limits, LOGIN_PER_ACCOUNT, LOGIN_PER_ADDRESS};
use crate::web::state::AppState;

/// The largest sign-in form body accepted: a username, a password, the token and the
/// return path, with room to spare.
pub const MAX_BODY: usize = 8 * 1024;

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
    req: &HttpRequest,
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
    // No session before sign-in: a double-submit token (see `web::csrf`).
    let token = csrf::form_token_for(req, &state.config);
    ctx.insert("csrf_token", &token.field);
    let mut res = render_signed_out(state, "admin/login.html", &ctx)?;
    *res.status_mut() = status;
    if let Some(cookie) = token.cookie {
        res.add_cookie(&cookie)
            .map_err(|e| PageError::Internal(format!("CSRF cookie: {e}")))?;
    }
    Ok(res)
}

pub async fn login_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, PageError> {
    login_page(&state, &req, "", &query.next, None, StatusCode::OK)
}

pub async fn login(
    state: web::Data<AppState>,
    session: Session,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, PageError> {
    if !csrf::verify_form_for(&req, &state.config, &form.csrf_token) {
        return Ok(csrf_refused());
    }
    let ip = crate::web::client::of(&req);
    let account = state.repo.admin_by_username(form.username.trim()).await?;
    // Counted by the name as typed, whether an account has it or not: a made-up name
    // gets exactly the answers a real one does, so the limiter cannot tell which names
    // exist. The per-address count comes first and a refused attempt stops there, so
    // one address makes at most `LOGIN_PER_ADDRESS` counters per name (pair and
    // account) in a window, whatever it sends.
    let counted_name: String = form
        .username
        .trim()
        .to_lowercase()
        .chars()
        .take(150)
        .collect();
    let (cache, limits) = (&state.cache, &state.limits);
    let pair = [ip.as_str(), counted_name.as_str()];
    // Counted before checking: this attempt is one of the allowed ones or refused.
    let tries_here = limits.login_address.add(cache, &[&ip], 1).await;
    let tries = match tries_here > LOGIN_PER_ADDRESS {
        true => None,
        false => Some(limits.login.add(cache, &pair, 1).await),
    };
    if tries.is_none_or(|tries| tries > LOGIN_PER_ACCOUNT) {
        return login_page(
            &state,
            &req,
            &form.username,
            &form.next,
            Some("Too many failed sign-ins from your address. Try again in 15 minutes."),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let failures = limits.login_account.get(cache, &[&counted_name]).await;
    tokio::time::sleep(Limits::login_delay(failures)).await;
    let Ok(_permit) =
        tokio::time::timeout(std::time::Duration::from_secs(10), limits.hashing.acquire()).await
    else {
        limits.login.add(cache, &pair, -1).await;
        limits.login_address.add(cache, &[&ip], -1).await;
        return login_page(
            &state,
            &req,
            &form.username,
            &form.next,
            Some("The server is busy checking other sign-ins. Please try again in a moment."),
            StatusCode::SERVICE_UNAVAILABLE,
        );
    };
    let password = form.password.clone();
    // The account as stored (not as typed, nor the counters' lowercase): the session is
    // checked against it on every request.
    let signed_in_as = account
        .as_ref()
        .map(|a| (a.username.clone(), a.session_generation));
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
        limits.login_account.add(cache, &[&counted_name], 1).await;
        return login_page(
            &state,
            &req,
            &form.username,
            &form.next,
            Some("Wrong username or password."),
            StatusCode::UNAUTHORIZED,
        );
    }
    // A success takes back this attempt's counts: the admin is not the attacker.
    limits.login.reset(cache, &pair).await;
    limits.login_address.add(cache, &[&ip], -1).await;
    let (username, generation) = signed_in_as.unwrap_or_default();
    crate::web::session::sign_in(&session, &username, generation).map_err(PageError::Session)?;
    Ok(redirect(safe_next(&form.next)))
}

/// Signs out: ends this admin's sessions on the server too (a copy of the cookie is
/// refused from now on, on every instance).
pub async fn logout(
    state: web::Data<AppState>,
    admin: super::Admin,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, PageError> {
    if !csrf::verify(&admin.session, &form.csrf_token) {
        return Ok(csrf_refused());
    }
    state.repo.revoke_admin_sessions(&admin.user).await?;
    admin.session.purge();
    Ok(redirect("/admin/login/"))
}
