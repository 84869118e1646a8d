use std::io::IsTerminal;

use clap::Args;

use crate::cache::CacheUrl;
use crate::config::Config;
use crate::web::warm::{WarmOptions, WarmReport, WarmType};

#[derive(Debug, Args)]
pub struct WarmArgs {
    /// What to warm.
    #[arg(long = "type", value_enum, default_value = "all")]
    pub kind: WarmType,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Rebuild entries that exist too.
    #[arg(long)]
    pub force: bool,
    /// Print items and hit ratio before and after.
    #[arg(long)]
    pub stats: bool,
    /// With `memory://`: the running server to ask [default: http://$BIND]
    #[arg(long)]
    pub url: Option<String>,
    /// Print the top of the plan, with what readers are expected to ask for and what
    /// each miss costs (the demand model), and warm nothing.
    #[arg(long)]
    pub explain: bool,
}

/// Items `--explain` prints.
const EXPLAINED: usize = 25;

pub fn run(config: Config, args: WarmArgs) -> anyhow::Result<()> {
    if args.explain {
        return explain(config, args.kind);
    }
    let options = WarmOptions {
        kind: args.kind,
        force: args.force,
        timeout_secs: args.timeout,
        ..WarmOptions::default()
    };
    let report = if config.cache.url == CacheUrl::Memory {
        ask_the_server(&config, &args, &options)?
    } else {
        warm_here(config, &args, &options)?
    };
    print_report(&report);
    anyhow::ensure!(
        report.totals().failed == 0,
        "{} item(s) failed",
        report.totals().failed
    );
    Ok(())
}

/// `memory://` lives in the server's process: only the server can warm it.
fn ask_the_server(
    config: &Config,
    args: &WarmArgs,
    options: &WarmOptions,
) -> anyhow::Result<WarmReport> {
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.bind));
    eprintln!(
        "CACHE_URL is memory://: the cache lives in the running server's process, so this asks it to warm itself ({base}/api/cache/warm/)"
    );
    let token = config.admin_token().ok_or_else(|| {
        anyhow::anyhow!("CACHE_ADMIN_TOKEN must be set (the same as the server's) to ask it")
    })?;
    let base = base.trim_end_matches('/').to_string();
    super::runtime()?.block_on(async {
        let client = reqwest::Client::new();
        let ratio = |client: reqwest::Client, base: String| async move {
            let stats: serde_json::Value = client
                .get(format!("{base}/api/cache/stats/"))
                .bearer_auth(token.expose())
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let i = &stats["instance"];
            Some((
                i["hits"].as_u64()? + i["misses"].as_u64()?,
                i["hit_ratio"].as_f64()?,
            ))
        };
        let before = if args.stats {
            ratio(client.clone(), base.clone()).await
        } else {
            None
        };
        let res = client
            .post(format!("{base}/api/cache/warm/"))
            .bearer_auth(token.expose())
            .json(options)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("the server at {base} does not answer: {e}"))?;
        let status = res.status();
        if !status.is_success() {
            return Err(super::refused(
                &base,
                status,
                res.text().await.unwrap_or_default(),
            ));
        }
        let report = res.json::<WarmReport>().await?;
        if let (Some((lookups, ratio)), Some((after_lookups, after_ratio))) =
            (before, ratio(client, base).await)
        {
            println!(
                "before: {lookups} lookups, hit ratio {:.1} %",
                ratio * 100.0
            );
            println!(
                "after:  {after_lookups} lookups, hit ratio {:.1} %",
                after_ratio * 100.0
            );
        }
        Ok(report)
    })
}

/// A shared cache (Redis): warmed from here, through the same application code.
fn warm_here(config: Config, args: &WarmArgs, options: &WarmOptions) -> anyhow::Result<WarmReport> {
    let config = Config {
        warm_on_start: false,
        warm_after_invalidation: false,
        ..config
    };
    actix_web::rt::System::new().block_on(async {
        let state = actix_web::web::Data::new(crate::startup::build_state(config).await?);
        let before = state.cache.site_stats().await;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                    .expect("template"),
            );
            bar
        });
        let progress = |done: usize, total: usize, path: &str| match &bar {
            Some(bar) => {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                bar.set_message(path.to_string());
            }
            None => eprintln!("[{done}/{total}] {path}"),
        };
        let report = crate::web::warm::warm(state.clone(), options, &progress).await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if args.stats {
            let after = state.cache.site_stats().await;
            println!(
                "before: {} lookups, hit ratio {:.1} %",
                before.totals.hits + before.totals.misses,
                before.hit_ratio * 100.0
            );
            println!(
                "after:  {} lookups, hit ratio {:.1} %",
                after.totals.hits + after.totals.misses,
                after.hit_ratio * 100.0
            );
        }
        state.cache.flush_stats().await;
        Ok(report)
    })
}

/// The plan's top, as `warm` would follow it, read from the database (no server needed).
fn explain(config: Config, kind: WarmType) -> anyhow::Result<()> {
    let config = Config {
        warm_on_start: false,
        warm_after_invalidation: false,
        seed_on_empty: false,
        ..config
    };
    actix_web::rt::System::new().block_on(async {
        let state = crate::startup::build_state(config).await?;
        let plan = crate::web::warm::plan(&state, kind).await?;
        let modelled = plan.iter().filter(|p| p.predicted.is_some()).count();
        println!(
            "{} items; the demand model knows {modelled} of them{}",
            plan.len(),
            match modelled {
                0 => " (no readers counted yet: the fixed plan, by page kind)",
                _ => " (they come first, by value)",
            }
        );
        println!(
            "{:>4} {:>3} {:>10} {:>8} {:>8}  path",
            "#", "pri", "expected", "miss ms", "value"
        );
        for (i, p) in plan.iter().take(EXPLAINED).enumerate() {
            match p.predicted {
                Some((expected, cost, value)) => println!(
                    "{:>4} {:>3} {expected:>10.2} {cost:>8.2} {value:>8.2}  {}",
                    i + 1,
                    p.priority,
                    p.path
                ),
                None => println!(
                    "{:>4} {:>3} {:>10} {:>8} {:>8}  {}",
                    i + 1,
                    p.priority,
                    "–",
                    "–",
                    "fixed",
                    p.path
                ),
            }
        }
        println!("expected: requests before its entry expires; value: ms of rendering a warm entry spares (the chance of a read before expiry × a miss's cost)");
        Ok(())
    })
}

fn print_report(report: &WarmReport) {
    println!(
        "{:<8} {:>7} {:>8} {:>7}",
        "type", "warmed", "skipped", "failed"
    );
    for (kind, c) in &report.by_type {
        println!("{kind:<8} {:>7} {:>8} {:>7}", c.warmed, c.skipped, c.failed);
    }
    let t = report.totals();
    println!(
        "{:<8} {:>7} {:>8} {:>7}   in {} ms",
        "total", t.warmed, t.skipped, t.failed, report.duration_ms
    );
    for f in &report.failures {
        println!("failed: {} ({})", f.path, f.error);
    }
    if let Some(why) = &report.stopped {
        println!("stopped early: {why}");
    }
}
