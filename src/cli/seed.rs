use clap::Args;

use crate::cache::CacheManager;
use crate::config::Config;
use crate::content::{seed, Repository};
use crate::db::{self, Db};
use crate::startup::StartupError;

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Also generate this many deterministic posts (for load tests).
    #[arg(long, default_value_t = 0)]
    pub posts: usize,
}

pub fn run(config: Config, args: SeedArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        db::migrate(&config.database_url)
            .await
            .map_err(StartupError::from)?;
        let db = Db::connect(&config.database_url)
            .await
            .map_err(StartupError::from)?;
        // Seeding writes through the repository, so it invalidates what running servers
        // have cached (with a shared Redis; an in-process cache belongs to its process).
        let cache = CacheManager::new(config.cache.clone()).map_err(StartupError::from)?;
        let repo = Repository::new(db, cache);
        let report = seed::seed_fixtures(&repo).await?;
        println!("fixtures: {report}");
        if args.posts > 0 {
            let report = seed::seed_generated(&repo, args.posts).await?;
            println!("generated: {report}");
        }
        Ok(())
    })
}
