//! The one cache a database's content is cached in. The outbox (`outbox`) deletes a row
//! once its invalidation is applied; that is right only if it was applied to the cache
//! readers are served from. An instance with no cache (`CACHE_URL=none`), or with a
//! cache of its own beside the site's (the in-process cache, another Redis, another
//! `CACHE_KEY_PREFIX`), would otherwise take a row — a write's, or a scheduled post's
//! publication — that the site's cache never gets, and the lists would stay without
//! the post until their TTL on every instance.
//!
//! So the database names its cache (`cache_site`), and instances of that cache say they
//! are alive every `HEARTBEAT`. Rows are retired only by an instance of that cache, or,
//! when no cache has been alive for `GONE_AFTER`, by an uncached instance (an uncached
//! site, or one with only edge caches, still needs its rows applied); it then names the
//! site `none`, so a cache that comes back later knows rows were retired without it and
//! starts empty. A caching instance whose cache is not the live site's refuses to start.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{RepoResult, Repository};
use crate::content::schema::cache_site;
use crate::with_conn;

/// How often a caching instance says its cache is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// After this long without a heartbeat the site's cache counts as gone.
pub const GONE_AFTER: Duration = Duration::from_secs(30);
/// The site's name while only uncached instances retire rows.
pub(super) const UNCACHED: &str = "none";

/// What an instance found when it started.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The database's cache is this instance's (named now, or already).
    Ours,
    /// Another cache was named but gone: this one took over and must start empty.
    TookOver { from: String },
    /// Another cache is alive: this instance must not serve from its own.
    Refused { other: String, seen_secs_ago: i64 },
    /// This instance caches nothing: it retires rows only while no cache is alive.
    Uncached,
}

/// Whether an outbox row may be deleted by this instance (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retire {
    Yes,
    /// Left to the site's cache; `alive`: one of its instances said so lately.
    LeftToSite {
        alive: bool,
    },
}

/// Inside a transaction: decides `Retire` for an instance whose cache is `own` (None:
/// uncached), and records it (the heartbeat, or the uncached name) — written first, so
/// on SQLite the transaction holds the write lock before it reads, and on PostgreSQL a
/// concurrent takeover makes the compare-and-set match nothing.
macro_rules! may_retire {
    ($conn:ident, $own:expr) => {{
        use $crate::content::repository::cache_site::{stale, Retire, UNCACHED};
        use $crate::content::schema::cache_site as site;
        let own: Option<&str> = $own;
        let name = own.unwrap_or(UNCACHED);
        let now = diesel::dsl::now;
        let refreshed = diesel::update(site::table.filter(site::id.eq(1).and(site::name.eq(name))))
            .set(site::seen_at.eq(now))
            .execute($conn)
            .await?;
        if refreshed == 1 {
            Retire::Yes
        } else {
            let record: Option<(String, chrono::NaiveDateTime, chrono::NaiveDateTime)> =
                site::table
                    .filter(site::id.eq(1))
                    .select((site::name, site::seen_at, now))
                    .first($conn)
                    .await
                    .optional()?;
            match record {
                None => {
                    let inserted = diesel::insert_into(site::table)
                        .values((site::id.eq(1), site::name.eq(name), site::seen_at.eq(now)))
                        .on_conflict_do_nothing()
                        .execute($conn)
                        .await?;
                    match inserted {
                        1 => Retire::Yes,
                        _ => Retire::LeftToSite { alive: true },
                    }
                }
                Some((other, seen_at, at)) if own.is_none() && stale(seen_at, at) => {
                    let taken = diesel::update(
                        site::table.filter(
                            site::id
                                .eq(1)
                                .and(site::name.eq(&other))
                                .and(site::seen_at.eq(seen_at)),
                        ),
                    )
                    .set((site::name.eq(UNCACHED), site::seen_at.eq(now)))
                    .execute($conn)
                    .await?;
                    match taken {
                        1 => Retire::Yes,
                        _ => Retire::LeftToSite { alive: true },
                    }
                }
                Some((_, seen_at, at)) => Retire::LeftToSite {
                    alive: !stale(seen_at, at),
                },
            }
        }
    }};
}
pub(super) use may_retire;

