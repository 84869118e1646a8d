//! Several instances: what must be shared between them.

use std::collections::HashMap;

/// Instances that each generate a key would break every session and CSRF token as the
/// balancer switches between them: with PostgreSQL or Redis, start-up wants SECRET_KEY.
#[actix_web::test]
async fn a_shared_deployment_needs_a_secret_key() {
    let dir = tempfile::TempDir::new().unwrap();
    let data_dir = dir.path().to_string_lossy().into_owned();
    let sqlite = format!("sqlite://{}/folio.db", data_dir);
    let start = |vars: Vec<(&str, String)>| {
        let vars: HashMap<String, String> = vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        async move {
            let config = folio::config::Config::from_lookup(|name| vars.get(name).cloned()).unwrap();
            folio::startup::Application::build(config).await.map(|_| ())
        }
    };
    let base = || vec![("DATA_DIR", data_dir.clone()), ("BIND", "127.0.0.1:0".to_string()), ("WARM_ON_START", "false".to_string())];
    let mut redis = base();
    redis.extend([("DATABASE_URL", sqlite.clone()), ("CACHE_URL", "redis://127.0.0.1:1".to_string())]);
    let err = start(redis).await.expect_err("refused");
    let line = err.to_string();
    assert!(line.contains("SECRET_KEY: must be set") && line.contains("every instance") && !line.contains('\n'), "{line}");
    let mut postgres = base();
    postgres.push(("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none".to_string()));
    assert!(start(postgres).await.expect_err("refused").to_string().contains("SECRET_KEY: must be set"));
    // One instance on SQLite and the in-process cache keeps its generated key.
    let mut embedded = base();
    embedded.push(("DATABASE_URL", sqlite));
    start(embedded).await.expect("the embedded default starts without a key");
}
