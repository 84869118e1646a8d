//! Search: one syntax on both databases (words, phrases, OR, exclusions, tags), ranked,
//! with escaped highlighted snippets; hostile input answered with a message, never a
//! 500; a write seen by the next search through every cache; popular queries stored and
//! warmed; a reader typing into the header's search box in a real browser.

use std::time::Duration;

use folio::content::models::PostInput;
use serde_json::{json, Value};

use crate::helpers::{
    spawn_app_with, test_redis_url, unique_prefix, Backend, TestApp, ADMIN_TOKEN,
};

/// Runs each test on SQLite and PostgreSQL, each with the in-process cache and Redis:
/// `<name>::sqlite_memory`, `sqlite_redis`, `postgres_memory`, `postgres_redis`.
macro_rules! on_databases_and_caches {
    ($(async fn $name:ident($app:ident: TestApp) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn run($app: TestApp) $body

                #[actix_web::test]
                async fn sqlite_memory() {
                    with_app(Backend::Sqlite, false, run).await
                }

                #[actix_web::test]
                async fn sqlite_redis() {
                    with_app(Backend::Sqlite, true, run).await
                }

                #[actix_web::test]
                async fn postgres_memory() {
                    with_app(Backend::Postgres, false, run).await
                }

                #[actix_web::test]
                async fn postgres_redis() {
                    with_app(Backend::Postgres, true, run).await
                }
            }
        )*
    };
}

async fn with_app<F, Fut>(backend: Backend, redis: bool, run: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let prefix = unique_prefix();
    let url = match redis {
        true => match test_redis_url() {
            Some(url) => url,
            None => return,
        },
        false => String::new(),
    };
    // Searches come from many readers: each call of `search` from an address of its own.
    let mut vars = vec![
        ("VIEW_FLUSH_INTERVAL", "100000"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ];
    if redis {
        vars.extend([
            ("CACHE_URL", url.as_str()),
            ("CACHE_KEY_PREFIX", prefix.as_str()),
        ]);
    }
    let Some(app) = spawn_app_with(backend, &vars).await else {
        return; // PostgreSQL not configured (skipped with a reason by the helper)
    };
    let cache = app.state.cache.clone();
    run(app).await;
    if redis {
        cache.clear().await;
        cache.reset_site_stats().await;
    }
}

/// Adds a post through the repository (the one write path: its index entry with it).
async fn post(app: &TestApp, title: &str, body: &str, tags: &[&str], published: bool) -> i32 {
    let author = app.state.repo.authors().await.unwrap()[0].id;
    app.state
        .repo
        .create_post(PostInput {
            cover_image: String::new(),
            title: title.into(),
            slug: folio::content::markdown::slugify(title),
            body_markdown: body.into(),
            excerpt: None,
            author_id: author,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            published,
            published_at: None,
            featured: false,
        })
        .await
        .unwrap()
}

/// `/api/search/?q=…` from a reader of its own (behind the trusted proxy): status and body.
async fn search(app: &TestApp, q: &str) -> (u16, Value) {
    static READER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = READER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    search_from(
        app,
        q,
        &format!("10.{}.{}.{}", n >> 16 & 255, n >> 8 & 255, n & 255),
    )
    .await
}

/// `/api/search/?q=…` from the reader at `address`: status and body.
async fn search_from(app: &TestApp, q: &str, address: &str) -> (u16, Value) {
    let url = format!(
        "/api/search/?q={}",
        url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
    );
    let get = |url: String| {
        app.client
            .get(app.url(&url))
            .header("x-forwarded-for", address)
            .send()
    };
    let res = get(url).await.unwrap();
    let status = res.status().as_u16();
    if status == 308 {
        // A non-canonical spelling: follow it once, as clients do.
        let location = res.headers()["location"].to_str().unwrap().to_string();
        let res = get(location).await.unwrap();
        return (res.status().as_u16(), res.json().await.unwrap());
    }
    (status, res.json().await.unwrap())
}

/// The titles a search finds, best first.
async fn titles(app: &TestApp, q: &str) -> Vec<String> {
    let (status, body) = search(app, q).await;
    assert_eq!(status, 200, "{q}: {body}");
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["title"].as_str().unwrap().to_string())
        .collect()
}

