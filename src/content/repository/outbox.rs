//! The invalidation outbox: applying a committed write's cache invalidation, retrying
//! what the cache did not take, and applying it before a lost cache serves again. A row
//! may be due later (`due_at`): a scheduled post's publication, applied by the first
//! instance to poll after that moment, by the database's clock — the clock `visible`
//! hides the post by, so a list read before the moment is dropped by the bump after it
//! (its versions were read before the query), and one read after it has the post.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::cache_site::{may_retire, Retire, HEARTBEAT};
use super::{RepoResult, Repository};
use crate::content::invalidation::{post_tag, tags_invalidated_by, Model};
use crate::content::schema::{cache_invalidations, edge_purges};
use crate::db::DbError;
use crate::with_conn;

/// Records, inside a post write's transaction, the invalidation its publication at
/// `$due` (UTC, in the future) will need: every post listing, and the post's own page.
macro_rules! schedule_publication {
    ($conn:ident, $due:expr, $slug:expr) => {{
        use $crate::content::schema::cache_invalidations as outbox_rows;
        diesel::insert_into(outbox_rows::table)
            .values((
                outbox_rows::tags.eq($crate::content::repository::outbox::publication_tags($slug)),
                outbox_rows::created_at.eq($crate::content::repository::now()),
                outbox_rows::due_at.eq(Some($due)),
            ))
            .execute($conn)
            .await?;
    }};
}
pub(super) use schedule_publication;

/// What a post's publication changes: what any post write does, and its own page.
pub(super) fn publication_tags(slug: &str) -> String {
    let mut tags: Vec<String> = tags_invalidated_by(&[Model::Post])
        .iter()
        .map(|t| t.to_string())
        .collect();
    tags.push(post_tag(slug));
    tags.join(" ")
}

/// The distinct tags of outbox rows.
fn distinct_tags<'a>(rows: impl Iterator<Item = &'a (i32, String, bool)>) -> Vec<&'a str> {
    let mut tags: Vec<&str> = rows.flat_map(|(_, t, _)| t.split(' ')).collect();
    tags.sort_unstable();
    tags.dedup();
    tags
}

/// How long a write made by an instance whose cache is not the site's waits for the
/// site's instances (they poll every 500 ms) to apply its invalidation.
const LEFT_TO_SITE_WAIT: Duration = Duration::from_secs(3);

/// Rows to apply now: immediate ones, and scheduled ones whose time has come.
type Due = diesel::dsl::Or<
    diesel::dsl::IsNull<cache_invalidations::due_at>,
    diesel::dsl::LtEq<cache_invalidations::due_at, diesel::dsl::Nullable<diesel::dsl::now>>,
>;
fn due() -> Due {
    cache_invalidations::due_at
        .is_null()
        .or(cache_invalidations::due_at.le(diesel::dsl::now.nullable()))
}

impl Repository {
    /// Applies a committed write's invalidation (its outbox row `id`), and deletes the
    /// row once the cache has it. Awaited, so a write returns only once no reader can be
    /// served the old data; if the cache cannot be told, the row stays pending and is
    /// applied by `apply_pending_invalidations` — before this instance serves from the
    /// cache again, and by the background task on every instance. Returns whether it
    /// was applied now. Then, with `purge_edges`, the edge caches are owed it (see
    /// `edge`): the write waits at most `EDGE_PURGE_WAIT_MS` for them.
    pub async fn invalidate_after_commit(&self, id: i32, tags: &[&str], purge_edges: bool) -> bool {
        if !self.cache.invalidate_tags(tags).await {
            tracing::error!(
                ?tags,
                "cache invalidation pending: the cache did not take it; it is retried, and the cache is bypassed where it could serve old data"
            );
            return false;
        }
        let owed = purge_edges.then_some(tags);
        match self.retire_outbox_rows(vec![id], owed).await {
            Ok(Retire::Yes) => {
                if owed.is_some() {
                    if let Some(edges) = &self.edges {
                        edges.purge_soon_and_wait().await;
                    }
                }
            }
            // This instance's cache is not the one readers are served from (it caches
            // nothing, or it is a command-line process): the site's instances apply
            // the row within their poll; the write returns once they have.
            Ok(Retire::LeftToSite { alive: true }) => {
                if !self.wait_until_retired(id, LEFT_TO_SITE_WAIT).await {
                    tracing::warn!(
                        ?tags,
                        "the site's cache has not applied this write's invalidation yet; its instances retry it"
                    );
                }
            }
            Ok(Retire::LeftToSite { alive: false }) => tracing::warn!(
                ?tags,
                "no instance of this database's cache is running: the write's invalidation waits for one"
            ),
            // Applied; the row is applied again later, which costs one more miss.
            Err(e) => tracing::warn!(error = %e, "could not delete an applied invalidation"),
        }
        true
    }

