//! The command line: one binary, one subcommand a file. `serve` is the default.

mod analyze;
mod clear;
mod create_admin;
mod migrate;
mod monitor;
mod reindex;
mod seed;
mod serve;
mod server;
mod warm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "folio",
    version,
    about = "A portfolio and blog with a caching system at its heart"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: crate::config::Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Migrate, seed an empty database, and serve the site (the default).
    Serve(serve::ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Load the fixtures (idempotent); optionally generate N extra posts for load tests.
    Seed(seed::SeedArgs),
    /// Rebuild the search index from the posts.
    Reindex,
    /// Create an admin account (password from ADMIN_PASSWORD, or asked twice).
    CreateAdmin(create_admin::CreateAdminArgs),
    /// Delete cached entries: all of this site's, or those matching --pattern.
    Clear(clear::ClearArgs),
    /// Warm the cache by priority (`--type=all|main|blog|api|search`); with memory:// asks the running server.
    Warm(warm::WarmArgs),
    /// Watch the cache of a running server (`--action=stats|health|test`, `--watch`).
    Monitor(monitor::MonitorArgs),
    /// The running server's database and cache analysis: statements, families, N+1, slow statements (`--json`).
    Analyze(analyze::AnalyzeArgs),
}

pub fn main() -> ExitCode {
    // Before parsing: `.env` values count as environment variables.
    let _ = dotenvy::dotenv();
    crate::config::Settings::forget_empty_variables();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.kind() == clap::error::ErrorKind::ValueValidation => {
            return fail(crate::config::ConfigError::from_clap(&e))
        }
        Err(e) => e.exit(),
    };
    let command = cli
        .command
        .unwrap_or(Command::Serve(serve::ServeArgs::default()));
    // Kept to the end: dropping it sends the spans still queued.
    let _telemetry = match crate::telemetry::init(matches!(command, Command::Serve(_))) {
        Ok(telemetry) => telemetry,
        Err(e) => return fail(e),
    };
    let config = match Config::from_settings(cli.settings) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    let result = match command {
        Command::Serve(args) => serve::run(config, args),
        Command::Migrate => migrate::run(config),
        Command::Seed(args) => seed::run(config, args),
        Command::Reindex => reindex::run(config),
        Command::CreateAdmin(args) => create_admin::run(config, args),
        Command::Clear(args) => clear::run(config, args),
        Command::Warm(args) => warm::run(config, args),
        Command::Monitor(args) => monitor::run(config, args),
        Command::Analyze(args) => analyze::run(config, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// The runtime for subcommands other than `serve` (which runs on actix's).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Migrates, connects and returns the repository (with the configured cache, so
/// writes invalidate what a shared cache holds).
async fn open_repository(
    config: &Config,
) -> Result<crate::content::Repository, crate::startup::StartupError> {
    crate::db::migrate(&config.database_url).await?;
    let db = crate::db::Db::connect(&config.database_url).await?;
    let cache = crate::cache::CacheManager::new(config.cache.clone())?;
    // Writes owe the edges their purges too; a running server delivers them.
    let edges = crate::edge::Edges::new(&config.edge, &config.cache.key_prefix);
    Ok(crate::content::Repository::new(db, cache).with_edges(edges))
}

/// After a command changed what `models` cover in the database. A shared cache (Redis)
/// was invalidated by the repository's writes, on every instance. An in-process cache
/// lives in the running server's memory, out of this process's reach: the server is
/// asked to drop what changed through its signed webhook when CACHE_WEBHOOK_SECRET is
/// set (the same as the server's), and otherwise the user is told how to reach it.
async fn invalidate_on_the_server(config: &Config, models: &[crate::content::invalidation::Model]) {
    if config.cache.url != crate::cache::CacheUrl::Memory || models.is_empty() {
        return;
    }
    let base = format!("http://{}", config.bind);
    let Some(secret) = &config.webhook_secret else {
        eprintln!(
            "note: CACHE_URL is memory://, so a running server's cache lives in its own memory and this command cannot reach it. \
             Its pages show the change when their entries expire (PAGE_CACHE_TTL); to drop them now, set CACHE_WEBHOOK_SECRET \
             (the same as the server's) and BIND to the server's address and run this again, or restart the server."
        );
        return;
    };
    let names: Vec<&str> = models.iter().map(|m| m.name()).collect();
    let body = serde_json::json!({ "models": names }).to_string();
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = crate::web::api::webhook::sign(secret.expose(), &timestamp, body.as_bytes());
    let answer = reqwest::Client::new()
        .post(format!("{base}/api/cache/invalidate/"))
        .header("content-type", "application/json")
        .header("x-cache-timestamp", timestamp)
        .header("x-cache-signature", signature)
        .body(body)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await;
    match answer {
        Ok(res) if res.status().is_success() => {
            eprintln!("the server at {base} dropped what this changed from its cache")
        }
        Ok(res) => eprintln!(
            "note: the server at {base} refused the invalidation ({}); its cached pages show the change when they expire",
            res.status()
        ),
        Err(e) => eprintln!(
            "note: no server answered at {base} ({e}); if one runs elsewhere, set BIND to its address, or restart it"
        ),
    }
}

/// Why an admin call to a running server failed: a refused token names what to set,
/// since the CLI's token (configured or generated in its own `DATA_DIR`) may not be
/// the server's.
pub(crate) fn refused(
    base: &str,
    status: reqwest::StatusCode,
    answer: impl std::fmt::Display,
) -> anyhow::Error {
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        anyhow::anyhow!(
            "the server at {base} refused this command's admin token ({status}): set CACHE_ADMIN_TOKEN to the server's, or run this where the server's DATA_DIR is"
        )
    } else {
        anyhow::anyhow!("the server at {base} refused: {status} {answer}")
    }
}

/// One line on stderr: start-up errors name the variable to fix.
fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        super::Cli::command().debug_assert();
    }
}
