//! Warming by predicted demand, replayed: the hit ratio and miss latency second by
//! second after a cold restart, with no warming, the fixed plan (by page kind) and the
//! plan the demand model orders (`web::demand`). A benchmark, not a test: it prints and
//! writes `bench/results/demand-warming.md`.
//!
//! The workload is a trace generated here and replayed open-loop at a fixed rate.
//! Popularity follows Zipf over the sitemap (a random ranking; the home page and the
//! listings rank first), and it drifts: every `DRIFT_EVERY` a few posts start to trend
//! and take a share of the traffic. First a history phase runs on a server that counts
//! what readers ask for. That server stops (its counts are written), and each plan
//! starts on a copy of the database it left, with its in-process cache empty, while the
//! rest of the trace is replayed at once. The fixed plan's copy has its counts deleted
//! (with python3's sqlite3 module), so the plan is the fixed one and nothing else
//! differs: the views the history counted invalidate the same pages in every run.
//!
//! Knobs: BENCH_POSTS (10000), BENCH_RATE (requests/s, 200), BENCH_HISTORY (seconds,
//! 60), BENCH_MEASURE (seconds, 60), BENCH_ZIPF (the exponent, 1.0), BENCH_OUT
//! (demand-warming.md).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

#[path = "support/mod.rs"]
mod support;
use support::*;

/// How often new posts start trending, and how many.
const DRIFT_EVERY: Duration = Duration::from_secs(20);
const TRENDING: usize = 5;
/// The share of requests that go to the trending posts.
const TRENDING_SHARE: f64 = 0.2;
/// Requests in flight at most (the replay is open-loop below that).
const CLIENTS: usize = 32;

/// One request of the trace: when (from the trace's start) and what.
struct Step {
    at: Duration,
    path: String,
}

/// The trace: `seconds` at `rate` over `urls` (most popular first), from `start`.
fn trace(
    urls: &[String],
    posts: &[String],
    rate: u64,
    start: Duration,
    seconds: u64,
    zipf: f64,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Vec<Step> {
    let weights: Vec<f64> = (1..=urls.len())
        .map(|rank| 1.0 / (rank as f64).powf(zipf))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut cumulative = Vec::with_capacity(weights.len());
    let mut sum = 0.0;
    for w in &weights {
        sum += w / total;
        cumulative.push(sum);
    }
    let mut steps = Vec::new();
    let mut trending: Vec<String> = Vec::new();
    let mut drifted = None;
    let n = rate * seconds;
    for i in 0..n {
        let at = start + Duration::from_secs_f64(i as f64 / rate as f64);
        let epoch = at.as_secs() / DRIFT_EVERY.as_secs();
        if drifted != Some(epoch) {
            // Seeded by the epoch: the same posts trend at the same time in every run.
            let mut epoch_rng = rand_chacha::ChaCha8Rng::seed_from_u64(epoch);
            trending = (0..TRENDING)
                .map(|_| posts[epoch_rng.random_range(0..posts.len())].clone())
                .collect();
            drifted = Some(epoch);
        }
        let path = if rng.random::<f64>() < TRENDING_SHARE {
            trending[rng.random_range(0..trending.len())].clone()
        } else {
            let x: f64 = rng.random();
            let i = cumulative.partition_point(|c| *c < x).min(urls.len() - 1);
            urls[i].clone()
        };
        steps.push(Step { at, path });
    }
    steps
}

/// What one second of the replay saw.
#[derive(Default, Clone)]
struct Second {
    missed: Vec<String>,
    hits: u64,
    misses: u64,
    miss_ms: Vec<f64>,
    all_ms: Vec<f64>,
}

/// Replays `steps` (their times counted from their first) against `port`.
fn replay(port: u16, steps: Vec<Step>) -> Vec<Second> {
    let first = steps.first().map(|s| s.at).unwrap_or_default();
    let seconds = steps
        .last()
        .map_or(0, |s| (s.at - first).as_secs() as usize + 1);
    let results = Arc::new(Mutex::new(vec![Second::default(); seconds]));
    let steps = Arc::new(steps);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(CLIENTS)
            .build()
            .unwrap();
        let clients = (0..CLIENTS).map(|_| {
            let (client, steps, next, results) =
                (client.clone(), steps.clone(), next.clone(), results.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(step) = steps.get(i) else { return };
                    let due = step.at - first;
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                    let sent = Instant::now();
                    let res = client
                        .get(format!("http://127.0.0.1:{port}{}", step.path))
                        .send()
                        .await;
                    let Ok(res) = res else { continue };
                    let hit = res.headers().get("x-cache").is_some_and(|v| v == "HIT");
                    let _ = res.bytes().await;
                    let ms = sent.elapsed().as_secs_f64() * 1000.0;
                    let mut results = results.lock().unwrap();
                    let second = &mut results[due.as_secs() as usize];
                    second.all_ms.push(ms);
                    match hit {
                        true => second.hits += 1,
                        false => {
                            second.misses += 1;
                            second.miss_ms.push(ms);
                            second.missed.push(step.path.clone());
                        }
                    }
                }
            })
        });
        futures_util::future::join_all(clients).await;
    });
    Arc::try_unwrap(results).ok().unwrap().into_inner().unwrap()
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    values[((values.len() - 1) as f64 * p).round() as usize]
}

