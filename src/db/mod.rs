//! Database access for both backends: the pool enum, the `with_conn!` macro that runs one
//! query body on either, and the embedded migrations. Nothing above this module knows
//! which backend it talks to; SQL that differs per backend belongs here and nowhere else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::DatabaseUrl;

pub mod analysis;

pub type SqliteAsync = SyncConnectionWrapper<SqliteConnection, BlockingPool>;

/// Runs SQLite's blocking calls on tokio's blocking pool, as diesel-async's default does,
/// but survives cancellation on a current-thread runtime (an actix worker): when a
/// request is dropped mid-query (the client went away, or another extractor failed
/// first), the default waits for the query with `block_in_place`, which panics there
/// and takes the worker down. This one waits by parking the thread: the query runs on
/// a pool thread and finishes without the worker's runtime.
pub struct BlockingPool(tokio::runtime::Handle);

impl diesel_async::sync_connection_wrapper::SpawnBlocking for BlockingPool {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<R, Box<dyn std::error::Error + Send + Sync + 'static>>,
    >
    where
        R: Send + 'static,
    {
        use futures_util::FutureExt;
        // The statement's span (a trace's `db.statement`) belongs to the query that ran it.
        let span = tracing::Span::current();
        FinishOnDrop(self.0.spawn_blocking(move || span.in_scope(task)))
            .map(|r| r.map_err(Box::from))
            .boxed()
    }

    fn get_runtime() -> Self {
        BlockingPool(tokio::runtime::Handle::current())
    }
}

/// A blocking task that is waited for, not abandoned, when its future is dropped: the
/// connection it holds must be done before it goes back to the pool.
struct FinishOnDrop<R>(tokio::task::JoinHandle<R>);

impl<R> std::future::Future for FinishOnDrop<R> {
    type Output = Result<R, tokio::task::JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<R> Drop for FinishOnDrop<R> {
    fn drop(&mut self) {
        if self.0.is_finished() {
            return;
        }
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = std::task::Context::from_waker(&waker);
        while std::future::Future::poll(std::pin::Pin::new(&mut self.0), &mut cx).is_pending() {
            std::thread::park();
        }
    }
}

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// How long a request waits for a pooled connection before it fails.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite allows one writer at a time: a small pool makes writers queue (busy_timeout)
/// instead of failing with "database is locked".
const SQLITE_POOL_SIZE: u32 = 4;
const PG_POOL_SIZE: u32 = 16;

/// Clone, so waiters of a single flight get the leader's error (see `cache::flight`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    #[error("database query failed: {0}")]
    Query(Arc<diesel::result::Error>),
    #[error("could not get a database connection: {0}")]
    Pool(String),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("migrations failed: {0}")]
    Migration(String),
}

impl From<diesel::result::Error> for DbError {
    fn from(e: diesel::result::Error) -> Self {
        DbError::Query(Arc::new(e))
    }
}

impl DbError {
    /// The database cannot be reached (rather than a query being wrong): a 503.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            DbError::Pool(_) | DbError::Connect(_) => true,
            DbError::Query(e) => matches!(
                **e,
                Error::DatabaseError(
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                    _
                ) | Error::BrokenTransactionManager
            ),
            DbError::Migration(_) => false,
        }
    }

    /// The row asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DbError::Query(e) if matches!(**e, diesel::result::Error::NotFound))
    }
}

impl From<bb8::RunError<diesel_async::pooled_connection::PoolError>> for DbError {
    fn from(e: bb8::RunError<diesel_async::pooled_connection::PoolError>) -> Self {
        DbError::Pool(e.to_string())
    }
}

/// Counts the connection checkouts (one query or one transaction) made while answering
/// a request — within the `server_timing` middleware's scope, where every handler and
/// extractor runs (the layers outside it query nothing) — so tests can assert that a
/// cached page runs no SQL. Background tasks (the invalidation poller, view and history
/// flushes) query on their own schedule and are left out: counted, they made that
/// assertion fail whenever a poll fell between two requests. The time spent goes to the
/// request's `timing` for the Server-Timing header.
#[derive(Debug, Default)]
pub struct DbStats {
    queries: AtomicU64,
    /// Statements by shape, slow ones, repetitions within requests (`folio analyze`).
    pub analysis: analysis::QueryLog,
}

