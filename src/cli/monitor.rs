use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde_json::Value;

use super::server::{get_monitor, get_with, pct};
use crate::cache::{CacheManager, CacheUrl};
use crate::config::Config;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Action {
    /// Hit ratios, windows, families, memory and breaker (from the running server).
    Stats,
    /// The backend's health; exits non-zero when unhealthy or unreachable.
    Health,
    /// A short benchmark of the configured backend from here: ops/s, p50/p99.
    Test,
    /// Database and cache together, as `folio analyze` prints it.
    Analyze,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[arg(long, value_enum, default_value = "stats")]
    pub action: Action,
    /// Refresh in place every --interval seconds.
    #[arg(long)]
    pub watch: bool,
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// The running server [default: http://$BIND]
    #[arg(long)]
    pub url: Option<String>,
}

pub fn run(config: Config, args: MonitorArgs) -> anyhow::Result<()> {
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.bind));
    let base = base.trim_end_matches('/').to_string();
    super::runtime()?.block_on(async move {
        match args.action {
            Action::Test => test(&config).await,
            Action::Health => health(&base).await,
            Action::Analyze => {
                let stats = get_monitor(&base, &config).await?;
                print!("{}", super::analyze::report(&stats));
                Ok(())
            }
            Action::Stats => loop {
                let stats = get_monitor(&base, &config).await?;
                if args.watch {
                    print!("\x1b[2J\x1b[H"); // clear the terminal, cursor home
                }
                print!("{}", render(&stats, &base));
                if !args.watch {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_secs(args.interval)).await;
            },
        }
    })
}

async fn get(url: &str) -> anyhow::Result<(u16, Value)> {
    get_with(url, None).await
}

async fn health(base: &str) -> anyhow::Result<()> {
    let (status, body) = get(&format!("{base}/api/cache/health/")).await?;
    let f = |k: &str| body[k].to_string().trim_matches('"').to_string();
    println!("backend      {}", f("backend"));
    println!("reachable    {}", f("reachable"));
    println!("round trip   {} ms", f("round_trip_ms"));
    println!(
        "breaker      {} ({} trips)",
        f("breaker"),
        f("breaker_trips")
    );
    println!("error rate   {}", f("error_rate"));
    if !body["error"].is_null() {
        println!("error        {}", f("error"));
    }
    anyhow::ensure!(status == 200, "the cache is unhealthy ({status})");
    println!("healthy");
    Ok(())
}

