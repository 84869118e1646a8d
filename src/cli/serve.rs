use clap::Args;

use crate::config::Config;
use crate::startup::Application;

/// `serve` takes the settings (`folio serve --help` lists them; `--bind` sets where it
/// listens).
#[derive(Debug, Default, Args)]
pub struct ServeArgs {}

pub fn run(config: Config, _args: ServeArgs) -> anyhow::Result<()> {
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
