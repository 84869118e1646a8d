use super::{open_repository, runtime};
use crate::config::Config;

/// Rebuilds the search index from the posts, in one transaction (through the repository,
/// so cached search results are dropped too).
pub fn run(config: Config) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let repo = open_repository(&config).await?;
        let started = std::time::Instant::now();
        let n = repo.reindex().await?;
        println!(
            "search index rebuilt: {n} posts in {:.1?}",
            started.elapsed()
        );
        super::invalidate_on_the_server(&config, &[crate::content::invalidation::Model::Post])
            .await;
        Ok(())
    })
}
