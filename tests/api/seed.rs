use std::process::Command;

use crate::on_both_backends;
use tempfile::TempDir;

on_both_backends! {
    async fn seeding_twice_adds_nothing(app: TestApp) {
        // spawn_app already seeded the fixtures once.
        let before = app.state.repo.count_posts().await.unwrap();
        assert_eq!(before, 7);
        let report = folio::content::seed::seed_fixtures(&app.state.repo).await.unwrap();
        assert_eq!(report, Default::default(), "second run adds nothing");
        assert_eq!(app.state.repo.count_posts().await.unwrap(), before);
        assert_eq!(app.state.repo.social_links(true).await.unwrap().len(), 5);
    }

    async fn generating_200_posts_is_deterministic_and_idempotent(app: TestApp) {
        let first = folio::content::seed::seed_generated(&app.state.repo, 200).await.unwrap();
        assert_eq!(first.posts, 200);
        assert_eq!(first.ai_tools, 30);
        let again = folio::content::seed::seed_generated(&app.state.repo, 200).await.unwrap();
        assert_eq!(again.posts, 0);
        assert_eq!(app.state.repo.count_posts().await.unwrap(), 207);
        let tags = app.state.repo.tag_cloud().await.unwrap();
        assert!(tags.len() >= 20, "about 20 generated tags plus the fixtures' ({})", tags.len());
        let post = app.state.repo.post_by_slug("generated-post-1", true).await.unwrap().unwrap();
        assert_eq!(post.summary.title, "Trace request header migration #1", "same RNG seed, same content");
        let (_, body) = app.get_json("/api/posts/").await;
        let published = app.state.repo.published_posts(1, 20, None).await.unwrap().total;
        assert_eq!(body["count"].as_i64().unwrap(), published);
        assert!(published > 160, "about nine in ten are published ({published})");
    }
}

/// The real binary, isolated from the developer's shell and `.env` (which could point
/// it at their own `data/`): it runs in `dir`, with only the variables a test sets.
fn folio(dir: &TempDir) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_folio"));
    cmd.current_dir(dir.path())
        .env_clear()
        .env("DATA_DIR", dir.path())
        .env("RUST_LOG", "warn");
    cmd
}

/// The real binary: `folio seed --posts 200` on a fresh SQLite file, twice.
#[test]
fn seed_subcommand_runs_twice_without_duplicates() {
    let dir = TempDir::new().unwrap();
    let run = || {
        let out = folio(&dir)
            .args(["seed", "--posts", "200"])
            .output()
            .expect("run folio");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert!(first.contains("fixtures: added 7 posts"), "{first}");
    assert!(first.contains("generated: added 200 posts"), "{first}");
    let second = run();
    assert!(
        second.contains("fixtures: added 0 posts") && second.contains("generated: added 0 posts"),
        "{second}"
    );
}

/// A bad setting stops start-up with one line naming the variable.
#[test]
fn invalid_configuration_fails_fast_naming_the_variable() {
    let dir = TempDir::new().unwrap();
    for (var, value) in [
        ("DATABASE_URL", "mysql://localhost/x"),
        ("CACHE_URL", "memcached://x"),
        ("BIND", "nowhere"),
    ] {
        let out = folio(&dir)
            .arg("migrate")
            .env(var, value)
            .output()
            .expect("run folio");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&format!("error: invalid {var}")),
            "{var}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

/// `folio clear --pattern` deletes matching keys of this site's prefix, and only those.
#[actix_web::test]
async fn clear_subcommand_deletes_by_pattern() {
    let Some(url) = crate::helpers::test_redis_url() else {
        return;
    };
    let prefix = crate::helpers::unique_prefix();
    let mut config =
        folio::cache::CacheConfig::new(folio::cache::CacheUrl::Redis(url.clone()), &prefix);
    config.timeout = std::time::Duration::from_secs(2);
    let cache = folio::cache::CacheManager::new(config).unwrap();
    assert!(
        cache
            .wait_until_serving(std::time::Duration::from_secs(5))
            .await
    );
    let blog: Vec<_> = (0..50)
        .map(|i| (cache.key("blog_list", [i.to_string()]), i))
        .collect();
    cache.set_many(&blog, None).await;
    let other = cache.key("tools", ["all"]);
    cache.set(&other, &1, None).await;
    let dir = TempDir::new().unwrap();
    let out = folio(&dir)
        .args(["clear", "--pattern", "blog_*"])
        .env("CACHE_URL", &url)
        .env("CACHE_KEY_PREFIX", &prefix)
        .output()
        .expect("run folio");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deleted 50 key(s)"
    );
    assert_eq!(cache.get::<i32>(&blog[0].0).await, None);
    assert_eq!(cache.get::<i32>(&other).await, Some(1));
    cache.clear().await;
}

/// `folio seed` against a live server on `memory://`: it cannot reach the server's
/// memory, so it asks the server through the signed webhook — or, without the secret,
/// says how.
#[actix_web::test]
async fn seed_against_a_live_memory_server_invalidates_there() {
    const SECRET: &str = "webhook-secret-for-tests";
    let app = crate::helpers::spawn_app_with(
        crate::helpers::Backend::Sqlite,
        &[("CACHE_WEBHOOK_SECRET", SECRET)],
    )
    .await
    .unwrap();
    let (_, before) = app.get_json("/api/posts/").await;
    assert_eq!(app.get("/api/posts/").await.headers()["x-cache"], "HIT");
    let dir = TempDir::new().unwrap();
    let bind = app.address.trim_start_matches("http://").to_string();
    let db = app.state.config.database_url.to_url();
    let run = |posts: &str, secret: Option<&str>| {
        let mut cmd = folio(&dir);
        cmd.args(["seed", "--posts", posts])
            .env("DATABASE_URL", &db)
            .env("CACHE_URL", "memory://")
            .env("BIND", &bind);
        if let Some(secret) = secret {
            cmd.env("CACHE_WEBHOOK_SECRET", secret);
        }
        cmd.output().unwrap()
    };
    let without = run("2", None);
    assert!(without.status.success());
    let note = String::from_utf8_lossy(&without.stderr);
    assert!(
        note.contains("cannot reach it") && note.contains("CACHE_WEBHOOK_SECRET"),
        "{note}"
    );
    let with = run("4", Some(SECRET));
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert!(String::from_utf8_lossy(&with.stderr).contains("dropped what this changed"));
    let (_, after) = app.get_json("/api/posts/").await;
    assert_eq!(
        after["count"].as_i64().unwrap(),
        before["count"].as_i64().unwrap() + 4,
        "the server shows all the seeded posts at once"
    );
}
