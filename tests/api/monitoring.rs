//! Monitoring: `/metrics` parses as Prometheus text and labels requests by route
//! pattern; the monitor API ranks families and recommends; the `monitor` command.

use crate::on_both_app_caches;

on_both_app_caches! {
    async fn metrics_parse_as_prometheus_text_with_bounded_labels(app: TestApp) {
        for _ in 0..3 {
            app.get("/blog/stampedes-and-single-flight/").await;
            app.get("/blog/markdown-is-enough/").await;
            app.get("/api/posts/").await;
        }
        let res = app.metrics().await;
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        let text = res.text().await.unwrap();
        let exposition = openmetrics_parser::prometheus::parse_prometheus(&text).expect("Prometheus text");
        let family = |name: &str| exposition.families.get(name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
        let routes: std::collections::BTreeSet<String> = family("folio_http_request_duration_seconds")
            .iter_samples()
            .filter_map(|s| s.get_labelset().ok()?.get_label_value("route").map(String::from))
            .collect();
        assert!(routes.contains("/blog/{slug}/"), "the pattern: {routes:?}");
        assert!(!routes.iter().any(|r| r.contains("stampedes")), "never the raw path: {routes:?}");
        let value = |v: &openmetrics_parser::PrometheusValue| match v {
            openmetrics_parser::PrometheusValue::Counter(c) => c.value.as_f64(),
            openmetrics_parser::PrometheusValue::Gauge(n) | openmetrics_parser::PrometheusValue::Unknown(n) => n.as_f64(),
            _ => 0.0,
        };
        let hits: f64 = family("folio_cache_hits_total").iter_samples().map(|s| value(&s.value)).sum();
        assert!(hits >= 4.0, "cache hits counted: {hits}");
        assert!(family("folio_cache_operation_seconds").iter_samples().count() >= 2, "latency histograms per operation");
        assert!(family("folio_cache_hit_ratio")
            .iter_samples()
            .any(|s| s.get_labelset().ok().and_then(|l| l.get_label_value("window").map(|w| w == "1m")).unwrap_or(false)));
    }
}

on_both_app_caches! {
    async fn the_monitor_api_ranks_families_by_miss_cost_and_advises(app: TestApp) {
        app.seed_generated(30).await;
        for n in 1..=3 {
            app.get(&format!("/blog/?page={n}")).await;
            app.get("/").await;
        }
        let (status, body) = app.get_admin_json("/api/cache/monitor/").await;
        assert_eq!(status, 200);
        let ranked = body["families_by_miss_cost"].as_array().unwrap();
        let costs: Vec<f64> = ranked.iter().map(|f| f["miss_cost_ms"].as_f64().unwrap()).collect();
        assert!(costs.windows(2).all(|w| w[0] >= w[1]), "ranked: {costs:?}");
        assert!(ranked.iter().any(|f| f["name"] == "page" && f["avg_fill_ms"].as_f64().unwrap() > 0.0), "{ranked:?}");
        assert!(!body["recommendations"].as_array().unwrap().is_empty());
        assert!(body["windows"]["5m"]["lookups"].as_u64().unwrap() > 0);
        let family = |name: &str| ranked.iter().find(|f| f["name"] == name).cloned().unwrap();
        assert!(body["instance"]["families"].as_array().unwrap().iter().any(|f| f["sets"].as_u64().unwrap() > 0), "sets per family");
        assert!(family("page")["misses"].as_u64().unwrap() >= 4);
        if app.state.cache.backend_name() == "redis" {
            assert!(body["server_memory"]["used_bytes"].as_u64().unwrap() > 0, "Redis INFO memory: {}", body["server_memory"]);
        }
    }
}

/// The monitor reads the full statistics, which need the admin token.
pub(crate) const ADMIN: &[(&str, &str)] = &[("CACHE_ADMIN_TOKEN", crate::helpers::ADMIN_TOKEN)];

pub(crate) async fn folio(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::TempDir::new().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_folio"));
    cmd.env_clear()
        .current_dir(dir.path())
        .env("DATA_DIR", dir.path())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[actix_web::test]
async fn the_monitor_command_shows_stats_and_fails_health_on_a_stopped_redis() {
    let Some(mut redis) = crate::redis_server::OwnRedis::start() else {
        return;
    };
    let app = redis.app().await;
    app.get("/").await;
    app.get("/").await;
    let (ok, stdout, stderr) =
        folio(&["monitor", "--action=stats", "--url", &app.address], ADMIN).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("hit ratio")
            && stdout.contains("1 min")
            && stdout.contains("recommendations:"),
        "{stdout}"
    );
    assert!(stdout.contains("page"), "the families: {stdout}");
    assert!(stdout.contains("redis memory"), "{stdout}");
    let (ok, stdout, _) = folio(
        &["monitor", "--action=analyze", "--url", &app.address],
        ADMIN,
    )
    .await;
    assert!(
        ok && stdout.contains("compute ms") && stdout.contains("page"),
        "{stdout}"
    );
    let (ok, stdout, _) = folio(&["monitor", "--action=health", "--url", &app.address], &[]).await;
    assert!(ok, "healthy while Redis runs: {stdout}");
    redis.stop();
    let (ok, stdout, stderr) =
        folio(&["monitor", "--action=health", "--url", &app.address], &[]).await;
    assert!(!ok, "non-zero exit when Redis is down: {stdout}");
    assert!(stderr.contains("unhealthy"), "{stderr}");
    // And the benchmark of a live backend.
    let Some(url) = crate::helpers::test_redis_url() else {
        return;
    };
    let prefix = crate::helpers::unique_prefix();
    let (ok, stdout, stderr) = folio(
        &["monitor", "--action=test"],
        &[("CACHE_URL", &url), ("CACHE_KEY_PREFIX", &prefix)],
    )
    .await;
    assert!(ok, "{stderr}");
    for op in ["set", "get", "delete"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(op) && l.split_whitespace().count() == 4),
            "{stdout}"
        );
    }
}

