use crate::config::Config;

pub fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let applied = runtime
        .block_on(crate::db::migrate(&config.database_url))
        .map_err(crate::startup::StartupError::from)?;
    println!(
        "applied {applied} migration(s) to {:?}",
        config.database_url
    );
    Ok(())
}
