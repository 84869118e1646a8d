//! Whole-server load benchmark: the release binary on each cache backend, driven by wrk
//! (Debian's package) at several connection counts. A benchmark, not a test: it prints
//! and writes `bench/results/latest.md`; targets are ratios within one run.
//!
//! Knobs: BENCH_BACKENDS (memory,redis,redis-no-near,none), BENCH_CONNECTIONS
//! (32,256,512), BENCH_TARGETS (/,/api/posts/), BENCH_DURATION (seconds, 5),
//! BENCH_ROUNDS (1), BENCH_POSTS (200), BENCH_REDIS_URL (redis://127.0.0.1:6379).
//! Each round runs every backend once per target and connection count, interleaved,
//! so a slow moment of the machine hits all backends alike.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// utime + stime of a process, in microseconds.
fn cpu_micros(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks * 1_000_000 / clock_ticks()
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct Server {
    name: String,
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn folio() -> Command {
    Command::new(env!("CARGO_BIN_EXE_folio"))
}

fn start(name: &str, dir: &std::path::Path, db: &str, redis: &str) -> Server {
    let port = free_port();
    let log = dir.join(format!("{name}.log"));
    let mut cmd = folio();
    cmd.arg("serve")
        .env("DATABASE_URL", db)
        .env("DATA_DIR", dir)
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .env("SEED_ON_EMPTY", "false")
        .env(
            "CACHE_KEY_PREFIX",
            format!("bench{}{name}", std::process::id()),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    match name {
        "memory" => cmd.env("CACHE_URL", "memory://"),
        "none" => cmd.env("CACHE_URL", "none"),
        "redis" => cmd.env("CACHE_URL", redis),
        "redis-no-near" => cmd.env("CACHE_URL", redis).env("CACHE_NEAR", "false"),
        other => panic!("unknown backend {other}"),
    };
    let child = cmd.spawn().expect("start folio");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{name} did not start; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        name: name.into(),
        child,
        port,
        log,
    }
}

fn redis_pid(url: &str) -> Option<u32> {
    let out = Command::new("redis-cli")
        .args(["-u", url, "INFO", "server"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
}

#[derive(Default, Clone)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    requests: u64,
    server_us: f64,
    redis_us: f64,
}

fn millis(text: &str) -> f64 {
    let text = text.trim();
    let (num, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| text.split_at(i))
        .unwrap_or((text, "ms"));
    let n: f64 = num.parse().unwrap_or(0.0);
    match unit {
        "us" => n / 1000.0,
        "s" => n * 1000.0,
        _ => n,
    }
}

fn wrk(url: &str, connections: u64, seconds: u64) -> Run {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "--timeout",
            "5s",
            url,
        ])
        .output()
        .expect("wrk is installed (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut run = Run::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            run.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = line.strip_prefix("50%") {
            run.p50_ms = millis(v);
        } else if let Some(v) = line.strip_prefix("99%") {
            run.p99_ms = millis(v);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            run.errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            run.errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        } else if line.contains(" requests in ") {
            run.requests = line
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
    }
    run
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("load benchmark skipped: wrk is not installed (apt-get install wrk)");
        return;
    }
    let backends = env_list("BENCH_BACKENDS", "memory,redis,redis-no-near,none");
    let connections: Vec<u64> = env_list("BENCH_CONNECTIONS", "32,256,512")
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    let targets = env_list("BENCH_TARGETS", "/,/api/posts/");
    let seconds = env_num("BENCH_DURATION", 5);
    let rounds = env_num("BENCH_ROUNDS", 1);
    let redis_url =
        std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());

    let dir = std::env::temp_dir().join(format!("folio-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("bench.db").display());
    let seeded = folio()
        .args(["seed", "--posts", &env_num("BENCH_POSTS", 200).to_string()])
        .env("DATABASE_URL", &db)
        .env("DATA_DIR", &dir)
        .env("CACHE_URL", "none")
        .env("RUST_LOG", "warn")
        .status()
        .expect("seed");
    assert!(seeded.success(), "seeding failed");

    let servers: Vec<Server> = backends
        .iter()
        .map(|b| start(b, &dir, &db, &redis_url))
        .collect();
    let redis = redis_pid(&redis_url);
    let client = std::time::Duration::from_secs(5);
    for server in &servers {
        for target in &targets {
            for _ in 0..3 {
                let _ = Command::new("curl")
                    .args(["-s", "-o", "/dev/null", "-m", &client.as_secs().to_string()])
                    .arg(format!("http://127.0.0.1:{}{target}", server.port))
                    .status();
            }
        }
    }

    // (connections, target, backend) -> runs
    let mut results: BTreeMap<(u64, String, String), Vec<Run>> = BTreeMap::new();
    for round in 0..rounds {
        for &c in &connections {
            for target in &targets {
                for server in &servers {
                    let url = format!("http://127.0.0.1:{}{target}", server.port);
                    let (cpu0, redis0) = (
                        cpu_micros(server.child.id()),
                        redis.map(cpu_micros).unwrap_or(0),
                    );
                    let mut run = wrk(&url, c, seconds);
                    let requests = run.requests.max(1) as f64;
                    run.server_us = (cpu_micros(server.child.id()) - cpu0) as f64 / requests;
                    if server.name.starts_with("redis") {
                        run.redis_us =
                            (redis.map(cpu_micros).unwrap_or(0) - redis0) as f64 / requests;
                    }
                    eprintln!(
                        "round {} c={c} {target} {}: {:.0} req/s, {:.1} µs CPU/req, {} errors",
                        round + 1,
                        server.name,
                        run.rps,
                        run.server_us + run.redis_us,
                        run.errors
                    );
                    results
                        .entry((c, target.clone(), server.name.clone()))
                        .or_default()
                        .push(run);
                }
            }
        }
    }

    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Load benchmark\n\nwrk -t1, {seconds} s per run, {rounds} round(s), medians; ratios against `memory` and `none` at the same target and connection count. CPU µs/request: the server process (+ redis-server for Redis backends). Release build, SQLite, {} posts.\n",
        env_num("BENCH_POSTS", 200)
    );
    let _ = writeln!(md, "| connections | target | backend | req/s | × memory | × none | p50 ms | p99 ms | errors | server CPU µs/req | + redis µs/req | breaker trips |");
    let _ = writeln!(
        md,
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let rps = |c: u64, t: &str, b: &str| -> Option<f64> {
        results
            .get(&(c, t.to_string(), b.to_string()))
            .map(|runs| median(runs.iter().map(|r| r.rps).collect()))
    };
    for &c in &connections {
        for target in &targets {
            for server in &servers {
                let runs = &results[&(c, target.clone(), server.name.clone())];
                let med = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
                let r = med(|r| r.rps);
                let ratio = |other: &str| {
                    rps(c, target, other)
                        .filter(|o| *o > 0.0)
                        .map_or("–".into(), |o| format!("{:.2}", r / o))
                };
                let trips = std::fs::read_to_string(&server.log)
                    .unwrap_or_default()
                    .matches("cache breaker opened")
                    .count();
                let _ = writeln!(
                    md,
                    "| {c} | `{target}` | {} | {:.0} | {} | {} | {:.2} | {:.2} | {} | {:.1} | {:.1} | {} |",
                    server.name,
                    r,
                    ratio("memory"),
                    ratio("none"),
                    med(|r| r.p50_ms),
                    med(|r| r.p99_ms),
                    runs.iter().map(|r| r.errors).sum::<u64>(),
                    med(|r| r.server_us),
                    med(|r| r.redis_us),
                    trips
                );
            }
        }
    }
    let _ = writeln!(md, "\nPeak RSS (MiB):");
    for server in &servers {
        let _ = writeln!(
            md,
            "- {}: {:.1}",
            server.name,
            peak_rss_kib(server.child.id()) as f64 / 1024.0
        );
    }
    println!("{md}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("latest.md"), &md).unwrap();
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}
