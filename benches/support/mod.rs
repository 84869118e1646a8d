//! What the load and soak benchmarks share: the release server per cache backend,
//! wrk runs, and readings of a process's CPU time and memory from /proc.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// utime + stime of a process, in microseconds.
pub fn cpu_micros(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks * 1_000_000 / clock_ticks()
}

pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// A `/proc/<pid>/status` memory field (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM")
}

pub struct Server {
    pub name: String,
    pub child: Child,
    pub port: u16,
    pub log: std::path::PathBuf,
    /// What answers behind it (the app behind a Varnish): its CPU counts too.
    pub behind: Option<Box<Server>>,
}

impl Server {
    /// The processes whose CPU a request to it costs: it, its children (Varnish's cache
    /// process), and what is behind it.
    pub fn pids(&self) -> Vec<u32> {
        let pid = self.child.id();
        let mut pids = vec![pid];
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
            pids.extend(
                children
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        if let Some(behind) = &self.behind {
            pids.extend(behind.pids());
        }
        pids
    }

    pub fn cpu_micros(&self) -> u64 {
        self.pids().into_iter().map(cpu_micros).sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first: varnishd stops its cache process with it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The servers' CACHE_ADMIN_TOKEN: `folio analyze` asks them for their analysis.
pub const ADMIN_TOKEN: &str = "bench-admin-token-that-is-long-enough-0123";

pub fn folio() -> Command {
    Command::new(env!("CARGO_BIN_EXE_folio"))
}

/// The release server on one backend (`memory`, `redis`, `redis-no-near`, `cluster`,
/// `cluster-no-near`, `none`, `memory-otel`, `baseline`; each also as `<backend>-quiet`,
/// with no access log), with `extra` settings, once it accepts connections;
/// `redis` is the URL for the Redis ones (`redis+cluster://…` for a cluster).
pub fn start(
    name: &str,
    dir: &std::path::Path,
    db: &str,
    redis: &str,
    extra: &[(&str, &str)],
) -> Server {
    let port = free_port();
    let log = dir.join(format!("{name}.log"));
    // `baseline`: another build of the server (BENCH_BASELINE, a path), e.g. the commit
    // before a change, on the in-process cache.
    let mut cmd = match name {
        "baseline" => Command::new(std::env::var("BENCH_BASELINE").expect("BENCH_BASELINE")),
        _ => folio(),
    };
    // The log level users run with (`info`: one access line per request, to a file
    // here as under a service manager); `<backend>-quiet` is the same with ACCESS_LOG=off.
    let full = name;
    let (name, quiet) = match name.strip_suffix("-quiet") {
        Some(base) => (base, true),
        None => (name, false),
    };
    // Each server on its own copy of the seeded database: one database is one cache's
    // (servers on other caches are refused, see `repository::cache_site`).
    let own_db = match db.strip_prefix("sqlite://") {
        Some(path) => {
            let copy = dir.join(format!("{full}.db"));
            for suffix in ["", "-wal", "-shm"] {
                let from = format!("{path}{suffix}");
                if std::path::Path::new(&from).exists() {
                    std::fs::copy(&from, format!("{}{suffix}", copy.display())).unwrap();
                }
            }
            format!("sqlite://{}", copy.display())
        }
        None => db.to_string(),
    };
    cmd.arg("serve")
        .env("DATABASE_URL", &own_db)
        .env("DATA_DIR", dir)
        .env("BIND", format!("127.0.0.1:{port}"))
        .env_remove("RUST_LOG")
        .env("ACCESS_LOG", if quiet { "off" } else { "on" })
        .env("SEED_ON_EMPTY", "false")
        .env(
            "SECRET_KEY",
            "bench-secret-key-that-is-long-enough-0123456789",
        )
        .env("CACHE_ADMIN_TOKEN", ADMIN_TOKEN)
        .envs(extra.iter().copied())
        .env(
            "CACHE_KEY_PREFIX",
            format!("bench{}{full}", std::process::id()),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    match name {
        "memory" | "memory-behind-varnish" | "memory-behind-nginx" | "baseline" => {
            cmd.env("CACHE_URL", "memory://")
        }
        // Tracing on: every span exported over OTLP/HTTP to a receiver that drops them.
        "memory-otel" => cmd.env("CACHE_URL", "memory://").env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", otlp_sink()),
        ),
        "none" => cmd.env("CACHE_URL", "none"),
        "redis" | "cluster" => cmd.env("CACHE_URL", redis),
        "redis-no-near" | "cluster-no-near" => {
            cmd.env("CACHE_URL", redis).env("CACHE_NEAR", "false")
        }
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
        name: full.into(),
        child,
        port,
        log,
        behind: None,
    }
}

/// Varnish with the shipped VCL (`deploy/varnish/default.vcl`, its backend replaced by
/// `app`'s port) in front of `app`, once it answers; None without varnishd.
pub fn start_varnish(
    dir: &std::path::Path,
    port: u16,
    app: Server,
    secret: &str,
) -> Option<Server> {
    let varnishd = ["/usr/sbin/varnishd", "/usr/local/sbin/varnishd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let shipped = include_str!("../../deploy/varnish/default.vcl");
    let (head, rest) = shipped.split_once("# BEGIN backends").unwrap();
    let (_, tail) = rest.split_once("# END backends").unwrap();
    let backend = format!(
        "probe folio_health {{ .url = \"/healthz\"; .interval = 1s; .timeout = 1s; .window = 3; .threshold = 2; }}\nbackend default {{ .host = \"127.0.0.1\"; .port = \"{}\"; .probe = folio_health; }}\n",
        app.port
    );
    let vcl = dir.join("bench.vcl");
    std::fs::write(
        &vcl,
        format!("{head}{backend}{tail}")
            .replace("\"CHANGE-ME-EDGE-PURGE-SECRET\"", &format!("\"{secret}\"")),
    )
    .unwrap();
    let log = dir.join("varnish.log");
    let child = Command::new(varnishd)
        .args(["-F", "-a", &format!("127.0.0.1:{port}")])
        .args(["-T", &format!("127.0.0.1:{}", free_port())])
        .arg("-f")
        .arg(&vcl)
        .arg("-n")
        .arg(dir.join("varnish"))
        .args(["-s", "malloc,256m"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .ok()?;
    Some(in_front("varnish", child, port, log, app))
}

/// An edge (`child`, listening on `port`) in front of `app`, once `/healthz` answers
/// through it: its CPU and the app's are counted together.
fn in_front(name: &str, child: Child, port: u16, log: std::path::PathBuf, app: Server) -> Server {
    let server = Server {
        name: name.into(),
        child,
        port,
        log,
        behind: Some(Box::new(app)),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while status_of(port, "/healthz", "X-Bench: 1") != 200 {
        assert!(Instant::now() < deadline, "{name} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// nginx with the shipped `deploy/nginx/folio-cache.conf` (its cache in `dir`, its
/// upstream `app`) in front of `app`, once it answers; None without nginx and its
/// purge module.
pub fn start_nginx(dir: &std::path::Path, port: u16, app: Server) -> Option<Server> {
    const MODULE: &str = "/usr/lib/nginx/modules/ngx_http_cache_purge_module.so";
    let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    if !std::path::Path::new(MODULE).exists() {
        return None;
    }
    let block = |text: &str, name: &str, with: &str| {
        let (head, rest) = text.split_once(&format!("# BEGIN {name}")).unwrap();
        let (_, tail) = rest.split_once(&format!("# END {name}")).unwrap();
        format!("{head}{with}{tail}")
    };
    let d = dir.join("nginx");
    std::fs::create_dir_all(&d).unwrap();
    let d = d.display();
    let site = include_str!("../../deploy/nginx/folio-cache.conf");
    let site = block(site, "cache path", &format!("proxy_cache_path {d}/cache levels=1:2 keys_zone=folio:10m max_size=256m inactive=1d use_temp_path=off;\n"));
    let site = block(
        &site,
        "upstream",
        &format!(
            "upstream folio {{ server 127.0.0.1:{}; keepalive 16; }}\n",
            app.port
        ),
    );
    let site = block(&site, "listen", &format!("listen 127.0.0.1:{port};\n"));
    let conf = format!(
        "load_module {MODULE};\ndaemon off; worker_processes auto; pid {d}/nginx.pid; error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\nhttp {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n{site}\n}}\n"
    );
    let file = dir.join("nginx.conf");
    std::fs::write(&file, conf).unwrap();
    let log = dir.join("nginx.log");
    let child = Command::new(nginx)
        .arg("-p")
        .arg(dir.join("nginx"))
        .arg("-e")
        .arg(dir.join("nginx").join("error.log"))
        .arg("-c")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .ok()?;
    Some(in_front("nginx", child, port, log, app))
}

/// A SQLite database at `file` with the fixtures and `posts` generated posts (no cache).
pub fn seed(dir: &std::path::Path, file: &std::path::Path, posts: u64) -> String {
    let db = format!("sqlite://{}", file.display());
    let seeded = folio()
        .args(["seed", "--posts", &posts.to_string()])
        .env("DATABASE_URL", &db)
        .env("DATA_DIR", dir)
        .env("CACHE_URL", "none")
        .env("RUST_LOG", "warn")
        .status()
        .expect("seed");
    assert!(seeded.success(), "seeding failed");
    db
}

pub fn redis_pid(url: &str) -> Option<u32> {
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
pub struct Run {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub requests: u64,
    pub server_us: f64,
    pub redis_us: f64,
    /// Of `errors`: requests that got no answer within wrk's timeout.
    pub timeouts: u64,
    /// A conditional target still answered 304 after the run (its ETag stayed current).
    pub still_304: bool,
}

/// The status of a GET with one extra header.
pub fn status_of(port: u16, path: &str, header: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-m",
            "10",
            "-H",
            header,
        ])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

pub fn millis(text: &str) -> f64 {
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

/// One wrk run; `args` go first (`-H …`, `-s script.lua`, `-t2`: one thread unless
/// given).
pub fn wrk(url: &str, args: &[&str], connections: u64, seconds: u64) -> Run {
    let mut cmd = Command::new("wrk");
    cmd.args(args);
    if !args.iter().any(|a| a.starts_with("-t")) {
        cmd.arg("-t1");
    }
    let out = cmd
        .args([
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
            // "connect 0, read 0, write 0, timeout 0"
            for part in v.split(',') {
                let mut words = part.split_whitespace();
                let (kind, n) = (
                    words.next().unwrap_or(""),
                    words
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0),
                );
                run.errors += n;
                if kind == "timeout" {
                    run.timeouts += n;
                }
            }
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

/// An OTLP/HTTP receiver that answers every export with 200 and keeps nothing (for
/// `memory-otel`: what tracing costs the server, not a collector); its port.
pub fn otlp_sink() -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err()
                        || writer
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}
