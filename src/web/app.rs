//! The application as every worker serves it (and as warming requests it in process):
//! the middleware stack, in order, around the route table.

use actix_session::config::CookieContentSecurity;
use actix_session::SessionMiddleware;
use actix_web::cookie::{Key, SameSite};
use actix_web::middleware::{from_fn, ErrorHandlers};
use actix_web::{web, App};
use sha2::{Digest, Sha512};
use tracing_actix_web::TracingLogger;

use crate::config::Config;
use crate::web::state::AppState;

/// The cookie key: 64 bytes derived from SECRET_KEY, whatever its length.
fn cookie_key(config: &Config) -> Key {
    Key::from(&Sha512::digest(config.secret_key.expose().as_bytes()))
}

/// The application, as every worker serves it and as warming requests it in process.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let key = cookie_key(&state.config);
    let secure = state.config.site_url.starts_with("https://");
    // Kept in Redis when the cache is Redis, else in the cookie (see
    // `web::session_store`); the cookie is encrypted with SECRET_KEY either way.
    let storage = crate::web::session_store::SessionStorage::for_cache(&state.cache);
    let lifetime =
        actix_web::cookie::time::Duration::seconds(state.config.session_max_age.as_secs() as i64);
    let session = SessionMiddleware::builder(storage, key)
        .session_lifecycle(actix_session::config::BrowserSession::default().state_ttl(lifetime))
        .cookie_name("folio_session".into())
        .cookie_http_only(true)
        .cookie_same_site(SameSite::Lax)
        .cookie_secure(secure)
        .cookie_content_security(CookieContentSecurity::Private)
        .build();
    // One per worker: cloning it for each request touches no shared counter.
    let response_cache = std::rc::Rc::new(crate::web::response_cache(&state));
    let early = response_cache.clone();
    // Any admin form: a post of MAX_POST_BYTES, percent-encoded, and the other fields.
    let forms = crate::web::error::form_config(state.config.max_post_bytes * 3 + 64 * 1024);
    App::new()
        // Innermost: routing sees GET for a HEAD request (see `head_as_get`).
        .wrap(from_fn(crate::web::middleware::head_as_get))
        .wrap(from_fn(crate::web::middleware::server_timing))
        .wrap(from_fn(crate::web::http_cache::conditional_get))
        .wrap(ErrorHandlers::new().default_handler(crate::web::error_page::render_error_page))
        // Inside the session (an admin bypasses it), outside everything that renders.
        .wrap(from_fn(move |req, next| {
            response_cache.clone().handle(req, next)
        }))
        .wrap(session)
        .wrap(actix_web::middleware::from_fn(
            crate::web::middleware::request_id_header,
        ))
        .wrap(TracingLogger::default())
        .wrap(from_fn(move |req, next| {
            early.clone().handle_early(req, next)
        }))
        // Before the response cache: it keys on what this parses.
        .wrap(from_fn(|req, next| {
            crate::web::canonical::check(req, next, crate::web::routes::params_of)
        }))
        .wrap(crate::web::middleware::security_headers(
            &state.config.site_url,
        ))
        .wrap(from_fn(|req, next| {
            crate::web::metrics::record_requests(req, next, crate::web::routes::pattern_of)
        }))
        // Outermost: one line per request, whoever answered it.
        .wrap(from_fn(crate::web::middleware::access_log))
        .app_data(forms)
        .app_data(state)
        .configure(crate::web::configure)
}
