//! `spawn_app`: the real application on port 0 with its own database (a fresh SQLite
//! file, or a fresh PostgreSQL database when TEST_DATABASE_URL is set), and a client.

use std::collections::HashMap;

use actix_web::web;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use folio::config::Config;
use folio::startup::Application;
use folio::web::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: web::Data<AppState>,
    _db: TestDb,
}

impl TestApp {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.address.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request failed")
    }

    /// `/metrics` as a configured Prometheus scrapes it: with the bearer token.
    pub async fn metrics(&self) -> reqwest::Response {
        self.client
            .get(self.url("/metrics"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request failed")
    }

    /// As the cache admin API's scripts call it: with the bearer token.
    pub async fn get_admin_json(&self, path: &str) -> (u16, serde_json::Value) {
        let res = self
            .client
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request failed");
        (res.status().as_u16(), res.json().await.expect("json body"))
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let res = self.get(path).await;
        let status = res.status().as_u16();
        (status, res.text().await.expect("body"))
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let res = self.get(path).await;
        let status = res.status().as_u16();
        let ct = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(
            ct.starts_with("application/json"),
            "{path}: expected JSON, got {ct}"
        );
        (status, res.json().await.expect("json body"))
    }

    pub async fn seed_generated(&self, n: usize) {
        folio::content::seed::seed_generated(&self.state.repo, n)
            .await
            .expect("seed generated posts");
    }
}

/// Says once per reason that tests are skipped. Written to stderr directly, past the
/// test harness's capture, so a plain `cargo test` shows it.
pub fn skip(reason: &str) {
    use std::io::Write;
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.iter().any(|r| r == reason) {
        let _ = writeln!(std::io::stderr(), "note: {reason}");
        said.push(reason.to_string());
    }
}

/// Fails instead of skipping when CI says the services must be there.
pub fn services_required() -> bool {
    std::env::var("REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// A test database, removed when the test ends.
pub(crate) enum TestDb {
    /// Another TestApp owns the database.
    Borrowed,
    Sqlite(tempfile::TempDir),
    Postgres {
        admin_url: String,
        name: String,
        _dir: tempfile::TempDir,
    },
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres {
            admin_url, name, ..
        } = self
        {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime; a separate thread gets its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) = AsyncPgConnection::establish(&admin_url).await {
                        let _ = conn
                            .batch_execute(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

pub(crate) async fn create_test_db(backend: Backend) -> Option<(String, TestDb)> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::TempDir::new().unwrap();
            let url = format!("sqlite://{}", dir.path().join("test.db").display());
            Some((url, TestDb::Sqlite(dir)))
        }
        Backend::Postgres => {
            let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
                assert!(
                    !services_required(),
                    "REQUIRE_SERVICES=1 but TEST_DATABASE_URL is not set"
                );
                skip("TEST_DATABASE_URL is not set: the PostgreSQL variants of the tests are skipped");
                return None;
            };
            let name = format!("folio_test_{}", uuid::Uuid::new_v4().simple());
            let mut conn = AsyncPgConnection::establish(&admin_url)
                .await
                .unwrap_or_else(|e| panic!("TEST_DATABASE_URL={admin_url} does not answer: {e}"));
            conn.batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("create test database");
            let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
            url.set_path(&name);
            Some((
                url.to_string(),
                TestDb::Postgres {
                    admin_url,
                    name,
                    _dir: tempfile::TempDir::new().unwrap(),
                },
            ))
        }
    }
}

/// The cache admin API's bearer token in tests.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Starts the app on port 0 with the fixtures loaded; `None` when the backend is not
/// available here (the test then skips, printing why).
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, &[]).await
}

pub async fn spawn_app_with(backend: Backend, extra: &[(&str, &str)]) -> Option<TestApp> {
    let _ = folio::telemetry::init(false);
    let (database_url, test_db) = create_test_db(backend).await?;
    let data_dir = match &test_db {
        TestDb::Sqlite(dir) | TestDb::Postgres { _dir: dir, .. } => {
            dir.path().to_string_lossy().into_owned()
        }
        TestDb::Borrowed => unreachable!("create_test_db makes a database"),
    };
    Some(start(&database_url, &data_dir, extra, test_db).await)
}

