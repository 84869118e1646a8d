use crate::helpers::count;
use crate::on_both_backends;

on_both_backends! {
    async fn home_shows_owner_posts_tools_tags_and_links(app: TestApp) {
        let (status, html) = app.get_text("/").await;
        assert_eq!(status, 200);
        assert!(html.contains("Ada Okafor"), "owner's name");
        assert!(html.contains("Backend engineer writing about caches"), "headline");
        assert!(html.contains("Cache invalidation without tears"), "a recent post");
        assert!(!html.contains("Draft notes on Redis Cluster"), "drafts are not listed");
        assert!(html.contains("DeepL Write"), "a featured tool");
        assert!(!html.contains("LanguageTool"), "non-featured tools are not on the home page");
        assert!(html.contains("/blog/tag/caching/"), "tag cloud links to tags");
        assert!(html.contains("https://github.com/ada-okafor"), "social links");
        assert!(!html.contains("twitter.com"), "hidden social links are not shown");
        assert!(html.contains("/static/site.css?v="), "stylesheet from static/, versioned");
    }

    async fn home_lists_twelve_recent_and_eight_popular_posts(app: TestApp) {
        app.seed_generated(30).await;
        let (_, html) = app.get_text("/").await;
        let recent = html.split("<section class=\"popular-posts\">").next().unwrap();
        assert_eq!(count(recent, "class=\"post-card\""), 12);
        let popular = html.split("<section class=\"popular-posts\">").nth(1).unwrap().split("</ol>").next().unwrap();
        assert_eq!(count(popular, "<li>"), 8);
    }

    async fn blog_paginates_twenty_posts_a_page(app: TestApp) {
        app.seed_generated(45).await;
        let published = app.state.repo.published_posts(1, 20, None).await.unwrap().total;
        assert!(published > 40);
        let (status, first) = app.get_text("/blog/").await;
        assert_eq!(status, 200);
        assert_eq!(count(&first, "class=\"post-card\""), 20);
        assert!(first.contains("rel=\"next\" href=\"/blog/?page=2\""));
        let last_page = (published + 19) / 20;
        let (status, last) = app.get_text(&format!("/blog/?page={last_page}")).await;
        assert_eq!(status, 200);
        assert_eq!(count(&last, "class=\"post-card\"") as i64, published - (last_page - 1) * 20);
        assert_eq!(app.get_text(&format!("/blog/?page={}", last_page + 1)).await.0, 404);
        assert_eq!(app.get_text("/blog/?page=abc").await.0, 400);
    }

    async fn tag_page_lists_only_tagged_posts(app: TestApp) {
        let (status, html) = app.get_text("/blog/tag/caching/").await;
        assert_eq!(status, 200);
        assert!(html.contains("Posts tagged “Caching”"));
        assert!(html.contains("Stampedes and single flight"));
        assert!(!html.contains("Markdown is enough"), "not tagged Caching");
        let (status, html) = app.get_text("/blog/tag/no-such-tag/").await;
        assert_eq!(status, 404);
        assert!(html.contains("Page not found"), "the 404 template");
    }

    async fn post_page_renders_markdown(app: TestApp) {
        let (status, html) = app.get_text("/blog/cache-invalidation-without-tears/").await;
        assert_eq!(status, 200);
        assert!(html.contains("<h2>Rules as data</h2>"), "markdown rendered");
        assert!(html.contains("<table>"), "tables rendered");
        assert!(html.contains("0 views"), "views are counted in batches (see `views`)");
    }

    async fn drafts_and_unknown_posts_are_404_pages(app: TestApp) {
        for path in ["/blog/draft-notes-on-redis-cluster/", "/blog/no-such-post/"] {
            let res = app.get(path).await;
            assert_eq!(res.status(), 404, "{path}");
            assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
            assert!(res.text().await.unwrap().contains("Page not found"));
        }
    }

    async fn about_page_shows_bio_and_skills(app: TestApp) {
        let (status, html) = app.get_text("/about/").await;
        assert_eq!(status, 200);
        assert!(html.contains("<strong>caching</strong>"), "bio rendered from Markdown");
        assert!(html.contains("<li>PostgreSQL</li>"), "skills");
        assert!(html.contains("hello@ada-okafor.dev"));
    }

    async fn tools_page_groups_by_category(app: TestApp) {
        let (status, html) = app.get_text("/tools/").await;
        assert_eq!(status, 200);
        let coding = html.find(">Coding</h2>").expect("Coding heading");
        let writing = html.find(">Writing</h2>").expect("Writing heading");
        let copilot = html.find("GitHub Copilot").unwrap();
        let deepl = html.find("DeepL Write").unwrap();
        assert!(coding < copilot && copilot < writing && writing < deepl, "tools sit under their category");
    }

    async fn feed_and_sitemap_list_published_posts(app: TestApp) {
        let res = app.get("/feed.xml").await;
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/atom+xml"));
        let feed = res.text().await.unwrap();
        assert!(feed.starts_with("<?xml"));
        assert_eq!(count(&feed, "<entry>"), 6, "six published fixture posts");
        assert!(feed.contains("<id>http://blog.example.com/blog/cache-invalidation-without-tears/</id>"));
        assert!(feed.contains("<published>2026-10-02T09:00:00Z</published>"));
        assert!(feed.contains("&lt;h2&gt;Rules as data&lt;/h2&gt;"), "HTML content is escaped");
        assert!(!feed.contains("draft-notes-on-redis-cluster"));

        let (status, sitemap) = app.get_text("/sitemap.xml").await;
        assert_eq!(status, 200);
        assert!(sitemap.contains("<loc>http://blog.example.com/blog/one-binary-two-databases/</loc>"));
        assert!(sitemap.contains("<loc>http://blog.example.com/blog/tag/redis/</loc>"));
        assert!(sitemap.contains("<loc>http://blog.example.com/about/</loc>"));
        assert!(!sitemap.contains("draft-notes-on-redis-cluster"));
    }

    async fn unknown_pages_get_the_404_template_and_slashes_are_appended(app: TestApp) {
        let (status, html) = app.get_text("/no/such/page/").await;
        assert_eq!(status, 404);
        assert!(html.contains("Page not found") && html.contains("/no/such/page/"));
        let res = app.get("/blog?page=2").await;
        assert_eq!(res.status(), 308);
        assert_eq!(res.headers()["location"], "/blog/?page=2");
        let res = app.get("/static/site.css").await;
        assert_eq!(res.status(), 200);
        assert!(res.headers()["cache-control"].to_str().unwrap().contains("immutable"));
        assert_eq!(app.get("/static/nope.js").await.status(), 404);
    }

    async fn every_response_carries_a_request_id(app: TestApp) {
        let res = app.get("/about/").await;
        let id = res.headers().get("x-request-id").expect("x-request-id header");
        assert_eq!(id.to_str().unwrap().len(), 36, "a UUID");
    }
}