/// Instances sharing a Redis each publish a row; the stats show them all and the
/// site-wide totals.
#[actix_web::test]
async fn instances_sharing_redis_each_have_a_row() {
    let Some((a, b)) =
        crate::helpers::two_instances_on_redis(crate::helpers::Backend::Sqlite, &[]).await
    else {
        return;
    };
    a.get("/").await;
    b.get("/about/").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, stats) = a.get_admin_json("/api/cache/stats/").await;
        let rows = stats["instances"].as_array().unwrap().clone();
        if rows.len() == 2 && rows.iter().all(|r| r["misses"].as_u64().unwrap() > 0) {
            assert_eq!(rows.iter().filter(|r| r["this_process"] == true).count(), 1);
            assert!(
                stats["site"]["misses"].as_u64().unwrap()
                    >= rows
                        .iter()
                        .map(|r| r["misses"].as_u64().unwrap())
                        .sum::<u64>()
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "two rows: {rows:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    a.state.cache.clear().await;
    a.state.cache.reset_site_stats().await;
}

// What an operator imports (deploy/grafana/folio.json, deploy/prometheus/alerts.yml)
// names only metrics the server exports: a renamed metric must not leave a panel empty
// or an alert silent.
on_both_app_caches! {
    async fn every_metric_the_dashboard_and_the_alerts_name_is_exported(app: TestApp) {
        for _ in 0..2 {
            app.get("/").await;
            app.get("/api/posts/").await;
        }
        let text = app.metrics().await.text().await.unwrap();
        let exposition = openmetrics_parser::prometheus::parse_prometheus(&text).expect("Prometheus text");
        // Redis reports its memory; an in-process cache has no server to ask.
        let has_server = app.state.cache.backend_name() != "memory";
        for file in ["deploy/grafana/folio.json", "deploy/prometheus/alerts.yml"] {
            let source = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
            let named = metric_names(&source);
            assert!(named.len() >= 4, "{file} names {named:?}");
            for name in &named {
                let family = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(name);
                if !has_server && family.starts_with("folio_cache_server_") {
                    continue;
                }
                // Exported with edge caches configured: checked in `edge_cache`.
                if family.starts_with("folio_edge_") {
                    continue;
                }
                assert!(exposition.families.contains_key(family), "{file} names {name}, which /metrics does not export:\n{text}");
            }
        }
    }
}

/// Every `folio_…` metric name in a text.
pub(crate) fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    text.match_indices("folio_")
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.ends_with('_'))
        .collect()
}

/// `/metrics` costs what a scrape should: the figures that need Redis or the database
/// are read at most once per refresh period, however many scrape; anonymous scrapers get
/// a 401; with no token configured, this machine's generated one works from loopback.
#[actix_web::test]
async fn a_hundred_scrapes_cost_a_few_redis_info_calls() {
    let Some(redis) = crate::redis_server::OwnRedis::start() else {
        return;
    };
    let app = redis.app().await;
    let info_calls = || {
        let stats = redis.cli(&["INFO", "commandstats"]);
        stats
            .lines()
            .find(|l| l.starts_with("cmdstat_info:"))
            .and_then(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    let before = info_calls();
    let scrapes = (0..100).map(|_| app.metrics());
    for res in futures_util::future::join_all(scrapes).await {
        assert_eq!(res.status(), 200);
    }
    // One for the scrapes, the rest are the commandstats reads of this test.
    let calls = info_calls() - before - 1;
    assert!(calls <= 3, "{calls} INFO calls for 100 scrapes");
    assert_eq!(app.get("/metrics").await.status(), 401, "anonymous");

    let local = crate::helpers::spawn_app_with(
        crate::helpers::Backend::Sqlite,
        &[("CACHE_ADMIN_TOKEN", "")],
    )
    .await
    .unwrap();
    let token = std::fs::read_to_string(local.state.config.data_dir.join("admin_token")).unwrap();
    let res = local
        .client
        .get(local.url("/metrics"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the generated token, from this machine");
}
