//! Template fragment caching: the tera functions `cache_block`, `cached_component`,
//! `cache_query` and `cache_debug_info`, and the page pipeline that serves them.
//!
//! Why this shape: tera functions are synchronous, the Redis backend is async, and
//! blocking an actix worker (or calling `block_on` on it) is not an option. So a page
//! is rendered in three steps, none of which blocks:
//! 1. *collect*: render once with the functions only recording which fragments the page
//!    asks for (with their vary values, so nothing needs declaring up front);
//! 2. *fetch*: look all of them up at once — one MGET on Redis, for the entries and the
//!    versions of every tag they depend on — then, for misses only, run the fragment's
//!    loader (its queries) and render its template, and store it;
//! 3. *serve*: render again with every function answering from step 2.
//!
//! The page shell is rendered twice (microseconds); a warm fragment's loader and
//! template are never run. The functions reach the per-render state through a
//! thread-local, because tera hands a function its arguments and nothing else; a render
//! is synchronous, so it cannot interleave with another on the same thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tera::{Context, Tera};

use crate::cache::{CacheManager, Key};
use crate::db::DbError;

pub mod registry;

pub use registry::registry;

pub type LoadFuture = Pin<Box<dyn Future<Output = Result<Value, DbError>>>>;
/// Loads a fragment's data (a tera context as JSON) from its vary values.
pub type Loader = Arc<dyn Fn(Value) -> LoadFuture + Send + Sync>;

/// A named fragment a template may ask for.
#[derive(Clone)]
pub struct FragmentDef {
    /// For `cache_block`: the template under `templates/fragments/` it renders. For
    /// `cache_query`: None (the loader's value is handed to the template as is).
    pub template: Option<&'static str>,
    /// Tags of the models it shows.
    pub depends_on: &'static [&'static str],
    /// Per-object tags from the vary values (e.g. one post's own tag), besides
    /// `depends_on`.
    pub object_tags: Option<fn(&Value) -> Vec<String>>,
    pub ttl: Option<Duration>,
    pub loader: Loader,
}

/// What is stored for a fragment: the HTML (or, for a query, its JSON), when it was
/// made and how long rendering took.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FragmentEntry {
    body: String,
    stored_at_ms: u64,
    render_us: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum Request {
    Block {
        name: String,
        vary: Value,
        ttl: Option<u64>,
    },
    Component {
        name: String,
        template: String,
        ctx: Value,
        ttl: Option<u64>,
    },
    Query {
        name: String,
        ttl: Option<u64>,
    },
}

