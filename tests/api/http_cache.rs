use reqwest::header::HeaderMap;

use crate::on_both_app_caches;

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

on_both_app_caches! {
    async fn api_responses_miss_then_hit_without_sql(app: TestApp) {
        let first = app.get("/api/posts/").await;
        assert_eq!(first.status(), 200);
        assert_eq!(header(first.headers(), "x-cache"), "MISS");
        let etag = header(first.headers(), "etag");
        assert!(etag.starts_with('"') && etag.len() > 10, "strong ETag: {etag}");
        assert_eq!(header(first.headers(), "cache-control"), "public, max-age=60");
        let body = first.text().await.unwrap();

        let queries = app.state.repo.db().stats.queries();
        let second = app.get("/api/posts/").await;
        assert_eq!(header(second.headers(), "x-cache"), "HIT");
        assert_eq!(header(second.headers(), "etag"), etag);
        assert!(header(second.headers(), "age").parse::<u64>().is_ok());
        assert!(header(second.headers(), "content-type").starts_with("application/json"));
        assert_eq!(second.text().await.unwrap(), body);
        assert_eq!(app.state.repo.db().stats.queries(), queries, "a hit runs no SQL");
    }

    async fn conditional_requests_get_304(app: TestApp) {
        let first = app.get("/api/social-links/").await;
        let etag = header(first.headers(), "etag");
        assert_eq!(header(first.headers(), "last-modified"), "", "not while its second lasts");
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let hit = app.get("/api/social-links/").await;
        let modified = header(hit.headers(), "last-modified");
        assert!(!modified.is_empty(), "once its second is over");
        for (name, value) in [("if-none-match", etag.as_str()), ("if-modified-since", modified.as_str())] {
            let res = app.client.get(app.url("/api/social-links/")).header(name, value).send().await.unwrap();
            assert_eq!(res.status(), 304, "{name}");
            assert_eq!(header(res.headers(), "etag"), etag);
            assert!(res.text().await.unwrap().is_empty());
        }
        let res = app.client.get(app.url("/api/social-links/")).header("if-none-match", "\"something-else\"").send().await.unwrap();
        assert_eq!(res.status(), 200);
    }

    async fn after_a_write_the_etag_changes_and_the_old_body_is_gone(app: TestApp) {
        let before = app.get("/api/posts/").await;
        let old_etag = header(before.headers(), "etag");
        let old_body = before.text().await.unwrap();
        assert_eq!(header(app.get("/api/posts/").await.headers(), "x-cache"), "HIT");

        app.seed_generated(1).await; // one new post, through the repository
        let after = app.client.get(app.url("/api/posts/")).header("if-none-match", &old_etag).send().await.unwrap();
        assert_eq!(after.status(), 200, "the old ETag no longer matches");
        assert_eq!(header(after.headers(), "x-cache"), "MISS");
        assert_ne!(header(after.headers(), "etag"), old_etag);
        let new_body = after.text().await.unwrap();
        assert_ne!(new_body, old_body);
        let count = |b: &str| serde_json::from_str::<serde_json::Value>(b).unwrap()["count"].as_i64().unwrap();
        assert_eq!(count(&new_body), count(&old_body) + 1);
    }

    async fn query_strings_are_kept_apart_and_normalised(app: TestApp) {
        app.seed_generated(25).await;
        let page1 = app.get("/api/posts/?page=1").await.text().await.unwrap();
        let page2 = app.get("/api/posts/?page=2").await;
        assert_eq!(header(page2.headers(), "x-cache"), "MISS");
        assert_ne!(page2.text().await.unwrap(), page1);
        let a = app.get("/api/posts/?tag=caching&page=1").await;
        assert_eq!(header(a.headers(), "x-cache"), "MISS");
        let b = app.get("/api/posts/?page=1&tag=caching").await;
        assert_eq!(header(b.headers(), "x-cache"), "HIT", "same parameters, other order");
    }

    async fn errors_posts_and_no_store_requests_are_never_stored(app: TestApp) {
        for _ in 0..2 {
            // Refused by the route's bounds before the cache is consulted.
            let res = app.get("/api/posts/?page=abc").await;
            assert_eq!(res.status(), 400);
            assert!(res.headers().get("x-cache").is_none());
            let res = app.get("/api/posts/no-such-post/").await;
            assert_eq!(res.status(), 404);
            assert_ne!(header(res.headers(), "x-cache"), "HIT");
        }
        let res = app.client.post(app.url("/api/posts/")).send().await.unwrap();
        assert_eq!(res.status(), 405, "the API is read-only");
        assert_ne!(header(res.headers(), "x-cache"), "HIT");
        // A client's no-store keeps its own miss out of the cache, and bypasses nothing.
        let no_store = |path: &'static str| app.client.get(app.url(path)).header("cache-control", "no-store").send();
        let res = no_store("/api/ai-tools/").await.unwrap();
        assert_eq!((res.status().as_u16(), header(res.headers(), "x-cache")), (200, "MISS".into()));
        assert_eq!(header(app.get("/api/ai-tools/").await.headers(), "x-cache"), "MISS", "its miss was not stored");
        let res = no_store("/api/ai-tools/").await.unwrap();
        assert_eq!(header(res.headers(), "x-cache"), "HIT", "no-store does not bypass the cache");
    }

    async fn head_is_answered_like_get_without_a_body(app: TestApp) {
        let head = app.client.head(app.url("/api/personal-info/")).send().await.unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(header(head.headers(), "x-cache"), "MISS");
        let etag = header(head.headers(), "etag");
        let get = app.get("/api/personal-info/").await;
        assert_eq!(header(get.headers(), "x-cache"), "HIT", "HEAD and GET share the entry");
        assert_eq!(header(get.headers(), "etag"), etag);
        let get_body = get.bytes().await.unwrap();
        let head = app.client.head(app.url("/api/personal-info/")).send().await.unwrap();
        assert_eq!(header(head.headers(), "x-cache"), "HIT");
        assert_eq!(header(head.headers(), "etag"), etag);
        assert_eq!(header(head.headers(), "content-type"), "application/json");
        assert_eq!(
            header(head.headers(), "content-length"),
            get_body.len().to_string(),
            "HEAD announces the length GET sends"
        );
    }

    async fn html_pages_get_etags_and_304s(app: TestApp) {
        let res = app.get("/about/").await;
        let etag = header(res.headers(), "etag");
        assert!(!etag.is_empty());
        assert_eq!(header(res.headers(), "cache-control"), "no-cache");
        let res = app.client.get(app.url("/about/")).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(res.status(), 304);
        let res = app.get("/contact/").await;
        assert_eq!(header(res.headers(), "cache-control"), "private, no-store", "session-dependent page");
    }

    async fn server_timing_details_only_for_admins(app: TestApp) {
        // A visitor learns the total, not whether the database was asked (a cache miss).
        for path in ["/", "/about/", "/api/posts/", "/no-such-page/"] {
            let res = app.get(path).await;
            let timing = header(res.headers(), "server-timing");
            assert!(timing.starts_with("total;dur=") && !timing.contains("db;"), "{path}: {timing}");
        }
        app.sign_in_admin().await;
        let res = app.get("/").await;
        let timing = header(res.headers(), "server-timing");
        for part in ["db;dur=", "cache;dur=", "render;dur=", "total;dur="] {
            assert!(timing.contains(part), "{timing}");
        }
    }
}

