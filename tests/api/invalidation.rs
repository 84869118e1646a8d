use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use folio::content::invalidation::{tags_invalidated_by, CacheTag, Model};

use crate::helpers::{spawn_app_with, Backend, TestApp};
use crate::on_both_caches;

/// What each model's change must invalidate, written out here (not read from `RULES`, the
/// table under test), as the seed's "Cache Invalidation Rules" list says it.
const EXPECTED: &[(Model, &[CacheTag])] = {
    use CacheTag::*;
    &[
        (
            Model::Post,
            // not every post page: a post's own page has its own tag (test below)
            &[
                PostLists,
                PopularPosts,
                TagPages,
                TagCloud,
                Feed,
                Sitemap,
                ApiPosts,
                SearchResults,
            ],
        ),
        (
            Model::Author,
            &[
                PostLists,
                PopularPosts,
                PostDetail,
                Feed,
                ApiPosts,
                SearchResults,
            ],
        ),
        (
            Model::Tag,
            &[
                PostLists,
                PopularPosts,
                PostDetail,
                TagPages,
                TagCloud,
                Feed,
                Sitemap,
                ApiPosts,
                SearchResults,
            ],
        ),
        (Model::PersonalInfo, &[PersonalInfo, ApiPersonalInfo]),
        (Model::SocialLink, &[SocialLinks, ApiSocialLinks]),
        (Model::AiTool, &[Tools, FeaturedTools, ApiAiTools]),
        (Model::ContactMessage, &[AdminStats]),
        (Model::PostViews, &[PopularPosts]),
    ]
};

// For every model: a change invalidates exactly the tags expected, and every other entry
// stays.
on_both_caches! {
    async fn each_model_invalidates_exactly_its_tags(cache: CacheManager) {
        assert_eq!(EXPECTED.len(), Model::ALL.len(), "every model has an expectation");
        for (model, expected) in EXPECTED {
            let keys: Vec<_> = CacheTag::ALL.iter().map(|g| (cache.key("rule", [g.name(), model.name()]), *g)).collect();
            for (key, tag) in &keys {
                let stored = cache.get_or_set_tagged(key, &[tag.name()], None, || async { Ok::<_, ()>(1) }).await;
                assert_eq!(stored, Ok(1));
            }
            assert!(cache.invalidate_tags(&tags_invalidated_by(&[*model])).await);
            for (key, tag) in &keys {
                let kept = cache.get_tagged::<i32>(key, &[tag.name()]).await.value.is_some();
                let should_drop = expected.contains(tag);
                assert_eq!(kept, !should_drop, "{model:?} change: {tag:?} should be {}", if should_drop { "dropped" } else { "kept" });
            }
        }
    }
}

/// Readers never see a version older than the last write that returned. `readers`
/// are the apps the readers hit; the writer writes through `writer`.
async fn assert_no_stale_reads(writer: &TestApp, readers: Vec<&TestApp>, writes: u64) {
    let committed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let stale = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for app in &readers {
        for path in ["/api/personal-info/", "/about/", "/"] {
            let (client, url) = (app.client.clone(), app.url(path));
            let (committed, stop, stale, reads) = (
                committed.clone(),
                stop.clone(),
                stale.clone(),
                reads.clone(),
            );
            tasks.push(actix_web::rt::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let floor = committed.load(Ordering::SeqCst);
                    let body = client.get(&url).send().await.unwrap().text().await.unwrap();
                    let seen = body
                        .split("Headline version ")
                        .nth(1)
                        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0);
                    reads.fetch_add(1, Ordering::SeqCst);
                    if seen < floor {
                        stale.fetch_add(1, Ordering::SeqCst);
                        eprintln!("stale read on {url}: saw {seen}, last write returned {floor}");
                    }
                }
            }));
        }
    }
    for version in 1..=writes {
        let info = crate::helpers::personal_info(format!("Headline version {version}"));
        writer.state.repo.save_personal_info(&info).await.unwrap();
        committed.store(version, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        reads.load(Ordering::SeqCst) > writes,
        "readers ran alongside the writes"
    );
    assert_eq!(
        stale.load(Ordering::SeqCst),
        0,
        "stale reads after a write returned"
    );
}

#[actix_web::test]
async fn no_stale_reads_with_the_in_process_cache() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    assert_no_stale_reads(&app, vec![&app], 30).await;
}

#[actix_web::test]
async fn no_stale_reads_across_two_instances_sharing_redis() {
    let Some((a, b)) = crate::helpers::two_instances_on_redis(Backend::Sqlite, &[]).await else {
        return;
    };
    assert_no_stale_reads(&a, vec![&a, &b], 30).await;
    a.state.cache.clear().await;
    a.state.cache.reset_site_stats().await;
}

#[actix_web::test]
async fn no_stale_reads_across_two_instances_on_a_redis_cluster() {
    let Some(url) = crate::redis_cluster::shared_cluster_url() else {
        return;
    };
    let (a, b) = crate::helpers::two_instances_on(&url, Backend::Sqlite, &[]).await;
    assert_no_stale_reads(&a, vec![&a, &b], 30).await;
    a.state.cache.clear().await;
    a.state.cache.reset_site_stats().await;
}

