//! The invalidation outbox: applying a committed write's cache invalidation, retrying
//! what the cache did not take, and applying it before a lost cache serves again.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{RepoResult, Repository};
use crate::content::schema::cache_invalidations;
use crate::db::DbError;
use crate::with_conn;

impl Repository {
    /// Applies a committed write's invalidation (its outbox row `id`), and deletes the
    /// row once the cache has it. Awaited, so a write returns only once no reader can be
    /// served the old data; if the cache cannot be told, the row stays pending and is
    /// applied by `apply_pending_invalidations` — before this instance serves from the
    /// cache again, and by the background task on every instance. Returns whether it
    /// was applied now.
    pub async fn invalidate_after_commit(&self, id: i32, tags: &[&str]) -> bool {
        if !self.cache.invalidate_tags(tags).await {
            tracing::error!(
                ?tags,
                "cache invalidation pending: the cache did not take it; it is retried, and the cache is bypassed where it could serve old data"
            );
            return false;
        }
        if let Err(e) = self.delete_outbox_rows(vec![id]).await {
            // Applied; the row is applied again later, which costs one more miss.
            tracing::warn!(error = %e, "could not delete an applied invalidation");
        }
        true
    }

    /// Applies every invalidation still pending (this instance's or another's); returns
    /// how many.
    pub async fn apply_pending_invalidations(&self) -> RepoResult<usize> {
        let rows: Vec<(i32, String)> = with_conn!(self.db, |conn| {
            Ok(cache_invalidations::table
                .order_by(cache_invalidations::id)
                .limit(500)
                .select((cache_invalidations::id, cache_invalidations::tags))
                .load(conn)
                .await?)
        })?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tags: Vec<&str> = rows.iter().flat_map(|(_, t)| t.split(' ')).collect();
        tags.sort_unstable();
        tags.dedup();
        if !self.cache.invalidate_tags(&tags).await {
            return Err(DbError::Pool(
                "the cache did not take the pending invalidations".into(),
            ));
        }
        self.delete_outbox_rows(rows.iter().map(|(id, _)| *id).collect())
            .await?;
        tracing::info!(applied = rows.len(), "pending cache invalidations applied");
        Ok(rows.len())
    }

    async fn delete_outbox_rows(&self, ids: Vec<i32>) -> RepoResult<usize> {
        with_conn!(self.db, |conn| {
            Ok(diesel::delete(
                cache_invalidations::table.filter(cache_invalidations::id.eq_any(ids)),
            )
            .execute(conn)
            .await?)
        })
    }

    /// Invalidations written but not yet applied (the admin shows a notice).
    pub async fn pending_invalidations(&self) -> RepoResult<i64> {
        with_conn!(self.db, |conn| Ok(cache_invalidations::table
            .count()
            .get_result(conn)
            .await?))
    }

    /// Makes the cache apply pending invalidations before it serves again after a loss,
    /// and retries them in the background every `every`. Stops with the repository's
    /// cache.
    pub fn start_invalidation_outbox(&self, every: Duration) {
        // Weak: the hook lives inside the cache, which must not keep itself alive.
        let (db, cache) = (self.db.clone(), self.cache.downgrade());
        let repo_of = move || Some(Repository::new(db.clone(), cache.upgrade()?));
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
            loop {
                tokio::time::sleep(every).await;
                let Some(repo) = repo_of() else { return };
                // Any pending row, also another instance's: if that instance alone lost
                // Redis, this one applies its write for it (a second bump of a row its
                // writer is applying at this moment costs one more miss, no more).
                if let Err(e) = repo.apply_pending_invalidations().await {
                    tracing::debug!(error = %e, "pending invalidations not applied yet");
                }
            }
        });
    }
}
