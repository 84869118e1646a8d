use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::on_both_caches;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Post {
    id: i32,
    title: String,
}

fn post(id: i32) -> Post {
    Post {
        id,
        title: format!("Post {id}"),
    }
}

on_both_caches! {
    async fn a_fill_that_read_a_tag_as_absent_is_not_stored_over_a_write(cache: CacheManager) {
        // Read with no version for the tag, then a write lands, then the fill (computed
        // from rows before the write) comes to be stored: it must not be.
        let key = cache.key("posts", ["raced"]);
        let lookup = cache.get_tagged::<Post>(&key, &["raced-tag"]).await;
        let fill = lookup.versions.expect("the backend answered");
        assert!(cache.invalidate_tags(&["raced-tag"]).await);
        cache.set_tagged(&key, &fill, &post(1), None).await;
        assert!(cache.get_tagged::<Post>(&key, &["raced-tag"]).await.value.is_none(), "a stale fill was stored");
        // Two fills that both read a new tag as absent: each may be stored (the second
        // finds the version the first made, not a write's).
        let (a, b) = (cache.key("posts", ["a"]), cache.key("posts", ["b"]));
        let (la, lb) = (cache.get_tagged::<Post>(&a, &["fresh-tag"]).await, cache.get_tagged::<Post>(&b, &["fresh-tag"]).await);
        cache.set_tagged(&a, &la.versions.unwrap(), &post(2), None).await;
        cache.set_tagged(&b, &lb.versions.unwrap(), &post(3), None).await;
        assert_eq!(cache.get_tagged::<Post>(&a, &["fresh-tag"]).await.value, Some(post(2)));
        assert_eq!(cache.get_tagged::<Post>(&b, &["fresh-tag"]).await.value, Some(post(3)));
        // A lookup alone creates no version: a later write's bump is what makes one.
        let junk = cache.key("posts", ["junk"]);
        assert!(cache.get_tagged::<Post>(&junk, &["post:made-up"]).await.value.is_none());
        let again = cache.get_tagged::<Post>(&junk, &["post:made-up"]).await.versions.unwrap();
        assert_eq!(again.versions(), &[None], "a lookup created a tag version");
    }

    async fn set_get_delete(cache: CacheManager) {
        let key = cache.key("posts", ["one"]);
        assert_eq!(cache.get::<Post>(&key).await, None);
        cache.set(&key, &post(1), None).await;
        assert_eq!(cache.get::<Post>(&key).await, Some(post(1)));
        assert!(cache.delete(&key).await);
        assert!(!cache.delete(&key).await, "already gone");
        assert_eq!(cache.get::<Post>(&key).await, None);
        let stats = cache.stats();
        assert_eq!((stats.totals.hits, stats.totals.misses, stats.totals.sets, stats.totals.deletes), (1, 2, 1, 1));
        assert_eq!(stats.totals.errors, 0);
    }

    async fn get_many_and_set_many(cache: CacheManager) {
        let keys: Vec<_> = (0..10).map(|i| cache.key("posts", [i.to_string()])).collect();
        let items: Vec<_> = keys.iter().cloned().zip((0..10).map(post)).filter(|(_, p)| p.id % 2 == 0).collect();
        cache.set_many(&items, None).await;
        let values = cache.get_many::<Post>(&keys).await;
        for (i, value) in values.iter().enumerate() {
            assert_eq!(value.as_ref(), (i % 2 == 0).then(|| post(i as i32)).as_ref());
        }
        assert_eq!(cache.delete_many(&keys).await, 5);
        assert!(cache.get_many::<Post>(&keys).await.iter().all(Option::is_none));
    }

    async fn entries_expire_after_their_ttl(cache: CacheManager) {
        let short = cache.key("posts", ["short"]);
        let long = cache.key("posts", ["long"]);
        cache.set(&short, &post(1), Some(Duration::from_millis(300))).await;
        cache.set(&long, &post(2), None).await;
        assert_eq!(cache.get::<Post>(&short).await, Some(post(1)));
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(cache.get::<Post>(&short).await, None, "expired");
        assert_eq!(cache.get::<Post>(&long).await, Some(post(2)), "family default: minutes");
    }

    async fn incr_counts_atomically(cache: CacheManager) {
        let key = cache.key("user", ["views"]);
        assert_eq!(cache.incr(&key, 1).await, Some(1));
        let tasks: Vec<_> = (0..20).map(|_| {
            let (cache, key) = (cache.clone(), key.clone());
            tokio::spawn(async move { cache.incr(&key, 2).await })
        }).collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(cache.get_counter(&key).await, Some(41));
        assert_eq!(cache.incr(&key, -41).await, Some(0));
    }

    async fn large_values_are_compressed_and_round_trip(cache: CacheManager) {
        let key = cache.key("fragment", ["big"]);
        let body = "<li>cached fragment</li>".repeat(2000);
        cache.set(&key, &body, None).await;
        assert_eq!(cache.get::<String>(&key).await.as_deref(), Some(body.as_str()));
    }

    async fn delete_pattern_removes_thousands_of_keys_and_nothing_else(cache: CacheManager) {
        let items: Vec<_> = (0..3000).map(|i| (cache.key("blog_list", [i.to_string()]), i)).collect();
        cache.set_many(&items, None).await;
        let keep = cache.key("blog", ["detail"]);
        cache.set(&keep, &1, None).await;
        // Another site on the same backend, same family names.
        let neighbour = folio::cache::CacheManager::new(folio::cache::CacheConfig { key_prefix: crate::helpers::unique_prefix(), ..cache.config().clone() }).unwrap();
        assert!(neighbour.wait_until_serving(Duration::from_secs(5)).await);
        let theirs = neighbour.key("blog_list", ["1"]);
        neighbour.set(&theirs, &7, None).await;

        assert_eq!(cache.delete_pattern("blog_*").await, 3000);
        assert_eq!(cache.get::<i32>(&items[0].0).await, None);
        assert_eq!(cache.get::<i32>(&keep).await, Some(1), "blog:detail does not match blog_*");
        assert_eq!(neighbour.get::<i32>(&theirs).await, Some(7), "other prefixes untouched");

        assert_eq!(cache.clear().await, 1);
        assert_eq!(cache.get::<i32>(&keep).await, None);
        assert_eq!(neighbour.get::<i32>(&theirs).await, Some(7), "clear keeps to its prefix");
        neighbour.clear().await;
    }

    async fn user_input_cannot_reach_another_family(cache: CacheManager) {
        let evil = cache.key("post", ["*"]);
        let other = cache.key("posts", ["recent"]);
        cache.set(&evil, &1, None).await;
        cache.set(&other, &2, None).await;
        assert_eq!(cache.delete_pattern("post:*").await, 1);
        assert_eq!(cache.get::<i32>(&other).await, Some(2));
    }

    async fn concurrent_misses_compute_once(cache: CacheManager) {
        let computed = Arc::new(AtomicUsize::new(0));
        let key = cache.key("posts", ["expensive"]);
        let calls: Vec<_> = (0..20).map(|_| {
            let (cache, key, computed) = (cache.clone(), key.clone(), computed.clone());
            tokio::spawn(async move {
                cache.get_or_set_tagged(&key, &[], None, || async {
                    computed.fetch_add(1, Ordering::SeqCst);
                    // Long enough that every caller's first lookup is done before it ends,
                    // even on a loaded machine.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Ok::<_, std::convert::Infallible>(post(9))
                }).await.unwrap()
            })
        }).collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), post(9));
        }
        assert_eq!(computed.load(Ordering::SeqCst), 1, "one computation for 20 concurrent misses");
        let again = cache.get_or_set_tagged(&key, &[], None, || async { Ok::<_, ()>(post(10)) }).await.unwrap();
        assert_eq!(again, post(9), "then served from the cache");
    }

    async fn a_failed_computation_is_not_cached(cache: CacheManager) {
        let key = cache.key("posts", ["flaky"]);
        let err = cache.get_or_set_tagged(&key, &[], None, || async { Err::<Post, _>("database down") }).await;
        assert_eq!(err, Err("database down"));
        let ok = cache.get_or_set_tagged(&key, &[], None, || async { Ok::<_, &str>(post(3)) }).await;
        assert_eq!(ok, Ok(post(3)));
    }

    async fn tagged_entries_drop_when_a_tag_is_bumped(cache: CacheManager) {
        let posts_key = cache.key("posts", ["recent"]);
        let links_key = cache.key("social_links", ["visible"]);
        let runs = Arc::new(AtomicUsize::new(0));
        let load = |value: i32| {
            let runs = runs.clone();
            move || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(value)
            }
        };
        assert_eq!(cache.get_or_set_tagged(&posts_key, &["model:post", "model:tag"], None, load(1)).await, Ok(1));
        assert_eq!(cache.get_or_set_tagged(&links_key, &["model:social_link"], None, load(10)).await, Ok(10));
        assert_eq!(cache.get_or_set_tagged(&posts_key, &["model:post", "model:tag"], None, load(2)).await, Ok(1), "hit");
        assert_eq!(runs.load(Ordering::SeqCst), 2);

        assert!(cache.invalidate_tags(&["model:tag"]).await);
        assert_eq!(cache.get_or_set_tagged(&posts_key, &["model:post", "model:tag"], None, load(3)).await, Ok(3), "dropped");
        assert_eq!(cache.get_or_set_tagged(&links_key, &["model:social_link"], None, load(11)).await, Ok(10), "unrelated entry kept");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    async fn a_fill_computed_before_an_invalidation_is_never_served_after_it(cache: CacheManager) {
        let key = cache.key("posts", ["race"]);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let reader = {
            let (cache, key) = (cache.clone(), key.clone());
            tokio::spawn(async move {
                cache.get_or_set_tagged(&key, &["model:post"], None, || async move {
                    let old_rows = "old";
                    started_tx.send(()).unwrap();
                    release_rx.await.unwrap();
                    Ok::<_, ()>(old_rows.to_string())
                }).await
            })
        };
        started_rx.await.unwrap();
        // The writer commits and invalidates while the reader still holds old rows.
        assert!(cache.invalidate_tags(&["model:post"]).await);
        release_tx.send(()).unwrap();
        assert_eq!(reader.await.unwrap(), Ok("old".to_string()), "that reader began before the write");
        let after = cache.get_or_set_tagged(&key, &["model:post"], None, || async { Ok::<_, ()>("new".to_string()) }).await;
        assert_eq!(after, Ok("new".to_string()), "the late fill is not served after the write");
    }

    async fn hit_ratio_is_tracked_per_family(cache: CacheManager) {
        let hot = cache.key("posts", ["hot"]);
        cache.set(&hot, &1, None).await;
        for _ in 0..9 {
            cache.get::<i32>(&hot).await;
        }
        cache.get::<i32>(&cache.key("posts", ["cold"])).await;
        cache.get::<i32>(&cache.key("tools", ["cold"])).await;
        let stats = cache.stats();
        let family = |n: &str| stats.families.iter().find(|f| f.name == n).unwrap().clone();
        assert!((family("posts").hit_ratio - 0.9).abs() < 1e-9);
        assert_eq!(family("tools").hit_ratio, 0.0);
        assert_eq!(stats.grade, "B", "9 of 11");
        let get = stats.latency.iter().find(|l| l.op == "get").unwrap();
        assert_eq!(get.count, 11);
        assert!(get.p50_us > 0.0 && get.p50_us <= get.p99_us);
    }
}

