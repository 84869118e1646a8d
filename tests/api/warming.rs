//! Warming and the cache API: who may warm and clear, what a bad pattern gets, start-up
//! warming that does not delay the first reader, re-warming after an edit, the `warm`
//! command, and hit ratios over windows that follow the traffic.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{csrf_token, spawn_app_with, Backend, TestApp, ADMIN_TOKEN};
use crate::on_both_app_caches;

async fn post_json(app: &TestApp, path: &str, body: Value, bearer: Option<&str>) -> (u16, Value) {
    let mut req = app.client.post(app.url(path)).json(&body);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn x_cache(res: &reqwest::Response) -> String {
    res.headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

on_both_app_caches! {
    async fn warm_and_clear_are_for_admins_only(app: TestApp) {
        for path in ["/api/cache/warm/", "/api/cache/clear/"] {
            let (status, body) = post_json(&app, path, json!({"all": true}), None).await;
            assert_eq!(status, 401, "{path}: anonymous");
            assert_eq!(body["error"]["code"], "unauthorized");
            let (status, _) = post_json(&app, path, json!({"all": true}), Some("wrong-token")).await;
            assert_eq!(status, 403, "{path}: a wrong token");
        }
        // A signed-in admin needs the CSRF token too.
        app.sign_in_admin().await;
        let (status, _) = post_json(&app, "/api/cache/clear/", json!({"pattern": "fragment:*"}), None).await;
        assert_eq!(status, 403, "no CSRF token");
        let token = csrf_token(&app.get_text("/admin/posts/new/").await.1);
        let res = app.client.post(app.url("/api/cache/clear/")).header("x-csrf-token", token).json(&json!({"pattern": "fragment:*"})).send().await.unwrap();
        assert_eq!(res.status(), 200, "admin with CSRF");
    }

    async fn warming_fills_the_site_and_reports_it(app: TestApp) {
        app.seed_generated(30).await;
        let (status, report) = post_json(&app, "/api/cache/warm/", json!({"type": "all"}), Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200, "{report}");
        let warmed = |t: &str| report["by_type"][t]["warmed"].as_u64().unwrap_or(0);
        assert!(warmed("blog") > 30 && warmed("main") >= 4 && warmed("api") >= 4, "{report}");
        assert_eq!(report["failures"], json!([]));
        assert_eq!(report["by_priority"]["p1"]["warmed"], 1, "the home page first");
        // Readers now hit, and counted no view for the warm requests.
        for path in ["/", "/blog/", "/blog/?page=2", "/blog/tag/caching/", "/api/posts/", "/feed.xml"] {
            assert_eq!(x_cache(&app.get(path).await), "HIT", "{path}");
        }
        assert_eq!(app.state.views.pending(), 0, "warming counts no views");
        // Again: everything is already warm; with force, rebuilt.
        let (_, again) = post_json(&app, "/api/cache/warm/", json!({"type": "api"}), Some(ADMIN_TOKEN)).await;
        assert_eq!(again["by_type"]["api"]["warmed"], 0, "{again}");
        assert!(again["by_type"]["api"]["skipped"].as_u64().unwrap() >= 4);
        let (_, forced) = post_json(&app, "/api/cache/warm/", json!({"type": "api", "force": true}), Some(ADMIN_TOKEN)).await;
        assert_eq!(forced["by_type"]["api"]["skipped"], 0, "{forced}");
        // How well it paid: some warmed entries were hit.
        let (_, stats) = app.get_admin_json("/api/cache/stats/").await;
        assert!(stats["warming"]["effectiveness"].as_f64().unwrap() > 0.0, "{}", stats["warming"]);
    }

    async fn bad_patterns_get_a_400_and_clear_nothing(app: TestApp) {
        app.get("/").await;
        for body in [json!({}), json!({"pattern": ""}), json!({"pattern": "*"}), json!({"pattern": "**"}), json!({"pattern": "*?*"}), json!({"patern": "x"})] {
            let (status, answer) = post_json(&app, "/api/cache/clear/", body.clone(), Some(ADMIN_TOKEN)).await;
            assert_eq!(status, 400, "{body}: {answer}");
            assert!(answer["error"]["message"].as_str().unwrap().len() > 10);
        }
        let res = app.client.post(app.url("/api/cache/clear/")).bearer_auth(ADMIN_TOKEN).header("content-type", "application/json").body("{not json").send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert_eq!(x_cache(&app.get("/").await), "HIT", "nothing was cleared");
        let (status, answer) = post_json(&app, "/api/cache/clear/", json!({"pattern": "page:*"}), Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200);
        assert!(answer["deleted"].as_u64().unwrap() >= 1, "{answer}");
        assert_eq!(x_cache(&app.get("/").await), "MISS", "the pages were cleared");
        let (status, _) = post_json(&app, "/api/cache/clear/", json!({"all": true}), Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200);
    }

    async fn window_ratios_follow_the_traffic(app: TestApp) {
        let ratio = |stats: &Value, w: &str| stats["windows"][w]["hit_ratio"].as_f64();
        // Misses only: every page once, bypassing nothing.
        for n in 1..=5 {
            app.get(&format!("/blog/?page={n}")).await;
        }
        let (_, cold) = app.get_admin_json("/api/cache/stats/").await;
        for _ in 0..200 {
            app.get("/about/").await;
        }
        let (_, warm) = app.get_admin_json("/api/cache/stats/").await;
        let (before, after) = (ratio(&cold, "1m").unwrap(), ratio(&warm, "1m").unwrap());
        assert!(after > before + 0.2, "1 min ratio moved from {before} to {after}");
        assert!(ratio(&warm, "1h").is_some() && warm["instance"]["hit_ratio"].is_number());
        assert!(warm["history"].is_array());
    }
}

on_both_app_caches! {
    with &[("WARM_AFTER_INVALIDATION", "true")];

    async fn the_next_visitor_after_an_edit_gets_a_hit(app: TestApp) {
        assert_eq!(x_cache(&app.get("/").await), "MISS");
        let link = folio::content::models::NewSocialLink { name: "Bluesky".into(), url: "https://bsky.app/profile/rewarm".into(), icon: "bluesky".into(), sort_order: 9, visible: true };
        assert!(app.state.repo.ensure_social_link(&link).await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // Through the stats, not a request: a request would warm it itself.
            let warmed = app.state.warming.stored.load(std::sync::atomic::Ordering::Relaxed);
            if warmed > 0 { break; }
            assert!(Instant::now() < deadline, "re-warmed in the background");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let res = app.get("/").await;
        assert_eq!(x_cache(&res), "HIT", "the visitor after the edit");
        assert!(res.text().await.unwrap().contains("https://bsky.app/profile/rewarm"), "and it shows the edit");
    }
}

/// Start-up warming runs in the background: the first reader is answered at once, and
/// pages nobody asked for yet are hits soon after.
#[actix_web::test]
async fn startup_warming_does_not_delay_the_first_reader() {
    let started = Instant::now();
    let app = spawn_app_with(Backend::Sqlite, &[("WARM_ON_START", "true")])
        .await
        .unwrap();
    let res = app.get("/contact/").await;
    assert_eq!(res.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, stats) = app.get_admin_json("/api/cache/stats/").await;
        if stats["warming"]["stored"].as_u64().unwrap_or(0) >= 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "warmed in the background: {}",
            stats["warming"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Warming goes down its plan in batches of at most four: with ten stored, at least
    // the first six are done, `/about/` (third) among them. A tag page comes later.
    assert_eq!(x_cache(&app.get("/about/").await), "HIT");
}

/// `folio warm` against memory:// asks the running server and says so.
#[actix_web::test]
async fn the_warm_command_asks_a_memory_server() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_folio"))
        .env_clear()
        .current_dir(dir.path())
        .args(["warm", "--type=api", "--url", &app.address])
        .env("CACHE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("DATA_DIR", dir.path())
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("asks it to warm itself"), "{stderr}");
    assert!(
        stdout.contains("api") && stdout.contains("total"),
        "{stdout}"
    );
    assert_eq!(x_cache(&app.get("/api/posts/").await), "HIT");
    // Without the token: a clear error, a failing exit.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_folio"))
        .env_clear()
        .current_dir(dir.path())
        .args(["warm", "--url", &app.address])
        .env("DATA_DIR", dir.path())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CACHE_ADMIN_TOKEN"));
}

/// `folio warm` with Redis warms the shared cache from its own process, through the
/// same application code; the running site then hits.
#[actix_web::test]
async fn the_warm_command_warms_a_shared_redis() {
    let Some(url) = crate::helpers::test_redis_url() else {
        return;
    };
    let prefix = crate::helpers::unique_prefix();
    let cache = [
        ("CACHE_URL", url.as_str()),
        ("CACHE_KEY_PREFIX", prefix.as_str()),
    ];
    let app = spawn_app_with(Backend::Sqlite, &cache).await.unwrap();
    let config = &app.state.config;
    let database_url = config.database_url.to_url();
    let data_dir = config.data_dir.to_string_lossy().into_owned();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_folio"))
        .env_clear()
        .current_dir(&data_dir)
        .args(["warm", "--type=all", "--stats"])
        .env("DATABASE_URL", &database_url)
        .env("DATA_DIR", &data_dir)
        .env("CACHE_URL", &url)
        .env("CACHE_KEY_PREFIX", &prefix)
        .env("SEED_ON_EMPTY", "false")
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("before:") && stdout.contains("after:"),
        "{stdout}"
    );
    assert!(!stderr.contains("asks it"), "warmed from here: {stderr}");
    for path in ["/", "/blog/", "/api/posts/", "/blog/tag/caching/"] {
        assert_eq!(
            x_cache(&app.get(path).await),
            "HIT",
            "{path} warmed by the command"
        );
    }
    app.state.cache.clear().await;
    app.state.cache.reset_site_stats().await;
}

/// Warming follows what readers ask for (`web::demand`): a post the fixed plan warms
/// last comes first once readers have read it often; the counts live in the database,
/// so another instance (or the same site after a restart) plans the same, and
/// `folio warm --explain` shows why.
#[actix_web::test]
async fn warming_follows_what_readers_ask_for() {
    follows_what_readers_ask_for(Backend::Sqlite).await;
}

#[actix_web::test]
async fn warming_follows_what_readers_ask_for_postgres() {
    follows_what_readers_ask_for(Backend::Postgres).await;
}

async fn follows_what_readers_ask_for(backend: Backend) {
    use folio::web::warm::{plan, WarmType};
    let quiet = [("HISTORY_FLUSH_INTERVAL", "1"), ("WARM_ON_START", "false")];
    let Some(app) = spawn_app_with(backend, &quiet).await else {
        return;
    };
    // A new site: the fixed plan, by page kind.
    let fixed = plan(&app.state, WarmType::All).await.unwrap();
    assert!(fixed.iter().all(|p| p.predicted.is_none()));
    let last_post = fixed
        .iter()
        .rev()
        .map(|p| p.path.clone())
        .find(|p| p.starts_with("/blog/") && p.matches('/').count() == 3 && !p.contains("/tag/"))
        .expect("a post in the plan");
    let client = reqwest::Client::new();
    for _ in 0..40 {
        let res = client.get(app.url(&last_post)).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    for _ in 0..5 {
        client.get(app.url("/about/")).send().await.unwrap();
    }
    // Counted, then written within a flush (a second).
    let started = Instant::now();
    let planned = loop {
        let planned = plan(&app.state, WarmType::All).await.unwrap();
        let counted = |path: &str| {
            planned
                .iter()
                .any(|p| p.path == path && p.predicted.is_some())
        };
        if counted(&last_post) && counted("/about/") {
            break planned;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no demand counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        planned[0].path,
        last_post,
        "the most read first: {:?}",
        &planned[..3]
    );
    assert_eq!(planned[0].priority, 1);
    let (expected, cost, value) = planned[0].predicted.unwrap();
    assert!(
        expected > 0.5 && cost > 0.0 && value > 0.0,
        "{:?}",
        planned[0]
    );
    assert!(planned.iter().position(|p| p.path == "/about/").unwrap() < 5);
    // Nothing dropped or added: the model orders the fixed plan.
    let mut a: Vec<&str> = fixed.iter().map(|p| p.path.as_str()).collect();
    let mut b: Vec<&str> = planned.iter().map(|p| p.path.as_str()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);

    let second = app.second_instance(&quiet).await;
    let again = plan(&second.state, WarmType::All).await.unwrap();
    assert_eq!(
        again[0].path, last_post,
        "the model is shared through the database"
    );

    let db = app.state.config.database_url.to_url();
    let (ok, out, err) = crate::monitoring::folio(
        &["warm", "--explain"],
        &[("DATABASE_URL", db.as_str()), ("SEED_ON_EMPTY", "false")],
    )
    .await;
    assert!(ok, "{err}");
    let first = out
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_else(|| panic!("no first item:\n{out}"));
    assert!(first.ends_with(&last_post), "{out}");
    assert!(out.contains("the demand model knows"), "{out}");
}

/// What visitors invent cannot grow the demand table: an hour holds at most its budget
/// of URLs, the most asked first, and the URLs it holds keep counting.
#[actix_web::test]
async fn demand_rows_per_hour_stay_within_their_budget() {
    use folio::content::repository::demand::Counted;
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    let repo = &app.state.repo;
    let hour = chrono::NaiveDate::from_ymd_opt(2026, 12, 1)
        .unwrap()
        .and_hms_opt(10, 0, 0)
        .unwrap();
    let counted = |requests| Counted {
        requests,
        misses: 1,
        miss_ms: 2.0,
    };
    let first: Vec<(String, Counted)> = (0..10)
        .map(|i| (format!("/junk/{i}"), counted(1)))
        .chain([("/".to_string(), counted(50))])
        .collect();
    repo.add_demand(hour, &first, 4).await.unwrap();
    let held = repo.demand_since(hour, None).await.unwrap();
    assert_eq!(held.len(), 4, "{held:?}");
    assert!(held.iter().any(|(p, c)| p == "/" && c.requests == 50));
    // A full hour: new URLs are left out, those it holds still count.
    let kept: Vec<String> = held.iter().map(|(p, _)| p.clone()).collect();
    let second: Vec<(String, Counted)> = kept
        .iter()
        .map(|p| (p.clone(), counted(1)))
        .chain((10..20).map(|i| (format!("/junk/{i}"), counted(5))))
        .collect();
    repo.add_demand(hour, &second, 4).await.unwrap();
    let held = repo.demand_since(hour, None).await.unwrap();
    assert_eq!(held.len(), 4);
    let root = held.iter().find(|(p, _)| p == "/").unwrap();
    assert_eq!(root.1.requests, 51);
    assert_eq!(root.1.misses, 2);
}
