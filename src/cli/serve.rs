use clap::Args;

use crate::config::{validate_bind, Config};
use crate::startup::Application;

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// host:port to listen on (overrides BIND).
    #[arg(long)]
    pub bind: Option<String>,
}

pub fn run(mut config: Config, args: ServeArgs) -> anyhow::Result<()> {
    if let Some(bind) = args.bind {
        validate_bind(&bind)?;
        config.bind = bind;
    }
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config).await?;
        let state = app.state();
        tracing::info!(
            database = state.repo.db().backend_name(),
            "listening on http://{}",
            display_addr(&state.config.bind, app.port())
        );
        println!(
            "Folio is running at http://{}/ (Ctrl-C to stop)",
            display_addr(&state.config.bind, app.port())
        );
        app.run_until_stopped().await?;
        Ok(())
    })
}

fn display_addr(bind: &str, port: u16) -> String {
    let host = bind.rsplit_once(':').map(|(h, _)| h).unwrap_or(bind);
    format!("{host}:{port}")
}
