//! Logging and traces.
//!
//! Logs: tracing with `RUST_LOG` (default `info`) on standard error, gathered in memory
//! and written by a thread of its own (`lines`: a worker appends its line and goes on;
//! when the buffer is full, lines are dropped and counted — `folio_log_lines_dropped_total`
//! — rather than a worker blocked). Colour only when standard error is a terminal;
//! `LOG_FORMAT=json` writes one JSON object a line for log shippers. One access line per
//! request (`ACCESS_LOG=off`: none), with its request id, status, cache outcome and
//! duration.
//!
//! Traces (the `otel` cargo feature, sent only when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set): one span per request, taken from the
//! caller's W3C `traceparent` when it sends one, with `debug`-level child spans the
//! log filter never sees — `cache.response` (the response cache's answer), `cache.get`
//! (each lookup: family, result, backend, tier), `db.query` / `db.statement` (each
//! repository read and each SQL statement), `template.render`, `redis` (each round
//! trip). Exported over OTLP, HTTP/protobuf by default or gRPC
//! (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`); the other standard `OTEL_*` variables (headers,
//! timeout, service name, resource attributes, sampler, batch sizes) are read by the
//! OpenTelemetry SDK itself.
//!
//! With no endpoint nothing subscribes to those spans, so each costs one level check.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

static EXPORTING: AtomicBool = AtomicBool::new(false);
static ACCESS_LOG: AtomicBool = AtomicBool::new(true);
static DROPPED: OnceLock<std::sync::Arc<lines::Shared>> = OnceLock::new();

/// Whether each request gets its access line (`ACCESS_LOG`, on unless `off`), and the
/// `info` level is on.
pub fn access_log() -> bool {
    ACCESS_LOG.load(Ordering::Relaxed) && tracing::enabled!(tracing::Level::INFO)
}

/// Log lines dropped because the writer thread fell behind.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |shared| shared.dropped())
}

/// Whether spans are being exported: then every request, a response-cache hit too,
/// goes through the request span (see `web::http_cache`'s early lookup).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{0} is set, but this build has no OpenTelemetry: build with `--features otel` (`cargo make release` does)")]
    NotBuilt(&'static str),
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL={0}: use `http/protobuf` (the default) or `grpc`")]
    Protocol(String),
    #[error("LOG_FORMAT={0}: use `text` (the default) or `json`")]
    LogFormat(String),
    #[error("ACCESS_LOG={0}: use `on` (the default) or `off`")]
    AccessLog(String),
    #[error("OpenTelemetry: {0}")]
    Exporter(String),
}

/// What the process keeps while it traces; dropping it sends the spans still queued.
#[derive(Default)]
pub struct Telemetry {
    /// Dropping it writes the lines still buffered.
    _log: Option<lines::Flusher>,
    #[cfg(feature = "otel")]
    _exporter: Option<otel::Exporter>,
}

/// Log lines on their way to standard error.
///
/// tracing-appender's non-blocking writer, used before, sends each line through a
/// channel that wakes its thread, which then makes one `write` system call per line: at
/// 40,000 cached answers a second, a wake-up and a system call per request. Here a line
/// is appended to a buffer under a lock held for the copy, and the thread writes
/// everything gathered every `FLUSH_EVERY` (or sooner, once the buffer is half full) in
/// one call — what nginx's `access_log … buffer= flush=` does.
mod lines {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use parking_lot::Mutex;

    /// About 5,000 access lines; past it lines are dropped until the next write.
    const CAPACITY: usize = 1 << 20;
    const FLUSH_EVERY: Duration = Duration::from_millis(100);

    pub(super) struct Shared {
        buffer: Mutex<Vec<u8>>,
        dropped: AtomicU64,
        stop: AtomicBool,
        thread: std::sync::OnceLock<std::thread::Thread>,
    }

    impl Shared {
        pub(super) fn dropped(&self) -> u64 {
            self.dropped.load(Ordering::Relaxed)
        }
    }

    /// What the subscriber writes through (`MakeWriter`).
    pub(super) struct Lines(Arc<Shared>);

    impl Lines {
        pub(super) fn shared(&self) -> Arc<Shared> {
            self.0.clone()
        }
    }