    /// Waits until the outbox row `id` is gone (another instance retired it), at most
    /// `limit`; whether it is.
    async fn wait_until_retired(&self, id: i32, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left: Result<i64, DbError> =
                with_conn!(self.db, |conn| Ok(cache_invalidations::table
                    .filter(cache_invalidations::id.eq(id))
                    .count()
                    .get_result(conn)
                    .await?));
            match left {
                Ok(0) => return true,
                _ if tokio::time::Instant::now() >= deadline => return false,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Applies every invalidation still pending (this instance's or another's); returns
    /// how many.
    pub async fn apply_pending_invalidations(&self) -> RepoResult<usize> {
        let rows: Vec<(i32, String, bool)> = with_conn!(self.db, |conn| {
            Ok(cache_invalidations::table
                .filter(due())
                .order_by(cache_invalidations::id)
                .limit(500)
                .select((
                    cache_invalidations::id,
                    cache_invalidations::tags,
                    cache_invalidations::purge_edges,
                ))
                .load(conn)
                .await?)
        })?;
        if rows.is_empty() {
            return Ok(0);
        }
        let tags = distinct_tags(rows.iter());
        if !self.cache.invalidate_tags(&tags).await {
            return Err(DbError::Pool(
                "the cache did not take the pending invalidations".into(),
            ));
        }
        let owed = distinct_tags(rows.iter().filter(|(_, _, edges)| *edges));
        let owed = (!owed.is_empty()).then_some(owed.as_slice());
        let retired = self
            .retire_outbox_rows(rows.iter().map(|(id, _, _)| *id).collect(), owed)
            .await?;
        if retired != Retire::Yes {
            // Another cache is the site's: its instances apply these rows.
            return Ok(0);
        }
        if owed.is_some() {
            if let Some(edges) = &self.edges {
                edges.wake();
            }
        }
        tracing::info!(applied = rows.len(), "pending cache invalidations applied");
        Ok(rows.len())
    }

    /// Deletes applied outbox rows if this instance's cache is the site's (see
    /// `cache_site`); with `owed` tags and edges configured, in the same transaction as
    /// the edge purges that replace them (so a crash between the two can lose neither).
    async fn retire_outbox_rows(&self, ids: Vec<i32>, owed: Option<&[&str]>) -> RepoResult<Retire> {
        let purges = match (owed, &self.edges) {
            (Some(tags), Some(edges)) => Some(edges.rows_for(tags)),
            _ => None,
        };
        let own = self.cache_site_name();
        with_conn!(self.db, |conn| {
            conn.transaction::<_, DbError, _>(async |conn| {
                let retire = may_retire!(conn, own.as_deref());
                if retire != Retire::Yes {
                    return Ok(retire);
                }
                diesel::delete(
                    cache_invalidations::table.filter(cache_invalidations::id.eq_any(&ids)),
                )
                .execute(conn)
                .await?;
                if let Some(rows) = &purges {
                    // One row per edge (SQLite takes no multi-row insert of these).
                    for row in rows {
                        diesel::insert_into(edge_purges::table)
                            .values(row)
                            .execute(conn)
                            .await?;
                    }
                }
                Ok(Retire::Yes)
            })
            .await
        })
    }

    /// Invalidations due but not yet applied (the admin shows a notice).
    pub async fn pending_invalidations(&self) -> RepoResult<i64> {
        with_conn!(self.db, |conn| Ok(cache_invalidations::table
            .filter(due())
            .count()
            .get_result(conn)
            .await?))
    }

    /// Makes the cache apply pending invalidations before it serves again after a loss,
    /// and retries them in the background every `every`; with edges, starts their
    /// delivery task. Stops with the repository's cache.
    pub fn start_invalidation_outbox(&self, every: Duration) {
        // Weak: the hook lives inside the cache, which must not keep itself alive.
        let (db, cache, edges) = (self.db.clone(), self.cache.downgrade(), self.edges.clone());
        let next_publication = self.next_publication.clone();
        let repo_of =
            move || Some(Repository::new(db.clone(), cache.upgrade()?).with_edges(edges.clone()));
        if let Some(edges) = &self.edges {
            edges.start(repo_of.clone());
        }
        let hook_repo = repo_of.clone();
        self.cache.set_recovery_hook(Arc::new(move || {
            let repo = hook_repo();
            Box::pin(async move {
                match repo {
                    Some(repo) => repo
                        .apply_pending_invalidations()
                        .await
                        .map_err(|e| e.to_string()),
                    None => Ok(0),
                }
            })
        }));
        tokio::spawn(async move {
            let mut said_alive = tokio::time::Instant::now();
            let mut site_lost = false;
            loop {
                tokio::time::sleep(every).await;
                let Some(repo) = repo_of() else { return };
                if said_alive.elapsed() >= HEARTBEAT {
                    said_alive = tokio::time::Instant::now();
                    match repo.cache_site_heartbeat().await {
                        Ok(ours) => {
                            if !ours && !site_lost {
                                tracing::error!(
                                    "the database now names another cache as its own: this instance leaves every invalidation to that cache's instances and may serve old entries from its own; restart it with the same CACHE_URL and CACHE_KEY_PREFIX as the others"
                                );
                            }
                            site_lost = !ours;
                        }
                        Err(e) => tracing::debug!(error = %e, "cache site heartbeat not written"),
                    }
                }
                // Any pending row, also another instance's: if that instance alone lost
                // Redis, this one applies its write for it (a second bump of a row its
                // writer is applying at this moment costs one more miss, no more).
                if let Err(e) = repo.apply_pending_invalidations().await {
                    tracing::debug!(error = %e, "pending invalidations not applied yet");
                }
                match repo.next_due_publication().await {
                    Ok(at) => next_publication.store(at, std::sync::atomic::Ordering::Relaxed),
                    Err(e) => tracing::debug!(error = %e, "next publication not read"),
                }
            }
        });
    }

    /// When the next scheduled publication is due (Unix ms), 0 if none is.
    pub async fn next_due_publication(&self) -> RepoResult<u64> {
        let next: Option<chrono::NaiveDateTime> = with_conn!(self.db, |conn| {
            Ok(cache_invalidations::table
                .filter(cache_invalidations::due_at.gt(diesel::dsl::now.nullable()))
                .select(diesel::dsl::min(cache_invalidations::due_at))
                .first(conn)
                .await?)
        })?;
        Ok(next.map_or(0, |at| at.and_utc().timestamp_millis().max(1) as u64))
    }
}
