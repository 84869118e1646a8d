//! Cache warming: the site requests its own pages through the same `App` that serves
//! readers — its service built as the server builds it for a worker, called in process
//! (no HTTP, no second copy of any query or template) — by priority:
//! 1 the critical path (home and the navigation it carries), 2 high traffic (blog,
//! about, tools, recent and popular posts, the API lists), 3 heavy queries (tag pages,
//! later blog pages, feed, sitemap), 4 every post in the sitemap. Once readers have been
//! counted (`web::demand`), the URLs they are expected to ask for, at the highest
//! rendering cost, come first instead (`plan`).
//!
//! It must not hurt the site it warms: a few requests at a time, fewer (and a pause)
//! when its requests get slower than they started, and it stops before an in-process
//! cache near its bound would have to evict hotter entries for colder ones. Warm
//! requests are marked (`x-folio-warm` with the process's token), so they count no view
//! and `force` can rewrite entries that exist.

use std::time::{Duration, Instant};

use actix_service::IntoServiceFactory as _;
use actix_web::dev::{AppConfig, Service, ServiceFactory};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::web;

use crate::db::DbError;
use crate::web::state::AppState;

pub mod report;

pub use crate::web::http_cache::{is_warm_request, FORCE_HEADER, WARM_HEADER};

pub use self::report::{Counts, Failure, WarmOptions, WarmReport, WarmType};

/// Most requests in flight at once, and the slow-down that halves them.
const MAX_CONCURRENCY: usize = 4;
const SLOWDOWN: u32 = 4;
/// How many of the most searched queries are warmed.
const SEARCHES_WARMED: usize = 10;
/// URLs the demand model puts first (at the first priority): re-warmed after writes too.
const DEMAND_FIRST: usize = 100;
/// Share of an in-process cache's bound past which warming stops.
const FULL: f64 = 0.9;

/// The paths to warm, by priority, from each route's `warm` in the route table
/// (`web::routes`); what they expand to is read through the repository (cached reads).
pub async fn fixed_plan(state: &AppState, kind: WarmType) -> Result<Vec<(u8, String)>, DbError> {
    use crate::web::routes::{Warm, TABLE};
    let repo = &state.repo;
    let recent = repo
        .recent_posts(crate::web::fragments::registry::RECENT_POSTS)
        .await?;
    let popular = repo
        .popular_posts(crate::web::fragments::registry::POPULAR_POSTS)
        .await?;
    let (posts, tags) = repo.sitemap().await?;
    let searches = repo.search_counts().top(SEARCHES_WARMED);
    let mut plan: Vec<(u8, String)> = Vec::new();
    for route in TABLE {
        let with = |value: &str| {
            let mut parts = route.path.splitn(2, '{');
            let head = parts.next().unwrap_or("");
            let tail = parts
                .next()
                .and_then(|t| t.split_once('}'))
                .map_or("", |t| t.1);
            format!("{head}{value}{tail}")
        };
        for warm in route.warm {
            match *warm {
                Warm::Path(p) => plan.push((p, route.path.to_string())),
                Warm::Posts(first, rest) => {
                    plan.extend(
                        recent
                            .iter()
                            .chain(&popular)
                            .map(|p| (first, with(&p.slug))),
                    );
                    plan.extend(posts.iter().map(|p| (rest, with(&p.slug))));
                }
                Warm::Tags(p) => plan.extend(tags.iter().map(|t| (p, with(&t.slug)))),
                Warm::Pages(p) => {
                    let per_page = crate::content::models::PER_PAGE;
                    let pages = (posts.len() as i64 + per_page - 1) / per_page;
                    plan.extend((2..=pages).map(|n| (p, format!("{}?page={n}", route.path))));
                }
                // High traffic: the most searched queries lately, first pages.
                Warm::Searches(p) => plan.extend(searches.iter().map(|(query, _)| {
                    let q = crate::web::canonical::Params::encode(query);
                    (p, format!("{}?q={q}", route.path))
                })),
            }
        }
    }
    plan.sort_by_key(|(priority, _)| *priority);
    let mut seen = std::collections::HashSet::new();
    plan.retain(|(_, path)| {
        seen.insert(path.clone()) && (kind == WarmType::All || WarmType::of(path) == kind)
    });
    Ok(plan)
}

/// An item of the plan, and what the demand model says of it.
#[derive(Debug, Clone)]
pub struct Planned {
    pub priority: u8,
    pub path: String,
    /// Requests expected before its entry expires, what a miss costs (ms) and the
    /// value of warming it (`web::demand`): None where the model has no data.
    pub predicted: Option<(f64, f64, f64)>,
}

