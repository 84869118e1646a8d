//! Several instances: what must be shared between them.

use std::collections::HashMap;

/// Instances that each generate a key would break every session and CSRF token as the
/// balancer switches between them: with PostgreSQL or Redis, start-up wants SECRET_KEY.
#[actix_web::test]
async fn a_shared_deployment_needs_a_secret_key() {
    let dir = tempfile::TempDir::new().unwrap();
    let data_dir = dir.path().to_string_lossy().into_owned();
    let sqlite = format!("sqlite://{}/folio.db", data_dir);
    let start = |vars: Vec<(&str, String)>| {
        let vars: HashMap<String, String> =
            vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        async move {
            let config =
                folio::config::Config::from_lookup(|name| vars.get(name).cloned()).unwrap();
            folio::startup::Application::build(config).await.map(|_| ())
        }
    };
    let base = || {
        vec![
            ("DATA_DIR", data_dir.clone()),
            ("BIND", "127.0.0.1:0".to_string()),
            ("WARM_ON_START", "false".to_string()),
        ]
    };
    let mut redis = base();
    redis.extend([
        ("DATABASE_URL", sqlite.clone()),
        ("CACHE_URL", "redis://127.0.0.1:1".to_string()),
    ]);
    let err = start(redis).await.expect_err("refused");
    let line = err.to_string();
    assert!(
        line.contains("SECRET_KEY: must be set")
            && line.contains("every instance")
            && !line.contains('\n'),
        "{line}"
    );
    let mut postgres = base();
    postgres.push((
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:1/none".to_string(),
    ));
    assert!(start(postgres)
        .await
        .expect_err("refused")
        .to_string()
        .contains("SECRET_KEY: must be set"));
    // One instance on SQLite and the in-process cache keeps its generated key.
    let mut embedded = base();
    embedded.push(("DATABASE_URL", sqlite));
    start(embedded)
        .await
        .expect("the embedded default starts without a key");
}