fn sitemap(port: u16) -> Vec<String> {
    let out = std::process::Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/sitemap.xml")])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split("<loc>")
        .skip(1)
        .filter_map(|s| s.split("</loc>").next())
        .filter_map(|url| {
            url.split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
        })
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let posts_n = env_num("BENCH_POSTS", 10_000);
    let rate = env_num("BENCH_RATE", 200);
    let history = env_num("BENCH_HISTORY", 60);
    let measure = env_num("BENCH_MEASURE", 60);
    let zipf: f64 = std::env::var("BENCH_ZIPF")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let dir = std::env::temp_dir().join(format!("folio-demand-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = seed(&dir, &dir.join("seeded.db"), posts_n);
    let quiet = [
        ("ACCESS_LOG", "off"),
        ("HISTORY_FLUSH_INTERVAL", "1"),
        ("WARM_AFTER_INVALIDATION", "false"),
    ];

    // The URLs, most popular first: the listings, then the posts in a random ranking.
    let history_server = start(
        "memory",
        &dir,
        &db,
        "",
        &[quiet.as_slice(), &[("WARM_ON_START", "false")]].concat(),
    );
    let all = sitemap(history_server.port);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let (mut posts, others): (Vec<String>, Vec<String>) = all.into_iter().partition(|u| {
        u.starts_with("/blog/") && u.matches('/').count() == 3 && !u.contains("/tag/")
    });
    use rand::seq::SliceRandom;
    posts.shuffle(&mut rng);
    let mut urls: Vec<String> = ["/", "/blog/", "/about/", "/tools/", "/api/posts/"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let others: Vec<String> = others.into_iter().filter(|u| !urls.contains(u)).collect();
    urls.extend(others);
    let listings = urls.len();
    urls.extend(posts.iter().cloned());
    eprintln!(
        "{} URLs ({listings} listings, {} posts)",
        urls.len(),
        posts.len()
    );

    // History: readers counted by the server that runs before the restart.
    let past = trace(&urls, &posts, rate, Duration::ZERO, history, zipf, &mut rng);
    eprintln!("history: {} requests over {history} s", past.len());
    let _ = replay(history_server.port, past);
    // Stopped gracefully: its last counts are written and the database's cache released
    // (a server on another cache is refused while this one's claim is fresh).
    let mut history_server = history_server;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &history_server.child.id().to_string()])
        .status();
    let _ = history_server.child.wait();
    drop(history_server);
    let counted = dir.join("counted.db");
    for suffix in ["", "-wal", "-shm"] {
        let from = format!("{}{suffix}", dir.join("memory.db").display());
        if std::path::Path::new(&from).exists() {
            std::fs::copy(&from, format!("{}{suffix}", counted.display())).unwrap();
        }
    }
    let counted_db = format!("sqlite://{}", counted.display());
    // The fixed plan starts from the same database with the counts removed: the same
    // views, posts and outbox, so only the plan differs.
    let uncounted = dir.join("uncounted.db");
    for suffix in ["", "-wal", "-shm"] {
        let from = format!("{}{suffix}", counted.display());
        if std::path::Path::new(&from).exists() {
            std::fs::copy(&from, format!("{}{suffix}", uncounted.display())).unwrap();
        }
    }
    let cleared = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('DELETE FROM demand'); c.commit()",
        ])
        .arg(&uncounted)
        .status()
        .expect("python3 (its sqlite3 module) clears the counts");
    assert!(cleared.success());
    let uncounted_db = format!("sqlite://{}", uncounted.display());
    let future = trace(
        &urls,
        &posts,
        rate,
        Duration::from_secs(history),
        measure,
        zipf,
        &mut rng,
    );

    let mut report = String::new();
    writeln!(report, "# Warming by predicted demand, replayed\n").unwrap();
    writeln!(report, "{} posts ({} URLs), Zipf exponent {zipf} over a random ranking with {TRENDING} posts trending every {} s ({}% of requests); {rate} requests/s open-loop from {CLIENTS} clients; {history} s of history counted, then a cold restart (in-process cache, release build, SQLite) and {measure} s replayed at once. 2 cores.\n", posts.len(), urls.len(), DRIFT_EVERY.as_secs(), (TRENDING_SHARE * 100.0) as u32).unwrap();
    writeln!(report, "| plan | hit ratio, first {measure} s | first 10 s | 10–30 s | 30–60 s | miss p50 ms | miss p99 ms | all p99 ms | start-up warming |").unwrap();
    writeln!(
        report,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    )
    .unwrap();
    let mut per_second: Vec<(&str, Vec<Second>)> = Vec::new();
    let mut most_missed: Vec<String> = Vec::new();
    for (plan, source, warm) in [
        ("no warming", &counted_db, "false"),
        ("fixed plan", &uncounted_db, "true"),
        ("predicted plan", &counted_db, "true"),
    ] {
        let server = start(
            "memory",
            &dir,
            source,
            "",
            &[quiet.as_slice(), &[("WARM_ON_START", warm)]].concat(),
        );
        let steps: Vec<Step> = future
            .iter()
            .map(|s| Step {
                at: s.at,
                path: s.path.clone(),
            })
            .collect();
        let seconds = replay(server.port, steps);
        let log = std::fs::read_to_string(&server.log).unwrap_or_default();
        let warmed = log
            .lines()
            .find(|l| l.contains("start-up warming done"))
            .and_then(|l| l.split("start-up warming done: ").nth(1))
            .map(|l| l.split(" warmed=").next().unwrap_or(l).to_string())
            .unwrap_or_else(|| "–".into());
        eprintln!("{plan}: {warmed}");
        let mut missed: std::collections::HashMap<&str, usize> = Default::default();
        for s in seconds.iter().skip(5) {
            for p in &s.missed {
                *missed.entry(p.as_str()).or_default() += 1;
            }
        }
        let mut missed: Vec<(&str, usize)> = missed.into_iter().collect();
        missed.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        eprintln!(
            "{plan}: most missed after 5 s: {:?}",
            &missed[..missed.len().min(8)]
        );
        most_missed.push(format!(
            "- {plan}: {}",
            missed
                .iter()
                .take(6)
                .map(|(p, n)| format!("`{p}` {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        drop(server);
        let ratio = |range: std::ops::Range<usize>| {
            let (h, m) = seconds[range.start.min(seconds.len())..range.end.min(seconds.len())]
                .iter()
                .fold((0, 0), |(h, m), s| (h + s.hits, m + s.misses));
            h as f64 / (h + m).max(1) as f64
        };
        let mut miss: Vec<f64> = seconds.iter().flat_map(|s| s.miss_ms.clone()).collect();
        let mut all: Vec<f64> = seconds.iter().flat_map(|s| s.all_ms.clone()).collect();
        let line = format!(
            "| {plan} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} | {warmed} |",
            ratio(0..measure as usize),
            ratio(0..10),
            ratio(10..30),
            ratio(30..60),
            percentile(&mut miss, 0.5),
            percentile(&mut miss, 0.99),
            percentile(&mut all, 0.99),
        );
        eprintln!("{line}");
        writeln!(report, "{line}").unwrap();
        per_second.push((plan, seconds));
    }
    writeln!(
        report,
        "\nThe URLs missed most after the first 5 s (misses):\n"
    )
    .unwrap();
    for line in &most_missed {
        writeln!(report, "{line}").unwrap();
    }
    writeln!(report, "\nHit ratio second by second:\n").unwrap();
    let header: Vec<&str> = per_second.iter().map(|(p, _)| *p).collect();
    writeln!(report, "| s | {} |", header.join(" | ")).unwrap();
    writeln!(report, "| ---: |{}", " ---: |".repeat(header.len())).unwrap();
    for s in 0..measure as usize {
        let cells: Vec<String> = per_second
            .iter()
            .map(|(_, secs)| {
                secs.get(s).map_or("–".into(), |x| {
                    format!("{:.2}", x.hits as f64 / (x.hits + x.misses).max(1) as f64)
                })
            })
            .collect();
        writeln!(report, "| {s} | {} |", cells.join(" | ")).unwrap();
    }
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "demand-warming.md".into());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bench/results")
        .join(out);
    std::fs::write(&path, &report).unwrap();
    println!("{report}");
    eprintln!("written to {}", path.display());
    let _ = std::fs::remove_dir_all(&dir);
}