// Every GET route answers HEAD with the headers GET sends (Content-Length included) and
// no body; a HEAD of a post does not count as a view.
on_both_backends! {
    async fn every_get_route_answers_head(app: TestApp) {
        for path in [
            "/",
            "/blog/",
            "/blog/tag/caching/",
            "/about/",
            "/tools/",
            "/contact/",
            "/feed.xml",
            "/sitemap.xml",
            "/api/posts/",
            "/api/social-links/",
            "/admin/login/",
        ] {
            let get = app.get(path).await;
            assert_eq!(get.status(), 200, "GET {path}");
            let content_type = get.headers()["content-type"].clone();
            let length = get.bytes().await.unwrap().len();
            let head = app.client.head(app.url(path)).send().await.unwrap();
            assert_eq!(head.status(), 200, "HEAD {path}");
            assert_eq!(head.headers()["content-type"], content_type, "HEAD {path}");
            if path != "/contact/" && path != "/admin/login/" {
                // (those two carry a fresh CSRF token, so their length may differ)
                assert_eq!(
                    head.headers()["content-length"].to_str().unwrap(),
                    length.to_string(),
                    "HEAD {path} announces the length GET sends"
                );
            }
        }
        let post = "/blog/stampedes-and-single-flight/";
        let pending = app.state.views.pending();
        for _ in 0..3 {
            assert_eq!(app.client.head(app.url(post)).send().await.unwrap().status(), 200);
        }
        assert_eq!(app.state.views.pending(), pending, "HEAD requests count no view");
        app.get_text(post).await;
        assert_eq!(app.state.views.pending(), pending + 1, "a GET counts one");
    }
}

// Every page links a versioned icon, and `/favicon.ico` (asked for by browsers and feed
// readers whatever a page links) is the icon, not a 404 per visit.
on_both_backends! {
    async fn pages_have_an_icon_and_favicon_ico_answers(app: TestApp) {
        let (_, home) = app.get_text("/").await;
        let href = home
            .split("<link rel=\"icon\" href=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("an icon link");
        assert!(href.starts_with("/static/favicon.svg?v="), "{href}");
        let res = app.get(href).await;
        assert_eq!(res.status(), 200);
        assert!(res.headers()["cache-control"].to_str().unwrap().contains("immutable"));
        let res = app.get("/favicon.ico").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "image/svg+xml");
        assert!(res.text().await.unwrap().starts_with("<svg"));
    }
}
