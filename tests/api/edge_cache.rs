//! Edge caches in front of the site: a real Varnish (the shipped VCL) in front of one
//! instance on the in-process cache and of two instances on Redis; Fastly and
//! Cloudflare through local endpoints that check each request against those services'
//! documented purge APIs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::faults::{version_in, write, CASES};
use crate::helpers::{csrf_token, spawn_app_with, Backend, TestApp};
use crate::varnish::{OwnVarnish, PURGE_SECRET};

/// The apps' settings for a Varnish on `port`: the second purge soon, retries capped
/// at a second (so a test sees a delivery after an outage without waiting minutes).
fn varnish_vars(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("EDGE_CACHE_URLS", OwnVarnish::edge_url(port)),
        ("EDGE_PURGE_SECRET", PURGE_SECRET.to_string()),
        ("EDGE_PURGE_REPEAT_AFTER_MS", "300".to_string()),
        ("EDGE_PURGE_RETRY_MAX", "1".to_string()),
    ]
}

pub(crate) fn refs<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

pub(crate) fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The edge statistics of `app` for its one edge.
pub(crate) async fn edge_stats(app: &TestApp) -> serde_json::Value {
    let (status, body) = app.get_admin_json("/api/cache/stats/").await;
    assert_eq!(status, 200);
    body["edges"][0].clone()
}

/// Waits until `app` owes its edge nothing (the fixtures' writes at start-up are
/// purged too), and returns its edge statistics then.
async fn settled(app: &TestApp) -> serde_json::Value {
    eventually(
        Duration::from_secs(10),
        "nothing owed to the edge",
        || async {
            let s = edge_stats(app).await;
            s["pending"] == 0 && s["repeats_pending"] == 0
        },
    )
    .await;
    edge_stats(app).await
}

