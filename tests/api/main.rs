//! One integration-test binary (faster to link than one per file). Each test starts the
//! real app on port 0 and drives it over HTTP.

mod helpers;

mod admin;
mod analyze;
mod api_routes;
mod cache;
mod contact;
// The browser tests (headless Chromium through chromedriver): `--features browser-tests`.
#[cfg(feature = "browser-tests")]
mod dashboard;
mod edge_cache;
mod edges;
mod faults;
mod fragments;
mod fuzz;
mod hardening;
mod health;
mod history;
mod http_cache;
mod images;
mod invalidation;
mod key_space;
mod logging;
mod monitoring;
// The OTLP receiver the traces are sent to: `--features otel-tests`.
#[cfg(feature = "otel-tests")]
mod otel;
mod page_cache;
mod pages;
mod path_edges;
mod publishing;
mod redis_cluster;
mod redis_server;
mod resilience;
mod routes;
mod scale_out;
mod search;
mod seed;
mod varnish;
mod warming;
mod webhook;