/// Whether a record last seen at `seen_at` is gone at `now` (both the database's clock).
pub(super) fn stale(seen_at: NaiveDateTime, now: NaiveDateTime) -> bool {
    now - seen_at > chrono::Duration::from_std(GONE_AFTER).expect("a small duration")
}

impl Repository {
    /// This instance's cache as the database names it (None: it caches nothing).
    pub(super) fn cache_site_name(&self) -> Option<String> {
        self.cache().site_name()
    }

    /// At start-up: names this instance's cache as the database's, unless another cache
    /// is alive there (see `Claim`).
    pub async fn claim_cache_site(&self) -> RepoResult<Claim> {
        let Some(own) = self.cache_site_name() else {
            return Ok(Claim::Uncached);
        };
        // A concurrent claim changes the row under us: read and try again.
        for _ in 0..5 {
            let record: Option<(String, NaiveDateTime, NaiveDateTime)> =
                with_conn!(self.db, |conn| Ok(cache_site::table
                    .filter(cache_site::id.eq(1))
                    .select((cache_site::name, cache_site::seen_at, diesel::dsl::now))
                    .first(conn)
                    .await
                    .optional()?))?;
            let (written, claim) = match record {
                None => {
                    let n = with_conn!(self.db, |conn| Ok(diesel::insert_into(cache_site::table)
                        .values((
                            cache_site::id.eq(1),
                            cache_site::name.eq(&own),
                            cache_site::seen_at.eq(diesel::dsl::now),
                        ))
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?))?;
                    (n, Claim::Ours)
                }
                Some((name, seen_at, now)) => {
                    let gone = stale(seen_at, now);
                    if name != own && !gone && name != UNCACHED {
                        return Ok(Claim::Refused {
                            other: name,
                            seen_secs_ago: (now - seen_at).num_seconds(),
                        });
                    }
                    let n = with_conn!(self.db, |conn| Ok(diesel::update(
                        cache_site::table.filter(
                            cache_site::id
                                .eq(1)
                                .and(cache_site::name.eq(&name))
                                .and(cache_site::seen_at.eq(seen_at)),
                        ),
                    )
                    .set((
                        cache_site::name.eq(&own),
                        cache_site::seen_at.eq(diesel::dsl::now),
                    ))
                    .execute(conn)
                    .await?))?;
                    match name == own {
                        true => (n, Claim::Ours),
                        false => (n, Claim::TookOver { from: name }),
                    }
                }
            };
            if written == 1 {
                return Ok(claim);
            }
        }
        Err(crate::db::DbError::Pool(
            "the database's cache site kept changing while this instance claimed it".into(),
        ))
    }

    /// Says this instance's cache is alive; false if the database names another cache
    /// now (this instance then leaves every row to that cache's instances).
    pub async fn cache_site_heartbeat(&self) -> RepoResult<bool> {
        let Some(own) = self.cache_site_name() else {
            return Ok(true);
        };
        let n = with_conn!(self.db, |conn| Ok(diesel::update(
            cache_site::table.filter(cache_site::id.eq(1).and(cache_site::name.eq(&own)))
        )
        .set(cache_site::seen_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?))?;
        Ok(n == 1)
    }

    /// On a clean stop of an in-process cache (one instance by definition): another cache
    /// may take the database at once instead of after `GONE_AFTER`.
    pub async fn release_cache_site(&self) -> RepoResult<()> {
        if self.cache_site_name().as_deref() != Some("memory") {
            return Ok(());
        }
        let long_ago = chrono::DateTime::from_timestamp(0, 0)
            .expect("the epoch")
            .naive_utc();
        with_conn!(self.db, |conn| Ok(diesel::update(
            cache_site::table.filter(cache_site::id.eq(1).and(cache_site::name.eq("memory")))
        )
        .set(cache_site::seen_at.eq(long_ago))
        .execute(conn)
        .await?))?;
        Ok(())
    }
}
