//! Configuration: every setting declared once on `Settings` (clap, with `env`): its
//! variable, default, parser and help. Values come from the environment (a `.env` file
//! is read first if present) or from flags; a bad value stops start-up with one line
//! naming the variable. `Config` is the resolved result the program uses.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::cache::{CacheConfig, CacheUrl};

pub mod edge;
mod parse;
mod secret;
pub use self::parse::validate_bind;
use self::parse::*;
pub use self::secret::SecretKey;

#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

fn invalid(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

/// Which database `DATABASE_URL` names.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A file path (diesel wants a plain path, not `sqlite://`).
    Sqlite(String),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if let Some(path) = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err("sqlite:// needs a file path".into());
            }
            return Ok(DatabaseUrl::Sqlite(path.to_string()));
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            url::Url::parse(raw).map_err(|e| e.to_string())?;
            return Ok(DatabaseUrl::Postgres(raw.to_string()));
        }
        let scheme = raw.split("://").next().unwrap_or(raw);
        Err(format!(
            "unsupported scheme '{scheme}' (expected sqlite://PATH or postgres://…)"
        ))
    }
}

impl DatabaseUrl {
    /// The URL again, as `DATABASE_URL` would give it (with any password: not for logs).
    pub fn to_url(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{path}"),
            DatabaseUrl::Postgres(url) => url.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    /// Never prints a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(p) => write!(f, "sqlite://{p}"),
            DatabaseUrl::Postgres(u) => match url::Url::parse(u) {
                Ok(mut url) => {
                    if url.password().is_some() {
                        let _ = url.set_password(Some("***"));
                    }
                    write!(f, "{url}")
                }
                Err(_) => write!(f, "postgres://…"),
            },
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: DatabaseUrl,
    pub cache: CacheConfig,
    /// host:port to listen on; port 0 picks a free port (tests).
    pub bind: String,
    pub secret_key: SecretKey,
    /// The key was not given but read from (or generated into) `DATA_DIR`: fine for one
    /// instance, wrong for several (see `Config::check_shared_secret`).
    pub secret_key_from_file: bool,
    pub data_dir: PathBuf,
    /// Load the fixtures when the database has no content yet (first run).
    pub seed_on_empty: bool,
    /// Debug mode: detailed error pages and cache debug panels.
    pub debug: bool,
    /// Public base URL used in the feed and sitemap (absolute links are required there).
    pub site_url: String,
    /// The zone the admin's times are in (a post's `publish_at`); stored in UTC.
    pub site_timezone: jiff::tz::TimeZone,
    /// HTTP worker threads (default: one per core).
    pub workers: usize,
    /// Path prefixes whose GET responses are cached whole.
    pub response_cache_prefixes: Vec<String>,
    pub response_cache_ttl: Duration,
    /// `max-age` sent to clients for cached API responses.
    pub api_max_age: Duration,
    /// Whole public pages cached for anonymous readers.
    pub page_cache: bool,
    pub page_cache_ttl: Duration,
    /// How long past its TTL a cached page (or API response) may still be served when
    /// rendering it fails (the database is unreachable).
    pub stale_if_error: Duration,
    /// How often counted post views are written.
    pub view_flush_interval: Duration,
    /// Warm the cache in the background at start-up.
    pub warm_on_start: bool,
    /// Re-warm the critical path after this process's writes.
    pub warm_after_invalidation: bool,
    /// Bearer token of the cache admin API (full statistics, warm, clear).
    pub cache_admin_token: Option<SecretKey>,
    /// Without `CACHE_ADMIN_TOKEN`: a token generated into `$DATA_DIR/admin_token`
    /// (readable by its owner only), accepted from a loopback address, so the command
    /// line on the server's machine reaches the server with no setting.
    pub local_admin_token: Option<SecretKey>,
    /// `/metrics` answers only with `Authorization: Bearer <CACHE_ADMIN_TOKEN>`.
    pub metrics_require_token: bool,
    /// Signs invalidation webhook requests; None turns the webhook off.
    pub webhook_secret: Option<SecretKey>,
    /// Largest Markdown body the post form accepts, in bytes.
    pub max_post_bytes: usize,
    /// Largest image the post editor uploads, in bytes.
    pub max_image_bytes: usize,
    /// An admin session ends after this long without a request…
    pub session_idle: Duration,
    /// …and this long after sign-in, whatever happens.
    pub session_max_age: Duration,
    /// Proxies whose `X-Forwarded-For` is believed (see `web::client`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Contact messages one address may send per hour.
    pub contact_per_hour: u32,
    /// Edge caches in front of the site, and their purges (see `edge`).
    pub edge: self::edge::EdgeConfig,
    /// How often this instance writes its cache history (see `web::analytics`).
    pub history_flush_interval: Duration,
}

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// Every API route the route table caches (`web::routes`).
pub const DEFAULT_RESPONSE_PREFIXES: &str = "/api/";

/// Every setting, declared once: its variable, default, parser and help. Each can be
/// given as an environment variable (or in `.env`) or as a flag, and `folio --help`
/// (or `folio serve --help`) lists them.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Settings (each also read from the environment variable shown)")]
pub struct Settings {
    /// `sqlite://PATH` or `postgres://USER:PASS@HOST:PORT/DB` [default: sqlite://$DATA_DIR/folio.db]
    #[arg(long, global = true, env = "DATABASE_URL", value_name = "DATABASE_URL", value_parser = DatabaseUrl::parse, hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,
    /// Where the SQLite file and the generated secret key live.
    #[arg(
        long,
        global = true,
        env = "DATA_DIR",
        value_name = "DATA_DIR",
        default_value = "data"
    )]
    pub data_dir: PathBuf,
    /// `memory://`, `redis://HOST:PORT/DB`, or `none`.
    #[arg(long, global = true, env = "CACHE_URL", value_name = "CACHE_URL", default_value = "memory://", value_parser = CacheUrl::parse, hide_env_values = true)]
    pub cache_url: CacheUrl,
    /// Prefix of every cache key (one per site sharing a Redis).
    #[arg(long, global = true, env = "CACHE_KEY_PREFIX", value_name = "CACHE_KEY_PREFIX", default_value = "folio", value_parser = parse_prefix)]
    pub cache_key_prefix: String,
    /// Part of every key; bump it to orphan all old entries.
    #[arg(
        long,
        global = true,
        env = "CACHE_VERSION",
        value_name = "CACHE_VERSION",
        default_value_t = 1
    )]
    pub cache_version: u32,
    /// Per Redis command, in milliseconds; a slower reply is a miss served from the database.
    #[arg(long, global = true, env = "CACHE_TIMEOUT_MS", value_name = "CACHE_TIMEOUT_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_timeout_ms: u64,
    /// Bound of the in-process cache, in bytes.
    #[arg(long, global = true, env = "CACHE_MAX_BYTES", value_name = "CACHE_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub cache_max_bytes: u64,
    /// Values larger than this many bytes are LZ4-compressed.
    #[arg(
        long,
        global = true,
        env = "CACHE_COMPRESS_OVER",
        value_name = "CACHE_COMPRESS_OVER",
        default_value_t = 1024
    )]
    pub cache_compress_over: usize,
    /// TTL in seconds of families without their own.
    #[arg(long, global = true, env = "CACHE_DEFAULT_TTL", value_name = "CACHE_DEFAULT_TTL", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_default_ttl: u64,
    /// TTL per key family in seconds, as `posts=600,popular=60`; only known families.
    #[arg(long, global = true, env = "CACHE_TTLS", value_name = "CACHE_TTLS", default_value = "", value_parser = parse_ttls)]
    pub cache_ttls: FamilyTtls,
    /// With Redis: keep hot entries and tag versions in process too (the near tier).
    #[arg(long, global = true, env = "CACHE_NEAR", value_name = "CACHE_NEAR", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub cache_near: bool,
    /// Bound of the near tier, in bytes.
    #[arg(long, global = true, env = "CACHE_NEAR_MAX_BYTES", value_name = "CACHE_NEAR_MAX_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub cache_near_max_bytes: u64,
    /// Longest a copy lives in the near tier, in seconds.
    #[arg(long, global = true, env = "CACHE_NEAR_TTL", value_name = "CACHE_NEAR_TTL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_near_ttl: u64,
    /// Which of the API routes the route table caches are cached (comma-separated path
    /// prefixes; no other route is cached whatever is listed).
    #[arg(long, global = true, env = "RESPONSE_CACHE_PREFIXES", value_name = "RESPONSE_CACHE_PREFIXES", default_value = DEFAULT_RESPONSE_PREFIXES, value_delimiter = ',', value_parser = parse_path_prefix)]
    pub response_cache_prefixes: Vec<String>,
    /// Server-side TTL of cached responses, in seconds.
    #[arg(
        long,
        global = true,
        env = "RESPONSE_CACHE_TTL",
        value_name = "RESPONSE_CACHE_TTL",
        default_value_t = 300
    )]
    pub response_cache_ttl: u64,
    /// `max-age` sent to clients for cached API responses, in seconds.
    #[arg(
        long,
        global = true,
        env = "API_MAX_AGE",
        value_name = "API_MAX_AGE",
        default_value_t = 60
    )]
    pub api_max_age: u64,
    /// Cache whole public pages for anonymous readers (signed-in admins always bypass it).
    #[arg(long, global = true, env = "PAGE_CACHE", value_name = "PAGE_CACHE", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub page_cache: bool,
    /// Server-side TTL of cached pages, in seconds (writes drop them at once anyway).
    #[arg(long, global = true, env = "PAGE_CACHE_TTL", value_name = "PAGE_CACHE_TTL", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub page_cache_ttl: u64,
    /// Seconds past its TTL a cached page or API response is still served, marked stale,
    /// when the database cannot render it (0: never).
    #[arg(
        long,
        global = true,
        env = "STALE_IF_ERROR",
        value_name = "STALE_IF_ERROR",
        default_value_t = 3600
    )]
    pub stale_if_error: u64,
    /// How often post views counted in memory are written, in seconds (the lag of the
    /// counts readers see).
    #[arg(long, global = true, env = "VIEW_FLUSH_INTERVAL", value_name = "VIEW_FLUSH_INTERVAL", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub view_flush_interval: u64,
    /// Warm the cache in the background at start-up (the site answers meanwhile).
    #[arg(long, global = true, env = "WARM_ON_START", value_name = "WARM_ON_START", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub warm_on_start: bool,
    /// After a write, re-warm the critical-path pages it dropped (home).
    #[arg(long, global = true, env = "WARM_AFTER_INVALIDATION", value_name = "WARM_AFTER_INVALIDATION", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub warm_after_invalidation: bool,
    /// Answer /metrics only with `Authorization: Bearer <CACHE_ADMIN_TOKEN>` (or, from this machine, the generated `$DATA_DIR/admin_token`)
    #[arg(long, global = true, env = "METRICS_REQUIRE_TOKEN", value_name = "METRICS_REQUIRE_TOKEN", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub metrics_require_token: bool,
    /// Bearer token of the cache admin API (full statistics, warm, clear; ≥ 16 characters); admins signed in can use it without it.
    #[arg(long, global = true, env = "CACHE_ADMIN_TOKEN", value_name = "CACHE_ADMIN_TOKEN", value_parser = parse_webhook_secret, hide_env_values = true)]
    pub cache_admin_token: Option<SecretKey>,
    /// HMAC key of `POST /api/cache/invalidate/` (≥ 16 characters); unset turns it off.
    #[arg(long, global = true, env = "CACHE_WEBHOOK_SECRET", value_name = "CACHE_WEBHOOK_SECRET", value_parser = parse_webhook_secret, hide_env_values = true)]
    pub cache_webhook_secret: Option<SecretKey>,
    /// Largest post the admin form accepts, in bytes of Markdown (longer ones are shown again with the error and the text kept).
    #[arg(long, global = true, env = "MAX_POST_BYTES", value_name = "MAX_POST_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1024..=64 << 20))]
    pub max_post_bytes: u64,
    /// Largest image the post editor uploads, in bytes.
    #[arg(long, global = true, env = "MAX_IMAGE_BYTES", value_name = "MAX_IMAGE_BYTES", default_value_t = 10 << 20, value_parser = clap::value_parser!(u64).range(1024..=100 << 20))]
    pub max_image_bytes: u64,
    /// Seconds without a request after which an admin must sign in again.
    #[arg(long, global = true, env = "SESSION_IDLE_TIMEOUT", value_name = "SESSION_IDLE_TIMEOUT", default_value_t = 2 * 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub session_idle_timeout: u64,
    /// Seconds after sign-in after which an admin must sign in again, active or not.
    #[arg(long, global = true, env = "SESSION_MAX_AGE", value_name = "SESSION_MAX_AGE", default_value_t = 12 * 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub session_max_age: u64,
    /// Reverse proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For is believed; the client is the nearest address not in this list.
    #[arg(long, global = true, env = "TRUSTED_PROXIES", value_name = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_ip_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Contact messages one client address may send per hour.
    #[arg(long, global = true, env = "CONTACT_RATE_LIMIT", value_name = "CONTACT_RATE_LIMIT", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub contact_rate_limit: u32,
    /// Seconds between two writes of this instance's cache history to the database (per-minute rows; 1 to 60).
    #[arg(long, global = true, env = "HISTORY_FLUSH_INTERVAL", value_name = "HISTORY_FLUSH_INTERVAL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub history_flush_interval: u64,
    /// Edge caches in front of the site, comma-separated: varnish://host:port, fastly://SERVICE_ID, cloudflare://ZONE_ID (purged by tag), nginx://host:port, cloudfront://DISTRIBUTION_ID (purged by path); purges are durable.
    #[arg(long, global = true, env = "EDGE_CACHE_URLS", value_name = "EDGE_CACHE_URLS", value_delimiter = ',', value_parser = self::edge::EdgeUrl::parse)]
    pub edge_cache_urls: Vec<self::edge::EdgeUrl>,
    /// Shared secret sent with Varnish purges (`X-Purge-Secret`; the VCL checks it; ≥ 16 characters).
    #[arg(long, global = true, env = "EDGE_PURGE_SECRET", value_name = "EDGE_PURGE_SECRET", value_parser = parse_webhook_secret, hide_env_values = true)]
    pub edge_purge_secret: Option<SecretKey>,
    /// Seconds an edge keeps a page or API answer (s-maxage); writes purge it sooner.
    #[arg(
        long,
        global = true,
        env = "EDGE_TTL",
        value_name = "EDGE_TTL",
        default_value_t = 86_400
    )]
    pub edge_ttl: u64,
    /// Seconds an edge may serve a page stale while it fetches a new one.
    #[arg(
        long,
        global = true,
        env = "EDGE_STALE_WHILE_REVALIDATE",
        value_name = "EDGE_STALE_WHILE_REVALIDATE",
        default_value_t = 30
    )]
    pub edge_stale_while_revalidate: u64,
    /// Seconds an edge may serve a page stale while the site answers with errors or not at all.
    #[arg(
        long,
        global = true,
        env = "EDGE_STALE_IF_ERROR",
        value_name = "EDGE_STALE_IF_ERROR",
        default_value_t = 86_400
    )]
    pub edge_stale_if_error: u64,
    /// Milliseconds after a purge before the same tags are purged again (drops a copy the edge fetched while the write committed).
    #[arg(
        long,
        global = true,
        env = "EDGE_PURGE_REPEAT_AFTER_MS",
        value_name = "EDGE_PURGE_REPEAT_AFTER_MS",
        default_value_t = 5_000
    )]
    pub edge_purge_repeat_after_ms: u64,
    /// Longest wait, in seconds, between two attempts at a purge an edge refused.
    #[arg(long, global = true, env = "EDGE_PURGE_RETRY_MAX", value_name = "EDGE_PURGE_RETRY_MAX", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub edge_purge_retry_max: u64,
    /// Milliseconds a write waits for the edges to acknowledge its purge before it returns (the purge goes on after).
    #[arg(
        long,
        global = true,
        env = "EDGE_PURGE_WAIT_MS",
        value_name = "EDGE_PURGE_WAIT_MS",
        default_value_t = 1_000
    )]
    pub edge_purge_wait_ms: u64,
    /// Fastly API token (purges by surrogate key).
    #[arg(long, global = true, env = "FASTLY_API_TOKEN", value_name = "FASTLY_API_TOKEN", value_parser = parse_api_token, hide_env_values = true)]
    pub fastly_api_token: Option<SecretKey>,
    /// Fastly's API.
    #[arg(long, global = true, env = "FASTLY_API_URL", value_name = "FASTLY_API_URL", default_value = "https://api.fastly.com", value_parser = parse_site_url)]
    pub fastly_api_url: String,
    /// Cloudflare API token with the Cache Purge permission.
    #[arg(long, global = true, env = "CLOUDFLARE_API_TOKEN", value_name = "CLOUDFLARE_API_TOKEN", value_parser = parse_api_token, hide_env_values = true)]
    pub cloudflare_api_token: Option<SecretKey>,
    /// Cloudflare's API.
    #[arg(long, global = true, env = "CLOUDFLARE_API_URL", value_name = "CLOUDFLARE_API_URL", default_value = "https://api.cloudflare.com/client/v4", value_parser = parse_site_url)]
    pub cloudflare_api_url: String,
    /// AWS access key for a cloudfront:// edge (cloudfront:CreateInvalidation).
    #[arg(long, global = true, env = "AWS_ACCESS_KEY_ID", value_name = "AWS_ACCESS_KEY_ID", value_parser = parse_api_token)]
    pub aws_access_key_id: Option<SecretKey>,
    /// Its secret.
    #[arg(long, global = true, env = "AWS_SECRET_ACCESS_KEY", value_name = "AWS_SECRET_ACCESS_KEY", value_parser = parse_api_token, hide_env_values = true)]
    pub aws_secret_access_key: Option<SecretKey>,
    /// With temporary credentials (an assumed role): their session token.
    #[arg(long, global = true, env = "AWS_SESSION_TOKEN", value_name = "AWS_SESSION_TOKEN", value_parser = parse_api_token, hide_env_values = true)]
    pub aws_session_token: Option<SecretKey>,
    /// CloudFront's API, for a stand-in [default: $AWS_ENDPOINT_URL, else https://cloudfront.amazonaws.com]
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL_CLOUDFRONT", value_name = "AWS_ENDPOINT_URL_CLOUDFRONT", value_parser = parse_site_url)]
    pub aws_endpoint_url_cloudfront: Option<String>,
    /// Every AWS API's endpoint, for a stand-in (AWS's own convention).
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL", value_name = "AWS_ENDPOINT_URL", value_parser = parse_site_url)]
    pub aws_endpoint_url: Option<String>,
    /// Paths remembered for the path edges (nginx://, cloudfront://) to purge; past it a new path is sent with s-maxage=0.
    #[arg(long, global = true, env = "EDGE_PATHS_MAX", value_name = "EDGE_PATHS_MAX", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub edge_paths_max: u64,
    /// Listen address, host:port (port 0 picks a free one).
    #[arg(long, global = true, env = "BIND", value_name = "BIND", default_value = DEFAULT_BIND, value_parser = parse_bind)]
    pub bind: String,
    /// Public URL for absolute links (feed, sitemap, API pagination) [default: http://$BIND]
    #[arg(long, global = true, env = "SITE_URL", value_name = "SITE_URL", value_parser = parse_site_url)]
    pub site_url: Option<String>,
    /// Time zone of the times the admin enters and sees (scheduled posts), an IANA name [default: UTC]
    #[arg(long, global = true, env = "SITE_TIMEZONE", value_name = "SITE_TIMEZONE", default_value = "UTC", value_parser = parse_timezone)]
    pub site_timezone: jiff::tz::TimeZone,
    /// Signs and encrypts the session cookie (≥ 32 characters) [default: generated into $DATA_DIR/secret_key]
    #[arg(long, global = true, env = "SECRET_KEY", value_name = "SECRET_KEY", value_parser = parse_secret_key, hide_env_values = true)]
    pub secret_key: Option<SecretKey>,
    /// Load the fixtures into an empty database at start-up.
    #[arg(long, global = true, env = "SEED_ON_EMPTY", value_name = "SEED_ON_EMPTY", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub seed_on_empty: bool,
    /// Debug mode: detailed error pages and cache debug panels.
    #[arg(long, global = true, env = "APP_DEBUG", value_name = "APP_DEBUG", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub app_debug: bool,
    /// HTTP worker threads [default: one per core]
    #[arg(long, global = true, env = "WORKERS", value_name = "WORKERS", value_parser = clap::value_parser!(u64).range(1..))]
    pub workers: Option<u64>,
}

