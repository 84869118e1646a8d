//! Configuration from environment variables (a `.env` file is read first if present).
//! Every value is validated here so start-up fails with one line naming the variable.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::RngCore;

use crate::cache::{CacheConfig, CacheUrl};

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
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let raw = raw.trim();
        if let Some(path) = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(invalid("DATABASE_URL", "sqlite:// needs a file path"));
            }
            return Ok(DatabaseUrl::Sqlite(path.to_string()));
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            url::Url::parse(raw).map_err(|e| invalid("DATABASE_URL", e.to_string()))?;
            return Ok(DatabaseUrl::Postgres(raw.to_string()));
        }
        let scheme = raw.split("://").next().unwrap_or(raw);
        Err(invalid(
            "DATABASE_URL",
            format!("unsupported scheme '{scheme}' (expected sqlite://PATH or postgres://…)"),
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

/// The key that signs and encrypts cookies. Never printed.
#[derive(Clone)]
pub struct SecretKey(String);

impl SecretKey {
    pub fn new(value: String) -> Result<Self, ConfigError> {
        if value.len() < 32 {
            return Err(invalid("SECRET_KEY", "must be at least 32 characters"));
        }
        Ok(SecretKey(value))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads `data_dir/secret_key`, or generates and persists a new random key there, so
    /// sessions survive restarts without a hard-coded default.
    pub fn load_or_generate(data_dir: &Path) -> Result<Self, ConfigError> {
        let file = data_dir.join("secret_key");
        if let Ok(existing) = std::fs::read_to_string(&file) {
            return SecretKey::new(existing.trim().to_string());
        }
        let mut bytes = [0u8; 64];
        rand::rng().fill_bytes(&mut bytes);
        let key = hex::encode(bytes);
        std::fs::create_dir_all(data_dir)
            .and_then(|_| write_private(&file, &key))
            .map_err(|e| {
                invalid(
                    "SECRET_KEY",
                    format!(
                        "unset, and cannot persist a generated one to {}: {e}",
                        file.display()
                    ),
                )
            })?;
        Ok(SecretKey(key))
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: DatabaseUrl,
    pub cache: CacheConfig,
    /// host:port to listen on; port 0 picks a free port (tests).
    pub bind: String,
    pub secret_key: SecretKey,
    pub data_dir: PathBuf,
    /// Load the fixtures when the database has no content yet (first run).
    pub seed_on_empty: bool,
    /// Debug mode: detailed error pages and cache debug panels.
    pub debug: bool,
    /// Public base URL used in the feed and sitemap (absolute links are required there).
    pub site_url: String,
    /// HTTP worker threads (default: one per core).
    pub workers: usize,
    /// Path prefixes whose GET responses are cached whole.
    pub response_cache_prefixes: Vec<String>,
    pub response_cache_ttl: Duration,
    /// `max-age` sent to clients for cached API responses.
    pub api_max_age: Duration,
    /// Signs invalidation webhook requests; None turns the webhook off.
    pub webhook_secret: Option<SecretKey>,
}

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_RESPONSE_PREFIXES: &[&str] = &[
    "/api/posts/",
    "/api/personal-info/",
    "/api/social-links/",
    "/api/ai-tools/",
];

impl Config {
    /// Reads the process environment (after loading `.env` if present).
    pub fn from_env() -> Result<Config, ConfigError> {
        let _ = dotenvy::dotenv();
        Config::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Builds the configuration from any variable lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let data_dir = PathBuf::from(get("DATA_DIR").unwrap_or_else(|| "data".into()));
        let database_url = match get("DATABASE_URL") {
            Some(raw) => DatabaseUrl::parse(&raw)?,
            None => DatabaseUrl::Sqlite(data_dir.join("folio.db").to_string_lossy().into_owned()),
        };
        let cache = cache_config(&get)?;
        let bind = get("BIND").unwrap_or_else(|| DEFAULT_BIND.into());
        validate_bind(&bind)?;
        let secret_key = match get("SECRET_KEY") {
            Some(v) => SecretKey::new(v)?,
            None => SecretKey::load_or_generate(&data_dir)?,
        };
        let debug = parse_bool("APP_DEBUG", get("APP_DEBUG"))?.unwrap_or(false);
        let seed_on_empty = parse_bool("SEED_ON_EMPTY", get("SEED_ON_EMPTY"))?.unwrap_or(true);
        let site_url = get("SITE_URL").unwrap_or_else(|| format!("http://{bind}"));
        url::Url::parse(&site_url).map_err(|e| invalid("SITE_URL", e.to_string()))?;
        let workers = match get("WORKERS") {
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid("WORKERS", format!("'{v}' is not a positive number")))?,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        };
        let response_cache_prefixes = get("RESPONSE_CACHE_PREFIXES")
            .map(|v| {
                v.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_else(|| {
                DEFAULT_RESPONSE_PREFIXES
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
            });
        if let Some(bad) = response_cache_prefixes.iter().find(|p| !p.starts_with('/')) {
            return Err(invalid(
                "RESPONSE_CACHE_PREFIXES",
                format!("'{bad}' is not a path (start it with /)"),
            ));
        }
        let seconds = |var: &'static str, default: u64| -> Result<Duration, ConfigError> {
            match get(var) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| invalid(var, format!("'{v}' is not a number of seconds"))),
            }
        };
        let response_cache_ttl = seconds("RESPONSE_CACHE_TTL", 300)?;
        let api_max_age = seconds("API_MAX_AGE", 60)?;
        let webhook_secret = match get("CACHE_WEBHOOK_SECRET") {
            None => None,
            Some(v) if v.len() >= 16 => Some(SecretKey(v)),
            Some(_) => {
                return Err(invalid(
                    "CACHE_WEBHOOK_SECRET",
                    "must be at least 16 characters",
                ))
            }
        };
        Ok(Config {
            webhook_secret,
            response_cache_prefixes,
            response_cache_ttl,
            api_max_age,
            workers,
            database_url,
            cache,
            bind,
            secret_key,
            data_dir,
            seed_on_empty,
            debug,
            site_url: site_url.trim_end_matches('/').to_string(),
        })
    }
}

fn cache_config(get: &impl Fn(&str) -> Option<String>) -> Result<CacheConfig, ConfigError> {
    let url = CacheUrl::parse(&get("CACHE_URL").unwrap_or_default())
        .map_err(|reason| invalid("CACHE_URL", reason))?;
    let prefix = get("CACHE_KEY_PREFIX").unwrap_or_else(|| "folio".into());
    if !prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(invalid(
            "CACHE_KEY_PREFIX",
            "use only letters, digits, '_', '-' and '.'",
        ));
    }
    let mut cache = CacheConfig::new(url, &prefix);
    let number = |var: &'static str| -> Result<Option<u64>, ConfigError> {
        get(var)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| invalid(var, format!("'{v}' is not a whole number")))
            })
            .transpose()
    };
    if let Some(v) = number("CACHE_VERSION")? {
        cache.version = u32::try_from(v).map_err(|_| invalid("CACHE_VERSION", "too large"))?;
    }
    if let Some(ms) = number("CACHE_TIMEOUT_MS")? {
        cache.timeout = Duration::from_millis(ms.max(1));
    }
    if let Some(bytes) = number("CACHE_MAX_BYTES")? {
        cache.max_bytes = bytes;
    }
    if let Some(bytes) = number("CACHE_COMPRESS_OVER")? {
        cache.compress_over = bytes as usize;
    }
    if let Some(secs) = number("CACHE_DEFAULT_TTL")? {
        cache.default_ttl = Duration::from_secs(secs.max(1));
    }
    if let Some(near) = parse_bool("CACHE_NEAR", get("CACHE_NEAR"))? {
        if !near {
            cache.near = None;
        }
    }
    if let Some(near) = cache.near.as_mut() {
        if let Some(bytes) = number("CACHE_NEAR_MAX_BYTES")? {
            near.max_bytes = bytes;
        }
        if let Some(secs) = number("CACHE_NEAR_TTL")? {
            near.max_ttl = Duration::from_secs(secs.max(1));
        }
    }
    if let Some(list) = get("CACHE_TTLS") {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let parsed = item
                .split_once('=')
                .and_then(|(f, s)| Some((f.trim(), s.trim().parse::<u64>().ok()?)));
            let Some((family, secs)) = parsed else {
                return Err(invalid(
                    "CACHE_TTLS",
                    format!("'{item}' is not family=seconds"),
                ));
            };
            cache
                .family_ttls
                .insert(family.to_string(), Duration::from_secs(secs.max(1)));
        }
    }
    Ok(cache)
}

pub fn validate_bind(bind: &str) -> Result<(), ConfigError> {
    let (host, port) = bind
        .rsplit_once(':')
        .ok_or_else(|| invalid("BIND", format!("'{bind}' is not host:port")))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(invalid("BIND", format!("'{bind}' is not host:port")));
    }
    Ok(())
}

fn parse_bool(var: &'static str, value: Option<String>) -> Result<Option<bool>, ConfigError> {
    match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(None),
        Some("1" | "true" | "yes" | "on") => Ok(Some(true)),
        Some("0" | "false" | "no" | "off") => Ok(Some(false)),
        Some(other) => Err(invalid(
            var,
            format!("'{other}' is not a boolean (use true or false)"),
        )),
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
        assert_eq!(err.var, "DATABASE_URL");
        assert!(err.to_string().contains("mysql"));
    }

    #[test]
    fn postgres_password_is_not_printed() {
        let url = DatabaseUrl::parse("postgres://user:hunter2@localhost/db").unwrap();
        assert!(!format!("{url:?}").contains("hunter2"));
    }

    #[test]
    fn bad_values_name_their_variable() {
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
