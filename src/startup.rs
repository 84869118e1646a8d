//! Building and running the application: connect, migrate, seed an empty database, bind,
//! and hand one `AppState` to every handler. Tests build it the same way on port 0.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, HttpServer};

use crate::cache::CacheManager;
use crate::config::Config;
use crate::content::views::ViewCounter;
use crate::content::{seed, Repository};
use crate::db::{self, Db, DbError};
use crate::web::state::AppState;
use crate::web::templates::{self, Assets};

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
        if let Err(e) = state.demand.flush(&state.repo).await {
            tracing::warn!(error = %e, "the last counts of demand were not written");
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
    let demand = Arc::new(crate::web::demand::Demand::default());
    demand.start(repo.clone(), config.history_flush_interval);
    let views = Arc::new(ViewCounter::default());
    views.start(repo.clone(), config.view_flush_interval);
    let fragments =
        crate::web::fragments::registry(cache.clone(), &repo, templates::TEMPLATES, config.debug);
    Ok(AppState {
        webhook_replays: crate::web::api::replay::ReplayGuard::new(
            crate::web::api::webhook::MAX_AGE,
        ),
        limits: crate::web::limits::Limits::new(config.workers),
        fragments,
        config: Arc::new(config),
        cache,
        repo,
        views,
        collapsing: Default::default(),
        warm_token: hex::encode(rand::random::<[u8; 16]>()),
        warming: Default::default(),
        warm: crate::web::warm::run,
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
        demand,
    })
}

fn run(listener: TcpListener, state: web::Data<AppState>) -> std::io::Result<Server> {
    let workers = state.config.workers;
    let server = HttpServer::new({
        let state = state.clone();
        move || crate::web::app::app(state.clone())
    })
    .workers(workers)
    .listen(listener)?
    .run();
    Ok(server)
}