/// Two processes sharing one Redis report one site-wide hit ratio.
#[actix_web::test]
async fn statistics_are_aggregated_across_instances() {
    let Some(url) = crate::helpers::test_redis_url() else {
        return;
    };
    let prefix = crate::helpers::unique_prefix();
    let make = || {
        let mut config =
            folio::cache::CacheConfig::new(folio::cache::CacheUrl::Redis(url.clone()), &prefix);
        config.timeout = Duration::from_secs(2);
        folio::cache::CacheManager::new(config).unwrap()
    };
    let (a, b) = (make(), make());
    assert!(
        a.wait_until_serving(Duration::from_secs(5)).await
            && b.wait_until_serving(Duration::from_secs(5)).await
    );
    let key = a.key("posts", ["shared"]);
    a.set(&key, &1, None).await;
    for _ in 0..3 {
        a.get::<i32>(&key).await;
    }
    b.get::<i32>(&key).await;
    b.get::<i32>(&b.key("posts", ["missing"])).await;
    a.flush_stats().await;
    b.flush_stats().await;
    b.flush_stats().await; // a second flush adds only what is new: nothing
    let site = a.site_stats().await;
    assert_eq!(
        (site.totals.hits, site.totals.misses, site.totals.sets),
        (4, 1, 1)
    );
    assert!((site.hit_ratio - 0.8).abs() < 1e-9);
    assert_eq!(
        site.families
            .iter()
            .find(|f| f.name == "posts")
            .unwrap()
            .hits,
        4
    );
    a.clear().await;
    a.reset_site_stats().await;
    assert_eq!(a.site_stats().await.totals.hits, 0, "reset");
}

/// `query_key` derives the key from the SQL and its bind values.
#[test]
fn query_keys_follow_the_sql_and_its_binds() {
    use diesel::prelude::*;
    use folio::content::query_key::query_key;
    use folio::content::schema::posts;
    let cache = folio::cache::CacheManager::in_memory("keys");
    let recent = |limit: i64| {
        posts::table
            .filter(posts::published.eq(true))
            .order(posts::id.desc())
            .limit(limit)
    };
    let twelve = query_key(&cache, "posts", &recent(12), "recent");
    assert_eq!(
        twelve,
        query_key(&cache, "posts", &recent(12), "recent"),
        "stable"
    );
    assert_ne!(
        twelve,
        query_key(&cache, "posts", &recent(8), "recent"),
        "another bind value"
    );
    assert_ne!(
        twelve,
        query_key(&cache, "posts", &posts::table.limit(12), "recent"),
        "another query"
    );
    assert_ne!(
        twelve,
        query_key(&cache, "posts", &recent(12), "home"),
        "another suffix"
    );
    assert!(twelve.as_str().starts_with("keys:1:posts:recent:"));
}