#[actix_web::test]
async fn no_stale_reads_on_postgres_with_redis() {
    let Some(url) = crate::helpers::test_redis_url() else {
        return;
    };
    let prefix = crate::helpers::unique_prefix();
    let cache = [
        ("CACHE_URL", url.as_str()),
        ("CACHE_KEY_PREFIX", prefix.as_str()),
        ("CACHE_TIMEOUT_MS", "2000"),
    ];
    let Some(a) = spawn_app_with(Backend::Postgres, &cache).await else {
        return;
    };
    let b = a.second_instance(&cache).await;
    assert_no_stale_reads(&b, vec![&a, &b], 20).await;
    a.state.cache.clear().await;
    a.state.cache.reset_site_stats().await;
}

/// An author's or a tag's change reaches the pages that show posts.
#[actix_web::test]
async fn relationship_changes_reach_the_post_pages() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    assert!(app
        .get_text("/blog/tag/caching/")
        .await
        .1
        .contains("Stampedes and single flight"));
    app.get_json("/api/posts/?tag=caching").await;
    // A new post with an existing tag: the tag page and the filtered API list change.
    let author = app
        .state
        .repo
        .author_by_slug("ada-okafor")
        .await
        .unwrap()
        .unwrap();
    let input = folio::content::models::PostInput {
        cover_image: String::new(),
        title: "Warming caches on deploy".into(),
        slug: "warming-caches-on-deploy".into(),
        body_markdown: "Warm before you switch traffic.".into(),
        excerpt: None,
        author_id: author.id,
        tags: vec!["Caching".into()],
        published: true,
        published_at: None,
        featured: false,
    };
    let id = app.state.repo.create_post(input.clone()).await.unwrap();
    assert!(app
        .get_text("/blog/tag/caching/")
        .await
        .1
        .contains("Warming caches on deploy"));
    assert_eq!(app.get_json("/api/posts/?tag=caching").await.1["count"], 4);

    // A tag added to the post: the post page, the blog list and the new tag's page show it.
    let post_page = "/blog/warming-caches-on-deploy/";
    assert!(!app.get_text(post_page).await.1.contains("Deploys"));
    app.get_text("/blog/").await;
    let tagged = folio::content::models::PostInput {
        cover_image: String::new(),
        tags: vec!["Caching".into(), "Deploys".into()],
        ..input
    };
    app.state.repo.update_post(id, tagged).await.unwrap();
    assert!(app.get_text(post_page).await.1.contains("Deploys"));
    assert!(app
        .get_text("/blog/tag/deploys/")
        .await
        .1
        .contains("Warming caches on deploy"));
    let api = app.get_json("/api/posts/warming-caches-on-deploy/").await.1;
    assert!(api["tags"].to_string().contains("deploys"), "{api}");

    // The author renamed: every page that shows the post shows the new name.
    assert!(app.get_text("/blog/").await.1.contains("Ada Okafor"));
    assert!(app
        .state
        .repo
        .update_author(author.id, "Ada Okafor-Lima", &author.bio)
        .await
        .unwrap());
    for path in ["/blog/", post_page, "/blog/tag/caching/", "/"] {
        assert!(
            app.get_text(path).await.1.contains("Ada Okafor-Lima"),
            "{path} shows the new name"
        );
    }
    let api = app.get_json("/api/posts/warming-caches-on-deploy/").await.1;
    assert_eq!(api["author"]["name"], "Ada Okafor-Lima");
}

/// A change to one post drops its own page (per-object tag), and the other posts' pages
/// stay cached: their body fragments are not loaded again.
#[actix_web::test]
async fn a_post_edit_drops_its_own_page_and_keeps_the_others() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    let other = "/blog/markdown-is-enough/";
    app.get_text("/blog/stampedes-and-single-flight/").await;
    app.get_text(other).await;
    let repo = &app.state.repo;
    let (id, post, author_id) = app.post_to_edit("stampedes-and-single-flight").await;
    let input = folio::content::models::PostInput {
        cover_image: String::new(),
        title: "Stampedes, renamed".into(),
        slug: "stampedes-renamed".into(),
        body_markdown: post.body_markdown,
        excerpt: None,
        author_id,
        tags: vec!["Caching".into()],
        published: true,
        published_at: None,
        featured: false,
    };
    repo.update_post(id, input).await.unwrap();
    // The old slug is gone at once, the new one shows the new title.
    assert_eq!(
        app.get("/blog/stampedes-and-single-flight/").await.status(),
        404
    );
    assert!(app
        .get_text("/blog/stampedes-renamed/")
        .await
        .1
        .contains("Stampedes, renamed"));
    // Another post's page still comes from the cache, but for its related posts (any
    // post's tags may change them): one load, not its body's.
    let loads = app.state.fragments.stats.loads.load(Ordering::SeqCst);
    assert!(app.get_text(other).await.1.contains("Markdown is enough"));
    assert_eq!(
        app.state.fragments.stats.loads.load(Ordering::SeqCst),
        loads + 1,
        "the other post's body fragment was not loaded again"
    );
}