    /// Writes what is left and stops the thread when dropped.
    pub(super) struct Flusher {
        shared: Arc<Shared>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    pub(super) fn start() -> (Lines, Flusher) {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Vec::with_capacity(CAPACITY)),
            dropped: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        });
        let flushing = shared.clone();
        let thread = std::thread::Builder::new()
            .name("folio-log".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(CAPACITY);
                loop {
                    std::thread::park_timeout(FLUSH_EVERY);
                    // Read before the swap: a stop seen here still has its lines written.
                    let stopping = flushing.stop.load(Ordering::Acquire);
                    std::mem::swap(&mut *flushing.buffer.lock(), &mut spare);
                    if !spare.is_empty() {
                        let _ = std::io::stderr().lock().write_all(&spare);
                        spare.clear();
                    }
                    if stopping {
                        return;
                    }
                }
            })
            .expect("the log thread starts");
        let _ = shared.thread.set(thread.thread().clone());
        let flusher = Flusher {
            shared: shared.clone(),
            thread: Some(thread),
        };
        (Lines(shared), flusher)
    }

    impl Drop for Flusher {
        fn drop(&mut self) {
            self.shared.stop.store(true, Ordering::Release);
            if let Some(thread) = self.thread.take() {
                thread.thread().unpark();
                let _ = thread.join();
            }
        }
    }

    /// One event's write: the subscriber formats the whole line, then writes it at once.
    pub(super) struct Line<'a>(&'a Shared);

    impl std::io::Write for Line<'_> {
        fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
            let mut buffer = self.0.buffer.lock();
            let before = buffer.len();
            if before + line.len() > CAPACITY {
                self.0.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                buffer.extend_from_slice(line);
                if before < CAPACITY / 2 && buffer.len() >= CAPACITY / 2 {
                    if let Some(thread) = self.0.thread.get() {
                        thread.unpark();
                    }
                }
            }
            Ok(line.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
        type Writer = Line<'a>;

        fn make_writer(&'a self) -> Line<'a> {
            Line(&self.0)
        }
    }

    #[cfg(test)]
    mod tests {
        use std::io::Write as _;

        use tracing_subscriber::fmt::MakeWriter as _;

        #[test]
        fn a_full_buffer_drops_and_counts_lines() {
            let (lines, flusher) = super::start();
            // Stop the thread first, so nothing is written out meanwhile.
            drop(flusher);
            let line = vec![b'x'; 1000];
            for _ in 0..super::CAPACITY / 1000 + 10 {
                lines.make_writer().write_all(&line).unwrap();
            }
            assert_eq!(lines.shared().dropped(), 10);
        }
    }
}

/// Logs on standard error; traces too when `traces` (the server) and an OTLP endpoint
/// is configured.
pub fn init(traces: bool) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match std::env::var("LOG_FORMAT").unwrap_or_default().trim() {
        "" | "text" => false,
        "json" => true,
        other => return Err(TelemetryError::LogFormat(other.into())),
    };
    match std::env::var("ACCESS_LOG").unwrap_or_default().trim() {
        "" | "on" | "true" => ACCESS_LOG.store(true, Ordering::Relaxed),
        "off" | "false" => ACCESS_LOG.store(false, Ordering::Relaxed),
        other => return Err(TelemetryError::AccessLog(other.into())),
    }
    let (writer, guard) = lines::start();
    let _ = DROPPED.set(writer.shared());
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(writer)
        .with_ansi(!json && std::io::stderr().is_terminal());
    let fmt = match json {
        true => fmt.json().flatten_event(true).boxed(),
        false => fmt.boxed(),
    }
    .with_filter(filter);
    let log = Some(guard);
    let endpoint = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .into_iter()
    .find(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()));
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    let endpoint = endpoint.filter(|_| traces && !disabled);
    #[cfg(feature = "otel")]
    if endpoint.is_some() {
        let exporter = otel::Exporter::start()?;
        // try_init: tests and the CLI may call this more than once.
        let _ = tracing_subscriber::registry()
            .with(fmt)
            .with(exporter.layer())
            .try_init();
        EXPORTING.store(true, Ordering::Relaxed);
        return Ok(Telemetry {
            _log: log,
            _exporter: Some(exporter),
        });
    }
    #[cfg(not(feature = "otel"))]
    if let Some(name) = endpoint {
        return Err(TelemetryError::NotBuilt(name));
    }
    let _ = tracing_subscriber::registry().with(fmt).try_init();
    Ok(Telemetry {
        _log: log,
        #[cfg(feature = "otel")]
        _exporter: None,
    })
}

