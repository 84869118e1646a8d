//! Soak: the release server under wrk at 512 connections on a mix of pages and API
//! calls while an admin edit loop writes through the forms, on each cache backend. After
//! every write that returned, the post's page, its API answer and the blog list are read
//! as an anonymous reader would: any answer older than that write is a stale read.
//! Memory is sampled every 5 s; "flat" compares the second half with the first.
//!
//! Knobs: SOAK_BACKENDS (memory,redis), SOAK_SECONDS (60), SOAK_CONNECTIONS (512),
//! BENCH_REDIS_URL. Writes `bench/results/soak.md`. Run with `cargo make soak` (or
//! `bench/soak.sh`).

use std::fmt::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;
use support::*;

const PASSWORD: &str = "soak-password-0123456789";

#[derive(Default, Debug)]
struct Edits {
    writes: u64,
    failed_writes: u64,
    reads: u64,
    stale: u64,
    examples: Vec<String>,
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

fn csrf_token(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("csrf field") + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// Signs in, then edits the newest post's title until `stop`, checking each write as a
/// reader right after it returned.
async fn edit_loop(base: String, slug: String, id: i64, stop: Arc<AtomicBool>) -> Edits {
    let admin = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let reader = reqwest::Client::new();
    let login = admin
        .get(format!("{base}/admin/login/"))
        .send()
        .await
        .unwrap();
    let token = csrf_token(&login.text().await.unwrap());
    let res = admin
        .post(format!("{base}/admin/login/"))
        .form(&[
            ("username", "soak"),
            ("password", PASSWORD),
            ("csrf_token", &token),
            ("next", "/admin/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "the soak admin signs in");
    let edit_url = format!("{base}/admin/posts/{id}/edit/");
    let token = csrf_token(
        &admin
            .get(&edit_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let mut edits = Edits::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let title = format!("Soak edit {n}");
        let res = admin
            .post(&edit_url)
            .form(&[
                ("title", title.as_str()),
                ("slug", slug.as_str()),
                (
                    "body_markdown",
                    &format!("Written by the soak loop, version {n}."),
                ),
                ("author_id", "1"),
                ("tags", "soak"),
                ("published", "on"),
                ("csrf_token", &token),
            ])
            .send()
            .await;
        match res {
            Ok(r) if r.status() == 303 => edits.writes += 1,
            other => {
                edits.failed_writes += 1;
                edits
                    .examples
                    .push(format!("write {n}: {:?}", other.map(|r| r.status())));
                continue;
            }
        }
        for path in [
            format!("/blog/{slug}/"),
            format!("/api/posts/{slug}/"),
            "/blog/".to_string(),
        ] {
            edits.reads += 1;
            let body = match reader.get(format!("{base}{path}")).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(e) => format!("error {e}"),
            };
            // The exact title: "Soak edit 1" must not pass for "Soak edit 12".
            let fresh = body.contains(&format!("{title}<")) || body.contains(&format!("{title}\""));
            if !fresh {
                edits.stale += 1;
                if edits.examples.len() < 5 {
                    edits.examples.push(format!("{path} after write {n}"));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    edits
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("soak skipped: wrk is not installed (apt-get install wrk)");
        return;
    }
    let backends = env_list("SOAK_BACKENDS", "memory,redis");
    let seconds = env_num("SOAK_SECONDS", 60);
    let connections = env_num("SOAK_CONNECTIONS", 512);
    let redis_url =
        std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let dir = std::env::temp_dir().join(format!("folio-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Soak\n\nwrk -t2 -c{connections}, {seconds} s, on a mix of pages and API calls (`bench/soak.lua` paths), while an admin edits the newest post through the form every 100 ms; after each write returned, the post page, its API answer and the blog list are read anonymously. Release build, SQLite, 200 posts.\n"
    );
    let _ = writeln!(md, "| backend | req/s | wrk errors | timeouts | writes | failed writes | checks | stale reads | RSS start MiB | RSS 1st half max | RSS 2nd half max | RSS end |");
    let _ = writeln!(
        md,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    for backend in &backends {
        let db = format!("sqlite://{}", dir.join(format!("{backend}.db")).display());
        let env = |cmd: &mut Command| {
            cmd.env("DATABASE_URL", &db)
                .env("DATA_DIR", &dir)
                .env("CACHE_URL", "none")
                .env("RUST_LOG", "warn");
        };
        let mut seed = folio();
        env(&mut seed);
        assert!(seed
            .args(["seed", "--posts", "200"])
            .status()
            .unwrap()
            .success());
        let mut admin = folio();
        env(&mut admin);
        assert!(admin
            .args(["create-admin", "--username", "soak"])
            .env("ADMIN_PASSWORD", PASSWORD)
            .status()
            .unwrap()
            .success());
        let server = start(backend, &dir, &db, &redis_url, &[]);
        let base = format!("http://127.0.0.1:{}", server.port);
        let (slug, id, mix) = rt.block_on(async {
            let posts: serde_json::Value = reqwest::get(format!("{base}/api/posts/"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let results = posts["results"].as_array().unwrap();
            let slug = results[0]["slug"].as_str().unwrap().to_string();
            let id = results[0]["id"].as_i64().unwrap();
            let mut mix: Vec<String> = [
                "/",
                "/blog/",
                "/blog/?page=2",
                "/about/",
                "/tools/",
                "/feed.xml",
                "/api/posts/",
                "/api/posts/?page=2",
                "/api/social-links/",
                "/api/personal-info/",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            for post in results.iter().take(8) {
                let s = post["slug"].as_str().unwrap();
                mix.push(format!("/blog/{s}/"));
                mix.push(format!("/api/posts/{s}/"));
            }
            (slug, id, mix)
        });
        let script = dir.join("mix.lua");
        let paths: Vec<String> = mix.iter().map(|p| format!("\"{p}\"")).collect();
        std::fs::write(
            &script,
            format!("local paths = {{{}}}\nrequest = function()\n  return wrk.format(\"GET\", paths[math.random(#paths)])\nend\n", paths.join(", ")),
        )
        .unwrap();
        let _ = std::fs::copy(
            &script,
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/soak.lua"),
        );
        let pid = server.child.id();
        let rss_start = rss_kib(pid);
        let stop = Arc::new(AtomicBool::new(false));
        let edits = rt.spawn(edit_loop(base.clone(), slug, id, stop.clone()));
        let sampler = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    samples.push(rss_kib(pid));
                    std::thread::sleep(Duration::from_secs(5));
                }
                samples
            })
        };
        let started = Instant::now();
        let script_arg = script.to_string_lossy().into_owned();
        let run = wrk(
            &format!("{base}/"),
            &["-t2", "-s", &script_arg],
            connections,
            seconds,
        );
        stop.store(true, Ordering::Relaxed);
        let edits = rt.block_on(edits).unwrap();
        let samples = sampler.join().unwrap();
        let half = samples.len() / 2;
        let max = |s: &[u64]| s.iter().copied().max().unwrap_or(0) as f64 / 1024.0;
        eprintln!(
            "{backend}: {:.0} req/s over {:?}, {edits:?}",
            run.rps,
            started.elapsed()
        );
        let _ = writeln!(
            md,
            "| {backend} | {:.0} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            run.rps,
            run.errors,
            run.timeouts,
            edits.writes,
            edits.failed_writes,
            edits.reads,
            edits.stale,
            rss_start as f64 / 1024.0,
            max(&samples[..half]),
            max(&samples[half..]),
            rss_kib(pid) as f64 / 1024.0
        );
        for example in &edits.examples {
            let _ = writeln!(md, "\n- {backend}: {example}");
        }
        drop(server);
    }
    println!("{md}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("soak.md"), &md).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
