use std::sync::atomic::Ordering::Relaxed;

use crate::helpers::spawn_app_with;
use crate::on_both_app_caches;

fn work(app: &crate::helpers::TestApp) -> (u64, u64, u64) {
    let f = &app.state.fragments.stats;
    (
        app.state.repo.db().stats.queries(),
        f.loads.load(Relaxed),
        f.renders.load(Relaxed),
    )
}

/// The debug panel's row for a fragment: "HIT" or "MISS".
fn result_of(html: &str, name: &str) -> String {
    let row = html
        .split("<tr>")
        .find(|r| r.contains(&format!("<td>{name}</td>")))
        .unwrap_or_else(|| panic!("no row for {name}"));
    if row.contains("<td>HIT</td>") {
        "HIT".into()
    } else {
        "MISS".into()
    }
}

/// A page rendered through the fragment cache (these tests run with the page cache off:
/// a client's `no-store` does not bypass it).
async fn rendered(app: &crate::helpers::TestApp, path: &str) -> (u16, String) {
    let res = app.client.get(app.url(path)).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

on_both_app_caches! {
    with &[("PAGE_CACHE", "false")];

    async fn a_warm_home_page_runs_no_sql_and_renders_no_fragment(app: TestApp) {
        let (_, cold) = rendered(&app, "/").await;
        let before = work(&app);
        let ops = |app: &crate::helpers::TestApp, op: &str| app.state.cache.stats().latency.iter().find(|l| l.op == op).map_or(0, |l| l.count);
        let (gets, batches, sets) = (ops(&app, "get"), ops(&app, "get_many"), app.state.cache.stats().totals.sets);
        let (status, warm) = rendered(&app, "/").await;
        assert_eq!(status, 200);
        assert_eq!(work(&app), before, "no query, no loader, no fragment render");
        assert_eq!(ops(&app, "get_many"), batches + 1, "all fragments in one lookup (one MGET on Redis)");
        assert_eq!(ops(&app, "get"), gets + 2, "plus the header's and footer's data, fetched concurrently");
        assert_eq!(app.state.cache.stats().totals.sets, sets, "nothing stored on a warm page");
        assert!(warm.contains("Cache invalidation without tears") && warm.contains("DeepL Write"), "content from the cache");
        assert_eq!(cold, warm, "the same page, byte for byte");
    }

    async fn vary_values_are_cached_apart(app: TestApp) {
        app.seed_generated(30).await;
        let (_, one) = rendered(&app, "/blog/?page=1").await;
        let (_, two) = rendered(&app, "/blog/?page=2").await;
        assert_ne!(one, two);
        let loads = work(&app).1;
        assert_eq!(rendered(&app, "/blog/?page=1").await.1, one);
        assert_eq!(rendered(&app, "/blog/?page=2").await.1, two);
        assert_eq!(work(&app).1, loads, "both pages' lists come from the cache");
        let (_, tagged) = rendered(&app, "/blog/tag/caching/").await;
        assert!(tagged.contains("Stampedes and single flight") && !tagged.contains("Markdown is enough"));
    }

    async fn a_model_change_drops_exactly_the_fragments_that_show_it(app: TestApp) {
        rendered(&app, "/").await;
        let link = folio::content::models::NewSocialLink { name: "Bluesky".into(), url: "https://bsky.app/profile/ada".into(), icon: "bluesky".into(), sort_order: 9, visible: true };
        let loads = work(&app).1;
        assert!(app.state.repo.ensure_social_link(&link).await.unwrap());
        let (_, html) = rendered(&app, "/").await;
        assert_eq!(crate::helpers::count(&html, "https://bsky.app/profile/ada"), 2, "the social fragment and the footer show it");
        assert_eq!(work(&app).1, loads + 1, "only the social links fragment was reloaded");
    }
}

#[actix_web::test]
async fn the_debug_panel_shows_hits_and_misses_only_in_debug_mode() {
    let app = spawn_app_with(
        crate::helpers::Backend::Sqlite,
        &[("APP_DEBUG", "true"), ("PAGE_CACHE", "false")],
    )
    .await
    .unwrap();
    let (_, cold) = app.get_text("/").await;
    assert!(cold.contains("class=\"cache-debug\""));
    assert_eq!(result_of(&cold, "recent_posts"), "MISS");
    let (_, warm) = app.get_text("/").await;
    assert_eq!(result_of(&warm, "recent_posts"), "HIT");
    assert_eq!(result_of(&warm, "footer"), "HIT");
    assert!(
        warm.contains("folio:1:fragment:block:recent_posts:"),
        "keys are listed"
    );
    assert!(
        cold.contains("page from cache: no") && warm.contains("page from cache: yes"),
        "templates see the cache information"
    );
    assert!(warm.contains("cache: memory · hit ratio"));

    let link = folio::content::models::NewSocialLink {
        name: "Bluesky".into(),
        url: "https://bsky.app/x".into(),
        icon: "b".into(),
        sort_order: 9,
        visible: true,
    };
    app.state.repo.ensure_social_link(&link).await.unwrap();
    let (_, after) = app.get_text("/").await;
    assert_eq!(
        result_of(&after, "social_links"),
        "MISS",
        "dropped: shows social links"
    );
    assert_eq!(result_of(&after, "footer"), "MISS", "its context changed");
    assert_eq!(
        result_of(&after, "recent_posts"),
        "HIT",
        "kept: shows no social link"
    );
    assert_eq!(result_of(&after, "header"), "HIT");

    let production = spawn_app_with(crate::helpers::Backend::Sqlite, &[])
        .await
        .unwrap();
    let (_, html) = production.get_text("/").await;
    assert!(!html.contains("cache-debug"), "nothing in production");
}

#[actix_web::test]
async fn fragments_expire_after_their_ttl() {
    let app = spawn_app_with(
        crate::helpers::Backend::Sqlite,
        &[("CACHE_TTLS", "fragment=1"), ("PAGE_CACHE", "false")],
    )
    .await
    .unwrap();
    app.get_text("/tools/").await;
    let loads = work(&app).1;
    app.get_text("/tools/").await;
    assert_eq!(work(&app).1, loads, "fresh");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    app.get_text("/tools/").await;
    assert!(work(&app).1 > loads, "expired, loaded again");
}

/// A deploy that changes a fragment's template must not serve HTML from the old one.
#[actix_web::test]
async fn a_changed_template_gets_a_new_key() {
    use folio::web::fragments::{FragmentDef, Fragments};
    use std::sync::Arc;
    let cache = folio::cache::CacheManager::in_memory(&crate::helpers::unique_prefix());
    let render = |fragment_source: &'static str| {
        let cache = cache.clone();
        async move {
            let sources = [
                ("page.html", "[{{ cache_block(name=\"x\") }}]"),
                ("fragments/x.html", fragment_source),
            ];
            let mut tera = tera::Tera::default();
            tera.add_raw_templates(sources).unwrap();
            Fragments::register_functions(&mut tera);
            let mut fragments = Fragments::new(cache, &sources, false);
            let loader: folio::web::fragments::Loader = Arc::new(|_| {
                Box::pin(async { Ok::<_, folio::db::DbError>(serde_json::json!({"n": 1})) })
            });
            fragments.register(
                "x",
                FragmentDef {
                    object_tags: None,
                    template: Some("fragments/x.html"),
                    depends_on: &["model:post"],
                    ttl: None,
                    loader,
                },
            );
            fragments
                .render_page(&tera, "page.html", &mut tera::Context::new())
                .await
                .unwrap()
        }
    };
    assert_eq!(render("old {{ n }}").await, "[old 1]");
    assert_eq!(render("old {{ n }}").await, "[old 1]");
    assert_eq!(
        render("new {{ n }}").await,
        "[new 1]",
        "not the cached HTML of the old template"
    );
}
