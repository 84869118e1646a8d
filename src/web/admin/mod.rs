//! The admin area: sign-in, content editing and the contact inbox. Every write goes
//! through the repository, which invalidates what the public site has cached, so the
//! change shows on the next request. Admin pages are never cached (`no-store`), and an
//! admin's requests bypass the shared response cache.

pub(crate) mod auth;
pub(crate) mod images;
pub(crate) mod messages;
pub(crate) mod posts;
pub(crate) mod site;

use actix_session::Session;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use tera::Context;

use super::csrf;
use super::error::PageError;
use crate::web::state::AppState;

pub use auth::hash_password;

/// The signed-in admin and their session; extracting it from a request without a
/// current sign-in (none, expired, signed out, account gone) redirects to the login
/// page (and back afterwards).
pub struct Admin {
    pub user: String,
    pub session: Session,
}

impl FromRequest for Admin {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = Session::from_request(req, payload).into_inner().ok();
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let next = url::form_urlencoded::byte_serialize(req.path().as_bytes()).collect::<String>();
        Box::pin(async move {
            if let (Some(session), Some(state)) = (session, state) {
                let lifetimes = crate::web::session::Lifetimes::of(&state.config);
                if let Some(signed_in) =
                    crate::web::session::signed_in(&session, &state.repo, lifetimes).await
                {
                    return Ok(Admin {
                        user: signed_in.user,
                        session,
                    });
                }
            }
            let redirect = HttpResponse::SeeOther()
                .insert_header((header::LOCATION, format!("/admin/login/?next={next}")))
                .finish();
            Err(actix_web::error::InternalError::from_response("sign in first", redirect).into())
        })
    }
}

/// The context every admin page starts from.
fn admin_context(state: &AppState, admin: &Admin, section: &str) -> Context {
    let mut ctx = Context::new();
    ctx.insert("admin_user", &admin.user);
    ctx.insert("section", section);
    ctx.insert("assets", &state.assets);
    ctx.insert("csrf_field", csrf::FIELD);
    ctx.insert("csrf_token", &csrf::token(&admin.session));
    ctx
}

/// The body of a form that carries nothing but its CSRF token (delete, sign out).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct CsrfOnly {
    csrf_token: String,
}

/// Admin pages are never stored anywhere.
/// Renders an admin page; every page shows a notice while a write's cache invalidation
/// has not reached the cache yet (see `Repository::invalidate_after_commit`).
async fn render(
    state: &AppState,
    template: &str,
    ctx: &Context,
) -> Result<HttpResponse, PageError> {
    let mut ctx = ctx.clone();
    ctx.insert(
        "pending_invalidations",
        &state.repo.pending_invalidations().await.unwrap_or(0),
    );
    render_signed_out(state, template, &ctx)
}

/// Renders a page shown before sign-in (no notices).
fn render_signed_out(
    state: &AppState,
    template: &str,
    ctx: &Context,
) -> Result<HttpResponse, PageError> {
    let html = crate::web::templates::render(&state.tera, template, ctx)?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(html))
}

async fn render_status(
    state: &AppState,
    template: &str,
    ctx: &Context,
    status: actix_web::http::StatusCode,
) -> Result<HttpResponse, PageError> {
    let mut res = render(state, template, ctx).await?;
    *res.status_mut() = status;
    Ok(res)
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_string()))
        .finish()
}

/// A refused form: the CSRF token did not match.
fn csrf_refused() -> HttpResponse {
    HttpResponse::Forbidden()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body("<h1>Form expired</h1><p>Your session changed before the form was sent. Go back, reload the page and send it again.</p>")
}

/// The cache dashboard: rendered with the current numbers, then kept live by
/// `static/dashboard.js` from `/api/cache/monitor/`.
pub(crate) async fn cache_dashboard(
    state: web::Data<AppState>,
    admin: Admin,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, PageError> {
    let mut ctx = admin_context(&state, &admin, "cache");
    let monitor = crate::web::api::cache::monitor_json(&state).await;
    ctx.insert("stats", &monitor);
    ctx.insert("recommendations", &monitor["recommendations"]);
    // `?refresh=MS` (at least 500): how often the page refreshes itself.
    let refresh_ms: u64 = query
        .get("refresh")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000u64)
        .max(500);
    ctx.insert("refresh_ms", &refresh_ms);
    ctx.insert(
        "dashboard_js",
        &format!(
            "/static/dashboard.js?v={}",
            crate::web::templates::short_hash(include_str!("../../../static/dashboard.js"))
        ),
    );
    render(&state, "admin/cache.html", &ctx).await
}

pub(crate) async fn overview(
    state: web::Data<AppState>,
    admin: Admin,
) -> Result<HttpResponse, PageError> {
    let mut ctx = admin_context(&state, &admin, "overview");
    ctx.insert("overview", &state.repo.admin_overview().await?);
    ctx.insert("cache_stats", &state.cache.stats());
    render(&state, "admin/index.html", &ctx).await
}