/// Polls `check` until it holds (or fails after `within`).
pub(crate) async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What every deployment behind Varnish must show: hits answered by Varnish alone,
/// the admin passed through, every model's edit seen through it by concurrent readers
/// with no stale read after the write returned, and coalesced purges under a flood.
async fn behind_varnish(varnish: &OwnVarnish, apps: &[&TestApp]) {
    let writer = apps[0];
    let reader = reqwest::Client::new();
    // A hit: the same answer (the app's request id) without the app being asked.
    for path in ["/blog/", "/api/posts/", "/about/"] {
        let first = reader.get(varnish.url(path)).send().await.unwrap();
        assert_eq!(first.status(), 200, "{path}");
        let id = header(&first, "x-request-id");
        // The app's first answer may be untagged (a tag got its first version while it
        // was built): the edge keeps the next.
        let mut hit = None;
        for _ in 0..4 {
            let res = reader.get(varnish.url(path)).send().await.unwrap();
            if header(&res, "x-edge-cache") == "HIT" {
                hit = Some(res);
                break;
            }
        }
        let hit = hit.unwrap_or_else(|| panic!("{path} is never a Varnish hit"));
        assert!(header(&hit, "x-varnish").contains(' '), "two ids: a hit");
        let again = reader.get(varnish.url(path)).send().await.unwrap();
        assert_eq!(
            header(&again, "x-request-id"),
            header(&hit, "x-request-id"),
            "{path}: a hit is the stored answer, not a new one from the app"
        );
        assert!(!id.is_empty());
        assert!(
            hit.headers().get("xkey").is_none() && hit.headers().get("surrogate-control").is_none(),
            "the tags stay in Varnish"
        );
        let cache_control = header(&hit, "cache-control");
        assert!(cache_control.contains("s-maxage="), "{cache_control}");
    }
    // The app itself names the tags, and browsers get them only through the edge.
    let direct = reader.get(writer.url("/blog/")).send().await.unwrap();
    let xkey = header(&direct, "xkey");
    assert!(
        xkey.split(' ').any(|t| t.ends_with(":tag:post_lists")),
        "/blog/ depends on the post listings: {xkey}"
    );

    // A signed-in admin goes through Varnish uncached; a reader still gets hits.
    writer.sign_in_admin().await;
    for _ in 0..2 {
        let res = writer.client.get(varnish.url("/")).send().await.unwrap();
        assert_eq!(header(&res, "x-edge-cache"), "MISS", "the admin is passed");
        let res = writer
            .client
            .get(varnish.url("/admin/"))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&res, "x-edge-cache"), "MISS");
    }

    // An edit in the admin (its form, over HTTP) is seen through Varnish at once.
    let about = reader.get(varnish.url("/about/")).send().await.unwrap();
    assert!(!about.text().await.unwrap().contains("Edge City"));
    let token = csrf_token(&writer.get_text("/admin/personal-info/").await.1);
    let res = writer
        .client
        .post(writer.url("/admin/personal-info/"))
        .form(&[
            ("name", "Ada Okafor"),
            ("headline", "Behind an edge"),
            ("bio", "Hi"),
            ("location", "Edge City"),
            ("email", "hello@ada-okafor.dev"),
            ("avatar_url", "/static/avatar.svg"),
            ("skills", "Rust, Varnish"),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    for _ in 0..3 {
        let body = reader.get(varnish.url("/about/")).send().await.unwrap();
        assert!(
            body.text().await.unwrap().contains("Edge City"),
            "edit seen through Varnish"
        );
    }

    // Every model, with readers on every page that shows it, through Varnish.
    for (model, _, _) in CASES {
        write(writer, *model, 1).await;
    }
    let floors: Arc<HashMap<&'static str, AtomicU64>> = Arc::new(
        CASES
            .iter()
            .map(|(_, marker, _)| (*marker, AtomicU64::new(1)))
            .collect(),
    );
    let (stop, stale, reads, hits) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut readers = Vec::new();
    for (_, marker, paths) in CASES {
        for path in *paths {
            let (client, url, marker) = (reader.clone(), varnish.url(path), *marker);
            let (floors, stop, stale, reads, hits) = (
                floors.clone(),
                stop.clone(),
                stale.clone(),
                reads.clone(),
                hits.clone(),
            );
            readers.push(actix_web::rt::spawn(async move {
                while !stop.load(SeqCst) {
                    let floor = floors[marker].load(SeqCst);
                    let res = client.get(&url).send().await.expect("Varnish answers");
                    assert_eq!(res.status(), 200, "{url}");
                    if header(&res, "x-edge-cache") == "HIT" {
                        hits.fetch_add(1, SeqCst);
                    }
                    let seen = version_in(&res.text().await.unwrap(), marker);
                    reads.fetch_add(1, SeqCst);
                    if seen < floor {
                        stale.fetch_add(1, SeqCst);
                        eprintln!("stale read on {url}: '{marker}{seen}' after {floor} returned");
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for v in 2..=4 {
        for (model, marker, _) in CASES {
            let app = apps[v as usize % apps.len()];
            write(app, *model, v).await;
            floors[marker].store(v, SeqCst);
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, SeqCst);
    for r in readers {
        r.await.unwrap();
    }
    let (stale, reads, hits) = (stale.load(SeqCst), reads.load(SeqCst), hits.load(SeqCst));
    eprintln!("through Varnish: {reads} reads, {hits} Varnish hits, {stale} stale");
    assert!(
        reads > 200 && hits > reads / 4,
        "{reads} reads, {hits} hits"
    );
    assert_eq!(stale, 0, "no read older than the last write that returned");

    // The second purges are delivered too, and nothing stays owed.
    eventually(
        Duration::from_secs(10),
        "every purge acknowledged twice",
        || async {
            let s = edge_stats(writer).await;
            s["pending"] == 0 && s["repeats_pending"] == 0
        },
    )
    .await;

    // A flood of writes: far fewer purge requests than writes.
    let before = edge_stats(writer).await;
    let mut writes = Vec::new();
    for v in 10..40u64 {
        let app = apps[v as usize % apps.len()];
        writes.push(
            async move { write(app, folio::content::invalidation::Model::SocialLink, v).await },
        );
    }
    futures_util::future::join_all(writes).await;
    eventually(
        Duration::from_secs(10),
        "the flood's purges acknowledged",
        || async {
            let s = edge_stats(writer).await;
            s["pending"] == 0 && s["repeats_pending"] == 0
        },
    )
    .await;
    let mut requests = 0;
    let mut coalesced = 0;
    for app in apps {
        let s = edge_stats(app).await;
        requests += s["requests"].as_u64().unwrap();
        coalesced += s["coalesced"].as_u64().unwrap();
    }
    let before_requests = before["requests"].as_u64().unwrap();
    eprintln!("flood of 30 writes: {requests} purge requests in all ({before_requests} before on the writer), {coalesced} coalesced");
    assert!(coalesced > 0, "writes in one window share a purge");
    // The flood's writes ran at once: the last to commit is what everyone must see.
    let links = writer.state.repo.social_links(true).await.unwrap();
    let last = links
        .iter()
        .map(|l| version_in(&l.name, "Link version "))
        .max()
        .unwrap();
    assert!(last >= 10);
    let body = reader
        .get(varnish.url("/api/social-links/"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        version_in(&body.text().await.unwrap(), "Link version "),
        last
    );
}

#[actix_web::test]
async fn varnish_in_front_of_one_instance_on_the_in_process_cache() {
    let Some(port) = OwnVarnish::reserve() else {
        return;
    };
    let vars = varnish_vars(port);
    let app = spawn_app_with(Backend::Sqlite, &refs(&vars)).await.unwrap();
    let varnish = OwnVarnish::start(port, &[app.port()]).await;
    behind_varnish(&varnish, &[&app]).await;
}

#[actix_web::test]
async fn varnish_in_front_of_two_instances_on_redis() {
    let Some(port) = OwnVarnish::reserve() else {
        return;
    };
    let vars = varnish_vars(port);
    let Some((a, b)) =
        crate::helpers::two_instances_on_redis(Backend::Postgres, &refs(&vars)).await
    else {
        return;
    };
    let varnish = OwnVarnish::start(port, &[a.port(), b.port()]).await;
    behind_varnish(&varnish, &[&a, &b]).await;
    a.state.cache.clear().await;
}

/// A purge sent while Varnish is down is kept (a row any instance sees) and delivered
/// once it is back; the write did not wait for it.
#[actix_web::test]
async fn a_purge_sent_while_varnish_is_down_is_delivered_when_it_is_back() {
    let Some(port) = OwnVarnish::reserve() else {
        return;
    };
    let vars = varnish_vars(port);
    let app = spawn_app_with(Backend::Sqlite, &refs(&vars)).await.unwrap();
    let mut varnish = OwnVarnish::start(port, &[app.port()]).await;
    let reader = reqwest::Client::new();
    for _ in 0..3 {
        reader.get(varnish.url("/tools/")).send().await.unwrap();
    }
    settled(&app).await;
    varnish.stop();
    let started = Instant::now();
    write(&app, folio::content::invalidation::Model::AiTool, 7).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a write does not wait on an edge that is down"
    );
    eventually(
        Duration::from_secs(20),
        "the refused purge is counted",
        || async {
            let s = edge_stats(&app).await;
            s["pending"].as_u64().unwrap() >= 1 && s["failed"].as_u64().unwrap() >= 1
        },
    )
    .await;
    let s = edge_stats(&app).await;
    assert!(
        s["last_error"].as_str().unwrap().contains("not sent"),
        "{s}"
    );
    // Durable: another instance (a restarted process) sees it owed.
    let other = app.second_instance(&refs(&vars)).await;
    assert!(edge_stats(&other).await["pending"].as_u64().unwrap() >= 1);
    varnish.restart().await;
    eventually(
        Duration::from_secs(10),
        "delivered once Varnish is back",
        || async {
            let (a, b) = (edge_stats(&app).await, edge_stats(&other).await);
            a["pending"] == 0
                && a["repeats_pending"] == 0
                && a["retried"].as_u64().unwrap() + b["retried"].as_u64().unwrap() >= 1
        },
    )
    .await;
    let body = reader.get(varnish.url("/tools/")).send().await.unwrap();
    assert_eq!(version_in(&body.text().await.unwrap(), "Tool version "), 7);
}

/// A request the stand-in took: method, path, headers, body.
type Taken = (String, String, HashMap<String, String>, String);

/// A local stand-in for Fastly's or Cloudflare's API: records each request, and
/// answers as the service documents (429 with Retry-After when told to refuse).
#[derive(Clone, Default)]
struct FakeApi {
    requests: Arc<parking_lot::Mutex<Vec<Taken>>>,
    refuse_next: Arc<AtomicU64>,
    /// Answer every request with a 307 to this address (a hostile or broken hop).
    redirect_to: Arc<parking_lot::Mutex<Option<String>>>,
}

impl FakeApi {
    async fn start(&self) -> u16 {
        let api = self.clone();
        let server = actix_web::HttpServer::new(move || {
            let api = api.clone();
            actix_web::App::new().default_service(actix_web::web::to(
                move |req: actix_web::HttpRequest, body: actix_web::web::Bytes| {
                    let api = api.clone();
                    async move {
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect();
                        api.requests.lock().push((
                            req.method().to_string(),
                            req.path().to_string(),
                            headers,
                            String::from_utf8_lossy(&body).into_owned(),
                        ));
                        if let Some(to) = api.redirect_to.lock().clone() {
                            return actix_web::HttpResponse::TemporaryRedirect()
                                .insert_header(("location", to))
                                .finish();
                        }
                        if api.refuse_next.load(SeqCst) > 0 {
                            api.refuse_next.fetch_sub(1, SeqCst);
                            return actix_web::HttpResponse::TooManyRequests()
                                .insert_header(("retry-after", "1"))
                                .body("{\"success\":false,\"errors\":[{\"code\":971,\"message\":\"Please wait and consider throttling your request speed\"}]}");
                        }
                        if req.path().ends_with("/purge_cache") {
                            actix_web::HttpResponse::Ok().body(
                                "{\"success\":true,\"errors\":[],\"messages\":[],\"result\":{\"id\":\"023e105f4ecef8ad9ca31a8372d0c353\"}}",
                            )
                        } else {
                            actix_web::HttpResponse::Ok().body("{\"status\":\"ok\"}")
                        }
                    }
                },
            ))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        actix_web::rt::spawn(server.run());
        port
    }

    fn taken(&self) -> Vec<Taken> {
        self.requests.lock().clone()
    }
}

/// Fastly: `POST /service/{id}/purge` with the keys in `Surrogate-Key` (≤ 256) and the
/// token in `Fastly-Key`; the site's answers carry `Surrogate-Key` and
/// `Surrogate-Control`.
#[actix_web::test]
async fn fastly_purges_follow_its_api() {
    let api = FakeApi::default();
    let port = api.start().await;
    let base = format!("http://127.0.0.1:{port}");
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("EDGE_CACHE_URLS", "fastly://SU1Z0isxPaozGVKXdv0eY"),
            ("FASTLY_API_TOKEN", "fastly-token-0123"),
            ("FASTLY_API_URL", &base),
            ("EDGE_PURGE_REPEAT_AFTER_MS", "200"),
        ],
    )
    .await
    .unwrap();
    // The tag header Fastly reads (a stored answer: the second).
    app.get("/blog/").await;
    let res = app.get("/blog/").await;
    let keys = header(&res, "surrogate-key");
    assert!(
        keys.split(' ').any(|k| k.ends_with(":tag:post_lists")),
        "{keys}"
    );
    assert!(header(&res, "surrogate-control").contains("max-age=86400"));
    assert!(header(&res, "cache-control").contains("s-maxage=86400"));
    assert!(res.headers().get("xkey").is_none() && res.headers().get("cache-tag").is_none());

    let before = settled(&app).await["delivered"].as_u64().unwrap();
    let seen = api.taken().len();
    write(&app, folio::content::invalidation::Model::AiTool, 2).await;
    eventually(
        Duration::from_secs(5),
        "both purges acknowledged",
        || async {
            let s = edge_stats(&app).await;
            s["pending"] == 0 && s["repeats_pending"] == 0 && s["delivered"] == before + 2
        },
    )
    .await;
    assert_eq!(
        api.taken().len(),
        seen + 2,
        "the purge and the second purge"
    );
    for (method, path, headers, _) in api.taken() {
        assert_eq!(method, "POST");
        assert_eq!(path, "/service/SU1Z0isxPaozGVKXdv0eY/purge");
        assert_eq!(headers["fastly-key"], "fastly-token-0123");
        let keys: Vec<&str> = headers["surrogate-key"].split(' ').collect();
        assert!(keys.len() <= 256);
        assert!(
            keys.iter().any(|k| k.contains(":h:")),
            "the hashed forms too"
        );
    }
    for (_, _, headers, _) in &api.taken()[seen..] {
        let keys: Vec<&str> = headers["surrogate-key"].split(' ').collect();
        assert!(keys.iter().any(|k| k.ends_with(":tag:tools")), "{keys:?}");
    }
    // What the dashboard and the alerts show of the edges, /metrics exports.
    let text = app.metrics().await.text().await.unwrap();
    let exposition = openmetrics_parser::prometheus::parse_prometheus(&text).unwrap();
    let mut named = 0;
    for file in ["deploy/grafana/folio.json", "deploy/prometheus/alerts.yml"] {
        let source =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
                .unwrap();
        for name in crate::monitoring::metric_names(&source) {
            // Exported with a path edge (CloudFront): checked in `path_edges`.
            if name.starts_with("folio_edge_") && !name.starts_with("folio_edge_paths_") {
                named += 1;
                assert!(
                    exposition.families.contains_key(&name),
                    "{file} names {name}:\n{text}"
                );
            }
        }
    }
    assert!(named >= 5, "the dashboard shows the edges");
    let delivered = format!(
        "folio_edge_purges_delivered_total{{edge=\"fastly://SU1Z0isxPaozGVKXdv0eY\"}} {}",
        before + 2
    );
    assert!(text.contains(&delivered), "{text}");
}

/// A purge carries the edge's secret: an edge (or anything on the way) answering with a
/// redirect gets a failed purge, retried, and the host it names never sees the secret.
#[actix_web::test]
async fn a_redirect_never_carries_a_purge_secret_elsewhere() {
    let (api, thief) = (FakeApi::default(), FakeApi::default());
    let port = api.start().await;
    let thief_port = thief.start().await;
    *api.redirect_to.lock() = Some(format!("http://127.0.0.1:{thief_port}/steal"));
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("EDGE_CACHE_URLS", "fastly://SU1Z0isxPaozGVKXdv0eY"),
            ("FASTLY_API_TOKEN", "fastly-token-0123"),
            ("FASTLY_API_URL", &format!("http://127.0.0.1:{port}")),
        ],
    )
    .await
    .unwrap();
    write(&app, folio::content::invalidation::Model::AiTool, 1).await;
    eventually(
        Duration::from_secs(5),
        "the redirected purge failed",
        || async {
            let s = edge_stats(&app).await;
            s["failed"].as_u64().unwrap() >= 1 && s["pending"].as_u64().unwrap() >= 1
        },
    )
    .await;
    assert!(!api.taken().is_empty(), "the edge was asked");
    assert!(
        edge_stats(&app).await["last_error"]
            .as_str()
            .unwrap()
            .contains("307"),
        "the 307 is the error shown"
    );
    assert!(
        thief.taken().is_empty(),
        "the redirect target saw nothing: {:?}",
        thief.taken()
    );
}

/// Cloudflare: `POST /zones/{zone}/purge_cache` with `{"tags": […]}` (≤ 100) and a
/// bearer token; a 429 is retried after its Retry-After, and nothing is lost.
#[actix_web::test]
async fn cloudflare_purges_follow_its_api_and_wait_out_its_rate_limit() {
    let api = FakeApi::default();
    let port = api.start().await;
    let base = format!("http://127.0.0.1:{port}/client/v4");
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            (
                "EDGE_CACHE_URLS",
                "cloudflare://023e105f4ecef8ad9ca31a8372d0c353",
            ),
            ("CLOUDFLARE_API_TOKEN", "cf-token-0123"),
            ("CLOUDFLARE_API_URL", &base),
            ("EDGE_PURGE_REPEAT_AFTER_MS", "200"),
        ],
    )
    .await
    .unwrap();
    app.get("/tools/").await;
    let res = app.get("/tools/").await;
    let tags = header(&res, "cache-tag");
    assert!(tags.split(',').any(|t| t.ends_with(":tag:tools")), "{tags}");
    assert!(!tags.contains(' '));
    assert!(header(&res, "cdn-cache-control").contains("stale-if-error="));

    settled(&app).await;
    let seen = api.taken().len();
    api.refuse_next.store(1, SeqCst);
    let (failed, retried) = {
        let s = edge_stats(&app).await;
        (
            s["failed"].as_u64().unwrap(),
            s["retried"].as_u64().unwrap(),
        )
    };
    write(&app, folio::content::invalidation::Model::AiTool, 2).await;
    eventually(
        Duration::from_secs(8),
        "refused once, then both purges",
        || async {
            let s = edge_stats(&app).await;
            s["pending"] == 0 && s["repeats_pending"] == 0 && s["retried"] == retried + 1
        },
    )
    .await;
    let taken = api.taken()[seen..].to_vec();
    assert_eq!(
        taken.len(),
        3,
        "the refused one, the purge, the second purge"
    );
    assert_eq!(edge_stats(&app).await["failed"], failed + 1);
    for (method, path, headers, body) in api.taken() {
        assert_eq!(method, "POST");
        assert_eq!(
            path,
            "/client/v4/zones/023e105f4ecef8ad9ca31a8372d0c353/purge_cache"
        );
        assert_eq!(headers["authorization"], "Bearer cf-token-0123");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        let tags = body["tags"].as_array().unwrap();
        assert!(!tags.is_empty() && tags.len() <= 100);
        assert_eq!(body.as_object().unwrap().len(), 1, "only tags: {body}");
    }
    for (_, _, _, body) in taken {
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        let tags = body["tags"].as_array().unwrap();
        assert!(tags
            .iter()
            .any(|t| t.as_str().unwrap().ends_with(":tag:tools")));
    }
}

/// View counts change every few seconds and are not purged from the edges (their
/// counts lag there by the edge lifetime instead).
#[actix_web::test]
async fn counted_views_do_not_purge_the_edges() {
    let api = FakeApi::default();
    let port = api.start().await;
    let base = format!("http://127.0.0.1:{port}");
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("EDGE_CACHE_URLS", "fastly://svc"),
            // Only the test's own flush writes the counts.
            ("VIEW_FLUSH_INTERVAL", "3600"),
            ("FASTLY_API_TOKEN", "fastly-token-0123"),
            ("FASTLY_API_URL", &base),
        ],
    )
    .await
    .unwrap();
    settled(&app).await;
    let seen = api.taken().len();
    for _ in 0..3 {
        app.get("/blog/markdown-is-enough/").await;
    }
    let pending = app.state.views.pending();
    let flushed = app.state.views.flush(&app.state.repo).await.unwrap();
    assert!(flushed > 0, "pending {pending}, flushed {flushed}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(api.taken().len(), seen, "{:?}", &api.taken()[seen..]);
}

/// Misconfigurations are refused at start, naming the variable.
#[test]
fn edge_settings_are_checked_at_start() {
    let config = |vars: &[(&str, &str)]| {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        folio::config::Config::from_lookup(|name| vars.get(name).cloned())
            .and_then(|c| c.check_shared_secret().map(|()| c))
    };
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().to_string_lossy().into_owned();
    let err = config(&[
        ("DATA_DIR", &data),
        ("EDGE_CACHE_URLS", "varnish://127.0.0.1:6081"),
    ])
    .err()
    .unwrap();
    assert_eq!(err.var, "EDGE_PURGE_SECRET");
    let err = config(&[("DATA_DIR", &data), ("EDGE_CACHE_URLS", "akamai://x")])
        .err()
        .unwrap();
    assert_eq!(err.var, "EDGE_CACHE_URLS");
    let err = config(&[("DATA_DIR", &data), ("EDGE_CACHE_URLS", "fastly://svc")])
        .err()
        .unwrap();
    assert_eq!(err.var, "FASTLY_API_TOKEN");
    if !cfg!(feature = "tls") {
        let err = config(&[
            ("DATA_DIR", &data),
            ("EDGE_CACHE_URLS", "cloudflare://zone"),
            ("CLOUDFLARE_API_TOKEN", "token"),
        ])
        .err()
        .unwrap();
        assert_eq!(err.var, "CLOUDFLARE_API_URL");
        assert!(err.reason.contains("tls"), "{}", err.reason);
    }
}

/// The admin's cache dashboard, in a real browser, shows each edge's purges as they
/// happen.
#[cfg(feature = "browser-tests")]
#[actix_web::test]
async fn the_dashboard_shows_the_edges_purges() {
    use fantoccini::Locator;
    let Some((_driver, port)) = crate::dashboard::start_chromedriver() else {
        return;
    };
    let api = FakeApi::default();
    let api_port = api.start().await;
    let base = format!("http://127.0.0.1:{api_port}");
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("EDGE_CACHE_URLS", "fastly://dashboard-svc"),
            ("FASTLY_API_TOKEN", "fastly-token-0123"),
            ("FASTLY_API_URL", &base),
            ("EDGE_PURGE_REPEAT_AFTER_MS", "200"),
        ],
    )
    .await
    .unwrap();
    let hash = folio::web::admin::hash_password("correct-horse-battery").unwrap();
    app.state.repo.upsert_admin("ada", &hash).await.unwrap();
    let delivered = settled(&app).await["delivered"].as_u64().unwrap();
    let profile = tempfile::TempDir::new().unwrap();
    let browser = crate::dashboard::chromium(port, &profile).await;
    let run = async {
        crate::dashboard::sign_in(&browser, &app, "/admin/").await?;
        browser
            .wait()
            .for_element(Locator::Css("a[href='/admin/cache/']"))
            .await?;
        browser.goto(&app.url("/admin/cache/?refresh=300")).await?;
        let cells = || crate::dashboard::first_row(&browser, "edges");
        let started = Instant::now();
        while cells().await?[0] != "fastly://dashboard-svc" {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{:?}",
                cells().await?
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        write(&app, folio::content::invalidation::Model::AiTool, 5).await;
        let started = Instant::now();
        loop {
            let cells = cells().await?;
            if cells[2] == (delivered + 2).to_string() && cells[6] == "0" && cells[7] == "0" {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{cells:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, fantoccini::error::CmdError>(())
    };
    let result = run.await;
    let _ = browser.close().await;
    result.expect("the dashboard shows the edges");
}

/// The signed webhook's invalidations reach the edges too (data changed elsewhere).
#[actix_web::test]
async fn the_webhook_purges_the_edges() {
    let api = FakeApi::default();
    let port = api.start().await;
    let base = format!("http://127.0.0.1:{port}");
    let secret = "webhook-secret-for-edge-tests";
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("EDGE_CACHE_URLS", "fastly://hook-svc"),
            ("FASTLY_API_TOKEN", "fastly-token-0123"),
            ("FASTLY_API_URL", &base),
            ("CACHE_WEBHOOK_SECRET", secret),
        ],
    )
    .await
    .unwrap();
    settled(&app).await;
    let seen = api.taken().len();
    let body = r#"{"tags": ["featured_tools"], "models": [], "patterns": []}"#;
    let res = crate::helpers::signed_webhook(
        &app.client,
        &app.url("/api/cache/invalidate/"),
        secret,
        body,
    )
    .await;
    assert_eq!(res.status(), 200);
    // The webhook waited for the first purge.
    let taken = api.taken();
    assert_eq!(taken.len(), seen + 1, "{:?}", &taken[seen..]);
    let keys = &taken[seen].2["surrogate-key"];
    assert!(
        keys.split(' ').any(|k| k == "folio:tag:featured_tools"),
        "{keys}"
    );
}