/// Builds and starts the app with the test defaults, `extra` on top.
async fn start(database_url: &str, data_dir: &str, extra: &[(&str, &str)], db: TestDb) -> TestApp {
    try_start(database_url, data_dir, extra, db)
        .await
        .expect("application starts")
}

/// `start`, or why the application refused to start.
async fn try_start(
    database_url: &str,
    data_dir: &str,
    extra: &[(&str, &str)],
    db: TestDb,
) -> Result<TestApp, String> {
    let mut vars: HashMap<String, String> = [
        ("DATABASE_URL", database_url),
        ("DATA_DIR", data_dir),
        ("BIND", "127.0.0.1:0"),
        ("WORKERS", "1"),
        ("SITE_URL", "http://blog.example.com"),
        // Tests count misses and queries from a cold start; those that test warming
        // turn it on.
        ("WARM_ON_START", "false"),
        ("WARM_AFTER_INVALIDATION", "false"),
        ("CACHE_ADMIN_TOKEN", ADMIN_TOKEN),
        (
            "SECRET_KEY",
            "test-secret-key-that-is-long-enough-for-cookies-0123456789",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    let config = Config::from_lookup(|name| vars.get(name).cloned()).expect("test config");
    let app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    actix_web::rt::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    Ok(TestApp {
        address,
        client,
        state,
        _db: db,
    })
}

/// Declares each test once and runs it on SQLite and on PostgreSQL:
/// `<name>::sqlite` and `<name>::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($(async fn $name:ident($app:ident: TestApp) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                use $crate::helpers::{spawn_app, Backend, TestApp};

                async fn run($app: TestApp) $body

                #[actix_web::test]
                async fn sqlite() {
                    run(spawn_app(Backend::Sqlite).await.expect("sqlite is always available")).await
                }

                #[actix_web::test]
                async fn postgres() {
                    if let Some(app) = spawn_app(Backend::Postgres).await {
                        run(app).await
                    }
                }
            }
        )*
    };
}

/// How often `needle` occurs in `haystack`.
pub fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// The Redis URL for tests, or None (skip) when TEST_REDIS_URL is unset.
pub fn test_redis_url() -> Option<String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                !services_required(),
                "REQUIRE_SERVICES=1 but TEST_REDIS_URL is not set"
            );
            skip("TEST_REDIS_URL is not set: the Redis tests are skipped");
            None
        }
    }
}

/// A key prefix no other test uses, so tests share one Redis without seeing each other.
pub fn unique_prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A cache on the given backend with a unique prefix; None when Redis is not available.
pub fn test_cache(redis: bool) -> Option<folio::cache::CacheManager> {
    use folio::cache::CacheUrl;
    let url = if redis {
        CacheUrl::Redis(test_redis_url()?)
    } else {
        CacheUrl::Memory
    };
    Some(test_cache_on(url))
}

/// A cache on `url` with a unique prefix.
pub fn test_cache_on(url: folio::cache::CacheUrl) -> folio::cache::CacheManager {
    use folio::cache::{CacheConfig, CacheManager};
    let mut config = CacheConfig::new(url, &unique_prefix());
    // Generous: these tests check behaviour, not speed, on a busy 2-core CI machine.
    config.timeout = std::time::Duration::from_secs(2);
    CacheManager::new(config).expect("cache")
}

/// Declares each cache test once and runs it on the in-process cache and on Redis.
#[macro_export]
macro_rules! on_both_caches {
    ($(async fn $name:ident($cache:ident: CacheManager) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                use folio::cache::CacheManager;

                async fn run($cache: CacheManager) $body

                #[actix_web::test]
                async fn memory() {
                    run($crate::helpers::test_cache(false).unwrap()).await
                }

                #[actix_web::test]
                async fn redis() {
                    if let Some(cache) = $crate::helpers::test_cache(true) {
                        assert!(cache.wait_until_serving(std::time::Duration::from_secs(5)).await, "Redis serves");
                        let probe = cache.clone();
                        run(cache).await;
                        probe.clear().await;
                    }
                }

                #[actix_web::test]
                async fn redis_cluster() {
                    if let Some(url) = $crate::redis_cluster::shared_cluster_url() {
                        let cache = $crate::helpers::test_cache_on(folio::cache::CacheUrl::parse(&url).unwrap());
                        assert!(cache.wait_until_serving(std::time::Duration::from_secs(10)).await, "the cluster serves");
                        let probe = cache.clone();
                        run(cache).await;
                        probe.clear().await;
                    }
                }
            }
        )*
    };
}