impl Request {
    /// Identifies the request within one page render.
    fn id(&self) -> String {
        match self {
            Request::Block { name, vary, .. } => format!("block|{name}|{vary}"),
            Request::Component {
                name,
                template,
                ctx,
                ..
            } => format!("component|{name}|{template}|{ctx}"),
            Request::Query { name, .. } => format!("query|{name}"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FragmentReport {
    pub kind: &'static str,
    pub name: String,
    pub key: String,
    pub hit: bool,
    pub age_ms: u64,
    pub render_us: u64,
}

enum Mode {
    Collect(Vec<Request>),
    Serve(HashMap<String, String>),
}

struct RenderState {
    mode: Mode,
    reports: Vec<FragmentReport>,
    debug: bool,
}

thread_local! {
    static STATE: RefCell<Option<RenderState>> = const { RefCell::new(None) };
}

#[derive(Debug, thiserror::Error)]
pub enum FragmentError {
    #[error("template: {0:?}")]
    Template(#[from] tera::Error),
    #[error("fragment '{0}' is not registered")]
    Unknown(String),
    #[error("loading fragment '{name}': {source}")]
    Load { name: String, source: DbError },
}

/// Counters a test can read: work done on misses.
#[derive(Debug, Default)]
pub struct FragmentStats {
    pub renders: AtomicU64,
    pub loads: AtomicU64,
}

/// The registry of fragments and the page pipeline.
pub struct Fragments {
    cache: CacheManager,
    defs: HashMap<&'static str, FragmentDef>,
    /// Template name → hash of its source: part of every key, so a deploy that changes
    /// a template never serves HTML rendered by the old one.
    versions: HashMap<String, String>,
    debug: bool,
    pub stats: FragmentStats,
}

/// The cache information every template sees as `cache`.
#[derive(Debug, Serialize)]
pub struct CacheInfo {
    pub backend: &'static str,
    pub hit_ratio: f64,
    /// True when every fragment on the page came from the cache.
    pub page_from_cache: bool,
    pub fragments: usize,
}

impl Fragments {
    pub fn new(cache: CacheManager, templates: &[(&str, &str)], debug: bool) -> Self {
        let versions = templates
            .iter()
            .map(|(name, source)| {
                (
                    name.to_string(),
                    hex::encode(&Sha256::digest(source.as_bytes())[..6]),
                )
            })
            .collect();
        Fragments {
            cache,
            defs: HashMap::new(),
            versions,
            debug,
            stats: FragmentStats::default(),
        }
    }

    pub fn register(&mut self, name: &'static str, def: FragmentDef) {
        self.defs.insert(name, def);
    }

    /// Registers the tera functions (once, when tera is built).
    pub fn register_functions(tera: &mut Tera) {
        tera.register_function("cache_block", CacheBlock);
        tera.register_function("cached_component", CachedComponent);
        tera.register_function("cache_query", CacheQuery);
        tera.register_function("cache_debug_info", CacheDebugInfo);
    }

    fn version(&self, template: &str) -> &str {
        self.versions
            .get(template)
            .map(String::as_str)
            .unwrap_or("0")
    }

    /// The key and the tags the fragment depends on.
    fn key_for(&self, request: &Request) -> Result<(Key, Vec<String>), FragmentError> {
        let tags = |def: &FragmentDef, vary: &Value| -> Vec<String> {
            let mut tags: Vec<String> = def.depends_on.iter().map(|t| t.to_string()).collect();
            tags.extend(def.object_tags.map(|f| f(vary)).unwrap_or_default());
            tags
        };
        let hash = |v: &Value| hex::encode(&Sha256::digest(v.to_string().as_bytes())[..8]);
        Ok(match request {
            Request::Block { name, vary, .. } => {
                let def = self.def(name)?;
                let version = self.version(def.template.unwrap_or(""));
                (
                    self.cache
                        .key("fragment", ["block", name, version, &hash(vary)]),
                    tags(def, vary),
                )
            }
            Request::Component {
                name,
                template,
                ctx,
                ..
            } => {
                // Keyed by its whole context: new data, new key.
                (
                    self.cache.key(
                        "fragment",
                        ["component", name, self.version(template), &hash(ctx)],
                    ),
                    Vec::new(),
                )
            }
            Request::Query { name, .. } => {
                let def = self.def(name)?;
                (
                    self.cache.key("fragment", ["query", name]),
                    tags(def, &Value::Null),
                )
            }
        })
    }

    fn def(&self, name: &str) -> Result<&FragmentDef, FragmentError> {
        self.defs
            .get(name)
            .ok_or_else(|| FragmentError::Unknown(name.to_string()))
    }

    /// Renders `template` with fragment caching (see the module comment). `ctx` gains
    /// `cache` (backend, hit ratio, whether the whole page came from the cache).
    pub async fn render_page(
        &self,
        tera: &Tera,
        template: &str,
        ctx: &mut Context,
    ) -> Result<String, FragmentError> {
        // What the page will see as `cache`, with the page's own outcome still unknown.
        let info = |page_from_cache: bool, fragments: usize| CacheInfo {
            backend: self.cache.backend_name(),
            hit_ratio: self.cache.hit_ratio(),
            page_from_cache,
            fragments,
        };
        ctx.insert("cache", &info(false, 0));
        let (collect_result, collected) = with_state(Mode::Collect(Vec::new()), self.debug, || {
            crate::web::templates::render(tera, template, ctx)
        });
        collect_result?;
        let Mode::Collect(collected) = collected.mode else {
            unreachable!("collect mode stays collect")
        };
        let mut seen = std::collections::HashSet::new();
        let requests: Vec<Request> = collected
            .into_iter()
            .filter(|r| seen.insert(r.id()))
            .collect();

        let mut resolved = HashMap::new();
        let mut reports = Vec::new();
        if !requests.is_empty() {
            let owned: Vec<(Key, Vec<String>)> = requests
                .iter()
                .map(|r| self.key_for(r))
                .collect::<Result<_, _>>()?;
            let tag_refs: Vec<Vec<&str>> = owned
                .iter()
                .map(|(_, tags)| tags.iter().map(String::as_str).collect())
                .collect();
            let keyed: Vec<(Key, &[&str])> = owned
                .iter()
                .zip(&tag_refs)
                .map(|((key, _), tags)| (key.clone(), tags.as_slice()))
                .collect();
            let lookups = self.cache.get_many_tagged::<FragmentEntry>(&keyed).await;
            let now = now_ms();
            for ((request, (key, _)), lookup) in requests.iter().zip(&keyed).zip(lookups) {
                let (entry, hit) = match lookup.value {
                    Some(entry) => (entry, true),
                    None => {
                        let started = Instant::now();
                        let entry = self.fill(tera, request).await?;
                        self.cache.record_fill(key.family(), started.elapsed());
                        if let Some(versions) = lookup.versions {
                            let ttl = request_ttl(request)
                                .or_else(|| self.def(name_of(request)).ok().and_then(|d| d.ttl));
                            self.cache.set_tagged(key, &versions, &entry, ttl).await;
                        }
                        (entry, false)
                    }
                };
                reports.push(FragmentReport {
                    kind: kind_of(request),
                    name: name_of(request).to_string(),
                    key: key.as_str().to_string(),
                    hit,
                    age_ms: now.saturating_sub(entry.stored_at_ms),
                    render_us: entry.render_us,
                });
                resolved.insert(request.id(), entry.body);
            }
        }
        ctx.insert(
            "cache",
            &info(
                !reports.is_empty() && reports.iter().all(|r| r.hit),
                reports.len(),
            ),
        );
        let (html, _) = with_state(Mode::Serve(resolved), self.debug, || {
            STATE.with(|s| s.borrow_mut().as_mut().expect("state set").reports = reports);
            crate::web::templates::render(tera, template, ctx)
        });
        Ok(html?)
    }

    /// A miss: load the data (blocks and queries) and render the template.
    async fn fill(&self, tera: &Tera, request: &Request) -> Result<FragmentEntry, FragmentError> {
        let started = Instant::now();
        let body = match request {
            Request::Block { name, vary, .. } => {
                let def = self.def(name)?;
                let data = self.load(name, def, vary.clone()).await?;
                self.stats.renders.fetch_add(1, Relaxed);
                let template = def
                    .template
                    .ok_or_else(|| FragmentError::Unknown(format!("{name} has no template")))?;
                crate::web::templates::render(tera, template, &Context::from_value(data)?)?
            }
            Request::Component { template, ctx, .. } => {
                self.stats.renders.fetch_add(1, Relaxed);
                crate::web::templates::render(tera, template, &Context::from_value(ctx.clone())?)?
            }
            Request::Query { name, .. } => {
                let def = self.def(name)?;
                self.load(name, def, Value::Null).await?.to_string()
            }
        };
        Ok(FragmentEntry {
            body,
            stored_at_ms: now_ms(),
            render_us: started.elapsed().as_micros() as u64,
        })
    }

    async fn load(
        &self,
        name: &str,
        def: &FragmentDef,
        args: Value,
    ) -> Result<Value, FragmentError> {
        self.stats.loads.fetch_add(1, Relaxed);
        (def.loader)(args)
            .await
            .map_err(|source| FragmentError::Load {
                name: name.to_string(),
                source,
            })
    }
}

fn with_state<R>(mode: Mode, debug: bool, f: impl FnOnce() -> R) -> (R, RenderState) {
    STATE.with(|s| {
        *s.borrow_mut() = Some(RenderState {
            mode,
            reports: Vec::new(),
            debug,
        })
    });
    let result = f();
    let state = STATE.with(|s| s.borrow_mut().take()).expect("state set");
    (result, state)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn name_of(r: &Request) -> &str {
    match r {
        Request::Block { name, .. }
        | Request::Component { name, .. }
        | Request::Query { name, .. } => name,
    }
}

fn kind_of(r: &Request) -> &'static str {
    match r {
        Request::Block { .. } => "cache_block",
        Request::Component { .. } => "cached_component",
        Request::Query { .. } => "cache_query",
    }
}

fn request_ttl(r: &Request) -> Option<Duration> {
    match r {
        Request::Block { ttl, .. }
        | Request::Component { ttl, .. }
        | Request::Query { ttl, .. } => ttl.map(Duration::from_secs),
    }
}

/// Records the request (collect) or answers it (serve).
fn call(request: Request, placeholder: Value) -> tera::Result<Value> {
    STATE.with(|s| {
        let mut state = s.borrow_mut();
        let state = state.as_mut().ok_or_else(|| {
            tera::Error::msg(
                "cache functions work only in pages rendered by Fragments::render_page",
            )
        })?;
        match &mut state.mode {
            Mode::Collect(requests) => {
                requests.push(request);
                Ok(placeholder)
            }
            Mode::Serve(resolved) => {
                let body = resolved.get(&request.id()).ok_or_else(|| {
                    tera::Error::msg(format!("fragment {} was not prefetched", request.id()))
                })?;
                Ok(match request {
                    Request::Query { .. } => {
                        serde_json::from_str(body).map_err(|e| tera::Error::msg(e.to_string()))?
                    }
                    _ => Value::String(body.clone()),
                })
            }
        }
    })
}

fn string_arg(args: &HashMap<String, Value>, name: &str, function: &str) -> tera::Result<String> {
    args.get(name)
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| {
            tera::Error::msg(format!(
                "{function}: the `{name}` argument (a string) is required"
            ))
        })
}

fn ttl_arg(args: &HashMap<String, Value>) -> Option<u64> {
    args.get("ttl").and_then(Value::as_u64)
}

/// `{{ cache_block(name="recent_posts", ttl=600, vary=[page]) }}`
struct CacheBlock;
impl tera::Function for CacheBlock {
    fn call(&self, args: &HashMap<String, Value>) -> tera::Result<Value> {
        let name = string_arg(args, "name", "cache_block")?;
        let vary = args.get("vary").cloned().unwrap_or(Value::Null);
        call(
            Request::Block {
                name,
                vary,
                ttl: ttl_arg(args),
            },
            Value::String(String::new()),
        )
    }
    fn is_safe(&self) -> bool {
        true
    }
}

/// `{{ cached_component(name="footer", template="components/footer.html", ttl=300, links=social_links) }}`
struct CachedComponent;
impl tera::Function for CachedComponent {
    fn call(&self, args: &HashMap<String, Value>) -> tera::Result<Value> {
        let name = string_arg(args, "name", "cached_component")?;
        let template = string_arg(args, "template", "cached_component")?;
        let ctx: serde_json::Map<String, Value> = args
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "name" | "template" | "ttl"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Sorted keys (serde_json's map is a BTreeMap): the same context, the same key.
        call(
            Request::Component {
                name,
                template,
                ctx: Value::Object(ctx),
                ttl: ttl_arg(args),
            },
            Value::String(String::new()),
        )
    }
    fn is_safe(&self) -> bool {
        true
    }
}

/// `{% for post in cache_query(name="recent_posts") %}` — a registered query's result.
struct CacheQuery;
impl tera::Function for CacheQuery {
    fn call(&self, args: &HashMap<String, Value>) -> tera::Result<Value> {
        let name = string_arg(args, "name", "cache_query")?;
        call(
            Request::Query {
                name,
                ttl: ttl_arg(args),
            },
            Value::Array(Vec::new()),
        )
    }
}

/// The debug panel's template (tera's own escaping applies to keys and names).
const DEBUG_PANEL: &str = include_str!("../../../templates/fragments/cache_debug.html");

/// `{{ cache_debug_info() }}`: in debug mode, a panel listing every fragment of the
/// page (key, hit or miss, age, render time); nothing in production.
struct CacheDebugInfo;
impl tera::Function for CacheDebugInfo {
    fn call(&self, _args: &HashMap<String, Value>) -> tera::Result<Value> {
        STATE.with(|s| {
            let state = s.borrow();
            let Some(state) = state.as_ref().filter(|s| s.debug) else {
                return Ok(Value::String(String::new()));
            };
            let mut ctx = Context::new();
            ctx.insert("reports", &state.reports);
            Tera::one_off(DEBUG_PANEL, &ctx, true).map(Value::String)
        })
    }
    fn is_safe(&self) -> bool {
        true
    }
}
