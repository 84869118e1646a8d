//! The cache's edges: where a request becomes a key. Every spelling of a URL gets the
//! answer it would get with no cache at all; junk input leaves no state behind; only
//! public answers are stored; anonymous visitors get no server-side session.

use proptest::prelude::*;

use crate::fuzz::samples;
use crate::helpers::{spawn_app_with, test_redis_url, Backend, TestApp};

/// Canonical URLs of the site (path, parameters) that spellings are made of: found and
/// missing things, filters, pages in and out of range.
const TARGETS: &[(&str, &[(&str, &str)])] = &[
    ("/", &[]),
    ("/about/", &[]),
    ("/blog/", &[]),
    ("/blog/", &[("page", "1")]),
    ("/blog/", &[("page", "2")]),
    ("/blog/cache-invalidation-without-tears/", &[]),
    ("/blog/no-such-post/", &[]),
    ("/blog/tag/caching/", &[]),
    ("/blog/tag/caching/", &[("page", "9223372036854775807")]),
    ("/api/posts/", &[]),
    ("/api/posts/", &[("tag", "caching")]),
    ("/api/posts/", &[("page", "1"), ("tag", "redis")]),
    ("/api/posts/", &[("page", "9223372036854775806")]),
    ("/api/posts/etags-and-the-304-you-deserve/", &[]),
    ("/api/ai-tools/", &[("category", "Coding")]),
    ("/api/ai-tools/", &[("featured", "true")]),
    ("/api/ai-tools/", &[("category", "Not a category")]),
    ("/search/", &[("q", "cache invalidation")]),
    ("/search/", &[("q", "Redis OR \"tag versions\"")]),
    ("/search/", &[("page", "2"), ("q", "the")]),
    ("/search/", &[("q", "-everything")]),
    ("/api/search/", &[("q", "caching -redis")]),
    ("/api/search/", &[("q", "NEAR(a b) x:y*")]),
    ("/api/search/", &[("q", "zzzz nothing matches")]),
];

/// How a character of a path, name or value is written.
#[derive(Debug, Clone, Copy)]
enum Spell {
    Plain,
    Upper,
    Lower,
}

fn spell(text: &str, how: &[Spell], reserved: &str) -> String {
    text.chars()
        .zip(how.iter().cycle())
        .map(|(c, how)| match (c, how) {
            (c, _) if reserved.contains(c) => c.to_string(),
            (' ', Spell::Plain) => "+".into(),
            (' ', _) => "%20".into(),
            (c, Spell::Plain) if c.is_ascii_alphanumeric() || c == '-' => c.to_string(),
            (c, Spell::Lower) => format!("%{:02x}", c as u32),
            (c, _) => format!("%{:02X}", c as u32),
        })
        .collect()
}

/// One request: a target spelled some way, with parameters reordered, duplicated,
/// emptied or joined by made-up ones.
#[derive(Debug, Clone)]
struct Spelled {
    target: usize,
    path_spelling: Vec<Spell>,
    name_spelling: Vec<Spell>,
    value_spelling: Vec<Spell>,
    reversed: bool,
    duplicate: bool,
    extras: Vec<&'static str>,
}

impl Spelled {
    fn url(&self) -> String {
        let (path, params) = TARGETS[self.target];
        let mut pairs: Vec<String> = params
            .iter()
            .map(|(name, value)| {
                format!(
                    "{}={}",
                    spell(name, &self.name_spelling, ""),
                    spell(value, &self.value_spelling, "")
                )
            })
            .collect();
        if self.duplicate {
            if let Some(first) = pairs.first().cloned() {
                pairs.push(first);
            }
        }
        pairs.extend(self.extras.iter().map(|e| e.to_string()));
        if self.reversed {
            pairs.reverse();
        }
        let path = spell(path, &self.path_spelling, "/");
        match pairs.is_empty() {
            true => path,
            false => format!("{path}?{}", pairs.join("&")),
        }
    }
}

fn spelling() -> impl Strategy<Value = Vec<Spell>> {
    proptest::collection::vec(
        prop_oneof![
            6 => Just(Spell::Plain),
            1 => Just(Spell::Upper),
            1 => Just(Spell::Lower)
        ],
        1..12,
    )
}

