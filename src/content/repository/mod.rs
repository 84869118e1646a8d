//! The repository: every read and every write of content goes through here, on either
//! database. It is the one write path: each write runs in `transact!`, which records its
//! cache invalidation in the same transaction (see `outbox`). Handlers never touch
//! tables. One file per aggregate: `posts` (posts, tags, authors), `site` (personal
//! info, social links, AI tools), `inbox` (contact messages), `admins`.

use chrono::{NaiveDateTime, Timelike, Utc};

use crate::cache::CacheManager;
use crate::db::{Db, DbError};

pub type RepoResult<T> = Result<T, DbError>;

/// Runs a write and records the invalidation of `models` in the same transaction (the
/// outbox), then applies it once committed (`invalidate_after_commit`): a write can
/// never be saved while its invalidation is lost. Evaluates to the body's result.
macro_rules! transact {
    ($repo:expr, $models:expr, |$conn:ident| $body:expr) => {{
        let repo: &Repository = &$repo;
        let tags = $crate::content::invalidation::tags_invalidated_by($models);
        let joined = tags.join(" ");
        let written = $crate::with_conn!(repo.db, |conn| {
            conn.transaction::<_, DbError, _>(async |$conn| {
                // The write first: on SQLite it takes the write lock before anything is
                // read, so a busy database makes it wait (busy_timeout) instead of
                // failing with "database is locked" when a read would need upgrading.
                let outbox: i32 =
                    diesel::insert_into($crate::content::schema::cache_invalidations::table)
                        .values((
                            $crate::content::schema::cache_invalidations::tags.eq(&joined),
                            $crate::content::schema::cache_invalidations::created_at
                                .eq($crate::content::repository::now()),
                        ))
                        .returning($crate::content::schema::cache_invalidations::id)
                        .get_result($conn)
                        .await?;
                let value: Result<_, DbError> = async { $body }.await;
                Ok((value?, outbox))
            })
            .await
        });
        match written {
            Ok((value, outbox)) => {
                repo.invalidate_after_commit(outbox, &tags).await;
                Ok(value)
            }
            Err(e) => Err(e),
        }
    }};
}

mod admins;
mod inbox;
mod outbox;
mod posts;
mod site;

/// Now, truncated to microseconds: PostgreSQL keeps microseconds and SQLite whatever it
/// is given, so both backends must store the same value for ETags to agree.
pub fn now() -> NaiveDateTime {
    let now = Utc::now().naive_utc();
    now.with_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

/// Reads go through the cache (each naming the models it shows); writes bump the
/// tags of the models they changed once their transaction has committed.
#[derive(Clone)]
pub struct Repository {
    db: Db,
    cache: CacheManager,
}

impl Repository {
    pub fn new(db: Db, cache: CacheManager) -> Self {
        Repository { db, cache }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn cache(&self) -> &CacheManager {
        &self.cache
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
