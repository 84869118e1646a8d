//! The edges purged by path: a real nginx with `ngx_cache_purge` running the shipped
//! `deploy/nginx/folio-cache.conf`, in front of one instance on the in-process cache and
//! of two on Redis; and CloudFront through moto's stand-in (from PyPI), which checks
//! each request's AWS Signature Version 4 and keeps the invalidations it accepted.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use folio::content::invalidation::Model;

use crate::edge_cache::{edge_stats, eventually, header, refs};
use crate::faults::{version_in, write, CASES};
use crate::helpers::{services_required, skip, spawn_app_with, Backend, TestApp};
use crate::varnish::free_port;

/// Debian's package puts the module here and loads it from `modules-enabled`.
const PURGE_MODULE: &str = "/usr/lib/nginx/modules/ngx_http_cache_purge_module.so";

fn nginx_bin() -> Option<&'static str> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// nginx on a free port, from the shipped file with its cache, upstream and listen
/// blocks replaced; its cache directory outlives a restart, as a real one's does.
struct OwnNginx {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnNginx {
    /// A port for an nginx started later (the apps must name it first); None (skip)
    /// where nginx or the purge module is not installed.
    fn reserve() -> Option<u16> {
        if nginx_bin().is_none() || !std::path::Path::new(PURGE_MODULE).exists() {
            assert!(
                !services_required(),
                "REQUIRE_SERVICES=1 but nginx with ngx_cache_purge is not installed (apt-get install nginx libnginx-mod-http-cache-purge)"
            );
            skip("nginx with ngx_cache_purge is not installed: the nginx edge tests are skipped");
            return None;
        }
        Some(free_port())
    }