fn spelled() -> impl Strategy<Value = Spelled> {
    let extras = proptest::collection::vec(
        proptest::sample::select(
            &[
                "utm_source=x",
                "ref=",
                "page=",
                "tag=",
                ";x=1",
                "x;y",
                "=",
                "&",
                "PAGE=3",
                "p%61ge=",
            ][..],
        ),
        0..3,
    );
    (
        0..TARGETS.len(),
        spelling(),
        spelling(),
        spelling(),
        any::<bool>(),
        proptest::bool::weighted(0.15),
        extras,
    )
        .prop_map(
            |(
                target,
                path_spelling,
                name_spelling,
                value_spelling,
                reversed,
                duplicate,
                extras,
            )| {
                Spelled {
                    target,
                    path_spelling,
                    name_spelling,
                    value_spelling,
                    reversed,
                    duplicate,
                    extras,
                }
            },
        )
}

/// What a reader gets: status, where a redirect points, the body.
pub(crate) async fn answer(app: &TestApp, url: &str) -> (u16, String, String) {
    let res = app.client.get(app.url(url)).send().await.unwrap();
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, location, res.text().await.unwrap())
}

/// Keys this app's cache holds: entries in process, or this test's keys in Redis.
pub(crate) async fn stored_keys(app: &TestApp) -> u64 {
    if let Some((entries, _, _)) = app.state.cache.local_size() {
        return entries;
    }
    app_keys(app).await.map_or(0, |keys| keys.len() as u64)
}

/// This app's keys in its own Redis or Redis Cluster (every node scanned), under its
/// prefix; None on the in-process cache or none.
pub(crate) async fn app_keys(app: &TestApp) -> Option<Vec<String>> {
    let prefix = &app.state.config.cache.key_prefix;
    let nodes: Vec<String> = match &app.state.config.cache.url {
        folio::cache::CacheUrl::Redis(url) => vec![url.clone()],
        folio::cache::CacheUrl::RedisCluster(nodes) => nodes.clone(),
        _ => return None,
    };
    let mut keys = std::collections::BTreeSet::new();
    for node in nodes {
        let node_keys = match app.state.config.cache.url {
            folio::cache::CacheUrl::RedisCluster(_) => cluster_node_keys(&node, prefix).await,
            _ => scan(&node, prefix).await,
        };
        keys.extend(node_keys);
    }
    Some(keys.into_iter().collect())
}

/// Keys under `prefix` on every master of the cluster `seed` belongs to.
async fn cluster_node_keys(seed: &str, prefix: &str) -> Vec<String> {
    let mut conn = redis_conn(seed).await;
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut all = Vec::new();
    for line in nodes.lines().filter(|l| l.contains("master")) {
        let address = line.split(' ').nth(1).unwrap().split('@').next().unwrap();
        all.extend(scan(&format!("redis://{address}"), prefix).await);
    }
    all
}

/// Views are written only at the end, so both instances show the same counts; nothing
/// is warmed behind the test's back; links name one site whatever the port.
pub(crate) const QUIET: &[(&str, &str)] = &[
    ("VIEW_FLUSH_INTERVAL", "100000"),
    ("WARM_ON_START", "false"),
    ("SITE_URL", "http://folio.test"),
];

/// Keys the app makes on its own (site-wide statistics) exist once a flush has run.
pub(crate) async fn settled() {
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
}

/// An instance with no cache on `cached`'s database, its views written only at the end
/// and its links naming the same site: what `cached` must answer like.
pub(crate) async fn uncached_beside(cached: &TestApp) -> TestApp {
    cached
        .second_instance(&[
            ("CACHE_URL", "none"),
            ("VIEW_FLUSH_INTERVAL", "100000"),
            ("SITE_URL", "http://folio.test"),
        ])
        .await
}

/// `url` answers from `cached` as from `uncached` (status, redirect, body), the first
/// time and again (from the cache); `from` says what drew it.
pub(crate) async fn answers_as_uncached(
    cached: &TestApp,
    uncached: &TestApp,
    url: &str,
    from: &str,
) {
    let expected = answer(uncached, url).await;
    for round in ["first", "again"] {
        let got = answer(cached, url).await;
        assert_eq!(
            (got.0, &got.1),
            (expected.0, &expected.1),
            "{url} ({round}) from {from}"
        );
        assert!(
            got.2 == expected.2,
            "{url} ({round}): the body differs from the uncached one"
        );
    }
}

/// The property: for random spellings of the site's URLs, the answer with the cache on
/// equals the answer of an instance with no cache on the same database, the first time
/// and from the cache; and the keys stored stay those of the canonical URLs.
async fn every_spelling_gets_the_uncached_answer(cached: TestApp) {
    let uncached = uncached_beside(&cached).await;
    for (path, params) in TARGETS {
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let url = format!("{path}?{}", query.join("&"));
        // Three times: a search is stored once it is popular (searched twice).
        for _ in 0..3 {
            answer(&cached, &url).await;
        }
    }
    settled().await;
    let canonical_keys = stored_keys(&cached).await;
    for case in samples(spelled(), 160) {
        answers_as_uncached(&cached, &uncached, &case.url(), &format!("{case:?}")).await;
    }
    let after = stored_keys(&cached).await;
    assert!(
        after <= canonical_keys,
        "spellings stored keys of their own: {canonical_keys} for the canonical URLs, {after} after"
    );
}

