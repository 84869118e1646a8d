//! Redis going away mid-run: calls still return, errors are counted, pages are served
//! from the database, and the cache recovers when Redis comes back. Each test starts
//! its own redis-server on a free port and stops it by pid; the shared one is never
//! touched.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use folio::cache::{CacheConfig, CacheManager};
use folio::config::CacheUrl;

use crate::helpers::{services_required, spawn_app_with, Backend};

struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    /// None (skip) when redis-server is not installed, unless services are required.
    fn start() -> Option<OwnRedis> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        OwnRedis::start_on(port)
    }

    fn start_on(port: u16) -> Option<OwnRedis> {
        let spawned = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                assert!(
                    !services_required(),
                    "REQUIRE_SERVICES=1 but redis-server cannot be started: {e}"
                );
                crate::helpers::skip(&format!(
                    "redis-server cannot be started ({e}): the Redis-outage tests are skipped"
                ));
                return None;
            }
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(OwnRedis { child, port });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {port}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

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
