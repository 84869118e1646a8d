//! Whole-request benchmarks over HTTP on loopback (`cargo make bench-http`): a cached API
//! response (200 HIT), the same request answered 304 from the stored metadata, the same
//! route with caching off (`CACHE_URL=none`), and the home page warm (all fragments
//! cached) versus uncached. SQLite with the fixtures plus 200 generated posts.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use folio::config::Config;
use folio::startup::Application;

/// Starts the app in its own thread (actix runs its own runtime) and returns its URL.
fn start(cache_url: &str) -> String {
    let dir = std::env::temp_dir().join(format!(
        "folio-bench-{}-{}",
        std::process::id(),
        cache_url.replace([':', '/'], "")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let vars: Vec<(&str, String)> = vec![
        (
            "DATABASE_URL",
            format!("sqlite://{}/bench.db", dir.display()),
        ),
        ("DATA_DIR", dir.display().to_string()),
        ("BIND", "127.0.0.1:0".into()),
        ("WORKERS", "1".into()),
        ("CACHE_URL", cache_url.into()),
        ("CACHE_KEY_PREFIX", format!("bench{}", std::process::id())),
        (
            "SECRET_KEY",
            "bench-secret-key-long-enough-for-the-cookie-key".into(),
        ),
    ];
    let config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let app = Application::build(config).await.expect("app starts");
            folio::content::seed::seed_generated(&app.state().repo, 200)
                .await
                .unwrap();
            tx.send(app.port()).unwrap();
            app.run_until_stopped().await.unwrap();
        })
    });
    format!(
        "http://127.0.0.1:{}",
        rx.recv_timeout(Duration::from_secs(120))
            .expect("app started")
    )
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Short idle timeout: a server idle through another benchmark closes kept-alive
    // connections, and reusing one then fails.
    let client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let cached = start("memory://");
    let uncached = start("none");
    let get = |url: String, etag: Option<String>| {
        let client = client.clone();
        async move {
            let mut req = client.get(url);
            if let Some(etag) = etag {
                req = req.header("if-none-match", etag);
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let body = res.bytes().await.unwrap();
            (status, body.len())
        }
    };
    let posts = format!("{cached}/api/posts/");
    let etag = rt.block_on(async {
        client.get(&posts).send().await.unwrap();
        client.get(&posts).send().await.unwrap().headers()["etag"]
            .to_str()
            .unwrap()
            .to_string()
    });
    let mut group = c.benchmark_group("http");
    group.bench_function("api_posts_200_hit", |b| {
        b.to_async(&rt).iter(|| get(posts.clone(), None))
    });
    group.bench_function("api_posts_304", |b| {
        b.to_async(&rt).iter(|| async {
            let (status, _) = get(posts.clone(), Some(etag.clone())).await;
            assert_eq!(status, 304);
        })
    });
    group.bench_function("api_posts_200_uncached", |b| {
        b.to_async(&rt)
            .iter(|| get(format!("{uncached}/api/posts/"), None))
    });
    rt.block_on(get(format!("{cached}/"), None));
    group.bench_function("home_warm", |b| {
        b.to_async(&rt).iter(|| get(format!("{cached}/"), None))
    });
    group.bench_function("home_uncached", |b| {
        b.to_async(&rt).iter(|| get(format!("{uncached}/"), None))
    });
    group.finish();

    // The server's own cost, from its Server-Timing header (what criterion's numbers
    // above include on top: the HTTP round trip on loopback and the client).
    println!("\nserver-side time per request (mean of 500, Server-Timing total):");
    for (name, url, etag) in [
        ("api_posts_200_hit", posts.clone(), None),
        ("api_posts_304", posts.clone(), Some(etag.clone())),
        (
            "api_posts_200_uncached",
            format!("{uncached}/api/posts/"),
            None,
        ),
        ("home_warm", format!("{cached}/"), None),
        ("home_uncached", format!("{uncached}/"), None),
    ] {
        let total: f64 = rt.block_on(async {
            let mut sum = 0.0;
            for _ in 0..500 {
                let mut req = client.get(&url);
                if let Some(etag) = &etag {
                    req = req.header("if-none-match", etag);
                }
                let res = req.send().await.unwrap();
                let timing = res.headers()["server-timing"].to_str().unwrap().to_string();
                sum += timing
                    .rsplit("total;dur=")
                    .next()
                    .unwrap()
                    .parse::<f64>()
                    .unwrap();
                res.bytes().await.unwrap();
            }
            sum / 500.0
        });
        println!("  {name:<24} {:>8.1} µs", total * 1000.0);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
