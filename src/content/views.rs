//! Post views, counted in memory and written in batches: a page view costs a map
//! update, not a database write, and a cached page can count its views without being
//! rendered. A batch is one transaction (`Repository::add_views`) that also drops the
//! popular list and each viewed post's page, so the counts readers see lag by the
//! flush interval. A failed batch is put back and retried; `flush` at shutdown writes
//! what is left.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use super::Repository;
use crate::db::DbError;

#[derive(Default)]
pub struct ViewCounter {
    pending: Mutex<HashMap<i32, i64>>,
}

impl ViewCounter {
    pub fn record(&self, post_id: i32) {
        *self.pending.lock().entry(post_id).or_default() += 1;
    }

    /// Views counted but not written yet.
    pub fn pending(&self) -> i64 {
        self.pending.lock().values().sum()
    }

    /// Writes the pending counts; on failure they stay pending. Returns how many views
    /// were written.
    pub async fn flush(&self, repo: &Repository) -> Result<i64, DbError> {
        let batch: Vec<(i32, i64)> = std::mem::take(&mut *self.pending.lock())
            .into_iter()
            .collect();
        if batch.is_empty() {
            return Ok(0);
        }
        match repo.add_views(&batch).await {
            Ok(()) => Ok(batch.iter().map(|(_, n)| n).sum()),
            Err(e) => {
                let mut pending = self.pending.lock();
                for (id, n) in batch {
                    *pending.entry(id).or_default() += n;
                }
                Err(e)
            }
        }
    }

    /// Flushes every `every` until the counter is dropped.
    pub fn start(self: &Arc<Self>, repo: Repository, every: Duration) {
        let counter: Weak<ViewCounter> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(counter) = counter.upgrade() else {
                    return;
                };
                if let Err(e) = counter.flush(&repo).await {
                    tracing::warn!(error = %e, pending = counter.pending(), "view counts not written yet; retrying");
                }
            }
        });
    }
}