#[actix_web::test]
async fn every_spelling_gets_the_uncached_answer_in_process() {
    every_spelling_gets_the_uncached_answer(spawn_app_with(Backend::Sqlite, QUIET).await.unwrap())
        .await
}

#[actix_web::test]
async fn every_spelling_gets_the_uncached_answer_on_redis() {
    if let Some(url) = test_redis_url() {
        crate::helpers::run_on_shared_cache(&url, QUIET, every_spelling_gets_the_uncached_answer)
            .await
    }
}

/// The poisoning the key once allowed: a filtered list stored as the plain one.
async fn a_respelled_parameter_cannot_replace_a_page(app: TestApp) {
    let (_, all) = app.get_json("/api/posts/").await;
    app.state.cache.clear().await;
    let (status, tagged) = app.get_json("/api/posts/?t%61g=architecture").await;
    assert_eq!(status, 200);
    assert!(tagged["count"].as_i64() < all["count"].as_i64());
    let (_, again) = app.get_json("/api/posts/").await;
    assert_eq!(
        again["count"], all["count"],
        "the plain list is the plain list"
    );
    app.state.cache.clear().await;
    app.get("/blog/?p%61ge=2").await;
    assert_eq!(app.get("/blog/").await.status(), 200);
    // One path spelling: the others are sent to it, and it has the page policy.
    let res = app.get("/%62log/cache-invalidation-without-tears/").await;
    assert_eq!(res.status(), 308);
    assert_eq!(
        res.headers()["location"],
        "/blog/cache-invalidation-without-tears/"
    );
    for spelling in ["page=02", "page=0002"] {
        let res = app.get(&format!("/blog/?{spelling}")).await;
        assert_eq!(
            (
                res.status().as_u16(),
                res.headers()["location"].to_str().unwrap()
            ),
            (308, "/blog/?page=2")
        );
    }
    let res = app.get("/api/posts/?tag=a&tag=b").await;
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["parameter"], "tag");
    assert_eq!(app.get("/blog/?page=1&page=2").await.status(), 400);
    let res = app.get("/blog/?page=9223372036854775807").await;
    assert_eq!(res.status(), 404);
    assert_ne!(res.headers()["x-cache"], "HIT");
}

crate::on_both_app_caches! {
    with QUIET;
    async fn respelled_parameters_cannot_replace_a_page(app: TestApp) {
        a_respelled_parameter_cannot_replace_a_page(app).await
    }

    async fn looking_up_what_does_not_exist_stores_nothing(app: TestApp) {
        for path in ["/", "/blog/", "/api/posts/"] {
            app.get(path).await;
        }
        settled().await;
        let before = stored_keys(&app).await;
        for i in 0..300 {
            assert_eq!(app.get(&format!("/blog/made-up-{i}/")).await.status(), 404);
            assert_eq!(app.get(&format!("/api/posts/made-up-{i}/")).await.status(), 404);
            assert_eq!(app.get(&format!("/blog/tag/made-up-{i}/")).await.status(), 404);
            app.get(&format!("/api/posts/?tag=made-up-{i}")).await;
            app.get(&format!("/blog/?page={}", 1000 + i)).await;
        }
        assert_eq!(stored_keys(&app).await, before, "junk left keys behind");
    }

    async fn only_public_answers_are_stored(app: TestApp) {
        // A request with Authorization is answered, and its answer not kept.
        let res = app.client.get(app.url("/api/social-links/")).header("authorization", "Basic eDp5").send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(app.get("/api/social-links/").await.headers()["x-cache"], "MISS");
        assert_eq!(app.get("/api/social-links/").await.headers()["x-cache"], "HIT");
        // A client's no-store does not skip the cache.
        let res = app.client.get(app.url("/api/social-links/")).header("cache-control", "no-store, no-cache").send().await.unwrap();
        assert_eq!(res.headers()["x-cache"], "HIT");
        // Anonymous form pages open no session and are never stored.
        for path in ["/contact/", "/admin/login/"] {
            let fresh = reqwest::Client::new();
            for _ in 0..3 {
                let res = fresh.get(app.url(path)).send().await.unwrap();
                assert_eq!(res.status(), 200);
                assert!(res.headers()["cache-control"].to_str().unwrap().contains("no-store"));
                let cookies: Vec<&str> = res.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
                assert!(cookies.iter().all(|c| !c.starts_with("folio_session=")), "{path}: {cookies:?}");
                assert!(cookies.iter().any(|c| c.starts_with("folio_csrf=")), "{path}: {cookies:?}");
            }
        }
    }
}

