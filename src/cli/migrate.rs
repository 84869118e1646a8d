use crate::config::Config;
use crate::startup::StartupError;

pub fn run(config: Config) -> anyhow::Result<()> {
    let applied = super::runtime()?
        .block_on(crate::db::migrate(&config.database_url))
        .map_err(StartupError::from)?;
    println!(
        "applied {applied} migration(s) to {:?}",
        config.database_url
    );
    Ok(())
}
