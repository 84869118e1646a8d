//! Redis under faults, through the app's real write path: no reader sees data older
//! than the last write that returned — for every model, on two instances with near
//! caches — while Redis is frozen, killed, restarted, stalled or behind an open
//! breaker; and the caches serve again afterwards with nothing left pending.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use folio::cache::CacheUrl;
use folio::cache::{CacheConfig, CacheManager};
use folio::content::invalidation::Model;
use folio::content::models::{NewAiTool, NewSocialLink, PostInput};

use crate::helpers::{spawn_app_with, Backend, TestApp};
use crate::redis_cluster::OwnCluster;
use crate::redis_server::OwnRedis;

pub(crate) const POST: &str = "stampedes-and-single-flight";

/// The models whose changes readers must see, each with the pages that show it and
/// the text that carries its version number.
pub(crate) const CASES: &[(Model, &str, &[&str])] = &[
    (
        Model::PersonalInfo,
        "Headline version ",
        &["/api/personal-info/", "/about/", "/"],
    ),
    (
        Model::Post,
        "Post version ",
        &["/api/posts/stampedes-and-single-flight/", "/blog/", "/"],
    ),
    (
        Model::Tag,
        "Tagver ",
        &[
            "/api/posts/stampedes-and-single-flight/",
            "/blog/stampedes-and-single-flight/",
        ],
    ),
    (
        Model::Author,
        "Author version ",
        &[
            "/api/posts/stampedes-and-single-flight/",
            "/blog/stampedes-and-single-flight/",
            "/blog/",
        ],
    ),
    (
        Model::SocialLink,
        "Link version ",
        &["/api/social-links/", "/about/", "/contact/"],
    ),
    (
        Model::AiTool,
        "Tool version ",
        &["/api/ai-tools/", "/tools/", "/"],
    ),
];

/// The highest version number after `marker` in `body` (0 if none).
pub(crate) fn version_in(body: &str, marker: &str) -> u64 {
    body.split(marker)
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .max()
        .unwrap_or(0)
}

/// Writes version `v` of `model` through the repository (the one write path).
pub(crate) async fn write(app: &TestApp, model: Model, v: u64) {
    let repo = &app.state.repo;
    match model {
        Model::PersonalInfo => repo
            .save_personal_info(&crate::helpers::personal_info(format!(
                "Headline version {v}"
            )))
            .await
            .unwrap(),
        Model::Post | Model::Tag => {
            let (id, post, author_id) = app.post_to_edit(POST).await;
            let mut tags: Vec<String> = post.summary.tags.iter().map(|t| t.name.clone()).collect();
            let mut title = post.summary.title.clone();
            if model == Model::Tag {
                tags.retain(|t| !t.starts_with("Tagver "));
                tags.push(format!("Tagver {v}"));
            } else {
                title = format!("Post version {v}");
            }
            repo.update_post(
                id,
                PostInput {
                    cover_image: String::new(),
                    title,
                    slug: POST.into(),
                    body_markdown: post.body_markdown,
                    excerpt: None,
                    author_id,
                    tags,
                    published: true,
                    published_at: None,
                    featured: post.summary.featured,
                },
            )
            .await
            .unwrap();
        }
        Model::Author => {
            let author = repo.author_by_slug("tomas-ribeiro").await.unwrap().unwrap();
            assert!(repo
                .update_author(author.id, &format!("Author version {v}"), "Bio")
                .await
                .unwrap());
        }
        Model::SocialLink => {
            let link = repo.social_links(true).await.unwrap()[0].clone();
            repo.save_social_link(
                Some(link.id),
                &NewSocialLink {
                    name: format!("Link version {v}"),
                    url: link.url,
                    icon: link.icon,
                    sort_order: link.sort_order,
                    visible: true,
                },
            )
            .await
            .unwrap()
        }
        Model::AiTool => {
            let tool = repo
                .ai_tools(&Default::default())
                .await
                .unwrap()
                .into_iter()
                .find(|t| t.slug == "claude")
                .unwrap();
            repo.save_ai_tool(
                Some(tool.id),
                &NewAiTool {
                    name: tool.name,
                    slug: tool.slug,
                    url: tool.url,
                    description: format!("Tool version {v}"),
                    category: tool.category,
                    featured: true,
                    sort_order: tool.sort_order,
                },
            )
            .await
            .unwrap()
        }
        Model::ContactMessage => unreachable!("not shown to readers"),
        Model::PostViews => unreachable!("counted views are tested in `views`"),
    }
}

