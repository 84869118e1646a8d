//! Invariants over the route table (`folio::web::routes`): requests generated from it —
//! its real URLs, each parameter's valid, out-of-bound and made-up values, unknown
//! parameters — get from the cached app exactly what an uncached instance answers, and
//! store nothing beyond the keys of the URLs that exist; a route outside the table is
//! never stored; and two instances sharing a cache agree with an uncached one within a
//! second of every write of a random sequence (`ROUTE_CASES`, `ROUTE_OPS` for longer
//! runs than CI's fixed seed). (A tag only drafts use answering as an unknown one is
//! `publishing::a_tag_only_drafts_have_is_unknown_to_readers`.)

use proptest::prelude::*;

use crate::edges::{answer, answers_as_uncached, settled, stored_keys, uncached_beside, QUIET};
use crate::fuzz::samples;
use crate::helpers::{spawn_app_with, test_redis_url, Backend, TestApp};
use folio::web::routes::{Caching, Kind, TABLE};

/// What the site holds that URLs name: post slugs and tag slugs.
struct Names {
    posts: Vec<String>,
    tags: Vec<String>,
}

/// Values a visitor may send for a parameter of `kind`: valid ones first.
fn values(kind: Kind, names: &Names) -> (Vec<String>, Vec<String>) {
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match kind {
        Kind::Page => (
            own(&["1", "2"]),
            own(&["0", "-1", "99", "abc", "02", "9223372036854775808"]),
        ),
        Kind::Slug => (
            names.tags.iter().take(3).cloned().collect(),
            own(&["made-up-tag", "Not A Slug", "draft-only"]),
        ),
        Kind::Flag => (own(&["true", "false"]), own(&["1", "maybe"])),
        Kind::Text { max_chars } => (
            own(&["Coding"]),
            vec!["made-up".into(), "x".repeat(max_chars + 1)],
        ),
        Kind::Search => (
            own(&["cache"]),
            own(&["cache -zzq", "\"unbalanced", "zzqqxx", "a OR b OR c"]),
        ),
        Kind::OneOf(allowed) => (own(allowed), own(&["2h"])),
    }
}

/// Every URL the table says is stored, with valid values: the site's existing URLs.
fn existing_urls(names: &Names) -> Vec<String> {
    let mut urls = Vec::new();
    for route in TABLE.iter().filter(|r| r.cache != Caching::Never) {
        let fills: Vec<String> = match route.path {
            p if p.contains("/tag/{") => names.tags.clone(),
            p if p.contains('{') => names.posts.clone(),
            _ => vec![String::new()],
        };
        for fill in fills {
            let path = fill_path(route.path, &fill);
            urls.push(path.clone());
            for param in route.params.iter().filter(|p| !p.required) {
                for value in values(param.kind, names).0 {
                    urls.push(format!("{path}?{}={}", param.name, encode(&value)));
                }
            }
        }
    }
    urls
}

