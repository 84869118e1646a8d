//! Whole-server load benchmark: the release binary on each cache backend, driven by wrk
//! (Debian's package) at several connection counts. A benchmark, not a test: it prints
//! and writes `bench/results/latest.md`; targets are ratios within one run. The report
//! ends with `folio analyze` of the in-process (and uncached) server after the runs.
//!
//! The ceiling: this same executable, re-run with `FOLIO_CEILING` set, serves the bytes
//! the memory server answered for each target from memory with a minimal actix handler
//! (no routing, no middleware): what the machine can do at most with these bytes.
//!
//! Servers run at the log level users run with (`info`, one access line per request, to
//! a file); `<backend>-quiet` is the same backend with `ACCESS_LOG=off`.
//!
//! Knobs: BENCH_BACKENDS (memory,memory-quiet,redis,redis-quiet,redis-no-near,cluster,none,
//! varnish, nginx, memory-otel, baseline; `memory-otel` exports every span over OTLP to a receiver that drops them
//! (a build with `--features otel`), `baseline` is another build given by BENCH_BASELINE
//! (a path to its `folio`), e.g. the commit before a change; `cluster` runs
//! on a 3-master Redis Cluster the benchmark starts on free ports, `varnish` is Varnish
//! with the shipped VCL in front of the in-process server, its CPU and the server's
//! counted together, `nginx` the same with nginx's proxy_cache and the shipped
//! `deploy/nginx/folio-cache.conf`), BENCH_CONNECTIONS
//! (32,256,512), BENCH_TARGETS (`/,/blog/,post,/api/posts/,304:/,304:/api/posts/`;
//! `post` is the newest post's page, `304:` sends the page's ETag in If-None-Match),
//! BENCH_DURATION (seconds, 5), BENCH_ROUNDS (3), BENCH_POSTS (200), BENCH_REDIS_URL
//! (redis://127.0.0.1:6379), BENCH_OUT (the file under bench/results, latest.md). Each round runs every server (the ceiling first) once per
//! target and connection count, interleaved (A B C A B C), so a slow moment of the
//! machine hits all alike; ratios are taken within a round, then the median.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;
use support::*;

#[path = "../tests/support/redis_cluster.rs"]
mod redis_cluster;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// A target as wrk drives it: the path and, for a conditional request, the header.
#[derive(Clone)]
struct Target {
    label: String,
    path: String,
    header: Option<String>,
}

fn fetch(port: u16, path: &str) -> (Vec<u8>, String, String) {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "-", "-m", "10"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    (
        raw[split + 4..].to_vec(),
        header("content-type"),
        header("etag"),
    )
}

/// The ceiling server (see the module comment): `FOLIO_CEILING=port,dir` where `dir`
/// holds `<n>.body` / `<n>.type` / `<n>.path` per target.
fn ceiling(spec: &str) {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let (port, dir) = spec.split_once(',').expect("port,dir");
    let mut pages: Vec<(String, String, bytes::Bytes)> = Vec::new();
    for n in 0.. {
        let file = |ext: &str| std::path::Path::new(dir).join(format!("{n}.{ext}"));
        let Ok(path) = std::fs::read_to_string(file("path")) else {
            break;
        };
        pages.push((
            path,
            std::fs::read_to_string(file("type")).unwrap(),
            std::fs::read(file("body")).unwrap().into(),
        ));
    }
    let pages = std::sync::Arc::new(pages);
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let pages = pages.clone();
            App::new().default_service(web::to(move |req: HttpRequest| {
                // Path and query: targets such as `/search/?q=…` have one.
                let wanted = req.uri().path_and_query().map_or("", |pq| pq.as_str());
                let page = pages.iter().find(|(p, _, _)| p == wanted).cloned();
                async move {
                    match page {
                        Some((_, content_type, body)) => HttpResponse::Ok()
                            .insert_header(("content-type", content_type))
                            .body(body),
                        None => HttpResponse::NotFound().finish(),
                    }
                }
            }))
        })
        .bind(("127.0.0.1", port.parse::<u16>().unwrap()))
        .unwrap()
        .run()
        .await
        .unwrap()
    });
}

