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
}

pub fn run(config: Config, args: ClearArgs) -> anyhow::Result<()> {
    if config.cache.url == CacheUrl::Memory {
        eprintln!(
            "note: CACHE_URL is memory://, so a running server's cache lives in its own process; \
             this clears nothing there (use the invalidation webhook, or restart it)"
        );
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
