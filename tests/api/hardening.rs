//! Hardening, over HTTP against the real app: security headers, body limits that fit
//! the content, sessions that end, the sign-in limiter, the contact form's limits.

use crate::helpers::{
    create_admin, csrf_token, get_with, session_cookie, sign_in_by_hand, spawn_app_with, Backend,
    TestApp,
};
use crate::on_both_app_caches;

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

on_both_app_caches! {
    async fn security_headers_on_pages_api_errors_and_cache_hits(app: TestApp) {
        for path in ["/", "/", "/blog/", "/api/posts/", "/api/posts/", "/no-such-page/", "/api/no-such/", "/admin/login/", "/contact/", "/feed.xml"] {
            let res = app.get(path).await;
            let csp = header(&res, "content-security-policy");
            assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
            assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{path}: {csp}");
            assert_eq!(header(&res, "x-content-type-options"), "nosniff", "{path}");
            assert_eq!(header(&res, "referrer-policy"), "strict-origin-when-cross-origin", "{path}");
            assert!(header(&res, "permissions-policy").contains("camera=()"), "{path}");
            assert_eq!(header(&res, "strict-transport-security"), "", "{path}: no HSTS over http");
        }
        assert_eq!(app.get("/").await.headers()["x-cache"], "HIT", "a hit carries them too");
    }
}

#[actix_web::test]
async fn hsts_when_the_site_is_https() {
    let app = spawn_app_with(Backend::Sqlite, &[("SITE_URL", "https://blog.example.com")])
        .await
        .unwrap();
    for path in ["/", "/api/posts/", "/no-such-page/"] {
        let res = app.get(path).await;
        assert!(
            header(&res, "strict-transport-security").starts_with("max-age=31536000"),
            "{path}"
        );
    }
}

/// About 27 KB of Markdown: 4,500 words ending with `marker`.
fn long_post(marker: &str) -> String {
    let mut text = String::from("## A long post\n\n");
    for i in 0..4500 {
        text.push_str(if i % 15 == 14 {
            "caches.\n\n"
        } else {
            "caches "
        });
    }
    text.push_str(marker);
    text
}