/// What happens to Redis between the writes.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Freeze,
    Kill,
    Restart,
    /// `DEBUG SLEEP`: Redis busy for two seconds, then fine.
    Stall,
    /// SIGKILL to the cluster master that carries the invalidation channels; a replica
    /// takes over.
    KillMaster,
}

/// What a scenario breaks.
enum Servers<'a> {
    One(&'a mut OwnRedis),
    Cluster(&'a mut OwnCluster),
}

/// Readers on every instance, for every case's pages, check each answer against the
/// last write that returned before the request was sent; writes run before, during and
/// after the fault.
async fn run_scenario(mut servers: Servers<'_>, apps: &[&TestApp], fault: Fault) {
    let floors: Arc<HashMap<&'static str, AtomicU64>> = Arc::new(
        CASES
            .iter()
            .map(|(_, marker, _)| (*marker, AtomicU64::new(0)))
            .collect(),
    );
    let writer = apps[0];
    // Version 1 everywhere first, and check that every page really shows its marker.
    for (model, _, _) in CASES {
        write(writer, *model, 1).await;
    }
    for app in apps {
        for (_, marker, paths) in CASES {
            for path in *paths {
                let body = app.get_text(path).await.1;
                assert_eq!(version_in(&body, marker), 1, "{path} shows '{marker}1'");
            }
        }
    }
    for (_, marker, _) in CASES {
        floors[marker].store(1, SeqCst);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let stale = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for app in apps {
        for (_, marker, paths) in CASES {
            for path in *paths {
                let (client, url, marker) = (app.client.clone(), app.url(path), *marker);
                let (floors, stop, stale, reads) =
                    (floors.clone(), stop.clone(), stale.clone(), reads.clone());
                readers.push(actix_web::rt::spawn(async move {
                    while !stop.load(SeqCst) {
                        let floor = floors[marker].load(SeqCst);
                        let res = client
                            .get(&url)
                            .timeout(Duration::from_secs(20))
                            .send()
                            .await
                            .expect("a page answers while Redis is broken");
                        assert_eq!(res.status(), 200, "{url}");
                        let seen = version_in(&res.text().await.unwrap(), marker);
                        reads.fetch_add(1, SeqCst);
                        if seen < floor {
                            stale.fetch_add(1, SeqCst);
                            eprintln!(
                                "stale read on {url}: '{marker}{seen}' after {floor} returned"
                            );
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }));
            }
        }
    }

    let mut version = 1;
    let mut write_all = |label: &'static str| {
        version += 1;
        let v = version;
        let floors = floors.clone();
        async move {
            for (model, marker, _) in CASES {
                let started = Instant::now();
                write(writer, *model, v).await;
                floors[marker].store(v, SeqCst);
                eprintln!(
                    "{label}: {model:?} v{v} returned in {:?}",
                    started.elapsed()
                );
            }
        }
    };
    write_all("before").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    match (fault, &mut servers) {
        (Fault::Freeze, Servers::One(redis)) => redis.freeze(),
        (Fault::Kill | Fault::Restart, Servers::One(redis)) => redis.stop(),
        (Fault::KillMaster, Servers::Cluster(cluster)) => {
            // The apps' key prefix is the default, so their channels hash to `{folio}`.
            let port = cluster.kill_master_of("{folio}");
            eprintln!("killed the master on port {port}");
        }
        (Fault::Stall, Servers::One(redis)) => {
            redis.busy_for(2.0).await;
        }
        _ => unreachable!("{fault:?} needs the other kind of server"),
    }
    write_all("during").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    match (fault, &mut servers) {
        (Fault::Freeze, Servers::One(redis)) => redis.thaw(),
        (Fault::Restart, Servers::One(redis)) => {
            **redis = OwnRedis::start_on(redis.port).expect("restart")
        }
        (Fault::KillMaster, Servers::Cluster(cluster)) => {
            let started = Instant::now();
            while !cluster.is_ok() {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "a replica took over"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            eprintln!(
                "the cluster was ok again after {:?} more",
                started.elapsed()
            );
        }
        _ => {}
    }
    write_all("after").await;
    if let (Fault::Kill, Servers::One(redis)) = (fault, &mut servers) {
        **redis = OwnRedis::start_on(redis.port).expect("start again");
    }
    write_all("recovered").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, SeqCst);
    for r in readers {
        r.await.unwrap();
    }
    assert!(reads.load(SeqCst) > 100, "readers ran alongside the writes");
    assert_eq!(
        stale.load(SeqCst),
        0,
        "stale reads after a write returned ({fault:?})"
    );

    // Afterwards: every instance serves from Redis again, with nothing left pending.
    for app in apps {
        assert!(
            app.state
                .cache
                .wait_until_serving(Duration::from_secs(15))
                .await,
            "the cache serves again after {fault:?}: {:?}",
            app.state.cache.health()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while writer.state.repo.pending_invalidations().await.unwrap() > 0 {
        assert!(
            Instant::now() < deadline,
            "pending invalidations were applied and pruned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let app = apps[apps.len() - 1];
    app.get("/about/").await;
    let queries = app.state.repo.db().stats.queries();
    app.get("/about/").await;
    assert_eq!(
        app.state.repo.db().stats.queries(),
        queries,
        "a warm page runs no SQL again"
    );
}

async fn two_instances(redis: &OwnRedis) -> (TestApp, TestApp) {
    let url = redis.url();
    let settings = [("CACHE_URL", url.as_str())];
    let a = spawn_app_with(Backend::Sqlite, &settings).await.unwrap();
    let b = a.second_instance(&settings).await;
    (a, b)
}

#[actix_web::test]
async fn no_stale_reads_while_redis_is_frozen_and_thawed() {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let (a, b) = two_instances(&redis).await;
    run_scenario(Servers::One(&mut redis), &[&a, &b], Fault::Freeze).await;
}

#[actix_web::test]
async fn no_stale_reads_while_redis_is_killed_and_started_again() {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let (a, b) = two_instances(&redis).await;
    run_scenario(Servers::One(&mut redis), &[&a, &b], Fault::Kill).await;
}

#[actix_web::test]
async fn no_stale_reads_while_redis_restarts_empty() {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let (a, b) = two_instances(&redis).await;
    run_scenario(Servers::One(&mut redis), &[&a, &b], Fault::Restart).await;
}

#[actix_web::test]
async fn no_stale_reads_on_one_instance_while_redis_stalls() {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let app = redis.app().await;
    run_scenario(Servers::One(&mut redis), &[&app], Fault::Stall).await;
}

/// A master of a Redis Cluster dies under two instances with near caches while they
/// are read and written: no reader gets an error or an old page, a replica takes over,
/// and both instances serve from the cluster again.
#[actix_web::test]
async fn no_stale_reads_or_errors_while_a_cluster_master_fails_over() {
    let Some(mut cluster) = crate::redis_cluster::own_cluster(3, 1) else {
        return;
    };
    let url = cluster.url();
    let settings = [("CACHE_URL", url.as_str())];
    let a = spawn_app_with(Backend::Sqlite, &settings).await.unwrap();
    let b = a.second_instance(&settings).await;
    assert_eq!(a.state.cache.backend_name(), "redis-cluster");
    run_scenario(Servers::Cluster(&mut cluster), &[&a, &b], Fault::KillMaster).await;
}

async fn own_cache(redis: &OwnRedis, prefix: &str) -> CacheManager {
    cache_on(CacheUrl::Redis(redis.url()), prefix).await
}

async fn cache_on(url: CacheUrl, prefix: &str) -> CacheManager {
    let cache = CacheManager::new(CacheConfig::new(url, prefix)).unwrap();
    assert!(cache.wait_until_serving(Duration::from_secs(10)).await);
    cache
}

/// The near tier answers a warm read without Redis, and a bump on another instance
/// drops that copy before the bump returns.
#[actix_web::test]
async fn a_bump_on_one_instance_drops_near_copies_on_the_other_before_it_returns() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let (a, b) = (
        own_cache(&redis, "near").await,
        own_cache(&redis, "near").await,
    );
    bumps_drop_near_copies_before_they_return(a, b).await;
}

#[actix_web::test]
async fn on_a_cluster_a_bump_drops_near_copies_on_the_other_instance_before_it_returns() {
    let Some(url) = crate::redis_cluster::shared_cluster_url() else {
        return;
    };
    let prefix = crate::helpers::unique_prefix();
    let url = CacheUrl::parse(&url).unwrap();
    let (a, b) = (
        cache_on(url.clone(), &prefix).await,
        cache_on(url, &prefix).await,
    );
    bumps_drop_near_copies_before_they_return(a.clone(), b).await;
    a.clear().await;
}

async fn bumps_drop_near_copies_before_they_return(a: CacheManager, b: CacheManager) {
    let key = b.key("posts", ["list"]);
    for round in 0..20u32 {
        let filled = b
            .get_or_set_tagged(&key, &["post_lists"], None, || async { Ok::<_, ()>(round) })
            .await;
        assert_eq!(filled, Ok(round));
        let near_hits = b.health().near_hits;
        assert_eq!(
            b.get_tagged::<u32>(&key, &["post_lists"]).await.value,
            Some(round)
        );
        assert_eq!(
            b.health().near_hits,
            near_hits + 1,
            "served from the near tier"
        );
        assert!(a.invalidate_tags(&["post_lists"]).await);
        assert_eq!(
            b.get_tagged::<u32>(&key, &["post_lists"]).await.value,
            None,
            "round {round}: B's near copy was dropped before A's bump returned"
        );
    }
}

/// When a hot page's near copy expires under load, the requests that miss it at once
/// share one read of Redis instead of each fetching (and holding) the page.
#[actix_web::test]
async fn concurrent_near_misses_share_one_read_of_redis() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let (app, page, pages, reads) = near_misses_while_redis_is_busy(&redis, "3000").await;
    assert!(pages
        .iter()
        .all(|(status, body)| *status == 200 && *body == page));
    assert!(
        (1..=2).contains(&reads),
        "32 concurrent misses read Redis {reads} times"
    );
    assert_eq!(app.state.cache.health().breaker_trips, 0);
}

/// The shared read times out (Redis busy past `CACHE_TIMEOUT_MS`): every waiter gets a
/// miss and its page from the database, and the timeout counts once, not once per
/// waiter, so the breaker stays closed.
#[actix_web::test]
async fn a_shared_read_that_times_out_is_one_failure() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let (app, page, pages, reads) = near_misses_while_redis_is_busy(&redis, "100").await;
    let title = &page[page.find("<title>").unwrap()..page.find("</title>").unwrap()];
    assert!(pages
        .iter()
        .all(|(status, body)| *status == 200 && body.contains(title)));
    // The page, then the fragments and queries its rendering reads: each once.
    assert!(reads <= 8, "32 requests read Redis {reads} times");
    let health = app.state.cache.health();
    assert_eq!(
        (health.breaker.as_str(), health.breaker_trips),
        ("closed", 0)
    );
}

/// An app whose near copies live 1 s, `/` page-cached; then Redis is busy for 300 ms
/// while 32 requests for `/` arrive. Returns the app, the page, the 32 answers and how
/// many `MGET`s Redis counted meanwhile.
async fn near_misses_while_redis_is_busy(
    redis: &OwnRedis,
    timeout_ms: &str,
) -> (TestApp, String, Vec<(u16, String)>, u64) {
    let url = redis.url();
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("CACHE_URL", url.as_str()),
            ("CACHE_NEAR_TTL", "1"),
            ("CACHE_TIMEOUT_MS", timeout_ms),
        ],
    )
    .await
    .unwrap();
    let page = app.get_text("/").await.1;
    let res = app.get("/").await;
    let status = res.headers()["cache-status"].to_str().unwrap().to_string();
    assert!(status.starts_with("folio; hit"), "page-cached: {status}");
    tokio::time::sleep(Duration::from_millis(1300)).await; // the near copies expire
    let mgets = || {
        redis
            .cli(&["INFO", "commandstats"])
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_mget:calls="))
            .map_or(0, |rest| {
                rest.split(',').next().unwrap().parse::<u64>().unwrap()
            })
    };
    let before = mgets();
    let sleeper = redis.busy_for(0.3).await;
    let requests = (0..32).map(|_| app.get_text("/"));
    let pages = futures_util::future::join_all(requests).await;
    sleeper.join().unwrap();
    let reads = mgets() - before;
    (app, page, pages, reads)
}

/// Frozen Redis: within the heartbeat lease the near tier stops answering (it could
/// have missed an invalidation), and it answers again after the thaw.
#[actix_web::test]
async fn near_copies_are_not_served_while_the_invalidation_channel_is_silent() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let cache = own_cache(&redis, "silent").await;
    let key = cache.key("posts", ["list"]);
    let tags = &["post_lists"];
    cache
        .get_or_set_tagged(&key, tags, None, || async { Ok::<_, ()>(7u32) })
        .await
        .unwrap();
    assert_eq!(cache.get_tagged::<u32>(&key, tags).await.value, Some(7));
    redis.freeze();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    assert_eq!(
        cache.get_tagged::<u32>(&key, tags).await.value,
        None,
        "bypassed"
    );
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "at once, not after a timeout"
    );
    assert_ne!(cache.health().breaker, "closed");
    assert!(cache
        .health()
        .last_trip_cause
        .unwrap()
        .contains("heartbeat"));
    redis.thaw();
    assert!(cache.wait_until_serving(Duration::from_secs(10)).await);
    assert_eq!(cache.health().breaker, "closed");
}