/// The per-route wrapper, with vary on a header.
mod per_route_wrapper {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use actix_web::dev::ServiceRequest;
    use actix_web::http::header::ACCEPT_LANGUAGE;
    use actix_web::middleware::from_fn;
    use actix_web::{test, web, App, HttpRequest, HttpResponse};
    use folio::cache::CacheManager;
    use folio::web::http_cache::{PathMatch, ResponseCache, ResponsePolicy};

    fn nobody_is_admin(_: &ServiceRequest) -> bool {
        false
    }

    #[actix_web::test]
    async fn vary_values_get_their_own_entries() {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = CacheManager::in_memory(&crate::helpers::unique_prefix());
        let mut policy = ResponsePolicy::new("response", Duration::from_secs(300), &["post_lists"])
            .vary_on(ACCEPT_LANGUAGE);
        policy.cache_control =
            actix_web::http::header::HeaderValue::from_static("public, max-age=60");
        let wrapper = std::rc::Rc::new(ResponseCache::new(
            cache.clone(),
            vec![(PathMatch::Prefix("/".into()), policy)],
            nobody_is_admin,
            Arc::new(|_| {}),
            Default::default(),
            "".into(),
            Default::default(),
        ));
        let counter = calls.clone();
        let app = test::init_service(
            // The canonical layer leaves the request's parameters for the key: without
            // it nothing would be stored.
            App::new()
                .wrap(from_fn(|req, next| {
                    folio::web::canonical::check(req, next, folio::web::routes::params_of)
                }))
                .service(
                    web::resource("/greeting/")
                        .wrap(from_fn(move |req, next| wrapper.clone().handle(req, next)))
                        .to(move |req: HttpRequest| {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let lang = req
                                .headers()
                                .get("accept-language")
                                .map(|v| v.to_str().unwrap().to_string())
                                .unwrap_or_default();
                            async move {
                                HttpResponse::Ok().body(if lang.starts_with("pt") {
                                    "Olá"
                                } else {
                                    "Hello"
                                })
                            }
                        }),
                ),
        )
        .await;
        let get = |lang: &'static str| {
            test::TestRequest::get()
                .uri("/greeting/")
                .insert_header(("accept-language", lang))
                .to_request()
        };
        let body = |res| async { String::from_utf8(test::read_body(res).await.to_vec()).unwrap() };
        assert_eq!(
            body(test::call_service(&app, get("en")).await).await,
            "Hello"
        );
        assert_eq!(body(test::call_service(&app, get("pt")).await).await, "Olá");
        let again = test::call_service(&app, get("en")).await;
        assert_eq!(again.headers().get("x-cache").unwrap(), "HIT");
        assert_eq!(again.headers().get("vary").unwrap(), "accept-language");
        assert!(again
            .headers()
            .get("cache-control")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("public"));
        assert_eq!(body(again).await, "Hello");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "two languages, two computations"
        );
        assert!(cache.invalidate_tags(&["post_lists"]).await);
        let after = test::call_service(&app, get("en")).await;
        assert_eq!(
            after.headers().get("x-cache").unwrap(),
            "MISS",
            "a bump drops every variant"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