/// `CACHE_TTLS`, parsed.
#[derive(Clone, Debug, Default)]
pub struct FamilyTtls(pub Vec<(String, Duration)>);

/// Only for parsing `Settings` on its own (tests, `from_lookup`).
#[derive(clap::Parser)]
#[command(name = "folio")]
struct SettingsOnly {
    #[command(flatten)]
    settings: Settings,
}

impl Settings {
    /// An empty variable (`WORKERS=` in `.env`) means "unset", as it always did: drop
    /// them from the environment before clap reads it. Call before threads start.
    pub fn forget_empty_variables() {
        use clap::CommandFactory;
        for arg in SettingsOnly::command().get_arguments() {
            if let Some(var) = arg.get_env() {
                if std::env::var(var).is_ok_and(|v| v.trim().is_empty()) {
                    std::env::remove_var(var);
                }
            }
        }
    }

    /// Reads the settings from `get` (a variable lookup) and nothing else: neither the
    /// process environment nor `.env`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        use clap::{CommandFactory, FromArgMatches};
        let command = SettingsOnly::command().mut_args(|a| a.env(None::<&str>));
        let mut args = vec!["folio".to_string()];
        for arg in SettingsOnly::command().get_arguments() {
            let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            if let Some(value) = get(&var.to_string_lossy()).filter(|v| !v.trim().is_empty()) {
                args.push(format!("--{long}={value}"));
            }
        }
        let matches = command
            .try_get_matches_from(args)
            .map_err(|e| ConfigError::from_clap(&e))?;
        SettingsOnly::from_arg_matches(&matches)
            .map(|s| s.settings)
            .map_err(|e| ConfigError::from_clap(&e))
    }
}