    async fn start(port: u16, backends: &[u16]) -> OwnNginx {
        let dir = tempfile::TempDir::new().unwrap();
        let d = dir.path().display();
        let shipped = include_str!("../../deploy/nginx/folio-cache.conf");
        let servers: String = backends
            .iter()
            .map(|p| format!("server 127.0.0.1:{p};\n"))
            .collect();
        let site = replace_block(
            shipped,
            "cache path",
            &format!("proxy_cache_path {d}/cache levels=1:2 keys_zone=folio:10m max_size=64m inactive=1d use_temp_path=off;\n"),
        );
        let site = replace_block(
            &site,
            "upstream",
            &format!("upstream folio {{\n{servers} keepalive 16;\n}}\n"),
        );
        let site = replace_block(&site, "listen", &format!("listen 127.0.0.1:{port};\n"));
        let conf = format!(
            "load_module {PURGE_MODULE};
daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
{site}
}}"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut nginx = OwnNginx {
            child: None,
            port,
            dir,
        };
        nginx.launch().await;
        nginx
    }

    async fn launch(&mut self) {
        let dir = self.dir.path();
        let child = Command::new(nginx_bin().unwrap())
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        self.child = Some(child);
        let client = reqwest::Client::new();
        let started = Instant::now();
        while !client
            .get(self.url("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx did not start: {log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn edge_url(port: u16) -> String {
        format!("nginx://127.0.0.1:{port}")
    }

    /// Stops it (by pid; the master's workers go with it) and waits for the port.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OwnNginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `text` with the lines between `# BEGIN {name}` and `# END {name}` replaced.
fn replace_block(text: &str, name: &str, with: &str) -> String {
    let (head, rest) = text
        .split_once(&format!("# BEGIN {name}"))
        .unwrap_or_else(|| panic!("the shipped file marks its {name}"));
    let (_, tail) = rest
        .split_once(&format!("# END {name}"))
        .unwrap_or_else(|| panic!("the shipped file marks its {name}'s end"));
    format!("{head}{with}{tail}")
}

fn vars(edge: String) -> Vec<(&'static str, String)> {
    vec![
        ("EDGE_CACHE_URLS", edge),
        ("EDGE_PURGE_REPEAT_AFTER_MS", "300".to_string()),
        ("EDGE_PURGE_RETRY_MAX", "1".to_string()),
    ]
}

/// Reads `path` through nginx until it is an nginx hit; returns that response.
async fn hit(client: &reqwest::Client, nginx: &OwnNginx, path: &str) -> reqwest::Response {
    // The app's first answer may be untagged (a tag got its first version while it was
    // built): nginx keeps the next.
    for _ in 0..6 {
        let res = client.get(nginx.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        if header(&res, "x-edge-cache") == "HIT" {
            return res;
        }
    }
    panic!("{path} is never an nginx hit");
}

/// What every deployment behind nginx must show: hits answered by nginx alone, the
/// admin and signed-in readers never cached, and every model's edit seen through nginx
/// 0.3 s after it returned (and at once) — 20 edits and more, none stale.
async fn behind_nginx(nginx: &OwnNginx, apps: &[&TestApp]) {
    let reader = reqwest::Client::new();
    for path in ["/", "/blog/", "/api/posts/", "/about/"] {
        let hit = hit(&reader, nginx, path).await;
        let again = reader.get(nginx.url(path)).send().await.unwrap();
        assert_eq!(header(&again, "x-edge-cache"), "HIT");
        assert_eq!(
            header(&again, "x-request-id"),
            header(&hit, "x-request-id"),
            "{path}: a hit is nginx's copy, not a new answer from the app"
        );
        assert!(header(&hit, "cache-control").contains("s-maxage="));
    }
    // A spelling the site answers but does not store by that name is not for nginx.
    for _ in 0..2 {
        let res = reader
            .get(nginx.url("/blog/?utm_source=feed"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_ne!(header(&res, "x-edge-cache"), "HIT");
        assert!(header(&res, "cache-control").contains("s-maxage=0"));
    }

    // The admin, and any page a signed-in admin reads, never from or into nginx.
    let writer = apps[0];
    writer.sign_in_admin().await;
    for _ in 0..2 {
        for path in ["/", "/admin/", "/blog/"] {
            let res = writer.client.get(nginx.url(path)).send().await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            assert_ne!(header(&res, "x-edge-cache"), "HIT", "{path} for an admin");
        }
    }

    // Edits of every model, each read through nginx 0.3 s after it returned.
    let (mut reads, mut stale, mut hits) = (0, 0, 0);
    let mut edits = 0;
    for v in 1..=4u64 {
        for (model, marker, paths) in CASES {
            // Each page cached by nginx before the edit, so a missed purge would show.
            for path in *paths {
                let res = reader.get(nginx.url(path)).send().await.unwrap();
                if header(&res, "x-edge-cache") == "HIT" {
                    hits += 1;
                }
            }
            let app = apps[edits % apps.len()];
            write(app, *model, v).await;
            edits += 1;
            for wait in [Duration::ZERO, Duration::from_millis(300)] {
                tokio::time::sleep(wait).await;
                for path in *paths {
                    let res = reader.get(nginx.url(path)).send().await.unwrap();
                    assert_eq!(res.status(), 200, "{path}");
                    let seen = version_in(&res.text().await.unwrap(), marker);
                    reads += 1;
                    if seen < v {
                        stale += 1;
                        eprintln!("stale read on {path} {wait:?} after the edit: '{marker}{seen}', not {v}");
                    }
                }
            }
        }
    }
    eprintln!("through nginx: {edits} edits, {reads} reads after them, {stale} stale; {hits} hits before them");
    assert!(edits >= 20);
    assert!(
        hits > edits / 2,
        "nginx kept the pages between edits: {hits}"
    );
    assert_eq!(stale, 0, "no read older than the last edit that returned");

    eventually(
        Duration::from_secs(10),
        "every purge acknowledged twice",
        || async {
            let s = edge_stats(writer).await;
            s["pending"] == 0 && s["repeats_pending"] == 0
        },
    )
    .await;
    let s = edge_stats(writer).await;
    assert!(s["requests"].as_u64().unwrap() > 0, "{s}");
    assert!(s["paths_this_month"].as_i64().is_some(), "{s}");
}

#[actix_web::test]
async fn nginx_in_front_of_one_instance_on_the_in_process_cache() {
    let Some(port) = OwnNginx::reserve() else {
        return;
    };
    let vars = vars(OwnNginx::edge_url(port));
    let app = spawn_app_with(Backend::Sqlite, &refs(&vars)).await.unwrap();
    let nginx = OwnNginx::start(port, &[app.port()]).await;
    behind_nginx(&nginx, &[&app]).await;
}

#[actix_web::test]
async fn nginx_in_front_of_two_instances_on_redis() {
    let Some(port) = OwnNginx::reserve() else {
        return;
    };
    let vars = vars(OwnNginx::edge_url(port));
    let Some((a, b)) =
        crate::helpers::two_instances_on_redis(Backend::Postgres, &refs(&vars)).await
    else {
        return;
    };
    let nginx = OwnNginx::start(port, &[a.port(), b.port()]).await;
    behind_nginx(&nginx, &[&a, &b]).await;
    a.state.cache.clear().await;
}

/// A purge owed to a stopped nginx is kept and delivered when it is back: its disk
/// cache still holds the old page then, and the page is fresh once delivered.
#[actix_web::test]
async fn a_purge_owed_to_a_stopped_nginx_is_delivered_when_it_is_back() {
    let Some(port) = OwnNginx::reserve() else {
        return;
    };
    let vars = vars(OwnNginx::edge_url(port));
    let app = spawn_app_with(Backend::Sqlite, &refs(&vars)).await.unwrap();
    let mut nginx = OwnNginx::start(port, &[app.port()]).await;
    let reader = reqwest::Client::new();
    let before = hit(&reader, &nginx, "/tools/").await.text().await.unwrap();
    assert_eq!(version_in(&before, "Tool version "), 0);
    nginx.stop();
    let started = Instant::now();
    write(&app, Model::AiTool, 7).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the write did not wait for the stopped nginx"
    );
    eventually(Duration::from_secs(10), "the purge refused", || async {
        let s = edge_stats(&app).await;
        s["failed"].as_u64().unwrap() > 0 && s["pending"].as_i64().unwrap() > 0
    })
    .await;
    nginx.launch().await;
    eventually(Duration::from_secs(15), "the purge delivered", || async {
        edge_stats(&app).await["pending"] == 0
    })
    .await;
    let res = reader.get(nginx.url("/tools/")).send().await.unwrap();
    assert_eq!(
        version_in(&res.text().await.unwrap(), "Tool version "),
        7,
        "fresh through nginx once the purge was delivered"
    );
}

/// Paths are recorded within `EDGE_PATHS_MAX`: past it a page goes out with
/// `s-maxage=0`, and what a visitor invents (parameters the site ignores) never is.
#[actix_web::test]
async fn path_records_stay_within_their_budget() {
    // No nginx needed: what matters is what the site sends and records.
    let vars = [
        ("EDGE_CACHE_URLS", "nginx://127.0.0.1:9".to_string()),
        ("EDGE_PATHS_MAX", "12".to_string()),
        ("EDGE_PURGE_RETRY_MAX", "1".to_string()),
    ];
    let app = spawn_app_with(Backend::Sqlite, &refs(&vars)).await.unwrap();
    let client = reqwest::Client::new();
    let mut kept = 0;
    let mut refused = 0;
    for path in [
        "/",
        "/blog/",
        "/about/",
        "/tools/",
        "/api/posts/",
        "/api/ai-tools/",
        "/api/social-links/",
        "/api/personal-info/",
        "/blog/stampedes-and-single-flight/",
    ] {
        // Twice: a page's first answer may be untagged.
        for _ in 0..2 {
            let res = client.get(app.url(path)).send().await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            let cc = header(&res, "cache-control");
            if cc.contains("s-maxage=0") {
                refused += 1;
            } else if cc.contains("s-maxage=") {
                kept += 1;
            }
        }
    }
    for i in 0..50 {
        let res = client
            .get(app.url(&format!("/blog/?utm_campaign=c{i}")))
            .send()
            .await
            .unwrap();
        assert!(header(&res, "cache-control").contains("s-maxage=0"));
    }
    let recorded = app.state.repo.sweep_edge_paths().await.unwrap();
    eprintln!("{kept} answers for the edges, {refused} not; {recorded} records (budget 12)");
    assert!(kept > 0, "the budget leaves room for the first pages");
    assert!(refused > 0, "past the budget, pages are not for the edges");
    assert!(recorded <= 12 + 32, "{recorded} records");
}

/// moto's CloudFront, IAM and its own state, on a free port, as a user with a key
/// allowed everything; stopped by pid.
struct Moto {
    child: Child,
    port: u16,
    access_key: String,
    secret_key: String,
    distribution: String,
}

/// Creates the user, its key and a distribution (the first four requests moto takes
/// unsigned; every later one must be signed by a key it knows).
const MOTO_SETUP: &str = r#"
import boto3, json, sys
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="folio")
iam.put_user_policy(UserName="folio", PolicyName="purge", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="folio")["AccessKey"]
kw.update(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
cf = boto3.client("cloudfront", **kw)
d = cf.create_distribution(DistributionConfig={"CallerReference": "folio", "Comment": "", "Enabled": True,
    "Origins": {"Quantity": 1, "Items": [{"Id": "app", "DomainName": "example.com",
        "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "http-only"}}]},
    "DefaultCacheBehavior": {"TargetOriginId": "app", "ViewerProtocolPolicy": "allow-all", "MinTTL": 0,
        "ForwardedValues": {"QueryString": True, "Cookies": {"Forward": "none"}}}})
print(json.dumps({"key": key["AccessKeyId"], "secret": key["SecretAccessKey"], "distribution": d["Distribution"]["Id"]}))
"#;

impl Moto {
    fn start() -> Option<Moto> {
        let ready = Command::new("python3")
            .args(["-c", "import moto.server, boto3"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ready {
            assert!(
                !services_required(),
                "REQUIRE_SERVICES=1 but moto is not installed (pip install 'moto[cloudfront,server]')"
            );
            skip("moto is not installed (pip install 'moto[cloudfront,server]'): the CloudFront test is skipped");
            return None;
        }
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = Command::new("python3")
            .args(["-c", MOTO_SETUP, &format!("http://127.0.0.1:{port}")])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "moto setup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        Some(Moto {
            child,
            port,
            access_key: made["key"].as_str().unwrap().into(),
            secret_key: made["secret"].as_str().unwrap().into(),
            distribution: made["distribution"].as_str().unwrap().into(),
        })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The invalidations moto accepted (each a list of paths), oldest first.
    async fn invalidations(&self) -> Vec<Vec<String>> {
        let state: serde_json::Value =
            reqwest::get(format!("{}/moto-api/data.json", self.endpoint()))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        state["cloudfront"]["Invalidation"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|i| {
                        i["paths"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|p| p.as_str().unwrap().to_string())
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CloudFront: a burst of writes is one signed invalidation naming exactly the paths
/// served from what they changed, counted for the month; a wrong key is refused by the
/// stand-in and the purge stays owed.
#[actix_web::test]
async fn cloudfront_gets_one_signed_coalesced_invalidation_per_burst() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let endpoint = moto.endpoint();
    let vars = [
        (
            "EDGE_CACHE_URLS",
            format!("cloudfront://{}", moto.distribution),
        ),
        ("AWS_ACCESS_KEY_ID", moto.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", moto.secret_key.clone()),
        ("AWS_ENDPOINT_URL_CLOUDFRONT", endpoint.clone()),
        // The second purge comes well after the burst: its own invalidation.
        ("EDGE_PURGE_REPEAT_AFTER_MS", "1500".to_string()),
        ("EDGE_PURGE_RETRY_MAX", "1".to_string()),
    ];
    let app = spawn_app_with(Backend::Sqlite, &refs(&vars)).await.unwrap();
    let client = reqwest::Client::new();
    // Start-up's own purges go first (the fixtures' writes).
    eventually(Duration::from_secs(10), "start-up purges done", || async {
        let s = edge_stats(&app).await;
        s["pending"] == 0 && s["repeats_pending"] == 0
    })
    .await;
    let before = moto.invalidations().await.len();
    // Readers (through CloudFront, in production) fetch these: each is recorded.
    let served = [
        "/tools/",
        "/api/ai-tools/",
        "/",
        "/about/",
        "/api/social-links/",
        "/blog/stampedes-and-single-flight/",
    ];
    for path in served {
        for _ in 0..2 {
            let res = client.get(app.url(path)).send().await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
        }
        let res = client.get(app.url(path)).send().await.unwrap();
        assert!(
            header(&res, "cache-control").contains("s-maxage=")
                && !header(&res, "cache-control").contains("s-maxage=0"),
            "{path}: for the edge"
        );
    }
    // A burst: five edits of the AI tools at once.
    let writes = (1..=5u64).map(|v| write(&app, Model::AiTool, v));
    futures_util::future::join_all(writes).await;
    eventually(
        Duration::from_secs(10),
        "the burst's invalidation",
        || async { moto.invalidations().await.len() > before },
    )
    .await;
    // Only the first round's: the second purge is not due yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = moto.invalidations().await;
    let new: Vec<&Vec<String>> = sent[before..].iter().collect();
    eprintln!("the burst's invalidations: {new:?}");
    assert!(
        new.len() <= 2,
        "five writes at once are one invalidation (two if the first was sent before the rest committed): {new:?}"
    );
    let paths: std::collections::BTreeSet<&str> = new
        .iter()
        .flat_map(|i| i.iter().map(String::as_str))
        .collect();
    // The AI tools show on /tools/, /api/ai-tools/ and the home page; not elsewhere.
    for expected in ["/tools/", "/api/ai-tools/", "/"] {
        assert!(
            paths.contains(expected),
            "{expected} missing from {paths:?}"
        );
    }
    for unrelated in [
        "/about/",
        "/api/social-links/",
        "/blog/stampedes-and-single-flight/",
    ] {
        assert!(
            !paths.contains(unrelated),
            "{unrelated} purged for an AI tools edit: {paths:?}"
        );
    }
    eventually(Duration::from_secs(10), "the second purge too", || async {
        let s = edge_stats(&app).await;
        s["pending"] == 0 && s["repeats_pending"] == 0
    })
    .await;
    let s = edge_stats(&app).await;
    let counted = s["paths_this_month"].as_i64().unwrap();
    let total: usize = moto.invalidations().await.iter().map(Vec::len).sum();
    assert_eq!(
        counted as usize, total,
        "the month's paths are what CloudFront was sent: {s}"
    );
    assert_eq!(s["failed"], 0, "{s}");
    // And /metrics, for the alert past 800 (deploy/prometheus/alerts.yml).
    let text = app.metrics().await.text().await.unwrap();
    let line = format!(
        "folio_edge_paths_this_month{{edge=\"cloudfront://{}\"}} {counted}",
        moto.distribution
    );
    assert!(text.contains(&line), "{line} in:\n{text}");

    // A wrong secret: the stand-in refuses the signature, the purge stays owed.
    let mut wrong = vars.clone();
    wrong[2].1 = "not-the-secret-0123456789".into();
    let other = spawn_app_with(Backend::Sqlite, &refs(&wrong))
        .await
        .unwrap();
    for _ in 0..2 {
        client.get(other.url("/tools/")).send().await.unwrap();
    }
    let sent_before = moto.invalidations().await.len();
    write(&other, Model::AiTool, 9).await;
    eventually(
        Duration::from_secs(10),
        "the unsigned purge refused",
        || async {
            let s = edge_stats(&other).await;
            s["failed"].as_u64().unwrap() > 0
        },
    )
    .await;
    let s = edge_stats(&other).await;
    assert!(
        s["last_error"].as_str().unwrap_or("").contains("403"),
        "{s}"
    );
    assert!(s["pending"].as_i64().unwrap() > 0, "kept to retry: {s}");
    assert_eq!(moto.invalidations().await.len(), sent_before);
}
