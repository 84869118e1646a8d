use clap::Args;

use crate::cache::CacheManager;
use crate::cache::CacheUrl;
use crate::config::Config;
use crate::startup::StartupError;

#[derive(Debug, Args)]
pub struct ClearArgs {
    /// Only keys matching this glob (after `{prefix}:{version}:`), e.g. 'blog_*' or
    /// 'fragment:*'. Without it, every key of this site's prefix.
    #[arg(long)]
    pub pattern: Option<String>,
    /// With `memory://`: the running server to ask [default: http://$BIND]
    #[arg(long)]
    pub url: Option<String>,
}

pub fn run(config: Config, args: ClearArgs) -> anyhow::Result<()> {
    if config.cache.url == CacheUrl::Memory {
        return ask_the_server(&config, &args);
    }
    super::runtime()?.block_on(async {
        let cache = CacheManager::new(config.cache.clone()).map_err(StartupError::from)?;
        cache
            .check(std::time::Duration::from_secs(5))
            .await
            .map_err(|e| anyhow::anyhow!("CACHE_URL: the cache does not answer: {e}"))?;
        let deleted = match &args.pattern {
            Some(pattern) => cache.delete_pattern(pattern).await,
            None => cache.clear().await,
        };
        anyhow::ensure!(
            cache.stats().totals.errors == 0,
            "the cache reported errors while clearing; see the log"
        );
        println!("deleted {deleted} key(s)");
        Ok(())
    })
}

/// `memory://` lives in the server's process: ask it (`POST /api/cache/clear/`), with the
/// configured token or the one it generated on this machine.
fn ask_the_server(config: &Config, args: &ClearArgs) -> anyhow::Result<()> {
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.bind));
    let base = base.trim_end_matches('/').to_string();
    eprintln!("CACHE_URL is memory://: the cache lives in the running server's process, so this asks it ({base}/api/cache/clear/)");
    let token = config.admin_token().ok_or_else(|| {
        anyhow::anyhow!("CACHE_ADMIN_TOKEN must be set (the same as the server's) to ask it")
    })?;
    let body = match &args.pattern {
        Some(pattern) => serde_json::json!({ "pattern": pattern }),
        None => serde_json::json!({ "all": true }),
    };
    super::runtime()?.block_on(async {
        let res = reqwest::Client::new()
            .post(format!("{base}/api/cache/clear/"))
            .bearer_auth(token.expose())
            .json(&body)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("the server at {base} does not answer: {e}"))?;
        let status = res.status();
        let answer: serde_json::Value = res.json().await.unwrap_or_default();
        if !status.is_success() {
            return Err(super::refused(&base, status, answer));
        }
        println!("deleted {} key(s)", answer["deleted"]);
        Ok(())
    })
}