fn fill_path(pattern: &str, value: &str) -> String {
    match pattern.split_once('{') {
        Some((head, rest)) => format!("{head}{value}{}", rest.split_once('}').unwrap().1),
        None => pattern.to_string(),
    }
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A request drawn from the table.
fn request(names: &Names) -> impl Strategy<Value = String> {
    let routes: Vec<usize> = (0..TABLE.len())
        .filter(|i| TABLE[*i].cache != Caching::Never)
        .collect();
    let mut slugs = names.posts.clone();
    slugs.extend([
        "made-up-post".to_string(),
        "Not%20A%20Slug".into(),
        "x%2Fy".into(),
    ]);
    let tags = {
        let mut t = names.tags.clone();
        t.extend(["made-up-tag".to_string(), "draft-only".into()]);
        t
    };
    let values: Vec<Vec<Vec<String>>> = TABLE
        .iter()
        .map(|r| {
            r.params
                .iter()
                .map(|p| {
                    let (mut good, bad) = values(p.kind, names);
                    good.extend(bad);
                    good
                })
                .collect()
        })
        .collect();
    (
        proptest::sample::select(routes),
        proptest::sample::select(slugs),
        proptest::sample::select(tags),
        proptest::collection::vec(
            (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
            0..3,
        ),
        proptest::collection::vec(
            proptest::sample::select(&["utm_source=x", "ref=", "x=1", "PAGE=2", "p%61ge=2"][..]),
            0..2,
        ),
    )
        .prop_map(move |(route, slug, tag, picks, extras)| {
            let r = &TABLE[route];
            let fill = match r.path.contains("/tag/{") {
                true => tag,
                false => slug,
            };
            let path = fill_path(r.path, &fill);
            let mut pairs: Vec<String> = Vec::new();
            for (param, value) in picks {
                if r.params.is_empty() {
                    break;
                }
                let i = param.index(r.params.len());
                let choices = &values[route][i];
                let v = value.get(choices);
                pairs.push(format!("{}={}", r.params[i].name, encode(v)));
            }
            pairs.extend(extras.iter().map(|e| e.to_string()));
            match pairs.is_empty() {
                true => path,
                false => format!("{path}?{}", pairs.join("&")),
            }
        })
}

async fn names(app: &TestApp) -> Names {
    let (posts, tags) = app.state.repo.sitemap().await.unwrap();
    Names {
        posts: posts.iter().map(|p| p.slug.clone()).collect(),
        tags: tags.iter().map(|t| t.slug.clone()).collect(),
    }
}

/// (a) and (b): cache on = cache off for every request drawn; keys stay those of the
/// existing URLs (plus the search budget).
async fn table_requests_answer_as_uncached_and_store_within_bounds(cached: TestApp) {
    let uncached = uncached_beside(&cached).await;
    let names = names(&cached).await;
    for url in existing_urls(&names) {
        answer(&cached, &url).await;
    }
    settled().await;
    let existing = stored_keys(&cached).await;
    let n = std::env::var("ROUTE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for url in samples(request(&names), n) {
        answers_as_uncached(&cached, &uncached, &url, "the route table").await;
    }
    let after = stored_keys(&cached).await;
    let budget = folio::content::repository::search::SLOTS * 3;
    assert!(
        after <= existing + budget,
        "made-up requests stored keys: {existing} for the existing URLs, {after} after"
    );
}

#[actix_web::test]
async fn table_requests_answer_as_uncached_in_process() {
    table_requests_answer_as_uncached_and_store_within_bounds(
        spawn_app_with(Backend::Sqlite, QUIET).await.unwrap(),
    )
    .await
}

#[actix_web::test]
async fn table_requests_answer_as_uncached_in_process_on_postgres() {
    if let Some(app) = spawn_app_with(Backend::Postgres, QUIET).await {
        table_requests_answer_as_uncached_and_store_within_bounds(app).await
    }
}

#[actix_web::test]
async fn table_requests_answer_as_uncached_on_redis() {
    if let Some(url) = test_redis_url() {
        crate::helpers::run_on_shared_cache(
            &url,
            QUIET,
            table_requests_answer_as_uncached_and_store_within_bounds,
        )
        .await
    }
}

/// A handler registered outside the table is answered, and never stored: only the
/// table's routes have a cache policy.
#[actix_web::test]
async fn a_route_outside_the_table_is_never_stored() {
    use actix_web::{test, web, HttpResponse};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let app = spawn_app_with(Backend::Sqlite, QUIET).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let service = test::init_service(folio::web::app::app(app.state.clone()).route(
        "/not-in-the-table/",
        web::get().to(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { HttpResponse::Ok().body("public, cacheable-looking") }
        }),
    ))
    .await;
    for _ in 0..3 {
        let res = test::call_service(
            &service,
            test::TestRequest::get()
                .uri("/not-in-the-table/")
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), 200);
        assert!(
            res.headers().get("x-cache").is_none(),
            "no cache policy, no cache outcome"
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "every request reached the handler"
    );
    // While the table's own pages are stored.
    for expected in ["MISS", "HIT"] {
        let res = test::call_service(
            &service,
            test::TestRequest::get().uri("/about/").to_request(),
        )
        .await;
        assert_eq!(res.headers().get("x-cache").unwrap(), expected);
    }
}

/// A write of the random sequences below.
#[derive(Debug, Clone)]
enum Op {
    Retitle(usize, u16),
    Retag(usize, u8),
    Unpublish(usize),
    Delete(usize),
    Create { scheduled: bool, tag: u8 },
    Webhook,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..50usize, any::<u16>()).prop_map(|(i, n)| Op::Retitle(i, n)),
        2 => (0..50usize, 0..4u8).prop_map(|(i, t)| Op::Retag(i, t)),
        1 => (0..50usize).prop_map(Op::Unpublish),
        1 => (0..50usize).prop_map(Op::Delete),
        2 => (any::<bool>(), 0..4u8).prop_map(|(scheduled, tag)| Op::Create { scheduled, tag }),
        1 => Just(Op::Webhook),
    ]
}

const WEBHOOK_SECRET: &str = "a webhook secret of at least thirty-two characters";