impl DbStats {
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
    /// A `with_conn!` body ran at `site` (its file and line) since `started`.
    #[doc(hidden)]
    pub fn record(&self, started: Instant, site: &'static str) {
        if crate::timing::add_db(started.elapsed(), site) {
            self.queries.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Clone)]
pub enum Backend {
    Pg(Pool<AsyncPgConnection>),
    Sqlite(Pool<SqliteAsync>),
}

/// A cloneable handle on the pool of whichever backend `DATABASE_URL` chose.
#[derive(Clone)]
pub struct Db {
    pub backend: Backend,
    pub stats: Arc<DbStats>,
}

/// Runs `$body` with `$conn` bound to a `&mut` async connection of either backend. The
/// body is compiled once per backend, so it must only use SQL both accept. A trace
/// shows it as one `db.query` span (its call site and the rows it returned), with a
/// `db.statement` span per SQL statement it ran beneath.
#[macro_export]
macro_rules! with_conn {
    ($db:expr, |$conn:ident| $body:expr) => {{
        use ::tracing::Instrument as _;
        #[allow(unused_imports)]
        use $crate::db::rows::{Counted as _, Uncounted as _};
        let db: &$crate::db::Db = &$db;
        let site = concat!(file!(), ":", line!());
        let span = ::tracing::debug_span!(
            "db.query",
            code.site = site,
            db.system.name = db.system_name(),
            db.response.returned_rows = ::tracing::field::Empty,
        );
        let started = ::std::time::Instant::now();
        let result: Result<_, $crate::db::DbError> = async {
            match &db.backend {
                $crate::db::Backend::Pg(pool) => {
                    let mut guard = pool.get().await?;
                    let $conn = &mut *guard;
                    $body
                }
                $crate::db::Backend::Sqlite(pool) => {
                    let mut guard = pool.get().await?;
                    let $conn = &mut *guard;
                    $body
                }
            }
        }
        .instrument(span.clone())
        .await;
        db.stats.record(started, site);
        if let (false, Ok(value)) = (span.is_disabled(), &result) {
            if let Some(rows) = (&$crate::db::rows::Returned(value)).rows() {
                span.record("db.response.returned_rows", rows);
            }
        }
        result
    }};
}

/// Rows a `with_conn!` body returned, for its span: a list's length, an option's 0 or
/// 1, a write's affected rows, a scalar's one; a type without `Counted` (a tuple, a
/// struct) reports none — method resolution picks `Uncounted` for it, where the type is
/// known by then (a body whose type is inferred later needs a `Counted` impl).
#[doc(hidden)]
pub mod rows {
    pub struct Returned<'a, T>(pub &'a T);

    pub trait Counted {
        fn rows(&self) -> Option<u64>;
    }
    impl<T> Counted for Returned<'_, Vec<T>> {
        fn rows(&self) -> Option<u64> {
            Some(self.0.len() as u64)
        }
    }
    impl<T> Counted for Returned<'_, Option<T>> {
        fn rows(&self) -> Option<u64> {
            Some(u64::from(self.0.is_some()))
        }
    }
    /// Rows a write affected.
    impl Counted for Returned<'_, usize> {
        fn rows(&self) -> Option<u64> {
            Some(*self.0 as u64)
        }
    }
    /// A scalar (a count, an id, an existence test) is one row.
    macro_rules! one_row {
        ($($t:ty),*) => {$(
            impl Counted for Returned<'_, $t> {
                fn rows(&self) -> Option<u64> {
                    Some(1)
                }
            }
        )*};
    }
    one_row!(i64, i32, bool);

    pub trait Uncounted {
        fn rows(&self) -> Option<u64>;
    }
    impl<T> Uncounted for &Returned<'_, T> {
        fn rows(&self) -> Option<u64> {
            None
        }
    }
}

