//! Whole pages for anonymous readers: served from the cache with no query and no
//! render, dropped by the same writes as everything under them, answered with 304s from
//! metadata, Last-Modified that never gives a wrong 304, post views counted off the hot
//! path, and stale copies when the database is gone.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::helpers::{personal_info, spawn_app_with, Backend, TestApp};

use crate::on_both_app_caches;

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Queries run, fragment loads and fragment renders so far.
fn work(app: &TestApp) -> (u64, u64, u64) {
    let f = &app.state.fragments.stats;
    (
        app.state.repo.db().stats.queries(),
        f.loads.load(Relaxed),
        f.renders.load(Relaxed),
    )
}

async fn get_with(app: &TestApp, path: &str, name: &str, value: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header(name, value)
        .send()
        .await
        .unwrap()
}

const POST: &str = "/blog/stampedes-and-single-flight/";

on_both_app_caches! {
    async fn pages_are_served_whole_and_dropped_by_the_writes_under_them(app: TestApp) {
        for path in ["/", "/blog/", POST, "/about/", "/tools/", "/blog/tag/caching/", "/feed.xml", "/sitemap.xml"] {
            let first = app.get(path).await;
            assert_eq!(first.status(), 200, "{path}");
            assert_eq!(header(first.headers(), "cache-status"), "folio; fwd=miss; stored", "{path}");
            let first_id = header(first.headers(), "x-request-id");
            let body = first.text().await.unwrap();
            let before = work(&app);
            let second = app.get(path).await;
            assert_eq!(header(second.headers(), "x-cache"), "HIT", "{path}");
            // Served before the session and tracing layers, and still dressed as any
            // other response.
            assert_eq!(header(second.headers(), "x-request-id").len(), 36, "{path}");
            assert_ne!(header(second.headers(), "x-request-id"), first_id, "{path}");
            assert!(header(second.headers(), "content-security-policy").contains("default-src"), "{path}");
            assert!(header(second.headers(), "cache-status").starts_with("folio; hit; ttl="), "{path}");
            assert_eq!(second.text().await.unwrap(), body, "{path}: the same bytes");
            assert_eq!(work(&app), before, "{path}: no query, no load, no render");
        }
        // A write drops the pages that show it (traced: nothing declared per page) …
        let repo = &app.state.repo;
        let tool = repo.ai_tools(&Default::default()).await.unwrap().into_iter().find(|t| t.slug == "claude").unwrap();
        let edited = folio::content::models::NewAiTool {
            name: tool.name, slug: tool.slug, url: tool.url,
            description: "A description written just now".into(),
            category: tool.category, featured: true, sort_order: tool.sort_order,
        };
        repo.save_ai_tool(Some(tool.id), &edited).await.unwrap();
        for path in ["/", "/tools/"] {
            let res = app.get(path).await;
            assert_eq!(header(res.headers(), "x-cache"), "MISS", "{path}");
            assert!(res.text().await.unwrap().contains("A description written just now"), "{path}");
        }
        // … and keeps the others.
        assert_eq!(header(app.get("/about/").await.headers(), "x-cache"), "HIT");
        assert_eq!(header(app.get(POST).await.headers(), "x-cache"), "HIT");
        // Pages that differ per visitor are never stored.
        for _ in 0..2 {
            let res = app.get("/contact/").await;
            assert_ne!(header(res.headers(), "x-cache"), "HIT");
        }
        // Signed-in admins see the site past the cache.
        app.sign_in_admin().await;
        let res = app.get("/").await;
        assert_eq!(header(res.headers(), "cache-status"), "folio; fwd=bypass");
    }

    async fn concurrent_misses_of_a_page_render_it_once(app: TestApp) {
        let requests = (0..24).map(|_| app.get("/blog/"));
        let statuses: Vec<String> = futures_util::future::join_all(requests)
            .await
            .iter()
            .map(|res| header(res.headers(), "cache-status"))
            .collect();
        let rendered = statuses.iter().filter(|s| s.contains("fwd=miss")).count();
        assert_eq!(rendered, 1, "one render, the others waited for it: {statuses:?}");
        // The others waited for that render ("collapsed") or came after it (a plain hit;
        // how many overlap depends on how fast the connections open).
        assert!(statuses.iter().filter(|s| !s.contains("fwd=miss")).all(|s| s.starts_with("folio; hit")), "{statuses:?}");
    }

    async fn a_304_for_a_page_is_answered_from_metadata(app: TestApp) {
        let first = app.get("/about/").await;
        let etag = header(first.headers(), "etag");
        assert_eq!(header(first.headers(), "cache-control"), "no-cache");
        let before = work(&app);
        let res = get_with(&app, "/about/", "if-none-match", &etag).await;
        assert_eq!(res.status(), 304);
        assert_eq!(header(res.headers(), "etag"), etag);
        assert_eq!(work(&app), before, "nothing rendered or queried for a 304");
        let res = get_with(&app, "/about/", "if-none-match", &format!("W/{etag}, \"other\"")).await;
        assert_eq!(res.status(), 304, "weak comparison, lists");
        let res = get_with(&app, "/about/", "if-none-match", "\"other\"").await;
        assert_eq!(res.status(), 200);
        // A miss that matches is a 304 too.
        app.state.repo.save_personal_info(&personal_info("Same page, new headline".into())).await.unwrap();
        let res = get_with(&app, "/about/", "if-none-match", &etag).await;
        assert_eq!(res.status(), 200, "the page changed");
        let new_etag = header(res.headers(), "etag");
        app.state.repo.save_personal_info(&personal_info("Same page, new headline".into())).await.unwrap();
        let res = get_with(&app, "/about/", "if-none-match", &new_etag).await;
        assert_eq!((res.status().as_u16(), header(res.headers(), "x-cache")), (304, "MISS".into()), "rebuilt, same bytes");
    }

    async fn if_modified_since_never_gets_a_wrong_304(app: TestApp) {
        let path = "/about/";
        app.get(path).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let res = app.get(path).await;
        let modified = header(res.headers(), "last-modified");
        assert!(!modified.is_empty(), "sent once the second it was made is over");
        let res = get_with(&app, path, "if-modified-since", &modified).await;
        assert_eq!(res.status(), 304);

        // Two edits within one second, each read back at once: neither answer carries a
        // Last-Modified a client could send back while the other is current.
        for n in 1..=2 {
            app.state.repo.save_personal_info(&personal_info(format!("Quick edit {n}"))).await.unwrap();
            let res = get_with(&app, path, "if-modified-since", &modified).await;
            assert_eq!(res.status(), 200, "edit {n}: changed since {modified}");
            let stamp = header(res.headers(), "last-modified");
            assert!(stamp.is_empty() || stamp != modified, "edit {n}: {stamp}");
            assert!(res.text().await.unwrap().contains(&format!("Quick edit {n}")));
        }
        // A deleted row changes it too (no row's timestamp could say so).
        let link = app.state.repo.social_links(true).await.unwrap()[0].clone();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let settled = header(app.get(path).await.headers(), "last-modified");
        assert!(app.state.repo.delete_social_link(link.id).await.unwrap());
        let res = get_with(&app, path, "if-modified-since", &settled).await;
        assert_eq!(res.status(), 200, "a deleted link changes the page");
        assert!(!res.text().await.unwrap().contains(&link.url));
    }
}

