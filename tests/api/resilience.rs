//! Redis going away mid-run: calls still return, errors are counted, pages are served
//! from the database, and the cache recovers when Redis comes back. Each test starts
//! its own redis-server on a free port and stops it by pid; the shared one is never
//! touched.

use std::time::Duration;

use folio::cache::CacheUrl;
use folio::cache::{CacheConfig, CacheManager};

use crate::helpers::{spawn_app_with, Backend};
use crate::redis_server::OwnRedis;

/// Guards against a hang: a call that does not return within this is a failure.
async fn returns<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("cache call did not return")
}

#[actix_web::test]
async fn cache_calls_return_while_redis_is_down_and_recover_after() {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let mut config = CacheConfig::new(CacheUrl::Redis(redis.url()), "resilience");
    config.timeout = Duration::from_millis(500);
    let cache = CacheManager::new(config).unwrap();
    assert!(cache.wait_until_serving(Duration::from_secs(5)).await);
    let key = cache.key("posts", ["recent"]);
    cache.set(&key, &"before", None).await;
    assert_eq!(cache.get::<String>(&key).await.as_deref(), Some("before"));
    assert_eq!(cache.stats().totals.errors, 0);

    redis.stop();
    assert_eq!(
        returns(cache.get::<String>(&key)).await,
        None,
        "a miss, not an error"
    );
    returns(cache.set(&key, &"dropped", None)).await;
    assert_eq!(returns(cache.delete_pattern("posts:*")).await, 0);
    let computed = returns(
        cache.get_or_set_tagged(&key, &["model:post"], None, || async {
            Ok::<_, ()>("from the database".to_string())
        }),
    )
    .await;
    assert_eq!(computed.as_deref(), Ok("from the database"));
    assert!(
        cache.stats().totals.errors >= 4,
        "every failure counted: {}",
        cache.stats().totals.errors
    );

    let _restarted = OwnRedis::start_on(redis.port).expect("restart");
    let mut recovered = false;
    for _ in 0..50 {
        cache.set(&key, &"after", None).await;
        if cache.get::<String>(&key).await.as_deref() == Some("after") {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the pool reconnected by itself");
}

#[actix_web::test]
async fn pages_are_served_from_the_database_while_redis_is_down() {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let url = redis.url();
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("CACHE_URL", &url), ("CACHE_TIMEOUT_MS", "500")],
    )
    .await
    .unwrap();
    assert_eq!(app.get("/").await.status(), 200);
    let warm_queries = app.state.repo.db().stats.queries();
    assert_eq!(app.get("/").await.status(), 200);
    assert_eq!(
        app.state.repo.db().stats.queries(),
        warm_queries,
        "warm home page runs no SQL"
    );

    redis.stop();
    for path in ["/", "/blog/", "/api/posts/", "/about/"] {
        let res = returns(app.get(path)).await;
        assert_eq!(res.status(), 200, "{path} while Redis is down");
    }
    assert!(
        app.state.repo.db().stats.queries() > warm_queries,
        "served from the database"
    );
    assert!(app.state.cache.stats().totals.errors > 0, "errors counted");
}
