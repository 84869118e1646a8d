use std::time::{SystemTime, UNIX_EPOCH};

use folio::web::api::webhook::sign;

use crate::helpers::{signed_webhook, spawn_app_with, Backend, TestApp};

const SECRET: &str = "webhook-secret-for-tests";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A correctly signed, current request.
async fn signed(app: &TestApp, body: &str) -> reqwest::Response {
    signed_webhook(
        &app.client,
        &app.url("/api/cache/invalidate/"),
        SECRET,
        body,
    )
    .await
}

async fn post(
    app: &TestApp,
    body: &str,
    timestamp: Option<u64>,
    signature: Option<String>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/api/cache/invalidate/"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(ts) = timestamp {
        req = req.header("x-cache-timestamp", ts.to_string());
    }
    if let Some(sig) = signature {
        req = req.header("x-cache-signature", sig);
    }
    req.send().await.unwrap()
}

#[actix_web::test]
async fn a_signed_request_drops_what_it_names() {
    let app = spawn_app_with(Backend::Sqlite, &[("CACHE_WEBHOOK_SECRET", SECRET)])
        .await
        .unwrap();
    app.get("/api/social-links/").await;
    app.get("/api/posts/").await;
    assert_eq!(
        app.get("/api/social-links/").await.headers()["x-cache"],
        "HIT"
    );
    let body = r#"{"models": ["social_link"], "patterns": ["fragment:*"]}"#;
    let res = signed(&app, body).await;
    assert_eq!(res.status(), 200);
    let answer: serde_json::Value = res.json().await.unwrap();
    assert!(
        answer["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "api_social_links"),
        "{answer}"
    );
    assert!(answer["patterns"]["fragment:*"].as_u64().is_some());
    assert_eq!(
        app.get("/api/social-links/").await.headers()["x-cache"],
        "MISS",
        "dropped"
    );
    assert_eq!(
        app.get("/api/posts/").await.headers()["x-cache"],
        "HIT",
        "kept"
    );
}

#[actix_web::test]
async fn bad_missing_old_and_replayed_signatures_are_refused() {
    let app = spawn_app_with(Backend::Sqlite, &[("CACHE_WEBHOOK_SECRET", SECRET)])
        .await
        .unwrap();
    let body = r#"{"tags": ["post_lists"]}"#;
    let ts = now();
    let good = sign(SECRET, &ts.to_string(), body.as_bytes());
    assert_eq!(
        post(&app, body, Some(ts), None).await.status(),
        401,
        "missing signature"
    );
    assert_eq!(
        post(&app, body, None, Some(good.clone())).await.status(),
        401,
        "missing timestamp"
    );
    assert_eq!(
        post(
            &app,
            body,
            Some(ts),
            Some(sign(
                "another-secret-entirely",
                &ts.to_string(),
                body.as_bytes()
            ))
        )
        .await
        .status(),
        401,
        "wrong key"
    );
    assert_eq!(
        post(&app, r#"{"tags": ["feed"]}"#, Some(ts), Some(good.clone()))
            .await
            .status(),
        401,
        "body changed"
    );
    let old = ts - 301;
    assert_eq!(
        post(
            &app,
            body,
            Some(old),
            Some(sign(SECRET, &old.to_string(), body.as_bytes()))
        )
        .await
        .status(),
        401,
        "too old"
    );
    let res = post(&app, body, Some(ts), Some(good.clone())).await;
    assert_eq!(res.status(), 200);
    let res = post(&app, body, Some(ts), Some(good)).await;
    assert_eq!(res.status(), 401, "replayed");
    assert!(res.text().await.unwrap().contains("replay"));
    let bad_model = r#"{"models": ["spaceship"]}"#;
    let res = post(
        &app,
        bad_model,
        Some(ts),
        Some(sign(SECRET, &ts.to_string(), bad_model.as_bytes())),
    )
    .await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["error"]["parameter"],
        "models"
    );
}

#[actix_web::test]
async fn without_a_secret_the_webhook_does_not_exist() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    let body = r#"{"tags": ["post_lists"]}"#;
    let res = signed(&app, body).await;
    assert_eq!(res.status(), 404);
}

