//! Cache analytics kept in the database: written per minute and hour by each instance,
//! shown after a restart, added up over instances, pruned.

use std::time::{Duration, Instant};

use crate::helpers::{spawn_app_with, Backend, TestApp};

const FLUSH_EVERY_SECOND: &[(&str, &str)] = &[("HISTORY_FLUSH_INTERVAL", "1")];

/// The history over `range`, as an admin's script reads it.
async fn history(app: &TestApp, range: &str) -> serde_json::Value {
    let (status, body) = app
        .get_admin_json(&format!("/api/cache/history/?range={range}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Hits and misses of every family over the range, all instances.
fn lookups(history: &serde_json::Value) -> u64 {
    history["families"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|points| points.as_array().unwrap())
        .map(|p| p["hits"].as_u64().unwrap() + p["misses"].as_u64().unwrap())
        .sum()
}

/// This process's own lookups since it started, per its statistics.
fn own_lookups(app: &TestApp) -> u64 {
    app.state
        .cache
        .stats()
        .families
        .iter()
        .map(|f| f.hits + f.misses)
        .sum()
}

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(15), "{what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What an instance wrote before it stopped, a new process shows: counters per family,
/// requests and latency per route, the instance's memory.
async fn outlives_a_restart(app: TestApp) {
    for _ in 0..5 {
        app.get("/").await;
        app.get("/api/posts/").await;
    }
    until("the traffic is written", || async {
        let h = history(&app, "1h").await;
        lookups(&h) >= own_lookups(&app) && lookups(&h) > 0
    })
    .await;
    let written = lookups(&history(&app, "1h").await);
    // A new process on the same database: nothing of this in its memory.
    // The same site: the same cache (one cache per database).
    let url = match &app.state.config.cache.url {
        folio::cache::CacheUrl::Redis(url) => Some(url.clone()),
        _ => None,
    };
    let prefix = app.state.config.cache.key_prefix.clone();
    let mut vars: Vec<(&str, &str)> = FLUSH_EVERY_SECOND.to_vec();
    if let Some(url) = &url {
        vars.extend([
            ("CACHE_URL", url.as_str()),
            ("CACHE_KEY_PREFIX", prefix.as_str()),
        ]);
    }
    let restarted = app.second_instance(&vars).await;
    assert_eq!(own_lookups(&restarted), 0);
    let h = history(&restarted, "1h").await;
    assert!(lookups(&h) >= written, "{} < {written}", lookups(&h));
    let posts = h["routes"]["/api/posts/"]
        .as_array()
        .expect("the route's history");
    let requests: u64 = posts.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert!(requests >= 5, "{posts:?}");
    let p99 = posts
        .iter()
        .find_map(|p| p["p99_ms"].as_f64())
        .expect("a p99");
    assert!(p99 > 0.0 && p99 < 10_000.0, "{p99}");
    let site = h["site"].as_array().unwrap();
    assert!(site.iter().any(|p| p["instances"].as_u64().unwrap() >= 1));
    assert_eq!(h["resolution_seconds"], 60);
    // Hours too, for the long ranges.
    let week = history(&restarted, "7d").await;
    assert_eq!(week["resolution_seconds"], 3600);
    assert!(lookups(&week) >= written);
}

#[actix_web::test]
async fn history_outlives_a_restart_sqlite_in_process() {
    outlives_a_restart(
        spawn_app_with(Backend::Sqlite, FLUSH_EVERY_SECOND)
            .await
            .unwrap(),
    )
    .await
}

#[actix_web::test]
async fn history_outlives_a_restart_postgres_redis() {
    let Some(url) = crate::helpers::test_redis_url() else {
        return;
    };
    let prefix = crate::helpers::unique_prefix();
    let vars = [
        ("CACHE_URL", url.as_str()),
        ("CACHE_KEY_PREFIX", prefix.as_str()),
        ("HISTORY_FLUSH_INTERVAL", "1"),
    ];
    let Some(app) = spawn_app_with(Backend::Postgres, &vars).await else {
        return;
    };
    let cache = app.state.cache.clone();
    outlives_a_restart(app).await;
    cache.clear().await;
}

/// Two instances behind a balancer: the history is the sum of both.
#[actix_web::test]
async fn two_instances_history_adds_up() {
    let Some((a, b)) =
        crate::helpers::two_instances_on_redis(Backend::Postgres, FLUSH_EVERY_SECOND).await
    else {
        return;
    };
    for _ in 0..7 {
        a.get("/about/").await;
    }
    for _ in 0..5 {
        b.get("/tools/").await;
        b.get("/api/ai-tools/").await;
    }
    until("both instances' lookups, added up", || async {
        lookups(&history(&a, "1h").await) == own_lookups(&a) + own_lookups(&b)
    })
    .await;
    assert!(own_lookups(&a) > 0 && own_lookups(&b) > 0);
    let h = history(&b, "24h").await;
    assert_eq!(lookups(&h), own_lookups(&a) + own_lookups(&b));
    // Both wrote their rows for the minutes they ran (the latest minute may hold only
    // the first to flush after it began).
    let site = h["site"].as_array().unwrap();
    assert!(site.iter().any(|p| p["instances"] == 2), "{site:?}");
    a.state.cache.clear().await;
}

/// Only admins read it; a range it does not keep is a 400 naming the parameter.
#[actix_web::test]
async fn history_is_for_admins_and_checks_its_range() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    assert_eq!(app.get("/api/cache/history/").await.status(), 401);
    let (status, body) = app.get_admin_json("/api/cache/history/?range=2d").await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("range"), "{body}");
    let (status, body) = app.get_admin_json("/api/cache/history/").await;
    assert_eq!((status, &body["range"]), (200, &serde_json::json!("1h")));
}

/// Minutes are kept 7 days and hours 90: older rows go at the next write.
#[actix_web::test]
async fn old_history_is_pruned() {
    use folio::content::repository::rollups::Rollup;
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    let now = folio::content::repository::now();
    let row = |resolution: i32, age: chrono::TimeDelta| Rollup {
        resolution,
        bucket: now - age,
        instance: "gone-1".into(),
        series: "family".into(),
        name: "page".into(),
        hits: 3,
        misses: 1,
        stale: 0,
        fills: 1,
        fill_ms: 2.0,
        requests: 0,
        latency_buckets: String::new(),
        memory_bytes: None,
        breaker_open: None,
    };
    let repo = &app.state.repo;
    repo.save_rollups(&[
        row(60, chrono::TimeDelta::days(8)),
        row(60, chrono::TimeDelta::days(6)),
        row(3600, chrono::TimeDelta::days(91)),
        row(3600, chrono::TimeDelta::days(80)),
    ])
    .await
    .unwrap();
    app.state.analytics.flush(repo).await.unwrap();
    let since = now - chrono::TimeDelta::days(100);
    let minutes = repo.rollups_since(60, since).await.unwrap();
    let hours = repo.rollups_since(3600, since).await.unwrap();
    let gone = |rows: &[Rollup]| rows.iter().filter(|r| r.instance == "gone-1").count();
    assert_eq!((gone(&minutes), gone(&hours)), (1, 1));
    // What a week shows is the hour kept, merged with this instance's own.
    let week = history(&app, "90d").await;
    assert!(week["families"]["page"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["hits"] == 3));
}

/// The dashboard charts the stored history, over the range the admin picks.
#[cfg(feature = "browser-tests")]
#[actix_web::test]
async fn the_dashboard_charts_the_history_over_a_chosen_range() {
    use fantoccini::Locator;
    let Some((_driver, port)) = crate::dashboard::start_chromedriver() else {
        return;
    };
    let app = spawn_app_with(Backend::Sqlite, FLUSH_EVERY_SECOND)
        .await
        .unwrap();
    let hash = folio::web::admin::hash_password("correct-horse-battery").unwrap();
    app.state.repo.upsert_admin("ada", &hash).await.unwrap();
    for _ in 0..5 {
        app.get("/").await;
    }
    until("written", || async {
        lookups(&history(&app, "1h").await) > 0
    })
    .await;
    let profile = tempfile::TempDir::new().unwrap();
    let browser = crate::dashboard::chromium(port, &profile).await;
    let run = async {
        crate::dashboard::sign_in(&browser, &app, "/admin/").await?;
        browser
            .wait()
            .for_element(Locator::Css("a[href='/admin/cache/']"))
            .await?;
        browser.goto(&app.url("/admin/cache/")).await?;
        let status = || async {
            browser
                .find(Locator::Id("history-status"))
                .await?
                .text()
                .await
        };
        let started = Instant::now();
        while !status().await?.ends_with("one per minute") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{}",
                status().await?
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A line is drawn (the chart has its polyline once there are two points, or
        // says why not).
        let ratio = browser.find(Locator::Id("history-ratio")).await?;
        let drawn = ratio.find_all(Locator::Css("polyline, text")).await?;
        assert!(!drawn.is_empty());
        // The database and cache analysis is there too (the statements behind the
        // pages just served).
        let started = Instant::now();
        loop {
            let cells = crate::dashboard::first_row(&browser, "statements").await?;
            if cells.len() == 4 && cells[0].parse::<u64>().is_ok_and(|calls| calls > 0) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{cells:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        browser
            .find(Locator::Css("#history-range option[value='7d']"))
            .await?
            .click()
            .await?;
        let started = Instant::now();
        while !status().await?.ends_with("one per hour") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{}",
                status().await?
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, fantoccini::error::CmdError>(())
    };
    let result = run.await;
    let _ = browser.close().await;
    result.expect("the history in a browser");
}
