//! `folio analyze`: the running server's own measurements of its statements, cache
//! families, repetitions and slow statements, on a terminal and as JSON.

use crate::helpers::TestApp;
use crate::monitoring::{folio, ADMIN};

async fn analysis_after_traffic(app: &TestApp) {
    for _ in 0..3 {
        app.get("/blog/").await;
        app.get("/api/posts/").await;
        app.get("/about/").await;
    }
    let (ok, stdout, stderr) = folio(&["analyze", "--json", "--url", &app.address], ADMIN).await;
    assert!(ok, "{stderr}");
    let a: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(a["database"], app.state.repo.db().backend_name());
    let statements = a["statements"].as_array().unwrap();
    let posts = statements
        .iter()
        .find(|s| {
            s["statement"].as_str().unwrap().contains("posts")
                && s["statement"].as_str().unwrap().starts_with("SELECT")
        })
        .unwrap_or_else(|| panic!("a statement reading posts: {statements:?}"));
    assert!(posts["calls"].as_u64().unwrap() >= 1);
    assert!(posts["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(
        !posts["statement"].as_str().unwrap().contains("binds"),
        "values are left out"
    );
    // Pages answered from the cache spare what their first render cost.
    let saving = a["families_saving_most"].as_array().unwrap();
    let page = saving
        .iter()
        .find(|f| f["name"] == "page")
        .unwrap_or_else(|| panic!("{saving:?}"));
    assert!(page["hits"].as_u64().unwrap() >= 2 && page["ms"].as_f64().unwrap() > 0.0);
    assert!(a["families_costing_most"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "page"));
    let (ok, stdout, stderr) = folio(&["analyze", "--url", &app.address], ADMIN).await;
    assert!(ok, "{stderr}");
    for section in [
        "statements by total time",
        "spare the database most",
        "misses cost most",
        "N+1",
        "Slow statements",
        "Recommendations",
    ] {
        assert!(stdout.contains(section), "{section}: {stdout}");
    }
    // Columns line up: each statement starts under the header's "statement".
    let lines: Vec<&str> = stdout.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.trim_start().starts_with("calls"))
        .unwrap();
    let column = lines[header].find("statement").unwrap();
    for row in &lines[header + 1..header + 3] {
        assert!(
            row.get(column - 2..column) == Some("  ")
                && row[column..].starts_with(|c: char| c.is_ascii_alphabetic()),
            "misaligned:\n{}\n{row}",
            lines[header]
        );
    }
    // The same sections in the monitor's JSON, for the dashboard.
    let (_, monitor) = app.get_admin_json("/api/cache/monitor/").await;
    assert!(
        monitor["analysis"]["statements"].as_array().unwrap().len() >= statements.len().min(25)
    );
}

crate::on_both_backends! {
    async fn analyze_reports_statements_and_families(app: TestApp) {
        analysis_after_traffic(&app).await;
    }
}

#[actix_web::test]
async fn analyze_on_postgres_and_redis() {
    let Some(url) = crate::helpers::test_redis_url() else {
        return;
    };
    let prefix = crate::helpers::unique_prefix();
    let vars = [
        ("CACHE_URL", url.as_str()),
        ("CACHE_KEY_PREFIX", prefix.as_str()),
    ];
    let Some(app) = crate::helpers::spawn_app_with(crate::helpers::Backend::Postgres, &vars).await
    else {
        return;
    };
    analysis_after_traffic(&app).await;
    app.state.cache.clear().await;
}

/// Without the admin token the analysis is refused with a clear message.
#[actix_web::test]
async fn analyze_needs_the_admin_token() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite)
        .await
        .unwrap();
    let (ok, _, stderr) = folio(&["analyze", "--url", &app.address], &[]).await;
    assert!(!ok);
    assert!(stderr.contains("CACHE_ADMIN_TOKEN"), "{stderr}");
}