/// Only the site's tags: a made-up one would become a key in the cache.
#[actix_web::test]
async fn tags_the_site_does_not_use_are_refused() {
    let app = spawn_app_with(Backend::Sqlite, &[("CACHE_WEBHOOK_SECRET", SECRET)])
        .await
        .unwrap();
    let body = r#"{"tags": ["made_up_tag"]}"#;
    let res = signed(&app, body).await;
    assert_eq!(res.status(), 400);
    let json: serde_json::Value = res.json().await.unwrap();
    assert!(
        json.to_string().contains("unknown tag 'made_up_tag'"),
        "{json}"
    );
}

/// The same signature in upper or mixed case is the same signature: a replay, on this
/// instance and on another sharing the cache.
mod replays_in_any_case {
    use super::*;

    crate::on_both_app_caches! { with &[("CACHE_WEBHOOK_SECRET", SECRET)];
        async fn are_refused(app: TestApp) {
            let body = r#"{"tags": ["post_lists"]}"#;
            let ts = now();
            let good = sign(SECRET, &ts.to_string(), body.as_bytes());
            let hex = good.strip_prefix("sha256=").unwrap();
            assert_eq!(post(&app, body, Some(ts), Some(good.clone())).await.status(), 200);
            let mixed: String = hex
                .chars()
                .enumerate()
                .map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c })
                .collect();
            for variant in [format!("sha256={}", hex.to_uppercase()), format!("sha256={mixed}"), good.clone()] {
                let res = post(&app, body, Some(ts), Some(variant.clone())).await;
                assert_eq!(res.status(), 401, "{variant} replayed");
            }
            if let folio::cache::CacheUrl::Redis(url) = &app.state.config.cache.url {
                let other = app.second_instance(&[
                    ("CACHE_URL", url.as_str()),
                    ("CACHE_KEY_PREFIX", &app.state.config.cache.key_prefix),
                    ("CACHE_WEBHOOK_SECRET", SECRET),
                ]).await;
                let upper = format!("sha256={}", hex.to_uppercase());
                assert_eq!(post(&other, body, Some(ts), Some(upper)).await.status(), 401, "replayed on another instance");
            }
        }
    }
}

/// A request that could not be done (503: the cache refused the invalidation) is not
/// consumed: the sender's retry with the same signature succeeds once the cache is back.
#[actix_web::test]
async fn a_retry_after_a_503_is_not_a_replay() {
    let Some(mut redis) = crate::redis_server::OwnRedis::start() else {
        return;
    };
    let url = redis.url();
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("CACHE_URL", &url),
            ("CACHE_WEBHOOK_SECRET", SECRET),
            ("CACHE_TIMEOUT_MS", "300"),
        ],
    )
    .await
    .unwrap();
    let body = r#"{"tags": ["post_lists"]}"#;
    let ts = now();
    let signature = sign(SECRET, &ts.to_string(), body.as_bytes());
    let port = redis.port;
    redis.stop();
    let res = post(&app, body, Some(ts), Some(signature.clone())).await;
    assert_eq!(
        res.status(),
        503,
        "the cache is down: {}",
        res.text().await.unwrap()
    );
    let _redis = crate::redis_server::OwnRedis::start_on(port).expect("restart redis-server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let res = post(&app, body, Some(ts), Some(signature.clone())).await;
        match res.status().as_u16() {
            200 => break,
            503 if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await
            }
            status => panic!("retry answered {status}: {}", res.text().await.unwrap()),
        }
    }
    assert_eq!(
        post(&app, body, Some(ts), Some(signature)).await.status(),
        401,
        "once done, the same signature is a replay"
    );
}