/// The stats as aligned tables.
fn render(s: &Value, base: &str) -> String {
    use std::fmt::Write;
    let i = &s["instance"];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cache of {base} — backend {}, grade {}",
        i["backend"].as_str().unwrap_or("?"),
        i["grade"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "{:<14} {:>10} {:>10} {:>10} {:>10}",
        "hit ratio", "1 min", "5 min", "1 h", "lifetime"
    );
    let _ = writeln!(
        out,
        "{:<14} {:>10} {:>10} {:>10} {:>10}",
        "",
        pct(&s["windows"]["1m"]["hit_ratio"]),
        pct(&s["windows"]["5m"]["hit_ratio"]),
        pct(&s["windows"]["1h"]["hit_ratio"]),
        pct(&i["hit_ratio"])
    );
    let _ = writeln!(
        out,
        "{:<14} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "operations", "hits", "misses", "sets", "deletes", "errors"
    );
    let _ = writeln!(
        out,
        "{:<14} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "", i["hits"], i["misses"], i["sets"], i["deletes"], i["errors"]
    );
    if let Some(m) = s["memory"].as_object() {
        let mib = |v: &Value| v.as_f64().unwrap_or(0.0) / 1048576.0;
        let _ = writeln!(
            out,
            "{:<14} {:.1} of {:.0} MiB, {} entries, {} evicted",
            "memory",
            mib(&m["bytes"]),
            mib(&m["max_bytes"]),
            m["entries"],
            s["evictions"]
        );
    }
    if let Some(m) = s["server_memory"].as_object() {
        let mib = |v: &Value| v.as_f64().unwrap_or(0.0) / 1048576.0;
        let _ = writeln!(
            out,
            "{:<14} {:.1} MiB used, maxmemory {:.0} MiB ({}), {} keys evicted",
            "redis memory",
            mib(&m["used_bytes"]),
            mib(&m["max_bytes"]),
            m["policy"].as_str().unwrap_or("?"),
            m["evicted_keys"]
        );
    }
    if let Some(h) = i["health"].as_object() {
        let _ = writeln!(
            out,
            "{:<14} {} ({} trips)",
            "breaker",
            h["breaker"].as_str().unwrap_or("?"),
            h["breaker_trips"]
        );
    }
    let _ = writeln!(
        out,
        "{:<14} {} stored, effectiveness {}",
        "warming",
        s["warming"]["stored"],
        pct(&s["warming"]["effectiveness"])
    );
    let _ = writeln!(
        out,
        "\n{:<16} {:>10} {:>10} {:>10} {:>12} {:>14}",
        "family", "hits", "misses", "ratio", "fill ms", "miss cost ms"
    );
    for f in s["families_by_miss_cost"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<16} {:>10} {:>10} {:>10} {:>12} {:>14.1}",
            f["name"].as_str().unwrap_or("?"),
            f["hits"],
            f["misses"],
            pct(&f["hit_ratio"]),
            f["avg_fill_ms"]
                .as_f64()
                .map_or("–".into(), |v| format!("{v:.2}")),
            f["miss_cost_ms"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(rows) = s["instances"].as_array().filter(|r| !r.is_empty()) {
        let s_hits = &s["site"]["hits"];
        let _ = writeln!(
            out,
            "\n{:<32} {:>10} {:>10} {:>10}   site-wide: {} hits, ratio {}",
            "instance",
            "hits",
            "misses",
            "ratio",
            s_hits,
            pct(&s["site"]["hit_ratio"])
        );
        for r in rows {
            let _ = writeln!(
                out,
                "{:<32} {:>10} {:>10} {:>10}",
                r["id"].as_str().unwrap_or("?"),
                r["hits"],
                r["misses"],
                pct(&r["hit_ratio"])
            );
        }
    }
    let _ = writeln!(out, "\nrecommendations:");
    for r in s["recommendations"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  - {}", r.as_str().unwrap_or(""));
    }
    out
}

/// A short benchmark of the configured backend, from this process.
async fn test(config: &Config) -> anyhow::Result<()> {
    if config.cache.url == CacheUrl::Memory {
        eprintln!("CACHE_URL is memory://: this measures an in-process cache of this command, not the server's");
    }
    let cache = CacheManager::new(config.cache.clone())?;
    cache
        .check(Duration::from_secs(5))
        .await
        .map_err(|e| anyhow::anyhow!("CACHE_URL: the cache does not answer: {e}"))?;
    const N: usize = 2000;
    let value = "x".repeat(512);
    let keys: Vec<_> = (0..N)
        .map(|i| cache.key("monitor-test", [i.to_string()]))
        .collect();
    let mut report = Vec::new();
    for op in ["set", "get", "delete"] {
        let mut took = Vec::with_capacity(N);
        let started = Instant::now();
        for key in &keys {
            let t = Instant::now();
            match op {
                "set" => cache.set(key, &value, Some(Duration::from_secs(60))).await,
                "get" => {
                    let _ = cache.get::<String>(key).await;
                }
                _ => {
                    cache.delete(key).await;
                }
            }
            took.push(t.elapsed());
        }
        let total = started.elapsed();
        took.sort();
        report.push((
            op,
            N as f64 / total.as_secs_f64(),
            took[N / 2],
            took[N * 99 / 100],
        ));
    }
    println!(
        "{:<8} {:>12} {:>10} {:>10}",
        "op", "ops/s", "p50 µs", "p99 µs"
    );
    for (op, rate, p50, p99) in report {
        println!(
            "{op:<8} {rate:>12.0} {:>10} {:>10}",
            p50.as_micros(),
            p99.as_micros()
        );
    }
    anyhow::ensure!(
        cache.stats().totals.errors == 0,
        "the backend reported errors"
    );
    Ok(())
}