/// Adds the running span's context (`traceparent`) to an outgoing request's headers, so
/// the receiver's trace continues this one. Nothing without the `otel` feature.
pub fn inject_context(headers: &mut reqwest::header::HeaderMap) {
    #[cfg(feature = "otel")]
    if exporting() {
        otel::inject(headers);
    }
    #[cfg(not(feature = "otel"))]
    let _ = headers;
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;
    use tracing::Subscriber;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::registry::LookupSpan;
    use tracing_subscriber::Layer;

    use super::TelemetryError;

    /// The exporter's own runtime (one thread): the batch processor's thread hands it
    /// each export, and gRPC's channel lives on it, apart from the workers.
    pub(super) struct Exporter {
        provider: SdkTracerProvider,
        runtime: Option<tokio::runtime::Runtime>,
    }

    impl Exporter {
        pub(super) fn start() -> Result<Exporter, TelemetryError> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otel-export")
                .enable_all()
                .build()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
            let protocol = [
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ]
            .iter()
            .find_map(|name| std::env::var(name).ok())
            .unwrap_or_else(|| "http/protobuf".into());
            let exporter = {
                let _inside = runtime.enter();
                let built = match protocol.trim() {
                    "http/protobuf" => opentelemetry_otlp::SpanExporter::builder()
                        .with_http()
                        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                        .with_http_client(Client(runtime.handle().clone(), no_redirects()))
                        .build(),
                    "grpc" => opentelemetry_otlp::SpanExporter::builder()
                        .with_tonic()
                        .build(),
                    other => return Err(TelemetryError::Protocol(other.to_string())),
                };
                built.map_err(|e| TelemetryError::Exporter(e.to_string()))?
            };
            let named = std::env::var("OTEL_SERVICE_NAME").is_ok()
                || std::env::var("OTEL_RESOURCE_ATTRIBUTES")
                    .is_ok_and(|a| a.contains("service.name="));
            let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ));
            if !named {
                resource = resource.with_service_name("folio");
            }
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.build())
                .build();
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            opentelemetry::global::set_tracer_provider(provider.clone());
            Ok(Exporter {
                provider,
                runtime: Some(runtime),
            })
        }

        /// The layer that turns spans into OpenTelemetry's: the request span
        /// (tracing-actix-web, `info`) and this crate's spans down to `debug`.
        pub(super) fn layer<S>(&self) -> impl Layer<S>
        where
            S: Subscriber + for<'a> LookupSpan<'a>,
        {
            let targets = Targets::new()
                .with_target("tracing_actix_web", LevelFilter::INFO)
                .with_target("folio", LevelFilter::DEBUG);
            tracing_opentelemetry::layer()
                .with_tracer(self.provider.tracer("folio"))
                .with_filter(targets)
        }
    }

    impl Drop for Exporter {
        fn drop(&mut self) {
            // Sends what is queued; the runtime must still be there to carry it.
            if let Err(e) = self.provider.shutdown() {
                eprintln!("OpenTelemetry: {e}");
            }
            if let Some(runtime) = self.runtime.take() {
                runtime.shutdown_background();
            }
        }
    }

    pub(super) fn inject(headers: &mut reqwest::header::HeaderMap) {
        let context = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut opentelemetry_http::HeaderInjector(headers))
        });
    }

    /// A client that follows no redirect: OTLP headers (`OTEL_EXPORTER_OTLP_HEADERS`)
    /// often carry an API key, meant for the configured endpoint only.
    fn no_redirects() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client without TLS settings builds")
    }

    /// OTLP/HTTP through the crate's reqwest (one HTTP client and one TLS stack in the
    /// binary), run on the exporter's runtime: the SDK's batch thread has none.
    #[derive(Debug)]
    struct Client(tokio::runtime::Handle, reqwest::Client);

    #[async_trait::async_trait]
    impl opentelemetry_http::HttpClient for Client {
        async fn send_bytes(
            &self,
            request: http::Request<bytes::Bytes>,
        ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
            let client = self.1.clone();
            let request = reqwest::Request::try_from(request)?;
            self.0
                .spawn(async move {
                    let response = client.execute(request).await?;
                    let mut answer = http::Response::builder().status(response.status());
                    if let Some(headers) = answer.headers_mut() {
                        *headers = response.headers().clone();
                    }
                    let body = response.bytes().await?;
                    Ok::<_, opentelemetry_http::HttpError>(answer.body(body)?)
                })
                .await?
        }
    }
}
