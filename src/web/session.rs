//! Who is signed in, read from the session; shared by the admin area and the caches
//! (an admin's requests bypass the shared response cache).
//!
//! A session ends after `SESSION_IDLE_TIMEOUT` without a request and `SESSION_MAX_AGE`
//! after sign-in. Cookie sessions live in the browser, so ending one on the server
//! takes a record there: each admin account has a session generation, stored in the
//! session at sign-in and bumped at sign-out and password change. A session whose
//! generation is not the account's current one (or whose account is gone) is refused
//! by `signed_in`, on every instance.

use std::time::Duration;

use actix_session::{Session, SessionExt};
use actix_web::dev::ServiceRequest;
use serde::{Deserialize, Serialize};

use crate::content::Repository;

/// Session key holding the signed-in admin (`SignedIn`).
pub const ADMIN_KEY: &str = "admin";

/// What the session remembers of a sign-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedIn {
    pub user: String,
    /// The account's session generation at sign-in.
    pub generation: i32,
    /// Unix seconds.
    pub signed_in_at: i64,
    pub seen_at: i64,
}

/// How long sessions may last (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub idle: Duration,
    pub max_age: Duration,
}

impl Lifetimes {
    pub fn of(config: &crate::config::Config) -> Self {
        Lifetimes {
            idle: config.session_idle,
            max_age: config.session_max_age,
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl SignedIn {
    pub fn new(user: &str, generation: i32) -> Self {
        let now = now();
        SignedIn {
            user: user.to_string(),
            generation,
            signed_in_at: now,
            seen_at: now,
        }
    }

    /// Within both lifetimes.
    fn current(&self, lifetimes: Lifetimes) -> bool {
        let now = now();
        now - self.seen_at <= lifetimes.idle.as_secs() as i64
            && now - self.signed_in_at <= lifetimes.max_age.as_secs() as i64
    }
}

fn lifetimes_of(req: &actix_web::HttpRequest) -> Option<Lifetimes> {
    let state = req.app_data::<actix_web::web::Data<crate::web::state::AppState>>()?;
    Some(Lifetimes::of(&state.config))
}

/// The sign-in the session holds, if it has not expired (not checked against the
/// database: for deciding what may be skipped, such as the shared cache, never for
/// granting access).
pub fn claimed(req: &ServiceRequest) -> Option<SignedIn> {
    let signed_in = req
        .get_session()
        .get::<SignedIn>(ADMIN_KEY)
        .ok()
        .flatten()?;
    let lifetimes = lifetimes_of(req.request())?;
    signed_in.current(lifetimes).then_some(signed_in)
}

/// Whether an admin is signed in (the response cache's `IsAdmin`).
pub fn is_admin(req: &ServiceRequest) -> bool {
    claimed(req).is_some()
}

/// The signed-in admin, checked against the account (it exists and has not signed out
/// or changed its password since); refreshes the idle timer. An expired or revoked
/// session is emptied.
pub async fn signed_in(
    session: &Session,
    repo: &Repository,
    lifetimes: Lifetimes,
) -> Option<SignedIn> {
    let mut signed_in = session.get::<SignedIn>(ADMIN_KEY).ok().flatten()?;
    let valid = signed_in.current(lifetimes)
        && match repo.admin_by_username(&signed_in.user).await {
            Ok(Some(account)) => account.session_generation == signed_in.generation,
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the admin session");
                return None;
            }
        };
    if !valid {
        session.purge();
        return None;
    }
    // The cookie is rewritten at most once a minute (or half the idle timeout), not on
    // every request.
    let refresh_after = (lifetimes.idle.as_secs() as i64 / 2).min(60);
    if now() - signed_in.seen_at >= refresh_after {
        signed_in.seen_at = now();
        if let Err(e) = session.insert(ADMIN_KEY, &signed_in) {
            tracing::warn!(error = %e, "cannot refresh the admin session");
        }
    }
    Some(signed_in)
}

/// Signs `user` in: a fresh session (new id, new CSRF token) holding the sign-in.
pub fn sign_in(session: &Session, user: &str, generation: i32) -> Result<(), String> {
    // Not `purge`: a purged session ignores inserts. `clear` drops the old CSRF token.
    session.clear();
    session.renew();
    session
        .insert(ADMIN_KEY, SignedIn::new(user, generation))
        .map_err(|e| e.to_string())
}

/// `Authorization: Bearer <CACHE_ADMIN_TOKEN>`, compared in constant time.
pub fn bearer(
    req: &actix_web::HttpRequest,
    state: &crate::web::state::AppState,
) -> Result<(), crate::web::error::ApiError> {
    use crate::web::error::ApiError;
    use subtle::ConstantTimeEq;
    let Some(given) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Err(ApiError::Unauthorized(
            "send Authorization: Bearer <CACHE_ADMIN_TOKEN>".into(),
        ));
    };
    let given = given
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let matches = |token: &crate::config::SecretKey| {
        bool::from(token.expose().as_bytes().ct_eq(given.as_bytes()))
    };
    // The generated token is for this machine's command line: from a loopback peer.
    let local = req.peer_addr().is_some_and(|a| a.ip().is_loopback())
        && state.config.local_admin_token.as_ref().is_some_and(matches);
    match state.config.cache_admin_token.as_ref().is_some_and(matches) || local {
        true => Ok(()),
        false => Err(ApiError::Forbidden("invalid bearer token".into())),
    }
}
