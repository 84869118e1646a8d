use crate::config::Config;
use crate::startup::StartupError;

/// Applies pending migrations. A migration may rewrite rows, so when any was applied
/// every cached read of the content is dropped, on a live site too.
pub fn run(config: Config) -> anyhow::Result<()> {
    super::runtime()?.block_on(async {
        let applied = crate::db::migrate(&config.database_url)
            .await
            .map_err(StartupError::from)?;
        println!(
            "applied {applied} migration(s) to {:?}",
            config.database_url
        );
        if applied > 0 {
            let cache = crate::cache::CacheManager::new(config.cache.clone()).map_err(StartupError::from)?;
            if config.cache.url.is_redis()
                && (cache.check(std::time::Duration::from_secs(5)).await.is_err()
                    || !cache.invalidate_tags(&crate::content::invalidation::ALL_TAGS).await)
            {
                eprintln!("note: the cache did not accept the invalidation; run `folio clear` once it answers");
            }
            super::invalidate_on_the_server(&config, &crate::content::invalidation::Model::ALL).await;
        }
        Ok(())
    })
}
