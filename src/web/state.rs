//! The application state every handler receives, passed explicitly as
//! `web::Data<AppState>` (built by `startup`).

use std::sync::Arc;

use tera::Tera;

use crate::cache::CacheManager;
use crate::config::Config;
use crate::content::views::ViewCounter;
use crate::content::Repository;
use crate::web::fragments::Fragments;
use crate::web::templates::Assets;

/// Runs a warming (`web::warm::run`).
pub type WarmFn =
    fn(
        actix_web::web::Data<AppState>,
        crate::web::warm::report::WarmOptions,
    ) -> futures_util::future::LocalBoxFuture<'static, crate::web::warm::report::WarmReport>;

pub struct AppState {
    pub config: Arc<Config>,
    pub cache: CacheManager,
    pub repo: Repository,
    /// Post views not written yet.
    pub views: Arc<ViewCounter>,
    /// Page and API misses being rendered, shared by the workers (see `http_cache`).
    pub collapsing: Arc<crate::web::http_cache::Collapsing>,
    /// Marks this process's warm requests (random per process).
    pub warm_token: String,
    pub warming: Arc<crate::web::http_cache::WarmStats>,
    /// Warming on demand (`POST /api/cache/warm/`).
    pub warm: WarmFn,
    pub tera: Tera,
    pub fragments: Fragments,
    pub webhook_replays: crate::web::api::replay::ReplayGuard,
    /// Sign-in and contact-form limits.
    pub limits: crate::web::limits::Limits,
    pub assets: Assets,
    /// This instance's writer of the cache history (see `web::analytics`).
    pub analytics: Arc<crate::web::analytics::Analytics>,
    /// What readers ask for, per URL (see `web::demand`): warming follows it.
    pub demand: Arc<crate::web::demand::Demand>,
    /// The statistics anonymous callers get (see `api::cache`).
    pub public_stats: crate::web::api::public_stats::PublicStats,
    /// When `/metrics` last read Redis INFO and the database (see `web::scrape`).
    pub scrapes: crate::web::metrics::Scrapes,
}