/// The fixed plan (`fixed_plan`) in the order the demand model gives (`web::demand`):
/// its `DEMAND_FIRST` most valuable URLs first, at the first priority, then within each
/// priority the rest by value, then those the model has not seen. A new site (no
/// counts yet) gets the fixed plan as it is. The model only reorders: a URL it knows
/// that the fixed plan does not (a post since deleted) is not warmed.
pub async fn plan(state: &AppState, kind: WarmType) -> Result<Vec<Planned>, DbError> {
    let fixed = fixed_plan(state, kind).await?;
    let now = crate::content::repository::now();
    let model = match crate::web::demand::model(&state.repo, now).await {
        Ok(model) => model,
        Err(e) => {
            tracing::warn!(error = %e, "the demand model could not be read; the fixed plan is used");
            Vec::new()
        }
    };
    let policies = crate::web::cache_policies(state);
    let ttl_of = |path: &str| {
        let bare = path.split('?').next().unwrap_or(path);
        policies
            .iter()
            .find(|(m, _)| m.matches(bare))
            .map(|(_, p)| p.ttl)
            .unwrap_or(state.config.page_cache_ttl)
    };
    let by_path: std::collections::HashMap<&str, &crate::web::demand::Predicted> =
        model.iter().map(|p| (p.path.as_str(), p)).collect();
    let mut planned: Vec<Planned> = fixed
        .into_iter()
        .map(|(priority, path)| {
            let predicted = by_path.get(path.as_str()).map(|p| {
                let ttl = ttl_of(&path);
                (p.expected(ttl), p.miss_ms, p.value(ttl))
            });
            Planned {
                priority,
                path,
                predicted,
            }
        })
        .collect();
    if model.is_empty() {
        return Ok(planned);
    }
    let value = |p: &Planned| p.predicted.map_or(-1.0, |(_, _, v)| v);
    let mut ranked: Vec<usize> = (0..planned.len())
        .filter(|i| planned[*i].predicted.is_some())
        .collect();
    ranked.sort_by(|a, b| value(&planned[*b]).total_cmp(&value(&planned[*a])));
    for i in ranked.into_iter().take(DEMAND_FIRST) {
        planned[i].priority = 0;
    }
    // Stable: the fixed order stays among equals (and for what the model has not seen).
    planned.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then(value(b).total_cmp(&value(a)))
    });
    for p in planned.iter_mut().filter(|p| p.priority == 0) {
        p.priority = 1;
    }
    Ok(planned)
}

