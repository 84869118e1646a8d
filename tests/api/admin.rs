use crate::helpers::{csrf_token, spawn_app, Backend};
use crate::on_both_backends;

on_both_backends! {
    async fn sign_in_wrong_password_and_sign_out(app: TestApp) {
        let hash = folio::web::admin::hash_password("correct-horse-battery").unwrap();
        app.state.repo.upsert_admin("ada", &hash).await.unwrap();
        let res = app.get("/admin/posts/").await;
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/admin/login/?next=%2Fadmin%2Fposts%2F");

        let token = app.csrf_for("/admin/login/").await;
        let res = app.client.post(app.url("/admin/login/"))
            .form(&[("username", "ada"), ("password", "wrong"), ("csrf_token", &token), ("next", "/admin/posts/")])
            .send().await.unwrap();
        assert_eq!(res.status(), 401);
        let html = res.text().await.unwrap();
        assert!(html.contains("Wrong username or password.") && html.contains("value=\"ada\""), "username kept");

        let res = app.client.post(app.url("/admin/login/"))
            .form(&[("username", "ada"), ("password", "correct-horse-battery"), ("csrf_token", &token), ("next", "/admin/posts/")])
            .send().await.unwrap();
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/admin/posts/");
        let res = app.get("/admin/posts/").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["cache-control"], "no-store");
        assert!(res.text().await.unwrap().contains("Draft notes on Redis Cluster"), "drafts listed");

        let token = app.csrf_for("/admin/").await;
        let res = app.client.post(app.url("/admin/logout/")).form(&[("csrf_token", token.as_str())]).send().await.unwrap();
        assert_eq!(res.status(), 303);
        assert_eq!(app.get("/admin/").await.status(), 303, "signed out");
    }

    async fn editing_a_post_shows_on_the_public_site_at_once(app: TestApp) {
        app.sign_in_admin().await;
        // Warm every cache layer first.
        let anonymous = reqwest::Client::new();
        let get = |path: &str| anonymous.get(app.url(path)).send();
        assert!(get("/blog/markdown-is-enough/").await.unwrap().text().await.unwrap().contains("Markdown is enough"));
        get("/api/posts/markdown-is-enough/").await.unwrap();
        get("/").await.unwrap();
        let post = app.state.repo.post_by_slug("markdown-is-enough", false).await.unwrap().unwrap();

        let form_page = app.get_text(&format!("/admin/posts/{}/edit/", post.summary.id)).await.1;
        let token = csrf_token(&form_page);
        let author_id = app.state.repo.author_by_slug("tomas-ribeiro").await.unwrap().unwrap().id.to_string();
        let res = app.client.post(app.url(&format!("/admin/posts/{}/edit/", post.summary.id)))
            .form(&[("title", "Markdown is still enough"), ("slug", "markdown-is-enough"), ("body_markdown", "## Rewritten\n\nStill plain text."),
                    ("excerpt", ""), ("author_id", &author_id), ("tags", "Writing, Plain text"), ("published", "on"), ("csrf_token", &token)])
            .send().await.unwrap();
        assert_eq!(res.status(), 303);

        let page = get("/blog/markdown-is-enough/").await.unwrap().text().await.unwrap();
        assert!(page.contains("Markdown is still enough") && page.contains("<h2>Rewritten</h2>"), "post page");
        let api = get("/api/posts/markdown-is-enough/").await.unwrap().json::<serde_json::Value>().await.unwrap();
        assert_eq!(api["title"], "Markdown is still enough", "API response");
        assert!(get("/").await.unwrap().text().await.unwrap().contains("Markdown is still enough"), "home fragments");
        assert!(get("/blog/tag/plain-text/").await.unwrap().status() == 200, "new tag page");
    }

    async fn invalid_admin_input_keeps_the_text(app: TestApp) {
        app.sign_in_admin().await;
        let token = app.csrf_for("/admin/posts/new/").await;
        let res = app.client.post(app.url("/admin/posts/new/"))
            .form(&[("title", ""), ("slug", "Bad Slug!"), ("body_markdown", "A long draft I do not want to lose"), ("author_id", "1"), ("csrf_token", &token)])
            .send().await.unwrap();
        assert_eq!(res.status(), 422);
        let html = res.text().await.unwrap();
        assert!(html.contains("A title is required.") && html.contains("lowercase letters"));
        assert!(html.contains("A long draft I do not want to lose"), "body kept");
        // A taken slug is a field error too, not a 500.
        let res = app.client.post(app.url("/admin/posts/new/"))
            .form(&[("title", "Copy"), ("slug", "markdown-is-enough"), ("body_markdown", "x"), ("author_id", "1"), ("csrf_token", &token)])
            .send().await.unwrap();
        assert_eq!(res.status(), 422);
        assert!(res.text().await.unwrap().contains("Another post already uses this slug."));
        // Without the token nothing is saved.
        let res = app.client.post(app.url("/admin/posts/new/"))
            .form(&[("title", "Forged"), ("body_markdown", "x"), ("author_id", "1")])
            .send().await.unwrap();
        assert_eq!(res.status(), 403);
        assert_eq!(app.state.repo.count_posts().await.unwrap(), 7);
    }

    async fn site_data_edits_show_at_once(app: TestApp) {
        app.sign_in_admin().await;
        let anonymous = reqwest::Client::new();
        let about = |c: &reqwest::Client| c.get(app.url("/about/")).send();
        assert!(about(&anonymous).await.unwrap().text().await.unwrap().contains("Lisbon, Portugal"));
        let token = app.csrf_for("/admin/personal-info/").await;
        let res = app.client.post(app.url("/admin/personal-info/"))
            .form(&[("name", "Ada Okafor"), ("headline", "Now in Porto"), ("bio", "Hi"), ("location", "Porto, Portugal"),
                    ("email", "hello@ada-okafor.dev"), ("avatar_url", "/static/avatar.svg"), ("skills", "Rust, Redis"), ("csrf_token", &token)])
            .send().await.unwrap();
        assert_eq!(res.status(), 303);
        assert!(about(&anonymous).await.unwrap().text().await.unwrap().contains("Porto, Portugal"));
        assert_eq!(anonymous.get(app.url("/api/personal-info/")).send().await.unwrap().json::<serde_json::Value>().await.unwrap()["headline"], "Now in Porto");

        // A new social link appears in the footer and the API.
        anonymous.get(app.url("/api/social-links/")).send().await.unwrap();
        let res = app.client.post(app.url("/admin/social-links/"))
            .form(&[("name", "Bluesky"), ("url", "https://bsky.app/profile/ada"), ("icon", "bluesky"), ("sort_order", "6"), ("visible", "on"), ("csrf_token", &token)])
            .send().await.unwrap();
        assert_eq!(res.status(), 303);
        assert!(anonymous.get(app.url("/contact/")).send().await.unwrap().text().await.unwrap().contains("https://bsky.app/profile/ada"));
        assert_eq!(anonymous.get(app.url("/api/social-links/")).send().await.unwrap().json::<serde_json::Value>().await.unwrap()["count"], 5);

        // A bad URL is refused with the typed text kept.
        let res = app.client.post(app.url("/admin/social-links/"))
            .form(&[("name", "Keep me"), ("url", "not a url"), ("icon", "x"), ("sort_order", "7"), ("csrf_token", &token)])
            .send().await.unwrap();
        assert_eq!(res.status(), 422);
        let html = res.text().await.unwrap();
        assert!(html.contains("value=\"Keep me\"") && html.contains("Use a full http(s) URL"));

        // A tool edit reaches the tools page.
        let tool = app.state.repo.ai_tools(&Default::default()).await.unwrap().into_iter().find(|t| t.slug == "perplexity").unwrap();
        let res = app.client.post(app.url(&format!("/admin/ai-tools/{}/", tool.id)))
            .form(&[("name", "Perplexity Pro"), ("slug", "perplexity"), ("url", "https://www.perplexity.ai"), ("category", "Research"),
                    ("description", "Search with sources."), ("sort_order", "1"), ("featured", "on"), ("csrf_token", &token)])
            .send().await.unwrap();
        assert_eq!(res.status(), 303);
        assert!(anonymous.get(app.url("/tools/")).send().await.unwrap().text().await.unwrap().contains("Perplexity Pro"));
        assert!(anonymous.get(app.url("/")).send().await.unwrap().text().await.unwrap().contains("Perplexity Pro"), "now featured");
    }

    async fn messages_can_be_read_and_marked(app: TestApp) {
        let message = folio::content::models::NewContactMessage { name: "Grace".into(), email: "g@example.com".into(), subject: "Hello there".into(), message: "Nice site!".into(), sender_ip: None };
        let stored = app.state.repo.create_contact_message(message).await.unwrap();
        app.sign_in_admin().await;
        assert!(app.get_text("/admin/").await.1.contains("1 unread"));
        let (_, html) = app.get_text("/admin/messages/").await;
        assert!(html.contains("Hello there") && html.contains("Mark read"));
        let token = csrf_token(&html);
        let res = app.client.post(app.url(&format!("/admin/messages/{}/read/", stored.id))).form(&[("csrf_token", token.as_str()), ("read", "true")]).send().await.unwrap();
        assert_eq!(res.status(), 303);
        assert!(app.get_text("/admin/").await.1.contains("0 unread"), "the overview count follows");
    }
}

#[actix_web::test]
async fn an_admin_bypasses_the_response_cache() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.get("/api/posts/").await;
    assert_eq!(app.get("/api/posts/").await.headers()["x-cache"], "HIT");
    app.sign_in_admin().await;
    assert_eq!(app.get("/api/posts/").await.headers()["x-cache"], "BYPASS");
}

#[actix_web::test]
async fn repeated_wrong_passwords_are_slowed_down() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let hash = folio::web::admin::hash_password("correct-horse-battery").unwrap();
    app.state.repo.upsert_admin("ada", &hash).await.unwrap();
    let token = app.csrf_for("/admin/login/").await;
    let attempt = |password: &'static str| {
        app.client
            .post(app.url("/admin/login/"))
            .form(&[
                ("username", "ada"),
                ("password", password),
                ("csrf_token", token.as_str()),
                ("next", "/admin/"),
            ])
            .send()
    };
    for _ in 0..10 {
        assert_eq!(attempt("guess").await.unwrap().status(), 401);
    }
    let res = attempt("correct-horse-battery").await.unwrap();
    assert_eq!(res.status(), 429, "even the right password waits now");
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Too many failed sign-ins"));
}
