//! What the path edges may hold (`edge_paths`) and how many paths each was sent this
//! month (`edge_usage`); see `edge::paths`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use super::{now, RepoResult, Repository};
use crate::content::schema::{edge_paths, edge_usage};
use crate::db::DbError;
use crate::with_conn;

impl Repository {
    /// Records that the answer at `path`, built from `tag_keys`, may be held by a path
    /// edge until `until` (a later record of the same pair extends it).
    pub async fn record_edge_path(
        &self,
        path: &str,
        tag_keys: &[String],
        until: NaiveDateTime,
    ) -> RepoResult<()> {
        with_conn!(self.db, |conn| {
            for tag in tag_keys {
                diesel::insert_into(edge_paths::table)
                    .values((
                        edge_paths::tag.eq(tag),
                        edge_paths::path.eq(path),
                        edge_paths::until.eq(until),
                    ))
                    .on_conflict((edge_paths::tag, edge_paths::path))
                    .do_update()
                    .set(edge_paths::until.eq(excluded(edge_paths::until)))
                    .execute(conn)
                    .await?;
            }
            Ok::<_, DbError>(())
        })
    }

    /// The paths an edge may still hold whose answers were built from any of `tag_keys`,
    /// sorted.
    pub async fn edge_paths_of(&self, tag_keys: &[String]) -> RepoResult<Vec<String>> {
        let at = now();
        with_conn!(self.db, |conn| {
            let mut paths = Vec::new();
            // Bounded lists: SQLite takes at most 32,766 bound values in a statement.
            for chunk in tag_keys.chunks(1000) {
                let found: Vec<String> = edge_paths::table
                    .filter(edge_paths::tag.eq_any(chunk))
                    .filter(edge_paths::until.gt(at))
                    .select(edge_paths::path)
                    .distinct()
                    .load(conn)
                    .await?;
                paths.extend(found);
            }
            paths.sort_unstable();
            paths.dedup();
            Ok(paths)
        })
    }

    /// Forgets what no edge can hold any more; returns how many records are left.
    pub async fn sweep_edge_paths(&self) -> RepoResult<i64> {
        let at = now();
        with_conn!(self.db, |conn| {
            diesel::delete(edge_paths::table.filter(edge_paths::until.le(at)))
                .execute(conn)
                .await?;
            Ok(edge_paths::table.count().get_result(conn).await?)
        })
    }

    /// Adds `paths` to what `edge` was sent in `month` (`YYYY-MM`).
    pub async fn add_edge_usage(&self, edge: &str, month: &str, paths: i64) -> RepoResult<()> {
        with_conn!(self.db, |conn| {
            diesel::insert_into(edge_usage::table)
                .values((
                    edge_usage::edge.eq(edge),
                    edge_usage::month.eq(month),
                    edge_usage::paths.eq(paths),
                ))
                .on_conflict((edge_usage::edge, edge_usage::month))
                .do_update()
                .set(edge_usage::paths.eq(edge_usage::paths + excluded(edge_usage::paths)))
                .execute(conn)
                .await?;
            Ok::<_, DbError>(())
        })
    }

    /// What `edge` was sent in `month`.
    pub async fn edge_usage(&self, edge: &str, month: &str) -> RepoResult<i64> {
        with_conn!(self.db, |conn| {
            Ok(edge_usage::table
                .filter(edge_usage::edge.eq(edge))
                .filter(edge_usage::month.eq(month))
                .select(edge_usage::paths)
                .first::<i64>(conn)
                .await
                .optional()?
                .unwrap_or(0))
        })
    }
}