impl Db {
    /// Connects and checks that the database answers, so start-up fails fast.
    pub async fn connect(url: &DatabaseUrl) -> Result<Db, DbError> {
        let stats: Arc<DbStats> = Arc::default();
        let backend = match url {
            DatabaseUrl::Postgres(url) => {
                let mut config = ManagerConfig::default();
                let log = stats.clone();
                config.custom_setup = Box::new(move |url| {
                    let log = log.clone();
                    Box::pin(async move {
                        let mut conn = AsyncPgConnection::establish(url).await?;
                        conn.set_instrumentation(analysis::Timer::new(log, "postgresql"));
                        conn.batch_execute(PG_SESSION)
                            .await
                            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                        Ok(conn)
                    })
                });
                let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
                    url.as_str(),
                    config,
                );
                let pool = Pool::builder()
                    .max_size(PG_POOL_SIZE)
                    .connection_timeout(CHECKOUT_TIMEOUT)
                    .build(manager)
                    .await
                    .map_err(|e| DbError::Connect(e.to_string()))?;
                Backend::Pg(pool)
            }
            DatabaseUrl::Sqlite(path) => {
                let mut config = ManagerConfig::default();
                let log = stats.clone();
                config.custom_setup = Box::new(move |url| {
                    let log = log.clone();
                    Box::pin(async move {
                        let mut conn = SqliteAsync::establish(url).await?;
                        conn.set_instrumentation(analysis::Timer::new(log, "sqlite"));
                        conn.batch_execute(SQLITE_PRAGMAS)
                            .await
                            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                        Ok(conn)
                    })
                });
                let manager = AsyncDieselConnectionManager::<SqliteAsync>::new_with_config(
                    path.as_str(),
                    config,
                );
                let pool = Pool::builder()
                    .max_size(SQLITE_POOL_SIZE)
                    .connection_timeout(CHECKOUT_TIMEOUT)
                    .build(manager)
                    .await
                    .map_err(|e| DbError::Connect(e.to_string()))?;
                Backend::Sqlite(pool)
            }
        };
        let db = Db { backend, stats };
        db.ping()
            .await
            .map_err(|e| DbError::Connect(format!("{url:?}: {e}")))?;
        Ok(db)
    }

    /// One trivial query: does the database answer?
    pub async fn ping(&self) -> Result<(), DbError> {
        let check = async {
            match &self.backend {
                Backend::Pg(p) => p.get().await?.batch_execute("SELECT 1").await?,
                Backend::Sqlite(p) => p.get().await?.batch_execute("SELECT 1").await?,
            }
            Ok::<_, DbError>(())
        };
        check.await.map_err(|e| DbError::Connect(e.to_string()))
    }

    /// Which SQL dialect a query must be written in, where the two differ (search).
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Pg(_))
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Pg(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// The backend as OpenTelemetry names it (`db.system.name`).
    pub fn system_name(&self) -> &'static str {
        match self.backend {
            Backend::Pg(_) => "postgresql",
            Backend::Sqlite(_) => "sqlite",
        }
    }
}

/// Applied on every new PostgreSQL connection. Timestamps are stored in UTC without a
/// zone, and visibility compares them with the database's clock (`CURRENT_TIMESTAMP`,
/// see `content::repository::visible`): the session reads them as UTC whatever the
/// server's default zone is.
const PG_SESSION: &str = "SET TIME ZONE 'UTC'";

/// Applied on every new SQLite connection: WAL lets readers run beside the one writer,
/// and the busy timeout makes a second writer wait instead of failing. Each connection
/// keeps its own page cache (2 MiB by default, so up to 8 MiB for the pool, most of it
/// copies of the same pages); 256 KiB holds the b-tree's upper pages. The rest is read
/// through a memory map of the file (up to 256 MiB of address space): the OS's cached
/// pages, shared by every connection, without a `pread` and a copy per page — a
/// 12-word search at 10,000 posts read 2,250 pages a request that way, a tenth of its CPU.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
     PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -256; \
     PRAGMA mmap_size = 268435456;";

/// Applies pending migrations. Runs on a blocking thread with a synchronous connection:
/// diesel-async's async harness panics on actix's current-thread runtime.
pub async fn migrate(url: &DatabaseUrl) -> Result<usize, DbError> {
    let url = url.clone();
    tokio::task::spawn_blocking(move || -> Result<usize, DbError> {
        let applied = match &url {
            DatabaseUrl::Postgres(u) => {
                let mut conn =
                    <AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(
                        u.as_str(),
                    )
                    .map_err(|e| DbError::Connect(format!("{url:?}: {e}")))?;
                conn.run_pending_migrations(PG_MIGRATIONS)
                    .map_err(|e| DbError::Migration(e.to_string()))?
                    .len()
            }
            DatabaseUrl::Sqlite(path) => {
                if let Some(dir) = std::path::Path::new(path).parent() {
                    if !dir.as_os_str().is_empty() {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            DbError::Connect(format!("cannot create {}: {e}", dir.display()))
                        })?;
                    }
                }
                let mut conn = <SqliteConnection as Connection>::establish(path)
                    .map_err(|e| DbError::Connect(e.to_string()))?;
                diesel::connection::SimpleConnection::batch_execute(&mut conn, SQLITE_PRAGMAS)?;
                conn.run_pending_migrations(SQLITE_MIGRATIONS)
                    .map_err(|e| DbError::Migration(e.to_string()))?
                    .len()
            }
        };
        Ok(applied)
    })
    .await
    .map_err(|e| DbError::Migration(e.to_string()))?
}

/// Now, truncated to microseconds: PostgreSQL keeps microseconds and SQLite whatever it
/// is given, so both backends must store the same value for ETags to agree.
pub fn now() -> chrono::NaiveDateTime {
    use chrono::Timelike as _;
    let now = chrono::Utc::now().naive_utc();
    now.with_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}
