//! Cache analytics kept in the database (`cache_rollups`): each instance writes its own
//! rows (one per minute or hour, per family, route and for itself), replacing them as
//! the period fills; readers merge instances. See `web::analytics`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{RepoResult, Repository};
use crate::content::schema::cache_rollups;
use crate::db::DbError;
use crate::with_conn;

/// One row: an instance's counters of one series over one period.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = cache_rollups, treat_none_as_null = true)]
pub struct Rollup {
    pub resolution: i32,
    pub bucket: NaiveDateTime,
    pub instance: String,
    pub series: String,
    pub name: String,
    pub hits: i64,
    pub misses: i64,
    pub stale: i64,
    pub fills: i64,
    pub fill_ms: f64,
    pub requests: i64,
    pub latency_buckets: String,
    pub memory_bytes: Option<i64>,
    pub breaker_open: Option<bool>,
}

impl Repository {
    /// Writes (or replaces) this instance's rows, in one transaction: a reader sees a
    /// flush whole or not at all (never a minute's families without its instance row).
    pub async fn save_rollups(&self, rows: &[Rollup]) -> RepoResult<()> {
        with_conn!(self.db, |conn| {
            conn.transaction::<_, DbError, _>(async |conn| {
                for row in rows {
                    diesel::insert_into(cache_rollups::table)
                        .values(row)
                        .on_conflict((
                            cache_rollups::resolution,
                            cache_rollups::bucket,
                            cache_rollups::instance,
                            cache_rollups::series,
                            cache_rollups::name,
                        ))
                        .do_update()
                        .set(row)
                        .execute(conn)
                        .await?;
                }
                Ok(())
            })
            .await
        })
    }

    /// Every instance's rows of `resolution` from `since` on, oldest first.
    pub async fn rollups_since(
        &self,
        resolution: i32,
        since: NaiveDateTime,
    ) -> RepoResult<Vec<Rollup>> {
        with_conn!(self.db, |conn| {
            Ok(cache_rollups::table
                .filter(cache_rollups::resolution.eq(resolution))
                .filter(cache_rollups::bucket.ge(since))
                .order_by(cache_rollups::bucket)
                .select(Rollup::as_select())
                .load(conn)
                .await?)
        })
    }

    /// Deletes rows of `resolution` older than `before`; returns how many.
    pub async fn prune_rollups(&self, resolution: i32, before: NaiveDateTime) -> RepoResult<usize> {
        with_conn!(self.db, |conn| {
            Ok(diesel::delete(
                cache_rollups::table
                    .filter(cache_rollups::resolution.eq(resolution))
                    .filter(cache_rollups::bucket.lt(before)),
            )
            .execute(conn)
            .await?)
        })
    }
}
