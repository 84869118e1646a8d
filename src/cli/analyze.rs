//! `folio analyze`: the running server's database and cache analysis
//! (`/api/cache/monitor/`'s `analysis`), as tables on a terminal or as JSON.

use std::fmt::Write;

use clap::Args;
use serde_json::Value;

use super::server::{get_monitor, pct};
use crate::config::Config;

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Print the analysis as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// The running server [default: http://$BIND]
    #[arg(long)]
    pub url: Option<String>,
}

pub fn run(config: Config, args: AnalyzeArgs) -> anyhow::Result<()> {
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.bind));
    let base = base.trim_end_matches('/').to_string();
    super::runtime()?.block_on(async move {
        let stats = get_monitor(&base, &config).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&stats["analysis"])?);
        } else {
            print!("{}", report(&stats));
        }
        Ok(())
    })
}

fn rows(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// Cuts a statement to `n` characters for a table cell.
fn cut(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// A table of families: `count` (hits or misses) and the milliseconds of `ms`.
fn families(out: &mut String, title: &str, list: &Value, (count, ms): (&str, &str)) {
    let _ = writeln!(out, "\n{title}");
    let _ = writeln!(
        out,
        "{:<16} {:>10} {:>10} {:>12} {:>14}",
        "family", count, "hit ratio", "compute ms", ms
    );
    for f in rows(list) {
        let _ = writeln!(
            out,
            "{:<16} {:>10} {:>10} {:>12.2} {:>14.1}",
            f["name"].as_str().unwrap_or("?"),
            f[count].as_u64().unwrap_or(0),
            pct(&f["hit_ratio"]),
            num(&f["avg_fill_ms"]),
            num(&f["ms"])
        );
    }
}

/// The analysis as tables.
pub fn report(stats: &Value) -> String {
    let a = &stats["analysis"];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Database ({}): statements by total time ({} shapes)",
        a["database"].as_str().unwrap_or("?"),
        a["statement_shapes"]
    );
    let _ = writeln!(
        out,
        "{:>7} {:>10} {:>8} {:>8} {:>8}  statement",
        "calls", "total ms", "avg ms", "p99 ms", "max ms"
    );
    for s in rows(&a["statements"]).take(15) {
        let _ = writeln!(
            out,
            "{:>7} {:>10.1} {:>8.2} {:>8.2} {:>8.2}  {}",
            s["calls"].as_u64().unwrap_or(0),
            num(&s["total_ms"]),
            num(&s["avg_ms"]),
            num(&s["p99_ms"]),
            num(&s["max_ms"]),
            cut(s["statement"].as_str().unwrap_or(""), 100)
        );
    }
    families(
        &mut out,
        "Cache families that spare the database most (hits × the computation each avoids)",
        &a["families_saving_most"],
        ("hits", "spared ms"),
    );
    families(
        &mut out,
        "Cache families whose misses cost most (misses × the computation)",
        &a["families_costing_most"],
        ("misses", "spent ms"),
    );
    let _ = writeln!(out, "\nN+1: one repository read repeated within a request");
    if rows(&a["n_plus_one"]).next().is_none() {
        let _ = writeln!(out, "  none seen");
    }
    for r in rows(&a["n_plus_one"]) {
        let _ = writeln!(
            out,
            "  {} — {} (up to {} times in one request, {} requests)",
            r["route"].as_str().unwrap_or("?"),
            r["site"].as_str().unwrap_or("?"),
            r["most_in_one_request"],
            r["requests"]
        );
    }
    let _ = writeln!(out, "\nSlow statements (over {} ms)", a["slow_over_ms"]);
    if rows(&a["slow_statements"]).next().is_none() {
        let _ = writeln!(out, "  none seen");
    }
    for s in rows(&a["slow_statements"]).take(10) {
        let _ = writeln!(
            out,
            "  {:>8.1} ms  {}",
            num(&s["ms"]),
            cut(s["statement"].as_str().unwrap_or(""), 110)
        );
    }
    let _ = writeln!(out, "\nRecommendations");
    let advice: Vec<&Value> = rows(&a["recommendations"])
        .chain(rows(&stats["recommendations"]))
        .collect();
    if advice.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for r in advice {
        let _ = writeln!(out, "  - {}", r.as_str().unwrap_or(""));
    }
    out
}