/// One slow reply is a miss, not a reason to bypass Redis for everyone.
#[actix_web::test]
async fn one_slow_reply_does_not_open_the_breaker() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let cache = own_cache(&redis, "slow").await;
    let key = cache.key("posts", ["one"]);
    cache.set(&key, &1u32, None).await;
    let sleeper = redis.busy_for(0.4).await;
    assert_eq!(
        cache.get::<u32>(&key).await,
        None,
        "the slow reply times out: a miss"
    );
    sleeper.join().unwrap();
    assert_eq!(cache.get::<u32>(&key).await, Some(1));
    let health = cache.health();
    assert_eq!(
        (health.breaker.as_str(), health.breaker_trips),
        ("closed", 0)
    );
    assert_eq!(cache.stats().totals.errors, 1);
}

/// The admin sees a notice while a write's invalidation has not reached Redis, and it
/// goes away once the instance has applied it.
#[actix_web::test]
async fn the_admin_sees_pending_invalidations_until_redis_has_them() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let app = redis.app().await;
    app.sign_in_admin().await;
    assert!(!app.get_text("/admin/").await.1.contains("has not taken"));
    redis.freeze();
    write(&app, Model::PersonalInfo, 42).await;
    assert_eq!(app.state.repo.pending_invalidations().await.unwrap(), 1);
    let page = app.get_text("/admin/").await.1;
    assert!(
        page.contains("The cache has not taken 1 recent change"),
        "notice shown"
    );
    assert!(app
        .get_text("/about/")
        .await
        .1
        .contains("Headline version 42"));
    redis.thaw();
    assert!(
        app.state
            .cache
            .wait_until_serving(Duration::from_secs(10))
            .await
    );
    assert_eq!(
        app.state.repo.pending_invalidations().await.unwrap(),
        0,
        "applied and pruned"
    );
    assert!(!app.get_text("/admin/").await.1.contains("has not taken"));
    assert!(app
        .get_text("/about/")
        .await
        .1
        .contains("Headline version 42"));
}

/// A repository and cache that are dropped close their Redis connections and stop
/// their heartbeat: the recovery hook and the outbox task inside hold them weakly.
#[actix_web::test]
async fn a_dropped_cache_closes_its_connections() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let clients = || redis.cli(&["CLIENT", "LIST"]).lines().count();
    let baseline = clients();
    let dir = tempfile::TempDir::new().unwrap();
    let url = folio::config::DatabaseUrl::Sqlite(dir.path().join("t.db").display().to_string());
    folio::db::migrate(&url).await.unwrap();
    let db = folio::db::Db::connect(&url).await.unwrap();
    let cache = own_cache(&redis, "dropped").await;
    let repo = folio::content::Repository::new(db, cache);
    repo.start_invalidation_outbox(Duration::from_millis(50));
    assert!(clients() >= baseline + 2, "commands and pub/sub connected");
    drop(repo);
    let deadline = Instant::now() + Duration::from_secs(5);
    while clients() > baseline {
        assert!(
            Instant::now() < deadline,
            "connections closed after the drop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
