//! The repository: every read and every write of content goes through here, on either
//! database. It is the one write path: each write runs in `transact!`, which records its
//! cache invalidation in the same transaction (see `outbox`). Handlers never touch
//! tables. One file per aggregate: `posts` (posts, tags, authors), `site` (personal
//! info, social links, AI tools), `inbox` (contact messages), `admins`.

use chrono::{NaiveDateTime, Timelike};

use crate::cache::CacheManager;
use crate::db::{Db, DbError};

pub type RepoResult<T> = Result<T, DbError>;

/// Runs a write and records the invalidation of `models` in the same transaction (the
/// outbox), then applies it once committed (`invalidate_after_commit`): a write can
/// never be saved while its invalidation is lost. Evaluates to the body's result. In the
/// second form the body may push per-object tags (e.g. `post_tag(slug)`) to `$objects`.
macro_rules! transact {
    ($repo:expr, $models:expr, |$conn:ident| $body:expr) => {
        transact!($repo, $models, |$conn, _objects| $body)
    };
    ($repo:expr, $models:expr, |$conn:ident, $objects:ident| $body:expr) => {{
        use $crate::content::schema::cache_invalidations as outbox_rows;
        let repo: &Repository = &$repo;
        let model_tags = $crate::content::invalidation::tags_invalidated_by($models);
        let written = $crate::with_conn!(repo.db, |conn| {
            conn.transaction::<_, $crate::db::DbError, _>(async |$conn| {
                // The write first: on SQLite it takes the write lock before anything is
                // read, so a busy database makes it wait (busy_timeout) instead of
                // failing with "database is locked" when a read would need upgrading.
                let outbox: i32 = diesel::insert_into(outbox_rows::table)
                    .values((
                        outbox_rows::tags.eq(model_tags.join(" ")),
                        outbox_rows::created_at.eq($crate::content::repository::now()),
                        outbox_rows::purge_edges
                            .eq($crate::content::invalidation::purges_edges($models)),
                    ))
                    .returning(outbox_rows::id)
                    .get_result($conn)
                    .await?;
                #[allow(unused_mut)]
                let mut $objects: Vec<String> = Vec::new();
                let value: Result<_, $crate::db::DbError> = async { $body }.await;
                let value = value?;
                let mut tags: Vec<String> = model_tags.iter().map(|t| t.to_string()).collect();
                if !$objects.is_empty() {
                    tags.extend($objects);
                    diesel::update(outbox_rows::table.find(outbox))
                        .set(outbox_rows::tags.eq(tags.join(" ")))
                        .execute($conn)
                        .await?;
                }
                Ok((value, outbox, tags))
            })
            .await
        });
        match written {
            Ok((value, outbox, tags)) => {
                let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
                let edges = $crate::content::invalidation::purges_edges($models);
                repo.invalidate_after_commit(outbox, &tags, edges).await;
                Ok(value)
            }
            Err(e) => Err(e),
        }
    }};
}

mod admins;
mod authors;
pub mod cache_site;
pub mod demand;
pub mod edge_paths;
pub mod edge_purges;
pub mod images;
mod inbox;
mod outbox;
mod posts;
pub mod rollups;
pub mod search;
mod site;
mod tags;

pub use crate::db::now;

/// `t` without its fraction of a second: publication times are whole seconds, so a
/// post published now is visible at once also on SQLite, whose `CURRENT_TIMESTAMP`
/// (the visibility clock) has no fraction.
pub fn whole_second(t: NaiveDateTime) -> NaiveDateTime {
    t.with_nanosecond(0).unwrap_or(t)
}

/// Reads go through the cache (each naming the models it shows); writes bump the
/// tags of the models they changed once their transaction has committed.
#[derive(Clone)]
pub struct Repository {
    db: Db,
    cache: CacheManager,
    /// This process's count of searches (which results to store and to warm).
    search_counts: std::sync::Arc<crate::content::search::popular::Popular>,
    search_gate: std::sync::Arc<crate::content::search::gate::SearchGate>,
    /// The edge caches owed purges (none configured: None).
    edges: Option<std::sync::Arc<crate::edge::Edges>>,
    /// When the next scheduled publication is due (Unix ms; 0: none), as the outbox
    /// poller last read it: answers promise clients no freshness past it.
    next_publication: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Repository {
    pub fn new(db: Db, cache: CacheManager) -> Self {
        Repository {
            db,
            cache,
            search_counts: Default::default(),
            search_gate: Default::default(),
            edges: None,
            next_publication: Default::default(),
        }
    }

    /// When the next scheduled publication is due, in Unix milliseconds (0: none is
    /// scheduled), kept current by the outbox poller (`start_invalidation_outbox`) and
    /// shared with the response cache, which caps `max-age` at it.
    pub fn next_publication(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.next_publication.clone()
    }

    /// Owes every committed write's invalidation to these edge caches too.
    pub fn with_edges(mut self, edges: Option<std::sync::Arc<crate::edge::Edges>>) -> Self {
        self.edges = edges;
        self
    }

    pub fn edges(&self) -> Option<&std::sync::Arc<crate::edge::Edges>> {
        self.edges.as_ref()
    }

    pub fn search_counts(&self) -> &crate::content::search::popular::Popular {
        &self.search_counts
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn cache(&self) -> &CacheManager {
        &self.cache
    }

    /// Refreshes the planner's statistics after a bulk write (seeding, reindexing): with
    /// none, PostgreSQL estimated 2 matches for a word in 9,500 posts and joined them
    /// one by one (26 ms instead of 10).
    pub async fn analyze(&self) -> RepoResult<()> {
        crate::with_conn!(self.db, |conn| {
            diesel_async::RunQueryDsl::execute(diesel::sql_query("ANALYZE"), conn).await?;
            Ok::<_, DbError>(())
        })?;
        Ok(())
    }
}

/// A unique constraint refused the write (a slug or name already in use).
pub fn is_unique_violation(e: &DbError) -> bool {
    matches!(
        e,
        DbError::Query(e) if matches!(**e, diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _
        ))
    )
}