#[actix_web::test]
async fn anonymous_visitors_write_no_session_to_redis() {
    let Some(url) = test_redis_url() else { return };
    let shared = url.clone();
    crate::helpers::run_on_shared_cache(&shared, QUIET, |app| async move {
        app.get("/").await;
        settled().await;
        let prefix = app.state.config.cache.key_prefix.clone();
        let before = scan(&url, &prefix).await;
        for _ in 0..20 {
            for path in ["/contact/", "/admin/login/"] {
                assert_eq!(reqwest::get(app.url(path)).await.unwrap().status(), 200);
            }
        }
        // Shared entries (the page header's fragment for this section) may be new; a
        // session per visit may not.
        let new: Vec<String> = scan(&url, &prefix)
            .await
            .into_iter()
            .filter(|k| !before.contains(k))
            .collect();
        assert!(
            new.iter().all(|k| k.contains(":fragment:")),
            "visits left keys: {new:?}"
        );
        assert!(new.len() <= 2, "visits left keys: {new:?}");
        // The contact form still works, with the double-submit token.
        let token = app.csrf_for("/contact/").await;
        let res = app
            .client
            .post(app.url("/contact/"))
            .form(&[
                ("name", "Ann"),
                ("email", "ann@example.com"),
                ("subject", "Hello"),
                ("message", "A message long enough to be sent."),
                ("csrf_token", &token),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        // Without the cookie the token is refused, and the text is kept.
        let res = reqwest::Client::new()
            .post(app.url("/contact/"))
            .form(&[
                ("name", "Ann"),
                ("message", "Kept text, please."),
                ("csrf_token", &token),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
        assert!(res.text().await.unwrap().contains("Kept text, please."));
    })
    .await
}

#[actix_web::test]
async fn the_sign_in_limiter_does_not_tell_which_names_exist() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    crate::helpers::create_admin(&app, "correct-horse-battery").await;
    let token = app.csrf_for("/admin/login/").await;
    let attempt = |name: &'static str| {
        let (client, url, token) = (app.client.clone(), app.url("/admin/login/"), token.clone());
        async move {
            client
                .post(url)
                .form(&[
                    ("username", name),
                    ("password", "wrong"),
                    ("csrf_token", &token),
                    ("next", "/admin/"),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Interleaved, so both see the same address counter.
    let mut real = Vec::new();
    let mut made_up = Vec::new();
    for i in 0..12 {
        real.push(attempt("ada").await);
        made_up.push(attempt(["nobody", "nemo", "ghost"][i % 3]).await);
    }
    assert_eq!(&real[..10], &[401; 10]);
    assert_eq!(&real[10..], &[429; 2]);
    assert!(
        made_up.iter().all(|s| *s == 401),
        "three made-up names, four tries each: {made_up:?}"
    );
    // The login form's body is sized for a login form.
    let big = "x".repeat(64 * 1024);
    let res = app
        .client
        .post(app.url("/admin/login/"))
        .form(&[("username", big.as_str()), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
}

#[actix_web::test]
async fn full_cache_statistics_are_for_admins() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    for path in ["/api/cache/stats/", "/api/cache/monitor/"] {
        let (status, coarse) = app.get_json(path).await;
        assert_eq!(status, 200);
        assert!(coarse["instance"]["hit_ratio"].is_number(), "{coarse}");
        assert!(
            coarse.get("families_by_miss_cost").is_none() && coarse.get("server_memory").is_none()
        );
        let (status, full) = app.get_admin_json(path).await;
        assert_eq!(status, 200);
        assert!(full["instance"]["families"].is_array(), "{full}");
        let res = app
            .client
            .get(app.url(path))
            .bearer_auth("wrong-token-0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
    }
    assert_eq!(app.get("/api/cache/health/").await.status(), 200);
    assert_eq!(app.get("/healthz").await.status(), 200);
    // /metrics is behind the token by default; an operator may open it.
    assert_eq!(app.get("/metrics").await.status(), 401);
    assert_eq!(app.metrics().await.status(), 200);
    let open = spawn_app_with(Backend::Sqlite, &[("METRICS_REQUIRE_TOKEN", "false")])
        .await
        .unwrap();
    assert_eq!(open.get("/metrics").await.status(), 200);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// `n` requests for things that do not exist (posts, tags, filters, pages, searches,
/// pages of the search form, images), 32 at once.
async fn junk(client: &reqwest::Client, base: &str, from: usize, n: usize) {
    use futures_util::StreamExt;
    futures_util::stream::iter(from..from + n)
        .map(|i| {
            let path = match i % 10 {
                0 => format!("/blog/made-up-{i}/"),
                1 => format!("/api/posts/made-up-{i}/"),
                2 => format!("/blog/tag/made-up-{i}/"),
                3 => format!("/api/posts/?tag=made-up-{i}"),
                4 => format!("/api/ai-tools/?category=made-up-{i}"),
                5 => format!("/blog/?page={}", 1000 + i),
                // Searches: one that finds posts (not popular: never stored) and one
                // that finds nothing (remembered in one bounded entry).
                6 => format!("/search/?q=cache+OR+made{i}"),
                7 => format!("/api/search/?q=made+up+{i}"),
                // Images by made-up names (well-formed ones: they reach the database).
                8 => format!("/media/{i:032x}-480w.jpg"),
                // Pages of the search form without a query (redirected to the form).
                _ if i % 20 == 9 => format!("/search/?page={i}"),
                _ => format!("/api/posts/?utm_source=x{i}&p%61ge=1"),
            };
            let (client, url) = (client.clone(), format!("{base}{path}"));
            async move {
                let status = client.get(url).send().await.unwrap().status().as_u16();
                assert!(status < 500, "{path}: {status}");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

/// The real binary, as a reader's site runs: 100,000 URLs naming nothing leave its
/// memory and the Redis key count where they were.
async fn junk_leaves_no_state(cache_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("site.db").display());
    let prefix = crate::helpers::unique_prefix();
    let (mut child, port) = crate::page_cache::start_binary(
        &dir,
        &db,
        &[
            ("CACHE_URL", cache_url),
            ("CACHE_KEY_PREFIX", &prefix),
            ("SECRET_KEY", "a-secret-key-for-the-junk-test-0123456789"),
            ("WARM_ON_START", "false"),
            ("RUST_LOG", "warn"),
            ("WORKERS", "2"),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for path in ["/", "/blog/", "/api/posts/"] {
        client.get(format!("{base}{path}")).send().await.unwrap();
    }
    // The full hundred thousand in CI (REQUIRE_SERVICES) or with JUNK_URLS; a plain
    // `cargo test` sends a fifth of it (the check is the same, the run two minutes shorter).
    let count: usize = std::env::var("JUNK_URLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if crate::helpers::services_required() {
            100_000
        } else {
            20_000
        });
    // Warm-up: pools, buffers and the allocator reach their working size.
    junk(&client, &base, 0, (count / 5).max(5_000)).await;
    settled().await;
    let keys = |prefix: String| async move {
        match cache_url.starts_with("redis") {
            true => Some(scan(cache_url, &prefix).await),
            false => None,
        }
    };
    let (rss_before, keys_before) = (rss_kib(child.id()), keys(prefix.clone()).await);
    junk(&client, &base, 1_000_000, count).await;
    settled().await;
    let (rss_after, keys_after) = (rss_kib(child.id()), keys(prefix.clone()).await);
    let _ = child.kill();
    let _ = child.wait();
    if cache_url.starts_with("redis") {
        clear_redis(cache_url, &prefix).await;
    }
    assert!(
        rss_after <= rss_before + 2 * 1024,
        "{cache_url}: RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    if let (Some(after), Some(before)) = (keys_after, keys_before) {
        let new: Vec<&String> = after.iter().filter(|k| !before.contains(k)).collect();
        assert!(new.is_empty(), "{cache_url}: junk left keys {new:?}");
    }
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

pub(crate) async fn scan(url: &str, prefix: &str) -> Vec<String> {
    let mut conn = redis_conn(url).await;
    let mut cursor: u64 = 0;
    let mut all = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            // `prefix:` entries and `prefix@session:` sessions (prefixes have one length).
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        all.extend(keys);
        if next == 0 {
            return all;
        }
        cursor = next;
    }
}

async fn clear_redis(url: &str, prefix: &str) {
    let mut conn = redis_conn(url).await;
    for key in scan(url, prefix).await {
        let _: () = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[actix_web::test]
async fn a_hundred_thousand_junk_urls_leave_memory_flat_in_process() {
    junk_leaves_no_state("memory://").await
}

#[actix_web::test]
async fn a_hundred_thousand_junk_urls_leave_memory_and_keys_flat_on_redis() {
    if let Some(url) = test_redis_url() {
        junk_leaves_no_state(&url).await
    }
}