async fn fixtures(app: &TestApp) {
    post(
        app,
        "Zebra stripes and caching",
        "The quick brown fox jumps over the lazy dog. A snippet with `<script>alert(1)</script>` in code.",
        &["Savanna"],
        true,
    )
    .await;
    post(
        app,
        "Penguin migration",
        "A brown fox in the snow, far south.",
        &["Antarctica"],
        true,
    )
    .await;
    post(
        app,
        "Zebra draft",
        "An unpublished zebra never shows.",
        &[],
        false,
    )
    .await;
}

on_databases_and_caches! {
    async fn one_syntax_finds_words_phrases_alternatives_exclusions_and_tags(app: TestApp) {
        fixtures(&app).await;
        assert_eq!(titles(&app, "zebra").await, ["Zebra stripes and caching"], "drafts are not found");
        assert_eq!(titles(&app, "ZEBRA  Stripes").await, ["Zebra stripes and caching"]);
        assert_eq!(titles(&app, "\"quick brown fox\"").await, ["Zebra stripes and caching"]);
        assert!(titles(&app, "\"fox brown quick\"").await.is_empty(), "a phrase keeps its order");
        let mut either = titles(&app, "zebra OR penguin").await;
        either.sort();
        assert_eq!(either, ["Penguin migration", "Zebra stripes and caching"]);
        assert_eq!(titles(&app, "brown fox -snow").await, ["Zebra stripes and caching"]);
        assert_eq!(titles(&app, "antarctica").await, ["Penguin migration"], "tags are searched");
        assert_eq!(titles(&app, "caching zebra").await[0], "Zebra stripes and caching");
        // Stemming on both: "jumping" finds "jumps".
        assert_eq!(titles(&app, "jumping").await, ["Zebra stripes and caching"]);

        let (_, body) = search(&app, "alert").await;
        assert_eq!(body["count"], 1);
        let snippet = body["results"][0]["snippet"].as_str().unwrap();
        assert!(snippet.contains("<mark>alert</mark>"), "{snippet}");
        // Text, never markup (SQLite shows the tag escaped; PostgreSQL's parser may drop it).
        assert!(!snippet.contains("<script"), "{snippet}");

        let (status, page) = app.get_text("/search/?q=zebra").await;
        assert_eq!(status, 200);
        assert!(page.contains("<mark>Zebra</mark>"), "highlighted on the page");
        assert!(page.contains("1 post found"), "the match count");
        assert!(!page.contains("Zebra draft"));
    }

    async fn hostile_input_gets_a_message_never_an_error(app: TestApp) {
        fixtures(&app).await;
        for q in [
            "NEAR(zebra penguin)", "zebra*", "title:zebra", "\"unbalanced zebra", "^zebra", "zebra AND",
            "NOT zebra", "(zebra", "zebra)", "{zebra}", "z\"e\"b\"r\"a", "'; DROP TABLE posts; --",
            "\\", "zebra -", "-\"\"", "OR OR OR", "ｚｅｂｒａ", "日本語 zebra", "zebra\u{E000}",
        ] {
            let (status, body) = search(&app, q).await;
            assert!(status == 200 || status == 400, "{q:?}: {status} {body}");
            if status == 400 {
                assert_eq!(body["error"]["code"], "bad_parameter", "{q:?}: {body}");
            }
            let res = app.get(&format!("/search/?q={}", url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>())).await;
            assert!(res.status().as_u16() < 500, "{q:?}: the page answered {}", res.status());
        }
        assert_eq!(titles(&app, "ｚｅｂｒａ").await, ["Zebra stripes and caching"], "NFKC");
        for (q, message) in [("", "type a word"), ("* : ()", "type a word"), ("-zebra", "excluded"), (&"x".repeat(250) as &str, "too long"), (&(0..13).map(|i| format!("w{i} ")).collect::<String>() as &str, "too long")] {
            let (status, body) = search(&app, q).await;
            assert_eq!(status, 400, "{q:?}: {body}");
            assert!(body["error"]["message"].as_str().unwrap_or("").contains(message) || body.to_string().contains(message), "{q:?}: {body}");
        }
        // The page keeps the reader's text in the box, with the message.
        let (status, page) = app.get_text("/search/?q=-zebra").await;
        assert_eq!(status, 400);
        assert!(page.contains("value=\"-zebra\"") && page.contains("excluded"), "{page}");
    }

    async fn a_write_is_seen_by_the_next_search(app: TestApp) {
        fixtures(&app).await;
        // Popular (searched twice) and stored; then served from the cache.
        for _ in 0..3 {
            assert_eq!(titles(&app, "penguin").await, ["Penguin migration"]);
        }
        let search_hits = || {
            let stats = app.state.cache.stats();
            stats.families.iter().find(|f| f.name == "search").map_or(0, |f| f.hits)
        };
        let before = search_hits();
        let res = app.get("/api/search/?q=penguin").await;
        assert_ne!(res.headers()["x-cache"], "HIT", "a search answer is never stored whole");
        assert_eq!(search_hits(), before + 1, "a popular search's results are stored");
        // Found nothing: remembered in the shared entry; then a post with the word.
        for _ in 0..3 {
            assert!(titles(&app, "wombat").await.is_empty());
        }
        let id = post(&app, "Wombat burrows", "Penguins visit wombats.", &[], true).await;
        assert_eq!(titles(&app, "wombat").await, ["Wombat burrows"], "a new post is found at once");
        let mut both = titles(&app, "penguin").await;
        both.sort();
        assert_eq!(both, ["Penguin migration", "Wombat burrows"], "stored results were dropped");
        // Edited away, then deleted: gone from the next search.
        let (_, detail, author) = app.post_to_edit("wombat-burrows").await;
        app.state.repo.update_post(id, PostInput {
            cover_image: String::new(),
            title: "Burrows".into(),
            slug: "wombat-burrows".into(),
            body_markdown: "Nothing about the animal.".into(),
            excerpt: None,
            author_id: author,
            tags: vec![],
            published: detail.summary.published,
            published_at: None,
            featured: false,
        }).await.unwrap();
        assert!(titles(&app, "wombat").await.is_empty(), "an edit is seen by the next search");
        assert!(!titles(&app, "burrows").await.is_empty());
        app.state.repo.delete_post(id).await.unwrap();
        assert!(titles(&app, "burrows").await.is_empty(), "a deletion too");
        // The rebuilt index answers the same.
        app.state.repo.reindex().await.unwrap();
        assert_eq!(titles(&app, "penguin").await, ["Penguin migration"]);
    }

    async fn pages_and_navigation(app: TestApp) {
        for i in 0..23 {
            post(&app, &format!("Kiwi note {i}"), "About the kiwi bird.", &["Birds"], true).await;
        }
        let (_, first) = search(&app, "kiwi").await;
        assert_eq!(first["count"], 23);
        assert_eq!(first["num_pages"], 3);
        assert_eq!(first["results"].as_array().unwrap().len(), 10);
        assert_eq!(first["next"], "http://blog.example.com/api/search/?q=kiwi&page=2");
        let res = app.get("/api/search/?q=kiwi&page=3").await;
        let last: Value = res.json().await.unwrap();
        assert_eq!(last["results"].as_array().unwrap().len(), 3);
        assert_eq!(app.get("/api/search/?q=kiwi&page=4").await.status(), 404);
        let (_, page) = app.get_text("/search/?q=kiwi&page=2").await;
        assert!(page.contains("Page 2 of 3"));
        assert!(page.contains("href=\"/search/?q=kiwi&amp;page=3\""), "next page link");
        // Non-canonical spellings are redirected to the canonical query.
        let res = app.get("/search/?q=KIWI++Bird").await;
        assert_eq!(res.status(), 308);
        assert_eq!(res.headers()["location"], "/search/?q=kiwi+bird");
        // One redirect at most, whatever the letters: case mappings that change length,
        // compatibility forms, combining marks.
        for q in ["İstanbul", "STRASSE ẞ", "ﬁle", "ΟΔΟΣ", "i\u{307}x", "Å"] {
            let raw = url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>();
            for path in ["/search/", "/api/search/"] {
                let res = app.get(&format!("{path}?q={raw}")).await;
                let location = match res.status().as_u16() {
                    308 => res.headers()["location"].to_str().unwrap().to_string(),
                    _ => continue,
                };
                let again = app.get(&location).await;
                assert_ne!(again.status(), 308, "{q}: a second redirect from {location}");
            }
        }
        // Browsers can add the search; the OpenAPI document names it.
        let (status, xml) = app.get_text("/opensearch.xml").await;
        assert_eq!(status, 200);
        assert!(xml.contains("http://blog.example.com/search/?q={searchTerms}"), "{xml}");
        assert!(app.get_text("/").await.1.contains("rel=\"search\""));
        let (_, openapi) = app.get_json("/api/openapi.json").await;
        assert!(openapi["paths"]["/api/search/"]["get"].is_object());
    }
}

