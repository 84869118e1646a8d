//! OpenTelemetry traces (`--features otel`): the real binary sends its spans over OTLP to
//! a receiver this test runs (HTTP/1 for OTLP/HTTP, HTTP/2 for gRPC, on one port), which
//! decodes them with the OTLP protobuf types. A page is requested twice with a
//! `traceparent` of our own: the miss's and the hit's span trees are checked, on SQLite
//! and PostgreSQL, the in-process cache and Redis, over both protocols.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use crate::helpers::{create_test_db, test_redis_url, unique_prefix, Backend};
use crate::page_cache::start_binary;

/// A request's path and headers.
type Seen = (String, HashMap<String, String>);

/// What reached the receiver: OTLP spans (with their service name), and every other
/// request (an edge's purge API, say).
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    others: Arc<Mutex<Vec<Seen>>>,
}

impl Received {
    fn spans_of(&self, trace_id: &[u8]) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.trace_id == trace_id)
            .map(|(_, s)| s.clone())
            .collect()
    }

    fn service_names(&self) -> Vec<String> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn receiver() -> (u16, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Received::default();
    let shared = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let got = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(got.clone(), req));
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    (port, got)
}

async fn answer(got: Received, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let grpc = headers
        .get("content-type")
        .is_some_and(|t| t.starts_with("application/grpc"));
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let otlp = path == "/v1/traces"
        || path == "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    if !otlp {
        got.others.lock().unwrap().push((path, headers));
        return Ok(Response::new(
            Full::new(Bytes::from_static(br#"{"status":"ok"}"#)).boxed(),
        ));
    }
    // gRPC: one uncompressed message, after its flag byte and length.
    let message = if grpc { body.slice(5..) } else { body };
    let export = ExportTraceServiceRequest::decode(message).expect("an OTLP trace export");
    for resource_spans in export.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .and_then(|a| text(a.value.as_ref()?.value.as_ref()?))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                got.spans.lock().unwrap().push((service.clone(), span));
            }
        }
    }
    let reply = ExportTraceServiceResponse::default().encode_to_vec();
    if !grpc {
        return Ok(Response::builder()
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::from(reply)).boxed())
            .unwrap());
    }
    let mut framed = vec![0u8];
    framed.extend((reply.len() as u32).to_be_bytes());
    framed.extend(reply);
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    let frames = futures_util::stream::iter([
        Ok::<_, Infallible>(Frame::data(Bytes::from(framed))),
        Ok(Frame::trailers(trailers)),
    ]);
    Ok(Response::builder()
        .header("content-type", "application/grpc")
        .body(StreamBody::new(frames).boxed())
        .unwrap())
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(n) => Some(n.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(f) => Some(f.to_string()),
        _ => None,
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| text(a.value.as_ref()?.value.as_ref()?))
}

/// A trace's spans under its request span (the one whose parent is the caller's).
struct Tree {
    root: Span,
    below: Vec<Span>,
}

impl Tree {
    fn of(spans: &[Span], caller_span: &[u8]) -> Option<Tree> {
        let root = spans
            .iter()
            .find(|s| s.parent_span_id == caller_span)?
            .clone();
        let mut below = Vec::new();
        let mut frontier = vec![root.span_id.clone()];
        while let Some(id) = frontier.pop() {
            for s in spans.iter().filter(|s| s.parent_span_id == id) {
                frontier.push(s.span_id.clone());
                below.push(s.clone());
            }
        }
        Some(Tree { root, below })
    }

    fn named(&self, name: &str) -> Vec<&Span> {
        self.below.iter().filter(|s| s.name == name).collect()
    }

    fn with(&self, name: &str, key: &str, value: &str) -> Vec<&Span> {
        self.named(name)
            .into_iter()
            .filter(|s| attr(s, key).as_deref() == Some(value))
            .collect()
    }

    fn describe(&self) -> String {
        let mut out = format!("{} [{}]\n", self.root.name, self.root.attributes.len());
        for s in &self.below {
            let attrs: Vec<String> = s
                .attributes
                .iter()
                .filter_map(|a| {
                    Some(format!(
                        "{}={}",
                        a.key,
                        text(a.value.as_ref()?.value.as_ref()?)?
                    ))
                })
                .collect();
            out += &format!("  {} {}\n", s.name, attrs.join(" "));
        }
        out
    }
}

struct Traced {
    port: u16,
    got: Received,
    child: std::process::Child,
    _dir: tempfile::TempDir,
    _db: crate::helpers::TestDb,
    client: reqwest::Client,
}