fn start_ceiling(dir: &std::path::Path, pages: &[(String, Vec<u8>, String)]) -> Server {
    let ceiling_dir = dir.join("ceiling");
    std::fs::create_dir_all(&ceiling_dir).unwrap();
    for (n, (path, body, content_type)) in pages.iter().enumerate() {
        std::fs::write(ceiling_dir.join(format!("{n}.path")), path).unwrap();
        std::fs::write(ceiling_dir.join(format!("{n}.body")), body).unwrap();
        std::fs::write(ceiling_dir.join(format!("{n}.type")), content_type).unwrap();
    }
    let port = free_port();
    let log = dir.join("ceiling.log");
    let child = Command::new(std::env::current_exe().unwrap())
        .env("FOLIO_CEILING", format!("{port},{}", ceiling_dir.display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the ceiling");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the ceiling did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        name: "ceiling".into(),
        child,
        port,
        log,
        behind: None,
    }
}

fn main() {
    if let Ok(spec) = std::env::var("FOLIO_CEILING") {
        return ceiling(&spec);
    }
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` lists and runs nothing here
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("load benchmark skipped: wrk is not installed (apt-get install wrk)");
        return;
    }
    let backends = env_list(
        "BENCH_BACKENDS",
        "memory,memory-quiet,redis,redis-quiet,redis-no-near,cluster,none,varnish,nginx",
    );
    let connections: Vec<u64> = env_list("BENCH_CONNECTIONS", "32,256,512")
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    let target_specs = env_list(
        "BENCH_TARGETS",
        "/,/blog/,post,/api/posts/,304:/,304:/api/posts/",
    );
    let seconds = env_num("BENCH_DURATION", 5);
    let rounds = env_num("BENCH_ROUNDS", 3);
    let redis_url =
        std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());

    let dir = std::env::temp_dir().join(format!("folio-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = seed(&dir, &dir.join("bench.db"), env_num("BENCH_POSTS", 200));

    let mut backends = backends;
    if !backends.iter().any(|b| b == "memory") {
        backends.insert(0, "memory".into()); // the ceiling serves the memory server's bytes
    }
    let cluster = backends
        .iter()
        .any(|b| b.starts_with("cluster"))
        .then(|| redis_cluster::OwnCluster::start(3, 0));
    let mut servers: Vec<Server> = backends
        .iter()
        .filter_map(|b| match (b.as_str(), &cluster) {
            (b, Some(cluster)) if b.starts_with("cluster") => {
                Some(start(b, &dir, &db, &cluster.url(), &[]))
            }
            // Varnish (the shipped VCL) in front of the in-process server.
            ("varnish", _) => {
                let port = free_port();
                let edge = format!("varnish://127.0.0.1:{port}");
                let secret = "bench-edge-purge-secret-0123";
                let app = start(
                    "memory-behind-varnish",
                    &dir,
                    &db,
                    &redis_url,
                    &[("EDGE_CACHE_URLS", &edge), ("EDGE_PURGE_SECRET", secret)],
                );
                let varnish = start_varnish(&dir, port, app, secret);
                if varnish.is_none() {
                    eprintln!("varnish skipped: varnishd is not installed (apt-get install varnish varnish-modules)");
                }
                varnish
            }
            // nginx's proxy_cache (the shipped file) in front of the in-process server.
            ("nginx", _) => {
                let port = free_port();
                let edge = format!("nginx://127.0.0.1:{port}");
                let app = start(
                    "memory-behind-nginx",
                    &dir,
                    &db,
                    &redis_url,
                    &[("EDGE_CACHE_URLS", &edge)],
                );
                let nginx = start_nginx(&dir, port, app);
                if nginx.is_none() {
                    eprintln!("nginx skipped: nginx or its purge module is not installed (apt-get install nginx libnginx-mod-http-cache-purge)");
                }
                nginx
            }
            (b, _) => Some(start(b, &dir, &db, &redis_url, &[])),
        })
        .collect();
    let memory_port = servers[0].port;
    // Resolve the targets against the memory server: the newest post, each page's ETag.
    let newest = {
        let (body, _, _) = fetch(memory_port, "/api/posts/");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("posts JSON");
        format!(
            "/blog/{}/",
            json["results"][0]["slug"].as_str().expect("a post")
        )
    };
    let targets: Vec<Target> = target_specs
        .iter()
        .map(|spec| {
            let (conditional, path) = match spec.strip_prefix("304:") {
                Some(path) => (true, path.to_string()),
                None if spec == "post" => (false, newest.clone()),
                None => (false, spec.clone()),
            };
            let header = conditional.then(|| {
                let (_, _, etag) = fetch(memory_port, &path);
                assert!(!etag.is_empty(), "{path} has an ETag");
                format!("If-None-Match: {etag}")
            });
            Target {
                label: if conditional {
                    format!("{path} (304)")
                } else {
                    path.clone()
                },
                path,
                header,
            }
        })
        .collect();
    let mut ceiling_pages: Vec<(String, Vec<u8>, String)> = Vec::new();
    for t in &targets {
        if !ceiling_pages.iter().any(|(p, _, _)| *p == t.path) {
            let (body, content_type, _) = fetch(memory_port, &t.path);
            ceiling_pages.push((t.path.clone(), body, content_type));
        }
    }
    servers.insert(0, start_ceiling(&dir, &ceiling_pages));

    // The Redis processes whose CPU a backend's requests cost.
    let single = redis_pid(&redis_url);
    let redis_pids = |server: &str| -> Vec<u32> {
        match (&cluster, server) {
            (Some(cluster), s) if s.starts_with("cluster") => cluster.pids(),
            (_, s) if s.starts_with("redis") => single.into_iter().collect(),
            _ => Vec::new(),
        }
    };
    let redis_cpu = |server: &str| -> u64 { redis_pids(server).into_iter().map(cpu_micros).sum() };
    for server in &servers {
        for target in &targets {
            for _ in 0..3 {
                fetch(server.port, &target.path);
            }
        }
    }

    // (connections, target label, server) -> runs, one per round
    let mut results: BTreeMap<(u64, String, String), Vec<Run>> = BTreeMap::new();
    for round in 0..rounds {
        for &c in &connections {
            for target in &targets {
                for server in &servers {
                    let url = format!("http://127.0.0.1:{}{}", server.port, target.path);
                    // The ceiling has no 304: it is measured on the 200 of the same bytes.
                    // The others get the page's current ETag: views counted by an earlier
                    // target change the pages that show them (the first version of this
                    // benchmark sent a stale ETag and measured 200s).
                    let header = match &target.header {
                        Some(_) if server.name != "ceiling" => {
                            // Views counted by the post target are written within
                            // VIEW_FLUSH_INTERVAL (5 s), dropping the pages that show them.
                            std::thread::sleep(Duration::from_millis(5500));
                            let (_, _, etag) = fetch(server.port, &target.path);
                            Some(format!("If-None-Match: {etag}"))
                        }
                        _ => None,
                    };
                    let header = header.as_deref();
                    let (cpu0, redis0) = (server.cpu_micros(), redis_cpu(&server.name));
                    let header_args: Vec<&str> = header.iter().flat_map(|h| ["-H", *h]).collect();
                    let mut run = wrk(&url, &header_args, c, seconds);
                    if let Some(header) = header {
                        let status = status_of(server.port, &target.path, header);
                        run.still_304 = status == 304;
                        if status != 304 {
                            eprintln!(
                                "warning: {} {} answered {status}, not 304, after the run",
                                server.name, target.label
                            );
                        }
                    }
                    let requests = run.requests.max(1) as f64;
                    run.server_us = (server.cpu_micros() - cpu0) as f64 / requests;
                    run.redis_us = (redis_cpu(&server.name) - redis0) as f64 / requests;
                    eprintln!(
                        "round {} c={c} {} {}: {:.0} req/s, {:.1} µs CPU/req, {} errors",
                        round + 1,
                        target.label,
                        server.name,
                        run.rps,
                        run.server_us + run.redis_us,
                        run.errors
                    );
                    results
                        .entry((c, target.label.clone(), server.name.clone()))
                        .or_default()
                        .push(run);
                }
            }
        }
    }

    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Load benchmark\n\nwrk -t1, {seconds} s per run, {rounds} round(s) interleaved; medians, and ratios against the ceiling taken within each round (then the median). CPU µs/request: the server process (+ redis-server for Redis backends). Release build, SQLite, {} posts, {} cores.\n",
        env_num("BENCH_POSTS", 200),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(md, "| connections | target | server | req/s | × ceiling req/s | p50 ms | p99 ms | errors | CPU µs/req | × ceiling CPU | + redis µs/req | breaker trips |");
    let _ = writeln!(
        md,
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for &c in &connections {
        for target in &targets {
            let ceiling = &results[&(c, target.label.clone(), "ceiling".to_string())];
            for server in &servers {
                let runs = &results[&(c, target.label.clone(), server.name.clone())];
                let med = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
                let per_round = |f: &dyn Fn(&Run, &Run) -> f64| {
                    median(runs.iter().zip(ceiling).map(|(r, c)| f(r, c)).collect())
                };
                let trips = std::fs::read_to_string(&server.log)
                    .unwrap_or_default()
                    .matches("cache breaker opened")
                    .count();
                let _ = writeln!(
                    md,
                    "| {c} | `{}` | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {:.2} | {:.1} | {} |",
                    target.label,
                    server.name,
                    med(&|r| r.rps),
                    per_round(&|r, c| r.rps / c.rps.max(1.0)),
                    med(&|r| r.p50_ms),
                    med(&|r| r.p99_ms),
                    runs.iter().map(|r| r.errors).sum::<u64>(),
                    med(&|r| r.server_us + r.redis_us),
                    per_round(&|r, c| (r.server_us + r.redis_us) / c.server_us.max(0.001)),
                    med(&|r| r.redis_us),
                    trips
                );
            }
        }
    }
    let conditional: Vec<&Run> = results
        .iter()
        .filter(|((_, label, server), _)| label.ends_with("(304)") && server != "ceiling")
        .flat_map(|(_, runs)| runs)
        .collect();
    if !conditional.is_empty() {
        let _ = writeln!(
            md,
            "\n304 targets: the ETag is fetched just before each run; {} of {} runs still answered 304 when they ended.",
            conditional.iter().filter(|r| r.still_304).count(),
            conditional.len()
        );
    }
    // The peak, then what the process holds at the end: mapped files (its own code
    // first) and anonymous memory (heap, buffers), which the peak does not split.
    let _ = writeln!(
        md,
        "\nPeak RSS (VmHWM), and at the end file-backed (RssFile) and anonymous (RssAnon), MiB:\n"
    );
    for server in &servers {
        let pid = server.child.id();
        let mib = |field: &str| status_kib(pid, field) as f64 / 1024.0;
        let _ = writeln!(
            md,
            "- {}: {:.1} (at the end: file {:.1}, anonymous {:.1})",
            server.name,
            peak_rss_kib(pid) as f64 / 1024.0,
            mib("RssFile"),
            mib("RssAnon")
        );
    }
    // What the servers' own instrumentation saw over the whole run: `folio analyze` of
    // the in-process server (and of the uncached one, whose every request queries).
    for server in servers
        .iter()
        .filter(|s| s.name == "memory" || s.name == "none")
    {
        let report = folio()
            .args([
                "analyze",
                "--url",
                &format!("http://127.0.0.1:{}", server.port),
            ])
            .env("CACHE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn")
            .output()
            .expect("folio analyze");
        let _ = writeln!(
            md,
            "\n`folio analyze` of the {} server after the runs:\n\n```text\n{}{}```",
            server.name,
            String::from_utf8_lossy(&report.stdout),
            String::from_utf8_lossy(&report.stderr)
        );
    }
    println!("{md}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    std::fs::create_dir_all(&out).unwrap();
    let name = std::env::var("BENCH_OUT").unwrap_or_else(|_| "latest.md".into());
    std::fs::write(out.join(name), &md).unwrap();
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}