on_both_app_caches! {
    with &[("VIEW_FLUSH_INTERVAL", "1")];

    async fn views_are_counted_in_memory_and_written_in_batches(app: TestApp) {
        let stored = |app: &TestApp| {
            let repo = app.state.repo.clone();
            async move {
                let id = repo.post_by_slug("stampedes-and-single-flight", false).await.unwrap().unwrap().summary.id;
                repo.post_for_edit(id).await.unwrap().unwrap().0.summary.view_count
            }
        };
        let start = stored(&app).await;
        let etag = header(app.get(POST).await.headers(), "etag");
        for _ in 0..4 {
            let res = app.get(POST).await;
            assert_eq!(header(res.headers(), "x-cache"), "HIT", "counted on hits too");
        }
        // Not views: HEAD, a revalidation, a prefetch.
        app.client.head(app.url(POST)).send().await.unwrap();
        assert_eq!(get_with(&app, POST, "if-none-match", &etag).await.status(), 304);
        get_with(&app, POST, "sec-purpose", "prefetch").await;
        get_with(&app, POST, "purpose", "prefetch").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while stored(&app).await != start + 5 {
            assert!(std::time::Instant::now() < deadline, "5 views written within the flush interval, got {}", stored(&app).await - start);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(app.state.views.pending(), 0);
        // The batch dropped the post's page: readers see the new count at once.
        let html = app.get_text(POST).await.1;
        assert!(html.contains(&format!("{} views", start + 5)), "the page shows the written count");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(stored(&app).await, start + 6, "and that view is written too");
    }
}

/// With the database gone, a page whose copy expired within STALE_IF_ERROR is served
/// stale (marked so); a page never cached gets the 503 page; both recover with it.
mod stale_if_error {
    use super::*;
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

    /// Refuses new connections to the app's database and ends the open ones (ALLOW_CONNECTIONS).
    async fn database_reachable(app: &TestApp, reachable: bool) {
        let admin = std::env::var("TEST_DATABASE_URL").unwrap();
        let url = url::Url::parse(&app.state.config.database_url.to_url()).unwrap();
        let name = url.path().trim_start_matches('/').to_string();
        let mut conn = AsyncPgConnection::establish(&admin).await.unwrap();
        conn.batch_execute(&format!(
            "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {reachable}"
        ))
        .await
        .unwrap();
        if !reachable {
            conn.batch_execute(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ))
            .await
            .unwrap();
        }
    }

    async fn run(extra: &[(&str, &str)]) {
        // Everything but the page copy expires after a second.
        let ttls = "personal_info=1,social_links=1,tools=1,post=1,posts=1,tags=1,fragment=1,response=1,popular=1";
        let mut vars = vec![
            ("PAGE_CACHE_TTL", "1"),
            ("STALE_IF_ERROR", "60"),
            ("CACHE_TTLS", ttls),
            ("RESPONSE_CACHE_TTL", "1"),
        ];
        vars.extend_from_slice(extra);
        let Some(app) = spawn_app_with(Backend::Postgres, &vars).await else {
            return;
        };
        let body = app.get_text("/about/").await.1;
        let api = app.get_text("/api/personal-info/").await.1;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        database_reachable(&app, false).await;

        let res = app.get("/about/").await;
        assert_eq!(res.status(), 200, "served stale");
        assert_eq!(header(res.headers(), "x-cache"), "STALE");
        assert_eq!(
            header(res.headers(), "cache-status"),
            "folio; fwd=stale; fwd-status=503"
        );
        assert_eq!(res.text().await.unwrap(), body);
        let res = app.get("/api/personal-info/").await;
        assert_eq!(
            (res.status().as_u16(), header(res.headers(), "x-cache")),
            (200, "STALE".into())
        );
        assert_eq!(res.text().await.unwrap(), api);
        let res = app.get("/blog/tag/caching/").await;
        assert_eq!(res.status(), 503, "never cached");
        assert!(
            res.text()
                .await
                .unwrap()
                .contains("Temporarily unavailable"),
            "the 503 page"
        );

        database_reachable(&app, true).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let res = app.get("/blog/tag/caching/").await;
            if res.status() == 200 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "recovers with the database"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            header(app.get("/about/").await.headers(), "x-cache"),
            "MISS",
            "fresh again"
        );
    }

    #[actix_web::test]
    async fn memory_cache() {
        run(&[]).await
    }

    #[actix_web::test]
    async fn redis_cache() {
        let Some(url) = crate::helpers::test_redis_url() else {
            return;
        };
        let prefix = crate::helpers::unique_prefix();
        run(&[
            ("CACHE_URL", &url),
            ("CACHE_KEY_PREFIX", &prefix),
            ("CACHE_TIMEOUT_MS", "2000"),
        ])
        .await
    }
}

