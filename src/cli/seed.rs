use clap::Args;

use super::{open_repository, runtime};
use crate::config::Config;
use crate::content::seed;

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Also generate this many deterministic posts (for load tests).
    #[arg(long, default_value_t = 0)]
    pub posts: usize,
}

pub fn run(config: Config, args: SeedArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        // Seeding writes through the repository, so it invalidates what running servers
        // have cached (with a shared Redis; an in-process cache belongs to its process).
        let repo = open_repository(&config).await?;
        let report = seed::seed_fixtures(&repo).await?;
        println!("fixtures: {report}");
        if args.posts > 0 {
            let report = seed::seed_generated(&repo, args.posts).await?;
            println!("generated: {report}");
        }
        super::invalidate_on_the_server(&config, &crate::content::invalidation::Model::ALL).await;
        Ok(())
    })
}