async fn save_post(app: &TestApp, title: &str, slug: &str, body: &str) -> reqwest::Response {
    let token = app.csrf_for("/admin/posts/new/").await;
    app.client
        .post(app.url("/admin/posts/new/"))
        .form(&[
            ("title", title),
            ("slug", slug),
            ("body_markdown", body),
            ("author_id", "1"),
            ("published", "on"),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn a_27_kb_post_is_saved_and_shown() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    app.sign_in_admin().await;
    let body = long_post("The-very-last-words-of-the-long-post");
    assert!(body.len() > 27_000, "{}", body.len());
    let res = save_post(&app, "A long post", "a-long-post", &body).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let (status, html) = app.get_text("/blog/a-long-post/").await;
    assert_eq!(status, 200);
    assert!(html.contains("The-very-last-words-of-the-long-post"));
}

#[actix_web::test]
async fn a_post_over_the_limit_is_shown_again_with_the_text_or_refused_with_a_page() {
    let app = spawn_app_with(Backend::Sqlite, &[("MAX_POST_BYTES", "20000")])
        .await
        .unwrap();
    app.sign_in_admin().await;
    // Over MAX_POST_BYTES, within the form's body limit: the form again, text kept.
    let body = long_post("kept-until-the-last-word");
    let res = save_post(&app, "Too long", "too-long", &body).await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("a post may be at most 19 KB"),
        "the error says why"
    );
    assert!(
        html.contains("kept-until-the-last-word"),
        "the text is kept"
    );
    assert!(app
        .state
        .repo
        .post_by_slug("too-long", true)
        .await
        .unwrap()
        .is_none());
    // Far over (the body is refused before it is read): a styled page, not plain text.
    let huge = "x".repeat(200_000);
    let res = save_post(&app, "Huge", "huge", &huge).await;
    assert_eq!(res.status(), 413);
    assert!(header(&res, "content-type").starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(
        html.contains("Too large to send") && html.contains("<link rel=\"stylesheet\""),
        "{html}"
    );
    assert!(html.contains("Back"), "tells where the text is");
}

#[actix_web::test]
async fn contact_limits_are_counted_in_characters() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    let send = |message: String| {
        let app = &app;
        async move {
            let token = app.csrf_for("/contact/").await;
            app.client
                .post(app.url("/contact/"))
                .form(&[
                    ("name", "Анна"),
                    ("email", "anna@example.com"),
                    ("subject", "Привет"),
                    ("message", message.as_str()),
                    ("csrf_token", token.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    // 4,900 Cyrillic characters: 9,800 bytes, 29,400 once percent-encoded.
    let cyrillic = "щ".repeat(4900);
    assert_eq!(send(cyrillic.clone()).await.status(), 303);
    let stored = app.state.repo.contact_messages(1, 10).await.unwrap().items;
    assert_eq!(stored[0].message, cyrillic, "stored intact");
    // And in CJK (three bytes each).
    assert_eq!(send("漢".repeat(5000)).await.status(), 303);
    // Over 5,000 characters: the form again, with the text.
    let res = send("漢".repeat(5001)).await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("under 5000 characters (it has 5001)"));
    assert!(html.contains(&"漢".repeat(5001)), "text kept");
}

#[actix_web::test]
async fn an_api_body_over_the_limit_gets_a_json_413() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("CACHE_WEBHOOK_SECRET", "webhook-secret-for-tests")],
    )
    .await
    .unwrap();
    let res = app
        .client
        .post(app.url("/api/cache/invalidate/"))
        .header("content-type", "application/json")
        .body(vec![b' '; 300_000])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(json["error"]["code"], "payload_too_large", "{json}");
}

on_both_app_caches! {
    async fn sign_out_revokes_the_session_everywhere(app: TestApp) {
        create_admin(&app, "correct-horse-battery").await;
        let login_token = csrf_token(&app.get_text("/admin/login/").await.1);
        let copy = sign_in_by_hand(&app, "correct-horse-battery").await;
        let res = get_with(&app, &copy, "/admin/").await;
        assert_eq!(res.status(), 200);
        // The page put its CSRF token in the session: the browser's cookie now.
        let current = session_cookie(&res);
        let token = csrf_token(&res.text().await.unwrap());
        assert_ne!(token, login_token, "the CSRF token changes at sign-in");
        // Sign out, then reuse the copy of the cookie kept from sign-in.
        let res = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
            .post(app.url("/admin/logout/"))
            .header("cookie", &current)
            .form(&[("csrf_token", token.as_str())])
            .send().await.unwrap();
        assert_eq!(res.status(), 303);
        let res = get_with(&app, &copy, "/admin/").await;
        assert_eq!(res.status(), 303, "the old cookie is refused");
        assert!(header(&res, "location").starts_with("/admin/login/"));
        assert_eq!(get_with(&app, &current, "/admin/").await.status(), 303);
        // The cache API refuses it too.
        let res = reqwest::Client::new().post(app.url("/api/cache/warm/"))
            .header("cookie", &current).header("x-csrf-token", &token)
            .send().await.unwrap();
        assert_eq!(res.status(), 401);
    }

    async fn a_password_change_ends_sessions(app: TestApp) {
        create_admin(&app, "correct-horse-battery").await;
        let cookie = sign_in_by_hand(&app, "correct-horse-battery").await;
        assert_eq!(get_with(&app, &cookie, "/admin/").await.status(), 200);
        create_admin(&app, "a-brand-new-password").await;
        assert_eq!(get_with(&app, &cookie, "/admin/").await.status(), 303);
        let cookie = sign_in_by_hand(&app, "a-brand-new-password").await;
        assert_eq!(get_with(&app, &cookie, "/admin/").await.status(), 200);
    }
}

#[actix_web::test]
async fn sessions_end_when_idle_and_at_their_maximum_age() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("SESSION_IDLE_TIMEOUT", "2"), ("SESSION_MAX_AGE", "4")],
    )
    .await
    .unwrap();
    create_admin(&app, "correct-horse-battery").await;
    // Idle: one request, then three seconds of nothing.
    let cookie = sign_in_by_hand(&app, "correct-horse-battery").await;
    assert_eq!(get_with(&app, &cookie, "/admin/").await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_eq!(
        get_with(&app, &cookie, "/admin/").await.status(),
        303,
        "idle too long"
    );
    // Active all along: still ends after four seconds.
    let mut cookie = sign_in_by_hand(&app, "correct-horse-battery").await;
    let started = std::time::Instant::now();
    let ended = loop {
        let res = get_with(&app, &cookie, "/admin/").await;
        if res.status() == 303 {
            break started.elapsed();
        }
        assert_eq!(res.status(), 200);
        if let Some(refreshed) = crate::helpers::new_session_cookie(&res) {
            cookie = refreshed;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(8),
            "the session never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert!(
        ended >= std::time::Duration::from_secs(3),
        "ended after {ended:?}"
    );
}

/// A sign-in attempt from `address` (believed: the app trusts 127.0.0.1 as its proxy).
async fn attempt(app: &TestApp, address: &str, password: &str) -> u16 {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let res = client.get(app.url("/admin/login/")).send().await.unwrap();
    let token = csrf_token(&res.text().await.unwrap());
    client
        .post(app.url("/admin/login/"))
        .header("x-forwarded-for", address)
        .form(&crate::helpers::login_form(password, &token))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn lockout_spares_the_admin_elsewhere(app: TestApp) {
    create_admin(&app, "correct-horse-battery").await;
    for _ in 0..10 {
        assert_eq!(attempt(&app, "203.0.113.5", "wrong").await, 401);
    }
    assert_eq!(
        attempt(&app, "203.0.113.5", "correct-horse-battery").await,
        429,
        "locked out from there"
    );
    assert_eq!(
        attempt(&app, "198.51.100.7", "correct-horse-battery").await,
        303,
        "the admin still gets in from elsewhere"
    );
    // Parallel guesses from one address cannot slip through together.
    let guesses = (0..24).map(|_| attempt(&app, "192.0.2.44", "wrong"));
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        checked <= 10,
        "{checked} passwords checked of 24 parallel guesses: {statuses:?}"
    );
    assert_eq!(
        checked + statuses.iter().filter(|s| **s == 429).count(),
        24,
        "{statuses:?}"
    );
}

on_both_app_caches! { with &[("TRUSTED_PROXIES", "127.0.0.1")];
    async fn the_login_limiter_locks_an_address_not_the_admin(app: TestApp) {
        lockout_spares_the_admin_elsewhere(app).await;
    }
}

/// Keys of this app's login counters: in process, or under its prefix in Redis.
async fn login_counters(app: &TestApp) -> usize {
    match crate::edges::app_keys(app).await {
        Some(keys) => keys.iter().filter(|k| k.contains("login_attempts")).count(),
        None => app
            .state
            .cache
            .local_size()
            .map_or(0, |(n, _, _)| n as usize),
    }
}

on_both_app_caches! { with &[("TRUSTED_PROXIES", "127.0.0.1")];
    async fn refused_sign_ins_make_no_counter_per_name(app: TestApp) {
        let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
        let res = client.get(app.url("/admin/login/")).send().await.unwrap();
        let token = csrf_token(&res.text().await.unwrap());
        let before = login_counters(&app).await;
        let mut refused = 0;
        for n in 0..1000 {
            let name = format!("made-up-name-{n}");
            let status = client
                .post(app.url("/admin/login/"))
                .header("x-forwarded-for", "203.0.113.77")
                .form(&[("username", name.as_str()), ("password", "wrong"), ("csrf_token", &token), ("next", "/admin/")])
                .send()
                .await
                .unwrap()
                .status();
            refused += usize::from(status == 429);
        }
        assert!(refused >= 1000 - folio::web::limits::LOGIN_PER_ADDRESS as usize, "{refused} refused");
        let made = login_counters(&app).await.saturating_sub(before);
        // The address's counter, and per allowed attempt its pair and its name's.
        let bound = 1 + 2 * folio::web::limits::LOGIN_PER_ADDRESS as usize;
        assert!(made <= bound, "{made} counters for 1,000 sign-ins from one address (bound {bound})");
    }
}

#[actix_web::test]
async fn the_login_limiter_works_with_the_cache_off() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("CACHE_URL", "none"), ("TRUSTED_PROXIES", "127.0.0.1")],
    )
    .await
    .unwrap();
    lockout_spares_the_admin_elsewhere(app).await;
}

