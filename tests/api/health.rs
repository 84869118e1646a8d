//! Health endpoints as a load balancer and an operator use them.

use std::time::Duration;

use crate::on_both_app_caches;
use crate::redis_server::OwnRedis;

on_both_app_caches! {
    async fn a_serving_site_is_live_ready_and_its_cache_healthy(app: TestApp) {
        let res = app.get("/healthz").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["cache-control"], "no-store");
        let (status, ready) = app.get_json("/readyz").await;
        assert_eq!(status, 200);
        assert_eq!(ready["database"], "ok");
        assert_eq!(ready["cache"]["breaker"], "closed");
        let (status, health) = app.get_json("/api/cache/health/").await;
        assert_eq!(status, 200, "{health}");
        assert_eq!(health["healthy"], true);
        assert_eq!(health["reachable"], true);
        assert_eq!(health["backend"], app.state.cache.backend_name());
        assert!(health["round_trip_ms"].as_f64().is_some());
        if app.state.cache.backend_name() == "memory" {
            assert!(health["memory"]["max_bytes"].as_u64().unwrap() > 0);
        } else {
            assert!(health["near"]["entries"].is_u64(), "{health}");
        }
    }
}

/// With Redis gone the cache is reported unhealthy (503) with the cause, while the site
/// stays ready: it serves from the database.
#[actix_web::test]
async fn a_lost_redis_is_unhealthy_but_the_site_stays_ready() {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let app = redis.app().await;
    assert_eq!(app.get("/api/cache/health/").await.status(), 200);
    redis.stop();
    let mut answer = None;
    for _ in 0..40 {
        let (status, health) = app.get_json("/api/cache/health/").await;
        if status == 503 {
            answer = Some(health);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = answer.expect("the cache health turns 503");
    assert_eq!(health["healthy"], false);
    assert_eq!(health["reachable"], false);
    assert_ne!(health["breaker"], "closed");
    assert!(health["last_trip_cause"].as_str().is_some(), "{health}");
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!(status, 200, "ready without its cache");
    assert_ne!(ready["cache"]["breaker"], "closed");
    assert_eq!(app.get("/").await.status(), 200);
}