async fn post_json(app: &TestApp, path: &str, body: Value) -> Value {
    let res = app
        .client
        .post(app.url(path))
        .json(&body)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

crate::on_both_app_caches! { with &[("TRUSTED_PROXIES", "127.0.0.1")];
    async fn the_most_searched_queries_are_warmed(app: TestApp) {
        fixtures(&app).await;
        for _ in 0..3 {
            search(&app, "zebra").await;
        }
        search(&app, "penguin").await;
        assert_eq!(app.state.repo.search_counts().top(1)[0].0, "zebra");
        app.state.cache.clear().await;
        let report = post_json(&app, "/api/cache/warm/", json!({"type": "search"})).await;
        assert!(report["by_type"]["search"]["warmed"].as_u64().unwrap() >= 4, "{report}");
        // Its results are in the search budget: the next search reads them.
        let stats = app.state.cache.stats();
        let hits = stats.families.iter().find(|f| f.name == "search").map_or(0, |f| f.hits);
        for path in ["/search/?q=zebra", "/api/search/?q=zebra"] {
            assert_eq!(app.get(path).await.status(), 200, "{path}");
        }
        let stats = app.state.cache.stats();
        let after = stats.families.iter().find(|f| f.name == "search").map_or(0, |f| f.hits);
        assert_eq!(after, hits + 2);
        // Warm requests are not searches: the counts did not move.
        let zebra = app.state.repo.search_counts().top(1)[0].1;
        // (The two reads above are one more reader's.)
        assert!(zebra < 4.5, "{zebra}");
    }

    async fn made_up_queries_store_nothing(app: TestApp) {
        fixtures(&app).await;
        search(&app, "zebra").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let prefix = app.state.config.cache.key_prefix.clone();
        let redis_keys = || async {
            match test_redis_url().filter(|_| app.state.cache.is_shared()) {
                Some(url) => Some(crate::edges::scan(&url, &prefix).await.len()),
                None => None,
            }
        };
        let before = app.state.cache.local_size().map(|(n, _, _)| n);
        let redis_before = redis_keys().await;
        for i in 0..300 {
            // From one address, each twice: found (through OR, or beside a common word)
            // and not found; and pages of the form with no query.
            for _ in 0..2 {
                search_from(&app, &format!("zebra OR made{i}"), "10.9.9.9").await;
                search_from(&app, &format!("zebra -zz{i}"), "10.9.9.9").await;
                search_from(&app, &format!("nothing{i} here"), "10.9.9.9").await;
            }
            let res = app.get(&format!("/search/?page={i}")).await;
            // Page 0 is out of the parameter's bounds (400); the others name the form.
            assert!([308, 400].contains(&res.status().as_u16()), "/search/?page={i}");
        }
        let after = app.state.cache.local_size().map(|(n, _, _)| n);
        if let (Some(before), Some(after)) = (before, after) {
            assert!(after <= before + 1, "in process: {before} entries before, {after} after");
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if let (Some(before), Some(after)) = (redis_before, redis_keys().await) {
            // At most the shared "found nothing" entry is new.
            assert!(after <= before + 1, "Redis: {before} keys before, {after} after");
        }
        // Popular queries by the thousand (each from two readers) stay within the
        // search budget: they evict one another, never another family's entry.
        let before = app.state.cache.local_size().map(|(n, _, _)| n);
        let redis_before = redis_keys().await;
        for i in 0..600 {
            search(&app, &format!("zebra -yy{i}")).await;
            search(&app, &format!("zebra -yy{i}")).await;
        }
        let slots = folio::content::repository::search::SLOTS as usize;
        let after = app.state.cache.local_size().map(|(n, _, _)| n);
        if let (Some(before), Some(after)) = (before, after) {
            assert!(after <= before + slots as u64, "in process: {before} entries before, {after} after");
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if let (Some(before), Some(after)) = (redis_before, redis_keys().await) {
            assert!(after <= before + slots, "Redis: {before} keys before, {after} after");
        }
        assert_eq!(app.get("/").await.status(), 200);
        assert!(app.state.repo.search_counts().len() <= folio::content::search::popular::CAPACITY);
    }

    async fn one_address_runs_one_uncached_search_at_a_time(app: TestApp) {
        app.seed_generated(300).await;
        // Many different queries at once from one address: the ones that arrive while
        // its previous search runs are refused with a retry hint, never queued or failed.
        let queries: Vec<String> = (0..24).map(|i| format!("cache OR latency -zz{i}")).collect();
        let answers = futures_util::future::join_all(queries.iter().map(|q| async {
            let url = format!(
                "/api/search/?q={}",
                url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
            );
            let res = app
                .client
                .get(app.url(&url))
                .header("x-forwarded-for", "10.8.8.8")
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            (status, retry, res.json::<Value>().await.unwrap())
        }))
        .await;
        let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
        assert!(answers.iter().all(|(s, _, _)| [200, 429].contains(s)), "{answers:?}");
        assert!(answers.iter().any(|(s, _, _)| *s == 200), "{answers:?}");
        assert!(!refused.is_empty(), "24 searches at once from one address all ran");
        for (_, retry, body) in &refused {
            assert_eq!(retry.as_deref(), Some("1"));
            assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
        }
        // Another address is not held back, and the same address searches again once
        // its searches ended.
        assert_eq!(search_from(&app, "cache -zz0", "10.8.8.9").await.0, 200);
        assert_eq!(search_from(&app, "cache -zz1", "10.8.8.8").await.0, 200);
        // A stored answer is never refused: popular (two addresses), then 24 at once.
        search_from(&app, "latency -zz7", "10.7.7.1").await;
        search_from(&app, "latency -zz7", "10.7.7.2").await;
        let statuses = futures_util::future::join_all(
            (0..24).map(|_| search_from(&app, "latency -zz7", "10.8.8.8")),
        )
        .await;
        assert!(statuses.iter().all(|(s, _)| *s == 200), "{statuses:?}");
    }
}

/// A reader types into the header's search box and sees highlighted results.
#[cfg(feature = "browser-tests")]
#[actix_web::test]
async fn a_reader_searches_from_the_header_in_a_browser() {
    use fantoccini::Locator;
    let Some((_driver, port)) = crate::dashboard::start_chromedriver() else {
        return;
    };
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    fixtures(&app).await;
    let profile = tempfile::TempDir::new().unwrap();
    let browser = crate::dashboard::chromium(port, &profile).await;
    let run = async {
        browser.goto(&app.url("/blog/")).await?;
        let input = browser.find(Locator::Css("header input[name=q]")).await?;
        input.send_keys("Zebra stripes\u{E007}").await?; // typed, then Enter
        browser
            .wait()
            .for_element(Locator::Css(".search-result mark"))
            .await?;
        let url = browser.current_url().await?;
        assert!(
            url.path() == "/search/" && url.query() == Some("q=zebra+stripes"),
            "{url}"
        );
        let marked = browser
            .find(Locator::Css(".search-result mark"))
            .await?
            .text()
            .await?;
        assert_eq!(marked.to_lowercase(), "zebra");
        let count = browser
            .find(Locator::Id("search-count"))
            .await?
            .text()
            .await?;
        assert!(count.starts_with("1 post found"), "{count}");
        let boxed = browser
            .find(Locator::Id("search-q"))
            .await?
            .prop("value")
            .await?;
        assert_eq!(boxed.as_deref(), Some("zebra stripes"));
        Ok::<_, fantoccini::error::CmdError>(())
    };
    let result = run.await;
    let _ = browser.close().await;
    result.expect("searching works in a browser");
}

/// A word in more than 1,000 posts is counted up to 1,000 and listed newest first; a
/// rarer one is counted exactly and ranked.
#[actix_web::test]
async fn a_common_word_is_counted_up_to_a_thousand_and_listed_newest_first() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    app.seed_generated(1250).await;
    let (status, body) = search(&app, "cache").await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 1000);
    assert_eq!(body["count_capped"], true);
    assert_eq!(body["num_pages"], 101);
    let dates: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["published_at"].as_str().unwrap())
        .collect();
    assert!(
        dates.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {dates:?}"
    );
    let (_, page) = app.get_text("/search/?q=cache").await;
    assert!(
        page.contains("More than 1,000 posts found"),
        "the page says so"
    );
    let (_, rare) = search(&app, "kakasa").await;
    let count = rare["count"].as_i64().unwrap();
    assert!(count > 0 && count < 1000, "{count}");
    assert_eq!(rare["count_capped"], false);
}