#[actix_web::test]
async fn forwarded_addresses_are_ignored_unless_the_proxy_is_trusted() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    create_admin(&app, "correct-horse-battery").await;
    for i in 0..10 {
        // A client inventing a new address each time is still one client.
        assert_eq!(attempt(&app, &format!("203.0.113.{i}"), "wrong").await, 401);
    }
    assert_eq!(
        attempt(&app, "198.51.100.99", "correct-horse-battery").await,
        429
    );
}

async fn send_message(
    app: &TestApp,
    address: &str,
    message: &str,
    website: &str,
) -> reqwest::Response {
    let token = app.csrf_for("/contact/").await;
    app.client
        .post(app.url("/contact/"))
        .header("x-forwarded-for", address)
        .form(&[
            ("name", "Grace"),
            ("email", "grace@example.com"),
            ("subject", "Hello"),
            ("message", message),
            ("website", website),
            ("csrf_token", token.as_str()),
        ])
        .send()
        .await
        .unwrap()
}

on_both_app_caches! { with &[("TRUSTED_PROXIES", "127.0.0.1"), ("CONTACT_RATE_LIMIT", "2")];
    async fn the_contact_form_is_rate_limited_per_address(app: TestApp) {
        for i in 0..2 {
            let res = send_message(&app, "203.0.113.5", &format!("Message number {i} about caching"), "").await;
            assert_eq!(res.status(), 303);
        }
        let res = send_message(&app, "203.0.113.5", "A third message I want to keep", "").await;
        assert_eq!(res.status(), 429);
        let html = res.text().await.unwrap();
        assert!(html.contains("2 messages in the last hour") && html.contains("A third message I want to keep"), "says why, keeps the text");
        let res = send_message(&app, "198.51.100.7", "Another reader, another address", "").await;
        assert_eq!(res.status(), 303);
        let stored = app.state.repo.contact_messages(1, 10).await.unwrap();
        assert_eq!(stored.total, 3);
        assert_eq!(stored.items[0].sender_ip.as_deref(), Some("198.51.100.7"), "the real client address");
    }

    async fn a_filled_honeypot_is_thanked_and_dropped(app: TestApp) {
        let res = send_message(&app, "203.0.113.5", "Buy cheap watches at example.com", "http://spam.example").await;
        assert_eq!(res.status(), 303);
        assert_eq!(header(&res, "location"), "/contact/thanks/");
        assert_eq!(app.state.repo.contact_messages(1, 10).await.unwrap().total, 0);
        let html = app.get_text("/contact/").await.1;
        assert!(html.contains("name=\"website\"") && html.contains("class=\"hp\""), "the honeypot is in the form");
    }
}