/// Applies `op` through `writer`'s repository (or its webhook).
async fn apply(writer: &TestApp, op: &Op, n: usize) {
    use folio::content::models::PostInput;
    let repo = &writer.state.repo;
    let posts = repo.all_posts().await.unwrap();
    let tags = ["caching", "rust", "fresh-tag", "databases"];
    let nth = |i: usize| posts.get(i % posts.len().max(1));
    let input = |id: i32| async move {
        let (post, author_id) = repo.post_for_edit(id).await.unwrap().unwrap();
        PostInput {
            title: post.summary.title.clone(),
            slug: post.summary.slug.clone(),
            body_markdown: post.body_markdown.clone(),
            excerpt: Some(post.summary.excerpt.clone()),
            author_id,
            tags: post.summary.tags.iter().map(|t| t.name.clone()).collect(),
            published: post.summary.published,
            published_at: post.summary.published_at,
            featured: post.summary.featured,
            cover_image: String::new(),
        }
    };
    match op {
        Op::Retitle(i, v) => {
            if let Some(p) = nth(*i) {
                let mut post = input(p.id).await;
                post.title = format!("Retitled {v} in step {n}");
                repo.update_post(p.id, post).await.unwrap();
            }
        }
        Op::Retag(i, t) => {
            if let Some(p) = nth(*i) {
                let mut post = input(p.id).await;
                post.tags = vec![tags[*t as usize].to_string()];
                repo.update_post(p.id, post).await.unwrap();
            }
        }
        Op::Unpublish(i) => {
            if let Some(p) = nth(*i) {
                let mut post = input(p.id).await;
                post.published = false;
                repo.update_post(p.id, post).await.unwrap();
            }
        }
        Op::Delete(i) => {
            if let Some(p) = nth(*i) {
                repo.delete_post(p.id).await.unwrap();
            }
        }
        Op::Create { scheduled, tag } => {
            let author_id = repo.post_for_edit(posts[0].id).await.unwrap().unwrap().1;
            let at = folio::db::now() + chrono::Duration::seconds(2);
            repo.create_post(PostInput {
                title: format!("Written in step {n}"),
                slug: format!("written-in-step-{n}"),
                body_markdown: format!("The body of step {n}, about cache."),
                excerpt: None,
                author_id,
                tags: vec![tags[*tag as usize].to_string()],
                published: true,
                published_at: scheduled.then(|| at.with_nanosecond(0).unwrap()),
                featured: false,
                cover_image: String::new(),
            })
            .await
            .unwrap();
        }
        Op::Webhook => {
            let res = crate::helpers::signed_webhook(
                &writer.client,
                &writer.url("/api/cache/invalidate/"),
                WEBHOOK_SECRET,
                r#"{"models": ["post"]}"#,
            )
            .await;
            assert!(res.status().is_success(), "the webhook: {}", res.status());
        }
    }
}

use chrono::Timelike as _;

/// The URLs watched: the table's existing URLs for what the uncached instance shows now.
async fn watched(uncached: &TestApp) -> Vec<String> {
    let mut urls = existing_urls(&names(uncached).await);
    urls.retain(|u| !u.contains("page=2"));
    urls
}

/// (c): two instances sharing one cache agree with an uncached instance on the same
/// database within 1 s of every operation of a random sequence.
async fn instances_agree_after_random_writes(url: &str, backend: Backend, near: &str) {
    let settings = [
        ("CACHE_NEAR", near),
        ("CACHE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("VIEW_FLUSH_INTERVAL", "100000"),
        ("WARM_ON_START", "false"),
        ("SITE_URL", "http://folio.test"),
    ];
    let (a, b) = crate::helpers::two_instances_on(url, backend, &settings).await;
    let c = a
        .second_instance(&[
            ("CACHE_URL", "none"),
            ("CACHE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("VIEW_FLUSH_INTERVAL", "100000"),
            ("SITE_URL", "http://folio.test"),
        ])
        .await;
    let n = std::env::var("ROUTE_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for step in 0..n {
        let op = proptest::strategy::ValueTree::current(&op().new_tree(&mut runner).unwrap());
        // Fill the caches first, so a stale copy would be there to be served.
        let urls = watched(&c).await;
        for url in &urls {
            answer(&a, url).await;
            answer(&b, url).await;
        }
        apply([&a, &b, &c][step % 3], &op, step).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let mut settled_at_least_once = false;
        loop {
            let mut differs = None;
            for url in watched(&c).await {
                let expected = answer(&c, &url).await;
                for (name, app) in [("a", &a), ("b", &b)] {
                    let got = answer(app, &url).await;
                    if got != expected && differs.is_none() {
                        let what = match got.0 == expected.0 {
                            true => "the body differs from the uncached one".to_string(),
                            false => {
                                format!("{} where the uncached one answers {}", got.0, expected.0)
                            }
                        };
                        differs = Some(format!("{url} on {name}: {what}"));
                    }
                }
            }
            match differs {
                None => break,
                Some(what) if std::time::Instant::now() > deadline && settled_at_least_once => {
                    panic!("step {step} ({op:?}): {what}, more than 1 s after the write")
                }
                // Checking all URLs takes a while: one more full pass after the deadline.
                Some(_) => settled_at_least_once = std::time::Instant::now() > deadline,
            }
        }
    }
}

#[actix_web::test]
async fn instances_agree_on_redis_sqlite_near() {
    if let Some(url) = test_redis_url() {
        instances_agree_after_random_writes(&url, Backend::Sqlite, "true").await
    }
}

#[actix_web::test]
async fn instances_agree_on_redis_postgres_no_near() {
    if let Some(url) = test_redis_url() {
        instances_agree_after_random_writes(&url, Backend::Postgres, "false").await
    }
}

#[actix_web::test]
async fn instances_agree_on_the_cluster_postgres_near() {
    if let Some(url) = crate::redis_cluster::shared_cluster_url() {
        instances_agree_after_random_writes(&url, Backend::Postgres, "true").await
    }
}

#[actix_web::test]
async fn instances_agree_on_the_cluster_sqlite_no_near() {
    if let Some(url) = crate::redis_cluster::shared_cluster_url() {
        instances_agree_after_random_writes(&url, Backend::Sqlite, "false").await
    }
}