/// A rolling deploy that bumps CACHE_VERSION: old and new instances share tag versions,
/// so a write on either drops what the other cached.
#[actix_web::test]
async fn a_write_on_a_new_version_invalidates_old_instances() {
    let Some(url) = crate::helpers::test_redis_url() else {
        return;
    };
    let prefix = crate::helpers::unique_prefix();
    let make = |version: u32| {
        let mut config =
            folio::cache::CacheConfig::new(folio::cache::CacheUrl::Redis(url.clone()), &prefix);
        config.version = version;
        config.timeout = std::time::Duration::from_secs(2);
        folio::cache::CacheManager::new(config).unwrap()
    };
    let (old, new) = (make(1), make(2));
    old.check(std::time::Duration::from_secs(5)).await.unwrap();
    new.check(std::time::Duration::from_secs(5)).await.unwrap();
    let read = |cache: folio::cache::CacheManager, value: &'static str| async move {
        let key = cache.key("posts", ["recent"]);
        cache
            .get_or_set_tagged(&key, &["post_lists"], None, || async move {
                Ok::<_, std::convert::Infallible>(value.to_string())
            })
            .await
            .unwrap()
    };
    assert_eq!(read(old.clone(), "v1 before").await, "v1 before");
    assert_eq!(read(old.clone(), "unused").await, "v1 before", "cached");
    assert_eq!(
        read(new.clone(), "v2 before").await,
        "v2 before",
        "each version has its own entries"
    );
    assert!(new.invalidate_tags(&["post_lists"]).await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    // The old instance's near tier hears of it through the invalidation channel.
    while read(old.clone(), "v1 after").await != "v1 after" {
        assert!(
            std::time::Instant::now() < deadline,
            "the old instance still serves what the write replaced"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(old.invalidate_tags(&["post_lists"]).await);
    assert_eq!(
        read(new.clone(), "v2 after").await,
        "v2 after",
        "and the other way round"
    );
    old.clear().await;
}

/// How many sessions this app keeps in Redis.
fn sessions_in_redis(app: &crate::helpers::TestApp) -> usize {
    let url = crate::helpers::test_redis_url().unwrap();
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let pattern = format!("{}@session:*", app.state.config.cache.key_prefix);
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut conn).unwrap();
    keys.len()
}

/// Two instances sharing SECRET_KEY, the database and Redis: signed in through one, an
/// admin is signed in on the other (a balancer may send each request anywhere), and
/// signing out on either ends the session on both. The session is kept in Redis, and
/// clearing the cache does not end it.
#[actix_web::test]
async fn a_sign_in_holds_on_every_instance() {
    let Some((a, b)) =
        crate::helpers::two_instances_on_redis(crate::helpers::Backend::Sqlite, &[]).await
    else {
        return;
    };
    crate::helpers::create_admin(&a, "correct-horse-battery").await;
    let mut cookie = crate::helpers::sign_in_by_hand(&a, "correct-horse-battery").await;
    assert!(sessions_in_redis(&a) >= 1, "the session is kept in Redis");
    assert!(a.state.cache.clear().await > 0);
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Every other request to the other instance.
    for (i, app) in [&b, &a, &b].into_iter().enumerate() {
        let res = bare
            .get(app.url("/admin/"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            200,
            "request {i}: signed in on every instance"
        );
        cookie = crate::helpers::new_session_cookie(&res).unwrap_or(cookie);
    }
    let res = bare
        .get(b.url("/admin/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    cookie = crate::helpers::new_session_cookie(&res).unwrap_or(cookie);
    let token = crate::helpers::csrf_token(&res.text().await.unwrap());
    let res = bare
        .post(b.url("/admin/logout/"))
        .header("cookie", &cookie)
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "signed out on b");
    assert_eq!(
        bare.get(a.url("/admin/"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        303,
        "and on a"
    );
    assert_eq!(
        sessions_in_redis(&a),
        0,
        "signing out removed it from Redis"
    );
    a.state.cache.clear().await;
}

/// Sessions live in Redis, but a Redis outage must not lock the admin out: a session
/// kept in Redis is read from the cookie's copy while Redis is down, a sign-in made then
/// is kept in the (encrypted) cookie, and it still holds once Redis is back.
#[actix_web::test]
async fn an_admin_signs_in_while_redis_is_down_and_stays_signed_in_after() {
    let Some(mut redis) = crate::redis_server::OwnRedis::start() else {
        return;
    };
    let app = redis.app().await;
    crate::helpers::create_admin(&app, "correct-horse-battery").await;
    let before = crate::helpers::sign_in_by_hand(&app, "correct-horse-battery").await;
    redis.stop();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.state.cache.health().breaker == "closed" {
        assert!(std::time::Instant::now() < deadline, "the app noticed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let res = crate::helpers::get_with(&app, &before, "/admin/").await;
    assert_eq!(
        res.status(),
        200,
        "a session kept in Redis holds while Redis is down"
    );
    let cookie = crate::helpers::sign_in_by_hand(&app, "correct-horse-battery").await;
    let res = crate::helpers::get_with(&app, &cookie, "/admin/").await;
    assert_eq!(res.status(), 200, "signed in while Redis is down");
    redis = crate::redis_server::OwnRedis::start_on(redis.port).unwrap();
    assert!(
        app.state
            .cache
            .wait_until_serving(std::time::Duration::from_secs(15))
            .await
    );
    let res = crate::helpers::get_with(&app, &cookie, "/admin/").await;
    assert_eq!(res.status(), 200, "still signed in once Redis is back");
    drop(redis);
}

/// nginx (Debian's package) on a free port, round robin over two app instances; stopped
/// (by pid) when dropped. None, with the reason printed, where nginx is not installed.
struct Nginx {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(upstreams: &[u16]) -> Option<Nginx> {
        let Some(bin) = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
        else {
            assert!(
                !crate::helpers::services_required(),
                "REQUIRE_SERVICES=1 but nginx is not installed"
            );
            crate::helpers::skip("nginx is not installed (apt-get install nginx)");
            return None;
        };
        let dir = tempfile::TempDir::new().unwrap();
        let d = dir.path().display();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let servers: String = upstreams
            .iter()
            .map(|p| format!("server 127.0.0.1:{p}; "))
            .collect();
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  upstream folio {{ {servers} keepalive 16; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://folio;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = std::process::Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not start: {log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(Nginx {
            child,
            port,
            _dir: dir,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two instances behind nginx, sharing PostgreSQL (SQLite without TEST_DATABASE_URL) and
/// Redis: an admin signs in once and stays signed in whichever instance answers, and
/// every read through the balancer after a write returned shows that write.
#[actix_web::test]
async fn two_instances_behind_nginx() {
    let Some((a, b)) = crate::helpers::two_instances_on_redis(
        crate::helpers::Backend::Postgres,
        &[("TRUSTED_PROXIES", "127.0.0.1")],
    )
    .await
    else {
        return;
    };
    let port = |app: &crate::helpers::TestApp| {
        app.address
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap()
    };
    let Some(nginx) = Nginx::start(&[port(&a), port(&b)]) else {
        return;
    };
    crate::helpers::create_admin(&a, "correct-horse-battery").await;
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client.get(nginx.url("/admin/login/")).send().await.unwrap();
    let token = crate::helpers::csrf_token(&res.text().await.unwrap());
    let res = client
        .post(nginx.url("/admin/login/"))
        .form(&crate::helpers::login_form("correct-horse-battery", &token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "signed in through the balancer");
    let (queries_a, queries_b) = (
        a.state.repo.db().stats.queries(),
        b.state.repo.db().stats.queries(),
    );
    for i in 0..6 {
        let res = client
            .get(nginx.url("/admin/personal-info/"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "request {i}: still signed in");
    }
    assert!(
        a.state.repo.db().stats.queries() > queries_a
            && b.state.repo.db().stats.queries() > queries_b,
        "both instances answered"
    );
    let reader = reqwest::Client::new();
    for v in 0..10 {
        let form = text(&client, &nginx.url("/admin/personal-info/")).await;
        let token = crate::helpers::csrf_token(&form);
        let headline = format!("Headline through the balancer {v}");
        let res = client
            .post(nginx.url("/admin/personal-info/"))
            .form(&[
                ("name", "Ada Okafor"),
                ("headline", headline.as_str()),
                ("bio", "Bio"),
                ("location", "Lisbon"),
                ("email", "hello@ada-okafor.dev"),
                ("avatar_url", "/static/avatar.svg"),
                ("skills", "Rust"),
                ("csrf_token", token.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "write {v}");
        for read in 0..4 {
            let page = text(&reader, &nginx.url("/about/")).await;
            assert!(
                page.contains(&headline),
                "read {read} after write {v} was stale"
            );
        }
    }
    a.state.cache.clear().await;
    a.state.cache.reset_site_stats().await;
}

async fn text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// On a cluster, a site's entries land on every master, and clearing the site (SCAN on
/// each master) removes them from all of them; counters and the site-wide statistics
/// hash work there too.
#[actix_web::test]
async fn on_a_cluster_entries_spread_over_every_master_and_clearing_reaches_each() {
    use crate::redis_cluster::{shared_cluster, OwnCluster};
    use folio::cache::{CacheConfig, CacheManager, CacheUrl};
    let Some(cluster) = shared_cluster() else {
        return;
    };
    let prefix = crate::helpers::unique_prefix();
    let cache = CacheManager::new(CacheConfig::new(
        CacheUrl::parse(&cluster.url()).unwrap(),
        &prefix,
    ))
    .unwrap();
    assert!(
        cache
            .wait_until_serving(std::time::Duration::from_secs(10))
            .await
    );
    assert_eq!(cache.backend_name(), "redis-cluster");
    let items: Vec<_> = (0..60)
        .map(|i| (cache.key("posts", [format!("p{i}")]), i))
        .collect();
    cache.set_many(&items, None).await;
    let keys: Vec<_> = items.iter().map(|(k, _)| k.clone()).collect();
    let read: Vec<Option<i32>> = cache.get_many(&keys).await;
    assert_eq!(
        read,
        (0..60).map(Some).collect::<Vec<_>>(),
        "one read across the slots"
    );
    let pattern = format!("{prefix}:*");
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    for port in &masters {
        assert!(
            OwnCluster::count_keys(*port, &pattern) > 0,
            "master {port} holds some of the entries"
        );
    }

    let counter = cache.key("contact_sends", ["127.0.0.1"]);
    assert_eq!(cache.incr(&counter, 1).await, Some(1));
    assert_eq!(cache.incr(&counter, 2).await, Some(3));
    cache.get::<i32>(&keys[0]).await;
    cache.flush_stats().await;
    assert!(
        cache.site_stats().await.totals.hits >= 1,
        "the site-wide totals are kept on the cluster"
    );

    assert!(cache.clear().await >= 60);
    for port in &masters {
        assert_eq!(
            OwnCluster::count_keys(*port, &pattern),
            0,
            "master {port} was cleared"
        );
    }
    assert_eq!(cache.get::<i32>(&keys[0]).await, None);
    cache.reset_site_stats().await;
}
