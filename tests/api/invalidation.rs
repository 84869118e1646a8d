use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use folio::content::invalidation::{groups_for, tags_for, Group, Model, RULES};
use folio::content::models::NewPersonalInfo;

use crate::helpers::{spawn_app_with, Backend, TestApp};
use crate::on_both_caches;

// For every rule: a change to the model drops exactly the groups it lists, and every
// other entry stays.
on_both_caches! {
    async fn each_rule_drops_exactly_its_groups(cache: CacheManager) {
        for (model, _) in RULES {
            let keys: Vec<_> = Group::ALL.iter().map(|g| (cache.key("rule", [g.tag(), model.name()]), *g)).collect();
            for (key, group) in &keys {
                let stored = cache.get_or_set_tagged(key, &[group.tag()], None, || async { Ok::<_, ()>(1) }).await;
                assert_eq!(stored, Ok(1));
            }
            assert!(cache.invalidate_tags(&tags_for(&[*model])).await);
            for (key, group) in &keys {
                let kept = cache.get_tagged::<i32>(key, &[group.tag()]).await.value.is_some();
                let should_drop = groups_for(*model).contains(group);
                assert_eq!(kept, !should_drop, "{model:?} change: {group:?} should be {}", if should_drop { "dropped" } else { "kept" });
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
        let info = NewPersonalInfo {
            name: "Ada Okafor".into(),
            headline: format!("Headline version {version}"),
            bio: "Bio".into(),
            location: "Lisbon".into(),
            email: "hello@ada-okafor.dev".into(),
            avatar_url: "/static/avatar.svg".into(),
            skills: vec!["Rust".into()],
        };
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
    let Some(url) = crate::helpers::test_redis_url() else {
        return;
    };
    let prefix = crate::helpers::unique_prefix();
    let cache = [
        ("CACHE_URL", url.as_str()),
        ("CACHE_KEY_PREFIX", prefix.as_str()),
        ("CACHE_TIMEOUT_MS", "2000"),
    ];
    let a = spawn_app_with(Backend::Sqlite, &cache).await.unwrap();
    let b = a.second_instance(&cache).await;
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
        title: "Warming caches on deploy".into(),
        slug: "warming-caches-on-deploy".into(),
        body_markdown: "Warm before you switch traffic.".into(),
        excerpt: None,
        author_id: author.id,
        tags: vec!["Caching".into()],
        published: true,
        featured: false,
    };
    app.state.repo.create_post(input).await.unwrap();
    assert!(app
        .get_text("/blog/tag/caching/")
        .await
        .1
        .contains("Warming caches on deploy"));
    assert_eq!(app.get_json("/api/posts/?tag=caching").await.1["count"], 4);
    let _ = Model::Author; // authors are covered by the rules test
}