impl ConfigError {
    /// One line naming the variable, from clap's error about a bad value.
    pub fn from_clap(e: &clap::Error) -> ConfigError {
        use clap::error::{ContextKind, ContextValue};
        let arg = match e.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(s)) => s.clone(),
            _ => String::new(),
        };
        // "--cache-url <CACHE_URL>": the value name is the variable.
        let var = arg
            .split_once('<')
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(name, _)| name.to_string())
            .unwrap_or(arg);
        let reason = std::error::Error::source(e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.kind().to_string());
        ConfigError {
            var: Box::leak(var.into_boxed_str()),
            reason,
        }
    }
}

impl Config {
    /// The token the command line sends to the server: the configured one, else the one
    /// the server on this machine generated (see `local_admin_token`).
    pub fn admin_token(&self) -> Option<&SecretKey> {
        self.cache_admin_token
            .as_ref()
            .or(self.local_admin_token.as_ref())
    }

    /// A server on PostgreSQL or Redis is one of several instances, or may become one: each
    /// generating its own key would break every session and CSRF token as a load
    /// balancer switches between them, so SECRET_KEY must be given.
    pub fn check_shared_secret(&self) -> Result<(), ConfigError> {
        let shared =
            matches!(self.database_url, DatabaseUrl::Postgres(_)) || self.cache.url.is_redis();
        if let Err((var, reason)) = self.edge.check() {
            return Err(invalid(var, reason));
        }
        if shared && self.secret_key_from_file {
            return Err(invalid(
                "SECRET_KEY",
                "must be set (the same on every instance) when DATABASE_URL is PostgreSQL or CACHE_URL is Redis",
            ));
        }
        Ok(())
    }

