use clap::Args;

use super::{open_repository, runtime};
use crate::config::Config;

#[derive(Debug, Args)]
pub struct CreateAdminArgs {
    /// The account's username (an existing account gets the new password).
    #[arg(long)]
    pub username: String,
}

const MIN_PASSWORD: usize = 10;

/// The password from ADMIN_PASSWORD, or asked twice on the terminal.
fn read_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("ADMIN_PASSWORD") {
        return Ok(password);
    }
    let first = rpassword::prompt_password("Password: ")?;
    let second = rpassword::prompt_password("Password (again): ")?;
    anyhow::ensure!(first == second, "the two passwords differ");
    Ok(first)
}

pub fn run(config: Config, args: CreateAdminArgs) -> anyhow::Result<()> {
    let username = args.username.trim().to_string();
    anyhow::ensure!(!username.is_empty(), "--username must not be empty");
    let password = read_password()?;
    anyhow::ensure!(
        password.chars().count() >= MIN_PASSWORD,
        "the password needs at least {MIN_PASSWORD} characters"
    );
    let hash = crate::web::admin::hash_password(&password)
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    runtime()?.block_on(async {
        open_repository(&config)
            .await?
            .upsert_admin(&username, &hash)
            .await?;
        println!("admin '{username}' can now sign in at /admin/login/");
        Ok(())
    })
}