#[actix_web::test]
async fn the_inbox_is_paginated() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    for i in 0..30 {
        app.state
            .repo
            .create_contact_message(folio::content::models::NewContactMessage {
                name: "Grace".into(),
                email: "grace@example.com".into(),
                subject: format!("Subject {i:02}"),
                message: "A message long enough".into(),
                sender_ip: None,
            })
            .await
            .unwrap();
    }
    app.sign_in_admin().await;
    let (status, html) = app.get_text("/admin/messages/").await;
    assert_eq!(status, 200);
    assert_eq!(html.matches("<article class=\"message").count(), 25);
    assert!(
        html.contains("Page 1 of 2") && html.contains("Subject 29") && !html.contains("Subject 04")
    );
    let (_, html) = app.get_text("/admin/messages/?page=2").await;
    assert_eq!(html.matches("<article class=\"message").count(), 5);
    assert!(html.contains("Subject 00"));
    let (status, html) = app.get_text("/admin/messages/?page=oops").await;
    assert_eq!(status, 200);
    assert!(html.contains("Page 1 of 2"));
    assert_eq!(app.get("/admin/messages/?page=9").await.status(), 303);
}

/// The session holds the account's name as stored: typed in another case, an account
/// named with capitals still signs in and stays signed in.
#[actix_web::test]
async fn an_account_named_with_capitals_stays_signed_in() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    let hash = folio::web::admin::hash_password("correct-horse-battery").unwrap();
    app.state.repo.upsert_admin("Ada", &hash).await.unwrap();
    let token = app.csrf_for("/admin/login/").await;
    let res = app
        .client
        .post(app.url("/admin/login/"))
        .form(&[
            ("username", "Ada"),
            ("password", "correct-horse-battery"),
            ("csrf_token", token.as_str()),
            ("next", "/admin/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let (status, html) = app.get_text("/admin/").await;
    assert_eq!(status, 200, "signed in");
    assert!(html.contains("Ada"));
}

// Dot segments, spelled out or escaped, never stay in a path: sent raw (clients
// resolve them before sending), they are resolved and redirected once.
on_both_app_caches! {
    async fn dot_segments_are_resolved_not_kept(app: TestApp) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        for (raw, location) in [
            ("/static/%2e%2e/Cargo.toml", "/Cargo.toml"),
            ("/static/../../etc/passwd", "/etc/passwd"),
            ("/blog/%2E/", "/blog/"),
        ] {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port())).await.unwrap();
            let request = format!("GET {raw} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 308"), "{raw}: {answer}");
            assert!(answer.to_ascii_lowercase().contains(&format!("location: {}\r\n", location.to_ascii_lowercase())), "{raw}: {answer}");
        }
        assert_eq!(app.get("/Cargo.toml").await.status(), 404);
    }
}