/// SIGTERM: requests in flight finish and counted views are written before the
/// process exits.
#[test]
fn sigterm_writes_counted_views() {
    use std::process::Command;
    let dir = tempfile::TempDir::new().unwrap();
    let db = format!("sqlite://{}", dir.path().join("folio.db").display());
    let (mut child, port) = start_binary(&dir, &db, &[("VIEW_FLUSH_INTERVAL", "3600")]);
    let url = format!("http://127.0.0.1:{port}{POST}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seeded: i64 = rt.block_on(async {
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let first = loop {
            if let Ok(res) = client.get(&url).send().await {
                break res.text().await.unwrap();
            }
            assert!(std::time::Instant::now() < deadline, "the server starts");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for _ in 0..6 {
            assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
        }
        // "· N views" as the fixtures left it
        let before = first.split(" view").next().unwrap();
        before.rsplit(' ').next().unwrap().parse().unwrap()
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success(), "a clean exit");
    let views = rt.block_on(async {
        let db = folio::db::Db::connect(&folio::config::DatabaseUrl::parse(&db).unwrap())
            .await
            .unwrap();
        let repo = folio::content::Repository::new(db, folio::cache::CacheManager::in_memory("t"));
        let id = repo
            .post_by_slug("stampedes-and-single-flight", false)
            .await
            .unwrap()
            .unwrap()
            .summary
            .id;
        repo.post_for_edit(id)
            .await
            .unwrap()
            .unwrap()
            .0
            .summary
            .view_count
    });
    assert_eq!(
        views,
        seeded + 7,
        "the first request and six more, none lost"
    );
}

/// SIGTERM with Redis: the statistics counted since the last periodic flush reach the
/// site-wide totals other instances read (nothing counted is lost at shutdown).
#[test]
fn sigterm_flushes_statistics() {
    use std::process::Command;
    let Some(redis_url) = crate::helpers::test_redis_url() else {
        return;
    };
    let prefix = crate::helpers::unique_prefix();
    let dir = tempfile::TempDir::new().unwrap();
    let db = format!("sqlite://{}", dir.path().join("folio.db").display());
    let (mut child, port) = start_binary(
        &dir,
        &db,
        &[
            ("CACHE_URL", &redis_url),
            ("CACHE_KEY_PREFIX", &prefix),
            (
                "SECRET_KEY",
                "test-secret-key-that-is-long-enough-for-cookies-0123456789",
            ),
            ("WARM_ON_START", "false"),
        ],
    );
    let url = format!("http://127.0.0.1:{port}/about/");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while client.get(&url).send().await.is_err() {
            assert!(std::time::Instant::now() < deadline, "the server starts");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for _ in 0..30 {
            assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
        }
    });
    // At once: well within the periodic flush's second.
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(child.wait().unwrap().success(), "a clean exit");
    let (hits, cache) = rt.block_on(async {
        let mut config = folio::cache::CacheConfig::new(
            folio::cache::CacheUrl::Redis(redis_url.clone()),
            &prefix,
        );
        config.timeout = Duration::from_secs(2);
        let cache = folio::cache::CacheManager::new(config).unwrap();
        cache
            .check(Duration::from_secs(5))
            .await
            .expect("redis answers");
        let site = cache.site_stats().await;
        let page = site
            .families
            .iter()
            .find(|f| f.name == "page")
            .map_or(0, |f| f.hits);
        (page, cache)
    });
    // Each of the 30 page hits is two lookups (metadata, then body).
    assert_eq!(
        hits, 60,
        "every page hit of the stopped instance is in the site totals"
    );
    rt.block_on(async {
        cache.clear().await;
        cache.reset_site_stats().await;
    });
}

/// The real binary serving on a free port, isolated from the developer's environment.
pub(crate) fn start_binary(
    dir: &tempfile::TempDir,
    db: &str,
    extra: &[(&str, &str)],
) -> (std::process::Child, u16) {
    use std::process::{Command, Stdio};
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(env!("CARGO_BIN_EXE_folio"))
        .env_clear()
        .env("DATABASE_URL", db)
        .env("DATA_DIR", dir.path())
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("WORKERS", "1")
        .envs(extra.iter().copied())
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, port)
}