/// Warms by priority (see the module comment); `progress(done, total, path)` after each.
pub async fn warm(
    state: web::Data<AppState>,
    options: &WarmOptions,
    progress: &dyn Fn(usize, usize, &str),
) -> WarmReport {
    let started = Instant::now();
    let mut report = WarmReport::default();
    let plan = match plan(&state, options.kind).await {
        Ok(plan) => plan,
        Err(e) => {
            report.stopped = Some(format!("cannot read what to warm: {e}"));
            return report;
        }
    };
    let plan: Vec<(u8, String)> = plan
        .into_iter()
        .filter(|p| p.priority <= options.max_priority)
        .map(|p| (p.priority, p.path))
        .collect();
    let app = match crate::web::app::app(state.clone())
        .into_factory()
        .new_service(AppConfig::default())
        .await
    {
        Ok(app) => app,
        Err(()) => {
            report.stopped = Some("the app could not be built".into());
            return report;
        }
    };
    let deadline = started + Duration::from_secs(options.timeout_secs);
    let (mut concurrency, mut baseline): (usize, Option<Duration>) = (MAX_CONCURRENCY, None);
    let mut done = 0;
    while done < plan.len() {
        if Instant::now() >= deadline {
            report.stopped = Some(format!("timeout after {} s", options.timeout_secs));
            break;
        }
        if let Some((_, bytes, max)) = state.cache.local_size() {
            if bytes as f64 >= FULL * max as f64 {
                report.stopped = Some(format!(
                    "the in-process cache is near its bound ({bytes} of {max} bytes): warming more would evict hotter entries"
                ));
                break;
            }
        }
        let batch = &plan[done..(done + concurrency).min(plan.len())];
        let calls = batch.iter().map(|(_, path)| {
            let req = warm_request(path, &state.warm_token, options.force);
            let app = &app;
            async move {
                let began = Instant::now();
                let res = match req {
                    Some(req) => app.call(req).await,
                    None => Err(actix_web::error::ErrorBadRequest("not a path")),
                };
                (res, began.elapsed())
            }
        });
        let results = futures_util::future::join_all(calls).await;
        let mut slowest = Duration::ZERO;
        for ((priority, path), (res, took)) in batch.iter().zip(results) {
            slowest = slowest.max(took);
            let outcome = match res {
                Ok(res) if res.status().is_success() => {
                    let hit = res
                        .headers()
                        .get("x-cache")
                        .is_some_and(|v| v.as_bytes() == b"HIT");
                    Ok(hit)
                }
                Ok(res) => Err(format!("status {}", res.status())),
                Err(e) => Err(e.to_string()),
            };
            let by_type = report
                .by_type
                .entry(WarmType::of(path).name().to_string())
                .or_default();
            match &outcome {
                Ok(true) => by_type.skipped += 1,
                Ok(false) => by_type.warmed += 1,
                Err(_) => by_type.failed += 1,
            }
            let by_priority = report
                .by_priority
                .entry(format!("p{priority}"))
                .or_default();
            match outcome {
                Ok(true) => by_priority.skipped += 1,
                Ok(false) => by_priority.warmed += 1,
                Err(error) => {
                    by_priority.failed += 1;
                    report.failures.push(Failure {
                        path: path.clone(),
                        error,
                    });
                }
            }
            done += 1;
            report.items += 1;
            progress(done, plan.len(), path);
        }
        // Back off when the site answers slower than when warming began.
        let base = *baseline.get_or_insert(slowest.max(Duration::from_millis(1)));
        if slowest > base * SLOWDOWN {
            concurrency = (concurrency / 2).max(1);
            tokio::time::sleep(slowest).await;
        } else if concurrency < MAX_CONCURRENCY {
            concurrency += 1;
        }
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

/// A GET of `path` marked as this process's warm request (and a prefetch: no view).
fn warm_request(path: &str, token: &str, force: bool) -> Option<actix_http::Request> {
    let mut req = actix_http::Request::new();
    let head = req.head_mut();
    head.method = actix_web::http::Method::GET;
    head.uri = path.parse().ok()?;
    let headers = &mut head.headers;
    headers.insert(
        HeaderName::from_static(WARM_HEADER),
        HeaderValue::from_str(token).ok()?,
    );
    headers.insert(
        HeaderName::from_static("sec-purpose"),
        HeaderValue::from_static("prefetch"),
    );
    if force {
        headers.insert(
            HeaderName::from_static(FORCE_HEADER),
            HeaderValue::from_static("1"),
        );
    }
    Some(req)
}

/// Warms at start-up in the background (the server answers meanwhile) and logs it.
pub fn on_start(state: web::Data<AppState>) {
    actix_web::rt::spawn(async move {
        let report = warm(state, &WarmOptions::default(), &|_, _, _| {}).await;
        let t = report.totals();
        tracing::info!(
            warmed = t.warmed,
            skipped = t.skipped,
            failed = t.failed,
            ms = report.duration_ms,
            stopped = report.stopped.as_deref().unwrap_or(""),
            "start-up warming done: {} items warmed in {} ms",
            t.warmed,
            report.duration_ms
        );
    });
}

/// After this process's writes, re-warms the critical path they dropped and the most
/// searched queries, so the next visitor after an edit gets a hit. Stops when the state is dropped.
pub fn after_invalidations(state: web::Data<AppState>) {
    let mut writes = state.cache.subscribe_writes();
    let weak = std::sync::Arc::downgrade(&state.into_inner());
    actix_web::rt::spawn(async move {
        while writes.changed().await.is_ok() {
            // Several writes in a row (a form saving a post and its tags): warm once.
            tokio::time::sleep(Duration::from_millis(50)).await;
            writes.mark_unchanged();
            let Some(state) = weak.upgrade() else { return };
            let options = WarmOptions {
                max_priority: 1,
                timeout_secs: 10,
                ..WarmOptions::default()
            };
            let state = web::Data::from(state);
            let report = warm(state.clone(), &options, &|_, _, _| {}).await;
            // And the most searched queries: a write dropped every search result.
            let searches = WarmOptions {
                kind: WarmType::Search,
                max_priority: 2,
                timeout_secs: 10,
                ..WarmOptions::default()
            };
            let searched = match state.repo.search_counts().is_empty() {
                true => WarmReport::default(),
                false => warm(state, &searches, &|_, _, _| {}).await,
            };
            tracing::debug!(
                warmed = report.totals().warmed,
                searches = searched.totals().warmed,
                "re-warmed after a write"
            );
        }
    });
}

/// `warm` as `AppState::warm` holds it: the admin endpoint warms through it (warming
/// builds the app that holds that endpoint, so the endpoint cannot call `warm` itself).
pub fn run(
    state: web::Data<AppState>,
    options: WarmOptions,
) -> futures_util::future::LocalBoxFuture<'static, WarmReport> {
    Box::pin(async move { warm(state, &options, &|_, _, _| {}).await })
}