    /// Builds the configuration from any variable lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Config::from_settings(Settings::from_lookup(get)?)
    }

    /// Resolves what depends on other settings (database path, site URL, secret key).
    pub fn from_settings(s: Settings) -> Result<Config, ConfigError> {
        let database_url = s.database_url.unwrap_or_else(|| {
            DatabaseUrl::Sqlite(s.data_dir.join("folio.db").to_string_lossy().into_owned())
        });
        let local_admin_token = match s.cache_admin_token {
            Some(_) => None,
            None => Some(SecretKey::load_or_generate_in(&s.data_dir, "admin_token")?),
        };
        let secret_key_from_file = s.secret_key.is_none();
        let secret_key = match s.secret_key {
            Some(key) => key,
            None => SecretKey::load_or_generate(&s.data_dir)?,
        };
        let site_url = s.site_url.unwrap_or_else(|| format!("http://{}", s.bind));
        let mut cache = CacheConfig::new(s.cache_url, &s.cache_key_prefix);
        cache.version = s.cache_version;
        cache.timeout = Duration::from_millis(s.cache_timeout_ms);
        cache.max_bytes = s.cache_max_bytes;
        cache.compress_over = s.cache_compress_over;
        cache.default_ttl = Duration::from_secs(s.cache_default_ttl);
        cache.family_ttls.extend(s.cache_ttls.0);
        cache.near = s
            .cache_near
            .then(|| crate::cache::backend::redis::NearOptions {
                max_bytes: s.cache_near_max_bytes,
                max_ttl: Duration::from_secs(s.cache_near_ttl),
            });
        // A tag version outlives every entry stored under it, served stale or not.
        cache.tag_ttl = [
            cache.longest_ttl(),
            Duration::from_secs(s.page_cache_ttl),
            Duration::from_secs(s.response_cache_ttl),
        ]
        .into_iter()
        .max()
        .unwrap_or_default()
            + Duration::from_secs(s.stale_if_error)
            + Duration::from_secs(3600);
        Ok(Config {
            database_url,
            cache,
            bind: s.bind,
            secret_key,
            secret_key_from_file,
            data_dir: s.data_dir,
            seed_on_empty: s.seed_on_empty,
            debug: s.app_debug,
            site_url: site_url.trim_end_matches('/').to_string(),
            site_timezone: s.site_timezone,
            workers: s.workers.map_or_else(
                || {
                    std::thread::available_parallelism()
                        .map(|n| n.get())
                        .unwrap_or(2)
                },
                |n| n as usize,
            ),
            response_cache_prefixes: s.response_cache_prefixes,
            response_cache_ttl: Duration::from_secs(s.response_cache_ttl),
            api_max_age: Duration::from_secs(s.api_max_age),
            page_cache: s.page_cache,
            page_cache_ttl: Duration::from_secs(s.page_cache_ttl),
            stale_if_error: Duration::from_secs(s.stale_if_error),
            view_flush_interval: Duration::from_secs(s.view_flush_interval),
            warm_on_start: s.warm_on_start,
            warm_after_invalidation: s.warm_after_invalidation,
            local_admin_token,
            cache_admin_token: s.cache_admin_token,
            metrics_require_token: s.metrics_require_token,
            webhook_secret: s.cache_webhook_secret,
            max_post_bytes: s.max_post_bytes as usize,
            max_image_bytes: s.max_image_bytes as usize,
            session_idle: Duration::from_secs(s.session_idle_timeout),
            session_max_age: Duration::from_secs(s.session_max_age),
            trusted_proxies: s.trusted_proxies,
            contact_per_hour: s.contact_rate_limit,
            history_flush_interval: Duration::from_secs(s.history_flush_interval),
            edge: self::edge::EdgeConfig {
                edges: s.edge_cache_urls,
                purge_secret: s.edge_purge_secret,
                fastly_token: s.fastly_api_token,
                fastly_api: s.fastly_api_url,
                cloudflare_token: s.cloudflare_api_token,
                cloudflare_api: s.cloudflare_api_url,
                aws: self::edge::AwsConfig {
                    access_key_id: s.aws_access_key_id.map(|k| k.0),
                    secret_access_key: s.aws_secret_access_key,
                    session_token: s.aws_session_token,
                    cloudfront_api: s
                        .aws_endpoint_url_cloudfront
                        .or(s.aws_endpoint_url)
                        .unwrap_or_else(|| self::edge::AwsConfig::default().cloudfront_api),
                },
                path_budget: s.edge_paths_max,
                ttl: Duration::from_secs(s.edge_ttl),
                stale_while_revalidate: Duration::from_secs(s.edge_stale_while_revalidate),
                stale_if_error: Duration::from_secs(s.edge_stale_if_error),
                repeat_after: Duration::from_millis(s.edge_purge_repeat_after_ms),
                retry_max: Duration::from_secs(s.edge_purge_retry_max),
                write_wait: Duration::from_millis(s.edge_purge_wait_ms),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_schemes() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/x.db").unwrap(),
            DatabaseUrl::Sqlite("data/x.db".into())
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://u@h/db").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
        let err = DatabaseUrl::parse("mysql://h/db").unwrap_err();
        assert!(err.contains("mysql"));
    }

    #[test]
    fn postgres_password_is_not_printed() {
        let url = DatabaseUrl::parse("postgres://user:hunter2@localhost/db").unwrap();
        assert!(!format!("{url:?}").contains("hunter2"));
    }

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_apply_and_values_override_them() {
        let dir = tempfile::TempDir::new().unwrap();
        let data = dir.path().to_str().unwrap();
        let config = Config::from_lookup(lookup(&[("DATA_DIR", data)])).unwrap();
        assert_eq!(config.bind, DEFAULT_BIND);
        assert_eq!(config.cache.url, CacheUrl::Memory);
        assert_eq!(config.cache.timeout, Duration::from_millis(100));
        assert!(config.cache.near.is_some());
        assert_eq!(config.response_cache_prefixes, vec!["/api/"]);
        assert_eq!(config.site_url, "http://127.0.0.1:8080");
        let config = Config::from_lookup(lookup(&[
            ("DATA_DIR", data),
            ("CACHE_NEAR", "off"),
            ("CACHE_TTLS", "posts=5, popular=7"),
            ("BIND", "0.0.0.0:9000"),
            ("RESPONSE_CACHE_PREFIXES", "/api/posts/"),
        ]))
        .unwrap();
        assert!(config.cache.near.is_none());
        assert_eq!(config.cache.family_ttls["posts"], Duration::from_secs(5));
        assert_eq!(config.cache.family_ttls["popular"], Duration::from_secs(7));
        assert_eq!(config.response_cache_prefixes, vec!["/api/posts/"]);
        assert_eq!(config.site_url, "http://0.0.0.0:9000");
    }

    #[test]
    fn unknown_ttl_families_are_refused() {
        let err = Config::from_lookup(lookup(&[("CACHE_TTLS", "postz=60")])).unwrap_err();
        assert_eq!(err.var, "CACHE_TTLS");
        assert!(
            err.reason.contains("unknown family 'postz'"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("DATABASE_URL", "mysql://h/db"),
            ("CACHE_TIMEOUT_MS", "0"),
            ("CACHE_NEAR", "maybe"),
            ("WORKERS", "none"),
            ("RESPONSE_CACHE_PREFIXES", "api"),
        ] {
            let err = Config::from_lookup(lookup(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
        let err =
            Config::from_lookup(|name| (name == "CACHE_URL").then(|| "memcached://x".to_string()))
                .unwrap_err();
        assert_eq!(err.var, "CACHE_URL");
        assert_eq!(validate_bind("localhost").unwrap_err().var, "BIND");
        assert_eq!(
            SecretKey::new("short".into()).unwrap_err().var,
            "SECRET_KEY"
        );
    }
}
