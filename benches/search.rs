//! Uncached search latency at 10,000 posts, on SQLite and on PostgreSQL: the release
//! server with no cache (`CACHE_URL=none`) under wrk with one connection, rotating
//! through queries of every kind (words, phrases, OR, exclusions, nothing found), so
//! every request runs the full-text query. Prints p50/p99 and writes
//! `bench/results/search-latest.md`. (A cached search's ratio to the ceiling is measured
//! by the load benchmark: `cargo make bench-search`.)
//!
//! Knobs: BENCH_SEARCH_POSTS (10000), BENCH_DURATION (seconds, 10),
//! BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432; a database is created and
//! dropped; unset or unreachable: SQLite only).

use std::fmt::Write as _;
use std::process::Command;

#[path = "support/mod.rs"]
mod support;
use support::*;

/// From the generated posts' vocabulary (Zipf frequencies, see `content::seed`): words in
/// nearly every post (`cache`), in a third (`lokaka`), in about 500 (`kaquaka`) and in
/// about 60 (`kakasa`) of them, combined, and one found nowhere.
const QUERIES: &[&str] = &[
    "cache",
    "latency request",
    "\"cache latency\"",
    "lokaka",
    "kaquaka",
    "kakasa",
    "eviction OR kaquaka",
    "database -kakasa",
    "zebra",
];

/// The dearest queries accepted (`MAX_TERMS` = 12 words or phrases): common words
/// ANDed, ORed with exclusions, and phrases of common words. Measured on their own.
const WORST: &[&str] = &[
    "cache latency request database index query server template fragment header memory eviction",
    "cache OR latency OR request OR database OR index OR query OR server OR template OR fragment OR header -kakasa -lokaka",
    "\"cache latency\" \"request database\" \"index query\" \"server template\" \"fragment header\" \"memory eviction\" \"pool thread\" \"shard replica\" \"benchmark deploy\" \"metric trace\" \"budget window\" \"stream batch\"",
    "cache OR lokaka latency OR kaquaka request OR kakasa database OR memory index OR pool -zebra -thread",
];

/// A wrk script that sends `queries` to `/api/search/` in turn.
fn wrk_script(queries: &[&str]) -> String {
    let paths: Vec<String> = queries
        .iter()
        .map(|q| {
            format!(
                "\"/api/search/?q={}\"",
                url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
            )
        })
        .collect();
    format!(
        "local paths = {{{}}}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(\"GET\", paths[i])\nend\n",
        paths.join(", ")
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("search benchmark skipped: wrk is not installed (apt-get install wrk)");
        return;
    }
    let posts = env_num("BENCH_SEARCH_POSTS", 10_000);
    let seconds = env_num("BENCH_DURATION", 10);
    let dir = std::env::temp_dir().join(format!("folio-bench-search-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut databases = vec![(
        "SQLite".to_string(),
        format!("sqlite://{}", dir.join("search.db").display()),
    )];
    let pg_base = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let pg_name = format!("folio_bench_search_{}", std::process::id());
    let psql = |sql: &str| {
        Command::new("psql")
            .args([&format!("{pg_base}/postgres"), "-q", "-c", sql])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let pg = psql(&format!("CREATE DATABASE {pg_name}"));
    if pg {
        databases.push(("PostgreSQL".into(), format!("{pg_base}/{pg_name}")));
    } else {
        eprintln!("PostgreSQL not reachable at {pg_base}: SQLite only");
    }
    let script = dir.join("queries.lua");
    std::fs::write(&script, wrk_script(QUERIES)).unwrap();
    let worst_script = dir.join("worst.lua");
    std::fs::write(&worst_script, wrk_script(WORST)).unwrap();

    let mut md = format!(
        "# Search benchmark\n\nUncached (`CACHE_URL=none`) `/api/search/` at {posts} generated posts, wrk -c1 for {seconds} s rotating over {} queries (\"mixed\": words, a phrase, OR, exclusions, one that finds nothing) and over the {} dearest accepted (\"worst\": 12 words or phrases, ANDed, ORed, excluded). {} cores.\n\n| database | queries | req/s | p50 ms | p99 ms | CPU µs/req |\n| --- | --- | ---: | ---: | ---: | ---: |\n",
        QUERIES.len(),
        WORST.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (name, url) in &databases {
        let started = std::time::Instant::now();
        let seeded = folio()
            .args(["seed", "--posts", &posts.to_string()])
            .env("DATABASE_URL", url)
            .env("DATA_DIR", &dir)
            .env("CACHE_URL", "none")
            .env("RUST_LOG", "warn")
            .status()
            .expect("seed");
        assert!(seeded.success(), "seeding {name} failed");
        eprintln!("{name}: seeded {posts} posts in {:.0?}", started.elapsed());
        let server = start("none", &dir, url, "", &[("WARM_ON_START", "false")]);
        for q in QUERIES.iter().chain(WORST) {
            let path = format!(
                "/api/search/?q={}",
                url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
            );
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("http://127.0.0.1:{}{path}", server.port))
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "200",
                "{name}: {path}"
            );
        }
        for (kind, script) in [("mixed", &script), ("worst (12 terms)", &worst_script)] {
            let cpu0 = cpu_micros(server.child.id());
            let url = format!("http://127.0.0.1:{}/", server.port);
            let script_arg = script.display().to_string();
            let run = wrk(&url, &["-s", &script_arg], 1, seconds);
            let cpu = (cpu_micros(server.child.id()) - cpu0) as f64 / run.requests.max(1) as f64;
            eprintln!(
                "{name} {kind}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                run.rps, run.p50_ms, run.p99_ms, run.errors
            );
            let _ = writeln!(
                md,
                "| {name} | {kind} | {:.0} | {:.2} | {:.2} | {:.0} |",
                run.rps, run.p50_ms, run.p99_ms, cpu
            );
        }
    }
    println!("{md}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("search-latest.md"), &md).unwrap();
    if pg {
        psql(&format!("DROP DATABASE {pg_name} WITH (FORCE)"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