/// Declares each test once and runs it against the app on the in-process cache and on
/// Redis (SQLite database for both): `<name>::memory_cache` and `<name>::redis_cache`.
#[macro_export]
macro_rules! on_both_app_caches {
    ($(async fn $name:ident($app:ident: TestApp) $body:block)*) => {
        $crate::on_both_app_caches! { with &[]; $(async fn $name($app: TestApp) $body)* }
    };
    (with $extra:expr; $(async fn $name:ident($app:ident: TestApp) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                use $crate::helpers::{spawn_app_with, Backend, TestApp};

                async fn run($app: TestApp) $body

                #[actix_web::test]
                async fn memory_cache() {
                    run(spawn_app_with(Backend::Sqlite, $extra).await.unwrap()).await
                }

                #[actix_web::test]
                async fn redis_cache() {
                    if let Some(url) = $crate::helpers::test_redis_url() {
                        $crate::helpers::run_on_shared_cache(&url, $extra, run).await
                    }
                }

                #[actix_web::test]
                async fn cluster_cache() {
                    if let Some(url) = $crate::redis_cluster::shared_cluster_url() {
                        $crate::helpers::run_on_shared_cache(&url, $extra, run).await
                    }
                }
            }
        )*
    };
}

/// The settings of an app on the Redis (or cluster) at `url` under `prefix`, `extra` on
/// top.
fn shared_cache_vars<'a>(
    url: &'a str,
    prefix: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut vars = vec![
        ("CACHE_URL", url),
        ("CACHE_KEY_PREFIX", prefix),
        ("CACHE_TIMEOUT_MS", "2000"),
    ];
    vars.extend_from_slice(extra);
    vars
}

/// Runs `run` against the app (SQLite) on the Redis or cluster at `url`, under a fresh
/// key prefix, and removes what it left there.
pub async fn run_on_shared_cache<F, Fut>(url: &str, extra: &[(&str, &str)], run: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let prefix = unique_prefix();
    let vars = shared_cache_vars(url, &prefix, extra);
    let app = spawn_app_with(Backend::Sqlite, &vars).await.unwrap();
    let cache = app.state.cache.clone();
    run(app).await;
    cache.clear().await;
    cache.reset_site_stats().await;
}

impl TestApp {
    /// Another instance of the app on the same database (and the given cache settings),
    /// as a second server behind a load balancer would be.
    pub async fn second_instance(&self, extra: &[(&str, &str)]) -> TestApp {
        let database_url = self.state.config.database_url.to_url();
        let data_dir = self.state.config.data_dir.to_string_lossy().into_owned();
        let mut vars = vec![("SEED_ON_EMPTY", "false")];
        vars.extend_from_slice(extra);
        start(&database_url, &data_dir, &vars, TestDb::Borrowed).await
    }

    /// `second_instance`, or why it refused to start.
    pub async fn try_second_instance(&self, extra: &[(&str, &str)]) -> Result<TestApp, String> {
        let database_url = self.state.config.database_url.to_url();
        let data_dir = self.state.config.data_dir.to_string_lossy().into_owned();
        let mut vars = vec![("SEED_ON_EMPTY", "false")];
        vars.extend_from_slice(extra);
        try_start(&database_url, &data_dir, &vars, TestDb::Borrowed).await
    }

    /// Creates an admin account and signs this app's client in.
    pub async fn sign_in_admin(&self) {
        let hash = folio::web::admin::hash_password("correct-horse-battery").unwrap();
        self.state.repo.upsert_admin("ada", &hash).await.unwrap();
        let token = csrf_token(&self.get_text("/admin/login/").await.1);
        let res = self
            .client
            .post(self.url("/admin/login/"))
            .form(&login_form("correct-horse-battery", &token))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "signed in");
    }

    /// The CSRF token of a form page this client loads.
    pub async fn csrf_for(&self, path: &str) -> String {
        csrf_token(&self.get_text(path).await.1)
    }
}

