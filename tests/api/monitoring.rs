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
        let res = app.get("/metrics").await;
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
