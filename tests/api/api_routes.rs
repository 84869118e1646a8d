use crate::on_both_backends;

on_both_backends! {
    async fn posts_list_has_stable_fields_and_pagination_links(app: TestApp) {
        app.seed_generated(30).await;
        let (status, body) = app.get_json("/api/posts/").await;
        assert_eq!(status, 200);
        let count = body["count"].as_i64().unwrap();
        assert!(count > 30);
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), 20);
        assert!(body["previous"].is_null());
        assert_eq!(body["next"], "http://blog.example.com/api/posts/?page=2", "absolute, from SITE_URL");
        let first = &results[0];
        for field in ["id", "title", "slug", "author", "published_at", "publish_at", "reading_minutes", "views", "tags", "excerpt"] {
            assert!(first.get(field).is_some(), "field {field}");
        }
        assert_eq!(first["slug"], "cache-invalidation-without-tears", "newest first");
        assert_eq!(first["published_at"], "2026-10-02T09:00:00Z", "ISO-8601 UTC");
        assert_eq!(first["author"]["name"], "Ada Okafor");
        assert_eq!(first["tags"][0]["slug"], "architecture");

        let (_, page2) = app.get_json("/api/posts/?page=2").await;
        assert_eq!(page2["previous"], "http://blog.example.com/api/posts/?page=1");
        let forged = app.client.get(app.url("/api/posts/")).header("host", "evil.example").send().await.unwrap();
        assert!(!forged.text().await.unwrap().contains("evil.example"), "a forged Host never reaches the links");
        let ids1: Vec<_> = results.iter().map(|p| p["id"].clone()).collect();
        assert!(page2["results"].as_array().unwrap().iter().all(|p| !ids1.contains(&p["id"])), "pages do not overlap");
    }

    async fn posts_can_be_filtered_by_tag(app: TestApp) {
        let (status, body) = app.get_json("/api/posts/?tag=caching").await;
        assert_eq!(status, 200);
        assert_eq!(body["count"], 3);
        for post in body["results"].as_array().unwrap() {
            assert!(post["tags"].as_array().unwrap().iter().any(|t| t["slug"] == "caching"));
        }
        // As the tag's page: an unknown tag is a 404, never an empty (stored) list.
        let (status, body) = app.get_json("/api/posts/?tag=unknown-tag").await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "not_found");
    }

    async fn bad_list_parameters_get_400_naming_the_parameter(app: TestApp) {
        for (query, parameter) in [("page=abc", "page"), ("page=0", "page"), ("page=-2", "page"), ("tag=Not%20A%20Slug", "tag")] {
            let (status, body) = app.get_json(&format!("/api/posts/?{query}")).await;
            assert_eq!(status, 400, "{query}");
            assert_eq!(body["error"]["code"], "bad_parameter");
            assert_eq!(body["error"]["parameter"], parameter, "{query}");
            assert!(body["error"]["message"].as_str().unwrap().len() > 5);
        }
        let (status, body) = app.get_json("/api/ai-tools/?featured=maybe").await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["parameter"], "featured");
        let (status, body) = app.get_json("/api/posts/?page=99").await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "not_found");
    }

    async fn post_detail_and_json_404s(app: TestApp) {
        let (status, body) = app.get_json("/api/posts/etags-and-the-304-you-deserve/").await;
        assert_eq!(status, 200);
        assert_eq!(body["title"], "ETags and the 304 you deserve");
        assert!(body["body_html"].as_str().unwrap().contains("<h2>Store the validator with the body</h2>"));
        assert!(body["updated_at"].as_str().unwrap().ends_with('Z'));
        for path in ["/api/posts/no-such-post/", "/api/posts/draft-notes-on-redis-cluster/", "/api/nothing-here/"] {
            let (status, body) = app.get_json(path).await;
            assert_eq!(status, 404, "{path}");
            assert_eq!(body["error"]["code"], "not_found");
        }
    }

    async fn personal_info_social_links_and_tools(app: TestApp) {
        let (status, info) = app.get_json("/api/personal-info/").await;
        assert_eq!(status, 200);
        assert_eq!(info["name"], "Ada Okafor");
        assert_eq!(info["skills"][0], "Rust");

        let (_, links) = app.get_json("/api/social-links/").await;
        assert_eq!(links["count"], 4, "the hidden link is left out");
        assert_eq!(links["results"][0]["name"], "GitHub");
        assert_eq!(links["results"][0]["order"], 1);

        let (_, all) = app.get_json("/api/ai-tools/").await;
        assert_eq!(all["count"], 8);
        let (_, featured) = app.get_json("/api/ai-tools/?featured=true").await;
        assert_eq!(featured["count"], 4);
        assert!(featured["results"].as_array().unwrap().iter().all(|t| t["featured"] == true));
        let (_, coding) = app.get_json("/api/ai-tools/?category=Coding&featured=false").await;
        assert_eq!(coding["count"], 1);
        assert_eq!(coding["results"][0]["slug"], "rust-analyzer");
    }

    async fn openapi_describes_every_public_route(app: TestApp) {
        let (status, doc) = app.get_json("/api/openapi.json").await;
        assert_eq!(status, 200);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for path in ["/api/posts/", "/api/posts/{slug}/", "/api/personal-info/", "/api/social-links/", "/api/ai-tools/"] {
            assert!(doc["paths"].get(path).is_some(), "{path} documented");
        }
        let params = doc["paths"]["/api/posts/"]["get"]["parameters"].as_array().unwrap();
        assert!(params.iter().any(|p| p["name"] == "page") && params.iter().any(|p| p["name"] == "tag"));
        assert!(doc["components"]["schemas"]["PostListItem"]["properties"].get("views").is_some());
    }
}