/// The hidden CSRF token in a rendered form.
pub fn csrf_token(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("csrf field") + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// The owner's details with `headline` (the stale-read harnesses write versions).
pub fn personal_info(headline: String) -> folio::content::models::NewPersonalInfo {
    folio::content::models::NewPersonalInfo {
        name: "Ada Okafor".into(),
        headline,
        bio: "Bio".into(),
        location: "Lisbon".into(),
        email: "hello@ada-okafor.dev".into(),
        avatar_url: "/static/avatar.svg".into(),
        skills: vec!["Rust".into()],
    }
}

impl TestApp {
    /// A post as the admin's edit form loads it: its id, its detail and its author's id.
    pub async fn post_to_edit(&self, slug: &str) -> (i32, folio::content::models::PostDetail, i32) {
        let repo = &self.state.repo;
        let id = repo
            .post_by_slug(slug, true)
            .await
            .unwrap()
            .expect("post")
            .summary
            .id;
        let (post, author_id) = repo.post_for_edit(id).await.unwrap().unwrap();
        (id, post, author_id)
    }
}

/// Admin sessions by hand, for tests that hold on to a cookie (a copy kept after
/// sign-out, one cookie sent to two instances).
/// Signs `ada` in with a client that keeps no cookies; returns the session cookie.
pub async fn sign_in_by_hand(app: &TestApp, password: &str) -> String {
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = bare.get(app.url("/admin/login/")).send().await.unwrap();
    // No session before sign-in: the form's double-submit cookie.
    let cookie = new_cookie(&res, "folio_csrf").expect("a CSRF cookie");
    let token = csrf_token(&res.text().await.unwrap());
    let res = bare
        .post(app.url("/admin/login/"))
        .header("cookie", &cookie)
        .form(&login_form(password, &token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "signed in");
    let signed_in = session_cookie(&res);
    assert_ne!(signed_in, cookie, "a new session at sign-in");
    signed_in
}

/// The session cookie a response set, if it set one.
pub fn new_session_cookie(res: &reqwest::Response) -> Option<String> {
    new_cookie(res, "folio_session")
}

/// `name=value` of a cookie a response set.
pub fn new_cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_string())
}

pub fn session_cookie(res: &reqwest::Response) -> String {
    new_session_cookie(res).expect("a session cookie")
}

pub async fn get_with(app: &TestApp, cookie: &str, path: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

pub async fn create_admin(app: &TestApp, password: &str) {
    let hash = folio::web::admin::hash_password(password).unwrap();
    app.state.repo.upsert_admin("ada", &hash).await.unwrap();
}

/// The sign-in form of the test admin `ada`.
pub fn login_form<'a>(password: &'a str, token: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("username", "ada"),
        ("password", password),
        ("csrf_token", token),
        ("next", "/admin/"),
    ]
}

/// Two instances of the app on one database (`backend`, SQLite when PostgreSQL is not
/// available) sharing Redis under a fresh key prefix, `extra` settings on top, as two
/// servers behind a load balancer; None (skip) without TEST_REDIS_URL.
pub async fn two_instances_on_redis(
    backend: Backend,
    extra: &[(&str, &str)],
) -> Option<(TestApp, TestApp)> {
    Some(two_instances_on(&test_redis_url()?, backend, extra).await)
}

/// `two_instances_on_redis` with the Redis (or cluster) at `url`.
pub async fn two_instances_on(
    url: &str,
    backend: Backend,
    extra: &[(&str, &str)],
) -> (TestApp, TestApp) {
    let prefix = unique_prefix();
    let vars = shared_cache_vars(url, &prefix, extra);
    let a = match spawn_app_with(backend, &vars).await {
        Some(app) => app,
        None => spawn_app_with(Backend::Sqlite, &vars).await.unwrap(),
    };
    let b = a.second_instance(&vars).await;
    (a, b)
}

/// A correctly signed, current webhook call to `url` (a server's
/// `/api/cache/invalidate/`).
pub async fn signed_webhook(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    body: &str,
) -> reqwest::Response {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    client
        .post(url)
        .header("content-type", "application/json")
        .header("x-cache-timestamp", &ts)
        .header(
            "x-cache-signature",
            folio::web::api::webhook::sign(secret, &ts, body.as_bytes()),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}
