//! Building and running the application: connect, migrate, seed an empty database, bind,
//! and hand one `AppState` to every handler. Tests build it the same way on port 0.

use std::net::TcpListener;
use std::sync::Arc;

use actix_session::config::CookieContentSecurity;
use actix_session::SessionMiddleware;
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::Server;
use actix_web::middleware::{from_fn, ErrorHandlers};
use actix_web::{web, App, HttpServer};
use sha2::{Digest, Sha512};
use tracing_actix_web::TracingLogger;

use crate::cache::CacheManager;
use crate::config::Config;
use crate::content::views::ViewCounter;
use crate::content::{seed, Repository};
use crate::db::{self, Db, DbError};
use crate::web::templates::{self, Assets};
use crate::web::AppState;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("DATABASE_URL: {0}")]
    Database(#[from] DbError),
    #[error("cannot seed the database: {0}")]
    Seed(#[from] seed::SeedError),
    #[error("CACHE_URL: {0}")]
    Cache(#[from] crate::cache::StoreError),
    #[error("templates: {0:?}")]
    Templates(#[from] tera::Error),
    #[error("CACHE_URL: {0}")]
    CacheSite(String),
    #[error("BIND: cannot listen on {bind}: {source}")]
    Bind {
        bind: String,
        source: std::io::Error,
    },
}

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        // Before anything records: the cache's latencies count from the first request.
        crate::web::metrics::handle();
        config.check_shared_secret()?;
        let state = web::Data::new(build_state(config).await?);
        let listener =
            TcpListener::bind(&state.config.bind).map_err(|source| StartupError::Bind {
                bind: state.config.bind.clone(),
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                bind: state.config.bind.clone(),
                source,
            })?
            .port();
        let server = run(listener, state.clone()).map_err(|source| StartupError::Bind {
            bind: state.config.bind.clone(),
            source,
        })?;
        if state.config.warm_on_start {
            crate::web::warm::on_start(state.clone());
        }
        if state.config.warm_after_invalidation {
            crate::web::warm::after_invalidations(state.clone());
        }
        Ok(Application {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until stopped (SIGTERM, SIGINT): requests in flight finish, then the
    /// counted views and statistics are written.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        let state = self.state;
        match state.views.flush(&state.repo).await {
            Ok(n) => tracing::info!(views = n, "counted views written"),
            Err(e) => {
                tracing::error!(error = %e, lost = state.views.pending(), "counted views could not be written")
            }
        }
        state.cache.flush_stats().await;
        if let Err(e) = state.repo.release_cache_site().await {
            tracing::debug!(error = %e, "the cache site was not released");
        }
        if let Err(e) = state.analytics.flush(&state.repo).await {
            tracing::warn!(error = %e, "the last minute of cache history was not written");
        }
        served
    }
}

/// Names this instance's cache as the database's (see `repository::cache_site`): one
/// cache per site, or invalidations applied to one never reach the other.
async fn claim_cache_site(repo: &Repository) -> Result<(), StartupError> {
    use crate::content::repository::cache_site::Claim;
    match repo.claim_cache_site().await? {
        Claim::Ours | Claim::Uncached => Ok(()),
        Claim::TookOver { from } => {
            // Rows were retired while this cache was not the site's: what it holds may
            // predate them.
            let cleared = repo.cache().clear().await;
            tracing::warn!(
                previous = %from,
                cleared,
                "this database was cached in {from} until lately; this instance's cache starts empty"
            );
            Ok(())
        }
        Claim::Refused {
            other,
            seen_secs_ago,
        } => Err(StartupError::CacheSite(format!(
            "this database's content is cached in {other} (an instance said so {seen_secs_ago} s ago), this instance's cache is {}: instances with different caches never see each other's invalidations. Give every instance the same CACHE_URL and CACHE_KEY_PREFIX, or stop the others and start again after {} s",
            repo.cache().site_name().unwrap_or_default(),
            crate::content::repository::cache_site::GONE_AFTER.as_secs()
        ))),
    }
}

/// Migrates, connects, seeds a fresh database from the fixtures and compiles templates.
pub async fn build_state(config: Config) -> Result<AppState, StartupError> {
    db::migrate(&config.database_url).await?;
    let db = Db::connect(&config.database_url).await?;
    let cache = CacheManager::new(config.cache.clone())?;
    match cache.check(std::time::Duration::from_secs(2)).await {
        Ok(()) => {}
        Err(e @ crate::cache::StoreError::Value(_)) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "the cache does not answer; serving from the database until it does")
        }
    }
    cache.spawn_stats_flusher(std::time::Duration::from_secs(1));
    cache.spawn_history();
    let edges = crate::edge::Edges::new(&config.edge, &config.cache.key_prefix);
    let repo = Repository::new(db, cache.clone()).with_edges(edges);
    claim_cache_site(&repo).await?;
    repo.start_invalidation_outbox(std::time::Duration::from_millis(500));
    // Writes whose invalidation was pending when the last process stopped.
    if let Err(e) = repo.apply_pending_invalidations().await {
        tracing::warn!(error = %e, "pending cache invalidations are retried in the background");
    }
    if config.seed_on_empty && repo.count_posts().await? == 0 && !repo.has_personal_info().await? {
        let report = seed::seed_fixtures(&repo).await?;
        tracing::info!(%report, "empty database seeded from fixtures");
    }
    // Another instance starting at the same time may be filling it: not fatal.
    match repo.ensure_search_index().await {
        Ok(Some(n)) => tracing::info!(posts = n, "search index filled"),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "the search index could not be filled; `folio reindex` fills it")
        }
    }
    let analytics = Arc::new(crate::web::analytics::Analytics::new());
    analytics.start(repo.clone(), config.history_flush_interval);
    let views = Arc::new(ViewCounter::default());
    views.start(repo.clone(), config.view_flush_interval);
    let fragments =
        crate::web::fragments::registry(cache.clone(), &repo, templates::TEMPLATES, config.debug);
    Ok(AppState {
        webhook_replays: Default::default(),
        limits: crate::web::limits::Limits::new(config.workers),
        fragments,
        config: Arc::new(config),
        cache,
        repo,
        views,
        collapsing: Default::default(),
        warm_token: hex::encode(rand::random::<[u8; 16]>()),
        warming: Default::default(),
        tera: {
            // The templates, and the fragment cache's functions they call.
            let mut tera = templates::build()?;
            crate::web::fragments::Fragments::register_functions(&mut tera);
            tera
        },
        assets: Assets::new(),
        public_stats: Default::default(),
        scrapes: Default::default(),
        analytics,
    })
}

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
        .wrap(ErrorHandlers::new().default_handler(crate::web::error::render_error_page))
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
        .wrap(from_fn(crate::web::canonical::check))
        .wrap(crate::web::middleware::security_headers(
            &state.config.site_url,
        ))
        .wrap(from_fn(crate::web::metrics::record_requests))
        // Outermost: one line per request, whoever answered it.
        .wrap(from_fn(crate::web::middleware::access_log))
        .app_data(forms)
        .app_data(state)
        .configure(crate::web::configure)
}

fn run(listener: TcpListener, state: web::Data<AppState>) -> std::io::Result<Server> {
    let workers = state.config.workers;
    let server = HttpServer::new({
        let state = state.clone();
        move || app(state.clone())
    })
    .workers(workers)
    .listen(listener)?
    .run();
    Ok(server)
}
