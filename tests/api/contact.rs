use crate::on_both_backends;

use crate::helpers::csrf_token;

on_both_backends! {
    async fn a_valid_message_is_stored_and_thanked(app: TestApp) {
        let (status, form) = app.get_text("/contact/").await;
        assert_eq!(status, 200);
        let token = csrf_token(&form);
        let res = app.client.post(app.url("/contact/"))
            .form(&[("name", "Grace"), ("email", "grace@example.com"), ("subject", "Hello"),
                    ("message", "I enjoyed your post on caching."), ("csrf_token", token.as_str())])
            .send().await.unwrap();
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/contact/thanks/");
        let (status, thanks) = app.get_text("/contact/thanks/").await;
        assert_eq!(status, 200);
        assert!(thanks.contains("Thank you"));
        let messages = app.state.repo.contact_messages(1, 100).await.unwrap().items;
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].email, "grace@example.com");
        assert_eq!(messages[0].message, "I enjoyed your post on caching.");
        assert_eq!(messages[0].sender_ip.as_deref(), Some("127.0.0.1"));
        assert!(!messages[0].is_read);
    }

    async fn invalid_input_rerenders_with_errors_and_keeps_the_text(app: TestApp) {
        let token = csrf_token(&app.get_text("/contact/").await.1);
        let long_text = "A message I spent a while writing <b>and</b> do not want to lose.";
        let res = app.client.post(app.url("/contact/"))
            .form(&[("name", ""), ("email", "not-an-email"), ("subject", "Hi"), ("message", long_text), ("csrf_token", token.as_str())])
            .send().await.unwrap();
        assert_eq!(res.status(), 422);
        let html = res.text().await.unwrap();
        assert!(html.contains("This field is required."), "name error");
        assert!(html.contains("Please enter a valid email address"), "email error");
        assert!(html.contains("value=\"not-an-email\""), "email kept");
        assert!(html.contains("A message I spent a while writing &lt;b&gt;and&lt;/b&gt; do not want to lose."), "message kept, escaped");
        assert!(app.state.repo.contact_messages(1, 100).await.unwrap().items.is_empty(), "nothing stored");

        let too_long = "x".repeat(5001);
        let res = app.client.post(app.url("/contact/"))
            .form(&[("name", "Ann"), ("email", "ann@example.com"), ("subject", "Hi"), ("message", too_long.as_str()), ("csrf_token", token.as_str())])
            .send().await.unwrap();
        assert_eq!(res.status(), 422);
        assert!(res.text().await.unwrap().contains("under 5000 characters"));
    }

    async fn a_post_without_the_csrf_token_is_refused_but_keeps_the_text(app: TestApp) {
        app.get_text("/contact/").await;
        for token in ["", "forged-token"] {
            let res = app.client.post(app.url("/contact/"))
                .form(&[("name", "Mallory"), ("email", "m@example.com"), ("subject", "Hi"), ("message", "Please click this link now"), ("csrf_token", token)])
                .send().await.unwrap();
            assert_eq!(res.status(), 403);
            let html = res.text().await.unwrap();
            assert!(html.contains("Please click this link now"), "text kept");
            assert!(html.contains("session expired"));
        }
        // A fresh client has no session at all.
        let stranger = reqwest::Client::new();
        let res = stranger.post(app.url("/contact/"))
            .form(&[("name", "Mallory"), ("email", "m@example.com"), ("subject", "Hi"), ("message", "Please click this link now")])
            .send().await.unwrap();
        assert_eq!(res.status(), 403);
        assert!(app.state.repo.contact_messages(1, 100).await.unwrap().items.is_empty());
    }

    async fn the_form_sets_a_csrf_cookie_not_a_session(app: TestApp) {
        let res = app.get("/contact/").await;
        let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(cookie.starts_with("folio_csrf="), "{cookie}");
        assert_eq!(res.headers().get_all("set-cookie").iter().count(), 1, "no session");
        assert!(cookie.contains("HttpOnly"));
        assert!(cookie.contains("SameSite=Lax"));
        assert_eq!(res.headers()["cache-control"], "private, no-store");
    }
}
