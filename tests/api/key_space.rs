//! Nothing a client sends creates cache entries without bound: made-up slugs, tags,
//! categories, query parameters, page spellings and usernames are answered without
//! storing anything new (counted by the cache's own `sets`), on both caches.

use crate::on_both_app_caches;

/// Entries stored so far (fills; counters are not entries).
fn sets(app: &crate::helpers::TestApp) -> u64 {
    app.state.cache.stats().totals.sets
}

on_both_app_caches! {
    async fn made_up_values_store_nothing(app: TestApp) {
        // Warm what the legitimate pages store, so only made-up values are left.
        for path in ["/api/posts/", "/api/ai-tools/", "/api/posts/?tag=caching", "/blog/tag/caching/"] {
            app.get(path).await;
            app.get(path).await;
        }
        app.get("/blog/no-such-post/").await;
        app.get("/blog/tag/no-such-tag/").await;
        app.get("/api/posts/no-such-post/").await;
        let before = sets(&app);
        for i in 0..40 {
            assert_eq!(app.get(&format!("/blog/made-up-{i}/")).await.status(), 404);
            assert_eq!(app.get(&format!("/blog/tag/made-up-{i}/")).await.status(), 404);
            assert_eq!(app.get(&format!("/api/posts/made-up-{i}/")).await.status(), 404);
            // An unknown tag is a 404, as its page is.
            let (status, _) = app.get_json(&format!("/api/posts/?tag=made-up-{i}")).await;
            assert_eq!(status, 404);
            let (status, body) = app.get_json(&format!("/api/ai-tools/?category=Made%20up%20{i}")).await;
            assert_eq!((status, body["count"].as_i64()), (200, Some(0)));
            // Parameters the API does not read share the entry of the plain list.
            let res = app.get(&format!("/api/posts/?utm_source=x{i}")).await;
            assert_eq!(res.headers()["x-cache"], "HIT");
        }
        assert_eq!(sets(&app), before, "made-up values stored cache entries");
        // One spelling per page number: the others are sent to it.
        for spelling in ["page=01", "page=%2B1", "p%61ge=0001"] {
            let res = app.client.get(app.url(&format!("/api/posts/?{spelling}"))).send().await.unwrap();
            assert_eq!(res.status(), 308, "{spelling}");
            assert_eq!(res.headers()["location"], "/api/posts/?page=1");
        }
    }

    async fn made_up_usernames_are_counted_as_real_ones_are(app: TestApp) {
        let token = app.csrf_for("/admin/login/").await;
        let attempt = |name: String| {
            let (client, url, token) = (app.client.clone(), app.url("/admin/login/"), token.clone());
            async move {
                client
                    .post(url)
                    .form(&[("username", name.as_str()), ("password", "wrong"), ("csrf_token", &token), ("next", "/admin/")])
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        };
        for i in 0..6 {
            assert_eq!(attempt(format!("nobody-{i}")).await, 401);
        }
        // Each name its own counters, as an account's (the limiter must not tell which
        // names exist); how many a client can make is bounded by its address's counter.
        let per_name = app.state.cache.key("login_attempts", ["pair", "127.0.0.1", "nobody-3"]);
        assert_eq!(app.state.cache.get_counter(&per_name).await, Some(1));
        let address = app.state.cache.key("login_attempts", ["address", "127.0.0.1"]);
        assert_eq!(app.state.cache.get_counter(&address).await, Some(6));
    }
}