impl Drop for Traced {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary on `db` and the in-process cache or Redis, tracing to our receiver.
async fn start(db: Backend, redis: bool, protocol: &str, extra: &[(&str, &str)]) -> Option<Traced> {
    let (receiver_port, got) = receiver().await;
    let redis_url = if redis { Some(test_redis_url()?) } else { None };
    let (db_url, test_db) = create_test_db(db).await?;
    let endpoint = format!("http://127.0.0.1:{receiver_port}");
    let prefix = unique_prefix();
    let mut env: Vec<(&str, &str)> = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("WARM_ON_START", "false"),
        ("WARM_AFTER_INVALIDATION", "false"),
        (
            "SECRET_KEY",
            "otel-test-secret-key-long-enough-for-cookies-0123",
        ),
        ("RUST_LOG", "warn"),
    ];
    if let Some(url) = &redis_url {
        env.push(("CACHE_URL", url));
        env.push(("CACHE_KEY_PREFIX", &prefix));
    }
    env.extend_from_slice(extra);
    let dir = tempfile::TempDir::new().unwrap();
    let (child, port) = start_binary(&dir, &db_url, &env);
    let client = reqwest::Client::new();
    let mut traced = Traced {
        port,
        got,
        child,
        _dir: dir,
        _db: test_db,
        client,
    };
    for _ in 0..600 {
        if let Ok(res) = traced.client.get(traced.url("/healthz")).send().await {
            if res.status().is_success() {
                return Some(traced);
            }
        }
        if let Ok(Some(status)) = traced.child.try_wait() {
            panic!("the server exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server did not start");
}

impl Traced {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// GET with our own `traceparent`: returns X-Cache and the trace and span ids sent.
    async fn get_traced(&self, path: &str) -> (String, Vec<u8>, Vec<u8>) {
        let trace_id: [u8; 16] = rand::random();
        let span_id: [u8; 8] = rand::random();
        let res = self
            .client
            .get(self.url(path))
            .header(
                "traceparent",
                format!("00-{}-{}-01", hex::encode(trace_id), hex::encode(span_id)),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let x_cache = res.headers()["x-cache"].to_str().unwrap().to_string();
        let _ = res.bytes().await;
        (x_cache, trace_id.to_vec(), span_id.to_vec())
    }

    /// The request's tree once its request span and `until` children have arrived.
    async fn tree(&self, trace_id: &[u8], caller: &[u8], until: impl Fn(&Tree) -> bool) -> Tree {
        for _ in 0..200 {
            if let Some(tree) = Tree::of(&self.got.spans_of(trace_id), caller) {
                if until(&tree) {
                    return tree;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let tree = Tree::of(&self.got.spans_of(trace_id), caller);
        panic!(
            "no complete trace arrived: {}",
            tree.map(|t| t.describe())
                .unwrap_or_else(|| "no request span".into())
        );
    }
}

const POST: &str = "/blog/cache-invalidation-without-tears/";

async fn a_miss_and_a_hit(db: Backend, redis: bool, protocol: &str) {
    let Some(app) = start(db, redis, protocol, &[]).await else {
        return;
    };
    let (x_cache, trace, caller) = app.get_traced(POST).await;
    assert_eq!(x_cache, "MISS");
    let miss = app
        .tree(&trace, &caller, |t| {
            !t.with("cache.response", "cache.result", "miss").is_empty()
                && !t.named("template.render").is_empty()
        })
        .await;
    let shown = miss.describe();
    // The request span continues the caller's trace.
    assert_eq!(miss.root.kind, 2, "a server span: {shown}");
    assert!(miss.root.name.starts_with("GET "), "{shown}");
    assert_eq!(
        attr(&miss.root, "http.status_code").as_deref(),
        Some("200"),
        "{shown}"
    );
    let response = &miss.with("cache.response", "cache.family", "page");
    assert_eq!(response.len(), 1, "{shown}");
    let backend = if redis { "redis" } else { "memory" };
    let lookups = miss.with("cache.get", "cache.backend", backend);
    assert!(
        lookups
            .iter()
            .any(|s| attr(s, "cache.family").as_deref() == Some("page")
                && attr(s, "cache.result").as_deref() == Some("miss")),
        "the page's lookup missed: {shown}"
    );
    // The repository's reads and their statements, with rows.
    let queries = miss.named("db.query");
    let system = if db == Backend::Postgres {
        "postgresql"
    } else {
        "sqlite"
    };
    assert!(
        queries.iter().any(|q| attr(q, "code.site")
            .is_some_and(|s| s.contains("src/content/repository/"))
            && attr(q, "db.system.name").as_deref() == Some(system)
            && attr(q, "db.response.returned_rows").is_some()),
        "{shown}"
    );
    let statements = miss.named("db.statement");
    assert!(
        statements.iter().any(|s| attr(s, "db.query.text")
            .is_some_and(|t| t.starts_with("SELECT") && !t.contains("-- binds"))
            && queries.iter().any(|q| q.span_id == s.parent_span_id)),
        "statements (shape, no values) under their query: {shown}"
    );
    assert!(
        miss.named("template.render")
            .iter()
            .any(|s| attr(s, "template.name").is_some_and(|n| n.ends_with(".html"))),
        "{shown}"
    );
    if redis {
        assert!(
            miss.with("redis", "db.system.name", "redis")
                .iter()
                .any(|s| attr(s, "db.operation.name").is_some()),
            "Redis round trips: {shown}"
        );
        assert!(
            lookups.iter().any(|s| attr(s, "cache.tier").is_some()),
            "which tier answered: {shown}"
        );
    }

    let (x_cache, trace, caller) = app.get_traced(POST).await;
    assert_eq!(x_cache, "HIT");
    let hit = app
        .tree(&trace, &caller, |t| {
            !t.with("cache.response", "cache.result", "hit").is_empty()
        })
        .await;
    let shown = hit.describe();
    assert!(
        hit.with("cache.get", "cache.result", "hit")
            .iter()
            .any(|s| attr(s, "cache.family").as_deref() == Some("page")),
        "{shown}"
    );
    assert!(
        hit.named("db.statement").is_empty(),
        "a hit reads no database: {shown}"
    );
    assert!(
        hit.named("template.render").is_empty(),
        "a hit renders nothing: {shown}"
    );
    if redis {
        // The entry this instance stored is kept in its near tier.
        assert!(
            !hit.with("cache.get", "cache.tier", "near").is_empty(),
            "{shown}"
        );
    }
    assert!(app.got.service_names().iter().all(|n| n == "folio"));
}

#[actix_web::test]
async fn otlp_http_sqlite_in_process_cache() {
    a_miss_and_a_hit(Backend::Sqlite, false, "http/protobuf").await
}

#[actix_web::test]
async fn otlp_http_postgres_redis() {
    a_miss_and_a_hit(Backend::Postgres, true, "http/protobuf").await
}

#[actix_web::test]
async fn otlp_grpc_sqlite_redis() {
    a_miss_and_a_hit(Backend::Sqlite, true, "grpc").await
}

#[actix_web::test]
async fn otlp_grpc_postgres_in_process_cache() {
    a_miss_and_a_hit(Backend::Postgres, false, "grpc").await
}

/// Outgoing requests carry the trace on: an edge's purge API receives a `traceparent`
/// whose trace holds the exported `edge.purge` span.
#[actix_web::test]
async fn a_purge_sent_to_an_edge_carries_its_trace() {
    let secret = "webhook-secret-for-otel-tests";
    let (api_port, api) = receiver().await;
    let api_url = format!("http://127.0.0.1:{api_port}");
    let Some(app) = start(
        Backend::Sqlite,
        false,
        "http/protobuf",
        &[
            ("EDGE_CACHE_URLS", "fastly://otel-svc"),
            ("FASTLY_API_TOKEN", "fastly-token-0123"),
            ("FASTLY_API_URL", &api_url),
            ("CACHE_WEBHOOK_SECRET", secret),
        ],
    )
    .await
    else {
        return;
    };
    let body = r#"{"tags": ["featured_tools"], "models": [], "patterns": []}"#;
    let res = crate::helpers::signed_webhook(
        &app.client,
        &app.url("/api/cache/invalidate/"),
        secret,
        body,
    )
    .await;
    assert_eq!(res.status(), 200);
    let purge = {
        let mut found = None;
        for _ in 0..100 {
            found = api
                .others
                .lock()
                .unwrap()
                .iter()
                .find(|(p, h)| {
                    p.ends_with("/purge") && h["surrogate-key"].contains("featured_tools")
                })
                .cloned();
            if found.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        found.expect("the purge reached the API")
    };
    let traceparent = purge.1.get("traceparent").expect("a traceparent header");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    let trace_id = hex::decode(parts[1]).unwrap();
    let span_id = hex::decode(parts[2]).unwrap();
    for _ in 0..100 {
        let spans = app.got.spans_of(&trace_id);
        if let Some(span) = spans.iter().find(|s| s.span_id == span_id) {
            assert_eq!(span.name, "edge.purge");
            assert!(attr(span, "tags").is_some(), "how many tags it purged");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no edge.purge span with the id the API received");
}
